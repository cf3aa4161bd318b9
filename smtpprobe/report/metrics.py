"""Report values as Prometheus metrics (`smtpprobe exporter`, docs/monitoring.md).

One table (`HELP`) names every metric and its help text; the builders turn a check, relay,
sweep or domain report into metric families of the official client (prometheus-client),
which the exporter renders for one scrape. Values in, families out: no I/O.

TLS facts come from `models.TlsInfo`, which keeps the certificate's dates, days left and the
name check when the chain does not verify, so an expired or untrusted certificate still has
its `smtp_tls_*` series (blackbox_exporter drops them then, and "down" looks like "expired").
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING

from smtpprobe.models import (
    AuthResult,
    CheckReport,
    DomainReport,
    Finding,
    HealthStatus,
    RelayReport,
    RelayVerdict,
    Step,
    SweepReport,
    TlsInfo,
    Verdict,
)

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

# name -> help text. The exporter's own metrics (cli/exporter.py) are listed here too, so
# that docs/monitoring.md and this table can be compared by a test.
HELP: dict[str, str] = {
    "probe_success": "1 when the probe's outcome is good: the address accepted, every relay "
                     "check passed, a working port found, no domain check failed",
    "probe_duration_seconds": "How long the probe took, in seconds",
    "smtp_step_duration_seconds": "How long each step of the conversation took, in seconds "
                                  "(step: connect, ehlo, starttls, ehlo_2, auth, mail, rcpt...)",
    "smtp_reply_code": "The SMTP reply code of each step that got a reply",
    "smtp_verdict": "1 for the probe's verdict, 0 for the other verdicts",
    "smtp_finding": "The report's findings by category and severity: 1 for the decisive "
                    "one, 0 for the others",
    "smtp_tls_version_info": "The TLS version negotiated (always 1)",
    "smtp_tls_certificate_not_after_timestamp_seconds": "When the server certificate "
                                                        "expires, as a Unix time",
    "smtp_tls_certificate_not_before_timestamp_seconds": "When the server certificate "
                                                         "became valid, as a Unix time",
    "smtp_tls_certificate_days_left": "Days until the server certificate expires (negative: "
                                      "expired)",
    "smtp_tls_certificate_verified": "1 when the certificate chain verifies against the "
                                     "trust store in use",
    "smtp_tls_name_matches": "1 when the certificate names the host that was asked for",
    "smtp_auth_result": "1 for how the login ended (ok, failed, app_password, withheld ...), "
                        "0 for the other results",
    "smtp_relay_check_passed": "Each relay check: 1 passed, 0 failed (skipped checks are "
                               "left out)",
    "smtp_sweep_port_open": "Each port of a sweep: 1 when it greeted with 220",
    "smtp_domain_check_status": "Each domain check by id and subject: 0 ok, 1 info, 2 warn, "
                                "3 unknown, 4 fail (the status is also a label)",
    "smtpprobe_probe_error": "1 when the probe itself could not finish (reason: timeout, "
                             "error); its other series are then missing",
    "smtpprobe_build_info": "The smtpprobe version that answered (always 1)",
    "smtpprobe_probe_timestamp_seconds": "When the probe ran, as a Unix time",
    # the exporter's own /metrics
    "smtpprobe_exporter_probes_total": "Probes the exporter ran, by module and result",
    "smtpprobe_exporter_probes_in_flight": "Probes running now",
    "smtpprobe_exporter_probes_rejected_total": "Probe requests refused with HTTP 400, by "
                                                "reason",
}

# A domain check's status as a number that grows with the trouble: `>= 4` fails, `>= 2` wants
# a look. unknown (could not be checked) ranks below fail and above warn.
DOMAIN_STATUS_VALUE = {HealthStatus.OK: 0, HealthStatus.INFO: 1, HealthStatus.WARN: 2,
                       HealthStatus.UNKNOWN: 3, HealthStatus.FAIL: 4}
SWEEP_VERDICTS = ("usable", "unusable")


def labelled_steps(steps: Iterable[Step]) -> list[tuple[str, Step]]:
    """Each step with a label of its stage, unique in the conversation: the second EHLO (after
    STARTTLS) is `ehlo_2`, a second RCPT `rcpt_2`."""
    seen: dict[str, int] = {}
    out = []
    for step in steps:
        name = step.stage.value
        seen[name] = seen.get(name, 0) + 1
        out.append((name if seen[name] == 1 else f"{name}_{seen[name]}", step))
    return out


class Families:
    """The series of one scrape by metric name; families of prometheus-client on collect.
    The same series twice (a domain check id and subject that occur twice) keeps the larger
    value, so a scrape never holds a duplicate sample."""

    def __init__(self) -> None:
        self._series: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}

    def add(self, name: str, value: float, **labels: str) -> None:
        if name not in HELP:
            raise KeyError(f"metric {name} is not in the HELP table")
        series = self._series.setdefault(name, {})
        key = tuple(sorted(labels.items()))
        series[key] = max(float(value), series.get(key, float(value)))

    def value(self, name: str, **labels: str) -> float | None:
        return self._series.get(name, {}).get(tuple(sorted(labels.items())))

    def names(self) -> set[str]:
        return set(self._series)

    def collect(self) -> Iterator[Metric]:
        """prometheus_client's collector protocol (`CollectorRegistry.register(families)`)."""
        from prometheus_client.metrics_core import GaugeMetricFamily

        for name, series in self._series.items():
            keys = [k for k, _ in next(iter(series))] if series else []
            family = GaugeMetricFamily(name, HELP[name], labels=keys)
            for labels, value in series.items():
                family.add_metric([v for _, v in labels], value)
            yield family


