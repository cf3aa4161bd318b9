"""Text output of `domain` with rich: a compact table (check, subject, status, one-line
summary), the counts, then one panel per finding that is not ok, with cause and remedy."""

from __future__ import annotations

from collections.abc import Mapping

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from smtpprobe.core.wire import shorten
from smtpprobe.models import DomainCheck, DomainReport, HealthStatus
from smtpprobe.report.text import finding_panel
from smtpprobe.report.words import has_text
from smtpprobe.report.words import text as t

STATUS_STYLE = {
    HealthStatus.OK: "green", HealthStatus.WARN: "bold yellow", HealthStatus.FAIL: "bold red",
    HealthStatus.INFO: "cyan", HealthStatus.UNKNOWN: "magenta",
}
STATUS_MARK = {
    HealthStatus.OK: "✓", HealthStatus.WARN: "!", HealthStatus.FAIL: "✗",
    HealthStatus.INFO: "·", HealthStatus.UNKNOWN: "?",
}


def check_name(check_id: str, lang: str) -> str:
    key = f"domain.check.{check_id}"
    return t(key, lang) if has_text(key) else check_id


def status_text(status: HealthStatus, lang: str) -> Text:
    return Text(t(f"domain.status.{status.value}", lang), style=STATUS_STYLE[status])


def _row_label(check: DomainCheck, lang: str) -> str:
    return f"{check_name(check.id, lang)}: {check.subject}"


def _facts(details: Mapping[str, object]) -> str:
    """A check's details as one line: `key=value; ...` (lists joined by commas)."""
    parts = []
    for key, value in details.items():
        if isinstance(value, (list, tuple)):
            value = ", ".join(str(v) for v in value) or "-"
        elif isinstance(value, Mapping):
            value = ", ".join(f"{k}: {v}" for k, v in value.items()) or "-"
        parts.append(f"{key}={value}")
    return "; ".join(parts)


def domain_view(report: DomainReport, lang: str, *, verbose: bool = False) -> RenderableType:
    """The table, the counts, a panel per finding that is not ok; -v adds each check's
    facts under its row."""
    shown = report.domain if report.domain == report.ascii_domain \
        else f"{report.domain} ({report.ascii_domain})"
    parts: list[RenderableType] = [Text(t("domain.title", lang, domain=shown),
                                        style="bold underline")]
    table = Table(box=None, padding=(0, 1), show_edge=False, header_style="bold")
    table.add_column("")
    table.add_column(t("domain.col.check", lang), no_wrap=True)
    table.add_column(t("domain.col.subject", lang), no_wrap=True)
    table.add_column(t("domain.col.status", lang), no_wrap=True)
    table.add_column(t("domain.col.summary", lang))
    for check in report.checks:
        table.add_row(Text(STATUS_MARK[check.status], style=STATUS_STYLE[check.status]),
                      check_name(check.id, lang), check.subject,
                      status_text(check.status, lang),
                      Text(shorten(check.summary.get(lang), 120)))
        if verbose and check.details:
            table.add_row("", "", "", "", Text(shorten(_facts(check.details), 400),
                                               style="dim"))
    parts.append(table)
    counts = report.counts()
    parts.append(Text(t("domain.counts", lang, seconds=report.elapsed_ms / 1000, **counts),
                      style="bold"))
    troubled = [c for c in report.checks if c.status is not HealthStatus.OK and c.finding]
    if troubled:
        parts.append(Text(t("domain.findings", lang), style="bold"))
    seen: set[tuple[str, str]] = set()
    for check in troubled:
        assert check.finding is not None
        # The same finding for several subjects (every check skipped after a failed MX
        # lookup) is explained once.
        key = (check.finding.rule, check.finding.evidence)
        if key in seen:
            continue
        seen.add(key)
        parts.append(finding_panel(check.finding, lang, title=_row_label(check, lang)))
    return Group(*parts)
