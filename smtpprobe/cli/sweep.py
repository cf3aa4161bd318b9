"""`smtpprobe sweep`: which ports of a mail server work for sending, and what to type into a
mail program. Everything is validated (and the password read) before the first packet."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Optional

import typer

from smtpprobe.cli import exits
from smtpprobe.cli import nagios as plugin
from smtpprobe.cli.options import (
    AllowPrivateOpt,
    AuthMechOpt,
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

if TYPE_CHECKING:
    from rich.console import Console



UserOpt = Annotated[Optional[str], typer.Option(
    "--user", "-u", envvar="SMTPPROBE_USER", help="Log in as USER (the password is never an "
    "argument: see --password-env, --password-file, $SMTPPROBE_PASSWORD or the prompt).",
    metavar="USER", show_default=False)]
PasswordEnvOpt = Annotated[Optional[str], typer.Option(
    "--password-env", help="Read the password from the environment variable VAR.",
    metavar="VAR", show_default=False)]
PasswordFileOpt = Annotated[Optional[str], typer.Option(
    "--password-file", help="Read the password from the first line of FILE.",
    metavar="FILE", show_default=False)]
PlaintextOpt = Annotated[bool, typer.Option(
    "--allow-plaintext-auth", help="Also send the password over an unencrypted connection "
    "(never done otherwise).")]
OldTlsOpt = Annotated[bool, typer.Option(
    "--allow-old-tls", help="Also send the password over TLS 1.0 or 1.1 (withheld otherwise: "
    "RFC 8996 retires them).")]


def wide_console() -> Console:
    """rich's console; when the output is not a terminal (a CI log, a file) rich assumes 80
    columns, too narrow for the port table: use 120 unless $COLUMNS says otherwise."""
    import os

    from smtpprobe.report.text import console

    out = console()
    if not out.is_terminal and not os.environ.get("COLUMNS"):
        out.width = 120
    return out


app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@app.command(epilog="Examples:  smtpprobe sweep smtp.example.org  |  smtpprobe sweep "
             "smtp.example.org -u alice@example.org --password-env PW  |  smtpprobe sweep "
             "mail.example.org --ports 587,465\n\n" + exits.HELP["sweep"])
def sweep(
    host: Annotated[str, typer.Argument(help="Mail server to test, e.g. smtp.example.org",
                                        show_default=False)],
    ports: Annotated[str, typer.Option(
        "--ports", help="Ports to try, with an optional mode each: 25,587,465 or "
        "587:starttls,465:tls,2525:plain.")] = "25,587,465,2525",
    user: UserOpt = None,
    password_env: PasswordEnvOpt = None,
    password_file: PasswordFileOpt = None,
    allow_plaintext_auth: PlaintextOpt = False,
    allow_old_tls: OldTlsOpt = False,
    no_verify: Annotated[bool, typer.Option(
        "--no-verify", help="Send the password even over TLS whose certificate does not "
        "verify (otherwise it is withheld).")] = False,
    helo: HeloOpt = None,
    timeout: TimeoutOpt = 10.0,
    deadline: Annotated[float, typer.Option(
        "--deadline", help="Seconds for the whole sweep, all ports together.")] = 30.0,
    source_address: SourceOpt = None,
    cafile: CafileOpt = None,
    resolver: ResolverOpt = None,
    allow_private: AllowPrivateOpt = False,
    proxy: ProxyOpt = None,
    proxy_password_env: ProxyPasswordEnvOpt = None,
    proxy_password_file: ProxyPasswordFileOpt = None,
    ipv4: Ipv4Opt = False,
    ipv6: Ipv6Opt = False,
    auth_mech: AuthMechOpt = None,
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
    """Try the submission ports of a mail server and recommend settings for a mail program."""
    # Not at import: `smtpprobe --help` loads this module (cli/jobs.py costs 5 ms).
    from smtpprobe.cli.jobs import load_trust, parse_sweep_target, sweep_plan

    language = resolve_lang(lang)
    target = parse_sweep_target(host)
    thresholds = plugin.thresholds(nagios, warning, critical, cert_warning, cert_critical)
    plan = sweep_plan(ports=ports, user=user, password_env=password_env,
                      password_file=password_file, allow_plaintext_auth=allow_plaintext_auth,
                      allow_old_tls=allow_old_tls, no_verify=no_verify, helo=helo,
                      timeout=timeout, deadline=deadline, source_address=source_address,
                      cafile=cafile, resolver=resolver, allow_private=allow_private,
                      proxy=proxy, proxy_password_env=proxy_password_env,
                      proxy_password_file=proxy_password_file, ipv4=ipv4, ipv6=ipv6,
                      auth_mech=auth_mech)
    trust = load_trust(plan.cafile)
    kb = load_kb(knowledge_dir)
    import asyncio

    warn_helo(helo, plan.options.helo, language)

    report = asyncio.run(plan.probe(target, kb=kb, trust=trust, budget=plan.options.deadline))
    if thresholds is not None:
        raise typer.Exit(plugin.out(report, thresholds, language))
    from smtpprobe.cli.jobs import show_report

    raise typer.Exit(show_report("sweep", report, lang=language, as_json=as_json,
                                 verbose=verbose))