def _timestamp(iso: str | None) -> float | None:
    if not iso:
        return None
    try:
        when = dt.datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.timestamp()


def _common(out: Families, *, success: bool, seconds: float, now: dt.datetime | None,
            verdict: str | None = None, verdicts: Sequence[str] = ()) -> None:
    """What every probe has: success, duration, version, time, and its verdict among all."""
    from smtpprobe import __version__

    out.add("probe_success", 1 if success else 0)
    out.add("probe_duration_seconds", seconds)
    out.add("smtpprobe_build_info", 1, version=__version__)
    out.add("smtpprobe_probe_timestamp_seconds", (now or dt.datetime.now(dt.UTC)).timestamp())
    for value in verdicts:
        out.add("smtp_verdict", 1 if value == verdict else 0, verdict=value)


def _seconds(elapsed_ms: float, measured: float | None) -> float:
    """The exporter's own measure of the probe when it has one, else the report's."""
    return elapsed_ms / 1000 if measured is None else measured


def _steps(out: Families, steps: Iterable[Step]) -> None:
    for label, step in labelled_steps(steps):
        out.add("smtp_step_duration_seconds", step.elapsed_ms / 1000, step=label)
        if step.reply is not None and step.reply.code is not None:
            out.add("smtp_reply_code", step.reply.code, step=label)


def _findings(out: Families, decisive: Finding | None, others: Iterable[Finding]) -> None:
    seen: dict[tuple[str, str], int] = {}
    for finding in others:
        seen.setdefault((finding.category.value, finding.severity.value), 0)
    if decisive is not None:
        seen[(decisive.category.value, decisive.severity.value)] = 1
    for (category, severity), value in seen.items():
        out.add("smtp_finding", value, category=category, severity=severity)


def _tls(out: Families, tls: TlsInfo | None) -> None:
    if tls is None:
        return
    out.add("smtp_tls_version_info", 1, version=tls.version)
    not_after = _timestamp(tls.not_after)
    if not_after is not None:
        out.add("smtp_tls_certificate_not_after_timestamp_seconds", not_after)
    not_before = _timestamp(tls.not_before)
    if not_before is not None:
        out.add("smtp_tls_certificate_not_before_timestamp_seconds", not_before)
    if tls.days_left is not None:
        out.add("smtp_tls_certificate_days_left", tls.days_left)
    out.add("smtp_tls_certificate_verified", 1 if tls.verified else 0)
    if tls.name_matches is not None:
        out.add("smtp_tls_name_matches", 1 if tls.name_matches else 0)


def _auth(out: Families, result: AuthResult | None) -> None:
    if result is None:
        return
    for value in AuthResult:
        out.add("smtp_auth_result", 1 if value == result else 0, result=value.value)


def _check_auth(steps: Sequence[Step]) -> AuthResult | None:
    """The login of a check (with --user), from its AUTH steps' last reply (RFC 4954 6)."""
    replies = [s for s in steps if s.stage.value == "auth"]
    if not replies:
        return None
    last = replies[-1]
    if last.replied(235):
        return AuthResult.OK
    if last.replied(534):
        return AuthResult.APP_PASSWORD
    if last.replied(530, 538):
        return AuthResult.TLS_REQUIRED
    if last.reply is None:
        return AuthResult.ERROR
    return AuthResult.TEMPORARY if last.reply.klass == 4 else AuthResult.FAILED


