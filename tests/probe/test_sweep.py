"""`smtpprobe sweep` against lab servers on 127.0.0.1, and its pure parts with plain values.

Ports of a lab sweep are kernel-chosen, so each test names them with --ports and a mode.
A refused port is a port that was free a moment ago; a filtered port is a listener whose
accept queue is full, so that the kernel drops further SYNs and the connect times out, as
behind a firewall that drops packets.
"""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from smtpprobe.core.certs import TrustStore
from smtpprobe.core.knowledge.load import KnowledgeBase
from smtpprobe.core.recommendation import mechanism_order, recommend
from smtpprobe.core.redact import Redactor
from smtpprobe.errors import UsageError
from smtpprobe.lab.hostile import closed_port as free_port
from smtpprobe.lab.smtp import LabServer, RawConnection, Scenario
from smtpprobe.lab.tls import LabCert
from smtpprobe.models import (
    AuthOutcome,
    AuthResult,
    Category,
    Credentials,
    PortMode,
    PortReport,
    PortState,
    Severity,
    Stage,
    Step,
    SweepReport,
    TlsInfo,
)
from smtpprobe.probe.login import NOT_TRIED, auth_result
from smtpprobe.probe.sweep import Sweeper, SweepOptions, parse_ports

USER = "alice@lab.test"
PASSWORD = "Lab-Secret-7f3a9c"

# The types of conftest's lab_server and run_cli fixtures.
LabServerFactory = Callable[..., Awaitable[LabServer]]
RunCli = Callable[..., subprocess.CompletedProcess[str]]


# --- pure parts ---------------------------------------------------------------------------


def test_parse_ports_defaults_and_modes() -> None:
    assert parse_ports("25,587,465,2525") == (
        (25, PortMode.STARTTLS), (587, PortMode.STARTTLS), (465, PortMode.TLS),
        (2525, PortMode.STARTTLS))
    assert parse_ports("587:starttls, 465:ssl, 2525:plain, 8465:tls") == (
        (587, PortMode.STARTTLS), (465, PortMode.TLS), (2525, PortMode.PLAIN),
        (8465, PortMode.TLS))


@pytest.mark.parametrize("spec, words", [
    ("", "at least one"), ("25,25", "twice"), ("587:tlss", "unknown mode"),
    ("0", "outside"), ("abc", "not a number"), ("70000", "outside"),
])
def test_parse_ports_rejects(spec: str, words: str) -> None:
    with pytest.raises(UsageError, match=words):
        parse_ports(spec)


def test_mechanism_order_over_tls_and_in_the_clear() -> None:
    offered = ("LOGIN", "CRAM-MD5", "PLAIN", "XOAUTH2")
    assert mechanism_order(offered, encrypted=True) == ["PLAIN", "LOGIN", "CRAM-MD5"]
    assert mechanism_order(offered, encrypted=False) == ["CRAM-MD5", "PLAIN", "LOGIN"]
    assert mechanism_order(("XOAUTH2", "GSSAPI"), encrypted=True) == []


def _auth_step(kb: KnowledgeBase, text: str) -> Step:
    from smtpprobe.core.classify import classify_text
    from smtpprobe.core.replies import parse_reply

    return Step(Stage.AUTH, "AUTH PLAIN ****", reply=parse_reply(text),
                finding=classify_text(kb, Stage.AUTH, text))


@pytest.mark.parametrize("reply, result", [
    ("235 2.7.0 Authentication successful", AuthResult.OK),
    ("535 5.7.8 Error: authentication failed: authentication failure", AuthResult.FAILED),
    ("534-5.7.9 Application-specific password required.\n534 5.7.9 see help",
     AuthResult.APP_PASSWORD),
    ("530 5.7.0 Must issue a STARTTLS command first", AuthResult.TLS_REQUIRED),
    ("538 5.7.11 Encryption required for requested authentication mechanism",
     AuthResult.TLS_REQUIRED),
    ("504 5.5.4 Unrecognized authentication type", AuthResult.METHOD_REJECTED),
    ("454 4.7.0 Temporary authentication failure", AuthResult.TEMPORARY),
])
def test_auth_result_of_a_reply(kb: KnowledgeBase, reply: str, result: AuthResult) -> None:
    assert auth_result(_auth_step(kb, reply)) is result


