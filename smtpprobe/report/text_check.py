"""Text output of `check` with rich: the mail hosts, one block per conversation, the verdict
and the decisive finding; with -v the transcripts."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from smtpprobe.core.verdict import Transaction
from smtpprobe.core.wire import shorten
from smtpprobe.models import (
    AddressStatus,
    CheckReport,
    HostReport,
    InvalidInput,
    Lookup,
    MxHost,
    Severity,
    Step,
    TlsInfo,
)
from smtpprobe.report.text import (
    SEVERITY_MARK,
    SEVERITY_STYLE,
    finding_line,
    finding_panel,
    finding_title,
    transcript,
)
from smtpprobe.report.words import has_text
from smtpprobe.report.words import text as t


def _step_line(step: Step, lang: str, *, expected: bool = False) -> list[RenderableType]:
    """One row of a host's steps; `expected`: a refusal we asked for (the made-up address of
    the catch-all test), shown as information, not as an error."""
    finding = step.finding
    severity = finding.severity if finding else Severity.OK
    if expected:
        severity = Severity.INFO
    if step.reply is None and step.failure is None:
        mark, style, code, said = "·", "dim", "", t("no_reply_awaited", lang)
    elif step.failure is not None:
        mark, style = SEVERITY_MARK[severity], SEVERITY_STYLE[severity]
        # German names the failure by its finding's title, not by the kind's identifier.
        code = (finding_title(finding, lang) if lang != "en" and finding is not None
                else step.failure.kind.value)
        said = step.failure.detail
    else:
        assert step.reply is not None
        mark, style = SEVERITY_MARK[severity], SEVERITY_STYLE[severity]
        code = " ".join(x for x in (str(step.reply.code or "???"), step.reply.enhanced or "") if x)
        said = step.reply.first_line
        if step.reply.enhanced and said.startswith(step.reply.enhanced):
            said = said[len(step.reply.enhanced):].strip()
    ms = f"{step.elapsed_ms:.1f} ms" if step.reply or step.failure else ""
    stage = f"stage.{step.stage}"
    return [Text(mark, style=style), Text(t(stage, lang) if has_text(stage) else str(step.stage)),
            Text(code, style=style),
            Text(ms, style="dim"), Text(shorten(said, 110), style="dim" if severity is
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


def host_block(host: HostReport, lang: str, *, probe_refused: bool = False) -> RenderableType:
    """A host's steps; `probe_refused`: the run found no catch-all, so the second RCPT (the
    made-up address) was refused as hoped."""
    table = Table.grid(padding=(0, 1))
    for _ in range(5):
        table.add_column()
    rcpts = Transaction.of(host.steps).rcpts if probe_refused else ()
    probe = rcpts[1] if len(rcpts) > 1 else None
    for step in host.steps:
        table.add_row(*_step_line(step, lang, expected=step is probe))
    where = f"[{host.address}]" if ":" in host.address else host.address
    title = Text(f"{host.host} {where}:{host.port}" if host.host != host.address
                 else f"{where}:{host.port}", style="bold")
    tls = Text(f"  {t('tls', lang)}: ")
    tls.append_text(_tls_line(host.tls, lang))
    return Group(title, table, tls)


def check_view(report: CheckReport, lang: str, *,
               verbose: bool = False) -> RenderableType:
    """One address: its mail hosts, each conversation, the verdict and the decisive finding."""
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
        parts.append(host_block(host, lang, probe_refused=report.catch_all is False))
    if verbose:
        parts.append(Text(t("transcript", lang), style="bold"))
        parts.extend(transcript(h) for h in report.hosts)
    verdict = Text(f"{t('verdict', lang)}: ", style="bold")
    style = {"accepted": "bold green", "rejected": "bold red", "deferred": "bold yellow",
             "unreachable": "bold yellow"}[report.verdict.value]
    verdict.append(t(f"verdict.{report.verdict.value}", lang), style=style)
    parts.append(verdict)
    status_key = ("status.prober" if report.address_status is AddressStatus.UNKNOWN
                  and report.finding.about_prober else f"status.{report.address_status.value}")
    parts.append(Text(f"{t('status', lang)}: {t(status_key, lang)}"))
    parts.append(finding_panel(report.finding, lang))
    others = [f for f in report.findings
              if (f.rule, f.evidence) != (report.finding.rule, report.finding.evidence)]
    if others:
        parts.append(Text(t("findings", lang), style="bold"))
        for finding in others:
            parts.append(finding_line(finding, lang))
            parts.append(Text(f"     {finding.remedy.get(lang)}"))
    parts.extend(lookup_lines(report.lookups, lang))
    parts.append(Text(t("elapsed", lang, ms=f"{report.elapsed_ms:.0f}"), style="dim"))
    return Group(*parts)


_LOOKUP_STYLE = {"ok": "green", "fail": "red", "warn": "yellow", "unknown": "yellow",
                 "info": "cyan"}


def lookup_lines(lookups: Sequence[Lookup], lang: str) -> list[RenderableType]:
    """What the lookups of the finding's remedy found (check, explain --lookup): one line each,
    `blocklist 127.0.0.1 in zen.example: FAIL listed (127.0.0.2): ...`."""
    if not lookups:
        return []
    lines: list[RenderableType] = [Text(t("lookups", lang), style="bold")]
    for item in lookups:
        line = Text(f"  {t(f'lookup.{item.kind}', lang)} {item.subject}: ")
        line.append(t(f"domain.status.{item.status.value}", lang),
                    style=_LOOKUP_STYLE[item.status.value])
        line.append(f" {item.summary.get(lang)}")
        lines.append(line)
    return lines


def list_table(results: Sequence[CheckReport | InvalidInput | str],
               lines: Sequence[int | None], lang: str) -> Table:
    """Many addresses, one row each: address, verdict, code, category, the mail host that
    answered (an input line that is no address shows its line number and why)."""
    from smtpprobe.report.checklist import row

    table = Table(box=None, pad_edge=False, show_edge=False, header_style="bold")
    for key in ("list.address", "list.verdict", "list.code", "list.category", "list.mx_host"):
        table.add_column(t(key, lang), overflow="fold")
    styles = {"accepted": "green", "rejected": "red", "deferred": "yellow",
              "unreachable": "yellow", "invalid": "magenta", "interrupted": "dim"}
    for result, line in zip(results, lines, strict=True):
        values = row(result, line)
        verdict = values["verdict"]
        code = " ".join(v for v in (values["code"], values["enhanced_code"]) if v)
        detail = values["category"]
        if verdict == "invalid":
            where = t("list.line", lang, line=line) if line else ""
            detail = f"{where}: {values['detail']}" if where else values["detail"]
        table.add_row(Text(values["address"]), Text(t(f"list.{verdict}", lang),
                                                    style=styles.get(verdict, "")),
                      Text(code), Text(detail), Text(values["mx_host"]))
    return table
