"""MX resolution: which hosts take mail for a domain, in the order to try them, and which of
their addresses a mail client may connect to.

This is the only module that imports dnspython. Everything it learns, including every way a
lookup can fail, leaves as plain values (`MxResult`, `MxHost`, `Failure`): nothing escapes
`resolve_mx`, `resolve_server` or `resolve_host` but ValueError for bad arguments.

The queries are our own small client over dnspython's messages (`_ask`), because a prober
meets resolvers and zones that misbehave:

- Each server gets a connected UDP socket, so a resolver address where nothing listens
  answers with ICMP port unreachable within milliseconds; the lookup ends then and names the
  resolver (`DNS_RESOLVER_REFUSED`) instead of waiting out its budget and blaming the domain.
- A query is retransmitted with the same id on the same socket (to the next server after
  `_PER_SERVER_TRY` seconds, round and round), and the first fitting answer to arrive within
  the whole budget counts. A resolver that needs 2.5 s is not asked again and again under
  new ids whose earlier answers would be thrown away.
- A reply counts only when id, flags and question fit the query (RFC 5452 9.1); forged
  replies and junk are counted and named when nothing else comes.
- At most MAX_QUERIES_IN_FLIGHT queries are open at once in an event loop (each holds a
  socket; fewer under a low RLIMIT_NOFILE), and a machine out of file descriptors (EMFILE,
  ENFILE) is a LOCAL failure.

Limits, as an MTA has them: one lookup yields at most MX_ADDRESS_LIMIT addresses, in MX
preference order; hosts are looked up in that order, at most MX_ADDRESS_LIMIT at a time and
MX_LOOKUP_LIMIT in all, until there are that many. An MX_LIMIT warning says what was left.

Addresses: unspecified, broadcast, multicast and reserved ones are never returned
(ADDRESS_UNUSABLE: 0.0.0.0 and :: would connect to this machine). Loopback, private and
link-local addresses of a public name are left out (ADDRESS_PRIVATE) unless `allow_private`;
names under the special-use domains (`is_special_use`: .test, .localhost, .invalid,
.example, example.com ...) are not public, so the lab's loopback addresses are fine there.

Time bound: each query ends after `timeout` seconds (`_GRACE` on top guards the TCP
fallback). `resolve_mx` makes the MX query and then looks up the hosts' addresses within a
second `timeout`, so it returns within 2 x (timeout + _GRACE).
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import ipaddress
import random
import re
import struct
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.nameserver
import dns.rcode
import dns.rdatatype
import dns.resolver
import dns.reversename
import dns.rrset

from smtpprobe.core.address import is_ip
from smtpprobe.models import Failure, FailureKind, MxHost, MxResult

__all__ = [
    "MAX_QUERIES_IN_FLIGHT",
    "MX_ADDRESS_LIMIT",
    "MX_LOOKUP_LIMIT",
    "Records",
    "is_special_use",
    "lookup",
    "parse_resolver",
    "resolve_host",
    "resolve_mx",
    "resolve_server",
    "screen",
    "to_ascii_domain",
]

# Postfix's smtp_mx_address_limit (postconf(5), default 5): "the maximal number of MX (mail
# exchanger) IP addresses that can result from Postfix SMTP client mail exchanger lookups".
# A domain with 500 MX records gets at most this many conversations, not 500.
MX_ADDRESS_LIMIT = 5
# Our own bound on the DNS work for one domain: MX hosts whose addresses are looked up (in
# preference order, until MX_ADDRESS_LIMIT addresses are found). Twice the address limit
# leaves room for one broken host beside every good one.
MX_LOOKUP_LIMIT = 2 * MX_ADDRESS_LIMIT
# DNS queries open at once in one event loop; each holds a UDP socket (a file descriptor).
# Room for the A and AAAA lookups of MX_ADDRESS_LIMIT hosts of three domains at a time.
MAX_QUERIES_IN_FLIGHT = 32

_GRACE = 0.5
# How long a server has before the query also goes to the next one (dnspython's default).
_PER_SERVER_TRY = 2.0
_DNS_PORT = 53
# DNS flag day 2020: a UDP payload size that does not fragment.
_EDNS_PAYLOAD = 1232
_SHOWN = 3  # names or addresses listed in a detail line before "and N more"
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


# -- which names are public, which addresses may be used ------------------------------------

# Not public names: RFC 6761 6 (test, localhost, invalid), RFC 2606 2-3 (example and
# example.com/.net/.org), RFC 6762 3 (local, multicast DNS), RFC 8375 (home.arpa) and the
# private-use TLD internal (ICANN, 2024). The lab and the tests live here.
_SPECIAL_USE = ("test", "localhost", "invalid", "example", "local", "internal",
                "example.com", "example.net", "example.org", "home.arpa")

_V4 = ipaddress.IPv4Network
_V6 = ipaddress.IPv6Network
# Never connected to: a connection to 0.0.0.0 or :: reaches this machine (Linux), broadcast
# and multicast are not one host, 240.0.0.0/4 is not in use (RFC 1112 4).
_UNUSABLE: tuple[tuple[_V4 | _V6, str], ...] = (
    (_V4("0.0.0.0/8"), "unspecified: this machine"),
    (_V6("::/128"), "unspecified: this machine"),
    (_V4("255.255.255.255/32"), "broadcast"),
    (_V4("224.0.0.0/4"), "multicast"),
    (_V6("ff00::/8"), "multicast"),
    (_V4("240.0.0.0/4"), "reserved"),
)
# Not where a public name's mail server is: this machine, or a network of its own.
_PRIVATE: tuple[tuple[_V4 | _V6, str], ...] = (
    (_V4("127.0.0.0/8"), "loopback: this machine"),
    (_V6("::1/128"), "loopback: this machine"),
    (_V4("10.0.0.0/8"), "private, RFC 1918"),
    (_V4("172.16.0.0/12"), "private, RFC 1918"),
    (_V4("192.168.0.0/16"), "private, RFC 1918"),
    (_V4("100.64.0.0/10"), "provider-internal, RFC 6598"),
    (_V6("fc00::/7"), "unique local, RFC 4193"),
    (_V4("169.254.0.0/16"), "link-local"),
    (_V6("fe80::/10"), "link-local"),
)


def is_special_use(name: str) -> bool:
    """True for names that are not public (RFC 6761 and friends, `_SPECIAL_USE`): their
    addresses may be loopback or private without anything being wrong."""
    text = name.strip().rstrip(".").lower()
    return any(text == suffix or text.endswith("." + suffix) for suffix in _SPECIAL_USE)


def _kind_of(address: str, table: tuple[tuple[_V4 | _V6, str], ...]) -> str | None:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1 to the kernel
    for network, what in table:
        if ip.version == network.version and ip in network:
            return what
    return None


def _listed(items: Sequence[str]) -> str:
    shown = ", ".join(items[:_SHOWN])
    return shown if len(items) <= _SHOWN else f"{shown} and {len(items) - _SHOWN} more"


def _grouped(found: dict[str, list[str]]) -> str:
    """`{"multicast": ["224.0.0.1", "ff02::1"]}` -> "224.0.0.1, ff02::1 (multicast)"."""
    return ", ".join(f"{_listed(addresses)} ({what})" for what, addresses in found.items())


@dataclass(frozen=True, slots=True)
class _Screened:
    usable: tuple[str, ...]
    notes: tuple[Failure, ...]  # what was left out (or let through), one per kind


def _screen(host: str, addresses: Sequence[str], *, allow_private: bool) -> _Screened:
    public = not is_special_use(host)
    usable: list[str] = []
    unusable: dict[str, list[str]] = {}
    private: dict[str, list[str]] = {}
    for address in addresses:
        what = _kind_of(address, _UNUSABLE)
        if what is not None:
            unusable.setdefault(what, []).append(address)
            continue
        what = _kind_of(address, _PRIVATE) if public else None
        if what is not None:
            private.setdefault(what, []).append(address)
            if not allow_private:
                continue
        usable.append(address)
    notes: list[Failure] = []
    if unusable:
        notes.append(Failure(FailureKind.ADDRESS_UNUSABLE,
                             f"{host} resolves to {_grouped(unusable)}: no mail server's "
                             f"address, smtpprobe does not connect there"))
    if private:
        if allow_private:
            tail = "used, because private addresses are allowed"
        else:
            tail = ("not tried: a public name's mail server is not on this machine or a "
                    "private network (allow private addresses to test it anyway)")
        notes.append(Failure(FailureKind.ADDRESS_PRIVATE,
                             f"{host} is a public name but resolves to {_grouped(private)}; "
                             f"{tail}"))
    return _Screened(tuple(usable), tuple(notes))


def screen(host: str, addresses: Sequence[str], *,
           allow_private: bool) -> tuple[tuple[str, ...], tuple[Failure, ...]]:
    """The addresses of `host` a mail client may connect to, and what was left out (or let
    through) as ADDRESS_UNUSABLE / ADDRESS_PRIVATE failures: the screening `resolve_mx`
    applies, for callers that look the addresses up themselves (`smtpprobe domain`)."""
    found = _screen(host, addresses, allow_private=allow_private)
    return found.usable, found.notes


# -- translating exceptions ------------------------------------------------------------------


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
    (
        dns.resolver.NoNameservers,
        _fixed(FailureKind.DNS_SERVFAIL, "{what}: no usable answer from {servers}"),
    ),
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
    # The guarded code is one exchange over dnspython's messages: anything else is theirs.
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


# -- asking a server: the query engine ----------------------------------------------------------


def _server_text(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


# One semaphore per event loop: an asyncio semaphore belongs to the loop it first waits in,
# and every `asyncio.run` (and every test) has a loop of its own. Not a cache: an entry goes
# with its loop.
_GATES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
    weakref.WeakKeyDictionary())


def _gate_size() -> int:
    """MAX_QUERIES_IN_FLIGHT, or fewer when this process may open few files: DNS takes at
    most an eighth of them, the rest is for the SMTP connections and the program itself."""
    try:
        import resource

        soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (ImportError, OSError, ValueError):  # no such limit on this system
        return MAX_QUERIES_IN_FLIGHT
    if soft == resource.RLIM_INFINITY or soft <= 0:
        return MAX_QUERIES_IN_FLIGHT
    return max(1, min(MAX_QUERIES_IN_FLIGHT, soft // 8))


def _gate() -> asyncio.Semaphore:
    """The bound on DNS queries in flight in the running loop (`_gate_size`)."""
    loop = asyncio.get_running_loop()
    gate = _GATES.get(loop)
    if gate is None:
        gate = _GATES[loop] = asyncio.Semaphore(_gate_size())
    return gate


_UNREACHABLE_ERRNOS = frozenset({errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ENETDOWN,
                                 errno.EHOSTDOWN, errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT})
_OUT_OF_FILES = frozenset({errno.EMFILE, errno.ENFILE})
_FINAL_RCODES = frozenset({dns.rcode.NOERROR, dns.rcode.NXDOMAIN, dns.rcode.YXDOMAIN})


def _errno_name(exc: OSError) -> str:
    return errno.errorcode.get(exc.errno or 0, str(exc.errno))


@dataclass(slots=True)
class _Server:
    """One server's part in one query."""

    address: str
    port: int
    transport: asyncio.DatagramTransport | None = None
    out: str = ""  # why it is out of the query: "refused", "answered", "unreachable", "local"
    said: str = ""  # the same in words, for the failure detail
    ignored: int = 0  # replies that did not fit the query (forged, junk, another question)

    @property
    def text(self) -> str:
        return _server_text(self.address, self.port)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
            self.transport = None