def _port(port: int, mode: PortMode, state: PortState = PortState.OPEN, *,
          tls: bool = True, auth: AuthOutcome = NOT_TRIED,
          verified: bool = True) -> PortReport:
    info = TlsInfo("TLSv1.3", "TLS_AES_256_GCM_SHA384", verified=verified,
                   name_matches=True if verified else None,
                   verify_error=None if verified else "self-signed") if tls else None
    return PortReport(port=port, mode=mode, host="smtp.example.org", address="192.0.2.1",
                      state=state, reachable=state is PortState.OPEN, tls=info, auth=auth)


def test_recommend_prefers_implicit_tls_over_starttls() -> None:
    ok = AuthOutcome(AuthResult.OK, "PLAIN", ("PLAIN",))
    rec = recommend("smtp.example.org", [_port(587, PortMode.STARTTLS, auth=ok),
                                         _port(465, PortMode.TLS, auth=ok)], credentials=True)
    assert (rec.usable, rec.tested, rec.port, rec.mode, rec.mechanism) == (
        True, True, 465, PortMode.TLS, "PLAIN")
    assert [r.key for r in rec.reasons][:2] == ["login_ok", "why_tls"]


def test_recommend_prefers_a_certificate_that_verifies() -> None:
    ok = AuthOutcome(AuthResult.OK, "LOGIN", ("PLAIN", "LOGIN"))
    rec = recommend("h", [_port(465, PortMode.TLS, auth=ok, verified=False),
                          _port(587, PortMode.STARTTLS, auth=ok)], credentials=True)
    assert (rec.port, rec.mode, rec.mechanism) == (587, PortMode.STARTTLS, "LOGIN")


def test_recommend_says_port_25_is_blocked_when_587_works() -> None:
    ok = AuthOutcome(AuthResult.OK, "PLAIN", ("PLAIN",))
    rec = recommend("h", [_port(25, PortMode.STARTTLS, PortState.FILTERED, tls=False),
                          _port(587, PortMode.STARTTLS, auth=ok)], credentials=True)
    assert rec.port == 587
    assert any(r.key == "port25_filtered" and dict(r.values)["chosen"] == "587"
               for r in rec.reasons)


def test_recommend_without_credentials_names_a_port_that_offers_a_login() -> None:
    from smtpprobe.models import Capabilities

    offers = Capabilities(extensions=(("AUTH", "LOGIN PLAIN"),))
    port = _port(587, PortMode.STARTTLS)
    port = PortReport(**{**{f: getattr(port, f) for f in port.__dataclass_fields__},
                         "capabilities_after_tls": offers})
    rec = recommend("h", [_port(25, PortMode.STARTTLS), port], credentials=False)
    assert (rec.usable, rec.tested, rec.port, rec.mechanism) == (True, False, 587, "PLAIN")
    assert rec.reasons[-1].key == "untested"


def test_recommend_when_the_password_is_wrong_everywhere(kb: KnowledgeBase) -> None:
    step = _auth_step(kb, "535 5.7.8 Error: authentication failed: authentication failure")
    failed = AuthOutcome(AuthResult.FAILED, "PLAIN", ("PLAIN",), step.finding)
    rec = recommend("h", [_port(587, PortMode.STARTTLS, auth=failed),
                          _port(465, PortMode.TLS, auth=failed)], credentials=True)
    assert not rec.usable
    assert rec.finding is not None and rec.finding.category is Category.AUTH_FAILED
    assert rec.reasons[0].key == "auth_failed"


def test_recommend_when_every_port_is_filtered() -> None:
    rec = recommend("h", [_port(p, PortMode.STARTTLS, PortState.FILTERED, tls=False)
                          for p in (25, 587)], credentials=False)
    assert not rec.usable
    assert [r.key for r in rec.reasons] == ["all_filtered"]


# --- lab servers ----------------------------------------------------------------------------


@pytest.fixture
def creds() -> Credentials:
    return Credentials(USER, PASSWORD, "test")


async def run_sweep(kb: KnowledgeBase, trust: TrustStore, ports: str,
                    creds: Credentials | None = None, **options: object) -> SweepReport:
    opts = SweepOptions(host="127.0.0.1", ports=parse_ports(ports), helo="probe.lab.test",
                        timeout=2.0, deadline=10.0, **options)  # type: ignore[arg-type]
    redactor = Redactor([(creds.user, creds.password)]) if creds else Redactor()
    return await Sweeper(kb, opts, trust=trust, redactor=redactor, credentials=creds).sweep()


