"""`smtpprobe domain`: the health of a mail domain, check by check.

The checks are named async functions in one table (`CHECKS`, sslyze's scan commands in
spirit) and one runner, `run_domain`. Every check gets the same `DomainContext` and returns
`DomainCheck` values; what it could not find out is a status (`unknown`, with why), never an
exception.

The runner first makes a survey (`Survey`): the MX records, the addresses of every MX host,
and per address (at most MX_LOOKUP_LIMIT of them) its PTR names with their forward
addresses and one SMTP conversation: greeting, EHLO, STARTTLS, EHLO, MAIL FROM:<> and RCPT
TO:<postmaster@domain>, QUIT, never DATA. The checks read the survey; `tls_version` and
`open_relay` open conversations of their own. When the domain has no mail host to talk to,
the address checks are marked not checked once, by the runner.
"""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
import time
import warnings
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import TYPE_CHECKING

from smtpprobe.core.address import is_ip, of_family
from smtpprobe.models import (
    Category,
    DomainCheck,
    DomainReport,
    Failure,
    FailureKind,
    Finding,
    HealthStatus,
    LocalText,
    MxHost,
    MxResult,
    Proxy,
    Stage,
    Step,
    TlsInfo,
)
from smtpprobe.net import dns
from smtpprobe.net.session import Endpoint, Session, client_tls_context
from smtpprobe.probe.dialog import Tls, open_dialog

if TYPE_CHECKING:
    from smtpprobe.core.certs import TrustStore
    from smtpprobe.core.classify import Classifier

__all__ = ["CHECKS", "CheckId", "DomainContext", "Survey", "Visit", "check_table", "run_domain"]

# Addresses talked to at most (in MX preference order): net.dns's bound on MX hosts looked
# up, so a domain with many MX hosts still gets every one of its first ten addresses checked.
ADDRESS_LIMIT = dns.MX_LOOKUP_LIMIT
PTR_NAMES_LIMIT = 3  # PTR names of one address whose forward addresses are looked up
_OK, _WARN, _FAIL, _INFO, _UNKNOWN = (HealthStatus.OK, HealthStatus.WARN, HealthStatus.FAIL,
                                      HealthStatus.INFO, HealthStatus.UNKNOWN)


# -- what the survey found --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MxRecord:
    preference: int
    target: str  # ASCII, no final dot; "" for the null MX ("0 .")


@dataclass(frozen=True, slots=True)
class HostFacts:
    """One MX host (or the domain itself for an implicit MX) and its addresses."""

    name: str
    preference: int
    implicit: bool = False
    ip_literal: bool = False  # the MX target is an address written as a name
    v6: tuple[str, ...] = ()
    v4: tuple[str, ...] = ()
    cname: str | None = None  # where an alias led
    failure: Failure | None = None  # the lookup itself failed (timeout, SERVFAIL ...)
    usable: tuple[str, ...] = ()  # after net.dns's screening
    notes: tuple[Failure, ...] = ()  # what the screening left out or let through

    @property
    def addresses(self) -> tuple[str, ...]:
        return (*self.v6, *self.v4)


@dataclass(frozen=True, slots=True)
class Visit:
    """One MX address: its reverse DNS and the one conversation of the survey."""

    host: str
    address: str
    ptr: dns.Records | Failure
    forward: Mapping[str, tuple[str, ...] | Failure]  # PTR name -> its A or AAAA addresses
    steps: tuple[Step, ...] = ()  # classified, in order
    greeted: bool = False
    tls: Tls = Tls.NOT_WANTED
    tls_info: TlsInfo | None = None
    chain: tuple[bytes, ...] = ()
    postmaster: Step | None = None  # the RCPT step, or the step that stopped before it

    @property
    def subject(self) -> str:
        return f"{self.host} [{self.address}]"

    @property
    def ptr_names(self) -> tuple[str, ...]:
        if isinstance(self.ptr, Failure):
            return ()
        return tuple(name.rstrip(".").lower() for name in self.ptr.records)


@dataclass(frozen=True, slots=True)
class Survey:
    mx: dns.Records | Failure
    records: tuple[MxRecord, ...] = ()
    own: HostFacts | None = None  # the domain's own A/AAAA (no MX, or a null MX)
    hosts: tuple[HostFacts, ...] = ()  # MX hosts in preference order (or the implicit one)
    visits: tuple[Visit, ...] = ()
    not_visited: tuple[str, ...] = ()  # addresses beyond ADDRESS_LIMIT

    @property
    def null_mx(self) -> bool:
        return any(r.target == "" for r in self.records)

    @property
    def real_records(self) -> tuple[MxRecord, ...]:
        return tuple(r for r in self.records if r.target != "")


@dataclass(frozen=True, slots=True)
class DomainContext:
    """Everything a domain check may use; one value for the whole run.

    `deadline` is an absolute `loop.time()`; every check ends by it. `presented` holds the
    DER chain each MX host presented after STARTTLS (host name -> leaf first), filled from the
    survey's conversations before the checks run; `mx` is the MX lookup as `MxResult` (the
    hosts with their usable addresses) and `survey` everything else the survey found (None
    until it ran).
    """

    domain: str  # as given
    ascii_domain: str  # IDNA form
    nameservers: tuple[tuple[str, int], ...] | None  # None: this machine's resolver
    timeout: float  # per DNS query or SMTP step
    deadline: float  # absolute loop.time() by which the run ends
    trust: TrustStore
    classifier: Classifier
    helo: str = "localhost"
    source_address: str | None = None
    allow_private: bool = False
    ips: tuple[str, ...] = ()  # --ip: the addresses mail is sent from (SPF, DNSBL)
    selectors: tuple[str, ...] = ()  # --selector: DKIM selectors
    dnsbl_zones: tuple[str, ...] = ()  # --dnsbl: blocklist zones
    open_relay: bool = False  # --open-relay
    presented: Mapping[str, tuple[bytes, ...]] = field(default_factory=dict)
    mx: MxResult | None = None
    port: int = 25
    survey: Survey | None = None
    proxy: Proxy | None = None  # --proxy (issue 15): the SMTP conversations go through it
    family: int | None = None  # -4 / -6: only addresses of that IP version are visited

    def left(self) -> float:
        """Seconds until the deadline (0 when it has passed)."""
        return max(0.0, self.deadline - asyncio.get_running_loop().time())

    def budget(self) -> float:
        """The time one DNS query or HTTPS fetch may take now (a floor of 50 ms)."""
        return max(0.05, min(self.timeout, self.left()))

    async def lookup(self, name: str, rdtype: str, *,
                     dnssec: bool = False) -> dns.Records | Failure:
        """One DNS question within what is left of the run; a deadline failure when nothing
        is (every check, here and in domain_policy, asks through this)."""
        if self.left() <= 0.05:
            return Failure(FailureKind.DEADLINE, f"{name} {rdtype}: the overall deadline ran "
                           "out before the lookup")
        return await dns.lookup(name, rdtype, nameservers=self.nameservers,
                                timeout=self.budget(), dnssec=dnssec)

    def session(self, host: str, address: str, *,
                tls_context: ssl.SSLContext | None = None) -> Session:
        return Session(Endpoint(address, self.port, host), helo=self.helo, timeout=self.timeout,
                       deadline=self.deadline, source_address=self.source_address,
                       trust=self.trust, tls_context=tls_context, proxy=self.proxy)

    def observe(self, stage: Stage, kind: FailureKind, detail: str) -> Finding:
        return self.classifier.observe(stage, kind, detail)


