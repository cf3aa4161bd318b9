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

    from smtpprobe.cli.startup import HeadStart

# The commands in the order `smtpprobe --help` lists them (what users reach for first,
# first), each with the module that defines it as `app`, a one-command typer.Typer. A module
# is imported only when its command is run or listed (pip's commands_dict).
COMMANDS: tuple[tuple[str, str], ...] = (
    ("explain", "smtpprobe.cli.explain"),
    ("check", "smtpprobe.cli.check"),
    ("sweep", "smtpprobe.cli.sweep"),
    ("relay", "smtpprobe.cli.relay"),
    ("whoami", "smtpprobe.cli.whoami"),
    ("domain", "smtpprobe.cli.domain"),
    ("exporter", "smtpprobe.cli.exporter"),
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
        if isinstance(command, (typer.core.TyperCommand, typer.core.TyperGroup)):
            command.rich_markup_mode = None  # click's plain help: see `app` below
        self.commands[cmd_name] = command
        return command


app = typer.Typer(
    cls=_Commands,
    name="smtpprobe",
    help="Live SMTP connection tester that explains what mail servers say, and what to do.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    # Help in click's plain layout: typer's rich layout imports rich's Markdown, Syntax and
    # Traceback modules, about 150 ms before the first line (docs/performance.md).
    rich_markup_mode=None,
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


def main(argv: list[str] | None = None, *, head: HeadStart | None = None) -> None:
    """The command line. `head`: check's head start (cli/startup.py), handed to the command
    as the context's `obj`."""
    import os

    if os.environ.get("_SMTPPROBE_COMPLETE"):
        # The shell asks for completions (cli/completion.py): only now load typer's classes.
        from typer._completion_classes import completion_init

        completion_init()
    from smtpprobe.cli.nagios import nagios_mode, nagios_unknown

    # --nagios: whatever keeps the check from running is the plugin's UNKNOWN (exit 3), told
    # in its status line on stdout (cli/nagios.py), as well as here on stderr.
    nagios = nagios_mode(sys.argv[1:] if argv is None else argv)
    try:
        # Not click's standalone mode: its own usage errors (an unknown option, a value of the
        # wrong type) come back here, to be told in one line like ours.
        code = app(args=argv, prog_name="smtpprobe", complete_var="_SMTPPROBE_COMPLETE",
                   standalone_mode=False, obj=head)
    except typer.TyperException as exc:
        message = " ".join(exc.format_message().split())
        if message:  # empty when there were no arguments at all: the help was shown
            sys.stderr.write(f"smtpprobe: error: {message}\n")
        sys.exit(nagios_unknown(message) if nagios else exc.exit_code)
    except typer.Abort:
        sys.stderr.write("smtpprobe: aborted\n")
        sys.exit(nagios_unknown("aborted") if nagios else 1)
    except UsageError as exc:
        sys.stderr.write(f"smtpprobe: error: {exc}\n")
        sys.exit(nagios_unknown(str(exc)) if nagios else exits.USAGE)
    except KnowledgeError as exc:
        sys.stderr.write(f"smtpprobe: error: knowledge base: {exc}\n")
        sys.exit(nagios_unknown(f"knowledge base: {exc}") if nagios else exits.USAGE)
    except KeyboardInterrupt:
        sys.stderr.write("smtpprobe: interrupted\n")
        sys.exit(nagios_unknown("interrupted") if nagios else exits.INTERRUPTED)
    except Exception as exc:
        if not nagios:
            raise
        # A fault of smtpprobe itself: a plugin says UNKNOWN, never a traceback's exit 1.
        sys.exit(nagios_unknown(f"internal error: {type(exc).__name__}"))
    sys.exit(code if isinstance(code, int) else 0)


def entry() -> None:
    """The console script of older installs: start-up is cli/startup.py's."""
    from smtpprobe.cli.startup import entry as start

    start()