@pytest.fixture
async def submission(lab_server: LabServerFactory,
                     cert: LabCert) -> tuple[LabServer, LabServer]:
    """The same correct submission service twice: STARTTLS, and implicit TLS."""
    starttls = await lab_server("submission", cert=cert, users={USER: PASSWORD},
                                hostname="smtp.lab.test")
    implicit = await lab_server("submission", cert=cert, users={USER: PASSWORD},
                                hostname="smtp.lab.test", implicit_tls=True)
    return starttls, implicit


async def test_sweep_submission_ports_with_a_login(
        kb: KnowledgeBase, trust: TrustStore, creds: Credentials,
        submission: tuple[LabServer, LabServer], filtered_port: int) -> None:
    starttls, implicit = submission
    refused = free_port()
    report = await run_sweep(
        kb, trust, f"{filtered_port}:starttls,{starttls.port}:starttls,{implicit.port}:tls,"
        f"{refused}:starttls", creds)
    by_port = {p.port: p for p in report.ports}
    assert [p.port for p in report.ports] == [filtered_port, starttls.port, implicit.port,
                                              refused]

    gone = by_port[filtered_port]
    assert (gone.state, gone.reachable) == (PortState.FILTERED, False)
    assert gone.failure is not None and gone.failure.category is Category.CONNECTION_FAILED
    assert by_port[refused].state is PortState.REFUSED
    assert by_port[refused].failure is not None
    assert by_port[refused].failure.rule == "failure.refused.connect"

    plain_first = by_port[starttls.port]
    assert plain_first.state is PortState.OPEN and plain_first.reachable
    assert plain_first.banner == "smtp.lab.test ESMTP Postfix"
    assert plain_first.tls is not None and plain_first.tls.verified
    # RFC 4954 4 done right: no AUTH before TLS, PLAIN and LOGIN after it.
    assert plain_first.capabilities_before_tls is not None
    assert plain_first.capabilities_before_tls.auth_mechanisms == ()
    assert plain_first.capabilities_before_tls.starttls
    assert plain_first.capabilities_after_tls is not None
    assert plain_first.capabilities_after_tls.auth_mechanisms == ("PLAIN", "LOGIN")
    assert plain_first.auth.result is AuthResult.OK and plain_first.auth.mechanism == "PLAIN"

    tls_first = by_port[implicit.port]
    assert tls_first.capabilities_before_tls is None  # nothing was said in the clear
    assert tls_first.tls is not None and tls_first.auth.result is AuthResult.OK

    rec = report.recommendation
    assert (rec.usable, rec.tested, rec.port, rec.mode, rec.mechanism) == (
        True, True, implicit.port, PortMode.TLS, "PLAIN")
    assert {"port_filtered", "port_refused"} <= {r.key for r in rec.reasons}
    assert starttls.sessions[0].count("AUTH PLAIN ****") == 1


async def test_wrong_password_is_tried_once_and_reported(
        kb: KnowledgeBase, trust: TrustStore, submission: tuple[LabServer, LabServer]) -> None:
    starttls, _ = submission
    report = await run_sweep(kb, trust, f"{starttls.port}:starttls",
                             Credentials(USER, "not-" + PASSWORD, "test"))
    [port] = report.ports
    assert port.auth.result is AuthResult.FAILED
    assert port.auth.finding.category is Category.AUTH_FAILED
    # A 535 is about the credentials: trying LOGIN next would only risk a lockout.
    assert port.auth.tried == ("PLAIN",)
    assert [c for c in starttls.commands if c.startswith("AUTH")] == ["AUTH PLAIN ****"]
    rec = report.recommendation
    assert not rec.usable and rec.finding.category is Category.AUTH_FAILED


async def test_app_password_demand_tries_the_next_mechanism(
        kb: KnowledgeBase, trust: TrustStore, cert: LabCert, creds: Credentials,
        lab_server: LabServerFactory) -> None:
    server = await lab_server("app_password", cert=cert)
    report = await run_sweep(kb, trust, f"{server.port}:starttls", creds)
    [port] = report.ports
    assert port.auth.result is AuthResult.APP_PASSWORD
    assert port.auth.tried == ("PLAIN", "LOGIN")  # RFC 4954 6: 534 blames the mechanism
    assert port.auth.finding.category is Category.AUTH_METHOD_REJECTED
    assert not report.recommendation.usable


