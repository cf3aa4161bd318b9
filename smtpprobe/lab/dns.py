"""A small authoritative DNS server on loopback, for tests, demos and benchmarks.

It answers from a fixed list of records for one zone over UDP and TCP on the same port, inside
the caller's event loop. It never recurses and never forwards: names outside its zone get
REFUSED. Per-name behaviours let tests provoke the failures real servers produce (SERVFAIL,
silence, REFUSED, truncation, slow answers) and what hostile or broken ones do: an answer that
comes only once and late, forged replies with the wrong query id, junk datagrams before the
real answer. `unused_udp_port` gives a port where nothing listens (a resolver that "refuses"
with ICMP port unreachable), `many_mx` the records of a domain with hundreds of MX hosts.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import struct
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset

__all__ = ["BEHAVIOURS", "LabDns", "Record", "many_mx", "unused_udp_port"]

# Besides these, "delay:SECONDS" (answer every query after that pause) and "late:SECONDS"
# (answer only the first query for the name after that pause; repeats, with the same query id
# or a new one, get nothing, as from a server that drops duplicates of a query it is working
# on) are accepted.
# "wrong-id": over UDP a forged NXDOMAIN with another query id comes first, the real answer
# 50 ms later (a client that does not check the id believes the forgery).
# "junk": over UDP bytes that are not DNS and an answer to another question come first, the
# real answer 50 ms later.
BEHAVIOURS = frozenset({"servfail", "timeout", "refused", "truncate", "wrong-id", "junk"})
_TIMED = ("delay", "late")
# How long the decoys of "wrong-id" and "junk" come before the real answer.
_DECOY_LEAD = 0.05

# RFC 1034 3.6.2: a CNAME chain longer than this is treated as a loop.
_MAX_CNAME_CHAIN = 8
# RFC 1035 4.2.1: the UDP limit for a client that did not announce a size with EDNS.
_PLAIN_UDP_SIZE = 512


@dataclass(frozen=True)
class Record:
    """One resource record: `value` in zone-file syntax (`"10 mx1.accept.test."`, `"0 ."`)."""

    name: str
    rtype: str
    value: str
    ttl: int = 60


@dataclass(frozen=True)
class _Behaviour:
    # "answer", "late", "servfail", "timeout", "refused", "truncate", "wrong-id", "junk"
    action: str
    delay: float = 0.0


def _parse_behaviour(spec: str) -> _Behaviour:
    spec = spec.strip().lower()
    kind, colon, value = spec.partition(":")
    if colon and kind in _TIMED:
        try:
            delay = float(value)
        except ValueError:
            raise ValueError(f"bad delay in behaviour {spec!r}") from None
        if not 0 <= delay <= 3600:
            raise ValueError(f"delay out of range in behaviour {spec!r}")
        return _Behaviour("answer" if kind == "delay" else "late", delay)
    if spec not in BEHAVIOURS:
        known = ", ".join(sorted(BEHAVIOURS | {f"{k}:SECONDS" for k in _TIMED}))
        raise ValueError(f"unknown behaviour {spec!r} (known: {known})")
    return _Behaviour(spec)


def unused_udp_port(host: str = "127.0.0.1") -> int:
    """A UDP port on loopback `host` where nothing listens: a query sent there is answered by
    the kernel with ICMP port unreachable, as from a resolver address with no DNS service
    (the port was free a moment ago; nothing in the lab takes ports at random but the kernel)."""
    if not ipaddress.ip_address(host).is_loopback:
        raise ValueError(f"only loopback ports, not {host}")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
    return port


def many_mx(domain: str, count: int, *, addresses: Sequence[str] = ("127.0.0.1",),
            first_preference: int = 10) -> list[Record]:
    """The records of a domain with `count` MX hosts `mx0.DOMAIN` ... (preferences rising
    from `first_preference`), each with one A or AAAA record, the `addresses` in turn."""
    if count < 1 or not addresses:
        raise ValueError("many_mx needs at least one host and one address")
    records: list[Record] = []
    for i in range(count):
        host = f"mx{i}.{domain}"
        address = addresses[i % len(addresses)]
        records.append(Record(domain, "MX", f"{first_preference + i} {host}."))
        records.append(Record(host, "AAAA" if ":" in address else "A", address))
    return records


def _being_cancelled() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _abs_name(text: str) -> dns.name.Name:
    # Record names are always absolute, written with or without the final dot.
    return dns.name.from_text(text, origin=dns.name.root)


class LabDns:
    """An authoritative DNS server for `zone` on `host`, used as an async context manager.

    `behaviour` maps a name (`"mx1.slow.test"`) or a name and type (`"mx1.slow.test/AAAA"`,
    more specific wins) to "servfail", "timeout", "refused", "truncate", "wrong-id", "junk",
    "delay:SECONDS" or "late:SECONDS" (see BEHAVIOURS). `zone="."` serves every name, so
    public-looking names (`mx.probe-lab.net`) can sit beside `.test` ones.
    """

    def __init__(
        self,
        records: Iterable[Record],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        zone: str = "test",
        behaviour: Mapping[str, str] | None = None,
    ) -> None:
        if not ipaddress.ip_address(host).is_loopback:
            raise ValueError(f"LabDns listens on loopback only, not {host}")
        self._host = host
        self._port = port
        self.zone = _abs_name(zone)
        self._rrsets: dict[dns.name.Name, dict[dns.rdatatype.RdataType, dns.rrset.RRset]] = {}
        for record in records:
            self._add(record)
        self._add_apex_defaults()
        self._behaviour: dict[tuple[dns.name.Name, dns.rdatatype.RdataType | None], _Behaviour]
        self._behaviour = {}
        for key, spec in (behaviour or {}).items():
            name_text, _, type_text = key.partition("/")
            rdtype = dns.rdatatype.from_text(type_text.upper()) if type_text else None
            self._behaviour[(_abs_name(name_text), rdtype)] = _parse_behaviour(spec)

        self.queries: list[tuple[str, str]] = []  # (name, type) in arrival order, both transports
        self.tcp_queries: list[tuple[str, str]] = []  # the ones that came over TCP
        self.query_ids: list[tuple[str, str, int]] = []  # (name, type, id), as `queries`
        self._answered_late: set[tuple[str, str]] = set()  # "late": answered (or answering)
        # Queries being answered right now (only a "delay" keeps one open), and the peak.
        self.in_flight = 0
        self.max_in_flight = 0
        self._address: tuple[str, int] | None = None
        self._udp_closed: asyncio.Future[None] | None = None
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[Any]] = set()  # TCP connections, never cancelled

    # -- zone data ---------------------------------------------------------------------------

    def _add(self, record: Record) -> None:
        name = _abs_name(record.name)
        if not name.is_subdomain(self.zone):
            raise ValueError(f"record {record.name} is outside the zone {self.zone}")
        try:
            rdtype = dns.rdatatype.from_text(record.rtype.upper())
            rdata = dns.rdata.from_text(
                dns.rdataclass.IN, rdtype, record.value, origin=dns.name.root, relativize=False
            )
        except (dns.exception.DNSException, ValueError) as exc:
            raise ValueError(
                f"bad record {record.name} {record.rtype} {record.value!r}: {exc}"
            ) from None
        by_type = self._rrsets.setdefault(name, {})
        # RFC 2181 10.1: a CNAME owner holds no other data.
        if (rdtype == dns.rdatatype.CNAME and set(by_type) - {rdtype}) or (
            rdtype != dns.rdatatype.CNAME and dns.rdatatype.CNAME in by_type
        ):
            raise ValueError(f"{record.name} cannot hold a CNAME and other records")
        rrset = by_type.get(rdtype)
        if rrset is None:
            rrset = by_type[rdtype] = dns.rrset.RRset(name, dns.rdataclass.IN, rdtype)
        rrset.add(rdata, record.ttl)

    def _add_apex_defaults(self) -> None:
        apex = self._rrsets.setdefault(self.zone, {})
        ns = dns.name.Name(("ns",) + self.zone.labels)
        # Built as names, so the root zone (".") gets "hostmaster." and not "hostmaster..".
        hostmaster = dns.name.Name(("hostmaster",) + self.zone.labels)
        if dns.rdatatype.SOA not in apex:
            soa = dns.rrset.from_text(
                self.zone,
                60,
                "IN",
                "SOA",
                f"{ns} {hostmaster} 1 3600 600 86400 60",
            )
            apex[dns.rdatatype.SOA] = soa
        if dns.rdatatype.NS not in apex:
            apex[dns.rdatatype.NS] = dns.rrset.from_text(self.zone, 60, "IN", "NS", str(ns))

    def _exists(self, name: dns.name.Name) -> bool:
        # RFC 8020: an empty non-terminal (a name with data only below it) exists.
        return any(owner.is_subdomain(name) for owner in self._rrsets)

    def _soa(self) -> dns.rrset.RRset:
        return self._rrsets[self.zone][dns.rdatatype.SOA]

    # -- answering ---------------------------------------------------------------------------

    def _behaviour_for(self, name: dns.name.Name, rdtype: dns.rdatatype.RdataType) -> _Behaviour:
        found = self._behaviour.get((name, rdtype)) or self._behaviour.get((name, None))
        return found or _Behaviour("answer")

    def _answer(self, query: dns.message.Message, behaviour: _Behaviour) -> dns.message.Message:
        response = dns.message.make_response(query)
        if query.opcode() != dns.opcode.QUERY:
            response.set_rcode(dns.rcode.NOTIMP)
            return response
        if len(query.question) != 1:
            response.set_rcode(dns.rcode.FORMERR)
            return response
        question = query.question[0]
        if behaviour.action == "servfail":
            response.set_rcode(dns.rcode.SERVFAIL)
            return response
        if behaviour.action == "refused" or not question.name.is_subdomain(self.zone):
            response.set_rcode(dns.rcode.REFUSED)
            return response
        if question.rdclass not in (dns.rdataclass.IN, dns.rdataclass.ANY):
            response.set_rcode(dns.rcode.REFUSED)
            return response

        response.flags |= dns.flags.AA
        name = question.name
        rdtype = question.rdtype
        for _ in range(_MAX_CNAME_CHAIN):
            by_type = self._rrsets.get(name, {})
            cname = by_type.get(dns.rdatatype.CNAME)
            if cname is not None and rdtype not in (dns.rdatatype.CNAME, dns.rdatatype.ANY):
                # RFC 1034 4.3.2: give the CNAME and go on with its target inside the zone.
                response.answer.append(cname)
                target = cname[0].target
                if not target.is_subdomain(self.zone):
                    return response
                name = target
                continue
            if rdtype == dns.rdatatype.ANY:
                response.answer.extend(by_type.values())
            elif rdtype in by_type:
                response.answer.append(by_type[rdtype])
            if not response.answer or response.answer[-1].name != name:
                # RFC 2308 2.1/2.2: NXDOMAIN or NODATA carry the zone's SOA for caching.
                if not self._exists(name):
                    response.set_rcode(dns.rcode.NXDOMAIN)
                response.authority.append(self._soa())
            return response
        response.set_rcode(dns.rcode.SERVFAIL)  # a CNAME loop
        return response

    def _decoys(self, query: dns.message.Message, behaviour: _Behaviour) -> list[bytes]:
        """What a hostile "wrong-id" or "junk" server sends before its real answer."""
        if behaviour.action == "wrong-id":
            forged = dns.message.make_response(query)
            forged.id = (query.id + 1) % 65536
            forged.set_rcode(dns.rcode.NXDOMAIN)
            return [forged.to_wire()]
        if behaviour.action == "junk":
            other = dns.message.make_query("elsewhere.invalid.", dns.rdatatype.A)
            other.id = query.id
            stray = dns.message.make_response(other)
            stray.set_rcode(dns.rcode.NXDOMAIN)
            return [b"\x00\x01 this is not DNS", query.to_wire()[:7], stray.to_wire()]
        return []

    async def _handle(self, wire: bytes, tcp: bool,
                      send_early: Callable[[bytes], None] | None = None) -> bytes | None:
        try:
            query = dns.message.from_wire(wire)
        except dns.exception.DNSException:
            return None  # not DNS: a real server drops it too
        if query.flags & dns.flags.QR:
            return None
        behaviour = _Behaviour("answer")
        if query.question:
            question = query.question[0]
            asked = (
                question.name.to_text(omit_final_dot=True),
                dns.rdatatype.to_text(question.rdtype),
            )
            self.queries.append(asked)
            self.query_ids.append((*asked, query.id))
            if tcp:
                self.tcp_queries.append(asked)
            behaviour = self._behaviour_for(question.name, question.rdtype)
            if behaviour.action == "late":
                if asked in self._answered_late:
                    return None  # a repeat: dropped
                self._answered_late.add(asked)
        if behaviour.action == "timeout":
            return None
        if send_early is not None:
            decoys = self._decoys(query, behaviour)
            for decoy in decoys:
                send_early(decoy)
            if decoys:
                behaviour = _Behaviour("answer", max(behaviour.delay, _DECOY_LEAD))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if behaviour.delay:
                await asyncio.sleep(behaviour.delay)
        finally:
            self.in_flight -= 1
        if behaviour.action == "truncate" and not tcp:
            response = dns.message.make_response(query)
            response.flags |= dns.flags.TC
            return response.to_wire()
        response = self._answer(query, behaviour)
        if tcp:
            # RFC 7766 8: over TCP the message may be as large as 65535 bytes, whatever the
            # client announced for UDP (make_response copied that into the response).
            try:
                return response.to_wire(max_size=65535)
            except dns.exception.TooBig:
                failed = dns.message.make_response(query)
                failed.set_rcode(dns.rcode.SERVFAIL)
                return failed.to_wire()
        limit = max(query.payload, _PLAIN_UDP_SIZE) if query.edns >= 0 else _PLAIN_UDP_SIZE
        try:
            return response.to_wire(max_size=limit)
        except dns.exception.TooBig:
            # RFC 1035 4.2.1 / RFC 7766 5: too big for UDP -> TC, the client retries over TCP.
            short = dns.message.make_response(query)
            short.flags |= dns.flags.TC | (response.flags & dns.flags.AA)
            return short.to_wire()

    # -- transports --------------------------------------------------------------------------

    def _track(
        self, coro: Coroutine[Any, Any, bytes | None] | Coroutine[Any, Any, None]
    ) -> asyncio.Task[Any]:
        # Keep a reference (the loop holds tasks only weakly) and cancel leftovers on close.
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _udp_reply(self, wire: bytes, addr: tuple[str, int]) -> None:
        def send(data: bytes) -> None:
            if self._udp is not None and not self._udp.is_closing():
                self._udp.sendto(data, addr)

        reply = await self._handle(wire, tcp=False, send_early=send)
        if reply is not None:
            send(reply)

    async def _tcp_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # RFC 1035 4.2.2 / RFC 7766 8: each message has a two-byte length prefix.
        self._writers.add(writer)
        handler = asyncio.current_task()
        if handler is not None:
            self._handlers.add(handler)
            handler.add_done_callback(self._handlers.discard)
        try:
            while True:
                try:
                    header = await reader.readexactly(2)
                    wire = await reader.readexactly(struct.unpack("!H", header)[0])
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                # The answer runs as its own task so close() can cancel a pending "delay"
                # without cancelling this handler, which asyncio's stream server reports.
                work = self._track(self._handle(wire, tcp=True))
                try:
                    reply = await work
                except asyncio.CancelledError:
                    if work.cancelled() and not _being_cancelled():
                        return
                    raise
                if reply is not None:
                    writer.write(struct.pack("!H", len(reply)) + reply)
                    await writer.drain()
        except ConnectionError:
            return
        finally:
            self._writers.discard(writer)
            writer.close()

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) the server listens on, UDP and TCP alike."""
        if self._address is None:
            raise RuntimeError("LabDns is not started")
        return self._address

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        server = self

        class _Udp(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
                server._track(server._udp_reply(data, addr))

            def connection_lost(self, exc: Exception | None) -> None:
                if server._udp_closed is not None and not server._udp_closed.done():
                    server._udp_closed.set_result(None)

        # Port 0: the kernel picks a free UDP port; TCP must get the same number, which may
        # be taken, so try a few times.
        last_error: OSError | None = None
        for _ in range(20):
            self._udp_closed = loop.create_future()
            transport, _proto = await loop.create_datagram_endpoint(
                _Udp, local_addr=(self._host, self._port)
            )
            port = transport.get_extra_info("sockname")[1]
            try:
                tcp = await asyncio.start_server(self._tcp_client, self._host, port)
            except OSError as exc:
                transport.close()
                last_error = exc
                if self._port:
                    raise
                continue
            self._udp, self._tcp = transport, tcp
            self._address = (self._host, port)
            return
        raise OSError(f"no free port for UDP and TCP together on {self._host}") from last_error

    async def close(self) -> None:
        if self._udp is not None:
            self._udp.close()
            self._udp = None
            # The socket is closed a loop turn later; wait so the port is free on return.
            if self._udp_closed is not None:
                await self._udp_closed
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._tcp is not None:
            self._tcp.close()
            # Closing a connection's transport ends its handler (the read sees EOF).
            for writer in list(self._writers):
                writer.close()
            await self._tcp.wait_closed()
            self._tcp = None
        # Let the handlers see EOF and finish before the caller's loop ends.
        if self._handlers:
            await asyncio.wait(self._handlers, timeout=2.0)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
