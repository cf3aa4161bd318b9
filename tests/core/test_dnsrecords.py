"""core/dnsrecords.py: DMARC, DKIM, MTA-STS, TLS-RPT parsing, TLSA matching and DNSBL answers,
from the bytes and strings a record holds."""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from smtpprobe.core import dnsrecords as rec
from smtpprobe.lab.tls import LabCA

# -- tag lists and DMARC ---------------------------------------------------------------------------


def test_tag_list_allows_spaces_and_a_trailing_semicolon() -> None:
    tags, errors = rec.parse_tag_list(" v = DMARC1 ;p=reject;  ")
    assert tags == [("v", "DMARC1"), ("p", "reject")] and errors == []
    _, errors = rec.parse_tag_list("v=DMARC1; nonsense; 9x=1")
    assert errors == ["'nonsense' is not a tag=value pair", "'9x' is not a valid tag name"]


def test_dmarc_full_record() -> None:
    d = rec.parse_dmarc("v=DMARC1; p=quarantine; sp=reject; pct=25; "
                        "rua=mailto:agg@example.org!10m,mailto:b@example.net; "
                        "ruf=mailto:f@example.org; adkim=s; aspf=r; fo=1")
    assert (d.policy, d.subdomain_policy, d.pct, d.adkim, d.aspf) == (
        "quarantine", "reject", 25, "s", "r")
    assert d.rua == ("mailto:agg@example.org!10m", "mailto:b@example.net")
    assert d.ruf == ("mailto:f@example.org",)
    assert d.errors == () and d.warnings == ()


def test_dmarc_defaults() -> None:
    d = rec.parse_dmarc("v=DMARC1; p=none")
    assert (d.pct, d.adkim, d.aspf, d.subdomain_policy) == (100, "r", "r", None)
    assert d.effective_subdomain_policy == "none"


@pytest.mark.parametrize(("text", "error"), [
    ("p=reject; v=DMARC1", "the record does not begin with v=DMARC1"),
    ("v=dmarc1; p=reject", "the record does not begin with v=DMARC1"),
    ("v=DMARC1", "the required tag p= is missing"),
    ("v=DMARC1; p=block", "p=block is not none, quarantine or reject"),
    ("v=DMARC1; p=none; sp=maybe", "sp=maybe is not none, quarantine or reject"),
    ("v=DMARC1; p=none; pct=101", "pct=101 is not a whole number from 0 to 100"),
    ("v=DMARC1; p=none; pct=-1", "pct=-1 is not a whole number from 0 to 100"),
    ("v=DMARC1; p=none; rua=dmarc@example.org", "rua: 'dmarc@example.org' is not a mailto: URI"),
    ("v=DMARC1; p=none; rua=mailto:", "rua: 'mailto:' does not hold a mail address"),
    ("v=DMARC1; p=none; ruf=mailto:a@example.org!big",
     "ruf: 'mailto:a@example.org!big': the size limit 'big' is not a number with k, m, g or t"),
    ("v=DMARC1; p=none; adkim=x", "adkim=x is not r (relaxed) or s (strict)"),
    ("v=DMARC1; p=none; p=reject", "the tag p= appears more than once"),
])
def test_dmarc_errors(text: str, error: str) -> None:
    assert error in rec.parse_dmarc(text).errors


def test_dmarc_unknown_tag_is_a_warning() -> None:
    d = rec.parse_dmarc("v=DMARC1; p=reject; rue=mailto:a@example.org")
    assert d.errors == ()
    assert d.warnings == ("the tag rue= is not a DMARC tag and is ignored",)


# -- DKIM ------------------------------------------------------------------------------------------


def _rsa_p(bits: int) -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits).public_key()
    der = key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode()


@pytest.fixture(scope="module")
def rsa2048() -> str:
    return _rsa_p(2048)