async def test_password_is_withheld_without_encryption(
        kb: KnowledgeBase, trust: TrustStore, creds: Credentials,
        lab_server: LabServerFactory) -> None:
    server = await lab_server("auth_required", users={USER: PASSWORD})
    report = await run_sweep(kb, trust, f"{server.port}:starttls", creds)
    assert not any(c.startswith("AUTH") for c in server.commands)
    [port] = report.ports
    assert port.tls is None
    assert port.auth.result is AuthResult.WITHHELD
    assert port.auth.finding.category is Category.CREDENTIALS_WITHHELD
    rules = {f.rule for f in port.findings}
    assert {"failure.not_offered.starttls", "submission.auth_in_clear",
            "failure.withheld"} <= rules
    rec = report.recommendation
    assert not rec.usable and rec.reasons[0].key == "auth_withheld"


async def test_allow_plaintext_auth_sends_it_and_prefers_no_cleartext_mechanism(
        kb: KnowledgeBase, trust: TrustStore, creds: Credentials,
        lab_server: LabServerFactory) -> None:
    server = await lab_server("auth_required", users={USER: PASSWORD})
    report = await run_sweep(kb, trust, f"{server.port}:plain", creds,
                             allow_plaintext_auth=True)
    assert "AUTH PLAIN ****" in server.commands
    [port] = report.ports
    # The lab offers no CRAM-MD5, so PLAIN is the best it has.
    assert port.auth.result is AuthResult.OK and port.auth.mechanism == "PLAIN"
    rec = report.recommendation
    assert rec.usable and rec.mode is PortMode.PLAIN
    assert any(r.key == "why_plain" for r in rec.reasons)


async def test_no_starttls_and_no_auth(kb: KnowledgeBase, trust: TrustStore, cert: LabCert,
                                       creds: Credentials, lab_server: LabServerFactory) -> None:
    server = await lab_server("no_starttls", cert=cert)
    report = await run_sweep(kb, trust, f"{server.port}:starttls", creds)
    [port] = report.ports
    assert port.state is PortState.OPEN and port.tls is None
    assert port.auth.result is AuthResult.NOT_OFFERED
    assert "failure.not_offered.starttls" in {f.rule for f in port.findings}
    rec = report.recommendation
    assert not rec.usable


async def test_untrusted_certificate_is_a_finding(kb: KnowledgeBase, cert: LabCert,
                                                  creds: Credentials,
                                                  submission: tuple[LabServer, LabServer],
                                                  other_trust: TrustStore) -> None:
    _, implicit = submission
    # By default the password is not sent over TLS anyone could present.
    report = await run_sweep(kb, other_trust, f"{implicit.port}:tls", creds)
    [port] = report.ports
    assert port.auth.result is AuthResult.UNTRUSTED
    assert port.auth.finding is not None
    assert port.auth.finding.category is Category.CREDENTIALS_WITHHELD
    assert "does not verify" in port.auth.finding.evidence
    assert "observe.cert.untrusted" in {f.rule for f in port.findings}
    assert not any(c.upper().startswith("AUTH") for c in implicit.commands)
    assert not report.recommendation.usable
    assert any(r.key == "auth_untrusted" for r in report.recommendation.reasons)
    # --no-verify: the user vouches for the certificate; the login is tried and works.
    report = await run_sweep(kb, other_trust, f"{implicit.port}:tls", creds, verify=False)
    [port] = report.ports
    assert port.auth.result is AuthResult.OK
    assert any(r.key == "cert_warning" for r in report.recommendation.reasons)


async def test_missing_starttls_withholds_even_with_plaintext_allowed(
        kb: KnowledgeBase, trust: TrustStore, creds: Credentials,
        lab_server: LabServerFactory) -> None:
    # A STARTTLS port that does not offer STARTTLS looks exactly like a downgrade.
    server = await lab_server("auth_required", users={USER: PASSWORD})
    report = await run_sweep(kb, trust, f"{server.port}:starttls", creds,
                             allow_plaintext_auth=True)
    [port] = report.ports
    assert port.auth.result is AuthResult.WITHHELD
    assert port.auth.finding is not None and "expected" in port.auth.finding.evidence
    assert not any(c.upper().startswith("AUTH") for c in server.commands)
    # Named as a plain port, the login without TLS is what the user asked for.
    report = await run_sweep(kb, trust, f"{server.port}:plain", creds,
                             allow_plaintext_auth=True)
    [port] = report.ports
    assert port.auth.result is not AuthResult.WITHHELD
    assert any(c.upper().startswith("AUTH") for c in server.commands)