CheckFn = Callable[[DomainContext], Awaitable[list[DomainCheck]]]


def _text(en: str, de: str) -> LocalText:
    return LocalText(en=en, de=de)


def _check(check_id: str, subject: str, status: HealthStatus, summary: LocalText,
           finding: Finding | None = None, /, **details: object) -> DomainCheck:
    return DomainCheck(check_id, subject, status, summary, finding, details)


def _failure_status(failure: Failure) -> HealthStatus:
    """A lookup or step that got no answer: the thing could not be checked."""
    return _FAIL if failure.kind in (FailureKind.DNS_NXDOMAIN, FailureKind.REFUSED) else _UNKNOWN


def _said(step: Step) -> str:
    if step.reply is not None:
        return step.reply.render().replace("\n", " | ")
    return step.failure.detail if step.failure is not None else ""


# -- the survey -------------------------------------------------------------------------------


def _parse_mx(text: str) -> MxRecord | None:
    pref, _, target = text.strip().partition(" ")
    try:
        preference = int(pref)
    except ValueError:
        return None
    target = target.strip().rstrip(".").lower()
    return MxRecord(preference, target)


async def _host_facts(ctx: DomainContext, name: str, preference: int, *,
                      implicit: bool = False) -> HostFacts:
    if is_ip(name.strip("[]")):
        return HostFacts(name, preference, ip_literal=True)
    aaaa, a = await asyncio.gather(ctx.lookup(name, "AAAA"), ctx.lookup(name, "A"))
    v6: tuple[str, ...] = ()
    v4: tuple[str, ...] = ()
    cname: str | None = None
    failure: Failure | None = None
    for answer, family in ((aaaa, 6), (a, 4)):
        if isinstance(answer, Failure):
            failure = failure or answer
            continue
        if answer.canonical_name.lower() != answer.name.lower():
            cname = answer.canonical_name
        found = tuple(str(ipaddress.ip_address(r)) for r in answer.records if is_ip(r))
        if family == 6:
            v6 = found
        else:
            v4 = found
    usable, notes = dns.screen(name, (*v6, *v4), allow_private=ctx.allow_private)
    if v6 or v4:
        failure = None  # one family answered: the other one's trouble is not the host's
    return HostFacts(name, preference, implicit, False, v6, v4, cname, failure, usable, notes)


async def _forward(ctx: DomainContext, name: str, family: int) -> tuple[str, ...] | Failure:
    answer = await ctx.lookup(name, "AAAA" if family == 6 else "A")
    if isinstance(answer, Failure):
        return answer
    return tuple(str(ipaddress.ip_address(r)) for r in answer.records if is_ip(r))


async def _visit(ctx: DomainContext, host: str, address: str) -> Visit:
    ptr_task = asyncio.ensure_future(ctx.lookup(address, "PTR"))
    conversation = asyncio.ensure_future(_converse(ctx, host, address))
    try:
        ptr = await ptr_task
        forward: dict[str, tuple[str, ...] | Failure] = {}
        if not isinstance(ptr, Failure):
            names = [n.rstrip(".").lower() for n in ptr.records][:PTR_NAMES_LIMIT]
            family = ipaddress.ip_address(address).version
            answers = await asyncio.gather(*(_forward(ctx, n, family) for n in names))
            forward = dict(zip(names, answers, strict=True))
        visit = await conversation
    finally:
        for task in (ptr_task, conversation):
            task.cancel()
    return replace(visit, ptr=ptr, forward=forward)


async def _converse(ctx: DomainContext, host: str, address: str) -> Visit:
    """The survey's conversation: the opening, then MAIL FROM:<> and RCPT TO:<postmaster@>.

    The null sender is what bounces use; RFC 5321 4.5.5 says a server must accept it, and
    4.5.1 that it must take mail for postmaster."""
    session = ctx.session(host, address)
    classify = ctx.classifier.step
    try:
        opening = await open_dialog(session, starttls=True)
        steps = [classify(step) for step in opening.steps]
        postmaster: Step | None = None
        if opening.ready:
            mail = classify(await session.mail(""))
            steps.append(mail)
            postmaster = mail
            if mail.replied(250):
                postmaster = classify(await session.rcpt(f"postmaster@{ctx.ascii_domain}"))
                steps.append(postmaster)
        elif steps:
            postmaster = steps[-1]
        await session.quit()
    finally:
        session.close()
    empty: Mapping[str, tuple[str, ...] | Failure] = {}
    return Visit(host, address, Failure(FailureKind.DEADLINE, "not looked up"), empty,
                 tuple(steps), opening.greeted, opening.tls, session.tls, session.peer_chain,
                 postmaster)


async def survey(ctx: DomainContext) -> Survey:
    """The MX records, the hosts' addresses, and one visit per address (ADDRESS_LIMIT)."""
    domain = ctx.ascii_domain
    mx = await ctx.lookup(domain, "MX")
    if isinstance(mx, Failure) or not mx.exists:
        return Survey(mx)
    records = tuple(r for r in (_parse_mx(text) for text in mx.records) if r is not None)
    records = tuple(sorted(records, key=lambda r: (r.preference, r.target)))
    real = [r for r in records if r.target != ""]
    own: HostFacts | None = None
    if not real:
        # RFC 5321 5.1: no MX -> the domain's own address (implicit MX). With a null MX
        # the address is looked up only to tell the two RFC 7505 cases apart.
        own = await _host_facts(ctx, domain, 0, implicit=True)
        if records:  # a null MX alone: nothing to talk to
            return Survey(mx, records, own)
        hosts: tuple[HostFacts, ...] = (own,)
    else:
        seen: dict[str, int] = {}
        for record in real:
            seen.setdefault(record.target, record.preference)
        targets = list(seen.items())[:dns.MX_LOOKUP_LIMIT]
        hosts = tuple(await asyncio.gather(*(_host_facts(ctx, name, pref)
                                             for name, pref in targets)))
    pairs = [(host.name, address) for host in hosts
             for address in of_family(host.usable, ctx.family)]
    visits = await asyncio.gather(*(_visit(ctx, h, a) for h, a in pairs[:ADDRESS_LIMIT]))
    return Survey(mx, records, own, hosts, tuple(visits),
                  tuple(f"{h} [{a}]" for h, a in pairs[ADDRESS_LIMIT:]))