def test_dkim_rsa_2048(rsa2048: str) -> None:
    # A long key split over strings and lines: whitespace inside p= is folding (RFC 6376 3.6.1).
    p = rsa2048[:100] + " \t" + rsa2048[100:]
    d = rec.parse_dkim(f"v=DKIM1; k=rsa; h=sha256; p={p}")
    assert (d.key_type, d.bits, d.revoked, d.errors, d.warnings) == ("rsa", 2048, False, (), ())


def test_dkim_rsa_1024_is_a_warning() -> None:
    d = rec.parse_dkim("p=" + _rsa_p(1024))
    assert d.bits == 1024 and d.errors == ()
    assert d.warnings == ("the RSA key has 1024 bits; 2048 are recommended (RFC 8301 3.2)",)


def test_dkim_ed25519() -> None:
    raw = ed25519.Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw,
                                                                           PublicFormat.Raw)
    d = rec.parse_dkim("v=DKIM1; k=ed25519; p=" + base64.b64encode(raw).decode())
    assert (d.key_type, d.bits, d.errors) == ("ed25519", 256, ())
    bad = rec.parse_dkim("k=ed25519; p=" + base64.b64encode(raw[:31]).decode())
    assert bad.errors == ("an Ed25519 key has 32 bytes, this one 31",)


@pytest.mark.parametrize(("text", "error"), [
    ("v=DKIM1; k=rsa", "the required tag p= (the public key) is missing"),
    ("v=DKIM1; p=@@@", "p= is not valid base64"),
    ("p=" + base64.b64encode(b"\x30\x03\x02\x01\x05").decode(),
     "p= does not hold an RSA public key"),
    ("k=dsa; p=AAAA", "k=dsa is not a key type verifiers know (rsa, ed25519)"),
    ("k=rsa; v=DKIM1; p=AAAA", "v= is present but is not the first tag with the value DKIM1"),
])
def test_dkim_errors(text: str, error: str) -> None:
    assert error in rec.parse_dkim(text).errors


def test_dkim_revoked_and_testing() -> None:
    d = rec.parse_dkim("v=DKIM1; t=y:s; p=")
    assert d.revoked and d.testing and d.bits is None and d.errors == ()


# -- MTA-STS ---------------------------------------------------------------------------------------


def test_mta_sts_record() -> None:
    assert rec.parse_mta_sts_record("v=STSv1; id=20240101T000000").id == "20240101T000000"
    assert rec.parse_mta_sts_record("v=STSv1; id=a-b").errors == (
        "id=a-b is not 1 to 32 letters and digits",)
    assert rec.parse_mta_sts_record("v=STSv1;").errors == ("the required id= is missing",)
    assert rec.parse_mta_sts_record("id=1; v=STSv1").errors[0] == \
        "the record does not begin with v=STSv1"


def test_mta_sts_policy_crlf_and_lf() -> None:
    body = (b"version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\n"
            b"mx: *.example.net\nmax_age: 604800\r\nfuture: ignored\r\n")
    p = rec.parse_mta_sts_policy(body)
    assert (p.mode, p.max_age, p.mx, p.errors, p.warnings) == (
        "enforce", 604800, ("mail.example.com", "*.example.net"), (), ())


@pytest.mark.parametrize(("body", "error"), [
    (b"mode: enforce\nmx: a.example\nmax_age: 86400\n", "version: STSv1 is missing"),
    (b"version: STSv1\nmode: strict\nmx: a.example\nmax_age: 86400\n",
     "mode: strict is not enforce, testing or none"),
    (b"version: STSv1\nmode: enforce\nmax_age: 86400\n",
     "no mx: line, so no MX host can match the policy"),
    (b"version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 31557601\n",
     "max_age: 31557601 is not a number of seconds up to 31557600"),
    (b"version: STSv1\nmode: enforce\nmx: a.example\n", "max_age is missing"),
    (b"version: STSv1\nmode: enforce\nmx: a..example\nmax_age: 86400\n",
     "mx: a..example is not a host name or *.name pattern"),
    (b"version: STSv1\nmode enforce\n", "line 2 is not 'key: value'"),
    (b"version: STSv1\nmode: enforce\nmode: none\n", "mode appears more than once"),
    (b"\xff\xfe", "the policy is not UTF-8 text"),
])
def test_mta_sts_policy_errors(body: bytes, error: str) -> None:
    assert error in rec.parse_mta_sts_policy(body).errors


