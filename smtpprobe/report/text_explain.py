"""Text output of `explain` with rich: the finding's panel (report/text.py draws it, because
check and relay show the same panel for their decisive findings) with the pasted reply as the
server's words, and above it what a pasted bounce says besides: the address that bounced and
the server that wrote the bounce. Its own module so that `explain` loads nothing of the other
commands' views."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from smtpprobe.models import Finding, Reply
from smtpprobe.report.text import finding_panel
from smtpprobe.report.words import text as t


def explain_view(finding: Finding, reply: Reply, lang: str, *, recipient: str | None = None,
                 reporting_host: str | None = None) -> RenderableType:
    panel = finding_panel(finding, lang, reply=reply)
    if not recipient and not reporting_host:
        return panel
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold", no_wrap=True)
    facts.add_column()
    if recipient:
        facts.add_row(t("explain.recipient", lang), Text(recipient))
    if reporting_host:
        facts.add_row(t("explain.reporting_host", lang), Text(reporting_host))
    return Group(facts, panel)
