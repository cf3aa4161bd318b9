"""Text output with rich: readable at a glance, in English or German.

Server text is always escaped (a reply containing "[bold]" must not restyle the terminal) and
passed through the redactor.
"""

from __future__ import annotations

from rich.console import Console, Group, RenderableType
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from smtpprobe.core.redact import Redactor
from smtpprobe.models import (
    AddressStatus,
    Category,
    CheckReport,
    Finding,
    HostReport,
    MxHost,
    Reply,
    Severity,
    Step,
    TlsInfo,
)
from smtpprobe.report.words import text as t

SEVERITY_STYLE = {
    Severity.OK: "green", Severity.INFO: "cyan", Severity.WARNING: "yellow",
    Severity.ERROR: "red", Severity.CRITICAL: "bold red",
}
SEVERITY_MARK = {
    Severity.OK: "✓", Severity.INFO: "·", Severity.WARNING: "!", Severity.ERROR: "✗",
    Severity.CRITICAL: "✗",
}


def _safe(value: str, redact: Redactor) -> str:
    return escape(redact(value))


def finding_panel(finding: Finding, lang: str, redact: Redactor, *,
                  reply: Reply | None = None, title: str | None = None) -> Panel:
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
    table.add_row(t("stage", lang), str(finding.stage) if finding.stage else t("stage.none", lang))
    table.add_row(t("cause", lang), _safe(finding.cause.get(lang), redact))
    if not good:
        table.add_row(t("remedy", lang), _safe(finding.remedy.get(lang), redact))
    if finding.correction:
        table.add_row(t("correction", lang), _safe(finding.correction.get(lang), redact))
    evidence = reply.render() if reply is not None and reply.lines else finding.evidence
    if evidence:
        label = t("server_said", lang) if finding.code is not None else t("detail", lang)
        table.add_row(label, Text(redact(evidence), style="dim"))
    refs = " · ".join([finding.rule, *finding.references])
    table.add_row(t("rule", lang), Text(refs, style="dim"))
    codes = " ".join(x for x in (str(finding.code) if finding.code else "",
                                 finding.enhanced_code or "") if x)
    return Panel(Group(head, Text(""), table), title=title or codes or None,
                 title_align="left", border_style=style, expand=False)


def finding_title(finding: Finding, lang: str) -> str:
    return finding.title.get(lang) if finding.title else str(finding.category)


def finding_line(finding: Finding, lang: str, redact: Redactor, *, prefix: str = "",
                 width: int = 100) -> Text:
    """One line: mark, optional prefix (a port), title, category and the evidence."""
    style = SEVERITY_STYLE[finding.severity]
    line = Text(f" {SEVERITY_MARK[finding.severity]} ", style=style)
    if prefix:
        line.append(prefix, style="bold")
    line.append(finding_title(finding, lang), style=style)
    line.append(f" ({finding.category}): {redact(finding.evidence)[:width]}", style="dim")
    return line


def _step_line(step: Step, lang: str, redact: Redactor) -> list[RenderableType]:
    finding = step.finding
    severity = finding.severity if finding else Severity.OK
    if step.reply is None and step.failure is None:
        mark, style, code, said = "·", "dim", "", t("no_reply_awaited", lang)
    elif step.failure is not None:
        mark, style = SEVERITY_MARK[severity], SEVERITY_STYLE[severity]
        code, said = step.failure.kind.value, step.failure.detail
    else:
        assert step.reply is not None
        mark, style = SEVERITY_MARK[severity], SEVERITY_STYLE[severity]
        code = " ".join(x for x in (str(step.reply.code or "???"), step.reply.enhanced or "") if x)
        said = step.reply.first_line
        if step.reply.enhanced and said.startswith(step.reply.enhanced):
            said = said[len(step.reply.enhanced):].strip()
    ms = f"{step.elapsed_ms:.1f} ms" if step.reply or step.failure else ""
    return [Text(mark, style=style), Text(str(step.stage)), Text(code, style=style),
            Text(ms, style="dim"), Text(redact(said)[:110], style="dim" if severity is
                                       Severity.OK else style)]


