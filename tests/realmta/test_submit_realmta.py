"""`smtpprobe sweep` and `smtpprobe relay` against the real Postfix of tests/realmta.

127.0.0.11: port 25 is an MX that denies relaying and offers no AUTH; 587 requires STARTTLS
before AUTH (PLAIN LOGIN, SASL user from topology.json); 465 is implicit TLS. Expected values
come from tests/realmta/topology.json. Skipped unless SMTPPROBE_REALMTA is set; the password
is read from its file and never printed, not even in an assertion message.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from smtpprobe.cli.exits import for_sweep as sweep_exit_code
from smtpprobe.core.certs import load_trust_store
from smtpprobe.core.knowledge.load import KnowledgeBase
from smtpprobe.core.redact import Redactor
from smtpprobe.models import (
    AuthResult,
    Category,
    CheckStatus,
    Credentials,
    PortMode,
    PortState,
    RelayReport,
    RelayVerdict,
    SweepReport,
)
from smtpprobe.probe.relay import Relay, RelayOptions
from smtpprobe.probe.sweep import Sweeper, SweepOptions, parse_ports

TOPOLOGY: dict[str, Any] = json.loads(
    (Path(__file__).parent / "topology.json").read_text(encoding="utf-8"))
ENV = TOPOLOGY["env"]
LISTENERS: dict[str, dict[str, Any]] = TOPOLOGY["listeners"]
REPLIES: dict[str, dict[str, Any]] = TOPOLOGY["replies"]
SUBMISSION = LISTENERS["submission"]
SUBMISSIONS = LISTENERS["submissions"]
MX = LISTENERS["mx1"]
NAME = SUBMISSION["hostname"]  # smtp.accept.test, named in the shared certificate
ADDRESS = SUBMISSION["address"]
USER = TOPOLOGY["submission_account"]["user"]
MAILBOX = TOPOLOGY["domains"]["accept.test"]["mailboxes"][0] + "@accept.test"
HELO = "probe.smtpprobe.test"

# The type of conftest's run_cli fixture.
RunCli = Callable[..., subprocess.CompletedProcess[str]]

pytestmark = [
    pytest.mark.realmta,
    pytest.mark.skipif(not os.environ.get(ENV["enabled"]),
                       reason=f"{ENV['enabled']} is not set: run tests/realmta/realmta.sh "
                       f'start and eval "$(tests/realmta/realmta.sh env)"'),
]


def _password() -> str:
    return Path(os.environ[ENV["password_file"]]).read_text(encoding="utf-8").strip()


@pytest.fixture(scope="module")
def creds() -> Credentials:
    return Credentials(USER, _password(), "realmta file")


@pytest.fixture(scope="module")
def trust() -> Any:
    return load_trust_store(os.environ[ENV["ca_file"]])


@pytest.fixture(scope="module")
def nameservers() -> tuple[tuple[str, int], ...]:
    return ((os.environ[ENV["resolver"]], TOPOLOGY["resolver"]["port"]),)


def secret_forms(password: str) -> list[str]:
    raw = password.encode()
    return [password, base64.b64encode(raw).decode(), raw.hex(), raw.hex().upper(),
            base64.b64encode(f"\0{USER}\0{password}".encode()).decode(),
            base64.b64encode(f"{USER}\0{USER}\0{password}".encode()).decode()]


def assert_no_secret(text: str, password: str) -> None:
    leaked = [i for i, form in enumerate(secret_forms(password)) if form in text]
    assert not leaked, f"secret form(s) {leaked} found in the output"  # never the value


async def sweep(kb: KnowledgeBase, trust: Any, nameservers: Any, ports: str,
                creds: Credentials | None, **options: Any) -> SweepReport:
    opts = SweepOptions(host=NAME, ports=parse_ports(ports), helo=HELO, timeout=5.0,
                        deadline=20.0, nameservers=nameservers, **options)
    redactor = Redactor([(creds.user, creds.password)]) if creds else Redactor()
    return await Sweeper(kb, opts, trust=trust, redactor=redactor, credentials=creds).sweep()


async def relay(kb: KnowledgeBase, trust: Any, nameservers: Any, port: int,
                creds: Credentials | None, **options: Any) -> RelayReport:
    opts = RelayOptions(host=NAME, port=port, helo=HELO, timeout=5.0, deadline=20.0,
                        nameservers=nameservers, **options)
    redactor = Redactor([(creds.user, creds.password)]) if creds else Redactor()
    return await Relay(kb, opts, trust=trust, redactor=redactor, credentials=creds).run()


# --- sweep ---------------------------------------------------------------------------------


async def test_sweep_finds_submission_and_recommends_465(
        kb: KnowledgeBase, trust: Any, nameservers: Any, creds: Credentials) -> None:
    report = await sweep(kb, trust, nameservers,
                         f"{MX['port']},{SUBMISSION['port']},{SUBMISSIONS['port']},2525", creds)
    assert report.addresses == (ADDRESS,)
    mx, sub, subs, closed = report.ports
    for port in (mx, sub, subs):
        assert port.state is PortState.OPEN and port.reachable
        assert port.tls is not None and port.tls.verified and port.tls.name_matches
    assert closed.state is PortState.REFUSED and not closed.reachable

    assert mx.banner is not None and mx.banner.startswith(MX["hostname"])
    assert mx.auth.result is AuthResult.NOT_OFFERED  # an MX takes no logins

    # 587: STARTTLS required before AUTH, so AUTH only shows after TLS.
    assert sub.capabilities_before_tls is not None and sub.capabilities_before_tls.starttls
    assert sub.capabilities_before_tls.auth_mechanisms == ()
    assert sub.capabilities_after_tls is not None
    assert list(sub.capabilities_after_tls.auth_mechanisms) == SUBMISSION["auth"]
    assert (sub.auth.result, sub.auth.mechanism) == (AuthResult.OK, "PLAIN")

    assert subs.mode is PortMode.TLS and subs.capabilities_before_tls is None
    assert subs.capabilities_after_tls is not None
    assert list(subs.capabilities_after_tls.auth_mechanisms) == SUBMISSIONS["auth"]
    assert subs.auth.result is AuthResult.OK

    rec = report.recommendation
    assert (rec.usable, rec.tested, rec.host, rec.port, rec.mode, rec.mechanism) == (
        True, True, NAME, SUBMISSIONS["port"], PortMode.TLS, "PLAIN")
    assert sweep_exit_code(report) == 0


async def test_sweep_with_a_wrong_password(kb: KnowledgeBase, trust: Any, nameservers: Any,
                                           creds: Credentials) -> None:
    wrong = Credentials(USER, "x" + creds.password[::-1], "test")
    report = await sweep(kb, trust, nameservers, f"{SUBMISSION['port']},{SUBMISSIONS['port']}",
                         wrong)
    expected = REPLIES["auth_failed"]
    # One failed login in all: after Postfix's 535 the other port is not sent the password.
    refused = [p for p in report.ports if p.auth.result is AuthResult.FAILED]
    spared = [p for p in report.ports if p.auth.result is AuthResult.WITHHELD]
    assert len(refused) == 1 and len(spared) == 1
    [port] = refused
    assert port.auth.tried == ("PLAIN",) and port.auth.finding is not None
    assert (port.auth.finding.code, port.auth.finding.enhanced_code) == (
        expected["code"], expected["enhanced"])
    assert expected["text"] in port.auth.finding.evidence
    assert spared[0].auth.tried == () and spared[0].auth.finding is not None
    assert spared[0].auth.finding.rule == "withheld.refused_elsewhere"
    rec = report.recommendation
    assert not rec.usable and rec.finding is not None
    assert rec.finding.category is Category.AUTH_FAILED
    assert sweep_exit_code(report) == 1


async def test_sweep_without_tls_sends_no_password(kb: KnowledgeBase, trust: Any,
                                                   nameservers: Any, creds: Credentials
                                                   ) -> None:
    # Port 587 spoken to in plain text: Postfix hides AUTH until STARTTLS, so there is
    # nothing to log in to, and no password crosses the wire even with the permission.
    report = await sweep(kb, trust, nameservers, f"{SUBMISSION['port']}:plain", creds,
                         allow_plaintext_auth=True)
    [port] = report.ports
    assert port.tls is None and port.auth.result is AuthResult.NOT_OFFERED
    assert not any(s.command and s.command.startswith("AUTH") for s in port.steps)


# --- relay ---------------------------------------------------------------------------------


async def _postfix_log_has(*needles: str) -> bool:
    log = Path(os.environ[ENV["state_dir"]]) / "postfix.log"
    # Postfix's cleanup and qmgr log a moment after the 250; wait for it (bounded).
    for _ in range(50):
        text = log.read_text(encoding="utf-8", errors="replace")
        if all(n in text for n in needles):
            return True
        await asyncio.sleep(0.1)
    return False


async def test_relay_587_sends_and_postfix_queues_it(kb: KnowledgeBase, trust: Any,
                                                     nameservers: Any, creds: Credentials
                                                     ) -> None:
    report = await relay(kb, trust, nameservers, SUBMISSION["port"], creds, mail_from=USER,
                         recipients=(MAILBOX, "someone@elsewhere.test"), send=True,
                         open_relay_check=True)
    assert [(c.name, c.status) for c in report.checks] == [
        ("connect", CheckStatus.PASS), ("tls", CheckStatus.PASS), ("auth", CheckStatus.PASS),
        ("mail", CheckStatus.PASS), ("rcpt", CheckStatus.PASS), ("rcpt", CheckStatus.PASS),
        ("send", CheckStatus.PASS), ("open_relay", CheckStatus.PASS)]
    assert report.verdict is RelayVerdict.PASS
    assert report.queue_id is not None and re.fullmatch(r"[0-9A-F]{6,}", report.queue_id)
    assert report.message_id is not None
    assert await _postfix_log_has(f"{report.queue_id}: message-id={report.message_id}",
                                  f"{report.queue_id}: client=localhost[127.0.0.1], "
                                  f"sasl_method=PLAIN, sasl_username={USER}")


async def test_relay_465_implicit_tls(kb: KnowledgeBase, trust: Any, nameservers: Any,
                                      creds: Credentials) -> None:
    report = await relay(kb, trust, nameservers, SUBMISSIONS["port"], creds, mail_from=USER,
                         recipients=(MAILBOX,))
    assert report.mode is PortMode.TLS and report.verdict is RelayVerdict.PASS
    assert report.tls is not None and report.tls.verified


async def test_relay_25_denies_relaying_to_outsiders(kb: KnowledgeBase, trust: Any,
                                                     nameservers: Any) -> None:
    expected = REPLIES["relay_denied"]
    report = await relay(kb, trust, nameservers, MX["port"], None,
                         mail_from=expected["mail_from"],
                         recipients=(expected["rcpt"],), open_relay_check=True)
    names = [(c.name, c.status) for c in report.checks]
    assert names == [("connect", CheckStatus.PASS), ("tls", CheckStatus.PASS),
                     ("auth", CheckStatus.SKIP), ("mail", CheckStatus.PASS),
                     ("rcpt", CheckStatus.FAIL), ("open_relay", CheckStatus.PASS)]
    rcpt = report.checks[4]
    assert rcpt.finding is not None and rcpt.finding.category is Category.RELAY_DENIED
    assert (rcpt.finding.code, rcpt.finding.enhanced_code) == (expected["code"],
                                                               expected["enhanced"])
    assert not rcpt.temporary
    open_relay = report.checks[5]
    assert open_relay.finding is not None and open_relay.finding.rule == "observe.relay_refused"
    assert "Relay access denied" in open_relay.finding.evidence
    assert report.verdict is RelayVerdict.FAIL


async def test_relay_587_without_tls_is_told_to_start_tls(kb: KnowledgeBase, trust: Any,
                                                          nameservers: Any) -> None:
    expected = REPLIES["starttls_required"]
    report = await relay(kb, trust, nameservers, SUBMISSION["port"], None, tls="none",
                         mail_from=USER, recipients=(MAILBOX,))
    mail = next(c for c in report.checks if c.name == "mail")
    assert mail.status is CheckStatus.FAIL and mail.finding is not None
    assert (mail.finding.code, mail.finding.enhanced_code) == (expected["code"],
                                                               expected["enhanced"])
    assert mail.finding.category is Category.TLS_REQUIRED
    assert report.verdict is RelayVerdict.FAIL


# --- the command line, end to end, and the password ----------------------------------------


async def test_cli_end_to_end_without_leaking_the_password(tmp_path: Path,
                                                           run_cli: RunCli) -> None:
    password = _password()
    common = {"SMTPPROBE_RESOLVER": os.environ[ENV["resolver"]],
              "SMTPPROBE_CAFILE": os.environ[ENV["ca_file"]], "SMTPPROBE_USER": USER}
    pwfile = os.environ[ENV["password_file"]]
    texts: list[str] = []

    done = await asyncio.to_thread(run_cli, "sweep", NAME, "--password-file", pwfile, "-v",
                                   env=common)
    assert done.returncode == 0, done.stderr
    assert "Settings for your mail program" in done.stdout and "AUTH PLAIN ****" in done.stdout
    texts.append(done.stdout + done.stderr)
    done = await asyncio.to_thread(run_cli, "sweep", NAME, "--password-file", pwfile, "--json",
                                   env=common)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["recommendation"]["port"] == SUBMISSIONS["port"]
    texts.append(done.stdout + done.stderr)

    relay_env = {**common, "SMTPPROBE_SERVER": f"{NAME}:{SUBMISSION['port']}",
                 "SMTPPROBE_FROM": USER, "SMTPPROBE_TO": MAILBOX, "REALMTA_PW": password}
    junit = tmp_path / "relay.xml"
    done = await asyncio.to_thread(run_cli, "relay", "--password-env", "REALMTA_PW", "--send",
                                   "--open-relay-check", "-v", "--json", "--junit", str(junit),
                                   env=relay_env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["verdict"] == "pass"
    texts += [done.stdout + done.stderr, junit.read_text()]

    # A failing run: a wrong password, in every output form.
    wrong = {**relay_env, "REALMTA_PW": password + "-wrong"}
    failed_xml = tmp_path / "failed.xml"
    done = await asyncio.to_thread(run_cli, "relay", "--password-env", "REALMTA_PW", "-v",
                                   "--junit", str(failed_xml), env=wrong)
    assert done.returncode == 1, done.stderr
    assert "FAIL" in done.stdout and "Login failed" in done.stdout
    texts += [done.stdout + done.stderr, failed_xml.read_text()]
    root = ET.parse(failed_xml).getroot()
    assert root.tag == "testsuites" and root.get("failures") == "1"
    [suite] = root.findall("testsuite")
    assert suite.get("name") == f"smtpprobe relay {NAME}:{SUBMISSION['port']}"
    auth = suite.find("testcase[@name='auth']/failure")
    assert auth is not None and auth.get("type") == "auth_failed"
    assert REPLIES["auth_failed"]["text"] in (auth.text or "")
    skipped = suite.findall("testcase/skipped")
    assert len(skipped) == 2  # mail and rcpt

    for text in texts:
        assert_no_secret(text, password)
        assert_no_secret(text, password + "-wrong")


async def test_sweep_of_a_name_that_does_not_exist(kb: KnowledgeBase, trust: Any,
                                                   nameservers: Any) -> None:
    [name] = [n for n in TOPOLOGY["nxdomain"] if n.startswith("nosuch.") and
              n.count(".") == 1]
    opts = SweepOptions(host=name, helo=HELO, timeout=5.0, deadline=10.0,
                        nameservers=nameservers)
    report = await Sweeper(kb, opts, trust=trust, redactor=Redactor()).sweep()
    assert report.ports == () and report.addresses == ()
    # resolve_host reports a name without any address as dns_no_address, saying why.
    assert report.dns_failure is not None
    assert report.dns_failure.rule == "failure.dns_no_address"
    assert "NXDOMAIN" in report.dns_failure.evidence
    assert not report.recommendation.usable
    assert report.recommendation.finding == report.dns_failure
    assert sweep_exit_code(report) == 1
