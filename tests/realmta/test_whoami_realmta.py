"""The self-check of the probing host against the real dnsmasq and Postfix: `smtpprobe whoami`
and what `check` attaches to the blocked.test refusal (zen.dnsbl.test lists 127.0.0.1)."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

TOPOLOGY: dict[str, Any] = json.loads(
    (Path(__file__).parent / "topology.json").read_text(encoding="utf-8"))
ENV = TOPOLOGY["env"]
ZONE = TOPOLOGY["dnsbl"]["zone"]

pytestmark = [
    pytest.mark.realmta,
    pytest.mark.skipif(not os.environ.get(ENV["enabled"]),
                       reason=f"{ENV['enabled']} is not set (tests/realmta/realmta.sh start; "
                              f'eval "$(tests/realmta/realmta.sh env)")'),
]

RunCli = Callable[..., subprocess.CompletedProcess[str]]


def _json(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert "Traceback" not in done.stderr, done.stderr
    data: dict[str, Any] = json.loads(done.stdout)
    return data


def test_whoami_of_a_listed_address_without_ptr(run_cli: RunCli) -> None:
    done = run_cli("whoami", "--via", "127.0.0.14", "--resolver",
                   os.environ[ENV["resolver"]], "--dnsbl", ZONE, "--json")
    data = _json(done)
    assert done.returncode == 1
    assert data["address"] == TOPOLOGY["client_address"]
    assert data["ptr"] == [] and not data["forward_confirmed"]
    assert data["blocklists"][0]["listed"] is True
    assert {f["rule"] for f in data["findings"]} >= {"self.no_ptr", "self.listed"}


def test_whoami_of_a_proper_address(run_cli: RunCli) -> None:
    address = "127.0.0.11"
    done = run_cli("whoami", "--source-address", address, "--helo",
                   TOPOLOGY["ptr"][address], "--resolver", os.environ[ENV["resolver"]],
                   "--dnsbl", ZONE, "--json")
    data = _json(done)
    assert done.returncode == 0
    assert data["confirmed_name"] == TOPOLOGY["ptr"][address] and data["helo_matches"]
    assert [f["rule"] for f in data["findings"]] == ["self.ok"]


def test_check_explains_the_blocklisting_with_the_self_check(run_cli: RunCli) -> None:
    done = run_cli("check", "alice@blocked.test", "--json", "--resolver",
                   os.environ[ENV["resolver"]], "--cafile", os.environ[ENV["ca_file"]])
    data = _json(done)
    assert data["finding"]["category"] == "blocklisted"
    listed = [f for f in data["findings"] if f["rule"] == "self.listed"]
    assert listed and f"is listed on {ZONE}" in listed[0]["evidence"]
    assert any(f["rule"] == "self.no_ptr" for f in data["findings"])
