"""A real Prometheus (tests/realmta/services/prometheus.sh) scrapes `smtpprobe exporter`, which
probes the real Postfix of tests/realmta: the test starts the exporter on a loopback port of
its own, writes a file_sd target file for it, and asks Prometheus's HTTP API until it has
`probe_success` 1 for an accepted address and 0 for a rejected one, as Prometheus stored them.

Skipped unless SMTPPROBE_PROMETHEUS_URL is set (realmta.sh env prints it); when it is set, a
Prometheus that does not scrape fails the test."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest

TOPOLOGY: dict[str, Any] = json.loads(
    (Path(__file__).parent / "topology.json").read_text(encoding="utf-8"))
ENV = TOPOLOGY["env"]
PROMETHEUS = os.environ.get("SMTPPROBE_PROMETHEUS_URL", "")
TARGETS = os.environ.get("SMTPPROBE_PROMETHEUS_TARGETS", "")

pytestmark = [
    pytest.mark.realmta,
    pytest.mark.skipif(not (PROMETHEUS and TARGETS and os.environ.get(ENV["enabled"])),
                       reason="SMTPPROBE_PROMETHEUS_URL or SMTPPROBE_REALMTA is not set "
                              '(tests/realmta/realmta.sh start; eval "$(tests/realmta/'
                              'realmta.sh env)")'),
]

ACCEPTED = "alice@accept.test"
REJECTED = "nosuchuser@accept.test"


Exporter = Callable[..., AbstractContextManager[tuple[str, "subprocess.Popen[bytes]"]]]


@pytest.fixture
def exporter(tmp_path: Path, smtpprobe_exporter: Exporter) -> Iterator[str]:
    """`smtpprobe exporter` on 127.0.0.1 (any port) with a check module for the real MX; its
    host:port."""
    config = tmp_path / "modules.toml"
    config.write_text(
        "[modules.mx]\n"
        'job = "check"\n'
        f'resolver = "{os.environ[ENV["resolver"]]}"\n'
        f'cafile = "{os.environ[ENV["ca_file"]]}"\n'
        'helo = "probe.smtpprobe.test"\n'
        "timeout = 5\n", encoding="utf-8")
    with smtpprobe_exporter(config, tmp_path / "exporter.log") as (url, _):
        yield url.removeprefix("http://")


def _query(expr: str) -> list[dict[str, Any]]:
    url = f"{PROMETHEUS}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=5) as answer:
        data = json.loads(answer.read())
    assert data["status"] == "success", data
    result: list[dict[str, Any]] = data["data"]["result"]
    return result


def test_prometheus_sees_an_accepting_and_a_rejecting_target(exporter: str) -> None:
    run = secrets.token_hex(4)  # this run's series, apart from earlier runs' in the TSDB
    targets = Path(TARGETS) / f"smtpprobe-test-{run}.json"
    temporary = targets.with_suffix(".tmp")
    temporary.write_text(json.dumps([{
        "targets": [ACCEPTED, REJECTED],
        "labels": {"module": "mx", "__exporter": exporter, "run": run},
    }]), encoding="utf-8")
    temporary.rename(targets)  # file_sd must never read half a file
    try:
        seen: dict[str, float] = {}
        days: list[dict[str, Any]] = []
        give_up = time.monotonic() + 45
        while time.monotonic() < give_up:
            seen = {r["metric"]["instance"]: float(r["value"][1])
                    for r in _query(f'probe_success{{run="{run}"}}')}
            days = _query(f'smtp_tls_certificate_days_left{{run="{run}"}}')
            if len(seen) == 2 and days:
                break
            time.sleep(0.5)
        assert seen == {ACCEPTED: 1.0, REJECTED: 0.0}, seen
        up = {r["metric"]["instance"]: r["value"][1] for r in _query(f'up{{run="{run}"}}')}
        assert up == {ACCEPTED: "1", REJECTED: "1"}  # a rejection is a metric, not a failed scrape
        assert days and float(days[0]["value"][1]) > 0
        verdicts = _query(f'smtp_verdict{{run="{run}", verdict="rejected"}} == 1')
        assert [v["metric"]["instance"] for v in verdicts] == [REJECTED]
        finding = _query(f'smtp_finding{{run="{run}", category="user_unknown"}} == 1')
        assert [f["metric"]["instance"] for f in finding] == [REJECTED]
    finally:
        targets.unlink(missing_ok=True)