class _Exchange:
    """One query's outcome: the first fitting final answer, or every server out."""

    def __init__(self, servers: list[_Server]) -> None:
        self.servers = servers
        self.done: asyncio.Future[tuple[_Server, dns.message.Message] | None] = (
            asyncio.get_running_loop().create_future())
        # Set when a server drops out, so the next one is asked at once, not after its turn.
        self.dropped = asyncio.Event()

    def reply(self, server: _Server, reply: dns.message.Message) -> None:
        if self.done.done() or server.out:
            return
        rcode = reply.rcode()
        if reply.flags & dns.flags.TC or rcode in _FINAL_RCODES:
            self.done.set_result((server, reply))
            return
        # SERVFAIL, REFUSED, NOTIMP, FORMERR: this server has nothing; another may. RFC 1035
        # 4.1.1: REFUSED is a policy answer, not an outage.
        text = dns.rcode.to_text(rcode)
        note = " (the server refused to answer)" if rcode == dns.rcode.REFUSED else ""
        self._out(server, "answered", f"answered {text}{note}")

    def error(self, server: _Server, exc: Exception) -> None:
        if self.done.done() or server.out:
            return
        if isinstance(exc, ConnectionRefusedError) or (
                isinstance(exc, OSError) and exc.errno == errno.ECONNREFUSED):
            # ICMP port unreachable on the connected socket: nothing listens there.
            self._out(server, "refused", "refused the query (nothing listens there)")
        elif isinstance(exc, OSError) and exc.errno in _OUT_OF_FILES:
            self._out(server, "local", f"cannot be asked: {exc.strerror or exc} on this "
                                       f"machine ({_errno_name(exc)})")
        elif isinstance(exc, OSError) and exc.errno in _UNREACHABLE_ERRNOS:
            self._out(server, "unreachable", f"unreachable: {exc.strerror or exc}")
        else:
            self._out(server, "unreachable", f"cannot be asked: {_reason(exc)}")

    def _out(self, server: _Server, why: str, said: str) -> None:
        server.out, server.said = why, said
        server.close()
        self.dropped.set()
        if all(s.out for s in self.servers) and not self.done.done():
            self.done.set_result(None)


