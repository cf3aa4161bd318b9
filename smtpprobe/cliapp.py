"""Shared pieces of the command line: the typer app, common options, usage errors, main().

The command line: arguments -> request -> asyncio.run once -> render -> exit code.

Exit codes (docs/cli.md): 0 accepted / passed, 1 rejected / failed, 2 usage error,
3 deferred, unreachable or temporary. Usage errors are one line on stderr, before any traffic.
Heavy modules (rich rendering, aiosmtplib, dnspython, the lab) are imported only by the
commands that need them, so `--help` and `explain` start fast.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn, Optional

import typer

from .address import UsageError

if TYPE_CHECKING:
    from .knowledge import KnowledgeBase
    from .models import Stage

EXIT_USAGE = 2

# The order `smtpprobe --help` lists the commands in: what users reach for first, first.
COMMAND_ORDER = ("explain", "check", "sweep", "relay", "demo", "lab")


class _InOrder(typer.core.TyperGroup):
    """List commands in COMMAND_ORDER, not alphabetically."""

    def list_commands(self, ctx: typer.Context) -> list[str]:  # type: ignore[override]
        rank = {name: i for i, name in enumerate(COMMAND_ORDER)}
        return sorted(self.commands, key=lambda name: (rank.get(name, len(rank)), name))


app = typer.Typer(
    cls=_InOrder,
    name="smtpprobe",
    help="Live SMTP connection tester that explains what mail servers say, and what to do.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

# Stage values, not members: models.py (dozens of dataclasses) loads only when a command
# needs it, which keeps `--help` fast.
_STAGE_ALIASES = {
    "banner": "connect", "greeting": "connect", "helo": "ehlo",
    "tls": "starttls", "mail from": "mail", "mail_from": "mail",
    "rcpt to": "rcpt", "rcpt_to": "rcpt", "end of data": "data",
    "rset": "quit",
}

LangOpt = Annotated[Optional[str], typer.Option(
    "--lang", help="Output language: de or en (default: from the locale, else en).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]
KnowledgeOpt = Annotated[Optional[Path], typer.Option(
    "--knowledge", help="Knowledge directory (default: $SMTPPROBE_KNOWLEDGE or the packaged one).",
    show_default=False)]


HeloOpt = Annotated[Optional[str], typer.Option(
    "--helo", envvar="SMTPPROBE_HELO", help="Name to send in EHLO (default: this machine's "
    "name).", show_default=False)]
TimeoutOpt = Annotated[float, typer.Option("--timeout", help="Seconds to wait for each step.")]
SourceOpt = Annotated[Optional[str], typer.Option(
    "--source-address", help="Local IP address to connect from.", metavar="IP",
    show_default=False)]
CafileOpt = Annotated[Optional[Path], typer.Option(
    "--cafile", envvar="SMTPPROBE_CAFILE", help="PEM file of CA certificates to trust "
    "instead of the system store.", show_default=False)]
ResolverOpt = Annotated[Optional[str], typer.Option(
    "--resolver", envvar="SMTPPROBE_RESOLVER", help="DNS server to use instead of the "
    "system's.", metavar="HOST[:PORT]", show_default=False)]
VerboseOpt = Annotated[bool, typer.Option("-v", "--verbose", help="Show the full transcript.")]


def default_helo() -> str:
    import socket

    from .address import check_host

    try:
        return check_host(socket.gethostname())
    except UsageError:
        return "localhost"


def parse_helo_option(helo: str | None) -> str:
    from .address import parse_helo

    return parse_helo(helo) if helo else default_helo()


def parse_source(source_address: str | None) -> str | None:
    """--source-address: an IP address this machine can actually send from."""
    if not source_address:
        return None
    from .address import parse_ip
    from .session import check_source_address

    source = parse_ip(source_address, what="source address")
    problem = check_source_address(source)
    if problem is not None:
        raise UsageError(f"--source-address {source}: cannot send from it ({problem})")
    return source


def parse_nameservers(resolver: str | None) -> tuple[tuple[str, int], ...] | None:
    if not resolver:
        return None
    from .dns import parse_resolver

    try:
        return (parse_resolver(resolver),)
    except ValueError as exc:
        raise UsageError(f"--resolver: {exc}") from None


_PEM_CERT = re.compile(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", re.S)


def check_cafile(cafile: Path | None) -> str | None:
    """--cafile must hold PEM certificates. Checked with the standard library only: the
    certificates themselves are parsed (with cryptography) after the first handshake."""
    if cafile is None:
        return None
    import ssl

    try:
        text = Path(cafile).read_bytes().decode("ascii", "replace")
    except OSError as exc:
        raise UsageError(f"--cafile {cafile}: {exc.strerror or exc}") from None
    blocks = _PEM_CERT.findall(text)
    if not blocks:
        raise UsageError(f"--cafile {cafile}: no PEM certificates in it")
    for block in blocks:
        try:
            der = ssl.PEM_cert_to_DER_cert(block)
        except ValueError:
            der = b""
        if der[:1] != b"\x30":  # an X.509 certificate is a DER SEQUENCE
            raise UsageError(f"--cafile {cafile}: a certificate in it is not valid PEM")
    return str(cafile)


def fail_usage(message: str) -> NoReturn:
    sys.stderr.write(f"smtpprobe: error: {message}\n")
    raise typer.Exit(EXIT_USAGE)


def parse_stage(value: str | None) -> Stage | None:
    if value is None or value == "":
        return None
    from .models import Stage

    key = value.strip().lower()
    try:
        return Stage(_STAGE_ALIASES.get(key, key))
    except ValueError:
        names = ", ".join(s.value for s in Stage)
        raise UsageError(f"unknown stage {value!r} (use one of: {names})") from None


def resolve_lang(lang: str | None) -> str:
    if lang is None:
        from .i18n import default_lang

        return default_lang()
    if lang.lower() not in ("de", "en"):
        raise UsageError(f"unknown language {lang!r} (use de or en)")
    return lang.lower()


def load_kb(path: Path | None) -> KnowledgeBase:
    from . import knowledge

    return knowledge.load(path)


# --- entry point ----------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    try:
        # Not click's standalone mode: its own usage errors (an unknown option, a value of the
        # wrong type) come back here, to be told in one line like ours.
        code = app(args=argv, standalone_mode=False)
    except typer.TyperException as exc:
        message = " ".join(exc.format_message().split())
        if message:  # empty when there were no arguments at all: the help was shown
            sys.stderr.write(f"smtpprobe: error: {message}\n")
        sys.exit(exc.exit_code)
    except typer.Abort:
        sys.stderr.write("smtpprobe: aborted\n")
        sys.exit(1)
    except UsageError as exc:
        sys.stderr.write(f"smtpprobe: error: {exc}\n")
        sys.exit(EXIT_USAGE)
    except Exception as exc:
        # kbpath.py is imported only by the commands that use the knowledge base: if it was
        # never imported, no KnowledgeError can have been raised.
        kbpath = sys.modules.get(f"{__package__}.kbpath")
        if kbpath is None or not isinstance(exc, kbpath.KnowledgeError):
            raise
        sys.stderr.write(f"smtpprobe: error: knowledge base: {exc}\n")
        sys.exit(EXIT_USAGE)
    except KeyboardInterrupt:
        sys.stderr.write("smtpprobe: interrupted\n")
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)


def entry() -> None:
    """The console script and `python -m smtpprobe`: `main`, then a quick exit.

    Once the output is flushed nothing is left to do, and Python's own teardown (collecting
    hundreds of modules) would add tens of milliseconds to every command: the process ends
    with os._exit instead. Library callers and tests use `main`, which exits normally.
    """
    import os

    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if isinstance(exc.code, str):
            sys.stderr.write(exc.code + "\n")
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            code = code or 1  # a closed pipe: the output did not arrive
    os._exit(code)