async def test_banner_timeout_is_silent_not_filtered(kb: KnowledgeBase, trust: TrustStore,
                                                     lab_server: LabServerFactory) -> None:
    server = await lab_server("slow_banner", banner_delay=5.0)
    opts = SweepOptions(host="127.0.0.1", ports=parse_ports(f"{server.port}:starttls"),
                        helo="probe.lab.test", timeout=0.5, deadline=5.0)
    report = await Sweeper(kb, opts, trust=trust, redactor=Redactor()).sweep()
    [port] = report.ports
    assert (port.state, port.reachable) == (PortState.SILENT, True)


async def test_a_slow_greeting_that_passes_is_still_worth_a_word(
        kb: KnowledgeBase, trust: TrustStore, lab_server: LabServerFactory) -> None:
    # Issue 10: an 8 s greeting passed silently. Over SLOW_MS (3 s) it is a warning.
    server = await lab_server("slow_banner", banner_delay=3.4)
    opts = SweepOptions(host="127.0.0.1", ports=parse_ports(f"{server.port}:starttls"),
                        helo="probe.lab.test", timeout=6.0, deadline=12.0)
    report = await Sweeper(kb, opts, trust=trust, redactor=Redactor()).sweep()
    [port] = report.ports
    assert port.reachable and port.banner is not None
    slow = next(f for f in port.findings if f.rule == "observe.slow_reply")
    assert slow.severity is Severity.WARNING and "greeting took 3." in slow.evidence


# --- the command line -------------------------------------------------------------------------


async def _echo_auth(conn: RawConnection) -> None:
    """A hostile server that offers AUTH without TLS and quotes the login back in its 535."""
    await conn.send("220 echo.lab.test ESMTP")
    while (line := await conn.read_command()) is not None:
        verb = line.split(" ", 1)[0].upper()
        if verb == "EHLO":
            await conn.send("250-echo.lab.test", "250 AUTH PLAIN LOGIN CRAM-MD5")
        elif verb == "AUTH" and line.upper().startswith("AUTH LOGIN"):
            await conn.send("334 VXNlcm5hbWU6")
            user = await conn.read_command() or ""
            await conn.send("334 UGFzc3dvcmQ6")
            secret = await conn.read_command() or ""
            raw = base64.b64decode(secret + "==").decode("utf-8", "replace")
            await conn.send(f"535 5.7.8 bad login {user} {secret} {raw} "
                            f"{raw.encode().hex()}")
        elif verb == "AUTH" and line.upper().startswith("AUTH CRAM-MD5"):
            await conn.send("334 PDEyMzQ1QGVjaG8ubGFiLnRlc3Q+")
            answer = await conn.read_command() or ""
            await conn.send(f"504 5.7.4 mechanism not available {answer}")
        elif verb == "AUTH":
            await conn.send(f"504 5.7.4 {line[5:]} mechanism not available")
        elif verb == "QUIT":
            await conn.send("221 bye")
            break
        else:
            await conn.send("502 5.5.2 no")
    conn.close()


ECHO = Scenario("echo_auth", "quotes the login back", raw=_echo_auth)


def secret_forms(password: str, user: str) -> list[str]:
    raw = password.encode()
    return [password, base64.b64encode(raw).decode(), raw.hex(), raw.hex().upper(),
            base64.b64encode(f"\0{user}\0{password}".encode()).decode()]


async def test_cli_password_never_appears_even_when_the_server_echoes_it(
        tmp_path: Path, lab_server: LabServerFactory, run_cli: RunCli) -> None:
    env = {"LAB_PW": PASSWORD}
    server = await lab_server(ECHO)
    outputs = []
    for extra in (["-v"], ["--json"], ["--lang", "de", "-v"]):
        done = await asyncio.to_thread(
            run_cli, "sweep", "127.0.0.1", "--ports", f"{server.port}:plain", "--user", USER,
            "--password-env", "LAB_PW", "--allow-plaintext-auth", "--timeout", "3",
            *extra, env=env)
        assert done.returncode == 1, done.stderr
        outputs.append(done.stdout + done.stderr)
    # The server did get the password (in LOGIN form) and quoted it back.
    assert any(c.startswith("AUTH LOGIN") for c in server.commands)
    data = json.loads(outputs[1])
    auth = data["ports"][0]["auth"]
    assert auth["tried"] == ["CRAM-MD5", "PLAIN", "LOGIN"]
    assert auth["result"] == "failed"
    assert "****" in auth["finding"]["evidence"]
    for text in outputs:
        for form in secret_forms(PASSWORD, USER):
            assert form not in text