def _header_says_truncated(data: bytes, query: dns.message.Message) -> bool:
    # A truncated reply may not parse past its header; the header alone says TC.
    if len(data) < 12:
        return False
    ident, flags = struct.unpack("!HH", data[:4])
    return ident == query.id and bool(flags & dns.flags.QR) and bool(flags & dns.flags.TC)


class _Listener(asyncio.DatagramProtocol):
    """Reads one server's socket for one query."""

    def __init__(self, query: dns.message.Message, server: _Server,
                 exchange: _Exchange) -> None:
        self.query, self.server, self.exchange = query, server, exchange

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        try:
            reply = dns.message.from_wire(data, ignore_trailing=True)
        except Exception:  # noqa: BLE001 - whatever a server sends is data, junk included
            if _header_says_truncated(data, self.query):
                reply = dns.message.make_response(self.query)
                reply.flags |= dns.flags.TC
                self.exchange.reply(self.server, reply)
            else:
                self.server.ignored += 1
            return
        if not self.query.is_response(reply):
            self.server.ignored += 1  # another id (forged?) or another question
            return
        self.exchange.reply(self.server, reply)

    def error_received(self, exc: Exception) -> None:
        self.exchange.error(self.server, exc)


@dataclass(frozen=True, slots=True)
class _Ctx:
    servers: tuple[tuple[str, int], ...]
    text: str  # the servers, for failure details
    timeout: float


