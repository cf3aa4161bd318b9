"""`smtpprobe exporter` as Prometheus runs it: a process on loopback, scraped over HTTP, probing
lab servers (a lab world served from a thread). Modules are validated at start-up (exit 2, one
line); bad requests are 400 with one line and no probe; a slow server costs the scrape's time
at most, and a failing probe is a metric, never a 500."""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from smtpprobe.cli import exits
from smtpprobe.lab.smtp import SCENARIOS
from smtpprobe.lab.world import DEMO_DOMAINS, Domain, LabWorld, lab_world_in_thread

RunCli = Callable[..., subprocess.CompletedProcess[str]]
SECRET = "Exporter-Secret-4e1d"
# A server that greets only after a minute: every probe of it must end by the scrape budget.
SLOW = dataclasses.replace(SCENARIOS["slow_banner"], name="very_slow", banner_delay=60.0)
DOMAINS = (*DEMO_DOMAINS, Domain("slow.test", ((10, "mx.slow.test", "127.0.0.51", SLOW),)))


def _modules(world: LabWorld, **extra: str) -> str:
    host, port = world.resolver
    common = (f'resolver = "{host}:{port}"\ncafile = "{world.cafile}"\ntimeout = 3\n'
              f'helo = "probe.smtpprobe.test"\n')
    text = (f'[modules.mx]\njob = "check"\nport = {world.port}\n{common}\n'
            f'[modules.relay]\njob = "relay"\nto = ["alice@good.test"]\n'
            f'from = "probe@smtpprobe.test"\n{common}\n'
            f'[modules.sweep]\njob = "sweep"\nports = "{world.port}:starttls"\n{common}\n'
            f'[modules.login]\njob = "check"\nport = {world.port}\nuser = "probe"\n'
            f'password_env = "EXPORTER_TEST_PW"\n{common}\n'
            f'[modules.domain]\njob = "domain"\nport = {world.port}\n'
            f'dnsbl = ["zen.dnsbl.test"]\n{common}\n')
    return text + "".join(f"[modules.{name}]\n{body}\n" for name, body in extra.items())


@dataclasses.dataclass
class Running:
    url: str
    process: subprocess.Popen[bytes]
    log: Path
    world: LabWorld

    def get(self, path: str, *, timeout_header: str | None = None,
            wait: float = 30.0) -> tuple[int, str, float]:
        """(status, body, seconds) of one GET; a hang fails the test after `wait` s."""
        request = urllib.request.Request(self.url + path)
        if timeout_header is not None:
            request.add_header("X-Prometheus-Scrape-Timeout-Seconds", timeout_header)
        started = time.monotonic()
        try:
            with urllib.request.urlopen(request, timeout=wait) as answer:
                return answer.status, answer.read().decode(), time.monotonic() - started
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(), time.monotonic() - started

    def samples(self, path: str, **kwargs: Any) -> dict[tuple[str, tuple[Any, ...]], float]:
        status, body, _ = self.get(path, **kwargs)
        assert status == 200, body
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for family in text_string_to_metric_families(body) for s in family.samples}


Exporter = Callable[..., AbstractContextManager[tuple[str, "subprocess.Popen[bytes]"]]]


@pytest.fixture(scope="module")
def exporter(tmp_path_factory: pytest.TempPathFactory,
             smtpprobe_exporter: Exporter) -> Iterator[Running]:
    tmp = tmp_path_factory.mktemp("exporter")
    with lab_world_in_thread(DOMAINS) as world:
        config = tmp / "modules.toml"
        config.write_text(_modules(world), encoding="utf-8")
        with smtpprobe_exporter(config, tmp / "exporter.log", "--concurrency", "2",
                                "--margin", "1", env={"EXPORTER_TEST_PW": SECRET}
                                ) as (url, process):
            yield Running(url, process, tmp / "exporter.log", world)


def test_an_accepting_and_a_rejecting_target(exporter: Running) -> None:
    good = exporter.samples("/probe?module=mx&target=alice@good.test")
    assert good[("probe_success", ())] == 1
    assert good[("smtp_verdict", (("verdict", "accepted"),))] == 1
    assert good[("smtp_reply_code", (("step", "rcpt"),))] == 250
    assert good[("smtp_tls_certificate_verified", ())] == 1
    assert ("smtp_tls_certificate_days_left", ()) in good
    bad = exporter.samples("/probe?module=mx&target=nobody@good.test")
    assert bad[("probe_success", ())] == 0
    assert bad[("smtp_finding", (("category", "user_unknown"), ("severity", "error")))] == 1
    grey = exporter.samples("/probe?module=mx&target=alice@grey.test")
    assert grey[("smtp_verdict", (("verdict", "deferred"),))] == 1


