"""report/metrics.py: check, relay, sweep and domain reports as Prometheus metrics. Reports
come from lab servers (or are built by hand for the domain and the corner cases); each is
rendered with prometheus-client's exposition and parsed back with its parser, so what is
asserted is what Prometheus would read."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry

from smtpprobe import __version__
from smtpprobe.core.certs import TrustStore
from smtpprobe.core.knowledge.load import KnowledgeBase
from smtpprobe.core.redact import Redactor
from smtpprobe.lab.smtp import LabServer
from smtpprobe.lab.tls import LabCert
from smtpprobe.models import (
    CheckReport,
    Credentials,
    DomainCheck,
    DomainReport,
    HealthStatus,
    LocalText,
    PortMode,
    TlsInfo,
)
from smtpprobe.probe.check import CheckOptions
from smtpprobe.probe.relay import Relay, RelayOptions
from smtpprobe.probe.sweep import Sweeper, SweepOptions
from smtpprobe.report import metrics
from smtpprobe.report.metrics import HELP, Families

LabServerFactory = Callable[..., Awaitable[LabServer]]
CheckAddress = Callable[[CheckOptions, str], Awaitable[CheckReport]]
USER, PASSWORD = "alice@lab.test", "Metrics-Secret-7f3a"
NOW = dt.datetime(2026, 12, 2, 12, 0, tzinfo=dt.UTC)
DOCS = Path(__file__).resolve().parents[2] / "docs" / "monitoring.md"

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(families: Families) -> Samples:
    """The families as Prometheus reads them: exposition, then the official parser."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(families)
    text = generate_latest(registry).decode()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        assert family.documentation == HELP[family.name]
        for sample in family.samples:
            key = (sample.name, tuple(sorted(sample.labels.items())))
            assert key not in samples, f"duplicate sample {key}"
            samples[key] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def names(samples: Samples) -> set[str]:
    return {name for name, _ in samples}


def _options(server: LabServer, cafile: Path, **extra: object) -> CheckOptions:
    return CheckOptions(helo="probe.smtpprobe.test", timeout=3.0, deadline=10.0,
                        server=("127.0.0.1", server.port), cafile=str(cafile),
                        **extra)  # type: ignore[arg-type]


async def test_an_accepted_check(lab_server: LabServerFactory, cert: LabCert, cafile: Path,
                                 check_address: CheckAddress) -> None:
    server = await lab_server("mailbox", cert=cert)
    report = await check_address(_options(server, cafile), "alice@lab.test")
    got = scrape(metrics.check_metrics(report, seconds=0.25, now=NOW))
    assert value(got, "probe_success") == 1
    assert value(got, "probe_duration_seconds") == 0.25
    assert value(got, "smtp_verdict", verdict="accepted") == 1
    for other in ("rejected", "deferred", "unreachable"):
        assert value(got, "smtp_verdict", verdict=other) == 0
    assert value(got, "smtp_finding", category="success", severity="ok") == 1
    for step, code in (("connect", 220), ("ehlo", 250), ("starttls", 220), ("ehlo_2", 250),
                       ("mail", 250), ("rcpt", 250)):
        assert value(got, "smtp_reply_code", step=step) == code
        assert value(got, "smtp_step_duration_seconds", step=step) >= 0
    assert value(got, "smtp_tls_version_info", version="TLSv1.3") == 1
    assert value(got, "smtp_tls_certificate_verified") == 1
    assert value(got, "smtp_tls_name_matches") == 1
    tls = report.hosts[0].tls
    assert tls is not None and tls.not_after is not None and tls.days_left is not None
    assert value(got, "smtp_tls_certificate_days_left") == tls.days_left
    not_after = dt.datetime.fromisoformat(tls.not_after.replace("Z", "+00:00"))
    assert value(got, "smtp_tls_certificate_not_after_timestamp_seconds") == \
        pytest.approx(not_after.timestamp())
    assert value(got, "smtp_tls_certificate_not_before_timestamp_seconds") < \
        value(got, "smtp_tls_certificate_not_after_timestamp_seconds")
    assert value(got, "smtpprobe_build_info", version=__version__) == 1
    assert value(got, "smtpprobe_probe_timestamp_seconds") == NOW.timestamp()
    assert "smtp_auth_result" not in names(got)  # no login was asked for


async def test_a_rejected_check_names_the_finding(lab_server: LabServerFactory, cert: LabCert,
                                                  cafile: Path,
                                                  check_address: CheckAddress) -> None:
    server = await lab_server("mailbox", cert=cert)
    report = await check_address(_options(server, cafile), "nobody@lab.test")
    got = scrape(metrics.check_metrics(report))
    assert value(got, "probe_success") == 0
    assert value(got, "smtp_verdict", verdict="rejected") == 1
    assert value(got, "smtp_finding", category="user_unknown", severity="error") == 1
    assert value(got, "smtp_reply_code", step="rcpt") == 550
    assert value(got, "probe_duration_seconds") == pytest.approx(report.elapsed_ms / 1000)


