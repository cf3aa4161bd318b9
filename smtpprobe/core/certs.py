"""Pure certificate checks: what a server's chain says, and whether it verifies.

The probe completes every TLS handshake without verification (an MX with a bad certificate is
common, and a finding, not a reason to stop), then checks the chain here with `cryptography`'s
X.509 verifier against the trust store in use, and the host name separately, so that a name
mismatch and an untrusted chain are reported as two facts.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.x509 import DNSName, IPAddress
from cryptography.x509.oid import ExtensionOID, NameOID
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from smtpprobe.models import TlsInfo


@dataclass(frozen=True, slots=True)
class TrustStore:
    """The CA certificates a chain must lead to, and where they came from."""

    roots: tuple[x509.Certificate, ...]
    source: str


# System bundles carry a few old roots with a zero or negative serial number, which
# cryptography warns about on every load. The warning is about those roots, not about anything
# the user can change; it is silenced by its exact text. (catch_warnings() would not do: the
# store is loaded in a thread, and warning filters are process-wide.)
warnings.filterwarnings("ignore", message="Parsed a serial number which wasn't positive")


def load_trust_store(cafile: str | None = None) -> TrustStore:
    """`cafile` (PEM bundle) or the system store that OpenSSL would use. Raises OSError/
    ValueError with a readable message when `cafile` cannot be used."""
    if cafile is not None:
        data = Path(cafile).read_bytes()
        roots = x509.load_pem_x509_certificates(data)
        return TrustStore(tuple(roots), cafile)
    paths = ssl.get_default_verify_paths()
    found: list[x509.Certificate] = []
    source = ""
    for candidate in (paths.cafile, paths.openssl_cafile, "/etc/ssl/certs/ca-certificates.crt"):
        if candidate and Path(candidate).is_file():
            try:
                found = x509.load_pem_x509_certificates(Path(candidate).read_bytes())
            except ValueError:
                continue
            source = candidate
            break
    return TrustStore(tuple(found), source or "(no system trust store found)")


def _name(name: x509.Name) -> str:
    cns = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    if cns:
        value = cns[0].value
        return value if isinstance(value, str) else value.decode("utf-8", "replace")
    return name.rfc4514_string()


def _san(cert: x509.Certificate) -> list[str]:
    try:
        ext = cert.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
    except x509.ExtensionNotFound:
        return []
    san = ext.value
    assert isinstance(san, x509.SubjectAlternativeName)
    names: list[str] = list(san.get_values_for_type(x509.DNSName))
    names += [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    return names


def name_matches(expected: str, names: Sequence[str]) -> bool:
    """RFC 6125 6.4: exact match, or a wildcard in the left-most label only ("*.example.org"
    matches "mx.example.org", not "a.mx.example.org" nor "example.org")."""
    expected = expected.lower().rstrip(".")
    for name in names:
        name = name.lower().rstrip(".")
        if name == expected:
            return True
        if name.startswith("*.") and "." in expected:
            if expected.split(".", 1)[1] == name[2:] and name[2:].count(".") >= 1:
                return True
    return False


_LENIENT_LEAF = ExtensionPolicy.permit_all().require_present(
    x509.SubjectAlternativeName, Criticality.AGNOSTIC, None)


def _subject_for(name: str) -> DNSName | IPAddress:
    try:
        return IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return DNSName(name)


def _one_line(exc: Exception) -> str:
    text = " ".join(str(exc).split())
    # cryptography appends "(encountered processing <Certificate(...)>)": long and unhelpful.
    cut = text.find(" (encountered processing")
    if cut != -1:
        text = text[:cut]
    return text[:200] or type(exc).__name__


def inspect_chain(
    chain_der: Sequence[bytes],
    *,
    version: str,
    cipher: str,
    bits: int | None,
    expected_name: str | None,
    store: TrustStore,
    now: dt.datetime | None = None,
) -> TlsInfo:
    """TlsInfo for a chain (leaf first, as the server sent it)."""
    now = now or dt.datetime.now(dt.UTC)
    if not chain_der:
        return TlsInfo(version=version, cipher=cipher, bits=bits, expected_name=expected_name,
                       verify_error="the server sent no certificate")
    try:
        certs = [x509.load_der_x509_certificate(der) for der in chain_der]
    except ValueError as exc:
        return TlsInfo(version=version, cipher=cipher, bits=bits, expected_name=expected_name,
                       verify_error=f"unreadable certificate: {_one_line(exc)}")
    leaf, intermediates = certs[0], certs[1:]
    names = _san(leaf)
    subject = _name(leaf.subject)
    if not names and subject:
        names = [subject]  # legacy certificates without SAN: show the CN at least
    not_after = leaf.not_valid_after_utc
    days_left = (not_after - now).days if not_after > now else -((now - not_after).days + 1)

    verify_error: str | None = None
    verified = False
    if not store.roots:
        verify_error = f"no trusted CA certificates loaded ({store.source})"
    else:
        # Verify the chain against a name the leaf itself carries, so that a host-name
        # mismatch (checked below on its own) does not hide whether the chain is trusted.
        own = names[0] if names else (expected_name or "invalid.invalid")
        if own.startswith("*."):
            own = "wildcard." + own[2:]
        try:
            # The CA side keeps the Web PKI rules (basic constraints, key usage); the leaf's
            # extensions are judged as leniently as OpenSSL does, since mail servers' own
            # certificates often break the stricter browser rules (a critical SAN, say)
            # while every MTA still accepts them.
            verifier = (PolicyBuilder().store(Store(list(store.roots))).time(now)
                        .extension_policies(ca_policy=ExtensionPolicy.webpki_defaults_ca(),
                                            ee_policy=_LENIENT_LEAF)
                        .build_server_verifier(_subject_for(own)))
            verifier.verify(leaf, intermediates)
            verified = True
        except (VerificationError, ValueError) as exc:
            verify_error = _one_line(exc)
    if not_after < now:
        verified = False
        verify_error = verify_error or "the certificate has expired"

    matches: bool | None = None
    if expected_name is not None:
        matches = name_matches(expected_name, names)
    return TlsInfo(
        version=version, cipher=cipher, bits=bits, subject=subject, names=tuple(names),
        issuer=_name(leaf.issuer), not_after=not_after.strftime("%Y-%m-%dT%H:%M:%SZ"),
        days_left=days_left, verified=verified, verify_error=verify_error,
        expected_name=expected_name, name_matches=matches,
    )


