"""`check`, `sweep` and `relay` through real SOCKS5 servers (tests/realmta/services/socks.sh) to
the real Postfix: dante without a login (its rules refuse the grey listener), microsocks with
a user name and password (RFC 1929).

Skipped unless SMTPPROBE_REALMTA_SOCKS is set (`realmta.sh env` prints it when the service
runs; CI always sets it). Proxy-side DNS (socks5h) with a name is not run here: both proxies
resolve with the machine's own resolver, which would send a query off this machine; it is
tested against a recording SOCKS server in tests/net/test_proxy.py.
"""

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
SOCKS, SOCKS_AUTH = "SMTPPROBE_REALMTA_SOCKS", "SMTPPROBE_REALMTA_SOCKS_AUTH"
SOCKS_PASSWORD_FILE = "SMTPPROBE_REALMTA_SOCKS_PASSWORD_FILE"

pytestmark = [
    pytest.mark.realmta,
    pytest.mark.skipif(not os.environ.get(SOCKS),
                       reason=f"{SOCKS} is not set (tests/realmta/realmta.sh start; "
                              f'eval "$(tests/realmta/realmta.sh env)")'),
]

RunCli = Callable[..., subprocess.CompletedProcess[str]]


def _json(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert "Traceback" not in done.stderr, done.stderr
    assert done.stdout.strip(), done.stderr
    data: dict[str, Any] = json.loads(done.stdout)
    return data


def check(run_cli: RunCli, address: str, *args: str,
          env: dict[str, str] | None = None) -> tuple[int, dict[str, Any], str]:
    done = run_cli("check", address, "--json", "--resolver", os.environ[ENV["resolver"]],
                   "--cafile", os.environ[ENV["ca_file"]], "--timeout", "10", *args,
                   env=env, timeout=120)
    return done.returncode, _json(done), done.stdout + done.stderr


def _auth_proxy() -> list[str]:
    return ["--proxy", os.environ[SOCKS_AUTH],
            "--proxy-password-file", os.environ[SOCKS_PASSWORD_FILE]]


def _password() -> str:
    return Path(os.environ[SOCKS_PASSWORD_FILE]).read_text(encoding="utf-8").strip()


CASES = [
    # address, verdict, rule or category of the finding
    ("alice@accept.test", "accepted", "success"),
    ("nosuchuser@accept.test", "rejected", "user_unknown"),
    ("alice@blocked.test", "rejected", "blocklisted"),
]


@pytest.mark.parametrize("address,verdict,category", CASES, ids=[c[0] for c in CASES])
def test_check_through_a_proxy_without_login(run_cli: RunCli, address: str, verdict: str,
                                             category: str) -> None:
    _, data, _ = check(run_cli, address, "--proxy", os.environ[SOCKS])
    assert (data["verdict"], data["finding"]["category"]) == (verdict, category), data["finding"]
    # The way in is part of the record: the connect step names the proxy.
    connect = data["hosts"][0]["steps"][0]
    assert f"through {os.environ[SOCKS]}" in connect["command"], connect


@pytest.mark.parametrize("address,verdict,category", CASES, ids=[c[0] for c in CASES])
def test_check_through_a_proxy_with_login(run_cli: RunCli, address: str, verdict: str,
                                          category: str) -> None:
    _, data, out = check(run_cli, address, *_auth_proxy())
    assert (data["verdict"], data["finding"]["category"]) == (verdict, category), data["finding"]
    assert _password() not in out


def test_the_proxys_rules_refuse_the_grey_listener(run_cli: RunCli) -> None:
    _, data, _ = check(run_cli, "alice@greylist.test", "--proxy", os.environ[SOCKS])
    assert data["verdict"] == "unreachable"
    assert data["finding"]["rule"] == "proxy.refused"
    assert data["address_status"] == "unknown"
    evidence = data["finding"]["evidence"]
    assert os.environ[SOCKS] in evidence and "not allowed by ruleset" in evidence


def test_a_refusal_behind_the_proxy_names_the_proxy(run_cli: RunCli) -> None:
    # fallback.test: the first MX (127.0.0.12) refuses TCP; the proxy reports that, and the
    # walk goes on to the second MX.
    _, data, _ = check(run_cli, "alice@fallback.test", "--proxy", os.environ[SOCKS])
    assert data["verdict"] == "accepted"
    first = data["hosts"][0]["steps"][0]
    assert first["failure"]["kind"] == "proxy_onward"
    assert "SOCKS reply 5: connection refused" in first["failure"]["detail"]


def test_a_proxy_that_wants_a_login_and_gets_none(run_cli: RunCli) -> None:
    url = os.environ[SOCKS_AUTH].replace("probe@", "")
    _, data, _ = check(run_cli, "alice@accept.test", "--proxy", url)
    assert data["verdict"] == "unreachable"
    assert data["finding"]["rule"] == "proxy.auth"
    assert "did not offer" in data["finding"]["evidence"]


def test_a_wrong_proxy_password(run_cli: RunCli, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-password\n", encoding="utf-8")
    wrong.chmod(0o600)
    _, data, out = check(run_cli, "alice@accept.test", "--proxy", os.environ[SOCKS_AUTH],
                         "--proxy-password-file", str(wrong))
    assert data["finding"]["rule"] == "proxy.auth"
    assert "refused the user name and password" in data["finding"]["evidence"]
    assert "not-the-password" not in out


def test_the_proxy_password_from_the_environment(run_cli: RunCli) -> None:
    _, data, out = check(run_cli, "alice@accept.test", "--proxy", os.environ[SOCKS_AUTH],
                         env={"SMTPPROBE_PROXY_PASSWORD": _password()})
    assert data["verdict"] == "accepted"
    assert _password() not in out


def test_a_password_in_the_url_is_refused_without_echoing_it(run_cli: RunCli) -> None:
    url = os.environ[SOCKS_AUTH].replace("probe@", f"probe:{_password()}@")
    done = run_cli("check", "alice@accept.test", "--proxy", url, timeout=60)
    assert done.returncode == 2
    assert "password in the URL is refused" in done.stderr
    assert _password() not in done.stdout + done.stderr


def test_sweep_through_the_proxy_with_login(run_cli: RunCli) -> None:
    password = Path(os.environ[ENV["password_file"]]).read_text(encoding="utf-8")
    done = run_cli("sweep", "smtp.accept.test", "--ports", "587,465", "--json",
                   "--resolver", os.environ[ENV["resolver"]],
                   "--cafile", os.environ[ENV["ca_file"]], "--user", os.environ[ENV["user"]],
                   *_auth_proxy(), env={"SMTPPROBE_PASSWORD": password}, timeout=120)
    data = _json(done)
    assert {p["port"]: p["auth"]["result"] for p in data["ports"]} == {587: "ok", 465: "ok"}
    assert data["recommendation"]["usable"] is True
    assert _password() not in done.stdout + done.stderr
    assert password not in done.stdout + done.stderr


def test_relay_through_the_proxy(run_cli: RunCli) -> None:
    password = Path(os.environ[ENV["password_file"]]).read_text(encoding="utf-8")
    done = run_cli("relay", "-s", "smtp.accept.test:587", "--json",
                   "--resolver", os.environ[ENV["resolver"]],
                   "--cafile", os.environ[ENV["ca_file"]], "--user", os.environ[ENV["user"]],
                   "-f", os.environ[ENV["user"]], "-t", "alice@accept.test",
                   "--proxy", os.environ[SOCKS], env={"SMTPPROBE_PASSWORD": password},
                   timeout=120)
    data = _json(done)
    assert data["verdict"] == "pass", data
    assert [c["name"] for c in data["checks"]][:3] == ["connect", "tls", "auth"]


def test_relay_through_a_proxy_that_refuses(run_cli: RunCli) -> None:
    done = run_cli("relay", "-s", "127.0.0.13:25", "--tls", "none", "--json",
                   "--proxy", os.environ[SOCKS], timeout=120)
    data = _json(done)
    assert data["verdict"] == "fail"
    connect = data["checks"][0]
    assert connect["name"] == "connect" and connect["finding"]["rule"] == "proxy.refused"


def _domain(run_cli: RunCli, name: str) -> dict[str, dict[str, Any]]:
    done = run_cli("domain", name, "--json", "--resolver", os.environ[ENV["resolver"]],
                   "--cafile", os.environ[ENV["ca_file"]], "--dnsbl", TOPOLOGY["dnsbl"]["zone"],
                   "--proxy", os.environ[SOCKS], timeout=120)
    return {c["id"]: c for c in _json(done)["checks"]}


def test_domain_through_the_proxy(run_cli: RunCli) -> None:
    checks = _domain(run_cli, "accept.test")
    assert checks["starttls"]["status"] == "ok"
    assert checks["postmaster"]["status"] == "ok"


def test_domain_through_a_proxy_that_refuses(run_cli: RunCli) -> None:
    checks = _domain(run_cli, "greylist.test")
    assert checks["starttls"]["status"] == "unknown"
    assert checks["starttls"]["finding"]["rule"] == "proxy.refused"
