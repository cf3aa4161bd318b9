"""`smtpprobe whoami`: this host as a receiving mail server sees it (issue 15).

Which address connections come from (toward --via, or from --source-address), its reverse DNS
(PTR) and whether that name points back (forward-confirmed), whether the EHLO name resolves to
it, and whether it is on the DNS blocklists named with --dnsbl. `check` runs the same
self-check by itself after a refusal about the prober. Behind NAT the address found is the
local one, not the one servers see: the output says so.
"""

from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer

from smtpprobe.cli import exits
from smtpprobe.cli.options import (
    HeloOpt,
    Ipv4Opt,
    Ipv6Opt,
    JsonOpt,
    KnowledgeOpt,
    LangOpt,
    ResolverOpt,
    SourceOpt,
    TimeoutOpt,
    load_kb,
    parse_family,
    parse_helo_option,
    parse_nameservers,
    parse_source,
    resolve_lang,
)
from smtpprobe.errors import UsageError

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)

# A documentation address (RFC 5737 / RFC 3849): connecting a UDP socket toward it picks the
# default route's source address and sends nothing.
_DEFAULT_ROUTE = {4: "192.0.2.1", 6: "2001:db8::1"}


@app.command(epilog="Examples:  smtpprobe whoami --helo mail.example.org --dnsbl "
             "zen.spamhaus.org  |  smtpprobe whoami --via 203.0.113.25 --json\n\n"
             f"Exit codes: {exits.OK} nothing found that receiving servers object to, "
             f"{exits.FAILED} a problem found, {exits.USAGE} usage error.")
def whoami(
    via: Annotated[Optional[str], typer.Option(
        "--via", help="The address of a mail server: the source address toward it is "
        "checked (default: the default route's).", metavar="IP", show_default=False)] = None,
    dnsbl: Annotated[Optional[list[str]], typer.Option(
        "--dnsbl", help="A DNS blocklist zone to look the address up in (repeat for more).",
        metavar="ZONE", show_default=False)] = None,
    helo: HeloOpt = None,
    source_address: SourceOpt = None,
    resolver: ResolverOpt = None,
    timeout: TimeoutOpt = 5.0,
    ipv4: Ipv4Opt = False,
    ipv6: Ipv6Opt = False,
    lang: LangOpt = None,
    as_json: JsonOpt = False,
    knowledge_dir: KnowledgeOpt = None,
) -> None:
    """Check this host's address as mail servers see it: PTR, EHLO name, blocklists."""
    from smtpprobe.core.address import check_domain, parse_ip

    language = resolve_lang(lang)
    family = parse_family(ipv4, ipv6)
    helo_name = parse_helo_option(helo)
    nameservers = parse_nameservers(resolver)
    if not 0 < timeout <= 60:
        raise UsageError("--timeout must be more than 0 and at most 60 seconds")
    zones = [check_domain(zone) for zone in dnsbl or ()]
    source = parse_source(source_address)
    from smtpprobe.probe.selfcheck import source_address as route_source

    note = None
    if source is None:
        toward = parse_ip(via, what="--via address") if via else _DEFAULT_ROUTE[family or 4]
        source = route_source(toward)
        if source is None:
            raise UsageError(f"no route toward {toward}: give --source-address or --via")
    import ipaddress

    if ipaddress.ip_address(source).is_private and not ipaddress.ip_address(source).is_loopback:
        note = "a private address: behind NAT servers see another one"
    kb = load_kb(knowledge_dir)
    import asyncio

    from smtpprobe.core.classify import Classifier
    from smtpprobe.core.selfcheck import observations
    from smtpprobe.models import Severity, Stage
    from smtpprobe.probe.selfcheck import self_check

    found = asyncio.run(self_check(source, helo=helo_name, zones=zones,
                                   nameservers=nameservers, timeout=timeout, note=note))
    classify = Classifier(kb)
    findings = [classify.observe(Stage.CONNECT, kind, detail)
                for kind, detail in observations(found)]
    bad = any(f.severity not in (Severity.OK, Severity.INFO) for f in findings)
    if as_json:
        from smtpprobe.report.json import dumps, selfcheck_dict, stamped

        sys.stdout.write(dumps(stamped(selfcheck_dict(found, findings, language))) + "\n")
    else:
        from smtpprobe.report.text import console, finding_panel
        from smtpprobe.report.words import text

        out = console()
        out.print(f"{text('whoami.address', language)}: {found.address}"
                  + (f"  ({found.note})" if found.note else ""), highlight=False)
        ptr = ", ".join(found.ptr) or found.ptr_problem or text("whoami.none", language)
        state = (text("whoami.confirmed", language, name=found.confirmed) if found.confirmed
                 else text("whoami.unconfirmed", language))
        out.print(f"{text('whoami.ptr', language)}: {ptr}"
                  + (f"  ({state})" if found.ptr else ""), highlight=False)
        if found.helo:
            resolved = (text("whoami.resolves", language,
                             addresses=", ".join(found.helo_addresses))
                        if found.helo_addresses else found.helo_problem or "-")
            out.print(f"{text('whoami.helo', language)}: {found.helo}  ({resolved})",
                      highlight=False)
        for item in found.listings:
            key = ("whoami.listed" if item.listed else "whoami.unknown" if item.listed is None
                   else "whoami.not_listed")
            out.print(f"{text('whoami.lists', language)}: {item.zone}: {text(key, language)}"
                      + (f" ({item.answer})" if item.listed else ""), highlight=False)
        for finding in findings:
            out.print(finding_panel(finding, language))
    raise typer.Exit(exits.FAILED if bad else exits.OK)
