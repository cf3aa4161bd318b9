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
from smtpprobe.cli.sweep import (
    OldTlsOpt,
    PasswordEnvOpt,
    PasswordFileOpt,
    PlaintextOpt,
    UserOpt,
)
from smtpprobe.errors import UsageError

TO_ENV = "SMTPPROBE_TO"
DEFAULT_PORT = 587  # RFC 6409 submission; cli/jobs.py's relay targets use it too


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
    proxy: ProxyOpt = None,
    proxy_password_env: ProxyPasswordEnvOpt = None,
    proxy_password_file: ProxyPasswordFileOpt = None,
    ipv4: Ipv4Opt = False,
    ipv6: Ipv6Opt = False,
    auth_mech: AuthMechOpt = None,
    junit: Annotated[Optional[Path], typer.Option(
        "--junit", help="Also write a JUnit XML report to FILE (one test case per check).",
        metavar="FILE", show_default=False)] = None,
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
    """Check that a mail relay accepts a login and mail, for CI pipelines (exit 0/1/3)."""
    from smtpprobe.cli.jobs import load_trust, relay_plan

    language = resolve_lang(lang)
    if not server:
        raise UsageError("give the relay with --server HOST[:PORT] (or $SMTPPROBE_SERVER)")
    thresholds = plugin.thresholds(nagios, warning, critical, cert_warning, cert_critical)
    plan = relay_plan(tls=tls, user=user, password_env=password_env,
                      password_file=password_file, mail_from=mail_from, to=_recipients(to),
                      send=send, open_relay_check=open_relay_check,
                      open_relay_from=open_relay_from, open_relay_to=open_relay_to,
                      allow_plaintext_auth=allow_plaintext_auth, allow_old_tls=allow_old_tls,
                      no_verify=no_verify, helo=helo, timeout=timeout, deadline=deadline,
                      source_address=source_address, cafile=cafile, resolver=resolver,
                      allow_private=allow_private,
                      proxy=proxy, proxy_password_env=proxy_password_env,
                      proxy_password_file=proxy_password_file, ipv4=ipv4, ipv6=ipv6,
                      auth_mech=auth_mech)
    target = plan.target(server)
    trust = load_trust(plan.cafile)
    junit_path = _check_junit(junit)
    kb = load_kb(knowledge_dir)
    import asyncio

    warn_helo(helo, plan.options.helo, language)

    report = asyncio.run(plan.probe(target, kb=kb, trust=trust, budget=plan.options.deadline))
    if junit_path is not None:
        from smtpprobe.report.junit import relay_junit

        try:
            junit_path.write_text(relay_junit(report, language), encoding="utf-8")
        except OSError as exc:
            if thresholds is not None:
                raise UsageError(f"--junit {junit_path}: {exc.strerror or exc}") from None
            sys.stderr.write(f"smtpprobe: error: --junit {junit_path}: "
                             f"{exc.strerror or exc}\n")
            raise typer.Exit(exits.USAGE) from None
    if thresholds is not None:
        raise typer.Exit(plugin.out(report, thresholds, language))
    from smtpprobe.cli.jobs import show_report

    raise typer.Exit(show_report("relay", report, lang=language, as_json=as_json,
                                 verbose=verbose))
