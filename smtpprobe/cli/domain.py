"""`smtpprobe domain DOMAIN`: the health of a mail domain without knowing a mailbox.

MX set, addresses, IPv6, reverse DNS, greeting name, STARTTLS, TLS versions, certificate,
postmaster, optionally the open-relay tricks, then SPF, DMARC, DKIM, blocklists, MTA-STS,
TLS-RPT and DANE (probe/domain.py, probe/domain_policy.py). Every option is checked before
the first packet; a usage error is one line and exit 2.
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from smtpprobe.cli import exits
from smtpprobe.cli import nagios as plugin
from smtpprobe.cli.options import (
    AllowPrivateOpt,
    CafileOpt,
    HeloOpt,
    Ipv4Opt,
    Ipv6Opt,
    JsonOpt,
    KnowledgeOpt,
    LangOpt,
    ProxyOpt,
    ProxyPasswordEnvOpt,
    ProxyPasswordFileOpt,
    ResolverOpt,
    SourceOpt,
    TimeoutOpt,
    VerboseOpt,
    load_kb,
    resolve_lang,
    warn_helo,
)
from smtpprobe.errors import UsageError

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)

# A DKIM selector is one or more DNS labels (RFC 6376 3.1).
_SELECTOR_MAX = 253


def _domain(value: str) -> str:
    from smtpprobe.net.dns import to_ascii_domain

    if "@" in value:
        raise UsageError(f"{value!r}: give the domain, not an address (the part after the @)")
    try:
        return to_ascii_domain(value)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _ips(values: list[str] | None) -> tuple[str, ...]:
    from smtpprobe.core.address import parse_ip

    return tuple(dict.fromkeys(parse_ip(v, what="--ip address") for v in values or ()))


def _selectors(values: list[str] | None) -> tuple[str, ...]:
    out: list[str] = []
    for value in values or ():
        text = value.strip().rstrip(".").lower()
        labels = text.split(".")
        if not text or len(text) > _SELECTOR_MAX or not all(
                label and len(label) <= 63 and label.isascii()
                and all(c.isalnum() or c in "-_" for c in label) for label in labels):
            raise UsageError(f"--selector {value!r}: not a DKIM selector (DNS labels of "
                             "letters, digits, '-' and '_')")
        out.append(text)
    return tuple(dict.fromkeys(out))


def _zones(values: list[str] | None) -> tuple[str, ...] | None:
    if not values:
        return None
    from smtpprobe.net.dns import to_ascii_domain

    zones: list[str] = []
    for value in values:
        try:
            zones.append(to_ascii_domain(value))
        except ValueError as exc:
            raise UsageError(f"--dnsbl: {exc}") from None
    return tuple(dict.fromkeys(zones))


@app.command(epilog="Examples:  smtpprobe domain example.org  |  smtpprobe domain example.org "
             "--selector s1 --ip 192.0.2.10 --json  |  smtpprobe domain example.org "
             "--open-relay\n\n" + exits.HELP["domain"])
def domain(
    name: Annotated[str, typer.Argument(metavar="DOMAIN", help="The mail domain to check.",
                                        show_default=False)],
    resolver: ResolverOpt = None,
    timeout: TimeoutOpt = 10.0,
    deadline: Annotated[float, typer.Option(
        "--deadline", help="Seconds for the whole run.")] = 120.0,
    cafile: CafileOpt = None,
    helo: HeloOpt = None,
    source_address: SourceOpt = None,
    port: Annotated[int, typer.Option("--port", "-p", help="SMTP port of the mail hosts.",
                                      metavar="PORT")] = 25,
    ip: Annotated[Optional[list[str]], typer.Option(
        "--ip", help="An address your mail is sent from: checked against SPF and the "
        "blocklists (repeat for more).", metavar="IP", show_default=False)] = None,
    selector: Annotated[Optional[list[str]], typer.Option(
        "--selector", help="A DKIM selector of the domain (repeat for more); without one "
        "DKIM is not checked.", metavar="NAME", show_default=False)] = None,
    dnsbl: Annotated[Optional[list[str]], typer.Option(
        "--dnsbl", help="A DNS blocklist zone to ask instead of the defaults (repeat for "
        "more).", metavar="ZONE", show_default=False)] = None,
    open_relay: Annotated[bool, typer.Option(
        "--open-relay", help="Also try the open-relay tricks on every MX (MAIL and RCPT "
        "only, never DATA).")] = False,
    allow_private: AllowPrivateOpt = False,
    proxy: ProxyOpt = None,
    proxy_password_env: ProxyPasswordEnvOpt = None,
    proxy_password_file: ProxyPasswordFileOpt = None,
    ipv4: Ipv4Opt = False,
    ipv6: Ipv6Opt = False,
    lang: LangOpt = None,
    as_json: JsonOpt = False,
    verbose: VerboseOpt = False,
    knowledge_dir: KnowledgeOpt = None,
    nagios: plugin.NagiosOpt = False,
    warning: plugin.WarningOpt = None,
    critical: plugin.CriticalOpt = None,
    cert_warning: plugin.CertWarningOpt = None,
    cert_critical: plugin.CertCriticalOpt = None,
) -> None:
    """Check a mail domain: MX, reverse DNS, TLS, certificate, postmaster, SPF, DMARC,
    DKIM, blocklists, MTA-STS, TLS-RPT, DANE (exit 0/1/3)."""
    # The options -> flow builder is shared with `smtpprobe exporter` (cli/jobs.py).
    from smtpprobe.cli.jobs import domain_plan, load_trust

    language = resolve_lang(lang)
    ascii_domain = _domain(name)
    thresholds = plugin.thresholds(nagios, warning, critical, cert_warning, cert_critical)
    plan = domain_plan(resolver=resolver, timeout=timeout, deadline=deadline, cafile=cafile,
                       helo=helo, source_address=source_address, port=port, ip=ip,
                       selector=selector, dnsbl=dnsbl, open_relay=open_relay,
                       allow_private=allow_private, proxy=proxy,
                       proxy_password_env=proxy_password_env,
                       proxy_password_file=proxy_password_file, ipv4=ipv4, ipv6=ipv6)
    trust = load_trust(plan.cafile)
    kb = load_kb(knowledge_dir)

    import asyncio


    warn_helo(helo, plan.helo, language)

    report = asyncio.run(plan.probe(name, kb=kb, trust=trust, budget=plan.deadline))
    assert report.ascii_domain == ascii_domain
    if thresholds is not None:
        raise typer.Exit(plugin.out(report, thresholds, language))
    from smtpprobe.cli.jobs import show_report

    raise typer.Exit(show_report("domain", report, lang=language, as_json=as_json,
                                 verbose=verbose))
