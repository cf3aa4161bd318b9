"""The command line. Each command lives in its own module (cmd_*.py) and registers itself on
the shared typer app (cliapp.py) when imported; heavy modules load inside the commands."""

from __future__ import annotations

# Importing a command module registers its command (cliapp.COMMAND_ORDER orders the help).
from . import cmd_check, cmd_demo, cmd_explain, cmd_relay, cmd_sweep  # noqa: F401
from .cliapp import app, entry, main

__all__ = ["app", "entry", "main"]
