"""Pure certificate checks: what a server's chain says, and whether it verifies.

The probe completes every TLS handshake without verification (an MX with a bad certificate is
common, and a finding, not a reason to stop), then checks the chain here with `cryptography`'s
X.509 verifier against the trust store in use, and the host name separately, so that a name
mismatch and an untrusted chain are reported as two facts.

Whatever the server sent, `inspect_chain` returns a `TlsInfo`: a certificate cryptography
cannot read (an X.509 v2 certificate, broken DER, a duplicated extension) is a verification
problem ("unreadable"), not an exception. When the chain does not verify, the reason is told
in the words an administrator knows (self-signed, unknown issuer, missing intermediate,
expired, not yet valid, wrong purpose), worked out from the certificates themselves rather
than from the verifier's message.
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
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID
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


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return None


def name_matches(expected: str, names: Sequence[str], addresses: Sequence[str] = ()) -> bool:
    """Whether a certificate with the DNS names `names` and the iPAddress entries `addresses`
    covers `expected` (RFC 6125).

    An IP address is covered only by an iPAddress entry of the same address (RFC 6125 1.7.2,
    RFC 5280 4.2.1.6): a DNS name that reads "192.0.2.1" does not count. A host name: exact
    match, or a wildcard in the left-most label only (6.4.3: "*.example.org" matches
    "mx.example.org", not "a.mx.example.org" nor "example.org")."""
    wanted = _ip(expected)
    if wanted is not None:
        return any(_ip(address) == wanted for address in addresses)
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

_SERVER_PURPOSES = frozenset({ExtendedKeyUsageOID.SERVER_AUTH,
                              ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE})
_PURPOSE_NAMES = {
    ExtendedKeyUsageOID.SERVER_AUTH: "serverAuth",
    ExtendedKeyUsageOID.CLIENT_AUTH: "clientAuth",
    ExtendedKeyUsageOID.CODE_SIGNING: "codeSigning",
    ExtendedKeyUsageOID.EMAIL_PROTECTION: "emailProtection",
    ExtendedKeyUsageOID.TIME_STAMPING: "timeStamping",
    ExtendedKeyUsageOID.OCSP_SIGNING: "OCSPSigning",
}


@dataclass(frozen=True, slots=True)
class _Leaf:
    """What the checks need of the server's certificate, read once: every lazily parsed
    part of a cryptography certificate (names, extensions, dates) is touched here, so that a
    malformed one fails here and nowhere else."""

    cert: x509.Certificate
    subject: str
    issuer: str
    dns: tuple[str, ...]
    ips: tuple[str, ...]
    has_san: bool
    not_before: dt.datetime
    not_after: dt.datetime
    purposes: tuple[x509.ObjectIdentifier, ...] | None  # None: no extended key usage
    names_issuer_url: bool  # AIA caIssuers: the issuer is an intermediate to fetch


def _read_leaf(cert: x509.Certificate) -> _Leaf:
    extensions = cert.extensions
    dns: tuple[str, ...] = ()
    ips: tuple[str, ...] = ()
    has_san = False
    purposes: tuple[x509.ObjectIdentifier, ...] | None = None
    names_issuer_url = False
    for ext in extensions:
        value = ext.value
        if isinstance(value, x509.SubjectAlternativeName):
            has_san = True
            dns = tuple(value.get_values_for_type(x509.DNSName))
            ips = tuple(str(ip) for ip in value.get_values_for_type(x509.IPAddress))
        elif isinstance(value, x509.ExtendedKeyUsage):
            purposes = tuple(value)
        elif isinstance(value, x509.AuthorityInformationAccess):
            names_issuer_url = any(d.access_method == AuthorityInformationAccessOID.CA_ISSUERS
                                   for d in value)
    return _Leaf(cert=cert, subject=_name(cert.subject), issuer=_name(cert.issuer), dns=dns,
                 ips=ips, has_san=has_san, not_before=cert.not_valid_before_utc,
                 not_after=cert.not_valid_after_utc, purposes=purposes,
                 names_issuer_url=names_issuer_url)


def _unreadable(exc: Exception) -> str:
    """Why a certificate cannot be read, in a short clause."""
    if isinstance(exc, x509.InvalidVersion):
        # The field holds the version minus one: 1 is v2.
        return f"X.509 version {exc.parsed_version + 1}, which is no longer in use"
    if isinstance(exc, x509.DuplicateExtension):
        return "an extension that appears twice"
    if isinstance(exc, x509.UnsupportedGeneralNameType):
        return "a name of an unknown type"
    text = " ".join(str(exc).split())
    return f"malformed DER ({text[:80]})" if text else "malformed DER"


def _date(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def _iso(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _signed_by(child: x509.Certificate, parent: x509.Certificate) -> bool:
    """`parent`'s name is `child`'s issuer and its key made `child`'s signature."""
    try:
        child.verify_directly_issued_by(parent)
    except Exception:  # noqa: BLE001 - any failure (name, key type, signature) means no
        return False
    return True