def mx_result(ctx: DomainContext, found: Survey) -> MxResult:
    """The survey's hosts as the `MxResult` the rest of smtpprobe knows."""
    if isinstance(found.mx, Failure):
        return MxResult(ctx.ascii_domain, failure=found.mx)
    hosts = tuple(MxHost(h.name, h.preference, h.usable, h.implicit,
                         None if h.usable else (h.failure or next(iter(h.notes), None)))
                  for h in found.hosts)
    return MxResult(ctx.ascii_domain, hosts)


# -- the checks -------------------------------------------------------------------------------


def _survey_of(ctx: DomainContext) -> Survey:
    assert ctx.survey is not None, "the runner makes the survey before the checks"
    return ctx.survey


async def check_mx(ctx: DomainContext) -> list[DomainCheck]:
    """MX set sanity: none, implicit, null MX (RFC 7505), IP, alias, duplicates."""
    found = _survey_of(ctx)
    domain = ctx.ascii_domain
    if isinstance(found.mx, Failure):
        failure = found.mx
        return [_check("mx", domain, _failure_status(failure),
                       _text("the MX lookup got no answer", "die MX-Abfrage blieb ohne Antwort"),
                       ctx.classifier.failure(Stage.DNS, failure), error=failure.detail)]
    if not found.mx.exists:
        return [_check("mx", domain, _FAIL, _text("the domain does not exist (NXDOMAIN)",
                                                  "die Domain existiert nicht (NXDOMAIN)"),
                       ctx.observe(Stage.DNS, FailureKind.DNS_NXDOMAIN,
                                   f"{domain} MX: NXDOMAIN, {domain} does not exist"))]
    records = [{"preference": r.preference, "host": r.target or "."} for r in found.records]
    real = found.real_records
    own = found.own
    own_addresses = list(own.addresses) if own is not None else []
    if found.null_mx and not real:
        detail = f"{domain} publishes a null MX (RFC 7505): it accepts no mail"
        if own_addresses:
            detail += f"; its own addresses ({', '.join(own_addresses)}) are not used for mail"
        return [_check("mx", domain, _INFO,
                       _text("null MX: the domain takes no mail (RFC 7505)",
                             "Null-MX: die Domain nimmt keine Mail an (RFC 7505)"),
                       ctx.observe(Stage.DNS, FailureKind.DOMAIN_NULL_MX, detail),
                       records=records, null_mx=True, addresses=own_addresses)]
    if found.null_mx:
        detail = (f"{domain} mixes a null MX with {len(real)} other MX record(s); RFC 7505 3 "
                  "forbids that and senders ignore the null MX")
        return [_check("mx", domain, _FAIL,
                       _text("null MX beside other MX records",
                             "Null-MX neben anderen MX-Einträgen"),
                       ctx.observe(Stage.DNS, FailureKind.DOMAIN_NULL_MX_MIXED, detail),
                       records=records, null_mx=True)]
    if not real:
        assert own is not None
        if own.failure is not None and not own_addresses:
            return [_check("mx", domain, _failure_status(own.failure),
                           _text("no MX, and the address lookup got no answer",
                                 "kein MX, und die Adressabfrage blieb ohne Antwort"),
                           ctx.classifier.failure(Stage.DNS, own.failure), records=records)]
        if not own_addresses:
            detail = f"{domain} has no MX record and no A or AAAA record: it cannot take mail"
            return [_check("mx", domain, _FAIL,
                           _text("no MX and no address: no mail host",
                                 "kein MX und keine Adresse: kein Mailhost"),
                           ctx.observe(Stage.DNS, FailureKind.DOMAIN_NO_MAIL_HOST, detail),
                           records=records)]
        detail = (f"{domain} has no MX record; mail goes to its own address "
                  f"({', '.join(own_addresses)}) (implicit MX, RFC 5321 5.1)")
        return [_check("mx", domain, _WARN,
                       _text("no MX record: implicit MX on the domain's own address",
                             "kein MX-Eintrag: implizites MX auf der Adresse der Domain"),
                       ctx.observe(Stage.DNS, FailureKind.DOMAIN_NO_MX, detail),
                       records=records, implicit=True, addresses=own_addresses)]
    out: list[DomainCheck] = []
    listing = ", ".join(f"{r.preference} {r.target}" for r in real)
    by_host: dict[str, list[int]] = {}
    by_pref: dict[int, list[str]] = {}
    for record in real:
        by_host.setdefault(record.target, []).append(record.preference)
        by_pref.setdefault(record.preference, []).append(record.target)
    for host in found.hosts:
        if host.ip_literal:
            detail = f"{domain} MX {host.preference} names the address {host.name} instead of a " \
                     "host name"
            out.append(_check("mx", host.name, _FAIL,
                              _text("the MX names an IP address, not a host",
                                    "der MX nennt eine IP-Adresse statt eines Hosts"),
                              ctx.observe(Stage.DNS, FailureKind.MX_IS_IP, detail),
                              preference=host.preference))
        elif host.cname is not None:
            detail = f"{domain} MX {host.preference} {host.name} is a CNAME for {host.cname}"
            out.append(_check("mx", host.name, _WARN,
                              _text(f"the MX is an alias (CNAME) for {host.cname}",
                                    f"der MX ist ein Alias (CNAME) für {host.cname}"),
                              ctx.observe(Stage.DNS, FailureKind.MX_IS_CNAME, detail),
                              preference=host.preference, cname=host.cname))
    for name, prefs in by_host.items():
        if len(prefs) > 1:
            detail = (f"{domain} lists {name} in {len(prefs)} MX records (preferences "
                      f"{', '.join(map(str, prefs))}); only the best one counts")
            out.append(_check("mx", name, _WARN,
                              _text(f"the same host in {len(prefs)} MX records",
                                    f"derselbe Host in {len(prefs)} MX-Einträgen"),
                              ctx.observe(Stage.DNS, FailureKind.DOMAIN_MX_DUPLICATE, detail),
                              preferences=prefs))
    shared = {pref: names for pref, names in by_pref.items() if len(set(names)) > 1}
    if out:
        return out
    if shared:
        pref, names = next(iter(shared.items()))
        detail = (f"{domain}: the MX hosts {', '.join(names)} share preference {pref}; "
                  "senders pick among them at random (RFC 5321 5.1)")
        return [_check("mx", domain, _INFO,
                       _text(f"{len(real)} MX records, several with the same preference",
                             f"{len(real)} MX-Einträge, mehrere mit gleicher Präferenz"),
                       ctx.observe(Stage.DNS, FailureKind.DOMAIN_MX_SAME_PREFERENCE, detail),
                       records=records)]
    # Addresses beyond ADDRESS_LIMIT are named, not talked to.
    return [_check("mx", domain, _OK, _text(f"{len(real)} MX: {listing}",
                                            f"{len(real)} MX: {listing}"), records=records,
                   not_visited=list(found.not_visited))]


