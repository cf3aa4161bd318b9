"""A throw-away certificate authority for lab servers, made with `cryptography`.

Keys are EC P-256: generating one takes well under a millisecond, so every test can have its
own CA. Certificates carry the extensions a strict verifier expects (key identifiers, basic
constraints, key usage, serverAuth), so that a verification failure in a test is always the
one the test provoked (expired, not yet valid, self-signed, wrong name, wrong purpose, a
missing intermediate, an unreadable certificate) and never an accident of the lab.

A CA can make an intermediate CA (`LabCA.intermediate`); the certificates it issues carry the
intermediate in their `chain`, which a lab server sends after the leaf, as a correctly
configured server does (`LabCert.without_chain()` plays one that forgets it).
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import os
import ssl
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID

__all__ = ["LabCA", "LabCert"]

# A little slack before "now", so that a client whose clock is a few seconds behind the
# machine's still accepts a certificate made a moment ago.
_BACKDATE = dt.timedelta(hours=1)
SERVER_AUTH = (ExtendedKeyUsageOID.SERVER_AUTH,)


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _general_name(name: str, *, dns_only: bool = False) -> x509.GeneralName:
    if not dns_only:
        try:
            return x509.IPAddress(ipaddress.ip_address(name))
        except ValueError:
            pass
    if not name or any(c.isspace() for c in name):
        raise ValueError(f"not a host name or IP address: {name!r}")
    # Names go in as A-labels (RFC 5280 4.2.1.6); an internationalised name must be encoded
    # by the caller, as it would appear in DNS.
    return x509.DNSName(name.rstrip(".").lower())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")


def _cert_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def _der_pem(der: bytes) -> str:
    body = base64.encodebytes(der).decode("ascii")
    return f"-----BEGIN CERTIFICATE-----\n{body}-----END CERTIFICATE-----\n"


# --- a little DER, for certificates cryptography will not build ----------------------------


def _der_length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def _der(tag: int, body: bytes) -> bytes:
    return bytes([tag]) + _der_length(len(body)) + body


def _der_span(data: bytes, at: int) -> tuple[int, int]:
    """Where the body of the element at `at` starts and ends."""
    length = data[at + 1]
    start = at + 2
    if length & 0x80:
        count = length & 0x7F
        length = int.from_bytes(data[start:start + count], "big")
        start += count
    return start, start + length


def _as_version_2(cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> bytes:
    """`cert` as an X.509 v2 certificate, signed again with `key`: the version field of the
    TBSCertificate says 1 (v2) instead of 2 (v3). OpenSSL loads and serves such a certificate;
    cryptography refuses to parse it (it knows only v1 and v3)."""
    der = cert.public_bytes(serialization.Encoding.DER)
    body, _ = _der_span(der, 0)
    _, tbs_end = _der_span(der, body)
    tbs = bytearray(der[body:tbs_end])
    fields, _ = _der_span(bytes(tbs), 0)
    version = b"\xa0\x03\x02\x01\x02"  # [0] EXPLICIT INTEGER 2 (v3)
    if bytes(tbs[fields:fields + 5]) != version:
        raise ValueError("not a v3 certificate")
    tbs[fields + 4] = 1
    _, algorithm_end = _der_span(der, tbs_end)
    algorithm = der[tbs_end:algorithm_end]
    signature = key.sign(bytes(tbs), ec.ECDSA(hashes.SHA256()))
    return _der(0x30, bytes(tbs) + algorithm + _der(0x03, b"\x00" + signature))


@dataclass(frozen=True)
class LabCert:
    """A server certificate and its key. `issuer` is None for a self-signed certificate.

    `chain` holds the intermediate CA certificates a server sends after the leaf. `der`, when
    set, is what the server presents instead of `cert` (an X.509 v2 certificate that
    cryptography cannot read: `cert` is then the v3 certificate it was made from, with the
    same names, dates and key). `max_tls` makes a lab server's context speak no newer TLS
    version than this one (an outdated server, RFC 8996).
    """

    names: tuple[str, ...]
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    issuer: LabCA | None
    chain: tuple[x509.Certificate, ...] = ()
    der: bytes | None = None
    max_tls: ssl.TLSVersion | None = None

    @property
    def cert_pem(self) -> str:
        """The leaf as the server presents it."""
        return _der_pem(self.der) if self.der is not None else _cert_pem(self.cert)

    @property
    def chain_pem(self) -> str:
        """The leaf and then every intermediate, the order a server sends them."""
        return self.cert_pem + "".join(_cert_pem(c) for c in self.chain)

    @property
    def key_pem(self) -> str:
        return _key_pem(self.key)

    @property
    def not_before(self) -> dt.datetime:
        return self.cert.not_valid_before_utc

    @property
    def not_after(self) -> dt.datetime:
        return self.cert.not_valid_after_utc

    def without_chain(self) -> LabCert:
        """The same certificate on a server that does not send its intermediates."""
        return replace(self, chain=())

    def with_max_tls(self, version: ssl.TLSVersion) -> LabCert:
        """The same certificate on a server that speaks at most TLS `version`."""
        return replace(self, max_tls=version)

    def write(self, directory: str | os.PathLike[str], *,
              stem: str = "server") -> tuple[Path, Path]:
        """Write `<stem>.crt` (the leaf, then its chain) and `<stem>.key` (mode 0600) into
        `directory`; return both paths."""
        folder = Path(directory)
        cert_path = folder / f"{stem}.crt"
        key_path = folder / f"{stem}.key"
        cert_path.write_text(self.chain_pem, encoding="ascii")
        # Create the key file with its final mode, so it is never readable by others.
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(self.key_pem)
        return cert_path, key_path

    def server_context(self) -> ssl.SSLContext:
        """An SSLContext for the server side that presents this certificate and its chain."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        # The ssl module loads a certificate chain only from files: write them to a private
        # temporary directory that is gone again when this returns.
        with tempfile.TemporaryDirectory(prefix="smtpprobe-lab-") as tmp:
            cert_path, key_path = self.write(tmp)
            context.load_cert_chain(cert_path, key_path)
        if self.max_tls is not None:
            with warnings.catch_warnings():
                # TLS 1.0 and 1.1 are deprecated in the ssl module: this server plays one
                # that still speaks them, on purpose.
                warnings.simplefilter("ignore", DeprecationWarning)
                context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
                context.maximum_version = self.max_tls
            # OpenSSL 3 refuses TLS below 1.2 at its default security level.
            context.set_ciphers("DEFAULT:@SECLEVEL=0")
        return context