@dataclass(frozen=True, slots=True)
class _Answer:
    canonical_name: dns.name.Name  # where the CNAME chain (if any) ended
    rrset: dns.rrset.RRset | None  # the records of the asked type there, None for NODATA
    authenticated: bool = False  # the AD bit of the answer (RFC 4035 3.2.3)


async def _ask(ctx: _Ctx, name: dns.name.Name,
               rdtype: dns.rdatatype.RdataType, *, dnssec: bool = False) -> _Answer | Failure:
    """One question to the servers, within ctx.timeout; every outcome is a value."""
    query = _Query(name.to_text(omit_final_dot=True), dns.rdatatype.to_text(rdtype), ctx.text,
                   ctx.timeout)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + ctx.timeout
    gate = _gate()
    try:
        async with asyncio.timeout_at(deadline):
            await gate.acquire()
    except TimeoutError:
        return Failure(FailureKind.DNS_TIMEOUT,
                       f"{query.what}: not asked within {ctx.timeout:g} s: "
                       f"{MAX_QUERIES_IN_FLIGHT} other DNS queries were waiting for answers")
    try:
        async with asyncio.timeout_at(deadline + _GRACE):
            return await _exchange(ctx, name, rdtype, query, deadline, dnssec=dnssec)
    except TimeoutError:
        return Failure(FailureKind.DNS_TIMEOUT,
                       f"{query.what}: no answer from {ctx.text} within {ctx.timeout:g} s")
    except Exception as exc:  # noqa: BLE001 - the table maps every failure of the exchange
        return _translate(exc, query)
    finally:
        gate.release()


async def _exchange(ctx: _Ctx, name: dns.name.Name, rdtype: dns.rdatatype.RdataType,
                    query: _Query, deadline: float, *, dnssec: bool = False) -> _Answer | Failure:
    loop = asyncio.get_running_loop()
    message = dns.message.make_query(name, rdtype, use_edns=0, payload=_EDNS_PAYLOAD,
                                     want_dnssec=dnssec)
    if dnssec:
        # Ask for the AD bit without the signatures' weight (RFC 6840 5.7).
        message.flags |= dns.flags.AD
    wire = message.to_wire()
    servers = [_Server(address, port) for address, port in ctx.servers]
    exchange = _Exchange(servers)
    # Split the budget so a silent first server still leaves time to ask the others.
    per_try = min(_PER_SERVER_TRY, ctx.timeout / len(servers))
    try:
        turn = 0
        while not exchange.done.done() and loop.time() < deadline:
            server = servers[turn % len(servers)]
            turn += 1
            if server.out:
                continue  # (all out: `done` is set)
            exchange.dropped.clear()
            await _send(server, wire, message, exchange)
            left = deadline - loop.time()
            if left > 0 and not exchange.done.done() and not exchange.dropped.is_set():
                dropped = asyncio.ensure_future(exchange.dropped.wait())
                try:
                    await asyncio.wait((exchange.done, dropped), timeout=min(per_try, left),
                                       return_when=asyncio.FIRST_COMPLETED)
                finally:
                    dropped.cancel()
        outcome = exchange.done.result() if exchange.done.done() else None
        if outcome is None:
            return _no_answer(query, servers)
        server, reply = outcome
        for other in servers:
            other.close()
        if reply.flags & dns.flags.TC:
            # RFC 7766 5: too big for UDP: the same server over TCP, in the time left.
            reply_or_failure = await _over_tcp(message, server, query, deadline - loop.time())
            if isinstance(reply_or_failure, Failure):
                return reply_or_failure
            reply = reply_or_failure
        return _answer_from(reply, server, query)
    finally:
        for server in servers:
            server.close()