async def check_mx_address(ctx: DomainContext) -> list[DomainCheck]:
    """Each MX host has A/AAAA, and a public name has no private or loopback address."""
    found = _survey_of(ctx)
    out: list[DomainCheck] = []
    for host in found.hosts:
        if host.ip_literal or (host.implicit and not host.addresses):
            continue  # the mx check said it: no name to look up, or no mail host at all
        facts: dict[str, object] = {"ipv6": list(host.v6), "ipv4": list(host.v4),
                                    "usable": list(host.usable)}
        if not host.addresses:
            if host.failure is not None and host.failure.kind is not FailureKind.DNS_NXDOMAIN:
                out.append(_check("mx_address", host.name, _UNKNOWN,
                                  _text("the address lookup got no answer",
                                        "die Adressabfrage blieb ohne Antwort"),
                                  ctx.classifier.failure(Stage.DNS, host.failure), **facts))
                continue
            what = "does not exist (NXDOMAIN)" if host.failure is not None \
                else "has neither an A nor an AAAA record"
            out.append(_check("mx_address", host.name, _FAIL,
                              _text("the MX host has no address", "der MX-Host hat keine Adresse"),
                              ctx.observe(Stage.DNS, FailureKind.DNS_NO_ADDRESS,
                                          f"{host.name} {what}, so it has no address"), **facts))
            continue
        if host.notes:
            note = host.notes[0]
            status = _FAIL if not host.usable or note.kind is FailureKind.ADDRESS_UNUSABLE \
                else _WARN
            out.append(_check("mx_address", host.name, status,
                              _text("an address no mail server can have",
                                    "eine Adresse, die kein Mailserver haben kann")
                              if note.kind is FailureKind.ADDRESS_UNUSABLE else
                              _text("private or loopback address for a public name",
                                    "private oder Loopback-Adresse für einen öffentlichen Namen"),
                              ctx.observe(Stage.DNS, note.kind, note.detail), **facts))
            continue
        shown = ", ".join(host.addresses)
        out.append(_check("mx_address", host.name, _OK, _text(shown, shown), **facts))
    return out


async def check_ipv6(ctx: DomainContext) -> list[DomainCheck]:
    """An AAAA record for at least one MX host, and port 25 answering on it."""
    found = _survey_of(ctx)
    domain = ctx.ascii_domain
    with_v6 = [h.name for h in found.hosts if h.v6]
    if not with_v6:
        detail = f"none of the MX hosts of {domain} has an AAAA record: IPv6-only senders " \
                 "cannot deliver"
        return [_check("ipv6", domain, _WARN,
                       _text("no MX host has an IPv6 address",
                             "kein MX-Host hat eine IPv6-Adresse"),
                       ctx.observe(Stage.DNS, FailureKind.DOMAIN_NO_IPV6, detail))]
    v6_visits = [v for v in found.visits if ":" in v.address]
    reached = [v.subject for v in v6_visits if v.greeted]
    silent = [v for v in v6_visits if not v.greeted]
    facts: dict[str, object] = {"hosts": with_v6, "reached": reached,
                                "unreachable": [v.subject for v in silent]}
    if not v6_visits:
        return [_check("ipv6", domain, _UNKNOWN,
                       _text("IPv6 addresses present but not tried",
                             "IPv6-Adressen vorhanden, aber nicht versucht"),
                       ctx.observe(Stage.CONNECT, FailureKind.DOMAIN_IPV6_UNREACHABLE,
                                   f"the IPv6 addresses of {', '.join(with_v6)} were not tried "
                                   "(left out by the screening or the address limit)"), **facts)]
    if silent:
        first = silent[0]
        why = _said(first.steps[0]) if first.steps else "no conversation"
        detail = (f"{first.subject} has an AAAA record but port {ctx.port} did not greet over "
                  f"IPv6: {why}")
        status = _FAIL if not reached else _WARN
        return [_check("ipv6", domain, status,
                       _text(f"{len(silent)} of {len(v6_visits)} IPv6 addresses do not answer",
                             f"{len(silent)} von {len(v6_visits)} IPv6-Adressen antworten nicht"),
                       ctx.observe(Stage.CONNECT, FailureKind.DOMAIN_IPV6_UNREACHABLE, detail),
                       **facts)]
    return [_check("ipv6", domain, _OK,
                   _text(f"reachable over IPv6: {', '.join(reached)}",
                         f"über IPv6 erreichbar: {', '.join(reached)}"), **facts)]


async def check_ptr(ctx: DomainContext) -> list[DomainCheck]:
    """Reverse DNS for each MX address (RFC 1912 2.1; what receivers' policies ask for)."""
    out: list[DomainCheck] = []
    for visit in _survey_of(ctx).visits:
        if isinstance(visit.ptr, Failure):
            out.append(_check("ptr", visit.subject, _UNKNOWN,
                              _text("the PTR lookup got no answer",
                                    "die PTR-Abfrage blieb ohne Antwort"),
                              ctx.classifier.failure(Stage.DNS, visit.ptr),
                              address=visit.address))
            continue
        names = visit.ptr_names
        if not names:
            detail = f"{visit.address} (MX {visit.host}) has no PTR record ({visit.ptr.name})"
            out.append(_check("ptr", visit.subject, _FAIL,
                              _text("no reverse DNS (PTR)", "kein Reverse-DNS (PTR)"),
                              ctx.observe(Stage.DNS, FailureKind.DOMAIN_PTR_MISSING, detail),
                              address=visit.address, names=[]))
            continue
        shown = ", ".join(names)
        out.append(_check("ptr", visit.subject, _OK, _text(shown, shown),
                          address=visit.address, names=list(names)))
    return out