def test_mta_sts_short_max_age_and_testing_warn() -> None:
    p = rec.parse_mta_sts_policy(b"version: STSv1\nmode: testing\nmx: a.example\nmax_age: 60\n")
    assert p.errors == ()
    assert len(p.warnings) == 2


@pytest.mark.parametrize(("pattern", "host", "matches"), [
    ("mail.example.com", "mail.example.com", True),
    ("mail.example.com", "MAIL.example.com.", True),
    ("*.example.com", "mx1.example.com", True),
    ("*.example.com", "a.b.example.com", False),  # RFC 8461 4.1: one label only
    ("*.example.com", "example.com", False),
    ("*.example.com", "mx1.example.org", False),
    ("mail.example.com", "mail2.example.com", False),
])
def test_mx_patterns(pattern: str, host: str, matches: bool) -> None:
    assert rec.mx_pattern_matches(pattern, host) is matches


# -- TLS-RPT ---------------------------------------------------------------------------------------


def test_tls_rpt() -> None:
    r = rec.parse_tls_rpt("v=TLSRPTv1; rua=mailto:tls@example.org,https://r.example.org/x")
    assert r.rua == ("mailto:tls@example.org", "https://r.example.org/x") and r.errors == ()
    assert rec.parse_tls_rpt("v=TLSRPTv1").errors == ("the required rua= is missing",)
    assert rec.parse_tls_rpt("v=TLSRPTv1; rua=tls@example.org").errors == (
        "rua: 'tls@example.org' is not a mailto: URI (RFC 8460 3 allows mailto: and https:)",)
    assert rec.parse_tls_rpt("v=TLSRPTv2; rua=mailto:a@example.org").errors[0] == \
        "the record does not begin with v=TLSRPTv1"


# -- TLSA (RFC 6698 2.1, RFC 7671) -----------------------------------------------------------------


@pytest.fixture(scope="module")
def chain() -> tuple[bytes, bytes, bytes]:
    """leaf, intermediate, root as DER (the root sent along, as DANE-TA wants it)."""
    root = LabCA.create("dane root")
    inter = root.intermediate("dane intermediate")
    leaf = inter.issue("mx.example.test")
    return (leaf.cert.public_bytes(Encoding.DER), inter.cert.public_bytes(Encoding.DER),
            root.cert.public_bytes(Encoding.DER))