async def test_tls_facts_stay_when_the_certificate_does_not_verify(
        lab_server: LabServerFactory, cert: LabCert, other_trust: TrustStore,
        kb: KnowledgeBase) -> None:
    """blackbox_exporter #1119/#1527: an untrusted chain must not hide the expiry date."""
    from smtpprobe.core.address import parse_address
    from smtpprobe.probe.check import Checker

    server = await lab_server("mailbox", cert=cert, hostname="mx.lab.test")
    address = parse_address("alice@lab.test")
    assert address is not None
    options = CheckOptions(helo="probe.smtpprobe.test", timeout=3.0, deadline=10.0,
                           server=("127.0.0.1", server.port))
    report = await Checker(kb, options, trust=other_trust).check(address)
    got = scrape(metrics.check_metrics(report))
    assert value(got, "smtp_tls_certificate_verified") == 0
    assert value(got, "smtp_tls_certificate_days_left") > 0
    assert "smtp_tls_certificate_not_after_timestamp_seconds" in names(got)
    assert "smtp_tls_certificate_not_before_timestamp_seconds" in names(got)
    assert value(got, "smtp_tls_name_matches") == 1  # the name is fine, the chain is not
    assert value(got, "smtp_finding", category="certificate_problem", severity="warning") == 0


def test_an_unverified_expired_wrong_name_certificate_by_hand() -> None:
    tls = TlsInfo(version="TLSv1.2", cipher="ECDHE-RSA-AES128-GCM-SHA256",
                  not_after="2026-11-30T00:00:00Z", not_before="2026-01-01T00:00:00+00:00",
                  days_left=-3, verified=False, verify_problem="expired",
                  expected_name="mx.example.org", name_matches=False)
    out = Families()
    metrics._tls(out, tls)
    got = scrape(out)
    assert value(got, "smtp_tls_certificate_days_left") == -3
    assert value(got, "smtp_tls_certificate_not_after_timestamp_seconds") == \
        dt.datetime(2026, 11, 30, tzinfo=dt.UTC).timestamp()
    assert value(got, "smtp_tls_certificate_not_before_timestamp_seconds") == \
        dt.datetime(2026, 1, 1, tzinfo=dt.UTC).timestamp()
    assert value(got, "smtp_tls_certificate_verified") == 0
    assert value(got, "smtp_tls_name_matches") == 0
    assert value(got, "smtp_tls_version_info", version="TLSv1.2") == 1
    # No name expected (an unreadable leaf): the series is left out, not made up
    out = Families()
    metrics._tls(out, TlsInfo(version="TLSv1.3", cipher="x", name_matches=None))
    assert "smtp_tls_name_matches" not in names(scrape(out))


async def test_relay_metrics_with_a_login(lab_server: LabServerFactory, cert: LabCert,
                                          trust: TrustStore, kb: KnowledgeBase) -> None:
    server = await lab_server("submission", cert=cert, users={USER: PASSWORD},
                              hostname="smtp.lab.test")
    creds = Credentials(USER, PASSWORD, "test")
    options = RelayOptions(host="127.0.0.1", port=server.port, tls="starttls",
                           helo="ci.lab.test", mail_from=USER, recipients=("bob@example.net",),
                           timeout=2.0, deadline=10.0)
    report = await Relay(kb, options, trust=trust, redactor=Redactor([(USER, PASSWORD)]),
                         credentials=creds).run()
    families = metrics.relay_metrics(report)
    got = scrape(families)
    assert value(got, "probe_success") == 1
    assert value(got, "smtp_verdict", verdict="pass") == 1
    assert value(got, "smtp_auth_result", result="ok") == 1
    assert value(got, "smtp_auth_result", result="failed") == 0
    for check in ("connect", "tls", "auth", "mail", "rcpt:bob@example.net"):
        assert value(got, "smtp_relay_check_passed", check=check) == 1
    assert value(got, "smtp_reply_code", step="auth") == 235
    registry = CollectorRegistry(auto_describe=False)
    registry.register(families)
    assert PASSWORD not in generate_latest(registry).decode()