async def check_fcrdns(ctx: DomainContext) -> list[DomainCheck]:
    """Forward-confirmed reverse DNS: a PTR name whose A/AAAA leads back to the address."""
    out: list[DomainCheck] = []
    for visit in _survey_of(ctx).visits:
        names = visit.ptr_names
        if isinstance(visit.ptr, Failure):
            out.append(_check("fcrdns", visit.subject, _UNKNOWN,
                              _text("no PTR answer to confirm", "keine PTR-Antwort zum Bestätigen"),
                              ctx.classifier.failure(Stage.DNS, visit.ptr),
                              address=visit.address))
            continue
        confirmed = [n for n, got in visit.forward.items()
                     if not isinstance(got, Failure) and visit.address in got]
        facts: dict[str, object] = {
            "address": visit.address,
            "forward": {n: (list(a) if not isinstance(a, Failure) else None)
                        for n, a in visit.forward.items()}}
        if confirmed:
            out.append(_check("fcrdns", visit.subject, _OK,
                              _text(f"{confirmed[0]} leads back to {visit.address}",
                                    f"{confirmed[0]} führt zurück zu {visit.address}"), **facts))
            continue
        failures = [a for a in visit.forward.values() if isinstance(a, Failure)]
        if failures and len(failures) == len(visit.forward):
            out.append(_check("fcrdns", visit.subject, _UNKNOWN,
                              _text("the forward lookup got no answer",
                                    "die Vorwärtsabfrage blieb ohne Antwort"),
                              ctx.classifier.failure(Stage.DNS, failures[0]), **facts))
            continue
        if not names:
            detail = f"{visit.address} has no PTR name that could lead back to it"
            out.append(_check("fcrdns", visit.subject, _FAIL,
                              _text("no PTR name to confirm", "kein PTR-Name zum Bestätigen"),
                              ctx.observe(Stage.DNS, FailureKind.DOMAIN_FCRDNS_MISMATCH,
                                          detail), **facts))
            continue
        got = "; ".join(f"{n} -> {', '.join(a) or 'no address'}"
                        for n, a in visit.forward.items() if not isinstance(a, Failure))
        detail = f"the PTR name of {visit.address} does not resolve back to it ({got})"
        out.append(_check("fcrdns", visit.subject, _FAIL,
                          _text("the PTR name does not lead back to the address",
                                "der PTR-Name führt nicht zur Adresse zurück"),
                          ctx.observe(Stage.DNS, FailureKind.DOMAIN_FCRDNS_MISMATCH, detail),
                          **facts))
    return out


def _greeting_name(visit: Visit) -> str | None:
    banner = visit.steps[0] if visit.steps else None
    if banner is None or banner.reply is None or not banner.replied(220):
        return None
    words = banner.reply.first_line.split()
    return words[0].rstrip(".").lower() if words else ""


def _no_conversation(ctx: DomainContext, check_id: str, visit: Visit) -> DomainCheck:
    """The survey's conversation ended before this check's step: why, as the step said."""
    last = visit.steps[-1] if visit.steps else None
    finding = last.finding if last is not None else None
    if finding is None:
        finding = ctx.observe(Stage.CONNECT, FailureKind.DEADLINE,
                              f"{visit.subject}: no conversation within the deadline")
    return _check(check_id, visit.subject, _UNKNOWN,
                  _text("not checked: the conversation ended before",
                        "nicht geprüft: das Gespräch endete vorher"),
                  finding, said=_said(last) if last is not None else "")


async def check_banner_name(ctx: DomainContext) -> list[DomainCheck]:
    """The name in the 220 greeting (RFC 5321 4.3.1, 4.2) against the address's PTR."""
    out: list[DomainCheck] = []
    for visit in _survey_of(ctx).visits:
        if not visit.greeted:
            first = visit.steps[0] if visit.steps else None
            finding = first.finding if first is not None else None
            if finding is None:
                finding = ctx.observe(Stage.CONNECT, FailureKind.DEADLINE,
                                      f"{visit.subject}: not connected within the deadline")
            out.append(_check("banner_name", visit.subject, _FAIL,
                              _text("no greeting from the server", "keine Begrüßung vom Server"),
                              finding, said=_said(first) if first is not None else ""))
            continue
        name = _greeting_name(visit) or ""
        names = visit.ptr_names
        facts: dict[str, object] = {"greeting": name, "ptr": list(names)}
        if name and name in names:
            out.append(_check("banner_name", visit.subject, _OK,
                              _text(f"greets as {name}, as its PTR",
                                    f"grüßt als {name}, wie sein PTR"),
                              **facts))
            continue
        if not names:
            why = "the address has no PTR name to compare with"
        elif "." not in name:
            why = "that is not a fully qualified domain name"
        else:
            why = f"its PTR name is {', '.join(names)}"
        detail = f"{visit.subject} greets as {name or '(nothing)'}, but {why}"
        out.append(_check("banner_name", visit.subject, _WARN,
                          _text(f"greets as {name or '(nothing)'}, not as its PTR name",
                                f"grüßt als {name or '(nichts)'}, nicht mit seinem PTR-Namen"),
                          ctx.observe(Stage.CONNECT, FailureKind.DOMAIN_BANNER_MISMATCH, detail),
                          **facts))
    return out


def _starttls_step(visit: Visit) -> Step | None:
    return next((s for s in visit.steps if s.stage is Stage.STARTTLS), None)


async def check_starttls(ctx: DomainContext) -> list[DomainCheck]:
    """STARTTLS offered and the handshake completes (RFC 3207)."""
    out: list[DomainCheck] = []
    for visit in _survey_of(ctx).visits:
        tls = visit.tls
        if tls is Tls.UP:
            version = visit.tls_info.version if visit.tls_info is not None else "TLS"
            cipher = visit.tls_info.cipher if visit.tls_info is not None else ""
            out.append(_check("starttls", visit.subject, _OK,
                              _text(f"offered, {version}", f"angeboten, {version}"),
                              version=version, cipher=cipher))
        elif tls is Tls.NOT_OFFERED:
            detail = f"{visit.subject} does not offer STARTTLS in its EHLO reply: mail to it " \
                     "travels unencrypted"
            out.append(_check("starttls", visit.subject, _FAIL,
                              _text("STARTTLS not offered", "STARTTLS nicht angeboten"),
                              ctx.observe(Stage.EHLO, FailureKind.DOMAIN_STARTTLS_MISSING, detail)))
        elif tls in (Tls.REFUSED, Tls.BROKEN):
            step = _starttls_step(visit)
            finding = step.finding if step is not None else None
            if finding is None:
                finding = ctx.observe(Stage.STARTTLS, FailureKind.TLS_HANDSHAKE,
                                      f"{visit.subject}: STARTTLS did not work")
            summary = _text("STARTTLS refused", "STARTTLS abgelehnt") if tls is Tls.REFUSED \
                else _text("the TLS handshake failed", "der TLS-Handshake ist gescheitert")
            out.append(_check("starttls", visit.subject, _FAIL, summary, finding,
                              said=_said(step) if step is not None else ""))
        else:
            out.append(_no_conversation(ctx, "starttls", visit))
    return out