def _verifier_said(exc: Exception) -> str:
    """cryptography's reason, cut to a short clause (the last, most specific part)."""
    text = " ".join(str(exc).split())
    cut = text.find(" (encountered processing")
    if cut != -1:
        text = text[:cut]
    for prefix in ("validation failed: ",):
        if text.startswith(prefix):
            text = text[len(prefix):]
    if "candidates exhausted" in text:
        inner = text.rsplit(": ", 1)[-1]
        text = "" if "candidates exhausted" in inner else inner
    return text[:100]


def _diagnose_chain(leaf: _Leaf, intermediates: Sequence[x509.Certificate],
                    store: TrustStore, now: dt.datetime, said: str) -> tuple[str, str]:
    """(problem, message) for a chain that did not verify, from the certificates."""
    cert = leaf.cert
    for other in intermediates:
        if other.not_valid_after_utc < now:
            return "expired", (f"the intermediate certificate '{_name(other.subject)}' "
                               f"expired on {_date(other.not_valid_after_utc)}")
    if cert.issuer == cert.subject and _signed_by(cert, cert):
        return "self_signed", "self-signed: no certificate authority vouches for it"
    # Follow the chain the server sent as far as it goes.
    top = cert
    pool = list(intermediates)
    while True:
        parent = next((c for c in pool if c.subject == top.issuer and _signed_by(top, c)), None)
        if parent is None:
            break
        pool.remove(parent)
        top = parent
    if any(r.subject == top.issuer and _signed_by(top, r) for r in store.roots):
        # The chain reaches a trusted CA: another rule of the verifier failed.
        if not leaf.has_san:
            return "untrusted", ("the certificate has no subjectAltName; a name only in the "
                                 "subject's CN is no longer accepted")
        return "untrusted", ("the chain breaks a verification rule"
                             + (f" ({said})" if said else ""))
    top_name, top_issuer = _name(top.subject), _name(top.issuer)
    if top is not cert and top.issuer == top.subject:
        return "unknown_issuer", f"issued by '{top_name}', a CA that is not in the trust store"
    if any(r.subject == top.issuer for r in store.roots):
        return "unknown_issuer", (f"issued by a CA named '{top_issuer}', but not by the "
                                  f"trusted CA of that name (another key)")
    if top is cert:
        if leaf.names_issuer_url:
            return "missing_intermediate", (f"missing intermediate certificate: the server "
                                            f"does not send '{top_issuer}', which issued it")
        return "unknown_issuer", (f"issued by '{top_issuer}', which is not in the trust store "
                                  f"(an unknown CA, or an intermediate certificate the "
                                  f"server does not send)")
    return "missing_intermediate", (f"the chain the server sends ends at '{top_name}', whose "
                                    f"issuer '{top_issuer}' is neither sent nor trusted")


def _verify(leaf: _Leaf, intermediates: Sequence[x509.Certificate], store: TrustStore,
            now: dt.datetime) -> str | None:
    """None when the chain verifies, else what the verifier said (a short clause)."""
    # Verify the chain against a name the leaf itself carries, so that a host-name mismatch
    # (checked on its own) does not hide whether the chain is trusted.
    subject: DNSName | IPAddress
    if leaf.dns:
        own = leaf.dns[0]
        subject = DNSName("wildcard." + own[2:] if own.startswith("*.") else own)
    elif leaf.ips:
        address = _ip(leaf.ips[0])
        assert address is not None
        subject = IPAddress(address)
    else:
        subject = DNSName("invalid.invalid")
    try:
        # The CA side keeps the Web PKI rules (basic constraints, key usage); the leaf's
        # extensions are judged as leniently as OpenSSL does, since mail servers' own
        # certificates often break the stricter browser rules (a critical SAN, say) while
        # every MTA still accepts them. Its extended key usage is checked on its own.
        verifier = (PolicyBuilder().store(Store(list(store.roots))).time(now)
                    .extension_policies(ca_policy=ExtensionPolicy.webpki_defaults_ca(),
                                        ee_policy=_LENIENT_LEAF)
                    .build_server_verifier(subject))
        verifier.verify(leaf.cert, list(intermediates))
    except (VerificationError, ValueError, TypeError) as exc:
        return _verifier_said(exc) or "no path to a trusted CA"
    return None


