"""What is wrong with a TLS connection that worked: pure judgements on a `TlsInfo`.

Kept apart from certs.py so that judging needs no `cryptography` import (start-up time): the
probe, the sweep and the relay test all ask the same questions of a handshake's facts.
"""

from __future__ import annotations

import ipaddress

from smtpprobe.models import FailureKind, TlsInfo

EXPIRING_DAYS = 14
OUTDATED_VERSIONS = frozenset({"SSLv2", "SSLv3", "TLSv1", "TLSv1.1"})  # RFC 8996
NAMES_SHOWN = 5


def is_outdated(tls: TlsInfo) -> bool:
    """TLS 1.1 or older: deprecated (RFC 8996), not fit to carry a password."""
    return tls.version in OUTDATED_VERSIONS


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return False
    return True


def covered_names(tls: TlsInfo) -> str:
    """The names a certificate covers, for a message: "a, b, c" (and how many more)."""
    shown = ", ".join(tls.names[:NAMES_SHOWN])
    more = len(tls.names) - NAMES_SHOWN
    if more > 0:
        shown += f" and {more} more"
    return shown


def name_problem(tls: TlsInfo, name: str) -> str:
    """Why the certificate does not cover `name`: the names it does cover, and for an IP
    address the RFC 6125 rule that a DNS entry of the same text does not count."""
    listed = covered_names(tls)
    if not listed:
        return f"the certificate names no host, not {name}"
    text = f"the certificate names {listed}, not {name}"
    if _is_ip(name):
        if name in tls.names and name not in tls.ip_names:
            text += (f" ({name} is written there as a DNS name; an IP address is covered only "
                     f"by an IP address entry, RFC 6125)")
        elif not tls.ip_names:
            text += " (it has no IP address entry, which an IP address needs, RFC 6125)"
    return text


def tls_problems(tls: TlsInfo, name: str, *,
                 submission: bool = False) -> list[tuple[FailureKind, str]]:
    """Observations (kind, detail) about the certificate and protocol a server showed.

    `submission`: the server is one that mail programs log in to (sweep, relay), so a name
    mismatch is about the name in the users' settings, not about an MX record."""
    found: list[tuple[FailureKind, str]] = []
    problem = tls.verify_problem
    if problem == "unreadable":
        found.append((FailureKind.CERT_UNREADABLE,
                      f"the certificate of {name} is {tls.verify_error}"))
    elif tls.days_left is not None and tls.days_left < 0:
        found.append((FailureKind.CERT_EXPIRED,
                      f"the certificate of {name} expired on {tls.not_after}"))
    elif problem == "not_yet_valid":
        found.append((FailureKind.CERT_NOT_YET_VALID,
                      f"the certificate of {name} is {tls.verify_error}"))
    elif problem == "wrong_purpose":
        found.append((FailureKind.CERT_WRONG_PURPOSE,
                      f"the certificate of {name} has the {tls.verify_error}"))
    elif not tls.verified:
        found.append((FailureKind.CERT_UNTRUSTED,
                      f"the certificate of {name} does not verify: {tls.verify_error}"))
    elif tls.days_left is not None and tls.days_left < EXPIRING_DAYS:
        found.append((FailureKind.CERT_EXPIRING,
                      f"the certificate of {name} expires in {tls.days_left} days"))
    if tls.name_matches is False:
        kind = (FailureKind.CERT_NAME_MISMATCH_SUBMISSION if submission
                else FailureKind.CERT_NAME_MISMATCH)
        found.append((kind, name_problem(tls, name)))
    if is_outdated(tls):
        found.append((FailureKind.TLS_OUTDATED, f"{name} negotiated {tls.version}"))
    return found
