"""The probing host as a receiving server sees it (issue 15): our source address's PTR and its
forward confirmation, whether the EHLO name resolves to that address, and whether the address
is on the blocklists a refusal named. Pure: the lookups are done in probe/selfcheck.py; this
module holds the value, the rules that read blocklist names out of a reply, and the
observations the facts amount to.

Why these three: receiving servers commonly refuse clients without reverse DNS, or whose
reverse name does not point back at them (forward-confirmed reverse DNS, RFC 8601 2.7.3's
"iprev"; Postfix reject_unknown_client_hostname), and ones whose HELO name does not resolve
(Postfix reject_unknown_helo_hostname, RFC 5321 4.1.4 for what HELO should name).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from smtpprobe.models import FailureKind


@dataclass(frozen=True, slots=True)
class Listing:
    zone: str
    listed: bool | None  # None: the zone could not be asked
    answer: str = ""  # the A record (127.0.0.x return code) or why it could not be asked
    reason: str = ""  # its TXT record, when there is one


@dataclass(frozen=True, slots=True)
class SelfCheck:
    address: str
    ptr: tuple[str, ...] = ()
    ptr_problem: str | None = None  # why no PTR could be read (None: read, maybe empty)
    confirmed: str | None = None  # the PTR name whose A/AAAA records hold the address
    helo: str | None = None
    helo_addresses: tuple[str, ...] = ()
    helo_problem: str | None = None
    listings: tuple[Listing, ...] = ()
    note: str | None = None  # what limits the result (NAT, a proxy)

    @property
    def helo_matches(self) -> bool | None:
        if self.helo is None or self.helo.startswith("["):
            return None
        return self.address in self.helo_addresses


# "blocked using zen.spamhaus.org", "listed in bl.spamcop.net", "found on dnsbl.example"
_ZONE = re.compile(r"""(?xi)
    (?:blocked\s+using|listed\s+(?:in|on|at|by)|found\s+(?:in|on)|rejected\s+by|\bRBL:?|
       \bDNSBL:?|\bblacklisted\s+(?:in|on|at|by)|\bblocklisted\s+(?:in|on|at|by))
    \s+((?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{1,62})""")


def blocklist_zones(texts: list[str] | tuple[str, ...]) -> list[str]:
    """The DNS blocklist zones that replies name, in order, each once."""
    found: list[str] = []
    for text in texts:
        for match in _ZONE.finditer(text):
            zone = match.group(1).lower().rstrip(".")
            if zone not in found:
                found.append(zone)
    return found


def dnsbl_query(address: str, zone: str) -> str:
    """The name to ask a DNSBL for (RFC 5782 2.1 for IPv4, 2.4 for IPv6: nibbles)."""
    ip = ipaddress.ip_address(address)
    if ip.version == 4:
        labels = list(reversed(str(ip).split(".")))
    else:
        labels = list(reversed(ip.exploded.replace(":", "")))
    return ".".join([*labels, zone])


def listed(answers: tuple[str, ...]) -> bool:
    """RFC 5782 2.1/2.3: a listing is an A record in 127.0.0.0/8 (127.0.0.1 itself is the
    zone's test entry; other answers are errors some zones return for blocked resolvers)."""
    for answer in answers:
        try:
            ip = ipaddress.ip_address(answer)
        except ValueError:
            continue
        if ip.version == 4 and ip in ipaddress.ip_network("127.0.0.0/8"):
            return True
    return False


def observations(check: SelfCheck) -> list[tuple[FailureKind, str]]:
    """What the facts say, as observations to classify (knowledge/probe/selfcheck.toml)."""
    out: list[tuple[FailureKind, str]] = []
    where = f"this host's address {check.address}"
    if check.note:
        where += f" ({check.note})"
    if check.ptr_problem is not None:
        out.append((FailureKind.SELF_NO_PTR, f"{where}: its reverse DNS (PTR) could not be "
                    f"read: {check.ptr_problem}"))
    elif not check.ptr:
        out.append((FailureKind.SELF_NO_PTR, f"{where} has no reverse DNS (PTR record)"))
    elif check.confirmed is None:
        out.append((FailureKind.SELF_PTR_MISMATCH, f"{where} has the PTR "
                    f"{', '.join(check.ptr)}, but that name does not resolve back to "
                    f"{check.address}"))
    if check.helo is not None and check.helo_matches is False:
        resolved = (f"it resolves to {', '.join(check.helo_addresses)}" if check.helo_addresses
                    else f"it does not resolve ({check.helo_problem or 'no address'})")
        out.append((FailureKind.SELF_HELO_MISMATCH, f"the EHLO name {check.helo} does not "
                    f"point at {check.address}: {resolved}"))
    for listing in check.listings:
        if listing.listed:
            why = f": {listing.reason}" if listing.reason else ""
            out.append((FailureKind.SELF_LISTED, f"{check.address} is listed on "
                        f"{listing.zone} ({listing.answer}){why}"))
    if not out:
        zones = ", ".join(listing.zone for listing in check.listings
                          if listing.listed is False)
        out.append((FailureKind.SELF_OK, f"{where}: PTR {', '.join(check.ptr)} confirmed"
                    + (f", EHLO name {check.helo} resolves to it" if check.helo_matches
                       else "")
                    + (f", not listed on {zones}" if zones else "")))
    return out
