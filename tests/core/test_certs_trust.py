"""Certificate verification in words an administrator knows, RFC 6125 for IP addresses, the
extended key usage, unreadable certificates: `core.certs.inspect_chain` on lab certificates,
what `core.tlsproblems` and the knowledge base make of it, and `recommend` for a bare IP.

No server here: the chains are the DER a server would send (tests/probe/test_tls_trust.py has
the same certificates on lab servers)."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509 import ObjectIdentifier
from cryptography.x509.oid import ExtendedKeyUsageOID

from smtpprobe.core.certs import TrustStore, inspect_chain, name_matches
from smtpprobe.core.classify import classify_failure
from smtpprobe.core.knowledge.load import KnowledgeBase
from smtpprobe.core.recommendation import recommend
from smtpprobe.core.tlsproblems import tls_problems
from smtpprobe.lab.tls import LabCA, LabCert
from smtpprobe.models import (
    AuthOutcome,
    AuthResult,
    Failure,
    FailureKind,
    PortMode,
    PortReport,
    PortState,
    Stage,
    TlsInfo,
)


def der(cert: LabCert) -> list[bytes]:
    """The chain as a server sends it: the leaf (as presented), then the intermediates."""
    leaf = cert.der if cert.der is not None else cert.cert.public_bytes(
        serialization.Encoding.DER)
    return [leaf, *(c.public_bytes(serialization.Encoding.DER) for c in cert.chain)]


def inspect(cert: LabCert | list[bytes], trust: TrustStore, name: str = "smtp.lab.test",
            *, now: dt.datetime | None = None) -> TlsInfo:
    chain = cert if isinstance(cert, list) else der(cert)
    return inspect_chain(chain, version="TLSv1.3", cipher="TLS_AES_128_GCM_SHA256", bits=128,
                         expected_name=name, store=trust, now=now)


# Words of cryptography's own messages that must never reach a user.
INTERNALS = ("candidates exhausted", "encountered processing", "validation failed",
             "Certificate(")


def assert_admin_words(info: TlsInfo) -> None:
    assert info.verify_error is not None
    assert not any(word in info.verify_error for word in INTERNALS), info.verify_error
    assert len(info.verify_error) <= 200, info.verify_error


# --- RFC 6125: an IP address needs an iPAddress entry ------------------------------------------


def test_an_ip_target_is_covered_only_by_an_ip_address_entry(ca: LabCA, trust: TrustStore) -> None:
    by_name = inspect(ca.issue("smtp.lab.test"), trust, "127.0.0.1")
    assert by_name.verified and by_name.name_matches is False
    assert by_name.expected_name == "127.0.0.1" and by_name.ip_names == ()
    with_ip = inspect(ca.issue("smtp.lab.test", "127.0.0.1"), trust, "127.0.0.1")
    assert with_ip.verified and with_ip.name_matches is True
    assert with_ip.ip_names == ("127.0.0.1",)
    # A DNS name that reads like the address is not an iPAddress entry.
    as_text = inspect(ca.issue("smtp.lab.test", "127.0.0.1", dns_only=True), trust, "127.0.0.1")
    assert as_text.name_matches is False and as_text.ip_names == ()
    assert "127.0.0.1" in as_text.names
    # The chain itself is fine in all three: only the name is wrong.
    assert as_text.verified


def test_name_matching_rules() -> None:
    assert name_matches("::1", [], ["0:0:0:0:0:0:0:1"])  # the same address, written otherwise
    assert not name_matches("127.0.0.1", ["127.0.0.1"])  # a DNS name does not count
    assert not name_matches("127.0.0.1", ["*.0.0.1"])  # nor does a wildcard
    assert not name_matches("smtp.lab.test", [], ["127.0.0.1"])  # nor an address for a name
    assert name_matches("mx.lab.test", ["*.lab.test"])
    assert not name_matches("a.mx.lab.test", ["*.lab.test"])


def test_the_ip_finding_names_what_the_certificate_covers(ca: LabCA, trust: TrustStore) -> None:
    info = inspect(ca.issue("smtp.lab.test", "127.0.0.1", dns_only=True), trust, "127.0.0.1")
    [(kind, detail)] = tls_problems(info, "127.0.0.1")
    assert kind is FailureKind.CERT_NAME_MISMATCH
    assert detail.startswith("the certificate names smtp.lab.test, 127.0.0.1, not 127.0.0.1")
    assert "DNS name" in detail and "RFC 6125" in detail


# --- extended key usage (RFC 5280 4.2.1.12) -----------------------------------------------------


@pytest.mark.parametrize(("purposes", "verified"), [
    ((ExtendedKeyUsageOID.CLIENT_AUTH,), False),
    ((ExtendedKeyUsageOID.EMAIL_PROTECTION, ExtendedKeyUsageOID.CODE_SIGNING), False),
    ((ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH), True),
    ((ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE,), True),
    (None, True),  # no extended key usage: every purpose is allowed
])
def test_a_leaf_without_server_auth_does_not_verify(
        ca: LabCA, trust: TrustStore, purposes: tuple[ObjectIdentifier, ...] | None,
        verified: bool) -> None:
    info = inspect(ca.issue("smtp.lab.test", purposes=purposes), trust)
    assert info.verified is verified
    if not verified:
        assert info.verify_problem == "wrong_purpose"
        assert info.verify_error is not None and "serverAuth" in info.verify_error
        assert_admin_words(info)
        [(kind, _)] = tls_problems(info, "smtp.lab.test")
        assert kind is FailureKind.CERT_WRONG_PURPOSE
    else:
        assert info.verify_problem is None and info.verify_error is None


# --- unreadable certificates ---------------------------------------------------------------------


def test_an_x509_v2_leaf_is_an_unreadable_certificate(ca: LabCA, trust: TrustStore) -> None:
    v2 = ca.issue("smtp.lab.test", "127.0.0.1", version=2)
    assert v2.der is not None
    with pytest.raises(x509.InvalidVersion):  # what crashed sweep and relay before
        x509.load_der_x509_certificate(v2.der)
    info = inspect(v2, trust)
    assert not info.verified and info.verify_problem == "unreadable"
    assert info.verify_error == "unreadable: X.509 version 2, which is no longer in use"
    assert info.name_matches is None  # nothing could be read, so nothing matched
    [(kind, detail)] = tls_problems(info, "smtp.lab.test")
    assert kind is FailureKind.CERT_UNREADABLE
    assert detail == ("the certificate of smtp.lab.test is unreadable: X.509 version 2, which "
                      "is no longer in use")


@pytest.mark.parametrize("blob", [
    b"", b"\x00", b"\x30\x03\x02\x01\x00", b"\x30\x82\xff\xff" + b"\x00" * 16, b"not DER at all",
])
def test_any_malformed_der_is_an_unreadable_certificate(trust: TrustStore, blob: bytes) -> None:
    info = inspect([blob], trust)
    assert not info.verified and info.verify_problem == "unreadable"
    assert info.verify_error is not None and info.verify_error.startswith("unreadable: ")


def test_an_unreadable_intermediate_keeps_the_leaf_facts(ca: LabCA, trust: TrustStore) -> None:
    leaf = ca.intermediate().issue("smtp.lab.test")
    info = inspect([der(leaf)[0], b"\x30\x03\x02\x01\x00"], trust)
    assert not info.verified and info.verify_problem == "unreadable"
    assert info.names == ("smtp.lab.test",) and info.name_matches is True
    assert info.verify_error is not None and "intermediate" in info.verify_error


# --- why a chain does not verify, in an administrator's words ----------------------------------


def test_verification_problems_in_admin_words(ca: LabCA, other_ca: LabCA,
                                              trust: TrustStore) -> None:
    intermediate = ca.intermediate()
    stranger = LabCA.create("Some Other CA")
    cases: dict[str, tuple[LabCert, str, str]] = {
        "self-signed": (ca.issue("smtp.lab.test", self_signed=True), "self_signed",
                        "self-signed"),
        "unknown CA": (stranger.issue("smtp.lab.test"), "unknown_issuer",
                       "issued by 'Some Other CA', which is not in the trust store"),
        "same name, other key": (other_ca.issue("smtp.lab.test"), "unknown_issuer",
                                 "not by the trusted CA of that name"),
        "missing intermediate": (intermediate.issue("smtp.lab.test").without_chain(),
                                 "missing_intermediate",
                                 "the server does not send 'smtpprobe lab intermediate CA'"),
        "expired": (ca.issue("smtp.lab.test", expired=True), "expired", "expired on "),
        "not yet valid": (ca.issue("smtp.lab.test", not_yet_valid=True), "not_yet_valid",
                          "not valid before "),
    }
    for label, (cert, problem, words) in cases.items():
        info = inspect(cert, trust)
        assert not info.verified, label
        assert info.verify_problem == problem, (label, info.verify_error)
        assert info.verify_error is not None and words in info.verify_error, (label, info)
        assert_admin_words(info)
        assert info.name_matches is True, label  # the name is not what is wrong
    # The same intermediate, sent with the leaf, verifies.
    whole = inspect(intermediate.issue("smtp.lab.test"), trust)
    assert whole.verified and whole.verify_problem is None


def test_an_expired_intermediate_is_named() -> None:
    root = LabCA.create(days=1000)
    intermediate = root.intermediate(days=10)
    leaf = intermediate.issue("smtp.lab.test", days=30)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=20)  # the intermediate has ended
    info = inspect(leaf, TrustStore((root.cert,), "lab"), now=later)
    assert not info.verified and info.verify_problem == "expired"
    assert info.verify_error is not None
    assert info.verify_error.startswith("the intermediate certificate 'smtpprobe lab "
                                        "intermediate CA' expired on ")
    assert_admin_words(info)


@pytest.mark.parametrize(("problem", "kind", "rule"), [
    ("self_signed", FailureKind.CERT_UNTRUSTED, "observe.cert.untrusted"),
    ("unknown_issuer", FailureKind.CERT_UNTRUSTED, "observe.cert.untrusted"),
    ("missing_intermediate", FailureKind.CERT_UNTRUSTED, "observe.cert.untrusted"),
    ("not_yet_valid", FailureKind.CERT_NOT_YET_VALID, "observe.cert.not_yet_valid"),
    ("wrong_purpose", FailureKind.CERT_WRONG_PURPOSE, "observe.cert.wrong_purpose"),
    ("unreadable", FailureKind.CERT_UNREADABLE, "observe.cert.unreadable"),
])
def test_each_problem_has_its_finding(kb: KnowledgeBase, problem: str, kind: FailureKind,
                                      rule: str) -> None:
    info = TlsInfo("TLSv1.3", "x", verified=False, verify_error="why", verify_problem=problem,
                   days_left=20, names=("smtp.lab.test",), name_matches=True)
    [(found, detail)] = tls_problems(info, "smtp.lab.test")
    assert found is kind
    finding = classify_failure(kb, Stage.STARTTLS, Failure(found, detail))
    assert finding.rule == rule
    assert finding.title is not None and finding.title.de and finding.remedy.de


def test_a_name_mismatch_gets_mx_advice_in_check_and_settings_advice_in_submission(
        kb: KnowledgeBase, ca: LabCA, trust: TrustStore) -> None:
    info = inspect(ca.issue("smtp.lab.test", "smtp2.lab.test"), trust, "mail.lab.test")
    mx = dict(tls_problems(info, "mail.lab.test"))
    submission = dict(tls_problems(info, "mail.lab.test", submission=True))
    assert set(mx) == {FailureKind.CERT_NAME_MISMATCH}
    assert set(submission) == {FailureKind.CERT_NAME_MISMATCH_SUBMISSION}
    detail = submission[FailureKind.CERT_NAME_MISMATCH_SUBMISSION]
    assert detail == "the certificate names smtp.lab.test, smtp2.lab.test, not mail.lab.test"
    for_mx = classify_failure(kb, Stage.STARTTLS, Failure(FailureKind.CERT_NAME_MISMATCH,
                                                          detail))
    for_users = classify_failure(kb, Stage.STARTTLS, Failure(
        FailureKind.CERT_NAME_MISMATCH_SUBMISSION, detail))
    assert "MX" in for_mx.remedy.en
    assert "MX" not in for_users.remedy.en and "settings" in for_users.remedy.en
    assert "Einstellungen" in for_users.remedy.de and "Sie" in for_users.remedy.de
    assert for_users.evidence == detail


# --- recommend never names a bare IP its certificate does not cover ------------------------------


def _port(port: int, *, ip_names: tuple[str, ...], names: tuple[str, ...],
          auth: AuthResult = AuthResult.OK) -> PortReport:
    tls = TlsInfo("TLSv1.3", "x", verified=True, names=names, ip_names=ip_names,
                  expected_name="192.0.2.7", name_matches="192.0.2.7" in ip_names)
    return PortReport(port=port, mode=PortMode.TLS, host="192.0.2.7", address="192.0.2.7",
                      state=PortState.OPEN, reachable=True, tls=tls,
                      auth=AuthOutcome(auth, "PLAIN", ("PLAIN",)))


def test_recommend_refuses_an_ip_the_certificate_does_not_cover() -> None:
    uncovered = _port(465, ip_names=(), names=("smtp.example.org",))
    rec = recommend("192.0.2.7", [uncovered], credentials=True)
    assert not rec.usable and rec.port is None
    [reason] = rec.reasons
    assert reason.key == "ip_not_covered"
    assert dict(reason.values) == {"port": "465", "host": "192.0.2.7",
                                   "names": "smtp.example.org"}
    # Without credentials (a login offered, not tried) just the same.
    rec = recommend("192.0.2.7", [uncovered], credentials=False)
    assert not rec.usable and rec.reasons[0].key == "ip_not_covered"
    # The same port by the name the certificate covers is fine.
    assert recommend("smtp.example.org", [uncovered], credentials=True).usable


def test_recommend_takes_the_port_whose_certificate_covers_the_ip() -> None:
    ports = [_port(465, ip_names=(), names=("smtp.example.org",)),
             _port(587, ip_names=("192.0.2.7",), names=("smtp.example.org", "192.0.2.7"))]
    rec = recommend("192.0.2.7", ports, credentials=True)
    assert rec.usable and rec.port == 587
    assert "ip_not_covered" in [r.key for r in rec.reasons]


def test_recommend_explains_an_ip_written_as_a_dns_name() -> None:
    ports = [_port(465, ip_names=(), names=("smtp.example.org", "192.0.2.7"))]
    rec = recommend("192.0.2.7", ports, credentials=True)
    assert not rec.usable
    assert rec.reasons[0].key == "ip_as_dns_name"
    assert dict(rec.reasons[0].values)["names"] == "smtp.example.org"


def test_the_reasons_have_words_in_both_languages() -> None:
    from smtpprobe.models import Reason
    from smtpprobe.report.words import note_text, reason_text

    values = (("port", "465"), ("host", "192.0.2.7"), ("names", "smtp.example.org"))
    for key in ("ip_not_covered", "ip_as_dns_name", "ip_not_covered_unnamed"):
        en, de = (reason_text(Reason(key, values), lang) for lang in ("en", "de"))
        assert "192.0.2.7" in en and "192.0.2.7" in de and en != de
    for key in ("cert_self_signed", "cert_unknown_issuer", "cert_missing_intermediate",
                "cert_wrong_purpose", "cert_unreadable", "cert_untrusted", "cert_none",
                "cert_no_trust_store"):
        assert note_text(Reason(key), "en") != note_text(Reason(key), "de")


# --- start-up: judging needs no cryptography -----------------------------------------------------


def test_judging_a_handshake_does_not_import_cryptography() -> None:
    code = ("import sys\n"
            "import smtpprobe.core.tlsproblems, smtpprobe.core.recommendation\n"
            "import smtpprobe.probe.login, smtpprobe.probe.check, smtpprobe.net.session\n"
            "print('cryptography' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "False"
