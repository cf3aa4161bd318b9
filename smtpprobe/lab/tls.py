"""A throw-away certificate authority for lab servers, made with `cryptography`.

Keys are EC P-256: generating one takes well under a millisecond, so every test can have its
own CA. Certificates carry the extensions a strict verifier expects (key identifiers, basic
constraints, key usage, serverAuth), so that a verification failure in a test is always the
one the test provoked (expired, self-signed, wrong name) and never an accident of the lab.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["LabCA", "LabCert"]

# A little slack before "now", so that a client whose clock is a few seconds behind the
# machine's still accepts a certificate made a moment ago.
_BACKDATE = dt.timedelta(hours=1)


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _general_name(name: str) -> x509.GeneralName:
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


@dataclass(frozen=True)
class LabCert:
    """A server certificate and its key. `issuer` is None for a self-signed certificate."""

    names: tuple[str, ...]
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    issuer: LabCA | None

    @property
    def cert_pem(self) -> str:
        return _cert_pem(self.cert)

    @property
    def key_pem(self) -> str:
        return _key_pem(self.key)

    @property
    def not_before(self) -> dt.datetime:
        return self.cert.not_valid_before_utc

    @property
    def not_after(self) -> dt.datetime:
        return self.cert.not_valid_after_utc

    def write(self, directory: str | os.PathLike[str], *,
              stem: str = "server") -> tuple[Path, Path]:
        """Write `<stem>.crt` and `<stem>.key` (mode 0600) into `directory`; return both paths."""
        folder = Path(directory)
        cert_path = folder / f"{stem}.crt"
        key_path = folder / f"{stem}.key"
        cert_path.write_text(self.cert_pem, encoding="ascii")
        # Create the key file with its final mode, so it is never readable by others.
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(self.key_pem)
        return cert_path, key_path

    def server_context(self) -> ssl.SSLContext:
        """An SSLContext for the server side that presents this certificate."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        # The ssl module loads a certificate chain only from files: write them to a private
        # temporary directory that is gone again when this returns.
        with tempfile.TemporaryDirectory(prefix="smtpprobe-lab-") as tmp:
            cert_path, key_path = self.write(tmp)
            context.load_cert_chain(cert_path, key_path)
        return context


@dataclass(frozen=True)
class LabCA:
    """A certificate authority that lives as long as the object; nothing is stored."""

    name: str
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @classmethod
    def create(cls, name: str = "smtpprobe lab CA", *, days: int = 365) -> LabCA:
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
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .sign(key, hashes.SHA256())
        )
        return cls(name=name, cert=cert, key=key)

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
        self_signed: bool = False,
    ) -> LabCert:
        """A server certificate for DNS names and/or IP addresses (the first one is the CN).

        `days` is the remaining validity. `expired=True` makes a certificate whose validity
        ended yesterday; `self_signed=True` signs it with its own key instead of this CA's.
        """
        if not names:
            raise ValueError("a certificate needs at least one name")
        if days < 1:
            raise ValueError("days must be at least 1 (use expired=True for an expired one)")
        general = [_general_name(n) for n in names]
        key = _new_key()
        public = key.public_key()
        now = _now()
        if expired:
            not_before = now - dt.timedelta(days=days + 1)
            not_after = now - dt.timedelta(days=1)
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
        cert = (
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
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .add_extension(authority, critical=False)
            .sign(signing_key, hashes.SHA256())
        )
        return LabCert(
            names=tuple(names), cert=cert, key=key, issuer=None if self_signed else self
        )
