"""Text output of `relay` with rich: one line per check, the verdict, a panel for each
failure; with -v the transcript of the whole run."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from smtpprobe.core.wire import shorten
from smtpprobe.models import CheckStatus, HostReport, RelayCheck, RelayReport, RelayVerdict, Step
from smtpprobe.report.text import SEVERITY_STYLE, finding_panel, finding_title, transcript
from smtpprobe.report.words import note_text
from smtpprobe.report.words import text as t


def check_label(check: RelayCheck, lang: str) -> str:
    name = t(f"relay.check.{check.name}", lang)
    return f"{name} {check.subject}" if check.subject else name


def _status(check: RelayCheck, lang: str) -> Text:
    if check.status is CheckStatus.PASS:
        return Text(t("relay.status.pass", lang), style="green")
    if check.status is CheckStatus.SKIP:
        return Text(t("relay.status.skip", lang), style="dim")
    if check.temporary:
        return Text(t("relay.status.temporary", lang), style="bold yellow")
    return Text(t("relay.status.fail", lang), style="bold red")


def _check_detail(check: RelayCheck, lang: str) -> Text:
    out = Text()
    if check.status is CheckStatus.SKIP and check.note is not None:
        out.append(note_text(check.note, lang), style="dim")
        return out
    if check.name == "rcpt" and check.status is CheckStatus.PASS:
        # A relay takes outside recipients on trust: its 250 2.1.5 says "will deliver", not
        # "this mailbox exists" (the code's generic title would say the latter).
        out.append(t("relay.rcpt_accepted", lang))
    elif check.finding is not None:
        out.append(finding_title(check.finding, lang),
                   style="" if check.status is CheckStatus.PASS else
                   SEVERITY_STYLE[check.finding.severity])
    if check.note is not None:
        out.append(("  " if out else "") + note_text(check.note, lang), style="dim")
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
        out.append("  " + shorten(said, 140), style="dim")
    return out


def _all_steps(report: RelayReport) -> tuple[Step, ...]:
    return tuple(s for c in report.checks for s in c.steps)


def relay_view(report: RelayReport, lang: str, *,
               verbose: bool = False) -> RenderableType:
    """One line per check, with -v the transcript, the verdict and a panel per failure."""
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
        grid.add_row(mark, Text(check_label(check, lang)), _status(check, lang),
                     _check_detail(check, lang))
    parts.append(grid)
    if verbose:
        parts.append(Text(t("transcript", lang), style="bold"))
        parts.append(transcript(HostReport(host=report.host, address=report.address,
                                           port=report.port, steps=_all_steps(report),
                                           tls=report.tls)))
    verdict = Text(f"{t('verdict', lang)}: ", style="bold")
    style = {RelayVerdict.PASS: "bold green", RelayVerdict.FAIL: "bold red",
             RelayVerdict.TEMPORARY: "bold yellow"}[report.verdict]
    verdict.append(_verdict_text(report, lang), style=style)
    parts.append(verdict)
    failed = [c for c in report.checks if c.status is CheckStatus.FAIL and c.finding]
    for check in failed:
        assert check.finding is not None
        # A finding of our own (a certificate, an open relay) shows its evidence, not the
        # last reply of the check (the EHLO after STARTTLS says nothing about a certificate).
        reply = None if check.finding.code is None else next(
            (s.reply for s in reversed(check.steps) if s.reply is not None), None)
        parts.append(finding_panel(check.finding, lang, reply=reply,
                                   title=check_label(check, lang)))
    # Addresses left out or given up, and what passed but is worth a word (a slow greeting).
    for finding in (*report.address_findings, *report.notes):
        parts.append(finding_panel(finding, lang))
    return Group(*parts)


def _verdict_text(report: RelayReport, lang: str) -> str:
    """The verdict; a pass names what it covers when checks were skipped, or when no
    recipient was given, so that "the relay works" is never said of a TLS handshake."""
    if report.verdict is not RelayVerdict.PASS:
        return t(f"relay.verdict.{report.verdict.value}", lang)
    untested = [check_label(c, lang) for c in report.checks if c.status is CheckStatus.SKIP]
    if not any(c.name == "rcpt" for c in report.checks):
        untested.append(t("relay.check.rcpt", lang))
    if not untested:
        return t("relay.verdict.pass", lang)
    tested = [check_label(c, lang) for c in report.checks if c.status is CheckStatus.PASS]
    return t("relay.verdict.pass_partial", lang, tested=", ".join(tested) or "-",
             untested=", ".join(untested))