async def _send(server: _Server, wire: bytes, message: dns.message.Message,
                exchange: _Exchange) -> None:
    if server.transport is None:
        loop = asyncio.get_running_loop()
        try:
            # Connected, so the kernel drops datagrams from anyone else and reports ICMP
            # errors (port unreachable) to this socket.
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _Listener(message, server, exchange),
                remote_addr=(server.address, server.port))
        except OSError as exc:
            exchange.error(server, exc)
            return
        if exchange.done.done():
            transport.close()
            return
        server.transport = transport
    server.transport.sendto(wire)


async def _over_tcp(message: dns.message.Message, server: _Server, query: _Query,
                    left: float) -> dns.message.Message | Failure:
    where = f"{server.text} sent a truncated answer"
    if left <= 0:
        return Failure(FailureKind.DNS_TIMEOUT, f"{query.what}: {where} and no time was left "
                       f"to ask over TCP within {query.timeout:g} s")
    try:
        reply = await dns.asyncquery.tcp(message, server.address, timeout=left,
                                         port=server.port)
    except (dns.exception.Timeout, TimeoutError):
        return Failure(FailureKind.DNS_TIMEOUT, f"{query.what}: {where}, and no answer came "
                       f"over TCP within {query.timeout:g} s")
    except OSError as exc:
        if exc.errno in _OUT_OF_FILES:
            return Failure(FailureKind.LOCAL, f"{query.what}: {where}; asking over TCP is not "
                           f"possible: {exc.strerror or exc} on this machine "
                           f"({_errno_name(exc)})")
        return Failure(FailureKind.DNS_SERVFAIL, f"{query.what}: {where}, and over TCP it "
                       f"could not be asked: {exc.strerror or _reason(exc)}")
    except (EOFError, dns.exception.DNSException) as exc:
        return Failure(FailureKind.DNS_SERVFAIL, f"{query.what}: {where}, and its answer over "
                       f"TCP was unusable: {_reason(exc)}")
    if not message.is_response(reply):
        return Failure(FailureKind.DNS_SERVFAIL, f"{query.what}: {where}, and over TCP it sent "
                       f"an answer to another question")
    if reply.rcode() not in _FINAL_RCODES:
        return Failure(FailureKind.DNS_SERVFAIL, f"{query.what}: {where}, and over TCP it "
                       f"answered {dns.rcode.to_text(reply.rcode())}")
    return reply


def _answer_from(reply: dns.message.Message, server: _Server,
                 query: _Query) -> _Answer | Failure:
    rcode = reply.rcode()
    if rcode == dns.rcode.NXDOMAIN:
        return Failure(FailureKind.DNS_NXDOMAIN, f"{query.what}: {server.text} answered "
                       f"NXDOMAIN, {query.name} does not exist")
    if rcode == dns.rcode.YXDOMAIN:
        return Failure(FailureKind.DNS_SERVFAIL, f"{query.what}: {server.text} answered "
                       f"YXDOMAIN (name too long)")
    if not isinstance(reply, dns.message.QueryMessage):
        return Failure(FailureKind.DNS_SERVFAIL, f"{query.what}: {server.text} sent a message "
                       f"that is not an answer to a query")
    try:
        chain = reply.resolve_chaining()
    except Exception as exc:  # noqa: BLE001 - a CNAME loop, a chain too long: the server's
        return Failure(FailureKind.DNS_SERVFAIL, f"{query.what}: {server.text} sent an answer "
                       f"that cannot be used: {_reason(exc)}")
    return _Answer(chain.canonical_name, chain.answer, bool(reply.flags & dns.flags.AD))


def _no_answer(query: _Query, servers: list[_Server]) -> Failure:
    """Why no server answered: the resolver's own refusal, this machine, the network, the
    domain's servers (their rcode), or silence."""
    silent = [s for s in servers if not s.out]
    ignored = sum(s.ignored for s in servers)
    said = [f"{s.text} {s.said}" for s in servers if s.out]
    if silent:
        head = f"no answer from {', '.join(s.text for s in silent)} within {query.timeout:g} s"
        if ignored:
            head += (f" (ignored {ignored} {'reply' if ignored == 1 else 'replies'} that did "
                     f"not fit the query)")
        return Failure(FailureKind.DNS_TIMEOUT, f"{query.what}: " + "; ".join([head, *said]))
    why = {s.out for s in servers}
    if "answered" in why:
        return Failure(FailureKind.DNS_SERVFAIL, f"{query.what}: " + "; ".join(said))
    if why == {"refused"}:
        names = ", ".join(s.text for s in servers)
        which = "the resolver" if len(servers) == 1 else "the resolvers"
        return Failure(FailureKind.DNS_RESOLVER_REFUSED,
                       f"{query.what}: {which} {names} refused the query (nothing listens "
                       f"there)")
    if why == {"local"}:
        return Failure(FailureKind.LOCAL, f"{query.what}: " + "; ".join(said))
    return Failure(FailureKind.UNREACHABLE,
                   f"{query.what}: no nameserver reachable: " + "; ".join(said))


