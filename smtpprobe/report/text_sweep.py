"""Text output of `sweep` with rich: the port table, the problems found and the settings to
type into a mail program; with -v the transcripts."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from smtpprobe.models import (
    AuthResult,
    HostReport,
    PortReport,
    PortState,
    Severity,
    SweepReport,
    TlsInfo,
)
from smtpprobe.report.text import finding_line, finding_title, transcript
from smtpprobe.report.words import mechanism_label, reason_text
from smtpprobe.report.words import text as t


def _cert_cell(tls: TlsInfo | None, lang: str) -> Text:
    if tls is None:
        return Text(t("dash", lang), style="dim")
    if tls.days_left is not None and tls.days_left < 0:
        return Text(t("cert.expired", lang), style="red")
    if not tls.verified:
        return Text(t("cert.untrusted", lang), style="yellow")
    if tls.name_matches is False:
        return Text(t("cert.name", lang), style="yellow")
    days = tls.days_left if tls.days_left is not None else "?"
    return Text(t("cert.ok", lang, days=days),
                style="green" if (tls.days_left or 0) >= 14 else "yellow")


def _mechs_cell(mechs: tuple[str, ...] | None, lang: str) -> Text:
    if mechs is None:
        return Text(t("dash", lang), style="dim")
    if not mechs:
        return Text(t("mech.none", lang), style="dim")
    return Text(" ".join(mechs))


def _auth_cell(report: PortReport, lang: str) -> Text:
    auth = report.auth
    if auth.result is AuthResult.NOT_TRIED:
        return Text(t("auth.not_tried", lang), style="dim")
    if auth.result is AuthResult.OK:
        return Text(t("auth.ok", lang, mechanism=auth.mechanism or "?"), style="green")
    style = "yellow" if auth.result in (AuthResult.WITHHELD, AuthResult.NOT_OFFERED,
                                        AuthResult.TEMPORARY) else "red"
    return Text(t(f"auth.{auth.result.value}", lang), style=style)


def _reach_cell(report: PortReport, lang: str) -> Text:
    style = "green" if report.state is PortState.OPEN else (
        "yellow" if report.state in (PortState.FILTERED, PortState.SILENT) else "red")
    return Text(t(f"state.{report.state.value}", lang), style=style)


def sweep_table(report: SweepReport, lang: str) -> Table:
    table = Table(show_edge=False, pad_edge=False, header_style="bold")
    for key in ("col.port", "col.mode", "col.reachable", "col.tls", "col.cert",
                "col.auth_before", "col.auth_after", "col.login"):
        table.add_column(t(key, lang))
    for port in report.ports:
        before = port.capabilities_before_tls
        after = port.capabilities_after_tls
        tls = Text(port.tls.version, style="green") if port.tls is not None else Text(
            t("dash", lang), style="dim")
        table.add_row(
            str(port.port), t(f"mode.{port.mode.value}", lang), _reach_cell(port, lang), tls,
            _cert_cell(port.tls, lang),
            _mechs_cell(before.auth_mechanisms if before is not None else None, lang),
            _mechs_cell(after.auth_mechanisms if after is not None else None, lang),
            _auth_cell(port, lang),
        )
    return table


def recommendation_panel(report: SweepReport, lang: str) -> Panel:
    rec = report.recommendation
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column()
    if rec.usable:
        grid.add_row(t("rec.server", lang), rec.host)
        grid.add_row(t("rec.port", lang), str(rec.port))
        security = rec.mode.value if rec.mode is not None else "plain"
        grid.add_row(t("rec.security", lang), t(f"security.{security}", lang))
        grid.add_row(t("rec.auth", lang), mechanism_label(rec.mechanism, lang))
        if report.user:
            grid.add_row(t("rec.user", lang), report.user)
    why = Text("\n".join(reason_text(r, lang) for r in rec.reasons))
    if rec.reasons:
        grid.add_row(t("rec.why", lang), why)
    if not rec.usable and rec.finding is not None:
        finding = rec.finding
        grid.add_row(t("rec.cause", lang), Text(
            f"{finding_title(finding, lang)}: {finding.cause.get(lang)}"))
        grid.add_row(t("rec.remedy", lang), Text(finding.remedy.get(lang)))
        if finding.evidence:
            grid.add_row(t("server_said", lang), Text(finding.evidence, style="dim"))
    title = t("rec.title", lang) if rec.usable else t("rec.none", lang)
    style = ("green" if rec.tested else "cyan") if rec.usable else "red"
    return Panel(grid, title=title, title_align="left", border_style=style, expand=False)


def _host(report: PortReport) -> HostReport:
    return HostReport(host=report.host, address=report.address, port=report.port,
                      steps=report.steps, tls=report.tls)


def sweep_view(report: SweepReport, lang: str, *,
               verbose: bool = False) -> RenderableType:
    """The port table, the problems found, with -v the transcripts, and the settings."""
    parts: list[RenderableType] = []
    head = Text(t("sweep.title", lang, host=report.host), style="bold underline")
    used = report.address or (report.addresses[0] if report.addresses else None)
    if used:
        head.append("  (" + t("sweep.address", lang, address=used) + ")",
                    style="dim")
    parts.append(head)
    if report.ports:
        parts.append(sweep_table(report, lang))
    problems = [(p.port, f) for p in report.ports for f in p.findings
                if f.severity not in (Severity.OK,)]
    if report.dns_failure is not None:
        problems.insert(0, (0, report.dns_failure))
    problems[:0] = [(0, f) for f in report.address_findings]
    if problems:
        parts.append(Text(t("findings", lang), style="bold"))
        for port, finding in problems:
            parts.append(finding_line(finding, lang, prefix=f"{port}: " if port else ""))
    if verbose:
        parts.append(Text(t("transcript", lang), style="bold"))
        parts.extend(transcript(_host(p)) for p in report.ports)
    parts.append(recommendation_panel(report, lang))
    parts.append(Text(t("elapsed", lang, ms=f"{report.elapsed_ms:.0f}"), style="dim"))
    return Group(*parts)
