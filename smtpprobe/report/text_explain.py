"""Text output of `explain` with rich: the finding's panel (report/text.py draws it, because
check and relay show the same panel for their decisive findings) with the pasted reply as the
server's words. Its own module so that every command's view is the one place where its report
is scrubbed of secrets, and `explain` loads nothing of the other commands' views."""

from __future__ import annotations

from rich.panel import Panel

from smtpprobe.core.redact import Redactor
from smtpprobe.models import Finding, Reply
from smtpprobe.report.redaction import scrub
from smtpprobe.report.text import finding_panel


def explain_view(finding: Finding, reply: Reply, lang: str, redactor: Redactor) -> Panel:
    finding, reply = scrub((finding, reply), redactor)
    return finding_panel(finding, lang, reply=reply)