async def test_cli_json_schema(cert: LabCert, cafile: Path, tmp_path: Path,
                               submission: tuple[LabServer, LabServer], run_cli: RunCli) -> None:
    starttls, implicit = submission
    pwfile = tmp_path / "pw"
    pwfile.write_text(PASSWORD + "\n")
    pwfile.chmod(0o600)
    done = await asyncio.to_thread(
        run_cli, "sweep", "127.0.0.1", "--ports", f"{starttls.port},{implicit.port}:tls",
        "--user", USER, "--password-file", str(pwfile), "--cafile", str(cafile), "--json")
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # a private password file gives no warning
    data = json.loads(done.stdout)
    assert data["schema"] == "smtpprobe.sweep/1"
    first, second = data["ports"]
    assert set(first) >= {"port", "mode", "reachable", "failure", "banner", "tls",
                          "auth_mechanisms", "auth", "findings"}
    assert (first["mode"], first["reachable"], first["state"]) == ("starttls", True, "open")
    assert first["auth_mechanisms"] == {"before_tls": [], "after_tls": ["PLAIN", "LOGIN"]}
    assert first["auth"]["result"] == "ok" and first["auth"]["mechanism"] == "PLAIN"
    assert second["auth_mechanisms"] == {"before_tls": None, "after_tls": ["PLAIN", "LOGIN"]}
    assert second["tls"]["verified"] is True
    rec = data["recommendation"]
    assert (rec["usable"], rec["tested"], rec["port"], rec["security"],
            rec["authentication"], rec["user"]) == (True, True, implicit.port, "ssl/tls",
                                                    "PLAIN", USER)
    assert rec["reasons"][0]["key"] == "login_ok" and rec["reasons"][0]["text"]


async def test_cli_text_table_and_recommendation(cafile: Path, tmp_path: Path,
                                                 submission: tuple[LabServer, LabServer],
                                                 run_cli: RunCli) -> None:
    starttls, implicit = submission
    refused = free_port()
    done = await asyncio.to_thread(
        run_cli, "sweep", "127.0.0.1", "--ports",
        f"{starttls.port},{implicit.port}:tls,{refused}", "--cafile", str(cafile),
        env={"SMTPPROBE_PASSWORD": ""})
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "Settings for your mail program" in out
    assert "Connection security" in out and "SSL/TLS" in out
    assert "refused" in out and "PLAIN LOGIN" in out
    assert "not tried" in out  # no --user: the login itself is not tested


async def test_cli_world_readable_password_file_warns(tmp_path: Path,
                                                      submission: tuple[LabServer, LabServer],
                                                      run_cli: RunCli) -> None:
    _, implicit = submission
    pwfile = tmp_path / "pw"
    pwfile.write_text(PASSWORD)
    pwfile.chmod(0o644)
    done = await asyncio.to_thread(
        run_cli, "sweep", "127.0.0.1", "--ports", f"{implicit.port}:tls", "--user", USER,
        "--password-file", str(pwfile), "--json", "--no-verify")
    assert done.returncode == 0, done.stderr
    assert "can be read by other users" in done.stderr
    assert PASSWORD not in done.stderr + done.stdout
    assert json.loads(done.stdout)["ports"][0]["auth"]["result"] == "ok"


