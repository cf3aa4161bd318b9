"""Text output of `sweep` and `relay` with rich, in English or German.

Server text is escaped and passed through the redactor, like render.py does for `check`.
"""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from smtpprobe.core.redact import Redactor
from smtpprobe.models import (
    AuthResult,
    CheckStatus,
    HostReport,
    PortReport,
    PortState,
    RelayCheck,
    RelayReport,
    RelayVerdict,
    Severity,
    Step,
    SweepReport,
    TlsInfo,
)
from smtpprobe.report.submit import mechanism_label, note_text, reason_text
from smtpprobe.report.submit import text as t
from smtpprobe.report.text import SEVERITY_STYLE as _STYLE
from smtpprobe.report.text import finding_line, finding_panel, finding_title, transcript

# --- sweep -------------------------------------------------------------------------------------


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
        return Text(t("none", lang), style="dim")
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


def recommendation_panel(report: SweepReport, lang: str, redact: Redactor) -> Panel:
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
            grid.add_row(t("rec.user", lang), redact(report.user))
    why = Text("\n".join(redact(reason_text(r, lang)) for r in rec.reasons))
    if rec.reasons:
        grid.add_row(t("rec.why", lang), why)
    if not rec.usable and rec.finding is not None:
        finding = rec.finding
        grid.add_row(t("rec.cause", lang), Text(
            f"{finding_title(finding, lang)}: {redact(finding.cause.get(lang))}"))
        grid.add_row(t("rec.remedy", lang), Text(redact(finding.remedy.get(lang))))
        if finding.evidence:
            grid.add_row(t("label.server_said", lang), Text(redact(finding.evidence),
                                                             style="dim"))
    title = t("rec.title", lang) if rec.usable else t("rec.none", lang)
    style = ("green" if rec.tested else "cyan") if rec.usable else "red"
    return Panel(grid, title=title, title_align="left", border_style=style, expand=False)


def _host(report: PortReport) -> HostReport:
    return HostReport(host=report.host, address=report.address, port=report.port,
                      steps=report.steps, tls=report.tls)


def sweep_view(report: SweepReport, lang: str, redact: Redactor, *,
               verbose: bool = False) -> RenderableType:
    parts: list[RenderableType] = []
    head = Text(t("sweep.title", lang, host=report.host), style="bold underline")
    if report.addresses:
        head.append("  (" + t("sweep.address", lang, address=report.addresses[0]) + ")",
                    style="dim")
    parts.append(head)
    if report.ports:
        parts.append(sweep_table(report, lang))
    problems = [(p.port, f) for p in report.ports for f in p.findings
                if f.severity not in (Severity.OK,)]
    if report.dns_failure is not None:
        problems.insert(0, (0, report.dns_failure))
    if problems:
        parts.append(Text(t("sweep.findings", lang), style="bold"))
        for port, finding in problems:
            parts.append(finding_line(finding, lang, redact,
                                      prefix=f"{port}: " if port else "", width=120))
    if verbose:
        parts.append(Text(t("label.transcript", lang), style="bold"))
        parts.extend(transcript(_host(p), redact) for p in report.ports)
    parts.append(recommendation_panel(report, lang, redact))
    parts.append(Text(t("sweep.elapsed", lang, ms=f"{report.elapsed_ms:.0f}"), style="dim"))
    return Group(*parts)


# --- relay -------------------------------------------------------------------------------------


def check_label(check: RelayCheck, lang: str) -> str:
    name = t(f"check.{check.name}", lang)
    return f"{name} {check.subject}" if check.subject else name


def _status(check: RelayCheck, lang: str) -> Text:
    if check.status is CheckStatus.PASS:
        return Text(t("status.pass", lang), style="green")
    if check.status is CheckStatus.SKIP:
        return Text(t("status.skip", lang), style="dim")
    if check.temporary:
        return Text(t("status.temporary", lang), style="bold yellow")
    return Text(t("status.fail", lang), style="bold red")


def _check_detail(check: RelayCheck, lang: str, redact: Redactor) -> Text:
    out = Text()
    if check.status is CheckStatus.SKIP and check.note is not None:
        out.append(redact(note_text(check.note, lang)), style="dim")
        return out
    if check.finding is not None:
        out.append(finding_title(check.finding, lang),
                   style="" if check.status is CheckStatus.PASS else
                   _STYLE[check.finding.severity])
    if check.note is not None:
        out.append(("  " if out else "") + redact(note_text(check.note, lang)), style="dim")
        return out
    # The server's own words: the reply the finding rests on, or for an observation (open
    # relay, certificate) the last reply of the check; else the finding's evidence.
    replied = [s for s in check.steps if s.reply is not None]
    step = next((s for s in replied if s.finding is not None and s.finding == check.finding),
                replied[-1] if replied else None)
    said = step.reply.first_line if step is not None and step.reply is not None else (
        check.finding.evidence if check.finding is not None else "")
    if step is not None and step.reply is not None and step.reply.code is not None:
        said = f"{step.reply.code} {said}"
    if said:
        out.append("  " + redact(said)[:140], style="dim")
    return out


def _all_steps(report: RelayReport) -> tuple[Step, ...]:
    return tuple(s for c in report.checks for s in c.steps)


def relay_view(report: RelayReport, lang: str, redact: Redactor, *,
               verbose: bool = False) -> RenderableType:
    where = f"[{report.address}]" if ":" in report.address else report.address
    server = f"{report.host}:{report.port}"
    head = Text(t("relay.title", lang, server=server), style="bold underline")
    if report.address and report.address != report.host:
        head.append(f"  ({where}, {t(f'mode.{report.mode.value}', lang)})", style="dim")
    else:
        head.append(f"  ({t(f'mode.{report.mode.value}', lang)})", style="dim")
    parts: list[RenderableType] = [head]
    grid = Table.grid(padding=(0, 1))
    for _ in range(4):
        grid.add_column()
    for check in report.checks:
        if check.status is CheckStatus.PASS:
            mark = Text("✓", style="green")
        elif check.status is CheckStatus.SKIP:
            mark = Text("·", style="dim")
        else:
            mark = Text("!" if check.temporary else "✗",
                        style="yellow" if check.temporary else "red")
        grid.add_row(mark, Text(redact(check_label(check, lang))), _status(check, lang),
                     _check_detail(check, lang, redact))
    parts.append(grid)
    if verbose:
        parts.append(Text(t("label.transcript", lang), style="bold"))
        parts.append(transcript(HostReport(host=report.host, address=report.address,
                                           port=report.port, steps=_all_steps(report),
                                           tls=report.tls), redact))
    verdict = Text(f"{t('relay.verdict', lang)}: ", style="bold")
    style = {RelayVerdict.PASS: "bold green", RelayVerdict.FAIL: "bold red",
             RelayVerdict.TEMPORARY: "bold yellow"}[report.verdict]
    verdict.append(t(f"verdict.{report.verdict.value}", lang), style=style)
    parts.append(verdict)
    failed = [c for c in report.checks if c.status is CheckStatus.FAIL and c.finding]
    for check in failed:
        assert check.finding is not None
        reply = next((s.reply for s in reversed(check.steps) if s.reply is not None), None)
        parts.append(finding_panel(check.finding, lang, redact, reply=reply,
                                   title=redact(check_label(check, lang))))
    return Group(*parts)