def _old_context(version: ssl.TLSVersion) -> ssl.SSLContext | None:
    """A client context that speaks exactly `version`, or None when this machine's OpenSSL
    cannot (built without it)."""
    context = client_tls_context()
    try:
        with warnings.catch_warnings():
            # TLS 1.0/1.1 are deprecated in the ssl module; asking for them is the point.
            warnings.simplefilter("ignore", DeprecationWarning)
            context.minimum_version = version
            context.maximum_version = version
    except (ValueError, ssl.SSLError):
        return None
    return context


_OLD_VERSIONS = ((ssl.TLSVersion.TLSv1, "TLSv1"), (ssl.TLSVersion.TLSv1_1, "TLSv1.1"))


async def _accepts(ctx: DomainContext, visit: Visit, version: ssl.TLSVersion) -> bool | None:
    """Whether the server completes a handshake in exactly `version` (None: cannot tell)."""
    context = _old_context(version)
    if context is None:
        return None
    session = ctx.session(visit.host, visit.address, tls_context=context)
    try:
        opening = await open_dialog(session, starttls=True)
        await session.quit()
    finally:
        session.close()
    if opening.tls is Tls.UP:
        return True
    if opening.tls is Tls.BROKEN:
        return False
    return None  # no greeting, no STARTTLS this time, a refusal: nothing learned


async def _tls_version_of(ctx: DomainContext, visit: Visit) -> DomainCheck:
    best = visit.tls_info.version if visit.tls_info is not None else "unknown"
    if best in ("TLSv1", "TLSv1.1", "SSLv3"):
        detail = f"{visit.subject} negotiated {best}: it speaks nothing newer (RFC 8996)"
        return _check("tls_version", visit.subject, _FAIL,
                      _text(f"nothing newer than {best}", f"nichts Neueres als {best}"),
                      ctx.observe(Stage.STARTTLS, FailureKind.DOMAIN_TLS_OLD_ONLY, detail),
                      best=best, lowest=best)
    unknown: list[str] = []
    for version, label in _OLD_VERSIONS:
        accepted = await _accepts(ctx, visit, version)
        if accepted:
            detail = (f"{visit.subject} still completes a {label} handshake (best: {best}); "
                      "RFC 8996 deprecates TLS 1.0 and 1.1")
            return _check("tls_version", visit.subject, _WARN,
                          _text(f"still accepts {label}", f"akzeptiert noch {label}"),
                          ctx.observe(Stage.STARTTLS, FailureKind.DOMAIN_TLS_OLD_ACCEPTED, detail),
                          best=best, lowest=label)
        if accepted is None:
            unknown.append(label)
    if len(unknown) == len(_OLD_VERSIONS):
        return _check("tls_version", visit.subject, _UNKNOWN,
                      _text("old TLS versions could not be tried",
                            "alte TLS-Versionen ließen sich nicht prüfen"),
                      ctx.observe(Stage.STARTTLS, FailureKind.NOT_OFFERED,
                                  f"{visit.subject}: the handshakes in "
                                  f"{' and '.join(unknown)} could not be tried (this machine's "
                                  "TLS library or the server's second conversation)"),
                      best=best, untried=unknown)
    return _check("tls_version", visit.subject, _OK,
                  _text(f"refuses TLS 1.0 and 1.1, best {best}",
                        f"lehnt TLS 1.0 und 1.1 ab, bestes {best}"),
                  best=best, lowest=best, untried=unknown)


async def check_tls_version(ctx: DomainContext) -> list[DomainCheck]:
    """The lowest TLS version the server still accepts: TLS 1.0/1.1 handshakes of its own."""
    visits = [v for v in _survey_of(ctx).visits if v.tls is Tls.UP]
    return list(await asyncio.gather(*(_tls_version_of(ctx, v) for v in visits)))


_CERT_FAIL = frozenset({FailureKind.CERT_EXPIRED, FailureKind.CERT_NOT_YET_VALID,
                        FailureKind.CERT_UNREADABLE})


async def check_certificate(ctx: DomainContext) -> list[DomainCheck]:
    """The chain against the trust store, the MX name, the expiry with the days left."""
    from smtpprobe.core.tlsproblems import tls_problems

    out: list[DomainCheck] = []
    for visit in _survey_of(ctx).visits:
        info = visit.tls_info
        if visit.tls is not Tls.UP or info is None:
            continue  # the starttls check says why there is no certificate
        problems = [(k, d) for k, d in tls_problems(info, visit.host)
                    if k is not FailureKind.TLS_OUTDATED]
        facts: dict[str, object] = {
            "subject": info.subject, "issuer": info.issuer, "names": list(info.names),
            "not_after": info.not_after, "days_left": info.days_left,
            "verified": info.verified, "name_matches": info.name_matches,
            "problems": [k.value for k, _ in problems]}
        days = info.days_left
        if not problems:
            out.append(_check("certificate", visit.subject, _OK,
                              _text(f"valid for {visit.host}, {days} days left",
                                    f"gültig für {visit.host}, noch {days} Tage"), **facts))
            continue
        kind, detail = problems[0]
        status = _FAIL if kind in _CERT_FAIL else _WARN
        titles = {
            FailureKind.CERT_EXPIRED: _text(f"expired on {info.not_after}",
                                            f"abgelaufen am {info.not_after}"),
            FailureKind.CERT_NAME_MISMATCH: _text(f"not for {visit.host}",
                                                  f"nicht für {visit.host} ausgestellt"),
            FailureKind.CERT_EXPIRING: _text(f"expires in {days} days",
                                             f"läuft in {days} Tagen ab"),
        }
        summary = titles.get(kind, _text("the chain does not verify",
                                         "die Kette lässt sich nicht prüfen"))
        if len(problems) > 1:
            summary = _text(f"{summary.en} (+{len(problems) - 1} more)",
                            f"{summary.de} (+{len(problems) - 1} weitere)")
        out.append(_check("certificate", visit.subject, status, summary,
                          ctx.observe(Stage.STARTTLS, kind, detail), **facts))
    return out


