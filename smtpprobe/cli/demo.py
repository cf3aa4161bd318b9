"""`smtpprobe demo`: the tool at work against its lab on this machine, no internet needed."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from smtpprobe.cli.options import JsonOpt, KnowledgeOpt, LangOpt, load_kb, resolve_lang
from smtpprobe.errors import UsageError

# (address, what it shows in English and German, check options)
DEMO_CHECKS: tuple[tuple[str, str, str, dict[str, object]], ...] = (
    ("alice@good.test", "an address that exists", "eine Adresse, die existiert", {}),
    ("nobody@good.test", "an address that does not exist", "eine Adresse, die es nicht gibt",
     {}),
    ("alice@backup.test", "the first MX is down; the backup MX answers",
     "der erste MX ist aus; der Ersatz-MX antwortet", {}),
    ("bob@full.test", "a full mailbox", "ein volles Postfach", {}),
    ("alice@grey.test", "greylisting", "Greylisting", {}),
    ("alice@blocked.test", "the server blocks the prober, not the address",
     "der Server sperrt den Prüfer, nicht die Adresse", {}),
    ("someone@catchall.test", "a catch-all domain (--catch-all)",
     "eine Catch-all-Domain (--catch-all)", {"catch_all": True}),
    ("alice@tls.test", "a server that insists on STARTTLS (--no-starttls)",
     "ein Server, der auf STARTTLS besteht (--no-starttls)", {"starttls": False}),
    ("alice@nullmx.test", "a domain that accepts no mail (null MX)",
     "eine Domain, die keine Mail annimmt (Null-MX)", {}),
    ("alice@nosuch.test", "a domain that does not exist", "eine Domain, die es nicht gibt", {}),
)


# (domain, what it shows in English and German): `smtpprobe domain` on lab.world's
# DOMAIN_DOMAINS (127.0.0.31-49 and ::1).
DEMO_DOMAIN_CHECKS: tuple[tuple[str, str, str], ...] = (
    ("healthy.test", "a mail domain whose MX checks all pass",
     "eine Maildomain, deren MX-Prüfungen alle bestanden werden"),
    ("broken.test", "a mail domain with reverse-DNS, TLS, certificate and postmaster problems",
     "eine Maildomain mit Fehlern bei Reverse-DNS, TLS, Zertifikat und postmaster"),
)

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@app.command()
def demo(
    lang: LangOpt = None,
    as_json: JsonOpt = False,
    verbose: Annotated[bool, typer.Option("-v", "--verbose",
                                          help="Show full transcripts.")] = False,
    knowledge_dir: KnowledgeOpt = None,
) -> None:
    """Run checks against embedded lab servers and a lab DNS zone on 127.0.0.x (Linux)."""
    language = resolve_lang(lang)
    kb = load_kb(knowledge_dir)
    from dataclasses import replace

    from smtpprobe.core.address import parse_address
    from smtpprobe.lab.world import lab_world
    from smtpprobe.models import CheckReport, DomainReport
    from smtpprobe.probe.check import Checker, CheckOptions

    async def run_domains() -> list[tuple[str, DomainReport]]:
        from smtpprobe.core.certs import load_trust_store
        from smtpprobe.core.classify import Classifier
        from smtpprobe.lab.world import DNSBL_ZONE, DOMAIN_DOMAINS
        from smtpprobe.probe.domain import run_domain

        async with lab_world(DOMAIN_DOMAINS) as world:
            trust = load_trust_store(world.cafile)
            return [(what_de if language == "de" else what_en, await run_domain(
                name, classifier=Classifier(kb), trust=trust, nameservers=[world.resolver],
                port=world.port, timeout=5.0, deadline=20.0, helo="probe.smtpprobe.test",
                dnsbl_zones=(DNSBL_ZONE,)))
                for name, what_en, what_de in DEMO_DOMAIN_CHECKS]

    async def run() -> list[tuple[str, CheckReport]]:
        async with lab_world() as world:
            base = CheckOptions(helo="probe.smtpprobe.test", port=world.port,
                                nameservers=(world.resolver,), cafile=world.cafile,
                                timeout=5.0, deadline=20.0)
            out = []
            for address_text, what_en, what_de, extra in DEMO_CHECKS:
                what = what_de if language == "de" else what_en
                address = parse_address(address_text)
                assert address is not None
                options = replace(base, **extra)  # type: ignore[arg-type]
                out.append((what, await Checker(kb, options).check(address)))
            return out

    import asyncio

    try:
        results = asyncio.run(run())
        domains = asyncio.run(run_domains())
    except OSError as exc:
        raise UsageError(f"cannot start the lab servers on 127.0.0.21-49 ({exc.strerror or exc}); "
                         f"the demo needs Linux, where any 127.x address works") from None

    if as_json:
        from smtpprobe.report.json import check_dict, domain_dict, dumps

        for _, report in results:
            sys.stdout.write(dumps(check_dict(report, language), indent=None) + "\n")
        for _, domain_report in domains:
            sys.stdout.write(dumps(domain_dict(domain_report, language), indent=None) + "\n")
        return
    from rich.rule import Rule

    from smtpprobe.report.text import console
    from smtpprobe.report.text_check import check_view

    out = console()
    out.print("smtpprobe demo: lab mail servers and a DNS zone on 127.0.0.x, nothing leaves "
              "this machine." if language == "en" else
              "smtpprobe-Demo: Labor-Mailserver und eine DNS-Zone auf 127.0.0.x; nichts "
              "verlässt diesen Rechner.")
    for what, report in results:
        out.print(Rule(f"smtpprobe check {report.address}  ({what})", align="left"))
        out.print(check_view(report, language, verbose=verbose))
    from smtpprobe.report.text_domain import domain_view

    for what, domain_report in domains:
        out.print(Rule(f"smtpprobe domain {domain_report.domain}  ({what})", align="left"))
        out.print(domain_view(domain_report, language))
    out.print(Rule())
    from smtpprobe.report.words import text as word

    summary = ", ".join(f"{r.address}: {word(f'list.{r.verdict.value}', language)}"
                        for _, r in results)
    out.print(summary, style="dim")
