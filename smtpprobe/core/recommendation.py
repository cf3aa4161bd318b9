"""The settings a mail program should use, from the reports of a sweep's ports: pure.

Encrypted first, then a certificate that verifies, then implicit TLS over STARTTLS (RFC 8314
3.3); with credentials, only a port where the login worked. When no port works, the likeliest
cause explains why, with the remarks about ports that were not picked (a filtered 25).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

from smtpprobe.models import (
    AuthResult,
    Category,
    Finding,
    PortMode,
    PortReport,
    PortState,
    Reason,
    Recommendation,
)

# Over TLS: PLAIN first. It is the one mechanism every SASL back end can check (hashed
# password stores, LDAP, PAM), sends the password once, and TLS protects it (RFC 4616 4,
# RFC 8314). LOGIN is the same secret in two round trips, for old servers. CRAM-MD5 needs a
# password stored in a reversible form on the server and is often what triggers 534/432.
PREFERENCE_TLS: tuple[str, ...] = ("PLAIN", "LOGIN", "CRAM-MD5")
# In the clear (only with --allow-plaintext-auth): CRAM-MD5 first, the only one of the three
# that does not put the password itself on the wire (RFC 2195).
PREFERENCE_PLAIN: tuple[str, ...] = ("CRAM-MD5", "PLAIN", "LOGIN")


def mechanism_order(offered: Iterable[str], *, encrypted: bool) -> list[str]:
    """The mechanisms to try, best first, among those offered that smtpprobe can speak."""
    have = {m.upper() for m in offered}
    preference = PREFERENCE_TLS if encrypted else PREFERENCE_PLAIN
    return [m for m in preference if m in have]


_SECURITY_RANK = {PortMode.TLS: 2, PortMode.STARTTLS: 1, PortMode.PLAIN: 0}


def _rank(report: PortReport, order: int) -> tuple[int, int, int, int]:
    # Encrypted first; then a certificate that verifies (a mail program warns about or
    # refuses any other); then implicit TLS over STARTTLS (RFC 8314 3.3); then the order given.
    encrypted = report.tls is not None
    security = _SECURITY_RANK[report.mode] if encrypted else -1
    cert_ok = 1 if report.tls is not None and report.tls.verified and \
        report.tls.name_matches is not False else 0
    return (-int(encrypted), -cert_ok, -security, order)


def _security(report: PortReport) -> PortMode:
    if report.tls is None:
        return PortMode.PLAIN
    return PortMode.TLS if report.mode is PortMode.TLS else PortMode.STARTTLS


def _offered_after_tls(report: PortReport) -> tuple[str, ...]:
    caps = report.capabilities_after_tls
    return caps.auth_mechanisms if caps is not None else ()


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return None


def _covers_address(host: str, report: PortReport) -> bool:
    """False when `host` is an IP address and the port's certificate does not carry it as an
    iPAddress entry (RFC 6125; a DNS name that reads like the address does not count): a mail
    program told to use the bare address refuses that certificate, so the address is never
    recommended with it. True for a host name (its match is the login's business) and for a
    port without TLS."""
    wanted = _address(host)
    if wanted is None or report.tls is None:
        return True
    return any(_address(entry) == wanted for entry in report.tls.ip_names)


def _not_covered(host: str, report: PortReport) -> Reason:
    names = report.tls.names if report.tls is not None else ()
    values = (("port", str(report.port)), ("host", host))
    others = [n for n in names if n != host]
    if len(others) < len(names):
        # The address is there, but as a DNS name: RFC 6125 does not count it.
        return Reason("ip_as_dns_name", (*values, ("names", ", ".join(others[:5]) or "-")))
    if not names:
        return Reason("ip_not_covered_unnamed", values)
    return Reason("ip_not_covered", (*values, ("names", ", ".join(names[:5]))))


def _certificate_finding(report: PortReport) -> Finding | None:
    """Why an uncovered port was not recommended: its withheld login, or its certificate."""
    if report.auth.result is AuthResult.UNTRUSTED and report.auth.finding is not None:
        return report.auth.finding
    return next((f for f in report.findings if f.category is Category.CERTIFICATE_PROBLEM),
                report.auth.finding)


_CAUSE_ORDER = (AuthResult.FAILED, AuthResult.APP_PASSWORD, AuthResult.TLS_REQUIRED,
                AuthResult.METHOD_REJECTED, AuthResult.TEMPORARY, AuthResult.ERROR,
                AuthResult.UNTRUSTED, AuthResult.WITHHELD, AuthResult.NOT_OFFERED)


def recommend(host: str, ports: Sequence[PortReport], *, credentials: bool) -> Recommendation:
    """The settings to use, with reasons; or, when no port works, the likeliest cause.

    A server given by its IP address is recommended only on a port whose certificate covers
    that address; the other ports are named with the reason."""
    uncovered = [r for r in ports if not _covers_address(host, r)]
    ordered = sorted(((r, i) for i, r in enumerate(ports) if r not in uncovered),
                     key=lambda ri: _rank(*ri))
    if credentials:
        working = [r for r, _ in ordered if r.auth.result is AuthResult.OK]
        if working:
            best = working[0]
            reasons = [Reason("login_ok", (("mechanism", best.auth.mechanism or ""),
                                           ("port", str(best.port))))]
            reasons += _why_security(best)
            reasons += _notes(ports, best)
            reasons += [_not_covered(host, r) for r in uncovered]
            return Recommendation(usable=True, tested=True, host=host, port=best.port,
                                  mode=_security(best), mechanism=best.auth.mechanism,
                                  reasons=tuple(reasons))
    else:
        offering = [r for r, _ in ordered
                    if r.tls is not None and mechanism_order(_offered_after_tls(r),
                                                             encrypted=True)]
        if offering:
            best = offering[0]
            mechanism = mechanism_order(_offered_after_tls(best), encrypted=True)[0]
            reasons = [Reason("login_offered", (("mechanisms",
                                                 " ".join(_offered_after_tls(best))),))]
            reasons += _why_security(best)
            reasons += _notes(ports, best)
            reasons += [_not_covered(host, r) for r in uncovered]
            reasons.append(Reason("untested"))
            return Recommendation(usable=True, tested=False, host=host, port=best.port,
                                  mode=_security(best), mechanism=mechanism,
                                  reasons=tuple(reasons))

    # Nothing works: the most telling failure explains why. A port left out because its
    # certificate does not cover the address comes first: it is the one to fix.
    reasons = [_not_covered(host, r) for r in uncovered]
    finding: Finding | None = next(
        (f for f in (_certificate_finding(r) for r in uncovered) if f is not None), None)
    if uncovered:
        ports = [r for r in ports if r not in uncovered]
    open_ports = [r for r in ports if r.state is PortState.OPEN]
    if credentials and finding is None:
        for result in _CAUSE_ORDER:
            hit = next((r for r, _ in ordered if r.auth.result is result and r.auth.finding),
                       None)
            if hit is not None:
                finding = hit.auth.finding
                reasons.append(Reason(f"auth_{result.value}", (("port", str(hit.port)),)))
                break
    closed_ports = [r for r in ports if r.state is not PortState.OPEN]
    inbound_only = bool(open_ports) and bool(closed_ports) and finding is None and all(
        r.failure is None and not _offered_after_tls(r)
        and not (r.capabilities_before_tls and r.capabilities_before_tls.auth_mechanisms)
        for r in open_ports) and all(
        r.state in (PortState.REFUSED, PortState.FILTERED) for r in closed_ports)
    if inbound_only:
        # Port 25 (say) answers without a login and every other port is closed: a mail
        # server that receives mail (an MX), not one that mail programs send through. Its
        # refused ports are no fault to fix here.
        reasons.append(Reason("inbound_only", (
            ("host", host), ("open", ", ".join(str(r.port) for r in open_ports)),
            ("closed", ", ".join(str(r.port) for r in closed_ports)))))
    elif finding is None and open_ports:
        broken = next((r for r in open_ports if r.failure is not None), None)
        if broken is not None:
            finding = broken.failure
            reasons.append(Reason("port_failed", (("port", str(broken.port)),)))
        elif not any(r.tls is not None for r in open_ports):
            reasons.append(Reason("no_tls_anywhere"))
            finding = next((f for r in open_ports for f in r.findings
                            if f.category in (Category.TLS_UNAVAILABLE,
                                              Category.CREDENTIALS_WITHHELD)), None)
        else:
            reasons.append(Reason("no_auth_anywhere"))
            finding = next((f for r in open_ports for f in r.findings
                            if f.category is Category.AUTH_METHOD_REJECTED), None)
    if finding is None and not uncovered and not inbound_only:
        closed = closed_ports
        if closed and all(r.state is PortState.FILTERED for r in closed):
            reasons.append(Reason("all_filtered"))
        elif closed and all(r.state is PortState.REFUSED for r in closed):
            reasons.append(Reason("all_refused"))
        elif closed:
            reasons.append(Reason("none_reachable"))
        first = next((r.failure for r in closed if r.failure is not None), None)
        finding = first
    return Recommendation(usable=False, tested=False, host=host, reasons=tuple(reasons),
                          finding=finding)


def _why_security(best: PortReport) -> list[Reason]:
    reasons: list[Reason] = []
    security = _security(best)
    if security is PortMode.TLS:
        reasons.append(Reason("why_tls"))
    elif security is PortMode.STARTTLS:
        reasons.append(Reason("why_starttls"))
    else:
        reasons.append(Reason("why_plain"))
    tls = best.tls
    if tls is not None and (not tls.verified or tls.name_matches is False):
        reasons.append(Reason("cert_warning", (("error", tls.verify_error or
                                                "the names do not match"),)))
    return reasons


def _notes(ports: Sequence[PortReport], best: PortReport) -> list[Reason]:
    """Remarks about the other ports: why they were not picked."""
    out: list[Reason] = []
    for report in ports:
        if report is best:
            continue
        values = (("port", str(report.port)), ("chosen", str(best.port)))
        if report.state is PortState.FILTERED:
            # The classic case: a home, mobile or cloud network that blocks outgoing port 25
            # (RFC 5068 3); submission on 587 or 465 is the way around it (RFC 6409).
            out.append(Reason("port25_filtered" if report.port == 25 else "port_filtered",
                              values))
        elif report.state is PortState.REFUSED:
            out.append(Reason("port_refused", values))
    return out
