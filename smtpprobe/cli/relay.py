"""`smtpprobe relay`: a smoke test of an application's outgoing relay, for CI pipelines.

Every option a pipeline needs can come from the environment (SMTPPROBE_SERVER, SMTPPROBE_USER,
SMTPPROBE_PASSWORD, SMTPPROBE_FROM, SMTPPROBE_TO, ...), so a job needs no secret on its
command line. Everything is validated before the first packet; a usage error exits with 2.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Annotated, Optional

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
    load_kb,
    parse_helo_option,
    parse_nameservers,
    parse_source,
    resolve_lang,
    warn_helo,
)
from smtpprobe.cli.sweep import (
    OldTlsOpt,
    PasswordEnvOpt,
    PasswordFileOpt,
    PlaintextOpt,
    UserOpt,
    check_numbers,
    load_trust,
    wide_console,
)
from smtpprobe.errors import UsageError

TO_ENV = "SMTPPROBE_TO"
DEFAULT_PORT = 587


def _recipients(to: list[str] | None) -> list[str]:
    if to:
        return to
    # Click would split a list option's environment variable on white space only; commas
    # are what people write in CI variables.
    value = os.environ.get(TO_ENV, "")
    return [item for item in re.split(r"[,\s]+", value) if item]


def _check_junit(path: Path | None) -> Path | None:
    if path is None:
        return None
    if path.exists() and not path.is_file():
        raise UsageError(f"--junit {path}: not a regular file")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise UsageError(f"--junit {path}: the directory {parent} does not exist")
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise UsageError(f"--junit {path}: not writable")
    return path


app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@app.command(epilog="Examples:  smtpprobe relay -s smtp.example.org:587 -u app@example.org "
             "--password-env SMTP_PW -f app@example.org -t ops@example.org  |  add --send "
             "--junit relay.xml in CI\n\n" + exits.HELP["relay"])
def relay(
    server: Annotated[Optional[str], typer.Option(
        "--server", "-s", envvar="SMTPPROBE_SERVER", help=f"The relay, HOST[:PORT] (port "
        f"{DEFAULT_PORT} when not given).", metavar="HOST[:PORT]", show_default=False)] = None,
    tls: Annotated[str, typer.Option(
        "--tls", envvar="SMTPPROBE_TLS", help="auto (465: implicit TLS; otherwise STARTTLS, "
        "required on 587), starttls (required), implicit, or none.")] = "auto",
    user: UserOpt = None,
    password_env: PasswordEnvOpt = None,
    password_file: PasswordFileOpt = None,
    mail_from: Annotated[Optional[str], typer.Option(
        "--from", "--mail-from", "-f", envvar="SMTPPROBE_FROM",
        help="Envelope sender for MAIL FROM.",
        metavar="ADDRESS", show_default=False)] = None,
    to: Annotated[Optional[list[str]], typer.Option(
        "--to", "-t", help=f"Recipient for RCPT TO (repeat for more; or ${TO_ENV}, separated by "
        f"commas).", metavar="ADDRESS", show_default=False)] = None,
    send: Annotated[bool, typer.Option(
        "--send", help="Also send a small test message and report the queue id.")] = False,
    open_relay_check: Annotated[bool, typer.Option(
        "--open-relay-check", help="Check, without a login, that the server refuses to "
        "relay between two outside domains (never sends DATA).")] = False,
    open_relay_from: Annotated[Optional[str], typer.Option(
        "--open-relay-from", help="Outside sender for the open-relay check (only a name in "
        "the envelope, never contacted).", metavar="ADDRESS", show_default=False)] = None,
    open_relay_to: Annotated[Optional[str], typer.Option(
        "--open-relay-to", help="Outside recipient for the open-relay check (only a name in "
        "the envelope, never contacted).", metavar="ADDRESS", show_default=False)] = None,
    allow_plaintext_auth: PlaintextOpt = False,
    allow_old_tls: OldTlsOpt = False,
    no_verify: Annotated[bool, typer.Option(
        "--no-verify", help="Report certificate problems without failing the tls "
        "check.")] = False,
    helo: HeloOpt = None,
    timeout: TimeoutOpt = 10.0,
    deadline: Annotated[float, typer.Option(
        "--deadline", help="Seconds for the whole run.")] = 60.0,
    source_address: SourceOpt = None,
    cafile: CafileOpt = None,
    resolver: ResolverOpt = None,
    allow_private: AllowPrivateOpt = False,
    junit: Annotated[Optional[Path], typer.Option(
        "--junit", help="Also write a JUnit XML report to FILE (one test case per check).",
        metavar="FILE", show_default=False)] = None,
    lang: LangOpt = None,
    as_json: JsonOpt = False,
    verbose: VerboseOpt = False,
    knowledge_dir: KnowledgeOpt = None,
) -> None:
    """Check that a mail relay accepts a login and mail, for CI pipelines (exit 0/1/3)."""
    from smtpprobe.cli.secrets import PasswordSource, resolve_credentials
    from smtpprobe.core import address as addr
    from smtpprobe.probe.relay import OPEN_RELAY_FROM, OPEN_RELAY_TO, TLS_MODES

    language = resolve_lang(lang)
    if not server:
        raise UsageError("give the relay with --server HOST[:PORT] (or $SMTPPROBE_SERVER)")
    host, port = addr.parse_server(server, default_port=DEFAULT_PORT)
    tls_mode = tls.strip().lower()
    if tls_mode not in TLS_MODES:
        raise UsageError(f"--tls {tls!r}: use one of {', '.join(TLS_MODES)}")
    sender = addr.parse_address(mail_from) if mail_from else None
    recipients = [addr.parse_address(r) for r in _recipients(to)]
    if recipients and sender is None:
        raise UsageError("--to needs --from (the envelope sender for MAIL FROM)")
    if send and not recipients:
        raise UsageError("--send needs at least one --to")
    relay_from = addr.parse_address(open_relay_from or OPEN_RELAY_FROM)
    relay_to = addr.parse_address(open_relay_to or OPEN_RELAY_TO)
    check_numbers(timeout, deadline)
    helo_name = parse_helo_option(helo)
    source = parse_source(source_address)
    nameservers = parse_nameservers(resolver)
    trust = load_trust(cafile)
    junit_path = _check_junit(junit)
    kb = load_kb(knowledge_dir)
    creds = resolve_credentials(user, PasswordSource(env=password_env, file=password_file))

    from smtpprobe.core.redact import Redactor
    from smtpprobe.probe.relay import Relay, RelayOptions

    assert relay_from is not None and relay_to is not None
    redact = Redactor([(creds.user, creds.password)]) if creds else Redactor()
    options = RelayOptions(
        host=host, port=port, tls=tls_mode, helo=helo_name,
        mail_from=sender.smtp if sender else None,
        recipients=tuple(r.smtp for r in recipients if r is not None), send=send,
        open_relay_check=open_relay_check, open_relay_from=relay_from.smtp,
        open_relay_to=relay_to.smtp, timeout=timeout, deadline=deadline,
        allow_plaintext_auth=allow_plaintext_auth, allow_old_tls=allow_old_tls,
        verify=not no_verify,
        nameservers=nameservers, source_address=source, allow_private=allow_private,
    )
    import asyncio

    warn_helo(helo, helo_name, language)
    report = asyncio.run(Relay(kb, options, trust=trust, redactor=redact,
                               credentials=creds).run())
    if junit_path is not None:
        from smtpprobe.report.junit import relay_junit

        try:
            junit_path.write_text(relay_junit(report, language), encoding="utf-8")
        except OSError as exc:
            sys.stderr.write(f"smtpprobe: error: --junit {junit_path}: "
                             f"{exc.strerror or exc}\n")
            raise typer.Exit(exits.USAGE) from None
    if as_json:
        from smtpprobe.report.json import dumps, relay_dict

        sys.stdout.write(dumps(relay_dict(report, language)) + "\n")
    else:
        from smtpprobe.report.text_relay import relay_view

        wide_console().print(relay_view(report, language, verbose=verbose))
    raise typer.Exit(exits.for_relay(report))