def _ca_key_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True, content_commitment=False, key_encipherment=False,
        data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
        encipher_only=False, decipher_only=False)


@dataclass(frozen=True)
class LabCA:
    """A certificate authority that lives as long as the object; nothing is stored.

    A root (`create`) or an intermediate (`intermediate`); `chain` is what a server sends
    after a leaf this CA issued: the intermediates up to the root, the root not included.
    `issuer_url` is where the certificates it issues say their issuer can be fetched (AIA
    caIssuers, RFC 5280 4.2.2.1), as public intermediates do; None for a root.
    """

    name: str
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    chain: tuple[x509.Certificate, ...] = ()
    issuer_url: str | None = None

    @classmethod
    def create(cls, name: str = "smtpprobe lab CA", *, days: int = 365,
               path_length: int | None = 1) -> LabCA:
        """A root CA. `path_length` (basic constraints) is how many intermediates may follow
        it: 1 lets it make one (`intermediate`)."""
        key = _new_key()
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "smtpprobe lab"),
                x509.NameAttribute(NameOID.COMMON_NAME, name),
            ]
        )
        now = _now()
        public = key.public_key()
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _BACKDATE)
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=path_length),
                           critical=True)
            .add_extension(_ca_key_usage(), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .sign(key, hashes.SHA256())
        )
        return cls(name=name, cert=cert, key=key)

    def intermediate(self, name: str = "smtpprobe lab intermediate CA", *,
                     days: int = 365) -> LabCA:
        """An intermediate CA signed by this one; its leaves carry it in their `chain`."""
        key = _new_key()
        public = key.public_key()
        subject = x509.Name([
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "smtpprobe lab"),
            x509.NameAttribute(NameOID.COMMON_NAME, name),
        ])
        now = _now()
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.cert.subject)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _BACKDATE)
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_ca_key_usage(), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        slug = "-".join(name.lower().split())
        return LabCA(name=name, cert=cert, key=key, chain=(cert, *self.chain),
                     issuer_url=f"http://{slug}.lab.test/ca.crt")

    @property
    def pem(self) -> str:
        """The CA certificate in PEM, for `ssl.create_default_context(cadata=...)`."""
        return _cert_pem(self.cert)

    def write_pem(self, path: str | os.PathLike[str]) -> Path:
        """Write the CA certificate to `path` (for `--cafile`); return the path."""
        target = Path(path)
        target.write_text(self.pem, encoding="ascii")
        return target

    def issue(
        self,
        *names: str,
        days: int = 30,
        expired: bool = False,
        not_yet_valid: bool = False,
        self_signed: bool = False,
        purposes: Sequence[x509.ObjectIdentifier] | None = SERVER_AUTH,
        dns_only: bool = False,
        version: int = 3,
    ) -> LabCert:
        """A server certificate for DNS names and/or IP addresses (the first one is the CN).

        `days` is the remaining validity. `expired=True` makes a certificate whose validity
        ended yesterday, `not_yet_valid=True` one whose validity starts tomorrow;
        `self_signed=True` signs it with its own key instead of this CA's. `purposes` is the
        extended key usage (None: no such extension, which allows every purpose);
        `dns_only=True` writes every name as a DNS name, an address too ("127.0.0.1" as a
        dNSName, which RFC 6125 does not count for the address). `version=2` gives an X.509
        v2 certificate, which OpenSSL serves and cryptography cannot read (`LabCert.der`).
        """
        if not names:
            raise ValueError("a certificate needs at least one name")
        if days < 1:
            raise ValueError("days must be at least 1 (use expired=True for an expired one)")
        if version not in (2, 3):
            raise ValueError("version must be 2 or 3")
        if expired and not_yet_valid:
            raise ValueError("a certificate cannot be both expired and not yet valid")
        general = [_general_name(n, dns_only=dns_only) for n in names]
        key = _new_key()
        public = key.public_key()
        now = _now()
        if expired:
            not_before = now - dt.timedelta(days=days + 1)
            not_after = now - dt.timedelta(days=1)
        elif not_yet_valid:
            not_before = now + dt.timedelta(days=1)
            not_after = now + dt.timedelta(days=days + 1)
        else:
            not_before = now - _BACKDATE
            not_after = now + dt.timedelta(days=days)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
        if self_signed:
            issuer_name, signing_key = subject, key
            authority = x509.AuthorityKeyIdentifier.from_issuer_public_key(public)
        else:
            issuer_name, signing_key = self.cert.subject, self.key
            authority = x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key())
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer_name)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.SubjectAlternativeName(general), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .add_extension(authority, critical=False)
        )
        if purposes is not None:
            builder = builder.add_extension(x509.ExtendedKeyUsage(list(purposes)),
                                            critical=False)
        if self.issuer_url is not None and not self_signed:
            builder = builder.add_extension(x509.AuthorityInformationAccess([
                x509.AccessDescription(AuthorityInformationAccessOID.CA_ISSUERS,
                                       x509.UniformResourceIdentifier(self.issuer_url))]),
                critical=False)
        cert = builder.sign(signing_key, hashes.SHA256())
        der = _as_version_2(cert, signing_key) if version == 2 else None
        return LabCert(
            names=tuple(names), cert=cert, key=key, issuer=None if self_signed else self,
            chain=() if self_signed else self.chain, der=der,
        )
