"""`--nagios` on check, relay and sweep: the output is parsed with the grammar of the
monitoring-plugins development guidelines (status line, long text, perfdata
`'label'=value[UOM];[warn];[crit];[min];[max]`), and the exit code must be the state's."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from smtpprobe.cli import exits
from smtpprobe.lab.world import LabWorld, lab_world_in_thread

RunCli = Callable[..., subprocess.CompletedProcess[str]]

# The guidelines' performance data: label (quoted when it has spaces; never = or '), a
# number, a unit of s, us, ms, %, B, KB, MB, TB or c, then warn;crit;min;max, where warn and
# crit are ranges ([@][start:][end], start may be ~) and min and max plain numbers.
_NUMBER = r"-?[0-9]+(?:\.[0-9]+)?"
_RANGE = rf"@?(?:(?:~|{_NUMBER})?:)?(?:{_NUMBER})?"
_LABEL = r"(?:'[^'=]+'|[^'=\s]+)"
PERF = re.compile(rf"(?P<label>{_LABEL})=(?P<value>{_NUMBER})(?P<uom>s|us|ms|%|B|KB|MB|TB|c)?"
                  rf"(?:;(?P<warn>{_RANGE}))?(?:;(?P<crit>{_RANGE}))?"
                  rf"(?:;(?P<min>{_NUMBER})?)?(?:;(?P<max>{_NUMBER})?)?")
STATUS = re.compile(r"^SMTP (?P<state>OK|WARNING|CRITICAL|UNKNOWN) - (?P<text>[^|]+?)"
                    r"(?: \| (?P<perf>.+))?$")


@dataclass
class Plugin:
    state: str
    text: str
    perf: dict[str, dict[str, str]]
    long: list[str]
    code: int


def parse(done: subprocess.CompletedProcess[str]) -> Plugin:
    """The plugin output by the guidelines; fails the test on anything else."""
    lines = done.stdout.splitlines()
    assert lines, f"no output; stderr: {done.stderr}"
    head = STATUS.match(lines[0])
    assert head, f"not a plugin status line: {lines[0]!r}"
    perf: dict[str, dict[str, str]] = {}
    for item in (head["perf"] or "").split(" "):
        if not item:
            continue
        match = PERF.fullmatch(item)
        assert match, f"perfdata {item!r} does not follow the guidelines"
        assert match["label"] not in perf, f"label {match['label']} twice"
        perf[match["label"]] = {k: v for k, v in match.groupdict().items() if v is not None}
    for line in lines[1:]:
        assert "|" not in line, f"a | in the long text starts perfdata: {line!r}"
    assert exits.NAGIOS_CODES[head["state"]] == done.returncode, (head["state"],
                                                                  done.returncode)
    return Plugin(head["state"], head["text"], perf, lines[1:], done.returncode)


@pytest.fixture(scope="module")
def world() -> Iterator[LabWorld]:
    with lab_world_in_thread() as lab:
        yield lab


def _lab(world: LabWorld) -> list[str]:
    host, port = world.resolver
    return ["--resolver", f"{host}:{port}", "--cafile", world.cafile, "--timeout", "3"]


def _check(run_cli: RunCli, world: LabWorld, address: str, *extra: str) -> Plugin:
    return parse(run_cli("check", address, "--port", str(world.port), *_lab(world),
                         "--nagios", *extra))


def test_the_exit_codes_are_the_guidelines() -> None:
    assert exits.NAGIOS_CODES == {"OK": 0, "WARNING": 1, "CRITICAL": 2, "UNKNOWN": 3}
    # every outcome has a state, and every state a code
    assert set(exits.NAGIOS_STATES.values()) <= set(exits.NAGIOS_CODES)


def test_accepted_is_ok_with_time_steps_and_certificate_days(run_cli: RunCli,
                                                             world: LabWorld) -> None:
    out = _check(run_cli, world, "alice@good.test", "-w", "5", "-c", "10",
                 "--cert-warning", "10:", "--cert-critical", "5:")
    assert out.state == "OK" and out.code == 0
    assert out.text.startswith("alice@good.test accepted by mx.good.test in ")
    assert out.perf["time"]["uom"] == "s"
    assert (out.perf["time"]["warn"], out.perf["time"]["crit"]) == ("5", "10")
    assert out.perf["time"]["min"] == "0"
    for step in ("connect", "ehlo", "starttls", "ehlo_2", "mail", "rcpt"):
        assert out.perf[step]["uom"] == "s", step
    assert (out.perf["tls_days"]["warn"], out.perf["tls_days"]["crit"]) == ("10:", "5:")
    assert out.long[0].startswith("ACCEPTED")


def test_the_default_certificate_thresholds_warn_under_30_days(run_cli: RunCli,
                                                              world: LabWorld) -> None:
    # The lab CA issues leaves for 30 days: fewer than 30 are left by now.
    out = _check(run_cli, world, "alice@good.test")
    days = int(out.perf["tls_days"]["value"])
    assert 14 < days < 30
    assert out.state == "WARNING" and out.code == 1
    assert f"certificate expires in {days} days" in out.text
    assert (out.perf["tls_days"]["warn"], out.perf["tls_days"]["crit"]) == ("30:", "14:")


def test_rejected_is_critical_with_the_explanation(run_cli: RunCli, world: LabWorld) -> None:
    out = _check(run_cli, world, "nobody@good.test")
    assert out.state == "CRITICAL" and out.code == 2
    assert "nobody@good.test rejected by mx.good.test" in out.text
    assert any(line.startswith("Cause: ") for line in out.long)
    assert any(line.startswith("What to do: ") for line in out.long)
    assert any("550" in line for line in out.long if line.startswith("Server said: "))


def test_deferred_is_warning(run_cli: RunCli, world: LabWorld) -> None:
    out = _check(run_cli, world, "alice@grey.test")
    assert out.state == "WARNING" and out.code == 1
    assert "deferred" in out.text


def test_unreachable_is_critical(run_cli: RunCli, world: LabWorld) -> None:
    # mx1.backup.test (127.0.0.29) has nothing listening: --server it directly
    out = _check(run_cli, world, "alice@good.test", "--server", f"127.0.0.29:{world.port}")
    assert out.state == "CRITICAL" and out.code == 2
    assert "no mail server" in out.text


def test_thresholds_make_the_state_worse(run_cli: RunCli, world: LabWorld) -> None:
    # No lab conversation takes under a microsecond: outside 0..0.000001
    warn = _check(run_cli, world, "alice@good.test", "--warning", "0.000001",
                  "--cert-warning", "0:")
    assert warn.state == "WARNING" and "response time" in warn.text
    crit = _check(run_cli, world, "alice@good.test", "-w", "0.000001", "-c", "0.000001",
                  "--cert-warning", "0:")
    assert crit.state == "CRITICAL"
    # A certificate with hundreds of days is outside "at least 100000 days"
    cert = _check(run_cli, world, "alice@good.test", "--cert-warning", "100000:",
                  "--cert-critical", "0:")
    assert cert.state == "WARNING" and "certificate expires in" in cert.text
    assert cert.perf["tls_days"]["warn"] == "100000:"
    cert = _check(run_cli, world, "alice@good.test", "--cert-critical", "@0:100000")
    assert cert.state == "CRITICAL"
    # A rejection stays CRITICAL whatever the thresholds say
    assert _check(run_cli, world, "nobody@good.test", "-w", "1000").state == "CRITICAL"


def test_usage_errors_are_unknown(run_cli: RunCli, world: LabWorld) -> None:
    for args in (["check", "not-an-address", "--nagios"],
                 ["check", "alice@good.test", "--nagios", "--no-such-option"],
                 ["check", "alice@good.test", "--nagios", "--warning", "ten"],
                 ["check", "alice@good.test", "bob@good.test", "--nagios"],
                 ["relay", "--nagios"],
                 ["sweep", "mx.good.test:25", "--nagios"]):
        done = run_cli(*args)
        out = parse(done)
        assert out.state == "UNKNOWN" and out.code == 3, args
        assert out.perf == {} and len(done.stdout.splitlines()) == 1
        assert done.stderr.startswith("smtpprobe: error: ") and done.stderr.count("\n") == 1
    # Without --nagios a threshold is a plain usage error
    done = run_cli("check", "alice@good.test", "-w", "1")
    assert done.returncode == exits.USAGE and "--warning needs --nagios" in done.stderr
    assert done.stdout == ""


def test_relay_passes_and_names_its_checks(run_cli: RunCli, world: LabWorld) -> None:
    out = parse(run_cli("relay", "-s", f"mx.good.test:{world.port}", *_lab(world),
                        "--nagios", "--lang", "de", "--cert-warning", "0:"))
    assert out.state == "OK" and out.code == 0
    assert out.text.startswith(f"Relay mx.good.test:{world.port} hat 2 Prüfungen")
    assert "Verbindung: bestanden" in out.long and "TLS: bestanden" in out.long
    assert {"time", "tls_days", "connect", "starttls"} <= set(out.perf)


def test_relay_with_the_wrong_name_is_critical(run_cli: RunCli, world: LabWorld) -> None:
    # The certificate names mx.good.test, not the address it was reached by
    out = parse(run_cli("relay", "-s", f"127.0.0.21:{world.port}", *_lab(world), "--nagios"))
    assert out.state == "CRITICAL" and out.code == 2
    assert "tls failed" in out.text


def test_sweep_ok_and_critical(run_cli: RunCli, world: LabWorld) -> None:
    out = parse(run_cli("sweep", "mx.good.test", "--ports", f"{world.port}:starttls",
                        *_lab(world), "--nagios"))
    assert out.code in (0, 2)  # an MX is no submission server: sweep may say so
    assert f"port_{world.port}" in out.perf
    dead = parse(run_cli("sweep", "127.0.0.29", "--ports", f"{world.port}", *_lab(world),
                         "--nagios"))
    assert dead.state == "CRITICAL" and dead.code == 2
    assert "no port works" in dead.text
    assert f"port {world.port} (STARTTLS): refused" in dead.long


def test_domain_counts_its_checks(run_cli: RunCli, world: LabWorld) -> None:
    out = parse(run_cli("domain", "good.test", "--port", str(world.port), *_lab(world),
                        "--dnsbl", "zen.dnsbl.test", "--nagios", timeout=120))
    counts = {status: int(out.perf[status]["value"])
              for status in ("ok", "info", "warn", "fail", "unknown") if status in out.perf}
    assert f"good.test: {sum(counts.values())} checks" in out.text
    worst = next((s for s in ("fail", "unknown", "warn") if counts.get(s)), "ok")
    assert out.state == {"fail": "CRITICAL", "unknown": "UNKNOWN", "warn": "WARNING",
                         "ok": "OK"}[worst]
    # one line for each check that is not ok or info
    flagged = [line for line in out.long if ": WARN: " in line or ": FAIL: " in line
               or ": unknown: " in line]
    assert len(flagged) == counts.get("warn", 0) + counts.get("fail", 0) + \
        counts.get("unknown", 0)
