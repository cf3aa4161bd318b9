"""Lookups that carry out a finding's remedy (issue 12): when a reply names a cause DNS can
confirm, look it up instead of telling the user to.

- blocklisted: the address the reply names (or the probe's source address) in the zone the
  reply names ("blocked using zen.example", "listed in bl.example");
- sender_auth_failed: SPF of the sender domain for that address (or the record itself when no
  address is known) and the domain's DMARC record; DKIM needs a signature the probe never
  makes, so it is not looked up;
- client_identity_rejected, dynamic_ip_rejected: the PTR of the address, whether its names
  lead back to it (forward-confirmed reverse DNS) and whether the HELO name is one of them.

`check` (probe/check.py) and `explain --lookup` (cli/explain.py) call `confirm`; the report
shows the `Lookup` values it returns and never looks anything up itself. Every question goes
to the resolver the user chose; nothing is asked when a finding names nothing to check.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from smtpprobe.models import (
    Category,
    DomainCheck,
    Failure,
    Finding,
    HealthStatus,
    LocalText,
    Lookup,
)

if TYPE_CHECKING:
    from smtpprobe.core.certs import TrustStore
    from smtpprobe.core.classify import Classifier
    from smtpprobe.probe.domain import DomainContext

__all__ = ["LOOKUP_CATEGORIES", "addresses_in", "confirm", "zones_in"]

LOOKUP_CATEGORIES = frozenset({Category.BLOCKLISTED, Category.SENDER_AUTH_FAILED,
                               Category.CLIENT_IDENTITY_REJECTED,
                               Category.DYNAMIC_IP_REJECTED})

_IPV4 = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])")
_IPV6 = re.compile(r"\[(?:IPv6:)?([0-9A-Fa-f:.]+:[0-9A-Fa-f:.]*)\]")
_ZONE = r"([A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+)"
# How MTAs name the list: Postfix "blocked using zen.spamhaus.org", Exim "is listed in
# bl.example", others "listed at", "rejected by DNSBL x", "RBL x".
_ZONE_NAMED = re.compile(
    rf"(?:blocked\s+using|listed\s+(?:in|on|at|by)|(?:dnsbl|rbl|blocklist|blacklist)"
    rf"(?:\s+zone)?:?)\s+{_ZONE}", re.IGNORECASE)


def addresses_in(text: str) -> list[str]:
    """The IP addresses a reply names, in order, without repeats."""
    found: list[str] = []
    for match in [*_IPV4.finditer(text), *_IPV6.finditer(text)]:
        raw = match.group(1) if match.re is _IPV6 else match.group(0)
        try:
            address = str(ipaddress.ip_address(raw))
        except ValueError:
            continue
        if address not in found:
            found.append(address)
    return found


def zones_in(text: str) -> list[str]:
    """The blocklist zones a reply names ("blocked using zen.example" -> zen.example)."""
    found: list[str] = []
    for match in _ZONE_NAMED.finditer(text):
        zone = match.group(1).rstrip(".").lower()
        if not _IPV4.fullmatch(zone) and zone not in found:
            found.append(zone)
    return found


def _from_check(kind: str, check: DomainCheck) -> Lookup:
    return Lookup(kind, check.subject, check.status, check.summary, dict(check.details))


def _worst(checks: Sequence[DomainCheck]) -> DomainCheck:
    order = [HealthStatus.FAIL, HealthStatus.WARN, HealthStatus.UNKNOWN, HealthStatus.INFO,
             HealthStatus.OK]
    return min(checks, key=lambda c: order.index(c.status))


async def confirm(
    findings: Iterable[Finding],
    *,
    classifier: Classifier,
    trust: TrustStore,
    nameservers: Sequence[tuple[str, int]] | None,
    timeout: float,
    deadline: float,
    helo: str,
    mail_from: str = "",
    source_address: str | None = None,
) -> tuple[Lookup, ...]:
    """The lookups the findings call for (LOOKUP_CATEGORIES), each once. `deadline` is a loop
    time; a lookup it cuts short is `unknown`, never an exception."""
    from smtpprobe.net import dns  # lazily, as below: every check imports this module
    from smtpprobe.probe.domain import DomainContext  # lazily: check starts without it

    sender = mail_from.rpartition("@")[2] if "@" in mail_from else ""
    # RFC 7208 2.3/2.4: with the null reverse-path the HELO name is the checked identity.
    domain = sender or helo
    try:
        ascii_domain = dns.to_ascii_domain(domain)
    except ValueError:
        ascii_domain = ""
    ctx = DomainContext(domain=domain, ascii_domain=ascii_domain,
                        nameservers=tuple(nameservers) if nameservers is not None else None,
                        timeout=timeout, deadline=deadline, trust=trust,
                        classifier=classifier, helo=helo, source_address=source_address)
    done: dict[tuple[str, str], Lookup] = {}
    for finding in findings:
        if finding.category not in LOOKUP_CATEGORIES:
            continue
        named = addresses_in(finding.evidence)
        addresses = named or ([source_address] if source_address else [])
        for lookup in await _for(ctx, finding, addresses):
            done.setdefault((lookup.kind, lookup.subject), lookup)
    return tuple(done.values())


def _text(en: str, de: str) -> LocalText:
    return LocalText(en, de)


async def _for(ctx: DomainContext, finding: Finding, addresses: list[str]) -> list[Lookup]:
    from smtpprobe.probe import domain_policy
    if finding.category is Category.BLOCKLISTED:
        zones = zones_in(finding.evidence)
        if not zones or not addresses:
            missing = "no blocklist zone" if not zones else "no address"
            return [Lookup("dnsbl", addresses[0] if addresses else "-", HealthStatus.UNKNOWN,
                           _text(f"not looked up: the reply names {missing}",
                                 f"nicht nachgeschlagen: die Antwort nennt "
                                 f"{'keine Sperrliste' if not zones else 'keine Adresse'}"))]
        out = []
        for address in addresses[:2]:
            for zone in zones[:3]:
                result = await domain_policy.dnsbl_lookup(ctx, address, zone)
                out.append(_dnsbl(address, zone, result))
        return out
    if finding.category is Category.SENDER_AUTH_FAILED:
        if not ctx.ascii_domain:
            return [Lookup("spf", ctx.domain, HealthStatus.UNKNOWN,
                           _text("not looked up: no sender domain",
                                 "nicht nachgeschlagen: keine Absenderdomain"))]
        out = []
        if addresses:
            out.append(await _spf_for(ctx, addresses[0]))
        else:
            out.append(_from_check("spf", _worst(await domain_policy.check_spf(ctx))))
        out.append(_from_check("dmarc", _worst(await domain_policy.check_dmarc(ctx))))
        return out
    if not addresses:
        return [Lookup("ptr", "-", HealthStatus.UNKNOWN,
                       _text("not looked up: the probe's own address is not known "
                             "(give --source-address)",
                             "nicht nachgeschlagen: die eigene Adresse ist unbekannt "
                             "(--source-address angeben)"))]
    return [await _ptr(ctx, addresses[0])]


def _dnsbl(address: str, zone: str, result: dict[str, object]) -> Lookup:
    state = str(result["state"])
    subject = f"{address} in {zone}"
    reason = str(result.get("reason") or "")
    if state == "listed":
        codes = ", ".join(str(c) for c in result["codes"])  # type: ignore[attr-defined]
        tail = f": {reason}" if reason else ""
        return Lookup("dnsbl", subject, HealthStatus.FAIL,
                      _text(f"listed ({codes}){tail}", f"eingetragen ({codes}){tail}"), result)
    if state == "clear":
        return Lookup("dnsbl", subject, HealthStatus.OK,
                      _text("not listed now (the listing may have expired)",
                            "derzeit nicht eingetragen (der Eintrag ist vielleicht abgelaufen)"),
                      result)
    why_de = {"refused": "die Liste verweigert die Auskunft über diesen Resolver",
              "invalid": "die Antwort ist kein Sperrlisten-Code"}.get(state, "keine Antwort")
    return Lookup("dnsbl", subject, HealthStatus.UNKNOWN,
                  _text(f"no usable answer: {reason}", f"keine verwertbare Antwort: {why_de}"),
                  result)


async def _spf_for(ctx: DomainContext, address: str) -> Lookup:
    from smtpprobe.probe import domain_policy
    result, explanation, record = await domain_policy.spf_evaluate(ctx, address)
    status = {"pass": HealthStatus.OK, "fail": HealthStatus.FAIL,
              "softfail": HealthStatus.FAIL, "permerror": HealthStatus.FAIL,
              "temperror": HealthStatus.UNKNOWN}.get(result, HealthStatus.WARN)
    subject = f"{ctx.ascii_domain} for {address}"
    return Lookup("spf", subject, status,
                  _text(f"SPF {result} ({record or 'no record'})",
                        f"SPF {result} ({record or 'kein Eintrag'})"),
                  {"domain": ctx.ascii_domain, "address": address, "result": result,
                   "explanation": explanation, "record": record})


async def _ptr(ctx: DomainContext, address: str) -> Lookup:
    from smtpprobe.net import dns

    left = max(0.05, min(ctx.timeout, ctx.deadline - asyncio.get_running_loop().time()))
    answer = await dns.lookup(address, "PTR", nameservers=ctx.nameservers, timeout=left)
    if isinstance(answer, Failure):
        return Lookup("ptr", address, HealthStatus.UNKNOWN,
                      _text(f"PTR lookup failed: {answer.detail}",
                            "PTR-Abfrage ohne Antwort"),
                      {"address": address, "error": answer.detail})
    names = [r.rstrip(".").lower() for r in answer.records]
    if not names:
        return Lookup("ptr", address, HealthStatus.FAIL,
                      _text(f"{address} has no PTR record", f"{address} hat keinen PTR-Eintrag"),
                      {"address": address, "ptr": []})
    confirmed: list[str] = []
    rdtype = "AAAA" if ":" in address else "A"
    for name in names[:3]:
        forward = await dns.lookup(name, rdtype, nameservers=ctx.nameservers, timeout=left)
        if isinstance(forward, dns.Records) and any(
                ipaddress.ip_address(a) == ipaddress.ip_address(address)
                for a in forward.records):
            confirmed.append(name)
    helo = ctx.helo.rstrip(".").lower()
    details: dict[str, object] = {"address": address, "ptr": names, "confirmed": confirmed,
                                  "helo": ctx.helo, "helo_matches": helo in names}
    if not confirmed:
        return Lookup("ptr", address, HealthStatus.FAIL,
                      _text(f"PTR {', '.join(names)} does not lead back to {address}",
                            f"PTR {', '.join(names)} führt nicht zu {address} zurück"), details)
    if helo not in confirmed:
        return Lookup("ptr", address, HealthStatus.WARN,
                      _text(f"PTR {confirmed[0]} confirmed, but HELO {ctx.helo} differs",
                            f"PTR {confirmed[0]} bestätigt, aber HELO {ctx.helo} weicht ab"),
                      details)
    return Lookup("ptr", address, HealthStatus.OK,
                  _text(f"PTR {confirmed[0]} confirmed and matches HELO",
                        f"PTR {confirmed[0]} bestätigt, passt zu HELO"), details)