async def test_relay_with_a_wrong_password(lab_server: LabServerFactory, cert: LabCert,
                                           trust: TrustStore, kb: KnowledgeBase) -> None:
    server = await lab_server("submission", cert=cert, users={USER: PASSWORD},
                              hostname="smtp.lab.test")
    creds = Credentials(USER, "not-the-password", "test")
    options = RelayOptions(host="127.0.0.1", port=server.port, tls="starttls",
                           helo="ci.lab.test", timeout=2.0, deadline=10.0)
    report = await Relay(kb, options, trust=trust, redactor=Redactor(),
                         credentials=creds).run()
    got = scrape(metrics.relay_metrics(report))
    assert value(got, "probe_success") == 0
    assert value(got, "smtp_verdict", verdict="fail") == 1
    assert value(got, "smtp_auth_result", result="failed") == 1
    assert value(got, "smtp_relay_check_passed", check="auth") == 0
    assert value(got, "smtp_finding", category="auth_failed", severity="error") == 1


async def test_sweep_metrics(lab_server: LabServerFactory, cert: LabCert, trust: TrustStore,
                             kb: KnowledgeBase) -> None:
    server = await lab_server("submission", cert=cert, users={USER: PASSWORD},
                              hostname="smtp.lab.test")
    from smtpprobe.lab.hostile import closed_port

    closed = closed_port()
    options = SweepOptions(host="127.0.0.1", ports=((server.port, PortMode.STARTTLS),
                                                    (closed, PortMode.STARTTLS)),
                           helo="ci.lab.test", timeout=2.0, deadline=10.0)
    report = await Sweeper(kb, options, trust=trust, redactor=Redactor([(USER, PASSWORD)]),
                           credentials=Credentials(USER, PASSWORD, "test")).sweep()
    got = scrape(metrics.sweep_metrics(report))
    assert value(got, "probe_success") == 1
    assert value(got, "smtp_verdict", verdict="usable") == 1
    assert value(got, "smtp_sweep_port_open", port=str(server.port), mode="starttls") == 1
    assert value(got, "smtp_sweep_port_open", port=str(closed), mode="starttls") == 0
    assert value(got, "smtp_auth_result", result="ok") == 1
    assert value(got, "smtp_tls_certificate_verified") == 1


def _domain_check(check_id: str, subject: str, status: HealthStatus) -> DomainCheck:
    return DomainCheck(check_id, subject, status, LocalText("s", "s"))


def test_domain_metrics_one_series_per_check_with_its_status() -> None:
    report = DomainReport("example.org", "example.org", (
        _domain_check("mx", "example.org", HealthStatus.OK),
        _domain_check("spf", "example.org", HealthStatus.WARN),
        _domain_check("starttls", "mx1.example.org", HealthStatus.OK),
        _domain_check("starttls", "mx2.example.org", HealthStatus.FAIL),
        _domain_check("dnsbl", "192.0.2.1", HealthStatus.UNKNOWN),
        # the same id and subject twice: one series, the worse status
        _domain_check("dane", "mx1.example.org", HealthStatus.INFO),
        _domain_check("dane", "mx1.example.org", HealthStatus.WARN),
    ), elapsed_ms=1500.0)
    got = scrape(metrics.domain_metrics(report))
    status = {labels: v for (name, labels), v in got.items()
              if name == "smtp_domain_check_status"}
    by_check = {(dict(k)["check"], dict(k)["subject"]): v for k, v in status.items()}
    assert by_check[("mx", "example.org")] == 0
    assert by_check[("spf", "example.org")] == 2
    assert by_check[("starttls", "mx2.example.org")] == 4
    assert by_check[("dnsbl", "192.0.2.1")] == 3
    assert value(got, "smtp_domain_check_status", check="spf", subject="example.org",
                 status="warn") == 2
    assert value(got, "probe_success") == 0  # a check failed
    assert value(got, "smtp_verdict", verdict="fail") == 1
    assert value(got, "probe_duration_seconds") == 1.5
    healthy = DomainReport("example.org", "example.org",
                           (_domain_check("mx", "example.org", HealthStatus.OK),))
    assert value(scrape(metrics.domain_metrics(healthy)), "probe_success") == 1


def test_an_error_is_a_metric() -> None:
    got = scrape(metrics.error_metrics("timeout", seconds=4.5, now=NOW))
    assert value(got, "probe_success") == 0
    assert value(got, "smtpprobe_probe_error", reason="timeout") == 1
    assert value(got, "probe_duration_seconds") == 4.5
    assert value(got, "smtpprobe_build_info", version=__version__) == 1


def test_a_name_outside_the_table_is_refused() -> None:
    with pytest.raises(KeyError):
        Families().add("smtp_made_up", 1)


def test_every_metric_is_documented_with_its_help() -> None:
    text = DOCS.read_text(encoding="utf-8")
    documented = set(re.findall(r"^\| `([a-z_]+)`", text, re.M))
    assert set(HELP) <= documented, set(HELP) - documented
