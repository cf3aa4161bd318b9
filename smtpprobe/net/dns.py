"""MX resolution: which hosts take mail for a domain, in the order to try them.

This is the only module that imports dnspython. Everything it learns, including every way a
lookup can fail, leaves as plain values (`MxResult`, `MxHost`, `Failure`); dnspython's
exceptions are translated once, from `_TRANSLATIONS`, and never escape `resolve_mx`.

Time bound: each DNS query ends after `timeout` seconds (dnspython's lifetime, with our own
`_GRACE` on top in case a transport ignores it). `resolve_mx` makes two rounds of queries, the
MX lookup and then all address lookups at once, so it returns within 2 x (timeout + _GRACE).
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import dns.asyncresolver
import dns.exception
import dns.name
import dns.nameserver
import dns.rdatatype
import dns.resolver

from smtpprobe.models import Failure, FailureKind, MxHost, MxResult

__all__ = ["parse_resolver", "resolve_host", "resolve_mx", "to_ascii_domain"]

_GRACE = 0.5
# dnspython waits this long for one server before it asks the next (its own default).
_PER_SERVER_TRY = 2.0
_DNS_PORT = 53
# RFC 1035 2.3.1 (letters, digits, hyphen), RFC 5890 2.3.1 for the xn-- A-labels.
_LDH_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\Z")
# The codec does UTS 46 mapping (case folding, full-width dots ...) and IDNA 2008 validity;
# pure-ASCII labels go through it too, so "a_b" or "-x" are refused rather than passed on.
_IDNA = dns.name.IDNA2008Codec(
    uts_46=True, transitional=False, allow_pure_ascii=False, strict_decode=True
)


# -- input ---------------------------------------------------------------------------------


def to_ascii_domain(domain: str) -> str:
    """`bücher.example` -> `xn--bcher-kva.example`; ValueError if it cannot be a mail domain.

    One trailing dot is accepted and dropped. The result is lower case, without final dot.
    """
    text = domain.strip()
    if text.endswith(".") and not text.endswith(".."):
        text = text[:-1]
    if not text:
        raise ValueError("the domain is empty")
    try:
        name = _to_name(text, idna=dns.name.have_idna_2008)
    except (dns.exception.DNSException, UnicodeError, ValueError) as exc:
        raise ValueError(f"{domain!r} is not a valid domain name: {_reason(exc)}") from None
    ascii_name = name.to_text(omit_final_dot=True).lower()
    labels = ascii_name.split(".")
    for label in labels:
        if not _LDH_LABEL.match(label):
            raise ValueError(f"{domain!r} is not a valid domain name: bad label {label!r}")
    # RFC 3696 2: a top-level domain is never all digits, so "192.0.2.1" is an address.
    if labels[-1].isdigit():
        raise ValueError(f"{domain!r} is an IP address or ends in a numeric label, not a domain")
    return ascii_name


def _to_name(text: str, *, idna: bool) -> dns.name.Name:
    if idna:
        return dns.name.from_unicode(text, origin=dns.name.root, idna_codec=_IDNA)
    # Without the idna package (an optional dnspython extra) only ASCII names can be checked;
    # the LDH test in the caller still applies.
    if not text.isascii():
        raise ValueError("internationalised names need the 'idna' package")
    return dns.name.from_text(text, origin=dns.name.root)


def parse_resolver(spec: str) -> tuple[str, int]:
    """`127.0.0.53`, `127.0.0.1:5353`, `::1`, `[::1]:53` -> (address, port)."""
    text = spec.strip()
    if not text:
        raise ValueError("the resolver address is empty")
    port_text: str | None = None
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep:
            raise ValueError(f"resolver {spec!r}: missing ']' after the IPv6 address")
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"resolver {spec!r}: expected ':PORT' after ']'")
            port_text = rest[1:]
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    else:
        host = text  # IPv4 without port, or a bare IPv6 address (several colons)
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(
            f"resolver {spec!r}: {host!r} is not an IP address (a resolver is given by address)"
        ) from None
    if text.startswith("[") and address.version != 6:
        raise ValueError(f"resolver {spec!r}: brackets are only for IPv6 addresses")
    port = _DNS_PORT
    if port_text is not None:
        if not (port_text.isascii() and port_text.isdigit()):
            raise ValueError(f"resolver {spec!r}: port {port_text!r} is not a number")
        port = int(port_text)
        if not 1 <= port <= 65535:
            raise ValueError(f"resolver {spec!r}: port {port} is outside 1-65535")
    return str(address), port


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


# -- translating dnspython's exceptions ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Query:
    """What was asked, for failure details."""

    name: str
    rtype: str
    servers: str
    timeout: float

    @property
    def what(self) -> str:
        return f"{self.name} {self.rtype}"


def _server_answers(exc: BaseException, query: _Query) -> Failure:
    # NoNameservers: every server gave up; its `errors` say what each one answered.
    errors: list[tuple[object, bool, int, object, object]] = []
    if isinstance(exc, dns.exception.DNSException):
        errors = exc.kwargs.get("errors") or []
    parts: list[str] = []
    rcodes: list[str] = []
    network = 0
    for server, tcp, port, error, _response in errors:
        where = _server_text(_bare_address(str(server)), int(port)) + (" over TCP" if tcp else "")
        if isinstance(error, str):  # an rcode dnspython did not like
            rcodes.append(error)
            note = " (the server refused to answer)" if error == "REFUSED" else ""
            parts.append(f"{where} answered {error}{note}")
        elif isinstance(error, OSError):
            network += 1
            parts.append(f"{where} unreachable: {_reason(error)}")
        else:
            parts.append(f"{where} failed: {type(error).__name__}")
    summary = "; ".join(parts) or "no usable answer from " + query.servers
    if not rcodes and errors and network == len(errors):
        return Failure(FailureKind.UNREACHABLE, f"{query.what}: no nameserver reachable: {summary}")
    # RFC 1035 4.1.1: REFUSED is a policy answer, not an outage; the caller sees it as a
    # server failure whose detail says "refused".
    return Failure(FailureKind.DNS_SERVFAIL, f"{query.what}: {summary}")


def _fixed(kind: FailureKind, text: str) -> Callable[[BaseException, _Query], Failure]:
    def make(exc: BaseException, query: _Query) -> Failure:
        return Failure(
            kind,
            text.format(
                what=query.what,
                name=query.name,
                servers=query.servers,
                timeout=query.timeout,
                error=_reason(exc),
                cls=type(exc).__name__,
            ),
        )

    return make


# First match wins, so subclasses come before their bases (TimeoutError is an OSError).
_TRANSLATIONS: tuple[
    tuple[type[BaseException], Callable[[BaseException, _Query], Failure]], ...
] = (
    (
        dns.resolver.NXDOMAIN,
        _fixed(
            FailureKind.DNS_NXDOMAIN, "{what}: {servers} answered NXDOMAIN, {name} does not exist"
        ),
    ),
    (
        dns.exception.Timeout,
        _fixed(FailureKind.DNS_TIMEOUT, "{what}: no answer from {servers} within {timeout:g} s"),
    ),
    (
        TimeoutError,
        _fixed(FailureKind.DNS_TIMEOUT, "{what}: no answer from {servers} within {timeout:g} s"),
    ),
    (dns.resolver.NoNameservers, _server_answers),
    (
        dns.resolver.NoResolverConfiguration,
        _fixed(FailureKind.UNREACHABLE, "{what}: no nameserver configured on this machine"),
    ),
    (
        dns.resolver.YXDOMAIN,
        _fixed(FailureKind.DNS_SERVFAIL, "{what}: {servers} answered YXDOMAIN (name too long)"),
    ),
    (
        OSError,
        _fixed(FailureKind.UNREACHABLE, "{what}: cannot reach {servers}: {error}"),
    ),
    (
        dns.exception.DNSException,
        _fixed(FailureKind.DNS_SERVFAIL, "{what}: unexpected DNS error {cls} from {servers}"),
    ),
    # The guarded code is a single dnspython call, so anything else is dnspython's too.
    (
        Exception,
        _fixed(FailureKind.DNS_SERVFAIL, "{what}: unexpected error {cls} asking {servers}"),
    ),
)


def _translate(exc: BaseException, query: _Query) -> Failure:
    for exc_type, make in _TRANSLATIONS:
        if isinstance(exc, exc_type):
            return make(exc, query)
    raise exc  # a BaseException (cancellation, KeyboardInterrupt) is not ours to map


# -- lookups -------------------------------------------------------------------------------


def _bare_address(server: str) -> str:
    # dnspython names a server "Do53:ADDRESS@PORT" in its error list.
    return server.removeprefix("Do53:").rpartition("@")[0] or server


def _server_text(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def _make_resolver(
    nameservers: Sequence[tuple[str, int]] | None, timeout: float
) -> tuple[dns.asyncresolver.Resolver, str]:
    if nameservers is None:
        resolver = dns.asyncresolver.Resolver(configure=True)
    else:
        if not nameservers:
            raise ValueError("no nameservers given")
        for address, port in nameservers:
            ipaddress.ip_address(address)
            if not 1 <= port <= 65535:
                raise ValueError(f"nameserver port {port} is outside 1-65535")
        resolver = dns.asyncresolver.Resolver(configure=False)
        resolver.nameservers = [
            dns.nameserver.Do53Nameserver(address, port) for address, port in nameservers
        ]
    resolver.lifetime = timeout
    # Split the lifetime so a silent first server still leaves time to ask the others.
    resolver.timeout = min(_PER_SERVER_TRY, timeout / max(len(resolver.nameservers), 1))
    resolver.search = []
    servers = []
    for server in resolver.nameservers:
        if isinstance(server, dns.nameserver.AddressAndPortNameserver):
            servers.append(_server_text(server.address, server.port))
        else:
            servers.append(str(server))
    return resolver, ", ".join(servers) or "no nameserver"


@dataclass(frozen=True, slots=True)
class _Ctx:
    resolver: dns.asyncresolver.Resolver
    servers: str
    timeout: float


async def _lookup(
    ctx: _Ctx, name: dns.name.Name, rdtype: dns.rdatatype.RdataType
) -> dns.resolver.Answer | Failure:
    query = _Query(
        name.to_text(omit_final_dot=True), dns.rdatatype.to_text(rdtype), ctx.servers, ctx.timeout
    )
    try:
        async with asyncio.timeout(ctx.timeout + _GRACE):
            return await ctx.resolver.resolve(name, rdtype, search=False, raise_on_no_answer=False)
    except Exception as exc:  # noqa: BLE001 - the table maps every failure of this one call
        return _translate(exc, query)


@dataclass(frozen=True, slots=True)
class _Addresses:
    addresses: tuple[str, ...]
    failure: Failure | None
    via_cname: str | None  # the name a CNAME led to


def _interleave(v6: list[str], v4: list[str]) -> tuple[str, ...]:
    # RFC 8305 4: alternate families, IPv6 first.
    out: list[str] = []
    for i in range(max(len(v6), len(v4))):
        out.extend(family[i] for family in (v6, v4) if i < len(family))
    return tuple(dict.fromkeys(out))


async def _addresses(ctx: _Ctx, name: dns.name.Name) -> _Addresses:
    aaaa, a = await asyncio.gather(
        _lookup(ctx, name, dns.rdatatype.AAAA), _lookup(ctx, name, dns.rdatatype.A)
    )
    found: dict[str, list[str]] = {"AAAA": [], "A": []}
    failures: list[Failure] = []
    via_cname: str | None = None
    for rtype, outcome in (("AAAA", aaaa), ("A", a)):
        if isinstance(outcome, Failure):
            failures.append(outcome)
            continue
        if outcome.canonical_name != name:
            via_cname = outcome.canonical_name.to_text(omit_final_dot=True)
        if outcome.rrset is not None:
            found[rtype] = [rdata.address for rdata in outcome.rrset]
    addresses = _interleave(found["AAAA"], found["A"])
    if addresses:
        return _Addresses(addresses, None, via_cname)
    host = name.to_text(omit_final_dot=True)
    # A temporary failure says more than "no address": the address may well exist.
    for failure in failures:
        if failure.kind != FailureKind.DNS_NXDOMAIN:
            return _Addresses((), failure, via_cname)
    if failures:
        detail = f"{host} does not exist (NXDOMAIN), so it has no address"
    else:
        detail = f"{host} has neither an A nor an AAAA record"
    return _Addresses((), Failure(FailureKind.DNS_NO_ADDRESS, detail), via_cname)


def _ip_target(target: dns.name.Name) -> str | None:
    text = target.to_text(omit_final_dot=True).strip("[]")
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def _ordered(
    records: list[tuple[int, dns.name.Name]], rng: random.Random
) -> list[tuple[int, dns.name.Name]]:
    # RFC 5321 5.1: lowest preference first; equal preferences in random order.
    by_pref: dict[int, list[dns.name.Name]] = {}
    for pref, target in records:
        group = by_pref.setdefault(pref, [])
        if target not in group:
            group.append(target)
    ordered: list[tuple[int, dns.name.Name]] = []
    seen: set[dns.name.Name] = set()
    for pref in sorted(by_pref):
        # Sorted first so the order depends on the rng only, not on the answer's order.
        group = sorted(by_pref[pref])
        rng.shuffle(group)
        for target in group:
            if target not in seen:  # the same host again at a worse preference adds nothing
                seen.add(target)
                ordered.append((pref, target))
    return ordered


async def resolve_mx(
    domain: str,
    *,
    nameservers: Sequence[tuple[str, int]] | None = None,
    timeout: float = 5.0,
    rng: random.Random | None = None,
) -> MxResult:
    """The mail hosts of `domain` with their addresses, or why there are none.

    `nameservers=None` uses this machine's resolver configuration. Raises ValueError only for
    bad arguments (an invalid domain, a bad nameserver); DNS problems come back as failures.
    """
    ascii_domain = to_ascii_domain(domain)
    if not timeout > 0:
        raise ValueError("timeout must be positive")
    started = time.perf_counter()
    rng = rng if rng is not None else random.Random()

    def done(
        hosts: tuple[MxHost, ...] = (),
        failure: Failure | None = None,
        warnings: tuple[Failure, ...] = (),
    ) -> MxResult:
        elapsed = (time.perf_counter() - started) * 1000
        return MxResult(ascii_domain, hosts, failure, elapsed, warnings)

    try:
        resolver, servers = _make_resolver(nameservers, timeout)
    except dns.resolver.NoResolverConfiguration as exc:
        return done(failure=_translate(exc, _Query(ascii_domain, "MX", "none", timeout)))
    ctx = _Ctx(resolver, servers, timeout)
    qname = dns.name.from_text(ascii_domain, origin=dns.name.root)

    mx = await _lookup(ctx, qname, dns.rdatatype.MX)
    if isinstance(mx, Failure):
        return done(failure=mx)

    if mx.rrset is None:
        # RFC 5321 5.1: no MX records -> the domain itself is the mail host (implicit MX).
        own = await _addresses(ctx, qname)
        if own.failure is not None:
            if own.failure.kind == FailureKind.DNS_NO_ADDRESS:
                detail = f"{ascii_domain} has no MX record and no A or AAAA record"
                return done(failure=Failure(FailureKind.DNS_NO_ADDRESS, detail))
            return done(failure=own.failure)
        return done(hosts=(MxHost(ascii_domain, 0, own.addresses, implicit=True),))

    warnings: list[Failure] = []
    records = [(int(rdata.preference), rdata.exchange) for rdata in mx.rrset]
    real = [(pref, target) for pref, target in records if target != dns.name.root]
    if not real:
        # RFC 7505 3: "MX 0 ." says the domain accepts no mail at all.
        detail = f"{ascii_domain} publishes a null MX (RFC 7505): it accepts no mail"
        return done(failure=Failure(FailureKind.NULL_MX, detail))
    if len(real) < len(records):
        # RFC 7505 3: a null MX must stand alone; with other MX records it is ignored.
        detail = (
            f"{ascii_domain} mixes a null MX with other MX records; the null MX is ignored"
            " (RFC 7505 3)"
        )
        warnings.append(Failure(FailureKind.NULL_MX, detail))

    ordered = _ordered(real, rng)
    to_resolve = [target for _pref, target in ordered if _ip_target(target) is None]
    resolved = await asyncio.gather(*(_addresses(ctx, target) for target in to_resolve))
    by_target = dict(zip(to_resolve, resolved, strict=True))

    hosts: list[MxHost] = []
    for pref, target in ordered:
        host = target.to_text(omit_final_dot=True)
        ip = _ip_target(target)
        if ip is not None:
            # RFC 5321 5.1: an MX names a host; an address written as a name is not used.
            detail = f"{ascii_domain} MX {pref} names the address {ip} instead of a host name"
            hosts.append(MxHost(host, pref, failure=Failure(FailureKind.MX_IS_IP, detail)))
            continue
        found = by_target[target]
        if found.via_cname is not None:
            # RFC 2181 10.3 / RFC 5321 5.1: an MX target must not be an alias.
            detail = f"{ascii_domain} MX {pref} {host} is a CNAME for {found.via_cname}"
            warnings.append(Failure(FailureKind.MX_IS_CNAME, detail))
        hosts.append(MxHost(host, pref, found.addresses, failure=found.failure))
    return done(hosts=tuple(hosts), warnings=tuple(warnings))


async def resolve_host(
    host: str,
    *,
    nameservers: Sequence[tuple[str, int]] | None = None,
    timeout: float = 5.0,
) -> MxHost:
    """The addresses of one named mail server (as for `--server NAME`), A and AAAA at once.

    No MX lookup and no /etc/hosts: the name is asked of DNS as given. The result has
    preference 0 and, when there is no address, a `failure`. It ends within timeout + _GRACE.
    """
    ascii_host = to_ascii_domain(host)
    if not timeout > 0:
        raise ValueError("timeout must be positive")
    try:
        resolver, servers = _make_resolver(nameservers, timeout)
    except dns.resolver.NoResolverConfiguration as exc:
        failure = _translate(exc, _Query(ascii_host, "A", "none", timeout))
        return MxHost(ascii_host, 0, failure=failure)
    ctx = _Ctx(resolver, servers, timeout)
    found = await _addresses(ctx, dns.name.from_text(ascii_host, origin=dns.name.root))
    return MxHost(ascii_host, 0, found.addresses, failure=found.failure)
