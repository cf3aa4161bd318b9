"""`smtpprobe relay` against lab servers on 127.0.0.1, and its pure parts with plain values."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable
from email import message_from_bytes
from pathlib import Path

import pytest

from smtpprobe.core.certs import TrustStore
from smtpprobe.core.knowledge.load import KnowledgeBase
from smtpprobe.core.redact import Redactor
from smtpprobe.core.replies import parse_reply
from smtpprobe.core.verdict import relay_verdict as verdict
from smtpprobe.lab.hostile import closed_port as free_port
from smtpprobe.lab.smtp import LabServer, RawConnection
from smtpprobe.lab.tls import LabCert
from smtpprobe.models import (
    Category,
    CheckStatus,
    Credentials,
    PortMode,
    RelayCheck,
    RelayReport,
    RelayVerdict,
    Severity,
)
from smtpprobe.probe.relay import (
    Relay,
    RelayOptions,
    build_message,
    parse_queue_id,
    port_mode,
)

USER = "alice@lab.test"
PASSWORD = "Relay-Secret-92b1e"

# The types of conftest's lab_server and run_cli fixtures.
LabServerFactory = Callable[..., Awaitable[LabServer]]
RunCli = Callable[..., subprocess.CompletedProcess[str]]


# --- pure parts ---------------------------------------------------------------------------


@pytest.mark.parametrize("reply, queue_id", [
    ("250 2.0.0 Ok: queued as 4Xq9Bc1Lz7z9vW", "4Xq9Bc1Lz7z9vW"),  # Postfix, long ids
    ("250 2.0.0 Ok: queued as E00A920C0E2", "E00A920C0E2"),  # Postfix, short ids
    ("250 OK id=1rAbCd-000Xyz-2Q", "1rAbCd-000Xyz-2Q"),  # Exim
    ("250 2.6.0 <a1b2@mail.example.com> [InternalId=12345678901234, Hostname=AM0PR01MB1234."
     "eurprd01.prod.outlook.com] 20480 bytes in 0.123, 162.4 KB/sec Queued mail for delivery",
     "12345678901234"),  # Microsoft 365
    ("250 2.6.0 <a1b2@mail.example.com> Queued mail for delivery", "<a1b2@mail.example.com>"),
    ("250 2.0.0 OK  1700000000 a1sm1234567wrb.12 - gsmtp", "a1sm1234567wrb.12"),  # Gmail
    ("250 2.0.0 3AHBU1lq012345 Message accepted for delivery", "3AHBU1lq012345"),  # Sendmail
    ("250 ok 1700000000 qp 12345", "12345"),  # qmail
    ("250 Message accepted for delivery", None),  # aiosmtpd's default: no id given
    ("554 5.7.1 queued as nothing", None),  # a refusal has no queue id
])
def test_parse_queue_id(reply: str, queue_id: str | None) -> None:
    assert parse_queue_id(parse_reply(reply)) == queue_id


def test_build_message_is_unique_findable_and_standard() -> None:
    raw, message_id, subject = build_message("app@example.org", ["ops@example.org"],
                                             helo="ci.example.org", token="t0k3n")
    assert message_id == "<smtpprobe-t0k3n@ci.example.org>"
    assert subject == "smtpprobe relay test t0k3n"
    assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")
    msg = message_from_bytes(raw)
    assert msg["Message-ID"] == message_id and msg["Subject"] == subject
    assert msg["From"] == "app@example.org" and msg["To"] == "ops@example.org"
    assert msg["Date"] and msg["Auto-Submitted"] == "auto-generated"
    assert raw.isascii()
    other = build_message("app@example.org", ["ops@example.org"], helo="ci.example.org")
    assert other[1] != message_id


def test_port_modes() -> None:
    assert port_mode(465, "auto") == (PortMode.TLS, True)
    assert port_mode(587, "auto") == (PortMode.STARTTLS, True)
    assert port_mode(25, "auto") == (PortMode.STARTTLS, False)
    assert port_mode(2525, "auto") == (PortMode.STARTTLS, False)
    assert port_mode(2525, "starttls") == (PortMode.STARTTLS, True)
    assert port_mode(587, "none") == (PortMode.PLAIN, False)
    assert port_mode(2465, "implicit") == (PortMode.TLS, True)


def test_verdict_rules() -> None:
    ok = RelayCheck("connect", CheckStatus.PASS)
    skip = RelayCheck("auth", CheckStatus.SKIP)
    temp = RelayCheck("rcpt", CheckStatus.FAIL, temporary=True)
    hard = RelayCheck("open_relay", CheckStatus.FAIL)
    assert verdict([ok, skip]) is RelayVerdict.PASS
    assert verdict([ok, temp]) is RelayVerdict.TEMPORARY
    assert verdict([ok, temp, hard]) is RelayVerdict.FAIL


# --- lab servers ----------------------------------------------------------------------------


@pytest.fixture
def creds() -> Credentials:
    return Credentials(USER, PASSWORD, "test")


@pytest.fixture
async def submission(lab_server: LabServerFactory, cert: LabCert) -> LabServer:
    return await lab_server("submission", cert=cert, users={USER: PASSWORD},
                            hostname="smtp.lab.test")


async def run_relay(kb: KnowledgeBase, trust: TrustStore, port: int, *,
                    creds: Credentials | None = None, **options: object) -> RelayReport:
    settings: dict[str, object] = {"timeout": 2.0, "deadline": 10.0, **options}
    opts = RelayOptions(host="127.0.0.1", port=port, helo="ci.lab.test",
                        **settings)  # type: ignore[arg-type]
    redactor = Redactor([(creds.user, creds.password)]) if creds else Redactor()
    return await Relay(kb, opts, trust=trust, redactor=redactor, credentials=creds).run()


def statuses(report: RelayReport) -> list[tuple[str, str]]:
    return [(c.name + (f" {c.subject}" if c.subject else ""), c.status.value)
            for c in report.checks]


async def test_submission_passes_and_sends(kb: KnowledgeBase, trust: TrustStore,
                                           creds: Credentials,
                                           submission: LabServer) -> None:
    report = await run_relay(kb, trust, submission.port, creds=creds, tls="starttls",
                             mail_from=USER, recipients=("bob@example.net", "carol@example.org"),
                             send=True)
    assert statuses(report) == [
        ("connect", "pass"), ("tls", "pass"), ("auth", "pass"), ("mail", "pass"),
        ("rcpt bob@example.net", "pass"), ("rcpt carol@example.org", "pass"), ("send", "pass")]
    assert report.verdict is RelayVerdict.PASS
    assert submission.queued == [report.queue_id]
    assert report.message_id is not None and report.message_id.startswith("<smtpprobe-")
    assert report.tls is not None and report.tls.verified
    auth = next(c for c in report.checks if c.name == "auth")
    assert auth.note is not None and dict(auth.note.values)["mechanism"] == "PLAIN"
    assert submission.sessions[0].count("DATA") == 1


async def test_implicit_tls(kb: KnowledgeBase, trust: TrustStore, cert: LabCert,
                            creds: Credentials, lab_server: LabServerFactory) -> None:
    server = await lab_server("submission", cert=cert, users={USER: PASSWORD},
                              implicit_tls=True)
    report = await run_relay(kb, trust, server.port, creds=creds, tls="implicit",
                             mail_from=USER, recipients=("bob@example.net",))
    assert report.mode is PortMode.TLS
    assert report.verdict is RelayVerdict.PASS, statuses(report)


async def test_wrong_password_fails_auth_and_skips_the_rest(
        kb: KnowledgeBase, trust: TrustStore, submission: LabServer) -> None:
    report = await run_relay(kb, trust, submission.port, tls="starttls",
                             creds=Credentials(USER, "wrong-" + PASSWORD, "test"),
                             mail_from=USER, recipients=("bob@example.net",), send=True)
    assert statuses(report) == [
        ("connect", "pass"), ("tls", "pass"), ("auth", "fail"), ("mail", "skip"),
        ("rcpt bob@example.net", "skip"), ("send", "skip")]
    auth = report.checks[2]
    assert auth.finding is not None and auth.finding.category is Category.AUTH_FAILED
    assert not auth.temporary and report.verdict is RelayVerdict.FAIL
    assert not any(c.startswith("MAIL") for c in submission.commands)


async def test_without_login_the_submission_server_refuses_mail(
        kb: KnowledgeBase, trust: TrustStore, submission: LabServer) -> None:
    report = await run_relay(kb, trust, submission.port, tls="starttls", mail_from=USER,
                             recipients=("bob@example.net",))
    assert statuses(report)[:4] == [("connect", "pass"), ("tls", "pass"), ("auth", "skip"),
                                    ("mail", "fail")]
    mail = report.checks[3]
    assert mail.finding is not None and mail.finding.category is Category.AUTH_REQUIRED
    assert report.verdict is RelayVerdict.FAIL


async def test_open_relay_is_a_critical_failure(kb: KnowledgeBase, trust: TrustStore,
                                                lab_server: LabServerFactory) -> None:
    server = await lab_server("open_relay")
    report = await run_relay(kb, trust, server.port, open_relay_check=True,
                             open_relay_from="a@outside.example",
                             open_relay_to="b@elsewhere.example")
    relay_session = server.sessions[-1]
    check = report.checks[-1]
    assert (check.name, check.status, check.temporary) == ("open_relay", CheckStatus.FAIL,
                                                           False)
    assert check.finding is not None and check.finding.category is Category.OPEN_RELAY
    assert check.finding.severity is Severity.CRITICAL
    assert "b@elsewhere.example" in check.finding.evidence
    assert report.verdict is RelayVerdict.FAIL
    # Never DATA, never AUTH in the open-relay conversation.
    assert "RCPT TO:<b@elsewhere.example>" in relay_session
    assert not any(c.startswith(("DATA", "AUTH")) for c in relay_session)


async def test_relay_denied_passes_the_open_relay_check(kb: KnowledgeBase, trust: TrustStore,
                                                        lab_server: LabServerFactory) -> None:
    server = await lab_server("relay_denied")
    report = await run_relay(kb, trust, server.port, open_relay_check=True)
    check = report.checks[-1]
    assert check.status is CheckStatus.PASS
    assert check.finding is not None and check.finding.rule == "observe.relay_refused"
    assert "Relay access denied" in check.finding.evidence
    # auto on a port other than 587: STARTTLS only when offered, and the lab has no cert.
    assert statuses(report)[:3] == [("connect", "pass"), ("tls", "skip"), ("auth", "skip")]
    assert report.verdict is RelayVerdict.PASS


async def test_greylisting_is_temporary(kb: KnowledgeBase, trust: TrustStore,
                                        lab_server: LabServerFactory) -> None:
    server = await lab_server("greylist", greylist_delay=60)
    report = await run_relay(kb, trust, server.port, mail_from="app@example.org",
                             recipients=("alice@lab.test",))
    rcpt = report.checks[-1]
    assert (rcpt.name, rcpt.status, rcpt.temporary) == ("rcpt", CheckStatus.FAIL, True)
    assert rcpt.finding is not None and rcpt.finding.category is Category.GREYLISTED
    assert report.verdict is RelayVerdict.TEMPORARY


async def test_starttls_demanded_but_not_offered(kb: KnowledgeBase, trust: TrustStore,
                                                 cert: LabCert, creds: Credentials,
                                                 lab_server: LabServerFactory) -> None:
    server = await lab_server("no_starttls", cert=cert)
    report = await run_relay(kb, trust, server.port, tls="starttls", creds=creds,
                             mail_from=USER, recipients=("alice@lab.test",))
    assert not any(c.startswith("AUTH") for c in server.commands)
    assert statuses(report) == [("connect", "pass"), ("tls", "fail"), ("auth", "skip"),
                                ("mail", "skip"), ("rcpt alice@lab.test", "skip")]
    assert report.checks[1].finding is not None
    assert report.checks[1].finding.category is Category.TLS_UNAVAILABLE


async def test_password_withheld_on_a_plain_connection(kb: KnowledgeBase, trust: TrustStore,
                                                       creds: Credentials,
                                                       lab_server: LabServerFactory) -> None:
    server = await lab_server("auth_required", users={USER: PASSWORD})
    report = await run_relay(kb, trust, server.port, creds=creds, mail_from=USER,
                             recipients=("bob@example.net",))
    assert not any(c.startswith("AUTH") for c in server.commands)
    auth = report.checks[2]
    assert (auth.name, auth.status) == ("auth", CheckStatus.FAIL)
    assert auth.finding is not None and auth.finding.category is Category.CREDENTIALS_WITHHELD
    server = await lab_server("auth_required", users={USER: PASSWORD})
    report = await run_relay(kb, trust, server.port, creds=creds, mail_from=USER,
                             recipients=("bob@example.net",), allow_plaintext_auth=True)
    assert report.verdict is RelayVerdict.PASS, statuses(report)


async def test_untrusted_certificate_fails_tls_unless_told(kb: KnowledgeBase, creds: Credentials,
                                                          submission: LabServer,
                                                          other_trust: TrustStore) -> None:
    report = await run_relay(kb, other_trust, submission.port, tls="starttls", creds=creds)
    assert statuses(report)[:3] == [("connect", "pass"), ("tls", "fail"), ("auth", "skip")]
    assert report.checks[1].finding is not None
    assert report.checks[1].finding.rule == "observe.cert.untrusted"
    report = await run_relay(kb, other_trust, submission.port, tls="starttls", creds=creds,
                             verify=False)
    assert statuses(report)[:3] == [("connect", "pass"), ("tls", "pass"), ("auth", "pass")]
    assert report.checks[1].finding is not None
    assert report.checks[1].finding.rule == "observe.cert.untrusted"


async def test_refused_fails_and_filtered_is_temporary(kb: KnowledgeBase, trust: TrustStore,
                                                       filtered_port: int) -> None:
    refused = await run_relay(kb, trust, free_port(), mail_from=USER,
                              recipients=("bob@example.net",))
    assert statuses(refused)[0] == ("connect", "fail")
    assert all(status == "skip" for _, status in statuses(refused)[1:])
    assert refused.verdict is RelayVerdict.FAIL
    filtered = await run_relay(kb, trust, filtered_port, timeout=0.5)
    assert filtered.checks[0].temporary and filtered.verdict is RelayVerdict.TEMPORARY


@pytest.mark.parametrize("scenario, result", [
    ("banner_reject", RelayVerdict.FAIL), ("rate_limited", RelayVerdict.TEMPORARY)])
async def test_greeting_refusals(kb: KnowledgeBase, trust: TrustStore, scenario: str,
                                 result: RelayVerdict, lab_server: LabServerFactory) -> None:
    server = await lab_server(scenario)
    report = await run_relay(kb, trust, server.port)
    assert statuses(report)[0] == ("connect", "fail")
    assert report.verdict is result


# --- the command line -------------------------------------------------------------------------


async def test_cli_configured_from_the_environment(cafile: Path, tmp_path: Path,
                                                   submission: LabServer,
                                                   run_cli: RunCli) -> None:
    junit = tmp_path / "reports" / "relay.xml"
    junit.parent.mkdir()
    env = {"SMTPPROBE_SERVER": f"127.0.0.1:{submission.port}", "SMTPPROBE_TLS": "starttls",
           "SMTPPROBE_USER": USER, "SMTPPROBE_PASSWORD": PASSWORD,
           "SMTPPROBE_FROM": USER, "SMTPPROBE_TO": "bob@example.net, carol@example.org",
           "SMTPPROBE_CAFILE": str(cafile)}
    done = await asyncio.to_thread(run_cli, "relay", "--send", "--json", "--junit", str(junit),
                                   env=env)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["schema"] == "smtpprobe.relay/1" and data["verdict"] == "pass"
    assert [(c["name"], c["subject"], c["status"]) for c in data["checks"]] == [
        ("connect", None, "pass"), ("tls", None, "pass"), ("auth", None, "pass"),
        ("mail", None, "pass"), ("rcpt", "bob@example.net", "pass"),
        ("rcpt", "carol@example.org", "pass"), ("send", None, "pass")]
    assert all(set(c) >= {"name", "status", "finding"} for c in data["checks"])
    assert data["queue_id"] == submission.queued[0]
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None and suite.get("failures") == "0"
    assert len(suite.findall("testcase")) == 7


async def test_cli_exit_codes_and_text(tmp_path: Path, lab_server: LabServerFactory,
                                       run_cli: RunCli) -> None:
    grey = await lab_server("greylist", greylist_delay=60)
    done = await asyncio.to_thread(run_cli, "relay", "--server", f"127.0.0.1:{grey.port}",
                                   "--from", "app@example.org", "--to", "alice@lab.test")
    assert done.returncode == 3, done.stderr
    assert "TEMP" in done.stdout and "Greylisted" in done.stdout
    server = await lab_server("open_relay")
    done = await asyncio.to_thread(run_cli, "relay", "--server", f"127.0.0.1:{server.port}",
                                   "--open-relay-check", "--lang", "de")
    assert done.returncode == 1, done.stderr
    assert "Offenes Relay" in done.stdout and "FEHLER" in done.stdout


@pytest.mark.parametrize("args, words", [
    (["relay"], "--server"),
    (["relay", "--server", "127.0.0.1:99999"], "outside"),
    (["relay", "--server", "127.0.0.1", "--tls", "ssl"], "--tls"),
    (["relay", "--server", "127.0.0.1", "--to", "a@example.org"], "--to needs --from"),
    (["relay", "--server", "127.0.0.1", "--send"], "--send needs"),
    (["relay", "--server", "127.0.0.1", "--from", "not an address"], "address"),
    (["relay", "--server", "127.0.0.1", "--junit", "/nonexistent/dir/r.xml"], "--junit"),
    (["relay", "--server", "127.0.0.1", "--user", "u"], "needs a password"),
    (["relay", "--server", "127.0.0.1", "--deadline", "-1"], "--deadline"),
])
def test_cli_usage_errors(args: list[str], words: str, monkeypatch: pytest.MonkeyPatch,
                          capsys: pytest.CaptureFixture[str]) -> None:
    from smtpprobe.cli.app import main

    for name in list(os.environ):
        if name.startswith("SMTPPROBE_"):
            monkeypatch.delenv(name)
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert words in err and err.count("\n") == 1


async def _echo_auth(conn: RawConnection) -> None:
    """Offers AUTH in the clear and quotes whatever login it gets back in its refusal."""
    await conn.send("220 echo.lab.test ESMTP")
    while (line := await conn.read_command()) is not None:
        verb = line.split(" ", 1)[0].upper()
        if verb == "EHLO":
            await conn.send("250-echo.lab.test", "250 AUTH LOGIN")
        elif verb == "AUTH":
            await conn.send("334 VXNlcm5hbWU6")
            user = await conn.read_command() or ""
            await conn.send("334 UGFzc3dvcmQ6")
            secret = await conn.read_command() or ""
            raw = base64.b64decode(secret + "==").decode("utf-8", "replace")
            await conn.send(f"535-5.7.8 login {user} / {secret} refused", f"535 5.7.8 {raw} "
                            f"{raw.encode().hex()}")
        elif verb == "QUIT":
            await conn.send("221 bye")
            break
        else:
            await conn.send("530 5.7.0 Authentication required")
    conn.close()


async def test_cli_password_never_in_any_output(tmp_path: Path, lab_server: LabServerFactory,
                                                run_cli: RunCli) -> None:
    junit = tmp_path / "r.xml"
    env = {"SMTPPROBE_PASSWORD": PASSWORD}
    texts: list[str] = []
    server = await lab_server(_echo_auth)  # a raw script: the server plays it for each client
    for extra in (["-v"], ["--json"], ["--junit", str(junit)]):
        done = await asyncio.to_thread(
            run_cli, "relay", "--server", f"127.0.0.1:{server.port}", "--user", USER,
            "--allow-plaintext-auth", "--from", USER, "--to", "bob@example.net",
            *extra, env=env)
        assert done.returncode == 1, done.stderr
        texts.append(done.stdout + done.stderr)
    texts.append(junit.read_text())
    data = json.loads(texts[1])
    auth = data["checks"][2]
    assert auth["status"] == "fail" and "****" in auth["finding"]["evidence"]
    raw = PASSWORD.encode()
    forms = [PASSWORD, base64.b64encode(raw).decode(), raw.hex(), raw.hex().upper()]
    for text in texts:
        for form in forms:
            assert form not in text


async def test_a_slow_greeting_is_a_note_in_text_and_json(
        kb: KnowledgeBase, trust: TrustStore, lab_server: LabServerFactory) -> None:
    # Issue 10: a slow banner passed silently; the relay still passes, with a warning beside.
    from rich.console import Console

    from smtpprobe.report.json import relay_dict
    from smtpprobe.report.text_relay import relay_view

    server = await lab_server("slow_banner", banner_delay=3.4)
    report = await run_relay(kb, trust, server.port, timeout=6.0, deadline=12.0,
                             tls="none")
    [note] = report.notes
    assert note.rule == "observe.slow_reply" and "greeting took 3." in note.evidence
    assert note.severity is Severity.WARNING
    assert relay_dict(report, "en")["notes"][0]["rule"] == "observe.slow_reply"
    console = Console(record=True, width=120, file=open(os.devnull, "w"))  # noqa: SIM115
    console.print(relay_view(report, "en"))
    shown = console.export_text()
    assert report.verdict.value == "pass" and "greeting took 3." in shown
