"""XOAUTH2 and OAUTHBEARER logins (RFC 7628) against the lab's token-checking server
(smtpprobe/lab/oauth.py): relay and sweep, a valid token, a refused one with the provider's
JSON error decoded and explained, the dummy response RFC 7628 3.2.3 asks for, and the token
never in any output.

The lab server offers no TLS, so the token goes in the clear on purpose (tls none /
PORT:plain with --allow-plaintext-auth); the withholding rules for a token are those of a
password and are tested with the password.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Awaitable, Callable

import pytest

from smtpprobe.core.certs import TrustStore
from smtpprobe.core.knowledge.load import KnowledgeBase
from smtpprobe.core.redact import Redactor
from smtpprobe.lab.oauth import OAUTH, SCOPE
from smtpprobe.lab.smtp import LabServer
from smtpprobe.models import AuthResult, CheckStatus, Credentials, PortMode, RelayVerdict
from smtpprobe.probe.relay import Relay, RelayOptions
from smtpprobe.probe.sweep import Sweeper, SweepOptions

USER = "alice@lab.test"
TOKEN = "ya29.lab-token-4f0c9e1d2b3a"
WRONG = "ya29.expired-token-77aa55"

StartServer = Callable[..., Awaitable[LabServer]]
RunCli = Callable[..., subprocess.CompletedProcess[str]]


def _relay_options(port: int, mechanism: str) -> RelayOptions:
    return RelayOptions(host="127.0.0.1", port=port, tls="none", helo="probe.smtpprobe.test",
                        allow_plaintext_auth=True, auth_mech=mechanism, timeout=3,
                        deadline=15, mail_from=USER, recipients=("alice@lab.test",))


async def _relay(kb: KnowledgeBase, port: int, mechanism: str, token: str):  # type: ignore[no-untyped-def]
    return await Relay(kb, _relay_options(port, mechanism), trust=TrustStore((), "none"),
                       redactor=Redactor([(USER, token)]),
                       credentials=Credentials(USER, token, "test")).run()


@pytest.mark.parametrize("mechanism", ["XOAUTH2", "OAUTHBEARER"])
async def test_a_valid_token_logs_in(kb: KnowledgeBase, lab_server: StartServer,
                                     mechanism: str) -> None:
    server = await lab_server(OAUTH, users={USER: TOKEN})
    report = await _relay(kb, server.port, mechanism, TOKEN)
    checks = {c.name: c for c in report.checks}
    assert checks["auth"].status is CheckStatus.PASS, checks["auth"]
    assert report.verdict is RelayVerdict.PASS
    auth = [s for s in checks["auth"].steps if s.stage == "auth"]
    assert [s.command for s in auth] == [f"AUTH {mechanism} ****"]
    assert auth[-1].replied(235)


@pytest.mark.parametrize("mechanism", ["XOAUTH2", "OAUTHBEARER"])
async def test_a_refused_token_is_explained(kb: KnowledgeBase, lab_server: StartServer,
                                            mechanism: str) -> None:
    server = await lab_server(OAUTH, users={USER: TOKEN})
    report = await _relay(kb, server.port, mechanism, WRONG)
    auth = next(c for c in report.checks if c.name == "auth")
    assert auth.status is CheckStatus.FAIL
    assert auth.finding is not None and auth.finding.rule == "oauth.error"
    assert "status 401" in auth.finding.evidence and SCOPE in auth.finding.evidence
    assert auth.finding.title is not None and "OAuth" in auth.finding.title.de
    steps = [s for s in auth.steps if s.stage == "auth"]
    # 334 with the error, then the dummy response, then the final 535 (RFC 7628 3.2.3): the
    # lab answers 501 to anything but the right dummy response.
    assert [s.reply.code for s in steps if s.reply] == [334, 535]
    assert report.verdict is RelayVerdict.FAIL
    everything = repr(report)
    assert WRONG not in everything


async def test_sweep_with_a_token(kb: KnowledgeBase, lab_server: StartServer) -> None:
    server = await lab_server(OAUTH, users={USER: TOKEN})
    options = SweepOptions(host="127.0.0.1", ports=((server.port, PortMode.PLAIN),),
                           helo="probe.smtpprobe.test", timeout=3, deadline=15,
                           allow_plaintext_auth=True, auth_mech="XOAUTH2")
    report = await Sweeper(kb, options, trust=TrustStore((), "none"),
                           redactor=Redactor([(USER, TOKEN)]),
                           credentials=Credentials(USER, TOKEN, "test")).sweep()
    [port] = report.ports
    assert port.auth.result is AuthResult.OK and port.auth.mechanism == "XOAUTH2"
    assert port.auth.tried == ("XOAUTH2",)  # never PLAIN with a token


async def test_a_mechanism_the_server_does_not_offer(kb: KnowledgeBase,
                                                     lab_server: StartServer) -> None:
    server = await lab_server("auth_required", users={USER: "pw"})
    report = await _relay(kb, server.port, "XOAUTH2", TOKEN)
    auth = next(c for c in report.checks if c.name == "auth")
    assert auth.status is CheckStatus.FAIL
    assert auth.finding is not None and "not XOAUTH2 (--auth-mech)" in auth.finding.evidence
    assert not [s for s in auth.steps if s.stage == "auth"]  # nothing was sent


async def test_relay_cli_with_a_token_from_the_environment(
        lab_server: StartServer, run_cli: RunCli) -> None:
    server = await lab_server(OAUTH, users={USER: TOKEN})
    for token, verdict in ((TOKEN, "pass"), (WRONG, "fail")):
        done = await asyncio.to_thread(
            run_cli, "relay", "-s", f"127.0.0.1:{server.port}", "--tls", "none",
            "--allow-plaintext-auth", "--user", USER, "--auth-mech", "oauthbearer",
            "--password-env", "TOKEN", "--json", "-v", env={"TOKEN": token})
        assert "Traceback" not in done.stderr, done.stderr
        data = json.loads(done.stdout)
        assert data["verdict"] == verdict
        assert token not in done.stdout + done.stderr
    text = await asyncio.to_thread(
        run_cli, "relay", "-s", f"127.0.0.1:{server.port}", "--tls", "none",
        "--allow-plaintext-auth", "--user", USER, "--auth-mech", "xoauth2",
        "--password-env", "TOKEN", "-v", "--lang", "de", env={"TOKEN": WRONG})
    assert WRONG not in text.stdout + text.stderr
    assert "Der Anbieter hat das OAuth-Token abgelehnt" in text.stdout


def test_auth_mech_is_checked_before_any_traffic(run_cli: RunCli) -> None:
    done = run_cli("relay", "-s", "127.0.0.1:1", "--user", USER, "--auth-mech", "gssapi",
                   env={"SMTPPROBE_PASSWORD": TOKEN})
    assert done.returncode == 2 and "--auth-mech" in done.stderr
    assert TOKEN not in done.stderr
