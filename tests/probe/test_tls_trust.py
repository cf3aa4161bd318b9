"""When the password may cross a TLS connection, and what a bad certificate looks like, in
`sweep`, `relay` and `check` against lab servers on 127.0.0.1.

Each server gets a lab certificate with one fault (see smtpprobe/lab/tls.py): a name but no IP
address entry, an X.509 v2 certificate, a wrong extended key usage, a missing intermediate, an
expiry in the past or a start in the future; or it speaks TLS 1.0 only. Whether the password
went out is read from the server's own record of the commands it received."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from cryptography.x509.oid import ExtendedKeyUsageOID

from smtpprobe.core.certs import TrustStore
from smtpprobe.core.knowledge.load import KnowledgeBase
from smtpprobe.core.redact import Redactor
from smtpprobe.lab.dns import LabDns, Record
from smtpprobe.lab.smtp import LabServer
from smtpprobe.lab.tls import LabCA, LabCert
from smtpprobe.models import (
    AuthResult,
    CheckReport,
    CheckStatus,
    Credentials,
    PortMode,
    PortReport,
    RelayReport,
    SweepReport,
    Verdict,
)
from smtpprobe.probe.check import CheckOptions
from smtpprobe.probe.relay import Relay, RelayOptions
from smtpprobe.probe.sweep import Sweeper, SweepOptions

USER = "alice@lab.test"
PASSWORD = "Trust-Secret-5d21"

LabServerFactory = Callable[..., Awaitable[LabServer]]
LabDnsFactory = Callable[..., Awaitable[LabDns]]
RunCli = Callable[..., subprocess.CompletedProcess[str]]
Options = Callable[..., CheckOptions]
CheckAddress = Callable[[CheckOptions, str], Awaitable[CheckReport]]

INTERNALS = ("candidates exhausted", "encountered processing", "validation failed",
             "Traceback", "InvalidVersion")


@pytest.fixture
def creds() -> Credentials:
    return Credentials(USER, PASSWORD, "test")


async def submission(lab_server: LabServerFactory, cert: LabCert, *,
                     implicit_tls: bool = False) -> LabServer:
    return await lab_server("submission", cert=cert, users={USER: PASSWORD},
                            hostname="smtp.lab.test", implicit_tls=implicit_tls)


def logins(server: LabServer) -> list[str]:
    """The AUTH commands the server received: empty when the password was withheld."""
    return [c for c in server.commands if c.upper().startswith("AUTH")]


async def sweep(kb: KnowledgeBase, trust: TrustStore, host: str, port: int,
                creds: Credentials | None, mode: PortMode = PortMode.STARTTLS,
                **options: object) -> SweepReport:
    settings: dict[str, object] = {"timeout": 3.0, "deadline": 10.0, **options}
    opts = SweepOptions(host=host, ports=((port, mode),), helo="probe.lab.test",
                        **settings)  # type: ignore[arg-type]
    redactor = Redactor([(creds.user, creds.password)]) if creds else Redactor()
    return await Sweeper(kb, opts, trust=trust, redactor=redactor, credentials=creds).sweep()


async def relay(kb: KnowledgeBase, trust: TrustStore, host: str, port: int,
                creds: Credentials | None, **options: object) -> RelayReport:
    settings: dict[str, object] = {"timeout": 3.0, "deadline": 10.0, "tls": "starttls",
                                   **options}
    opts = RelayOptions(host=host, port=port, helo="ci.lab.test",
                        **settings)  # type: ignore[arg-type]
    redactor = Redactor([(creds.user, creds.password)]) if creds else Redactor()
    return await Relay(kb, opts, trust=trust, redactor=redactor, credentials=creds).run()


def statuses(report: RelayReport) -> dict[str, str]:
    return {c.name + (f" {c.subject}" if c.subject else ""): c.status.value
            for c in report.checks}


def rules(port: PortReport) -> set[str]:
    return {f.rule for f in port.findings}


# --- 1. a server given by its IP address ----------------------------------------------------------


async def test_the_password_is_withheld_from_an_ip_the_certificate_does_not_cover(
        kb: KnowledgeBase, ca: LabCA, trust: TrustStore, creds: Credentials,
        lab_server: LabServerFactory) -> None:
    server = await submission(lab_server, ca.issue("smtp.lab.test"))
    report = await sweep(kb, trust, "127.0.0.1", server.port, creds)
    [port] = report.ports
    assert port.tls is not None and port.tls.verified  # the chain is fine, the name is not
    assert port.tls.name_matches is False and port.tls.expected_name == "127.0.0.1"
    assert port.auth.result is AuthResult.UNTRUSTED
    assert logins(server) == []
    assert port.auth.finding is not None and port.auth.finding.rule == "withheld.certificate"
    assert "names smtp.lab.test, not 127.0.0.1" in port.auth.finding.evidence
    assert "observe.cert.name_mismatch.submission" in rules(port)  # sweep: a server users log in to
    rec = report.recommendation
    assert not rec.usable and rec.port is None
    assert rec.reasons[0].key == "ip_not_covered"
    assert dict(rec.reasons[0].values)["names"] == "smtp.lab.test"


async def test_a_dns_name_that_reads_like_the_ip_does_not_count(
        kb: KnowledgeBase, ca: LabCA, trust: TrustStore, creds: Credentials,
        lab_server: LabServerFactory) -> None:
    server = await submission(lab_server, ca.issue("smtp.lab.test", "127.0.0.1",
                                                   dns_only=True))
    report = await sweep(kb, trust, "127.0.0.1", server.port, creds)
    [port] = report.ports
    assert port.auth.result is AuthResult.UNTRUSTED and logins(server) == []
    assert report.recommendation.reasons[0].key == "ip_as_dns_name"


async def test_an_ip_address_entry_lets_the_password_go(
        kb: KnowledgeBase, ca: LabCA, trust: TrustStore, creds: Credentials,
        lab_server: LabServerFactory) -> None:
    server = await submission(lab_server, ca.issue("smtp.lab.test", "127.0.0.1"))
    report = await sweep(kb, trust, "127.0.0.1", server.port, creds)
    [port] = report.ports
    assert port.auth.result is AuthResult.OK and len(logins(server)) == 1
    assert report.recommendation.usable and report.recommendation.host == "127.0.0.1"


async def test_no_verify_sends_but_still_recommends_no_uncovered_ip(
        kb: KnowledgeBase, ca: LabCA, trust: TrustStore, creds: Credentials,
        lab_server: LabServerFactory) -> None:
    server = await submission(lab_server, ca.issue("smtp.lab.test"), implicit_tls=True)
    report = await sweep(kb, trust, "127.0.0.1", server.port, creds, PortMode.TLS,
                         verify=False)
    [port] = report.ports
    assert port.auth.result is AuthResult.OK  # the user vouched for the certificate
    rec = report.recommendation
    assert not rec.usable  # but a mail program told to use 127.0.0.1 would refuse it
    assert [r.key for r in rec.reasons] == ["ip_not_covered"]
    assert rec.finding is not None and rec.finding.rule == "observe.cert.name_mismatch.submission"


async def test_relay_to_an_uncovered_ip_fails_tls_and_sends_nothing(
        kb: KnowledgeBase, ca: LabCA, trust: TrustStore, creds: Credentials,
        lab_server: LabServerFactory) -> None:
    server = await submission(lab_server, ca.issue("smtp.lab.test"))
    report = await relay(kb, trust, "127.0.0.1", server.port, creds)
    assert statuses(report)["tls"] == "fail" and statuses(report)["auth"] == "skip"
    tls = report.checks[1]
    assert tls.finding is not None
    assert tls.finding.rule == "observe.cert.name_mismatch.submission"
    assert logins(server) == []


# --- 2. TLS below 1.2, and a certificate not made for servers ----------------------------------


async def test_no_password_over_tls_1_0_unless_allowed(
        kb: KnowledgeBase, cert: LabCert, trust: TrustStore, creds: Credentials,
        lab_server: LabServerFactory) -> None:
    server = await submission(lab_server, cert.with_max_tls(ssl.TLSVersion.TLSv1))
    report = await sweep(kb, trust, "127.0.0.1", server.port, creds)
    [port] = report.ports
    assert port.tls is not None and port.tls.version == "TLSv1"
    assert port.auth.result is AuthResult.WITHHELD and logins(server) == []
    assert port.auth.finding is not None and port.auth.finding.rule == "withheld.old_tls"
    assert "observe.tls.outdated" in rules(port)
    assert not report.recommendation.usable
    # The user asks for it: the login is tried.
    report = await sweep(kb, trust, "127.0.0.1", server.port, creds, allow_old_tls=True)
    assert report.ports[0].auth.result is AuthResult.OK and len(logins(server)) == 1


async def test_relay_withholds_over_tls_1_1_even_with_no_verify(
        kb: KnowledgeBase, cert: LabCert, trust: TrustStore, creds: Credentials,
        lab_server: LabServerFactory) -> None:
    server = await submission(lab_server, cert.with_max_tls(ssl.TLSVersion.TLSv1_1))
    report = await relay(kb, trust, "127.0.0.1", server.port, creds)
    assert statuses(report)["tls"] == "fail"  # verify on: outdated TLS fails the check
    report = await relay(kb, trust, "127.0.0.1", server.port, creds, verify=False)
    assert statuses(report)["tls"] == "pass" and statuses(report)["auth"] == "fail"
    auth = report.checks[2]
    assert auth.finding is not None and auth.finding.rule == "withheld.old_tls"
    assert logins(server) == []
    report = await relay(kb, trust, "127.0.0.1", server.port, creds, verify=False,
                         allow_old_tls=True)
    assert statuses(report)["auth"] == "pass"


async def test_a_client_certificate_on_a_server_does_not_verify(
        kb: KnowledgeBase, ca: LabCA, trust: TrustStore, creds: Credentials,
        lab_server: LabServerFactory) -> None:
    client_only = ca.issue("smtp.lab.test", "127.0.0.1",
                           purposes=(ExtendedKeyUsageOID.CLIENT_AUTH,))
    server = await submission(lab_server, client_only)
    report = await sweep(kb, trust, "127.0.0.1", server.port, creds)
    [port] = report.ports
    assert port.tls is not None and not port.tls.verified
    assert port.tls.verify_problem == "wrong_purpose"
    assert port.auth.result is AuthResult.UNTRUSTED and logins(server) == []
    assert "observe.cert.wrong_purpose" in rules(port)
    checked = await relay(kb, trust, "127.0.0.1", server.port, creds)
    tls = checked.checks[1]
    assert tls.status is CheckStatus.FAIL and tls.finding is not None
    assert tls.finding.rule == "observe.cert.wrong_purpose"
    assert tls.note is not None and tls.note.key == "cert_wrong_purpose"


# --- 3. a certificate cryptography cannot read ----------------------------------------------------


@pytest.fixture
def unreadable(ca: LabCA) -> LabCert:
    """An X.509 v2 certificate: OpenSSL serves it, cryptography cannot parse it."""
    return ca.issue("smtp.lab.test", "127.0.0.1", "mx.cert.test", version=2)


async def test_sweep_goes_on_past_an_unreadable_certificate(
        kb: KnowledgeBase, unreadable: LabCert, trust: TrustStore, creds: Credentials,
        lab_server: LabServerFactory) -> None:
    server = await submission(lab_server, unreadable)
    report = await sweep(kb, trust, "127.0.0.1", server.port, creds)
    [port] = report.ports
    assert port.tls is not None and port.tls.verify_problem == "unreadable"
    assert not port.tls.verified
    assert "observe.cert.unreadable" in rules(port)
    assert port.auth.result is AuthResult.UNTRUSTED and logins(server) == []
    # With --no-verify the sweep carries on to the login, which works.
    report = await sweep(kb, trust, "127.0.0.1", server.port, creds, verify=False)
    assert report.ports[0].auth.result is AuthResult.OK


async def test_relay_goes_on_past_an_unreadable_certificate(
        kb: KnowledgeBase, unreadable: LabCert, trust: TrustStore, creds: Credentials,
        lab_server: LabServerFactory) -> None:
    server = await submission(lab_server, unreadable)
    report = await relay(kb, trust, "127.0.0.1", server.port, creds, mail_from=USER,
                         recipients=("bob@example.net",))
    tls = report.checks[1]
    assert tls.status is CheckStatus.FAIL and tls.finding is not None
    assert tls.finding.rule == "observe.cert.unreadable"
    assert tls.note is not None and tls.note.key == "cert_unreadable"
    report = await relay(kb, trust, "127.0.0.1", server.port, creds, mail_from=USER,
                         recipients=("bob@example.net",), verify=False)
    assert statuses(report) == {"connect": "pass", "tls": "pass", "auth": "pass",
                                "mail": "pass", "rcpt bob@example.net": "pass"}


async def test_check_goes_on_past_an_unreadable_certificate(
        unreadable: LabCert, cafile: Path, check_options: Options,
        check_address: CheckAddress, lab_server: LabServerFactory,
        lab_dns: LabDnsFactory) -> None:
    server = await lab_server("mailbox", cert=unreadable, hostname="mx.cert.test")
    zone = await lab_dns([Record("cert.test", "MX", "10 mx.cert.test."),
                          Record("mx.cert.test", "A", "127.0.0.1")])
    opts = check_options(port=server.port, nameservers=(zone.address,), cafile=str(cafile))
    report = await check_address(opts, "alice@cert.test")
    assert report.verdict is Verdict.ACCEPTED  # not "unreachable"
    [host] = report.hosts
    assert host.tls is not None and host.tls.verify_problem == "unreadable"
    assert "observe.cert.unreadable" in {f.rule for f in report.findings}
    assert any(c.upper().startswith("RCPT") for c in server.commands)


@pytest.mark.parametrize("command", ["sweep", "relay"])
async def test_no_traceback_from_the_command_line(
        command: str, unreadable: LabCert, cafile: Path, lab_server: LabServerFactory,
        run_cli: RunCli) -> None:
    server = await submission(lab_server, unreadable)
    args = (["sweep", "127.0.0.1", "--ports", f"{server.port}:starttls"] if command == "sweep"
            else ["relay", "-s", f"127.0.0.1:{server.port}", "--tls", "starttls"])
    done = await asyncio.to_thread(run_cli, *args, "-u", USER, "--password-env", "PW",
                                   "--cafile", str(cafile), "--timeout", "3",
                                   "--helo", "probe.lab.test", env={"PW": PASSWORD})
    # A traceback also exits with 1: what tells them apart is the output.
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip() == "", done.stderr
    assert "Unreadable certificate" in done.stdout
    for word in INTERNALS:
        assert word not in done.stdout


# --- 4. what an administrator reads ---------------------------------------------------------------


def fault_certs(ca: LabCA) -> dict[str, tuple[LabCert, str, str]]:
    """label -> (certificate, rule of the relay's tls check, note key)."""
    stranger = LabCA.create("Some Other CA")
    intermediate = ca.intermediate()
    names = ("smtp.lab.test", "127.0.0.1")
    return {
        "self-signed": (ca.issue(*names, self_signed=True), "observe.cert.untrusted",
                        "cert_self_signed"),
        "unknown CA": (stranger.issue(*names), "observe.cert.untrusted",
                       "cert_unknown_issuer"),
        "missing intermediate": (intermediate.issue(*names).without_chain(),
                                 "observe.cert.untrusted", "cert_missing_intermediate"),
        "expired": (ca.issue(*names, expired=True), "observe.cert.expired", "cert_expired"),
        "not yet valid": (ca.issue(*names, not_yet_valid=True), "observe.cert.not_yet_valid",
                          "cert_not_yet_valid"),
    }


async def test_certificate_errors_in_admin_words(
        kb: KnowledgeBase, ca: LabCA, trust: TrustStore, creds: Credentials,
        lab_server: LabServerFactory) -> None:
    for label, (cert, rule, note) in fault_certs(ca).items():
        server = await submission(lab_server, cert)
        checked = await relay(kb, trust, "127.0.0.1", server.port, creds)
        tls = checked.checks[1]
        assert tls.status is CheckStatus.FAIL, label
        assert tls.finding is not None and tls.finding.rule == rule, (label, tls.finding)
        assert tls.note is not None and tls.note.key == note, (label, tls.note)
        swept = await sweep(kb, trust, "127.0.0.1", server.port, creds)
        [port] = swept.ports
        assert port.auth.result is AuthResult.UNTRUSTED, label
        assert logins(server) == [], label
        texts = [f.evidence for f in port.findings]
        assert port.tls is not None and port.tls.verify_error is not None
        texts.append(port.tls.verify_error)
        for text in texts:
            assert not any(word in text for word in INTERNALS), (label, text)
    # The intermediate, sent along, makes the same kind of certificate verify.
    server = await submission(lab_server, ca.intermediate().issue("smtp.lab.test",
                                                                  "127.0.0.1"))
    swept = await sweep(kb, trust, "127.0.0.1", server.port, creds)
    assert swept.ports[0].auth.result is AuthResult.OK


# --- 5. the certificate-name finding of a submission server ---------------------------------------


async def test_relay_names_what_the_certificate_covers_with_submission_advice(
        kb: KnowledgeBase, ca: LabCA, trust: TrustStore, creds: Credentials,
        lab_server: LabServerFactory, lab_dns: LabDnsFactory) -> None:
    server = await submission(lab_server, ca.issue("smtp.lab.test", "smtp2.lab.test"))
    zone = await lab_dns([Record("mail.lab.test", "A", "127.0.0.1")])
    report = await relay(kb, trust, "mail.lab.test", server.port, creds,
                         nameservers=(zone.address,))
    tls = report.checks[1]
    assert tls.status is CheckStatus.FAIL and tls.finding is not None
    assert tls.finding.rule == "observe.cert.name_mismatch.submission"
    assert tls.finding.evidence == ("the certificate names smtp.lab.test, smtp2.lab.test, "
                                    "not mail.lab.test")
    assert "MX" not in tls.finding.remedy.en and "settings" in tls.finding.remedy.en
    assert tls.note is not None and tls.note.key == "cert_names"
    assert dict(tls.note.values) == {"names": "smtp.lab.test, smtp2.lab.test",
                                     "name": "mail.lab.test"}
    assert logins(server) == []


async def test_check_keeps_the_mx_advice(
        ca: LabCA, cafile: Path, check_options: Options, check_address: CheckAddress,
        lab_server: LabServerFactory, lab_dns: LabDnsFactory) -> None:
    server = await lab_server("mailbox", cert=ca.issue("other.example"),
                              hostname="mx.cert.test")
    zone = await lab_dns([Record("cert.test", "MX", "10 mx.cert.test."),
                          Record("mx.cert.test", "A", "127.0.0.1")])
    opts = check_options(port=server.port, nameservers=(zone.address,), cafile=str(cafile))
    report = await check_address(opts, "alice@cert.test")
    found = [f for f in report.findings if f.rule == "observe.cert.name_mismatch"]
    assert found and "MX" in found[0].remedy.en
    assert found[0].evidence == "the certificate names other.example, not mx.cert.test"
