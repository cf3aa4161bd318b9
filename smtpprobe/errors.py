"""smtpprobe's own faults, as opposed to what servers and DNS do (those are data: `Failure`).

Imports nothing, so every layer can raise and catch these without loading anything else.
"""


class UsageError(ValueError):
    """Bad input from the user: one line, shown as it is, exit code 2."""


class KnowledgeError(Exception):
    """The knowledge base is missing or broken; the message names the file and rule."""


class UnsafeCommand(ValueError):
    """Command text with a control character: our own fault, never sent (SMTP injection)."""