def test_relay_and_sweep_modules(exporter: Running) -> None:
    port = exporter.world.port
    relay = exporter.samples(f"/probe?module=relay&target=mx.good.test:{port}")
    assert relay[("probe_success", ())] == 1
    assert relay[("smtp_relay_check_passed", (("check", "rcpt:alice@good.test"),))] == 1
    sweep = exporter.samples("/probe?module=sweep&target=mx.good.test")
    assert sweep[("smtp_sweep_port_open", (("mode", "starttls"), ("port", str(port))))] == 1
    assert ("smtpprobe_build_info", (("version", _version()),)) in sweep


def test_the_domain_module_has_one_series_per_check(exporter: Running) -> None:
    got = exporter.samples("/probe?module=domain&target=good.test", timeout_header="20")
    assert ("probe_success", ()) in got
    checks = {dict(labels)["check"]: value for (name, labels), value in got.items()
              if name == "smtp_domain_check_status"}
    assert checks.get("mx") == 0, checks  # good.test has a working MX
    assert {"starttls", "spf", "dmarc"} <= set(checks), checks
    status, body, _ = exporter.get("/probe?module=domain&target=alice@good.test")
    assert status == 400 and "give the domain" in body


def _version() -> str:
    from smtpprobe import __version__

    return __version__


def test_bad_requests_are_400_with_one_line_and_no_probe(exporter: Running) -> None:
    server = exporter.world.servers["mx.good.test"]
    before = server.connections
    port = exporter.world.port
    for path, words in (
            ("/probe?module=nope&target=alice@good.test", "unknown module 'nope'"),
            ("/probe?target=alice@good.test", "give module=NAME"),
            ("/probe?module=mx", "give one target="),
            ("/probe?module=mx&target=a@good.test&target=b@good.test", "give one target="),
            ("/probe?module=mx&target=not-an-address", "has no '@'"),
            ("/probe?module=relay&target=mx.good.test:99999", "target"),
            ("/probe?module=sweep&target=mx.good.test:25", "without a port"),
            (f"/probe?module=mx&target=alice@good.test&password={SECRET}",
             "unknown parameter 'password'"),
            (f"/probe?module=relay&target=mx.good.test:{port}&timeout=1",
             "unknown parameter 'timeout'")):
        status, body, _ = exporter.get(path)
        assert status == 400, (path, body)
        assert body.count("\n") == 1 and words in body, (path, body)
        assert SECRET not in body
    assert server.connections == before  # nothing was probed
    own = exporter.samples("/metrics")
    assert own[("smtpprobe_exporter_probes_rejected_total",
                (("reason", "unknown_module"),))] >= 1
    status, _, _ = exporter.get("/nothing-here")
    assert status == 404


def test_a_slow_server_costs_the_scrape_budget_not_a_hang(exporter: Running) -> None:
    got = exporter.samples("/probe?module=mx&target=alice@slow.test", timeout_header="2")
    assert got[("probe_success", ())] == 0
    # Its budget is the scrape timeout less --margin 1: 1 s, by smtpprobe's own deadline or
    # the cut-off; the answer must come before Prometheus would give up (2 s).
    assert got[("probe_duration_seconds", ())] < 2.0
    assert exporter.process.poll() is None


def test_concurrency_is_capped_and_waiting_counts_against_the_budget(
        exporter: Running) -> None:
    slow = exporter.world.servers["mx.slow.test"]  # greets after a minute
    before = slow.connections
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda _: exporter.samples(
            "/probe?module=mx&target=alice@slow.test", timeout_header="1.5"), range(6)))
    assert all(a[("probe_success", ())] == 0 for a in answers)
    # --concurrency 2: the probes that waited for a slot ran out of time before connecting
    waited = [a for a in answers if ("smtpprobe_probe_error", (("reason", "timeout"),)) in a]
    assert waited, "every probe got a slot at once"
    assert slow.connections - before <= 2 * 2  # two slots, a retry each at most
    own = exporter.samples("/metrics")
    assert own[("smtpprobe_exporter_probes_in_flight", ())] == 0
    assert own[("smtpprobe_exporter_probes_total",
                (("module", "mx"), ("result", "timeout")))] >= len(waited)
    assert "no result within" in exporter.log.read_text()


def test_the_exporters_own_metrics(exporter: Running) -> None:
    own = exporter.samples("/metrics")
    assert ("process_resident_memory_bytes", ()) in own
    assert own[("smtpprobe_exporter_probes_total", (("module", "mx"),
                                                    ("result", "success")))] >= 1
    status, body, _ = exporter.get("/")
    assert status == 200 and "mx (check: target is an address)" in body


def test_a_login_module_never_shows_the_password(exporter: Running) -> None:
    status, body, _ = exporter.get("/probe?module=login&target=alice@good.test")
    assert status == 200 and SECRET not in body
    assert SECRET not in exporter.log.read_text()


# --- start-up: a bad file is one line and exit 2 ----------------------------------------------