def _nameservers(nameservers: Sequence[tuple[str, int]] | None) -> tuple[tuple[str, int], ...]:
    """The servers to ask: the given ones (checked), or this machine's (resolv.conf)."""
    if nameservers is None:
        # Raises NoResolverConfiguration when there is none; the callers make that data.
        resolver = dns.resolver.Resolver(configure=True)
        found: list[tuple[str, int]] = []
        for server in resolver.nameservers:
            if isinstance(server, dns.nameserver.Do53Nameserver):
                found.append((server.address, server.port))
            elif isinstance(server, str):
                found.append((server, resolver.port))
        if not found:
            raise dns.resolver.NoResolverConfiguration  # no plain DNS server among them
        return tuple(found)
    if not nameservers:
        raise ValueError("no nameservers given")
    checked: list[tuple[str, int]] = []
    for address, port in nameservers:
        ipaddress.ip_address(address)
        if not 1 <= port <= 65535:
            raise ValueError(f"nameserver port {port} is outside 1-65535")
        checked.append((str(ipaddress.ip_address(address)), port))
    return tuple(checked)


def _context(nameservers: Sequence[tuple[str, int]] | None, timeout: float) -> _Ctx:
    servers = _nameservers(nameservers)
    return _Ctx(servers, ", ".join(_server_text(a, p) for a, p in servers), timeout)


# -- host addresses --------------------------------------------------------------------------


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
        _ask(ctx, name, dns.rdatatype.AAAA), _ask(ctx, name, dns.rdatatype.A)
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
            found[rtype] = [str(ipaddress.ip_address(rdata.address)) for rdata in outcome.rrset]
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


async def _look_up_hosts(ctx: _Ctx, targets: Sequence[tuple[str, dns.name.Name]], *,
                         allow_private: bool) -> dict[dns.name.Name, _Addresses]:
    """The addresses of `targets` (host text, name) in preference order: at most
    MX_ADDRESS_LIMIT hosts at a time, MX_LOOKUP_LIMIT in all, none started once the finished
    ones have MX_ADDRESS_LIMIT usable addresses, all within one ctx.timeout."""
    loop = asyncio.get_running_loop()
    ends = loop.time() + ctx.timeout
    waiting = list(targets[:MX_LOOKUP_LIMIT])
    waiting.reverse()  # pop() takes the most preferred
    running: dict[asyncio.Task[_Addresses], tuple[str, dns.name.Name]] = {}
    results: dict[dns.name.Name, _Addresses] = {}
    usable = 0
    try:
        while True:
            while waiting and len(running) < MX_ADDRESS_LIMIT - usable:
                left = ends - loop.time()
                if left <= 0.01:
                    waiting.clear()
                    break
                host, target = waiting.pop()
                share = dataclasses.replace(ctx, timeout=min(ctx.timeout, left))
                running[asyncio.ensure_future(_addresses(share, target))] = (host, target)
            if not running:
                break
            finished, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            for task in finished:
                host, target = running.pop(task)
                found = results[target] = task.result()
                usable += len(_screen(host, found.addresses, allow_private=allow_private).usable)
    finally:
        for task in running:
            task.cancel()
    return results


_Entry = tuple[int, str, _Addresses | Failure | None, bool]  # pref, host, found, implicit