def _purpose_problem(leaf: _Leaf) -> str | None:
    """RFC 5280 4.2.1.12: with an extended key usage, the certificate may be used only for
    the purposes it lists; a TLS server needs serverAuth (or anyExtendedKeyUsage)."""
    if leaf.purposes is None or _SERVER_PURPOSES.intersection(leaf.purposes):
        return None
    listed = ", ".join(_PURPOSE_NAMES.get(p, p.dotted_string) for p in leaf.purposes)
    return (f"wrong purpose: its extended key usage allows {listed or 'nothing'}, not "
            f"serverAuth (TLS server)")


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
    """TlsInfo for a chain (leaf first, as the server sent it). Never raises for what the
    server sent. `expected_name` is the host name, or the IP address the user gave."""
    now = now or dt.datetime.now(dt.UTC)
    if not chain_der:
        return TlsInfo(version=version, cipher=cipher, bits=bits, expected_name=expected_name,
                       verify_error="the server sent no certificate",
                       verify_problem="no_certificate")
    try:
        leaf = _read_leaf(x509.load_der_x509_certificate(chain_der[0]))
    except Exception as exc:  # noqa: BLE001 - server data: every parsing failure is a finding
        return TlsInfo(version=version, cipher=cipher, bits=bits, expected_name=expected_name,
                       verify_error=f"unreadable: {_unreadable(exc)}",
                       verify_problem="unreadable")
    names = [*leaf.dns, *leaf.ips]
    if not leaf.has_san and leaf.subject:
        names = [leaf.subject]  # legacy certificates without SAN: show the CN at least
    not_after = leaf.not_after
    days_left = (not_after - now).days if not_after > now else -((now - not_after).days + 1)

    problem: str | None = None
    verify_error: str | None = None
    intermediates: list[x509.Certificate] = []
    try:
        for der in chain_der[1:]:
            other = x509.load_der_x509_certificate(der)
            other.extensions  # noqa: B018 - parsed lazily: a broken one fails here
            intermediates.append(other)
    except Exception as exc:  # noqa: BLE001 - server data, as above
        problem = "unreadable"
        verify_error = f"unreadable: {_unreadable(exc)} in an intermediate certificate"
    if problem is None:
        if leaf.not_before > now:
            problem, verify_error = "not_yet_valid", f"not valid before {_date(leaf.not_before)}"
        elif not_after < now:
            problem, verify_error = "expired", f"expired on {_date(not_after)}"
        elif (purpose := _purpose_problem(leaf)) is not None:
            problem, verify_error = "wrong_purpose", purpose
        elif not store.roots:
            problem = "no_trust_store"
            verify_error = f"no trusted CA certificates loaded ({store.source})"
        else:
            said = _verify(leaf, intermediates, store, now)
            if said is not None:
                try:
                    problem, verify_error = _diagnose_chain(leaf, intermediates, store, now,
                                                            said)
                except Exception:  # noqa: BLE001 - a certificate too odd to compare
                    problem, verify_error = "untrusted", f"the chain does not verify ({said})"

    matches: bool | None = None
    if expected_name is not None:
        if leaf.has_san:
            matches = name_matches(expected_name, leaf.dns, leaf.ips)
        else:
            # RFC 6125 6.4.4: the CN counts only without SAN, and only for a host name.
            matches = _ip(expected_name) is None and name_matches(expected_name, names)
    return TlsInfo(
        version=version, cipher=cipher, bits=bits, subject=leaf.subject, names=tuple(names),
        issuer=leaf.issuer, not_after=_iso(not_after), days_left=days_left,
        verified=problem is None, verify_error=verify_error, expected_name=expected_name,
        name_matches=matches, ip_names=leaf.ips, not_before=_iso(leaf.not_before),
        verify_problem=problem,
    )
