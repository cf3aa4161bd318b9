"""The lab DNS server answers like an authoritative server, checked with dnspython's own client."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from smtpprobe.lab.dns import LabDns, Record

RECORDS = [
    Record("accept.test", "MX", "10 mx1.accept.test."),
    Record("accept.test", "MX", "20 mx2.accept.test"),  # no final dot: still absolute
    Record("mx1.accept.test", "A", "127.0.0.10"),
    Record("mx1.accept.test", "A", "127.0.0.11"),
    Record("mx1.accept.test", "AAAA", "::1"),
    Record("mx2.accept.test", "A", "127.0.0.12", ttl=300),
    Record("null.test", "MX", "0 ."),
    Record("alias.test", "CNAME", "mx1.accept.test."),
    Record("chain.test", "CNAME", "alias.test."),
    Record("dangling.test", "CNAME", "gone.test."),
    Record("outside.test", "CNAME", "mail.example.com."),
    Record("text.test", "TXT", '"v=spf1 -all"'),
    Record("10.0.0.127.in-addr.arpa.test", "PTR", "mx1.accept.test."),
    Record("deep.below.empty.test", "A", "127.0.0.20"),
    Record("slow.test", "A", "127.0.0.30"),
    Record("tc.test", "A", "127.0.0.31"),
    Record("sf.test", "A", "127.0.0.32"),
    Record("partly.test", "A", "127.0.0.33"),
    Record("partly.test", "AAAA", "::1"),
    *(Record("big.test", "TXT", f'"{i:02d}{"x" * 200}"') for i in range(8)),
]
BEHAVIOUR = {
    "sf.test": "servfail",
    "silent.test": "timeout",
    "no.test": "refused",
    "tc.test": "truncate",
    "slow.test": "delay:0.2",
    "partly.test/AAAA": "servfail",
}


@pytest.fixture
async def lab(lab_dns: Callable[..., Awaitable[LabDns]]) -> LabDns:
    return await lab_dns(RECORDS, behaviour=BEHAVIOUR)


async def udp(lab: LabDns, name: str, rtype: str, timeout: float = 2.0) -> dns.message.Message:
    host, port = lab.address
    return await dns.asyncquery.udp(
        dns.message.make_query(name, rtype), host, port=port, timeout=timeout
    )


async def tcp(lab: LabDns, name: str, rtype: str) -> dns.message.Message:
    host, port = lab.address
    return await dns.asyncquery.tcp(
        dns.message.make_query(name, rtype), host, port=port, timeout=2.0
    )


def texts(section: Iterable[dns.rrset.RRset]) -> list[str]:
    return [line for rrset in section for line in rrset.to_text().splitlines()]


async def test_mx_answer_is_authoritative(lab: LabDns) -> None:
    response = await udp(lab, "accept.test", "MX")
    assert response.rcode() == dns.rcode.NOERROR
    assert response.flags & dns.flags.AA
    assert sorted(texts(response.answer)) == [
        "accept.test. 60 IN MX 10 mx1.accept.test.",
        "accept.test. 60 IN MX 20 mx2.accept.test.",
    ]
    assert lab.queries == [("accept.test", "MX")]


async def test_address_records_and_ttl(lab: LabDns) -> None:
    a = await udp(lab, "mx1.accept.test", "A")
    assert sorted(texts(a.answer)) == [
        "mx1.accept.test. 60 IN A 127.0.0.10",
        "mx1.accept.test. 60 IN A 127.0.0.11",
    ]
    aaaa = await udp(lab, "mx1.accept.test", "AAAA")
    assert texts(aaaa.answer) == ["mx1.accept.test. 60 IN AAAA ::1"]
    # Names match without regard to case (RFC 4343); the answer keeps the asker's spelling.
    mixed = texts((await udp(lab, "MX2.Accept.TEST", "A")).answer)
    assert [line.lower() for line in mixed] == ["mx2.accept.test. 300 in a 127.0.0.12"]


async def test_null_mx_txt_and_ptr(lab: LabDns) -> None:
    assert texts((await udp(lab, "null.test", "MX")).answer) == ["null.test. 60 IN MX 0 ."]
    assert texts((await udp(lab, "text.test", "TXT")).answer) == [
        'text.test. 60 IN TXT "v=spf1 -all"'
    ]
    ptr = await udp(lab, "10.0.0.127.in-addr.arpa.test", "PTR")
    assert texts(ptr.answer) == ["10.0.0.127.in-addr.arpa.test. 60 IN PTR mx1.accept.test."]


async def test_cname_chain_is_followed_inside_the_zone(lab: LabDns) -> None:
    response = await udp(lab, "chain.test", "A")
    assert response.rcode() == dns.rcode.NOERROR
    answer = texts(response.answer)
    assert answer[:2] == [
        "chain.test. 60 IN CNAME alias.test.",
        "alias.test. 60 IN CNAME mx1.accept.test.",
    ]
    assert sorted(answer[2:]) == [
        "mx1.accept.test. 60 IN A 127.0.0.10",
        "mx1.accept.test. 60 IN A 127.0.0.11",
    ]
    # Asking for the CNAME itself gives just the CNAME.
    own = await udp(lab, "alias.test", "CNAME")
    assert texts(own.answer) == ["alias.test. 60 IN CNAME mx1.accept.test."]


async def test_cname_to_missing_or_foreign_name(lab: LabDns) -> None:
    dangling = await udp(lab, "dangling.test", "A")
    # RFC 6604: the rcode is about the last name of the chain.
    assert dangling.rcode() == dns.rcode.NXDOMAIN
    assert texts(dangling.answer) == ["dangling.test. 60 IN CNAME gone.test."]
    assert dangling.authority[0].rdtype == dns.rdatatype.SOA
    outside = await udp(lab, "outside.test", "A")
    assert outside.rcode() == dns.rcode.NOERROR
    assert texts(outside.answer) == ["outside.test. 60 IN CNAME mail.example.com."]
    assert lab.queries == [("dangling.test", "A"), ("outside.test", "A")]  # nothing forwarded


async def test_nxdomain_and_nodata_carry_the_soa(lab: LabDns) -> None:
    missing = await udp(lab, "nothing-here.test", "MX")
    assert missing.rcode() == dns.rcode.NXDOMAIN
    assert missing.flags & dns.flags.AA
    assert not missing.answer
    assert texts(missing.authority) == [
        "test. 60 IN SOA ns.test. hostmaster.test. 1 3600 600 86400 60"
    ]
    nodata = await udp(lab, "mx2.accept.test", "AAAA")
    assert nodata.rcode() == dns.rcode.NOERROR
    assert not nodata.answer
    assert nodata.authority[0].rdtype == dns.rdatatype.SOA
    # RFC 8020: a name with records only below it exists.
    empty = await udp(lab, "below.empty.test", "A")
    assert empty.rcode() == dns.rcode.NOERROR
    assert not empty.answer


async def test_apex_soa_and_ns(lab: LabDns) -> None:
    assert texts((await udp(lab, "test", "NS")).answer) == ["test. 60 IN NS ns.test."]
    assert (await udp(lab, "test", "SOA")).answer[0].rdtype == dns.rdatatype.SOA


async def test_names_outside_the_zone_are_refused(lab: LabDns) -> None:
    response = await udp(lab, "example.com", "MX")
    assert response.rcode() == dns.rcode.REFUSED
    assert not response.flags & dns.flags.AA
    assert not response.answer


async def test_behaviour_servfail_refused_and_per_type(lab: LabDns) -> None:
    assert (await udp(lab, "sf.test", "A")).rcode() == dns.rcode.SERVFAIL
    assert (await udp(lab, "no.test", "MX")).rcode() == dns.rcode.REFUSED
    partly_a = await udp(lab, "partly.test", "A")
    assert texts(partly_a.answer) == ["partly.test. 60 IN A 127.0.0.33"]
    assert (await udp(lab, "partly.test", "AAAA")).rcode() == dns.rcode.SERVFAIL


async def test_behaviour_timeout_never_answers(lab: LabDns) -> None:
    with pytest.raises(dns.exception.Timeout):
        await udp(lab, "silent.test", "A", timeout=0.3)
    with pytest.raises(dns.exception.Timeout):
        host, port = lab.address
        await dns.asyncquery.tcp(
            dns.message.make_query("silent.test", "A"), host, port=port, timeout=0.3
        )
    # The server is still fine afterwards.
    assert (await udp(lab, "accept.test", "MX")).answer
    assert lab.queries.count(("silent.test", "A")) == 2


async def test_behaviour_truncate_sends_the_client_to_tcp(lab: LabDns) -> None:
    over_udp = await udp(lab, "tc.test", "A")
    assert over_udp.flags & dns.flags.TC
    assert not over_udp.answer
    over_tcp = await tcp(lab, "tc.test", "A")
    assert not over_tcp.flags & dns.flags.TC
    assert texts(over_tcp.answer) == ["tc.test. 60 IN A 127.0.0.31"]
    host, port = lab.address
    response, used_tcp = await dns.asyncquery.udp_with_fallback(
        dns.message.make_query("tc.test", "A"), host, port=port, timeout=2.0
    )
    assert used_tcp
    assert response.answer
    assert lab.tcp_queries == [("tc.test", "A"), ("tc.test", "A")]


async def test_answer_too_big_for_udp_is_truncated(lab: LabDns) -> None:
    host, port = lab.address
    plain = dns.message.make_query("big.test", "TXT", use_edns=False)
    over_udp = await dns.asyncquery.udp(plain, host, port=port, timeout=2.0)
    assert over_udp.flags & dns.flags.TC
    over_tcp = await tcp(lab, "big.test", "TXT")
    assert len(over_tcp.answer[0]) == 8
    # A client announcing a bigger buffer with EDNS (RFC 6891 6.2.3) gets it all over UDP.
    roomy = dns.message.make_query("big.test", "TXT", use_edns=0, payload=4096)
    full = await dns.asyncquery.udp(roomy, host, port=port, timeout=2.0)
    assert not full.flags & dns.flags.TC
    assert len(full.answer[0]) == 8


async def test_delay_counts_queries_in_flight(lab: LabDns) -> None:
    results = await asyncio.gather(*(udp(lab, "slow.test", "A") for _ in range(4)))
    assert all(texts(r.answer) == ["slow.test. 60 IN A 127.0.0.30"] for r in results)
    assert lab.max_in_flight == 4
    assert lab.in_flight == 0


async def test_several_questions_over_one_tcp_connection(lab: LabDns) -> None:
    host, port = lab.address
    reader, writer = await asyncio.open_connection(host, port)
    try:
        for name in ("mx1.accept.test", "mx2.accept.test"):
            wire = dns.message.make_query(name, "A").to_wire()
            writer.write(len(wire).to_bytes(2, "big") + wire)
            await writer.drain()
            size = int.from_bytes(await reader.readexactly(2), "big")
            response = dns.message.from_wire(await reader.readexactly(size))
            assert response.answer[0].name.to_text() == name + "."
    finally:
        writer.close()
        await writer.wait_closed()
    assert lab.tcp_queries == [("mx1.accept.test", "A"), ("mx2.accept.test", "A")]


async def test_garbage_is_ignored(lab: LabDns) -> None:
    host, port = lab.address
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        asyncio.DatagramProtocol, remote_addr=(host, port)
    )
    transport.sendto(b"\x00\x01not dns at all")
    transport.close()
    assert (await udp(lab, "accept.test", "MX")).answer
    assert lab.queries == [("accept.test", "MX")]


async def test_close_with_a_query_still_pending() -> None:
    server = LabDns(RECORDS, behaviour={"slow.test": "delay:30"})
    await server.start()
    host, port = server.address
    reader, writer = await asyncio.open_connection(host, port)
    wire = dns.message.make_query("slow.test", "A").to_wire()
    writer.write(len(wire).to_bytes(2, "big") + wire)
    await writer.drain()
    pending = asyncio.create_task(udp(server, "slow.test", "A", timeout=30))
    while server.in_flight < 2:
        await asyncio.sleep(0.01)
    await server.close()
    assert await reader.read() == b""  # the server hung up without answering
    writer.close()
    pending.cancel()
    with pytest.raises(asyncio.CancelledError):
        await pending
    assert server.in_flight == 0


async def test_other_loopback_address_and_fixed_port() -> None:
    async with LabDns(RECORDS, host="127.0.0.2") as first:
        assert first.address[0] == "127.0.0.2"
        port = first.address[1]
    async with LabDns(RECORDS, host="127.0.0.2", port=port) as again:
        assert again.address == ("127.0.0.2", port)
        assert (await udp(again, "accept.test", "MX")).answer


async def test_address_before_start_is_an_error() -> None:
    with pytest.raises(RuntimeError):
        LabDns(RECORDS).address  # noqa: B018


@pytest.mark.parametrize(
    ("records", "kwargs", "message"),
    [
        ([Record("mx.example.com", "A", "127.0.0.1")], {}, "outside the zone"),
        ([Record("a.test", "A", "not-an-address")], {}, "bad record"),
        ([Record("a.test", "BOGUS", "1")], {}, "bad record"),
        ([Record("a.test", "MX", "ten mx.test.")], {}, "bad record"),
        (
            [Record("a.test", "CNAME", "b.test."), Record("a.test", "A", "127.0.0.1")],
            {},
            "CNAME and other",
        ),
        ([], {"behaviour": {"a.test": "explode"}}, "unknown behaviour"),
        ([], {"behaviour": {"a.test": "delay:soon"}}, "bad delay"),
        ([], {"behaviour": {"a.test": "delay:-1"}}, "out of range"),
        ([], {"host": "192.0.2.1"}, "loopback only"),
    ],
)
def test_bad_setup_is_refused_early(
    records: list[Record], kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        LabDns(records, **kwargs)  # type: ignore[arg-type]