def _tls_line(tls: TlsInfo | None, lang: str) -> Text:
    if tls is None:
        return Text(t("tls.none", lang), style="yellow")
    out = Text(f"{tls.version}, {tls.cipher}; ")
    out.append(t("tls.verified", lang) if tls.verified else t("tls.unverified", lang),
               style="green" if tls.verified else "yellow")
    if tls.name_matches is not None:
        out.append(", ")
        out.append(t("tls.names_ok", lang) if tls.name_matches else t("tls.names_bad", lang),
                   style="green" if tls.name_matches else "yellow")
    if tls.days_left is not None:
        out.append(", " + t("tls.days", lang, days=tls.days_left),
                   style="green" if tls.days_left >= 14 else "yellow")
    if tls.issuer:
        out.append(f" ({tls.issuer})", style="dim")
    return out


def host_block(host: HostReport, lang: str, redact: Redactor) -> RenderableType:
    table = Table.grid(padding=(0, 1))
    for _ in range(5):
        table.add_column()
    for step in host.steps:
        table.add_row(*_step_line(step, lang, redact))
    where = f"[{host.address}]" if ":" in host.address else host.address
    title = Text(f"{host.host} {where}:{host.port}" if host.host != host.address
                 else f"{where}:{host.port}", style="bold")
    tls = Text(f"  {t('tls', lang)}: ")
    tls.append_text(_tls_line(host.tls, lang))
    return Group(title, table, tls)


def transcript(host: HostReport, redact: Redactor) -> RenderableType:
    """Both directions, swaks-like: '->' what we sent, '<-' what the server said."""
    out = Text()
    where = f"[{host.address}]" if ":" in host.address else host.address
    out.append(f"=== {host.host} {where}:{host.port}\n", style="bold")
    for step in host.steps:
        if step.command and not step.command.startswith("("):
            out.append(f" -> {redact(step.command)}\n", style="cyan")
        elif step.command:
            out.append(f" == {redact(step.command)}\n", style="dim")
        if step.reply is not None:
            for line in step.reply.render().split("\n"):
                out.append(f"<-  {redact(line)}\n")
        elif step.failure is not None:
            out.append(f" ** {step.failure.kind}: {redact(step.failure.detail)}\n", style="red")
    return out


def check_view(report: CheckReport, lang: str, redact: Redactor, *,
               verbose: bool = False) -> RenderableType:
    parts: list[RenderableType] = [Text(report.address, style="bold underline")]
    mx = Text(f"{t('mx', lang)}: ")
    if report.mx.hosts:
        def where(host: MxHost) -> str:
            return ", ".join(host.addresses) or (host.failure.kind if host.failure else "-")

        mx.append(", ".join(f"{h.preference} {h.name} ({where(h)})" for h in report.mx.hosts))
        if any(h.implicit for h in report.mx.hosts):
            mx.append(f"  [{t('mx.implicit', lang)}]", style="dim")
    else:
        mx.append(t("mx.none", lang), style="yellow")
    parts.append(mx)
    for host in report.hosts:
        parts.append(host_block(host, lang, redact))
    if verbose:
        parts.append(Text(t("transcript", lang), style="bold"))
        parts.extend(transcript(h, redact) for h in report.hosts)
    verdict = Text(f"{t('verdict', lang)}: ", style="bold")
    style = {"accepted": "bold green", "rejected": "bold red", "deferred": "bold yellow",
             "unreachable": "bold yellow"}[report.verdict.value]
    verdict.append(t(f"verdict.{report.verdict.value}", lang), style=style)
    parts.append(verdict)
    status_key = ("status.prober" if report.address_status is AddressStatus.UNKNOWN
                  and report.finding.about_prober else f"status.{report.address_status.value}")
    parts.append(Text(f"{t('status', lang)}: {t(status_key, lang)}"))
    parts.append(finding_panel(report.finding, lang, redact))
    others = [f for f in report.findings
              if (f.rule, f.evidence) != (report.finding.rule, report.finding.evidence)]
    if others:
        parts.append(Text(t("findings", lang), style="bold"))
        for finding in others:
            parts.append(finding_line(finding, lang, redact))
            parts.append(Text(f"     {redact(finding.remedy.get(lang))}"))
    parts.append(Text(t("elapsed", lang, ms=f"{report.elapsed_ms:.0f}"), style="dim"))
    return Group(*parts)


def console(*, stderr: bool = False, force_terminal: bool | None = None) -> Console:
    return Console(stderr=stderr, highlight=False, soft_wrap=False,
                   force_terminal=force_terminal)
