"""`smtpprobe check` end to end against the real Postfix, postgrey and dnsmasq of tests/realmta.

Runs the installed command line exactly as a user would (with --resolver pointing at the
loopback dnsmasq, so no lookup leaves the machine) and asserts verdicts, categories and exit
codes. Skipped unless SMTPPROBE_REALMTA is set; when it is set, a broken installation fails.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

TOPOLOGY: dict[str, Any] = json.loads(
    (Path(__file__).parent / "topology.json").read_text(encoding="utf-8"))
ENV = TOPOLOGY["env"]

pytestmark = [
    pytest.mark.realmta,
    pytest.mark.skipif(not os.environ.get(ENV["enabled"]),
                       reason=f"{ENV['enabled']} is not set (tests/realmta/realmta.sh start; "
                              f'eval "$(tests/realmta/realmta.sh env)")'),
]


# The type of conftest's run_cli fixture.
RunCli = Callable[..., subprocess.CompletedProcess[str]]


def smtpprobe(run_cli: RunCli, *args: str) -> tuple[int, dict[str, Any], str]:
    resolver = os.environ[ENV["resolver"]]
    cafile = os.environ[ENV["ca_file"]]
    done = run_cli("check", *args, "--json", "--resolver", resolver, "--cafile", cafile,
                   "--helo", "probe.smtpprobe.test", "--timeout", "10", timeout=120)
    assert "Traceback" not in done.stderr, done.stderr
    data = json.loads(done.stdout) if done.stdout.strip() else {}
    return done.returncode, data, done.stderr


CASES = [
    # address, extra args, exit code, verdict, category, address status
    ("alice@accept.test", [], 0, "accepted", "success", "exists"),
    ("nosuchuser@accept.test", [], 1, "rejected", "user_unknown", "does_not_exist"),
    ("full@accept.test", [], 1, "rejected", "mailbox_full", "exists"),
    ("disabled@accept.test", [], 1, "rejected", "mailbox_inactive", "inactive"),
    ("moved@accept.test", [], 1, "rejected", "mailbox_inactive", "inactive"),
    ("alice@fallback.test", [], 0, "accepted", "success", "exists"),
    ("alice@aonly.test", [], 0, "accepted", "success", "exists"),
    ("alice@mxcname.test", [], 0, "accepted", "success", "exists"),
    ("alice@nullmx.test", [], 1, "rejected", "domain_not_found", "does_not_exist"),
    ("alice@nosuch.test", [], 1, "rejected", "domain_not_found", "does_not_exist"),
    ("alice@mxip.test", [], 1, "rejected", "routing_error", "unknown"),
    ("alice@noaddr.test", [], 1, "rejected", "routing_error", "unknown"),
    ("alice@blocked.test", [], 1, "rejected", "blocklisted", "unknown"),
    ("alice@blocked.test", ["--source-address", "127.0.0.20"], 1, "rejected",
     "policy_rejected", "unknown"),
    ("someone@elsewhere.test", ["--server", "127.0.0.11"], 1, "rejected", "relay_denied",
     "unknown"),
    ("alice@accept.test", ["--server", "127.0.0.11:587", "--no-starttls"], 1, "rejected",
     "tls_required", "unknown"),
]


@pytest.mark.parametrize("address,extra,code,verdict,category,status", CASES,
                         ids=[f"{c[0]}{' '.join(c[1])}" for c in CASES])
def test_check_against_postfix(address: str, extra: list[str], code: int, verdict: str,
                               category: str, status: str, run_cli: RunCli) -> None:
    rc, data, stderr = smtpprobe(run_cli, address, *extra)
    assert data, stderr
    assert (rc, data["verdict"], data["finding"]["category"]) == (code, verdict, category), (
        json.dumps(data["finding"], indent=1))
    assert data["address_status"] == status


def test_tls_facts_from_postfix(run_cli: RunCli) -> None:
    rc, data, _ = smtpprobe(run_cli, "alice@accept.test")
    assert rc == 0
    host = data["hosts"][0]
    assert host["host"] == "mx1.accept.test" and host["address"] == "127.0.0.11"
    tls = host["tls"]
    assert tls["version"] in ("TLSv1.2", "TLSv1.3")
    assert tls["verified"] is True and tls["name_matches"] is True
    assert "mx1.accept.test" in tls["names"] and tls["days_left"] > 0
    assert "STARTTLS" in " ".join(host["extensions"])
    stages = [s["stage"] for s in host["steps"]]
    assert stages[:6] == ["connect", "ehlo", "starttls", "ehlo", "mail", "rcpt"]
    assert all(s["command"] != "DATA" for s in host["steps"])
    assert "PIPELINING" in " ".join(host["extensions_after_tls"])


def test_refused_primary_mx_then_backup(run_cli: RunCli) -> None:
    rc, data, _ = smtpprobe(run_cli, "alice@fallback.test")
    assert rc == 0
    assert [h["host"] for h in data["hosts"]] == ["dead.fallback.test", "mx1.accept.test"]
    assert data["hosts"][0]["steps"][0]["failure"]["kind"] == "refused"
    assert [m["preference"] for m in data["mx"]] == [10, 20]


def test_implicit_mx_is_reported(run_cli: RunCli) -> None:
    _, data, _ = smtpprobe(run_cli, "alice@aonly.test")
    assert data["mx"] == [{"host": "aonly.test", "preference": 0, "addresses": ["127.0.0.11"],
                           "implicit": True, "failure": None}]


def test_greylisting_defers_then_accepts(run_cli: RunCli) -> None:
    # postgrey compares (client, sender, recipient) but ignores digits and +ext in the sender's
    # local part: a sender of random letters makes a triplet it has never seen.
    import random
    import string

    sender = "probe" + "".join(random.choices(string.ascii_lowercase, k=12)) + "@sender.test"
    rc, data, _ = smtpprobe(run_cli, "alice@greylist.test", "--mail-from", sender)
    if data["verdict"] == "accepted":
        pytest.fail("postgrey let a new triplet through at once: " + json.dumps(data["finding"]))
    assert (rc, data["verdict"], data["finding"]["category"]) == (3, "deferred", "greylisted")
    assert data["finding"]["retryable"] is True
    for _ in range(20):
        time.sleep(1)
        rc, data, _ = smtpprobe(run_cli, "alice@greylist.test", "--mail-from", sender)
        if data["verdict"] == "accepted":
            break
    assert (rc, data["verdict"]) == (0, "accepted")


def test_text_output_in_german_names_the_cause(run_cli: RunCli) -> None:
    done = run_cli("check", "nosuchuser@accept.test", "--lang", "de",
                   "--resolver", os.environ[ENV["resolver"]],
                   "--cafile", os.environ[ENV["ca_file"]], "--helo", "probe.smtpprobe.test")
    assert done.returncode == 1
    assert "ABGELEHNT" in done.stdout and "existiert nicht" in done.stdout
    assert "550 5.1.1" in done.stdout
