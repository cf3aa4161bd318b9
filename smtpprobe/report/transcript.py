"""The transcript of a conversation as plain data, swaks-like: what we sent, what the server
said, what went wrong. The rich text (report/text.py: styles) and JUnit (plain text) both
draw it from here, so the two never disagree about a step. Pure: no rich.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from smtpprobe.models import Step


class Direction(StrEnum):
    SENT = "sent"  # a command we sent
    NOTE = "note"  # our own doing that is not a command: "(connect to ...)", "(TLS handshake)"
    RECEIVED = "received"  # one line of a server's reply
    FAILED = "failed"  # a step that got no usable reply


PREFIX = {Direction.SENT: " -> ", Direction.NOTE: " == ", Direction.RECEIVED: "<-  ",
          Direction.FAILED: " ** "}

Line = tuple[Direction, str]


def transcript_lines(steps: Iterable[Step]) -> list[Line]:
    """Each step as lines: the command (a note when it is in parentheses), then every line of
    the reply as it travelled on the wire, or the failure."""
    lines: list[Line] = []
    for step in steps:
        if step.command:
            lines.append((Direction.NOTE if step.command.startswith("(") else Direction.SENT,
                          step.command))
        if step.reply is not None:
            lines += [(Direction.RECEIVED, line) for line in step.reply.render().split("\n")]
        elif step.failure is not None:
            lines.append((Direction.FAILED, f"{step.failure.kind}: {step.failure.detail}"))
    return lines


def plain(line: Line) -> str:
    direction, words = line
    return PREFIX[direction] + words