# Refusals of the probing client itself: postmaster may work for everyone else. (A "relay
# access denied" from the domain's own MX, a refused null sender, a demand for AUTH are the
# domain's fault: RFC 5321 4.5.1 and 4.5.5.)
_ABOUT_THIS_CLIENT = frozenset({
    Category.BLOCKLISTED, Category.REPUTATION_BLOCK, Category.DYNAMIC_IP_REJECTED,
    Category.CLIENT_IDENTITY_REJECTED, Category.RATE_LIMITED})


async def check_postmaster(ctx: DomainContext) -> list[DomainCheck]:
    """RCPT TO:<postmaster@domain> accepted (RFC 5321 4.5.1); MAIL FROM:<> before it."""
    out: list[DomainCheck] = []
    address = f"postmaster@{ctx.ascii_domain}"
    for visit in _survey_of(ctx).visits:
        step = visit.postmaster
        if step is None or step.stage not in (Stage.MAIL, Stage.RCPT) or step.reply is None:
            if visit.greeted or step is not None:
                out.append(_no_conversation(ctx, "postmaster", visit))
            continue
        reply = step.reply
        said = _said(step)
        command = "RCPT TO" if step.stage is Stage.RCPT else "MAIL FROM:<>"
        if step.stage is Stage.RCPT and reply.klass == 2:
            out.append(_check("postmaster", visit.subject, _OK,
                              _text(f"{address} accepted", f"{address} angenommen"),
                              said=said))
        elif reply.klass == 5 and step.finding is not None \
                and step.finding.category in _ABOUT_THIS_CLIENT:
            # A refusal of this client (a blocklist, its address, its name), not of the
            # postmaster address: whether postmaster works stays open.
            out.append(_check("postmaster", visit.subject, _UNKNOWN,
                              _text(f"{command} refused this client: {reply.code}",
                                    f"{command} lehnt diesen Client ab: {reply.code}"),
                              step.finding, said=said))
        elif reply.klass == 5:
            detail = f"{visit.subject} refused {command} for <{address}>: {said}"
            out.append(_check("postmaster", visit.subject, _FAIL,
                              _text(f"{command} refused: {reply.code}",
                                    f"{command} abgelehnt: {reply.code}"),
                              ctx.observe(step.stage, FailureKind.DOMAIN_POSTMASTER_REFUSED,
                                          detail), said=said,
                              rule=step.finding.rule if step.finding is not None else None))
        else:
            out.append(_check("postmaster", visit.subject, _UNKNOWN,
                              _text(f"{command} answered {reply.code}: try again later",
                                    f"{command} beantwortet mit {reply.code}: später erneut "
                                    "versuchen"), step.finding, said=said))
    return out


async def _relay_of(ctx: DomainContext, visit: Visit) -> DomainCheck:
    """One conversation without a login; every trick gets MAIL and RCPT, then RSET. Never
    DATA. Over TLS when offered: some servers refuse everything before it."""
    # Imported here: relay's module (email, the certificate store) is only needed with
    # --open-relay.
    from smtpprobe.probe.relay import OPEN_RELAY_FROM, OPEN_RELAY_TO, relay_tricks

    session = ctx.session(visit.host, visit.address)
    tried: list[dict[str, object]] = []
    accepted: list[tuple[str, bool, str]] = []  # trick, local, reply
    undecided: Step | None = None
    try:
        opening = await open_dialog(session, starttls=True)
        if not opening.ready:
            steps = [ctx.classifier.step(s) for s in opening.steps]
            undecided = steps[-1] if steps else None
        else:
            for trick in relay_tricks(ctx.ascii_domain, outside_from=OPEN_RELAY_FROM,
                                      outside_to=OPEN_RELAY_TO):
                if not session.connected or ctx.left() <= 0:
                    break
                mail = await session.mail(trick.sender)
                decisive = mail
                if mail.replied(250):
                    decisive = await session.rcpt(trick.recipient)
                said = _said(decisive)
                tried.append({"trick": trick.name, "mail_from": trick.sender,
                              "rcpt_to": trick.recipient, "reply": said})
                if decisive.stage is Stage.RCPT and decisive.reply is not None \
                        and decisive.reply.klass == 2:
                    accepted.append((trick.name, trick.local, said))
                elif decisive.reply is None or decisive.reply.klass == 4:
                    undecided = ctx.classifier.step(decisive)
                if session.connected:
                    await session.rset()
        await session.quit()
    finally:
        session.close()
    outside = [a for a in accepted if not a[1]]
    if outside:
        name, _, said = outside[0]
        trick_of = {t["trick"]: t for t in tried}
        envelope = trick_of[name]
        detail = (f"{visit.subject} accepted RCPT TO:<{envelope['rcpt_to']}> from "
                  f"<{envelope['mail_from']}> without authentication: {said}")
        return _check("open_relay", visit.subject, _FAIL,
                      _text("open relay: outside mail accepted",
                            "offenes Relay: fremde Mail angenommen"),
                      ctx.observe(Stage.RCPT, FailureKind.OPEN_RELAY, detail), tried=tried)
    if accepted:
        names = ", ".join(a[0] for a in accepted)
        detail = (f"{visit.subject} accepted disguised outside recipients ({names}) without "
                  f"authentication: {accepted[0][2]}; a catch-all accepts them too, so this is "
                  "a suspicion until a bounce or the logs tell")
        return _check("open_relay", visit.subject, _WARN,
                      _text(f"disguised recipients accepted: {names}",
                            f"getarnte Empfänger angenommen: {names}"),
                      ctx.observe(Stage.RCPT, FailureKind.DOMAIN_RELAY_TRICK, detail),
                      tried=tried)
    if undecided is not None or not tried:
        finding = undecided.finding if undecided is not None else None
        if finding is None:
            finding = ctx.observe(Stage.RCPT, FailureKind.DEADLINE,
                                  f"{visit.subject}: the open-relay test did not finish")
        return _check("open_relay", visit.subject, _UNKNOWN,
                      _text("cannot tell: no final answer", "nicht feststellbar: keine "
                            "endgültige Antwort"), finding, tried=tried)
    return _check("open_relay", visit.subject, _OK,
                  _text(f"all {len(tried)} relay attempts refused",
                        f"alle {len(tried)} Relay-Versuche abgelehnt"), tried=tried)


async def check_open_relay(ctx: DomainContext) -> list[DomainCheck]:
    """--open-relay: outside envelopes and the old routing tricks, never DATA."""
    if not ctx.open_relay:
        return []
    visits = [v for v in _survey_of(ctx).visits if v.greeted]
    return list(await asyncio.gather(*(_relay_of(ctx, v) for v in visits)))


# -- the table and the runner -----------------------------------------------------------------