@pytest.mark.parametrize("config, words", [
    ("not toml = = =", "not valid TOML"),
    ("[modules]\n", "no [modules.NAME] table"),
    ("[other]\nx = 1\n", "unknown table 'other'"),
    ('[modules.a]\njob = "ping"\n', "module a: job must be one of check, relay, sweep, domain"),
    ('[modules.a]\nresolver = "127.0.0.1"\n', "module a: job must be one of"),
    ('[modules.a]\njob = "check"\nno_such = 1\n', "module a: check has no option --no-such"),
    ('[modules.a]\njob = "check"\njson = true\n', "module a: --json is not for the exporter"),
    ('[modules.a]\njob = "check"\nnagios = true\n', "--nagios is not for the exporter"),
    ('[modules.a]\njob = "relay"\nserver = "smtp.example.org"\n',
     "module a: --server comes from the target"),
    ('[modules.a]\njob = "sweep"\ntimeout = "soon"\n', "module a: timeout:"),
    ('[modules.a]\njob = "sweep"\ntimeout = 0\n', "--timeout must be between"),
    ('[modules.a]\njob = "check"\nallow_private = "yes"\n', "give true or false"),
    ('[modules.a]\njob = "check"\ntls = "sometimes"\n', "--tls: unknown mode"),
    ('[modules.a]\njob = "check"\ncafile = "/nonexistent/ca.pem"\n', "--cafile"),
    ('[modules.a]\njob = "relay"\nuser = "app"\n',
     "module a: user app needs password_env or password_file"),
    ('[modules.a]\njob = "relay"\nuser = "app"\npassword_env = "NOT_SET_ANYWHERE_13"\n',
     "NOT_SET_ANYWHERE_13 is not set"),
    ('[modules.a]\njob = "relay"\nuser = "app"\npassword_file = "/nonexistent/pw"\n',
     "--password-file /nonexistent/pw"),
    ('[modules.a]\njob = "relay"\nto = [1, 2]\n', "give a string or a list of strings"),
])
def test_a_bad_config_stops_the_exporter(tmp_path: Path, run_cli: RunCli, config: str,
                                         words: str) -> None:
    path = tmp_path / "modules.toml"
    path.write_text(config, encoding="utf-8")
    done = run_cli("exporter", "--config", str(path), "--listen", "127.0.0.1:0", timeout=30)
    assert done.returncode == exits.USAGE, done.stderr
    assert done.stderr.count("\n") == 1 and words in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""


def test_a_missing_config_and_a_bad_listen(tmp_path: Path, run_cli: RunCli) -> None:
    done = run_cli("exporter", "--config", str(tmp_path / "none.toml"), timeout=30)
    assert done.returncode == exits.USAGE and "--config" in done.stderr
    path = tmp_path / "m.toml"
    path.write_text('[modules.a]\njob = "check"\n', encoding="utf-8")
    done = run_cli("exporter", "--config", str(path), "--listen", "nowhere", timeout=30)
    assert done.returncode == exits.USAGE and "--listen 'nowhere'" in done.stderr


# --- a probe that raises is a metric (in process) ----------------------------------------------


class _Broken:
    job = "check"
    cafile = None

    def target(self, text: str) -> str:
        return text

    async def probe(self, target: str, **_: Any) -> Any:
        await asyncio.sleep(0)
        raise RuntimeError("a fault of smtpprobe itself")


def test_an_exception_in_a_probe_is_a_metric_and_a_log_line(
        capsys: pytest.CaptureFixture[str]) -> None:
    from smtpprobe.cli.exporter import Exporter
    from smtpprobe.core.certs import TrustStore

    runner = Exporter({"broken": _Broken()}, kb=None,  # type: ignore[arg-type,dict-item]
                      trusts={"broken": TrustStore((), "none")}, concurrency=1, margin=0.5)
    runner.start()
    try:
        families = runner.probe("broken", "x", 2.0)
    finally:
        runner.stop()
    assert families.value("probe_success") == 0
    assert families.value("smtpprobe_probe_error", reason="error") == 1
    assert "probe failed: RuntimeError: a fault of smtpprobe itself" in capsys.readouterr().err


def test_the_scrape_budget() -> None:
    from smtpprobe.cli.exporter import DEFAULT_BUDGET, MIN_BUDGET, scrape_budget

    assert scrape_budget("10", margin=0.5) == 9.5
    assert scrape_budget(None, margin=0.5) == DEFAULT_BUDGET - 0.5
    assert scrape_budget("garbage", margin=0.5) == DEFAULT_BUDGET - 0.5
    assert scrape_budget("nan", margin=0.5) == DEFAULT_BUDGET - 0.5
    assert scrape_budget("0.2", margin=0.5) == MIN_BUDGET
    assert scrape_budget("1e9", margin=0.5) == 300.0