def check_metrics(report: CheckReport, *, seconds: float | None = None,
                  now: dt.datetime | None = None) -> Families:
    """`check` of one address: the verdict, the host whose answer decided, its TLS."""
    out = Families()
    _common(out, success=report.verdict is Verdict.ACCEPTED,
            seconds=_seconds(report.elapsed_ms, seconds), now=now,
            verdict=report.verdict.value, verdicts=[v.value for v in Verdict])
    _findings(out, report.finding, report.findings)
    index = decisive_host(report)
    if index is not None:
        host = report.hosts[index]
        _steps(out, host.steps)
        _tls(out, host.tls)
        _auth(out, _check_auth(host.steps))
    return out


def decisive_host(report: CheckReport) -> int | None:
    """The index of the host report whose answer decided (or the first)."""
    for index, host in enumerate(report.hosts):
        if any(s.finding == report.finding for s in host.steps):
            return index
    return 0 if report.hosts else None


def relay_metrics(report: RelayReport, *, seconds: float | None = None,
                  now: dt.datetime | None = None) -> Families:
    out = Families()
    _common(out, success=report.verdict is RelayVerdict.PASS,
            seconds=_seconds(report.elapsed_ms, seconds), now=now,
            verdict=report.verdict.value, verdicts=[v.value for v in RelayVerdict])
    failed = next((c.finding for c in report.checks
                   if c.status.value == "fail" and c.finding is not None), None)
    _findings(out, failed, [c.finding for c in report.checks if c.finding is not None])
    _steps(out, [s for c in report.checks for s in c.steps])
    _tls(out, report.tls)
    for check in report.checks:
        if check.status.value != "skip":
            name = f"{check.name}:{check.subject}" if check.subject else check.name
            out.add("smtp_relay_check_passed", 1 if check.status.value == "pass" else 0,
                    check=name)
        if check.name == "auth" and check.status.value != "skip":
            _auth(out, AuthResult.OK if check.status.value == "pass" else
                  AuthResult.TEMPORARY if check.temporary else AuthResult.FAILED)
    return out


def sweep_metrics(report: SweepReport, *, seconds: float | None = None,
                  now: dt.datetime | None = None) -> Families:
    """`sweep`: whether a working port was found; the recommended (else first) port's
    steps, TLS and login; each port open or not."""
    out = Families()
    rec = report.recommendation
    _common(out, success=rec.usable, seconds=_seconds(report.elapsed_ms, seconds), now=now,
            verdict="usable" if rec.usable else "unusable", verdicts=SWEEP_VERDICTS)
    cause = rec.finding or report.dns_failure
    _findings(out, cause, [f for p in report.ports for f in p.findings])
    chosen = next((p for p in report.ports if p.port == rec.port and p.mode == rec.mode),
                  report.ports[0] if report.ports else None)
    if chosen is not None:
        _steps(out, chosen.steps)
        _tls(out, chosen.tls)
        if chosen.auth.result is not AuthResult.NOT_TRIED:
            _auth(out, chosen.auth.result)
    for port in report.ports:
        out.add("smtp_sweep_port_open", 1 if port.state.value == "open" else 0,
                port=str(port.port), mode=port.mode.value)
    return out


def domain_metrics(report: DomainReport, *, seconds: float | None = None,
                   now: dt.datetime | None = None) -> Families:
    """`domain`: one series per check id and subject with its status."""
    out = Families()
    failed = [c for c in report.checks if c.status is HealthStatus.FAIL]
    worst = max((c.status for c in report.checks), key=DOMAIN_STATUS_VALUE.__getitem__,
                default=HealthStatus.OK)
    _common(out, success=not failed, seconds=_seconds(report.elapsed_ms, seconds), now=now,
            verdict=worst.value, verdicts=[s.value for s in HealthStatus])
    _findings(out, failed[0].finding if failed else None,
              [c.finding for c in report.checks if c.finding is not None])
    for check in report.checks:
        out.add("smtp_domain_check_status", DOMAIN_STATUS_VALUE[check.status],
                check=check.id, subject=check.subject, status=check.status.value)
    return out


def error_metrics(reason: str, *, seconds: float, now: dt.datetime | None = None) -> Families:
    """A probe that could not finish (the scrape's time ran out, a fault of smtpprobe)."""
    out = Families()
    _common(out, success=False, seconds=seconds, now=now)
    out.add("smtpprobe_probe_error", 1, reason=reason)
    return out