def _assemble(entries: Sequence[_Entry], *, owner: str, allow_private: bool,
              per: str) -> tuple[list[MxHost], list[Failure]]:
    """Hosts with their usable addresses, at most MX_ADDRESS_LIMIT in all, and warnings for
    what was left out. `found` None: the host was not looked up (a limit)."""
    hosts: list[MxHost] = []
    warnings: list[Failure] = []
    room = MX_ADDRESS_LIMIT
    not_tried: list[str] = []
    cut: list[str] = []
    for pref, host, found, implicit in entries:
        if found is None:
            not_tried.append(host)
            continue
        if isinstance(found, Failure):
            hosts.append(MxHost(host, pref, failure=found, implicit=implicit))
            continue
        if not found.addresses:
            hosts.append(MxHost(host, pref, failure=found.failure, implicit=implicit))
            continue
        screened = _screen(host, found.addresses, allow_private=allow_private)
        if not screened.usable:
            first, *rest = screened.notes
            hosts.append(MxHost(host, pref, failure=first, implicit=implicit))
            warnings.extend(rest)
            continue
        warnings.extend(screened.notes)
        if room == 0:
            not_tried.append(host)
            continue
        kept = screened.usable[:room]
        room -= len(kept)
        if len(kept) < len(screened.usable):
            cut.append(f"{len(screened.usable) - len(kept)} of the {len(screened.usable)} "
                       f"addresses of {host}")
        hosts.append(MxHost(host, pref, kept, implicit=implicit))
    if not_tried or cut:
        parts = [f"{part} were not tried" for part in cut]
        if not_tried:
            verb = "was" if len(not_tried) == 1 else "were"
            parts.insert(0, f"{len(not_tried)} of its {len(entries)} MX hosts {verb} not "
                            f"tried ({_listed(not_tried)})")
        warnings.append(Failure(FailureKind.MX_LIMIT,
                                f"{owner}: {'; '.join(parts)}: smtpprobe tries at most "
                                f"{MX_ADDRESS_LIMIT} addresses {per} (as Postfix's "
                                f"smtp_mx_address_limit) and looks up at most "
                                f"{MX_LOOKUP_LIMIT} MX hosts"))
    return hosts, warnings


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
    allow_private: bool = False,
) -> MxResult:
    """The mail hosts of `domain` with the addresses to try, or why there are none.

    `nameservers=None` uses this machine's resolver configuration. At most MX_ADDRESS_LIMIT
    addresses come back; unusable addresses never, private ones of public names only with
    `allow_private` (the warnings say what was left out). Raises ValueError only for bad
    arguments (an invalid domain, a bad nameserver); DNS problems come back as failures.
    """
    ascii_domain = to_ascii_domain(domain)
    if not timeout > 0:
        raise ValueError("timeout must be positive")
    started = time.perf_counter()
    rng = rng if rng is not None else random.Random()

    def done(
        hosts: Sequence[MxHost] = (),
        failure: Failure | None = None,
        warnings: Sequence[Failure] = (),
    ) -> MxResult:
        elapsed = (time.perf_counter() - started) * 1000
        return MxResult(ascii_domain, tuple(hosts), failure, elapsed, tuple(warnings))

    try:
        ctx = _context(nameservers, timeout)
    except dns.resolver.NoResolverConfiguration as exc:
        return done(failure=_translate(exc, _Query(ascii_domain, "MX", "none", timeout)))
    qname = dns.name.from_text(ascii_domain, origin=dns.name.root)

    mx = await _ask(ctx, qname, dns.rdatatype.MX)
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
        hosts, notes = _assemble([(0, ascii_domain, own, True)], owner=ascii_domain,
                                 allow_private=allow_private, per="per domain")
        return done(hosts=hosts, warnings=notes)

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
    to_resolve = [(target.to_text(omit_final_dot=True), target) for _pref, target in ordered
                  if _ip_target(target) is None]
    by_target = await _look_up_hosts(ctx, to_resolve, allow_private=allow_private)

    entries: list[_Entry] = []
    for pref, target in ordered:
        host = target.to_text(omit_final_dot=True)
        ip = _ip_target(target)
        if ip is not None:
            # RFC 5321 5.1: an MX names a host; an address written as a name is not used.
            detail = f"{ascii_domain} MX {pref} names the address {ip} instead of a host name"
            entries.append((pref, host, Failure(FailureKind.MX_IS_IP, detail), False))
            continue
        found = by_target.get(target)
        if found is not None and found.via_cname is not None:
            # RFC 2181 10.3 / RFC 5321 5.1: an MX target must not be an alias.
            detail = f"{ascii_domain} MX {pref} {host} is a CNAME for {found.via_cname}"
            warnings.append(Failure(FailureKind.MX_IS_CNAME, detail))
        entries.append((pref, host, found, False))
    hosts, notes = _assemble(entries, owner=ascii_domain, allow_private=allow_private,
                             per="per domain")
    return done(hosts=hosts, warnings=[*warnings, *notes])


async def resolve_server(
    host: str,
    *,
    nameservers: Sequence[tuple[str, int]] | None = None,
    timeout: float = 5.0,
    allow_private: bool = False,
) -> MxResult:
    """The addresses of one named mail server (`--server NAME`, sweep, relay), A and AAAA at
    once, screened and limited as `resolve_mx` does: an MxResult with the one host (preference
    0), `warnings` for what was left out, and `failure` (the host's) when no address is left.

    No MX lookup and no /etc/hosts: the name is asked of DNS as given. It ends within
    timeout + _GRACE.
    """
    ascii_host = to_ascii_domain(host)
    if not timeout > 0:
        raise ValueError("timeout must be positive")
    started = time.perf_counter()
    try:
        ctx = _context(nameservers, timeout)
    except dns.resolver.NoResolverConfiguration as exc:
        failure = _translate(exc, _Query(ascii_host, "A", "none", timeout))
        return MxResult(ascii_host, (MxHost(ascii_host, 0, failure=failure),), failure,
                        (time.perf_counter() - started) * 1000)
    found = await _addresses(ctx, dns.name.from_text(ascii_host, origin=dns.name.root))
    hosts, notes = _assemble([(0, ascii_host, found, False)], owner=ascii_host,
                             allow_private=allow_private, per="of a host")
    return MxResult(ascii_host, tuple(hosts), hosts[0].failure,
                    (time.perf_counter() - started) * 1000, tuple(notes))


