"""`smtpprobe sweep`: which ports of a mail server work for sending, and what to type into a
mail program. Everything is validated (and the password read) before the first packet."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from smtpprobe.cli import exits
from smtpprobe.cli.options import (
    AllowPrivateOpt,
    CafileOpt,
    HeloOpt,
    JsonOpt,
    KnowledgeOpt,
    LangOpt,
    ResolverOpt,
    SourceOpt,
    TimeoutOpt,
    VerboseOpt,
    check_cafile,
    load_kb,
    parse_helo_option,
    parse_nameservers,
    parse_source,
    resolve_lang,
    warn_helo,
)
from smtpprobe.errors import UsageError

if TYPE_CHECKING:
    from rich.console import Console

    from smtpprobe.core.certs import TrustStore

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


def check_numbers(timeout: float, deadline: float) -> None:
    if not 0 < timeout <= 3600:
        raise UsageError("--timeout must be between 0 and 3600 seconds")
    if not 0 < deadline <= 86400:
        raise UsageError("--deadline must be between 0 and 86400 seconds")


def load_trust(cafile: Path | None) -> TrustStore:
    from smtpprobe.core.certs import load_trust_store

    checked = check_cafile(cafile)
    try:
        return load_trust_store(checked)
    except (OSError, ValueError) as exc:
        raise UsageError(f"--cafile {cafile}: {exc}") from None


def parse_target(host: str) -> str:
    """The server to sweep: a host name or an IP address, without a port."""
    from smtpprobe.core.address import check_host, is_ip

    spec = host.strip()
    if spec.startswith("[") and spec.endswith("]"):
        spec = spec[1:-1]
    if is_ip(spec):
        return str(spec)
    if ":" in spec:
        raise UsageError(f"sweep takes a host without a port ({host!r}); choose ports with "
                         f"--ports")
    return check_host(spec)


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
    lang: LangOpt = None,
    as_json: JsonOpt = False,
    verbose: VerboseOpt = False,
    knowledge_dir: KnowledgeOpt = None,
) -> None:
    """Try the submission ports of a mail server and recommend settings for a mail program."""
    from smtpprobe.cli.secrets import PasswordSource, resolve_credentials
    from smtpprobe.probe.sweep import SweepOptions, parse_ports

    language = resolve_lang(lang)
    target = parse_target(host)
    port_specs = parse_ports(ports)
    check_numbers(timeout, deadline)
    helo_name = parse_helo_option(helo)
    source = parse_source(source_address)
    nameservers = parse_nameservers(resolver)
    trust = load_trust(cafile)
    kb = load_kb(knowledge_dir)
    creds = resolve_credentials(user, PasswordSource(env=password_env, file=password_file))

    from smtpprobe.core.redact import Redactor
    from smtpprobe.probe.sweep import Sweeper

    redact = Redactor([(creds.user, creds.password)]) if creds else Redactor()
    options = SweepOptions(host=target, ports=port_specs, helo=helo_name, timeout=timeout,
                           deadline=deadline, allow_plaintext_auth=allow_plaintext_auth,
                           allow_old_tls=allow_old_tls,
                           verify=not no_verify,
                           nameservers=nameservers, source_address=source,
                           allow_private=allow_private)
    sweeper = Sweeper(kb, options, trust=trust, redactor=redact, credentials=creds)
    import asyncio

    warn_helo(helo, helo_name, language)
    report = asyncio.run(sweeper.sweep())
    if as_json:
        from smtpprobe.report.json import dumps, sweep_dict

        sys.stdout.write(dumps(sweep_dict(report, language)) + "\n")
    else:
        from smtpprobe.report.text_sweep import sweep_view

        wide_console().print(sweep_view(report, language, verbose=verbose))
    raise typer.Exit(exits.for_sweep(report))
