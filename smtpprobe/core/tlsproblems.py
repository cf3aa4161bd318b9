"""What is wrong with a TLS connection that worked: pure judgements on a `TlsInfo`.

Kept apart from certs.py so that judging needs no `cryptography` import (start-up time): the
probe, the sweep and the relay test all ask the same questions of a handshake's facts.
"""

from __future__ import annotations

from smtpprobe.models import FailureKind, TlsInfo

EXPIRING_DAYS = 14
OUTDATED_VERSIONS = frozenset({"SSLv2", "SSLv3", "TLSv1", "TLSv1.1"})  # RFC 8996


def tls_problems(tls: TlsInfo, name: str) -> list[tuple[FailureKind, str]]:
    """Observations (kind, detail) about the certificate and protocol a server showed."""
    found: list[tuple[FailureKind, str]] = []
    if tls.days_left is not None and tls.days_left < 0:
        found.append((FailureKind.CERT_EXPIRED,
                      f"the certificate of {name} expired on {tls.not_after}"))
    elif not tls.verified:
        found.append((FailureKind.CERT_UNTRUSTED,
                      f"the certificate of {name} does not verify: {tls.verify_error}"))
    elif tls.days_left is not None and tls.days_left < EXPIRING_DAYS:
        found.append((FailureKind.CERT_EXPIRING,
                      f"the certificate of {name} expires in {tls.days_left} days"))
    if tls.name_matches is False:
        found.append((FailureKind.CERT_NAME_MISMATCH,
                      f"the certificate names {', '.join(tls.names[:5]) or 'no host'}, "
                      f"not {name}"))
    if tls.version in OUTDATED_VERSIONS:
        found.append((FailureKind.TLS_OUTDATED, f"{name} negotiated {tls.version}"))
    return found
