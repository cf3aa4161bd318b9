"""`--nagios`: a report as a monitoring plugin's output (the monitoring-plugins development
guidelines, docs/monitoring.md): one status line `SMTP STATE - summary | perfdata`, then the
explanation on the following lines.

The state starts from the report's outcome (the caller looks it up in cli/exits.py's one
table) and only gets worse by the thresholds: `--warning/--critical` on the response time in
seconds, `--cert-warning/--cert-critical` on the certificate's days left, each a range in the
plugin syntax (nagiosplugin.Range: `10`, `10:`, `~:10`, `10:20`, `@10:20`). A value outside
the range alerts. Performance data: the whole time, each step's time, the certificate's days.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from smtpprobe.models import (
    CheckReport,
    DomainReport,
    Finding,
    PortReport,
    RelayReport,
    Step,
    SweepReport,
    TlsInfo,
)
from smtpprobe.report.metrics import decisive_host, labelled_steps
from smtpprobe.report.words import text

if TYPE_CHECKING:
    from nagiosplugin.range import Range

STATES = ("OK", "WARNING", "CRITICAL", "UNKNOWN")
_RANK = {"OK": 0, "WARNING": 1, "UNKNOWN": 2, "CRITICAL": 3}  # which state wins


@dataclass(frozen=True, slots=True)
class Thresholds:
    warning: Range | None = None  # response time, seconds
    critical: Range | None = None
    cert_warning: Range | None = None  # days left
    cert_critical: Range | None = None


@dataclass(frozen=True, slots=True)
class PluginOutput:
    state: str
    summary: str
    details: tuple[str, ...]
    perfdata: tuple[str, ...]

    def render(self) -> str:
        # A "|" in the text would start the performance data (plugin guidelines): a server's
        # words or a title may hold one.
        head = f"SMTP {self.state} - {_plain(self.summary)}"
        if self.perfdata:
            head += " | " + " ".join(self.perfdata)
        return "\n".join((head, *(_plain(line) for line in self.details))) + "\n"


def _plain(line: str) -> str:
    return " ".join(line.replace("|", "/").split())


def worse(*states: str) -> str:
    return max(states, key=_RANK.__getitem__)


def perf(label: str, value: float | int, uom: str = "", warn: Range | None = None,
         crit: Range | None = None, minimum: float | int | None = None) -> str:
    """One `label=value[UOM];[warn];[crit];[min];[max]` (nagiosplugin.Performance quotes
    labels and drops empty fields at the end)."""
    from nagiosplugin.performance import Performance

    return str(Performance(label, _number(value), uom, range_text(warn), range_text(crit),
                           minimum))


def _number(value: float) -> str:
    """A plain decimal (the guidelines' grammar has no exponent: not 1e-06)."""
    if isinstance(value, int) or float(value).is_integer():
        return str(int(value))
    return f"{value:.6f}".rstrip("0").rstrip(".")


def range_text(spec: Range | None) -> str:
    """A range as the guidelines write it: `[@][start:][end]`, `~` for minus infinity, a zero
    start left out, plain decimals (nagiosplugin's own str() may give 1e-06)."""
    if spec is None:
        return ""
    out = "@" if spec.invert else ""
    if spec.start == float("-inf"):
        out += "~:"
    elif spec.start != 0:
        out += f"{_number(spec.start)}:"
    if spec.end != float("inf"):
        out += _number(spec.end)
    return out


def _judge(value: float, warn: Range | None, crit: Range | None) -> str:
    if crit is not None and not crit.match(value):
        return "CRITICAL"
    if warn is not None and not warn.match(value):
        return "WARNING"
    return "OK"


def _title(finding: Finding, lang: str) -> str:
    return finding.title.get(lang) if finding.title else str(finding.category)


def _explain(finding: Finding | None, lang: str) -> list[str]:
    if finding is None:
        return []
    lines = [f"{text('cause', lang)}: {finding.cause.get(lang)}",
             f"{text('remedy', lang)}: {finding.remedy.get(lang)}"]
    if finding.evidence:
        lines.append(f"{text('server_said', lang)}: {' '.join(finding.evidence.split())}")
    return lines


def step_perfdata(steps: Iterable[Step]) -> list[str]:
    """Each step's time in seconds, labelled by its stage (`ehlo_2` for the second EHLO)."""
    return [perf(label, step.elapsed_ms / 1000, "s", minimum=0)
            for label, step in labelled_steps(steps)]


class _Builder:
    """The state, notes and perfdata shared by every command's output."""

    def __init__(self, state: str, seconds: float, th: Thresholds, lang: str) -> None:
        self.lang = lang
        self.th = th
        self.notes: list[str] = []
        time_state = _judge(seconds, th.warning, th.critical)
        if time_state != "OK":
            self.notes.append(text("nagios.slow", lang, seconds=f"{seconds:.2f}"))
        self.state = worse(state, time_state)
        self.perfdata = [perf("time", seconds, "s", th.warning, th.critical, 0)]

    def certificates(self, infos: Sequence[TlsInfo | None]) -> None:
        days = [t.days_left for t in infos if t is not None and t.days_left is not None]
        if not days:
            return
        left = min(days)
        cert_state = _judge(left, self.th.cert_warning, self.th.cert_critical)
        if cert_state != "OK":
            self.notes.append(text("nagios.cert_days", self.lang, days=left))
        self.state = worse(self.state, cert_state)
        self.perfdata.append(perf("tls_days", left, "", self.th.cert_warning,
                                  self.th.cert_critical))

    def output(self, summary: str, details: Sequence[str],
               steps: Iterable[Step] = ()) -> PluginOutput:
        if self.notes:
            summary += " (" + "; ".join(self.notes) + ")"
        return PluginOutput(self.state, " ".join(summary.split()), tuple(details),
                            (*self.perfdata, *step_perfdata(steps)))


def check_output(report: CheckReport, state: str, th: Thresholds, lang: str) -> PluginOutput:
    """`check --nagios`: the verdict for one address, by the host whose answer decided."""
    seconds = report.elapsed_ms / 1000
    index = decisive_host(report)
    host = report.hosts[index] if index is not None else None
    build = _Builder(state, seconds, th, lang)
    build.certificates([host.tls] if host is not None else [])
    where = host.host if host is not None else report.domain
    summary = text(f"nagios.check.{report.verdict.value}", lang, address=report.address,
                   host=where, seconds=f"{seconds:.2f}")
    if report.verdict.value != "accepted":
        summary += f": {_title(report.finding, lang)}"
    details = [text(f"verdict.{report.verdict.value}", lang),
               *_explain(report.finding if report.verdict.value != "accepted" else None,
                         lang)]
    return build.output(summary, details, host.steps if host is not None else ())


def relay_output(report: RelayReport, state: str, th: Thresholds, lang: str) -> PluginOutput:
    """`relay --nagios`: the verdict and the first check that did not pass."""
    seconds = report.elapsed_ms / 1000
    build = _Builder(state, seconds, th, lang)
    build.certificates([report.tls])
    failed = next((c for c in report.checks if c.status.value == "fail"), None)
    passed = sum(1 for c in report.checks if c.status.value == "pass")
    where = f"{report.host}:{report.port}"
    if failed is None:
        summary = text("nagios.relay.pass", lang, server=where, passed=passed,
                       seconds=f"{seconds:.2f}")
    else:
        what = _title(failed.finding, lang) if failed.finding else failed.name
        summary = text("nagios.relay.fail", lang, server=where,
                       check=text(f"relay.check.{failed.name}", lang), what=what)
    details = []
    for check in report.checks:
        status = "temporary" if check.temporary else check.status.value
        subject = f" {check.subject}" if check.subject else ""
        details.append(f"{text(f'relay.check.{check.name}', lang)}{subject}: "
                       f"{text(f'relay.status.{status}', lang)}")
    details += _explain(failed.finding if failed is not None else None, lang)
    return build.output(summary, details, (s for c in report.checks for s in c.steps))


def sweep_output(report: SweepReport, state: str, th: Thresholds, lang: str) -> PluginOutput:
    """`sweep --nagios`: the settings to use, or why none work; each port's time."""
    seconds = report.elapsed_ms / 1000
    build = _Builder(state, seconds, th, lang)
    rec = report.recommendation
    chosen = [p for p in report.ports if p.port == rec.port and p.mode == rec.mode]
    build.certificates([p.tls for p in (chosen or report.ports)])
    if rec.usable and rec.port is not None and rec.mode is not None:
        summary = text("nagios.sweep.ok", lang, host=report.host, port=rec.port,
                       mode=rec.mode.value, seconds=f"{seconds:.2f}")
        cause = None
    else:
        cause = rec.finding or report.dns_failure
        summary = text("nagios.sweep.none", lang, host=report.host)
        if cause is not None:
            summary += f": {_title(cause, lang)}"
    details = [_port_line(p, lang) for p in report.ports]
    details += _explain(cause, lang)
    build.perfdata += [perf(f"port_{p.port}", p.elapsed_ms / 1000, "s", minimum=0)
                       for p in report.ports]
    return build.output(summary, details)


def _port_line(port: PortReport, lang: str) -> str:
    state = (text("nagios.port_open", lang) if port.state.value == "open"
             else text(f"state.{port.state.value}", lang))
    line = text("nagios.port", lang, port=port.port, mode=text(f"mode.{port.mode.value}", lang),
                state=state)
    result = port.auth.result.value
    if result != "not_tried":
        said = text(f"auth.{result}", lang, mechanism=port.auth.mechanism or "?") \
            if result == "ok" else text(f"auth.{result}", lang)
        line += ", " + text("nagios.login", lang, result=said)
    return line


def domain_output(report: DomainReport, state: str, th: Thresholds,
                  lang: str) -> PluginOutput:
    """`domain --nagios`: the counts by status, the first failing (else warning) check; one
    line per check that is not ok."""
    seconds = report.elapsed_ms / 1000
    build = _Builder(state, seconds, th, lang)
    counts = report.counts()
    worst = next((c for status in ("fail", "unknown", "warn") for c in report.checks
                  if c.status.value == status), None)
    summary = text("nagios.domain", lang, domain=report.domain, checks=len(report.checks),
                   counts=", ".join(f"{n} {text(f'domain.status.{s}', lang)}"
                                    for s, n in counts.items() if n))
    if worst is not None:
        summary += f": {worst.id} {worst.subject}: {worst.summary.get(lang)}"
    details = [f"{c.id} {c.subject}: {text(f'domain.status.{c.status.value}', lang)}: "
               f"{c.summary.get(lang)}"
               for c in report.checks if c.status.value not in ("ok", "info")]
    details += _explain(worst.finding if worst is not None else None, lang)
    build.perfdata += [perf(status, n, "", minimum=0) for status, n in counts.items()]
    return build.output(summary, details)


def unknown_output(message: str) -> PluginOutput:
    """A usage error or anything else that kept the plugin from checking."""
    return PluginOutput("UNKNOWN", " ".join(message.split()), (), ())
