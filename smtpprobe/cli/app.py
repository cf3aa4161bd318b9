"""The typer app: the ordered, lazily imported command table, the root callback, main().

The command line: arguments -> options -> asyncio.run once -> report -> exit code.

Exit codes are one table in cli/exits.py. Usage errors are one line on stderr, before any
traffic.
Heavy modules (rich rendering, aiosmtplib, dnspython, the lab) are imported only by the
commands that need them, so `--help` and `explain` start fast.
"""

from __future__ import annotations

import importlib
import sys
from typing import TYPE_CHECKING, Annotated

import typer

from smtpprobe.cli import exits
from smtpprobe.errors import KnowledgeError, UsageError

if TYPE_CHECKING:
    # typer vendors click; its Command type is only named here, for the annotations.
    from typer._click.core import Command

# The commands in the order `smtpprobe --help` lists them (what users reach for first,
# first), each with the module that defines it as `app`, a one-command typer.Typer. A module
# is imported only when its command is run or listed (pip's commands_dict).
COMMANDS: tuple[tuple[str, str], ...] = (
    ("explain", "smtpprobe.cli.explain"),
    ("check", "smtpprobe.cli.check"),
    ("sweep", "smtpprobe.cli.sweep"),
    ("relay", "smtpprobe.cli.relay"),
    ("demo", "smtpprobe.cli.demo"),
    ("lab", "smtpprobe.cli.lab"),
    ("completion", "smtpprobe.cli.completion"),
)
_MODULES = dict(COMMANDS)


class _Commands(typer.core.TyperGroup):
    """The command table: listed in its order, each command built on first use."""

    def list_commands(self, ctx: typer.Context) -> list[str]:  # type: ignore[override]
        return [name for name, _ in COMMANDS]

    def get_command(self, ctx: typer.Context, cmd_name: str  # type: ignore[override]
                    ) -> Command | None:
        if cmd_name in self.commands:
            return self.commands[cmd_name]
        module_name = _MODULES.get(cmd_name)
        if module_name is None:
            return None
        module = importlib.import_module(module_name)
        command = typer.main.get_command(module.app)
        command.name = cmd_name
        self.commands[cmd_name] = command
        return command


app = typer.Typer(
    cls=_Commands,
    name="smtpprobe",
    help="Live SMTP connection tester that explains what mail servers say, and what to do.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    # -h as well as --help, on every command (click passes it on to sub-contexts).
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        from smtpprobe import __version__

        sys.stdout.write(f"smtpprobe {__version__}\n")
        raise typer.Exit(exits.OK)


@app.callback(epilog="Exit codes: 0 accepted or passed, 1 rejected or failed, 2 usage error, "
              "3 deferred, unreachable or temporary, 130 interrupted. "
              "Run 'smtpprobe COMMAND -h' for a command's options and examples.")
def _smtpprobe(
    version: Annotated[bool, typer.Option(
        "--version", "-V", help="Show the version and exit.", is_eager=True,
        callback=_version)] = False,
) -> None:
    """Live SMTP connection tester that explains what mail servers say, and what to do."""


# --- entry point ----------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    import os

    if os.environ.get("_SMTPPROBE_COMPLETE"):
        # The shell asks for completions (cli/completion.py): only now load typer's classes.
        from typer._completion_classes import completion_init

        completion_init()
    try:
        # Not click's standalone mode: its own usage errors (an unknown option, a value of the
        # wrong type) come back here, to be told in one line like ours.
        code = app(args=argv, prog_name="smtpprobe", complete_var="_SMTPPROBE_COMPLETE",
                   standalone_mode=False)
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
        sys.exit(exits.USAGE)
    except KnowledgeError as exc:
        sys.stderr.write(f"smtpprobe: error: knowledge base: {exc}\n")
        sys.exit(exits.USAGE)
    except KeyboardInterrupt:
        sys.stderr.write("smtpprobe: interrupted\n")
        sys.exit(exits.INTERRUPTED)
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

