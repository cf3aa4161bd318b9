"""Text output with rich, the parts every command's view shares: a finding as a panel or a
line, the transcript, the console. The views themselves are text_check.py, text_sweep.py,
text_relay.py and text_explain.py. Secrets are not this layer's business: they were masked
where they can occur, in what a server said after our AUTH (net/session.py, core/redact.py).

Server text is always escaped where rich would read markup (a reply containing "[bold]" must
not restyle the terminal), or put into a Text, which reads none.
"""

from __future__ import annotations

from rich.console import Console, Group
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from smtpprobe.core.wire import shorten
from smtpprobe.models import Category, Finding, HostReport, Reply, Severity
from smtpprobe.report.transcript import Direction, plain, transcript_lines
from smtpprobe.report.words import has_text
from smtpprobe.report.words import text as t

SEVERITY_STYLE = {
    Severity.OK: "green", Severity.INFO: "cyan", Severity.WARNING: "yellow",
    Severity.ERROR: "red", Severity.CRITICAL: "bold red",
}
SEVERITY_MARK = {
    Severity.OK: "✓", Severity.INFO: "·", Severity.WARNING: "!", Severity.ERROR: "✗",
    Severity.CRITICAL: "✗",
}


def finding_panel(finding: Finding, lang: str, *, reply: Reply | None = None,
                  title: str | None = None) -> Panel:
    style = SEVERITY_STYLE[finding.severity]
    head = Text()
    head.append(finding_title(finding, lang), style=style)
    head.append(f"  ({finding.category})", style="dim")
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    good = finding.category in (Category.SUCCESS, Category.INTERMEDIATE)
    if not good:
        retry = t("retry.yes", lang) if finding.retryable else t("retry.no", lang)
        table.add_row(t("retry", lang),
                      Text(retry, style="green" if finding.retryable else "red"))
    table.add_row(t("stage", lang), stage_label(finding, lang))
    table.add_row(t("cause", lang), escape(finding.cause.get(lang)))
    if not good:
        table.add_row(t("remedy", lang), escape(finding.remedy.get(lang)))
    if finding.correction:
        table.add_row(t("correction", lang), escape(finding.correction.get(lang)))
    evidence = reply.render() if reply is not None and reply.lines else finding.evidence
    if evidence:
        label = t("server_said", lang) if finding.code is not None else t("detail", lang)
        table.add_row(label, Text(evidence, style="dim"))
    refs = " · ".join([finding.rule, *finding.references])
    table.add_row(t("rule", lang), Text(refs, style="dim"))
    codes = " ".join(x for x in (str(finding.code) if finding.code else "",
                                 finding.enhanced_code or "") if x)
    return Panel(Group(head, Text(""), table), title=title or codes or None,
                 title_align="left", border_style=style, expand=False)


def stage_label(finding: Finding, lang: str) -> str:
    """The stage of a finding as an admin names it (German: "RCPT TO (Empfänger)")."""
    if not finding.stage:
        return t("stage.none", lang)
    key = f"stage.{finding.stage}"
    return t(key, lang) if has_text(key) else str(finding.stage)


def finding_title(finding: Finding, lang: str) -> str:
    return finding.title.get(lang) if finding.title else str(finding.category)


def finding_line(finding: Finding, lang: str, *, prefix: str = "", width: int = 240) -> Text:
    """One line: mark, optional prefix (a port), title, category and the evidence (wrapped by
    the terminal; a long one is cut at a word and marked "…", never mid-word)."""
    style = SEVERITY_STYLE[finding.severity]
    line = Text(f" {SEVERITY_MARK[finding.severity]} ", style=style)
    if prefix:
        line.append(prefix, style="bold")
    line.append(finding_title(finding, lang), style=style)
    line.append(f" ({finding.category}): {shorten(finding.evidence, width)}", style="dim")
    return line


TRANSCRIPT_STYLE = {Direction.SENT: "cyan", Direction.NOTE: "dim", Direction.RECEIVED: "",
                    Direction.FAILED: "red"}


def transcript(host: HostReport) -> Text:
    """Both directions, swaks-like: '->' what we sent, '<-' what the server said (the lines
    of report/transcript.py, styled), under a heading that names the host."""
    out = Text()
    where = f"[{host.address}]" if ":" in host.address else host.address
    out.append(f"=== {host.host} {where}:{host.port}\n", style="bold")
    for line in transcript_lines(host.steps):
        out.append(plain(line) + "\n", style=TRANSCRIPT_STYLE[line[0]])
    return out


def console(*, stderr: bool = False, force_terminal: bool | None = None) -> Console:
    return Console(stderr=stderr, highlight=False, soft_wrap=False,
                   force_terminal=force_terminal)
