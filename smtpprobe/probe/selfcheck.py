"""The self-check of the probing host (core/selfcheck.py): the lookups, with net/dns.lookup.

All questions go to the resolver given (`nameservers`), at once; each is bounded by `timeout`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Sequence

from smtpprobe.core.selfcheck import Listing, SelfCheck, dnsbl_query, listed
from smtpprobe.net.dns import Records, lookup


def source_address(toward: str, *, family: int | None = None) -> str | None:
    """The local address this machine sends from toward `toward` (an IP address): a UDP
    socket is connected (no packet leaves) and asked for its own address."""
    version = ipaddress.ip_address(toward).version if family is None else family
    kind = socket.AF_INET6 if version == 6 else socket.AF_INET
    try:
        with socket.socket(kind, socket.SOCK_DGRAM) as sock:
            sock.connect((toward, 25))
            return str(sock.getsockname()[0])
    except OSError:
        return None


async def _addresses(name: str, nameservers: Sequence[tuple[str, int]] | None,
                     timeout: float) -> tuple[tuple[str, ...], str | None]:
    answers = await asyncio.gather(*(lookup(name, rdtype, nameservers=nameservers,
                                            timeout=timeout) for rdtype in ("A", "AAAA")))
    found: list[str] = []
    problem: str | None = None
    for answer in answers:
        if isinstance(answer, Records):
            if not answer.exists:
                problem = f"{name} does not exist (NXDOMAIN)"
            found += answer.records
        else:
            problem = answer.detail
    return tuple(found), (None if found else problem)


async def _listing(address: str, zone: str, nameservers: Sequence[tuple[str, int]] | None,
                   timeout: float) -> Listing:
    name = dnsbl_query(address, zone)
    answer, text = await asyncio.gather(lookup(name, "A", nameservers=nameservers,
                                               timeout=timeout),
                                        lookup(name, "TXT", nameservers=nameservers,
                                               timeout=timeout))
    if not isinstance(answer, Records):
        return Listing(zone, None, answer.detail)
    reason = " ".join(text.records)[:200] if isinstance(text, Records) else ""
    if listed(answer.records):
        return Listing(zone, True, ", ".join(answer.records), reason)
    return Listing(zone, False, "not listed")


async def self_check(address: str, *, helo: str | None, zones: Sequence[str] = (),
                     nameservers: Sequence[tuple[str, int]] | None = None,
                     timeout: float = 5.0, note: str | None = None) -> SelfCheck:
    """The facts about `address` (and `helo`) that receiving servers look at."""
    ptr_task = lookup(address, "PTR", nameservers=nameservers, timeout=timeout)
    helo_task = (_addresses(helo, nameservers, timeout)
                 if helo is not None and not helo.startswith("[") else None)
    listings = asyncio.gather(*(_listing(address, zone, nameservers, timeout)
                                for zone in zones))
    ptr_answer = await ptr_task
    helo_found = await helo_task if helo_task is not None else ((), None)
    found_listings = tuple(await listings)
    ptr: tuple[str, ...] = ()
    ptr_problem: str | None = None
    confirmed: str | None = None
    if isinstance(ptr_answer, Records):
        ptr = tuple(name.rstrip(".") for name in ptr_answer.records)
        for name in ptr:
            forward, _ = await _addresses(name, nameservers, timeout)
            if address in forward:
                confirmed = name
                break
    else:
        ptr_problem = ptr_answer.detail
    return SelfCheck(address=address, ptr=ptr, ptr_problem=ptr_problem, confirmed=confirmed,
                     helo=helo, helo_addresses=helo_found[0], helo_problem=helo_found[1],
                     listings=found_listings, note=note)