def _spki(der: bytes) -> bytes:
    from cryptography import x509

    return x509.load_der_x509_certificate(der).public_key().public_bytes(
        Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def test_tlsa_dane_ee_every_selector_and_matching_type(chain: tuple[bytes, ...]) -> None:
    leaf = chain[0]
    for selector, data in ((0, leaf), (1, _spki(leaf))):
        for mtype, digest in ((0, data), (1, hashlib.sha256(data).digest()),
                              (2, hashlib.sha512(data).digest())):
            assert rec.tlsa_match(rec.Tlsa(3, selector, mtype, digest), chain), (selector, mtype)
            wrong = bytes([digest[0] ^ 1]) + digest[1:]
            assert not rec.tlsa_match(rec.Tlsa(3, selector, mtype, wrong), chain)


def test_tlsa_dane_ee_ignores_the_rest_of_the_chain(chain: tuple[bytes, ...]) -> None:
    record = rec.Tlsa(3, 1, 1, hashlib.sha256(_spki(chain[1])).digest())
    assert not rec.tlsa_match(record, chain)  # the intermediate's key is not the leaf's


def test_tlsa_dane_ta(chain: tuple[bytes, ...]) -> None:
    leaf, inter, root = chain
    for anchor in (inter, root):
        record = rec.Tlsa(2, 1, 1, hashlib.sha256(_spki(anchor)).digest())
        assert rec.tlsa_match(record, chain)
    # The leaf itself is no trust anchor, and a chain that does not lead to it fails.
    assert not rec.tlsa_match(rec.Tlsa(2, 0, 1, hashlib.sha256(leaf).digest()), chain)
    other = LabCA.create("someone else").issue("mx.example.test").cert.public_bytes(Encoding.DER)
    assert not rec.tlsa_match(rec.Tlsa(2, 0, 1, hashlib.sha256(root).digest()),
                              (other, inter, root))


@pytest.mark.parametrize(("record", "why"), [
    (rec.Tlsa(1, 1, 1, bytes(32)), "usage 1 (PKIX-EE) is not used for SMTP (RFC 7672 3.1.3)"),
    (rec.Tlsa(0, 1, 1, bytes(32)), "usage 0 (PKIX-TA) is not used for SMTP (RFC 7672 3.1.3)"),
    (rec.Tlsa(4, 1, 1, bytes(32)), "usage 4 is not defined"),
    (rec.Tlsa(3, 2, 1, bytes(32)), "selector 2 is not defined (0 full certificate, 1 public key)"),
    (rec.Tlsa(3, 1, 3, bytes(32)),
     "matching type 3 is not defined (0 exact, 1 SHA-256, 2 SHA-512)"),
    (rec.Tlsa(3, 1, 1, bytes(31)), "a SHA-256 digest has 32 bytes, this one 31"),
    (rec.Tlsa(3, 1, 2, bytes(32)), "a SHA-512 digest has 64 bytes, this one 32"),
])
def test_tlsa_unusable(record: rec.Tlsa, why: str, chain: tuple[bytes, ...]) -> None:
    assert rec.tlsa_usable(record) == why
    assert not rec.tlsa_match(record, chain)


def test_tlsa_pkix_ee_never_matches_even_when_the_digest_does(chain: tuple[bytes, ...]) -> None:
    assert not rec.tlsa_match(rec.Tlsa(1, 1, 1, hashlib.sha256(_spki(chain[0])).digest()), chain)


def test_tlsa_garbage_certificate() -> None:
    assert not rec.tlsa_match(rec.Tlsa(3, 1, 1, bytes(32)), (b"\x30\x00",))
    assert rec.tlsa_match(rec.Tlsa(3, 0, 0, b"\x30\x00"), (b"\x30\x00",))  # exact bytes
    assert not rec.tlsa_match(rec.Tlsa(3, 0, 0, b"\x30\x00"), ())


# -- DNSBL (RFC 5782) ------------------------------------------------------------------------------


def test_dnsbl_names() -> None:
    assert rec.dnsbl_name("192.0.2.99", "zen.example.") == "99.2.0.192.zen.example"
    assert rec.dnsbl_name("::ffff:192.0.2.99", "bl.example") == "99.2.0.192.bl.example"
    assert rec.dnsbl_name("2001:db8::1", "bl.example") == (
        "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.bl.example")


@pytest.mark.parametrize(("answer", "state"), [
    (["127.0.0.2"], "listed"),
    (["127.0.0.10", "127.0.0.4"], "listed"),
    (["127.255.255.254"], "refused"),
    (["127.255.255.252"], "refused"),
    (["127.255.255.255"], "refused"),
    (["127.0.0.2", "127.255.255.254"], "refused"),  # an error code voids the whole answer
    (["127.0.0.1"], "invalid"),  # RFC 5782 5: never a listing
    (["192.0.2.7"], "invalid"),  # a resolver that rewrites NXDOMAIN to an ad server
])
def test_dnsbl_answers(answer: list[str], state: str) -> None:
    assert rec.classify_dnsbl(answer).state == state