async def resolve_host(
    host: str,
    *,
    nameservers: Sequence[tuple[str, int]] | None = None,
    timeout: float = 5.0,
    allow_private: bool = False,
) -> MxHost:
    """`resolve_server`'s one host: its usable addresses, or a `failure` when there is none
    (what was left out beside usable addresses is only in `resolve_server`'s warnings)."""
    result = await resolve_server(host, nameservers=nameservers, timeout=timeout,
                                  allow_private=allow_private)
    return result.hosts[0]


# -- any record type (domain checks, lookups in findings) -----------------------------------


@dataclass(frozen=True, slots=True)
class Records:
    """The answer to one question, NXDOMAIN and NODATA included: they are answers too."""

    name: str  # what was asked, ASCII, no final dot
    rdtype: str  # "TXT", "TLSA", ...
    exists: bool  # False: NXDOMAIN
    records: tuple[str, ...]  # presentation form; TXT: the strings of each record joined
    rdata: tuple[object, ...]  # dnspython's rdata objects (TLSA fields, MX preference ...)
    authenticated: bool  # AD bit from a validating resolver (RFC 4035 3.2.3)
    canonical_name: str  # where a CNAME chain ended (== name without one)


def _presentation(rdata: object) -> str:
    strings = getattr(rdata, "strings", None)
    if strings is not None and dns.rdatatype.TXT in (getattr(rdata, "rdtype", None),
                                                     dns.rdatatype.SPF):
        # RFC 7208 3.3 / RFC 6376 3.6.2.2: the character-strings of one TXT record join
        # without spaces.
        return b"".join(strings).decode("utf-8", "replace")
    return str(rdata.to_text()) if hasattr(rdata, "to_text") else str(rdata)


async def lookup(
    name: str,
    rdtype: str,
    *,
    nameservers: Sequence[tuple[str, int]] | None = None,
    timeout: float = 5.0,
    dnssec: bool = False,
) -> Records | Failure:
    """Ask for `rdtype` records of `name` (a domain name or, for PTR, an IP address).

    NXDOMAIN comes back as `Records(exists=False)`, NODATA as an empty `records`; only a
    question that got no usable answer is a `Failure` (timeout, SERVFAIL, refusing resolver).
    `dnssec=True` asks a validating resolver for the AD bit; it is only as trustworthy as the
    path to that resolver (RFC 6698 4.1: use one on this machine or over a secure channel).
    """
    try:
        kind = dns.rdatatype.from_text(rdtype.upper())
    except dns.rdatatype.UnknownRdatatype:
        return Failure(FailureKind.DNS_SERVFAIL, f"unknown DNS record type {rdtype!r}")
    try:
        if kind == dns.rdatatype.PTR and is_ip(name):
            qname = dns.reversename.from_address(name)
        else:
            # Service labels (_dmarc, _25._tcp, _mta-sts) are not host names: no LDH rule here.
            text = name.strip().rstrip(".")
            qname = _to_name(text, idna=not text.isascii() and dns.name.have_idna_2008)
    except Exception as exc:  # noqa: BLE001 - a name DNS cannot carry is input, not a fault
        return Failure(FailureKind.DNS_NXDOMAIN, f"{name!r} is not a name DNS can look up: "
                       f"{_reason(exc)}")
    try:
        ctx = _context(nameservers, timeout)
    except (ValueError, dns.exception.DNSException) as exc:
        return Failure(FailureKind.LOCAL, f"no usable DNS resolver: {_reason(exc)}")
    asked = qname.to_text(omit_final_dot=True)
    answer = await _ask(ctx, qname, kind, dnssec=dnssec)
    if isinstance(answer, Failure):
        if answer.kind is FailureKind.DNS_NXDOMAIN:
            return Records(asked, rdtype.upper(), False, (), (), False, asked)
        return answer
    items = tuple(answer.rrset) if answer.rrset is not None else ()
    return Records(asked, rdtype.upper(), True, tuple(_presentation(r) for r in items), items,
                   answer.authenticated, answer.canonical_name.to_text(omit_final_dot=True))