@pytest.mark.parametrize("args, words", [
    (["sweep", "smtp.example.org:587"], "without a port"),
    (["sweep", "bad host"], "host"),
    (["sweep", "127.0.0.1", "--ports", "25,99999"], "outside"),
    (["sweep", "127.0.0.1", "--user", "u", "--password-env", "SMTPPROBE_NOPE_UNSET"],
     "not set"),
    (["sweep", "127.0.0.1", "--user", "u", "--password-file", "/nonexistent/pw"],
     "password-file"),
    (["sweep", "127.0.0.1", "--user", "u"], "needs a password"),
    (["sweep", "127.0.0.1", "--password-env", "X"], "without --user"),
    (["sweep", "127.0.0.1", "--timeout", "0"], "--timeout"),
    (["sweep", "127.0.0.1", "--cafile", "/nonexistent/ca.pem"], "--cafile"),
    (["sweep", "127.0.0.1", "--resolver", "dns.example"], "--resolver"),
])
def test_cli_usage_errors_before_any_traffic(args: list[str], words: str,
                                            monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    from smtpprobe.cli.app import main

    monkeypatch.delenv("SMTPPROBE_PASSWORD", raising=False)
    monkeypatch.delenv("SMTPPROBE_USER", raising=False)
    # pytest's stdin is not a terminal: there must be no prompt.
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert words in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_cli_has_no_password_option(capsys: pytest.CaptureFixture[str]) -> None:
    from smtpprobe.cli.app import main

    with pytest.raises(SystemExit) as exit_info:
        main(["sweep", "127.0.0.1", "--password", PASSWORD])
    captured = capsys.readouterr()
    assert exit_info.value.code == 2
    assert "--password" in captured.err and PASSWORD not in captured.out + captured.err


# --- password sources -------------------------------------------------------------------------


def _no_tty() -> bool:
    return False


def test_password_sources_in_order(tmp_path: Path) -> None:
    from smtpprobe.cli.secrets import PasswordSource, resolve_credentials

    pwfile = tmp_path / "pw"
    pwfile.write_bytes(b"from-file\r\nsecond line is ignored\n")
    pwfile.chmod(0o600)
    env = {"MY_PW": "from-env", "SMTPPROBE_PASSWORD": "from-default"}
    warnings: list[str] = []

    def resolve(source: PasswordSource) -> Credentials | None:
        return resolve_credentials(USER, source, environ=env, stdin_isatty=_no_tty,
                                   warn=warnings.append)

    assert resolve(PasswordSource(env="MY_PW")).password == "from-env"  # type: ignore[union-attr]
    from_file = resolve(PasswordSource(file=str(pwfile)))
    assert from_file is not None and from_file.password == "from-file"
    assert resolve(PasswordSource()).password == "from-default"  # type: ignore[union-attr]
    assert warnings == []
    assert resolve_credentials(None, PasswordSource(), environ=env) is None


def test_prompt_only_on_a_terminal() -> None:
    from smtpprobe.cli.secrets import PasswordSource, resolve_credentials

    asked: list[str] = []

    def ask(prompt: str) -> str:
        asked.append(prompt)
        return "typed-secret"

    creds = resolve_credentials(USER, PasswordSource(), environ={},
                                stdin_isatty=lambda: True, ask=ask)
    assert creds is not None and creds.password == "typed-secret" and creds.source == "prompt"
    assert asked == [f"Password for {USER}: "]
    with pytest.raises(UsageError, match="not a terminal"):
        resolve_credentials(USER, PasswordSource(), environ={}, stdin_isatty=_no_tty, ask=ask)
    assert len(asked) == 1


@pytest.mark.parametrize("content, words", [
    (b"", "empty"), (b"\n", "empty"), (b"pa\x00ss", "NUL"), (b"\xff\xfe", "UTF-8")])
def test_bad_password_files(tmp_path: Path, content: bytes, words: str) -> None:
    from smtpprobe.cli.secrets import PasswordSource, resolve_credentials

    pwfile = tmp_path / "pw"
    pwfile.write_bytes(content)
    with pytest.raises(UsageError, match=words) as info:
        resolve_credentials(USER, PasswordSource(file=str(pwfile)), environ={})
    assert "pa\x00ss" not in str(info.value)


def test_credentials_never_show_the_password() -> None:
    creds = Credentials(USER, PASSWORD, "test")
    assert PASSWORD not in repr(creds) and PASSWORD not in str(creds)
    assert PASSWORD not in repr([creds]) and "****" in repr(creds)


async def test_the_deadline_ends_a_sweep_of_silent_ports(kb: KnowledgeBase, trust: TrustStore,
                                                         filtered_port: int) -> None:
    opts = SweepOptions(host="127.0.0.1", ports=parse_ports(f"{filtered_port}:starttls"),
                        helo="probe.lab.test", timeout=30.0, deadline=0.5)
    report = await Sweeper(kb, opts, trust=trust, redactor=Redactor()).sweep()
    [port] = report.ports
    assert port.state is PortState.FILTERED
    assert port.failure is not None and port.failure.rule == "failure.deadline"
    assert port.steps[0].failure is not None
    assert port.steps[0].failure.kind.value == "deadline"
