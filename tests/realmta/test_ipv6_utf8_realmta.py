"""IPv6 and SMTPUTF8 against the real Postfix (issue 15): mx1 also listens on [::1]:25;
v6only.test has an MX with only an AAAA record, dual.test one with A and AAAA; utf8.test's MX
(127.0.0.15) has smtputf8_enable = yes, mx1 has it off.

Skipped unless SMTPPROBE_REALMTA is set. When it is set and ::1 cannot be used in this
container, the IPv6 tests fail and say so: they never pass without having spoken IPv6.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
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

RunCli = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="module")
def ipv6() -> None:
    """::1 must work here; if it does not, the test fails with the reason."""
    try:
        with socket.create_connection(("::1", 25), timeout=5):
            pass
    except OSError as exc:
        pytest.fail(f"IPv6 is unavailable in this container, or Postfix does not listen on "
                    f"[::1]:25 ({exc}): the IPv6 tests cannot run")


def check(run_cli: RunCli, address: str, *args: str) -> tuple[int, dict[str, Any]]:
    done = run_cli("check", address, "--json", "--resolver", os.environ[ENV["resolver"]],
                   "--cafile", os.environ[ENV["ca_file"]], "--timeout", "10", *args,
                   timeout=120)
    assert "Traceback" not in done.stderr, done.stderr
    assert done.stdout.strip(), done.stderr
    data: dict[str, Any] = json.loads(done.stdout)
    return done.returncode, data


def test_an_mx_with_only_aaaa(run_cli: RunCli, ipv6: None) -> None:
    _, data = check(run_cli, "alice@v6only.test")
    assert data["verdict"] == "accepted"
    assert [h["address"] for h in data["hosts"]] == ["::1"]


def test_an_mx_with_only_aaaa_and_ipv4_only(run_cli: RunCli, ipv6: None) -> None:
    _, data = check(run_cli, "alice@v6only.test", "-4")
    assert data["verdict"] == "unreachable"
    assert data["finding"]["rule"] == "reach.family_excluded"
    assert data["hosts"] == []


def test_an_mx_with_both_reports_the_address_it_used(run_cli: RunCli, ipv6: None) -> None:
    _, data = check(run_cli, "alice@dual.test")
    assert data["verdict"] == "accepted"
    used = [h["address"] for h in data["hosts"]]
    # Happy eyeballs in spirit (RFC 8305): the first address answers, the other is not
    # needed; the report names the one that decided.
    assert used[-1] in ("::1", "127.0.0.16") and len(set(used)) == len(used)
    steps = data["hosts"][-1]["steps"]
    assert steps[0]["stage"] == "connect" and steps[0]["reply"]["code"] == 220


@pytest.mark.parametrize("flag,address", [("-4", "127.0.0.16"), ("-6", "::1")])
def test_an_mx_with_both_and_a_family(run_cli: RunCli, ipv6: None, flag: str,
                                      address: str) -> None:
    _, data = check(run_cli, "alice@dual.test", flag)
    assert data["verdict"] == "accepted"
    assert [h["address"] for h in data["hosts"]] == [address]


def test_an_ipv6_address_literal(run_cli: RunCli, ipv6: None) -> None:
    # RFC 5321 4.1.3: no DNS; Postfix answers for [IPv6:::1] from its local recipient table,
    # which does not know alice there: a definitive answer from ::1.
    _, data = check(run_cli, "alice@[IPv6:::1]")
    assert [h["address"] for h in data["hosts"]] == ["::1"]
    assert data["verdict"] == "rejected"
    assert data["finding"]["category"] == "user_unknown"


def test_smtputf8_is_requested_when_offered(run_cli: RunCli) -> None:
    _, data = check(run_cli, "jörg@utf8.test", "--no-starttls", "-v")
    assert data["verdict"] == "accepted", data["finding"]
    mail = next(s for s in data["hosts"][-1]["steps"] if s["stage"] == "mail")
    assert mail["command"].endswith(" SMTPUTF8")
    _, unknown = check(run_cli, "nobödy@utf8.test", "--no-starttls")
    assert unknown["finding"]["category"] == "user_unknown"


def test_ascii_addresses_do_not_ask_for_smtputf8(run_cli: RunCli) -> None:
    _, data = check(run_cli, "alice@utf8.test", "--no-starttls")
    assert data["verdict"] == "accepted"
    mail = next(s for s in data["hosts"][-1]["steps"] if s["stage"] == "mail")
    assert "SMTPUTF8" not in mail["command"]


def test_a_server_without_smtputf8_is_a_finding(run_cli: RunCli) -> None:
    # mx1 runs with smtputf8_enable = no: the address is not sent at all (RFC 6531 3.2).
    _, data = check(run_cli, "jörg@accept.test")
    assert data["verdict"] == "rejected"
    assert data["address_status"] == "unknown"
    assert data["finding"]["rule"] == "observe.smtputf8_not_offered"
    assert not any(s["stage"] in ("mail", "rcpt") for s in data["hosts"][-1]["steps"])


def test_idn_domains_keep_working(run_cli: RunCli) -> None:
    # An ASCII local part at an IDN domain needs no SMTPUTF8: the A-label goes on the wire.
    # bücher.test does not exist in the zone; what matters is the A-label in the lookup.
    _, data = check(run_cli, "alice@bücher.test")
    assert data["domain"] == "xn--bcher-kva.test"
    assert data["finding"]["category"] == "domain_not_found"


@pytest.mark.parametrize("flag,address", [("-4", "127.0.0.16"), ("-6", "::1")])
def test_domain_with_a_family(run_cli: RunCli, ipv6: None, flag: str, address: str) -> None:
    done = run_cli("domain", "dual.test", flag, "--json", "--resolver",
                   os.environ[ENV["resolver"]], "--cafile", os.environ[ENV["ca_file"]],
                   "--dnsbl", TOPOLOGY["dnsbl"]["zone"], timeout=120)
    assert "Traceback" not in done.stderr, done.stderr
    checks = json.loads(done.stdout)["checks"]
    visited = {c["subject"] for c in checks if c["id"] == "starttls"}
    assert visited == {f"mx.dual.test [{address}]"}
