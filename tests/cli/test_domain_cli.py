"""`smtpprobe domain` through the real command line, against the lab world in a thread:
exit codes, the JSON shape, German output, bad input."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable, Iterator

import pytest

from smtpprobe.cli import exits
from smtpprobe.lab.dns import unused_udp_port
from smtpprobe.lab.world import DNSBL_ZONE, DOMAIN_DOMAINS, LabWorld, lab_world_in_thread
from smtpprobe.models import DomainCheck, DomainReport, HealthStatus, LocalText
from smtpprobe.report import words

RunCli = Callable[..., subprocess.CompletedProcess[str]]
WIDE = {"COLUMNS": "400"}  # one row per line: the server's and our details stay on theirs
# The lab's own blocklist zone, so that the defaults meant for real use never run here.
LAB_DNSBL = DNSBL_ZONE


@pytest.fixture(scope="module")
def world() -> Iterator[LabWorld]:
    with lab_world_in_thread(DOMAIN_DOMAINS) as lab:
        yield lab


def _domain(run_cli: RunCli, lab: LabWorld, *args: str) -> subprocess.CompletedProcess[str]:
    host, port = lab.resolver
    return run_cli("domain", *args, "--resolver", f"{host}:{port}", "--port", str(lab.port),
                   "--cafile", lab.cafile, "--dnsbl", LAB_DNSBL, "--timeout", "3",
                   "--deadline", "30", env=WIDE)


def test_healthy_domain_exits_0(run_cli: RunCli, world: LabWorld) -> None:
    done = _domain(run_cli, world, "healthy.test", "--lang", "en")
    assert done.returncode == exits.OK, done.stdout + done.stderr
    assert "Mail domain healthy.test" in done.stdout
    assert "mx.healthy.test [127.0.0.31]" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr


def test_verbose_shows_the_facts(run_cli: RunCli, world: LabWorld) -> None:
    done = _domain(run_cli, world, "healthy.test", "--lang", "en", "-v")
    assert done.returncode == exits.OK
    assert "greeting=mx.healthy.test; ptr=mx.healthy.test" in done.stdout
    plain = _domain(run_cli, world, "healthy.test", "--lang", "en")
    assert "greeting=" not in plain.stdout


def test_broken_domain_exits_1_and_explains(run_cli: RunCli, world: LabWorld) -> None:
    done = _domain(run_cli, world, "broken.test", "--lang", "en")
    assert done.returncode == exits.FAILED, done.stdout + done.stderr
    out = done.stdout
    assert "What to fix" in out
    # The table row and the panel with cause and remedy of the knowledge base's rule.
    assert re.search(r"postmaster\s+mx\.broken\.test \[127\.0\.0\.32\]\s+FAIL", out)
    assert "postmaster address refused" in out and "RFC 5321 4.5.1" in out
    assert "Certificate expired" in out


def test_only_unknowns_exit_3(run_cli: RunCli) -> None:
    # A resolver address where nothing listens: nothing can be checked, nothing failed.
    done = run_cli("domain", "healthy.test", "--resolver", f"127.0.0.1:{unused_udp_port()}",
                   "--dnsbl", LAB_DNSBL, "--timeout", "1", "--deadline", "10", "--json")
    assert done.returncode == exits.TEMPORARY, done.stdout + done.stderr
    data = json.loads(done.stdout)
    assert data["summary"]["fail"] == 0 and data["summary"]["warn"] == 0
    mine = [c for c in data["checks"] if c["id"] in ("mx", "ipv6", "ptr", "starttls",
                                                     "certificate", "postmaster")]
    assert mine and all(c["status"] == "unknown" for c in mine)
    assert mine[0]["finding"]["rule"] == "failure.dns_resolver_refused"


def test_exit_codes_from_the_counts() -> None:
    def report(*statuses: HealthStatus) -> DomainReport:
        return DomainReport("x.test", "x.test", tuple(
            DomainCheck("mx", "x.test", s, LocalText("a", "b")) for s in statuses))

    assert exits.for_domain(report(HealthStatus.OK, HealthStatus.INFO)) == exits.OK
    assert exits.for_domain(report(HealthStatus.OK, HealthStatus.WARN)) == exits.TEMPORARY
    assert exits.for_domain(report(HealthStatus.UNKNOWN)) == exits.TEMPORARY
    assert exits.for_domain(report(HealthStatus.WARN, HealthStatus.FAIL)) == exits.FAILED
    assert exits.for_domain(report()) == exits.OK


def test_json_shape(run_cli: RunCli, world: LabWorld) -> None:
    done = _domain(run_cli, world, "broken.test", "--json", "--lang", "en")
    assert done.returncode == exits.FAILED
    data = json.loads(done.stdout)
    assert set(data) == {"schema", "smtpprobe_version", "generated_at", "domain", "checks",
                         "summary"}
    assert data["schema"] == "smtpprobe.domain/1" and data["domain"] == "broken.test"
    assert set(data["summary"]) == {"ok", "warn", "fail", "info", "unknown"}
    assert sum(data["summary"].values()) == len(data["checks"])
    ids = {c["id"] for c in data["checks"]}
    assert {"mx", "mx_address", "ptr", "fcrdns", "banner_name", "starttls", "tls_version",
            "certificate", "postmaster"} <= ids
    for check in data["checks"]:
        assert set(check) == {"id", "subject", "status", "finding", "details"}
        assert check["status"] in data["summary"]
        if check["status"] == "ok":
            assert check["finding"] is None
        else:
            assert {"category", "title", "cause", "remedy"} <= set(check["finding"])
    [postmaster] = [c for c in data["checks"] if c["id"] == "postmaster"]
    assert postmaster["subject"] == "mx.broken.test [127.0.0.32]"
    assert postmaster["finding"]["rule"] == "domain.postmaster.refused"


def _english_interface_words() -> set[str]:
    english: set[str] = set()
    german: set[str] = set()
    for key, (en, de) in words._TEXTS.items():
        if key.startswith("domain.") or key in ("cause", "remedy", "retry", "stage", "rule"):
            english |= {w.lower() for w in re.findall(r"[A-Za-z]{3,}", en)}
            german |= {w.lower() for w in re.findall(r"[A-Za-z]{3,}", de)}
    return english - german - {"ipv", "dns", "mx", "tls", "dkim", "dmarc", "spf", "dane",
                               "sts", "rpt", "mta", "starttls", "postmaster", "info", "details",
                               "mail", "name"}


# English words of our own one-line summaries (probe/domain.py) that must not show in German.
SUMMARY_WORDS = {"offered", "accepted", "refused", "greets", "days", "left", "valid",
                 "reachable", "leads", "back", "records", "address", "expired", "still",
                 "accepts", "nothing", "newer", "checked"}


@pytest.mark.parametrize("domain", ["healthy.test", "broken.test", "nomail.test"])
def test_german_output_has_no_english_interface_words(run_cli: RunCli, world: LabWorld,
                                                      domain: str) -> None:
    done = _domain(run_cli, world, domain, "--lang", "de")
    assert done.returncode in (exits.OK, exits.FAILED, exits.TEMPORARY)
    own = []
    for line in done.stdout.splitlines():
        # Not ours: the details row of a panel (our failure detail or the server's words) and
        # the rule/sources row.
        if re.match(r"^\s*[│|]?\s*(Einzelheiten|Regel)\b", line):
            continue
        own.append(line)
    text = re.sub(r"\S+@\S+|--[\w-]+|\b\w+_\w+\b|\b[\w-]+(?:\.[\w-]+)+\b|\([a-z_]+\)", " ",
                  "\n".join(own))
    found = {w.lower() for w in re.findall(r"[A-Za-z]{3,}", text)}
    assert not found & _english_interface_words(), (found & _english_interface_words(),
                                                    done.stdout)
    assert not found & SUMMARY_WORDS, (found & SUMMARY_WORDS, done.stdout)
    assert "Maildomain" in done.stdout and "Prüfung" in done.stdout


@pytest.mark.parametrize("args", [
    ["not a domain"],
    ["alice@example.test"],
    ["192.0.2.1"],
    ["healthy.test", "--ip", "300.1.1.1"],
    ["healthy.test", "--selector", "bad selector"],
    ["healthy.test", "--dnsbl", "-bad-.zone"],
    ["healthy.test", "--timeout", "0"],
    ["healthy.test", "--port", "70000"],
    ["healthy.test", "--resolver", "dns.example"],
    ["healthy.test", "--lang", "fr"],
    ["healthy.test", "--cafile", "/nonexistent/ca.pem"],
])
def test_bad_input_exits_2_with_one_line(run_cli: RunCli, args: list[str]) -> None:
    done = run_cli("domain", *args, "--resolver", "127.0.0.1:9", "--dnsbl", LAB_DNSBL) \
        if "--resolver" not in args else run_cli("domain", *args)
    assert done.returncode == exits.USAGE, done.stdout + done.stderr
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("smtpprobe: error:"), done.stderr


def test_help_lists_domain(run_cli: RunCli) -> None:
    done = run_cli("--help")
    assert "domain" in done.stdout
    done = run_cli("domain", "--help")
    assert done.returncode == 0 and "--open-relay" in done.stdout and "--selector" in done.stdout