# The checks in report order. Those about one MX address need a mail host to talk to; when
# the domain has none, the runner marks them not checked once instead of running them.
class CheckId(StrEnum):
    """Every check of `smtpprobe domain`, in report order (the JSON `id`)."""

    MX = "mx"
    MX_ADDRESS = "mx_address"
    IPV6 = "ipv6"
    PTR = "ptr"
    FCRDNS = "fcrdns"
    BANNER_NAME = "banner_name"
    STARTTLS = "starttls"
    TLS_VERSION = "tls_version"
    CERTIFICATE = "certificate"
    POSTMASTER = "postmaster"
    OPEN_RELAY = "open_relay"
    SPF = "spf"
    DMARC = "dmarc"
    DKIM = "dkim"
    DNSBL = "dnsbl"
    MTA_STS = "mta_sts"
    TLS_RPT = "tls_rpt"
    DANE = "dane"


CHECKS: tuple[tuple[str, CheckFn], ...] = (
    (CheckId.MX, check_mx),
    (CheckId.MX_ADDRESS, check_mx_address),
    (CheckId.IPV6, check_ipv6),
    (CheckId.PTR, check_ptr),
    (CheckId.FCRDNS, check_fcrdns),
    (CheckId.BANNER_NAME, check_banner_name),
    (CheckId.STARTTLS, check_starttls),
    (CheckId.TLS_VERSION, check_tls_version),
    (CheckId.CERTIFICATE, check_certificate),
    (CheckId.POSTMASTER, check_postmaster),
    (CheckId.OPEN_RELAY, check_open_relay),
)
PER_ADDRESS = frozenset({CheckId.IPV6, CheckId.PTR, CheckId.FCRDNS, CheckId.BANNER_NAME,
                         CheckId.STARTTLS, CheckId.TLS_VERSION, CheckId.CERTIFICATE,
                         CheckId.POSTMASTER, CheckId.OPEN_RELAY})


def check_table() -> tuple[tuple[str, CheckFn], ...]:
    """The MX and TLS checks, then the DNS policy checks (probe/domain_policy.py, imported
    here: it needs DomainContext, and pyspf loads only with it)."""
    from smtpprobe.probe import domain_policy as policy

    return (*CHECKS,
            (CheckId.SPF, policy.check_spf),
            (CheckId.DMARC, policy.check_dmarc),
            (CheckId.DKIM, policy.check_dkim),
            (CheckId.DNSBL, policy.check_dnsbl),
            (CheckId.MTA_STS, policy.check_mta_sts),
            (CheckId.TLS_RPT, policy.check_tls_rpt),
            (CheckId.DANE, policy.check_dane))


def _not_checked(ctx: DomainContext, check_id: str, because: DomainCheck | None) -> DomainCheck:
    finding = because.finding if because is not None else None
    if finding is None:
        finding = ctx.observe(Stage.DNS, FailureKind.DNS_NO_ADDRESS,
                              f"{ctx.ascii_domain}: no MX address to connect to")
    return _check(check_id, ctx.ascii_domain, _UNKNOWN,
                  _text("not checked: no mail host to talk to",
                        "nicht geprüft: kein Mailhost erreichbar"), finding)


async def _guarded(ctx: DomainContext, check_id: str, fn: CheckFn) -> list[DomainCheck]:
    """One check, ended at the deadline (then `unknown`, with why)."""
    try:
        async with asyncio.timeout(ctx.left() + 1.0):
            return await fn(ctx)
    except TimeoutError:
        finding = ctx.observe(Stage.DNS, FailureKind.DEADLINE,
                              f"the {check_id} check did not finish within the deadline")
        return [_check(check_id, ctx.ascii_domain, _UNKNOWN,
                       _text("not finished within the deadline",
                             "innerhalb der Frist nicht fertig"), finding)]


async def run_domain(
    domain: str,
    *,
    classifier: Classifier,
    trust: TrustStore,
    nameservers: Sequence[tuple[str, int]] | None = None,
    timeout: float = 10.0,
    deadline: float = 120.0,
    helo: str = "localhost",
    source_address: str | None = None,
    allow_private: bool = False,
    ips: Sequence[str] = (),
    selectors: Sequence[str] = (),
    dnsbl_zones: Sequence[str] = (),
    open_relay: bool = False,
    port: int = 25,
    checks: Sequence[tuple[str, CheckFn]] | None = None,
    proxy: Proxy | None = None,
    family: int | None = None,
) -> DomainReport:
    """Every check of `checks` (default `check_table()`) on `domain`, within `deadline`
    seconds. Raises ValueError only for a domain that cannot be one (the CLI checks first)."""
    ascii_domain = dns.to_ascii_domain(domain)
    started = time.perf_counter()
    loop = asyncio.get_running_loop()
    ctx = DomainContext(
        domain=domain, ascii_domain=ascii_domain,
        nameservers=tuple(nameservers) if nameservers is not None else None,
        timeout=timeout, deadline=loop.time() + deadline, trust=trust, classifier=classifier,
        helo=helo, source_address=source_address, allow_private=allow_private,
        ips=tuple(ips), selectors=tuple(selectors), dnsbl_zones=tuple(dnsbl_zones),
        open_relay=open_relay, port=port, proxy=proxy, family=family)
    try:
        async with asyncio.timeout(ctx.left() + 1.0):
            found = await survey(ctx)
    except TimeoutError:
        found = Survey(Failure(FailureKind.DEADLINE, f"{ascii_domain}: the MX lookup and the "
                               "conversations did not finish within the deadline"))
    ctx = replace(ctx, survey=found, mx=mx_result(ctx, found),
                  presented={v.host: v.chain for v in found.visits if v.chain})
    table = tuple(checks if checks is not None else check_table())
    nothing_to_visit = not found.visits
    results: dict[str, list[DomainCheck]] = {}
    run = [(cid, fn) for cid, fn in table if not (nothing_to_visit and cid in PER_ADDRESS)]
    outcomes = await asyncio.gather(*(_guarded(ctx, cid, fn) for cid, fn in run))
    results.update(zip((cid for cid, _ in run), outcomes, strict=True))
    mx_checks = results.get("mx") or []
    blocker = next((c for c in mx_checks if c.status in (_FAIL, _UNKNOWN)), None)
    checks_out: list[DomainCheck] = []
    for cid, _ in table:
        if cid in results:
            checks_out.extend(results[cid])
        elif not found.null_mx and (cid != "open_relay" or ctx.open_relay):
            # Skipped once, after the hard failure: a null MX needs no mail host.
            checks_out.append(_not_checked(ctx, cid, blocker))
    return DomainReport(domain, ascii_domain, tuple(checks_out),
                        (time.perf_counter() - started) * 1000)
