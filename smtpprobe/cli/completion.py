"""`smtpprobe completion SHELL`: the shell's completion script, to source or save.

Completion itself runs through click's protocol (the shell calls `smtpprobe` with
`_SMTPPROBE_COMPLETE` set; `cli.app.main` loads typer's completion classes only then), so it
costs the other commands nothing at start-up.
"""

from __future__ import annotations

import sys
from enum import StrEnum
from typing import Annotated

import typer

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)

COMPLETE_VAR = "_SMTPPROBE_COMPLETE"


class Shell(StrEnum):
    bash = "bash"
    zsh = "zsh"
    fish = "fish"
    powershell = "powershell"


@app.command(epilog="Examples: eval \"$(smtpprobe completion bash)\" in ~/.bashrc; "
             "smtpprobe completion fish > ~/.config/fish/completions/smtpprobe.fish")
def completion(
    shell: Annotated[Shell, typer.Argument(help="The shell to complete for.",
                                           case_sensitive=False)],
) -> None:
    """Print the shell completion script for smtpprobe."""
    from typer._completion_shared import get_completion_script

    sys.stdout.write(get_completion_script(prog_name="smtpprobe", complete_var=COMPLETE_VAR,
                                           shell=shell.value) + "\n")
