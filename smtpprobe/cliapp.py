"""Shared pieces of the command line: the typer app, common options, usage errors, main().

The command line: arguments -> request -> asyncio.run once -> render -> exit code.

Exit codes (docs/cli.md): 0 accepted / passed, 1 rejected / failed, 2 usage error,
3 deferred, unreachable or temporary. Usage errors are one line on stderr, before any traffic.
Heavy modules (rich rendering, aiosmtplib, dnspython, the lab) are imported only by the
commands that need them, so `--help` and `explain` start fast.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn, Optional

import typer

from .address import UsageError
from .knowledge import KnowledgeError
from .models import Stage

if TYPE_CHECKING:
    from .knowledge import KnowledgeBase

EXIT_USAGE = 2

class _InOrder(typer.core.TyperGroup):
    """List commands in the order they were registered, not alphabetically."""

    def list_commands(self, ctx: typer.Context) -> list[str]:  # type: ignore[override]
        return list(self.commands)


app = typer.Typer(
    cls=_InOrder,
    name="smtpprobe",
    help="Live SMTP connection tester that explains what mail servers say, and what to do.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

_STAGE_ALIASES = {
    "banner": Stage.CONNECT, "greeting": Stage.CONNECT, "helo": Stage.EHLO,
    "tls": Stage.STARTTLS, "mail from": Stage.MAIL, "mail_from": Stage.MAIL,
    "rcpt to": Stage.RCPT, "rcpt_to": Stage.RCPT, "end of data": Stage.DATA,
    "rset": Stage.QUIT,
}

LangOpt = Annotated[Optional[str], typer.Option(
    "--lang", help="Output language: de or en (default: from the locale, else en).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]
KnowledgeOpt = Annotated[Optional[Path], typer.Option(
    "--knowledge", help="Knowledge directory (default: $SMTPPROBE_KNOWLEDGE or the packaged one).",
    show_default=False)]


def fail_usage(message: str) -> NoReturn:
    sys.stderr.write(f"smtpprobe: error: {message}\n")
    raise typer.Exit(EXIT_USAGE)


def parse_stage(value: str | None) -> Stage | None:
    if value is None or value == "":
        return None
    key = value.strip().lower()
    if key in _STAGE_ALIASES:
        return _STAGE_ALIASES[key]
    try:
        return Stage(key)
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
    except KnowledgeError as exc:
        sys.stderr.write(f"smtpprobe: error: knowledge base: {exc}\n")
        sys.exit(EXIT_USAGE)
    except KeyboardInterrupt:
        sys.stderr.write("smtpprobe: interrupted\n")
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
