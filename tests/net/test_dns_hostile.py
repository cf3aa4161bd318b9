"""net/dns against resolvers and zones that misbehave: a resolver address where nothing
listens, late answers, forged and junk replies, addresses no mail client should connect to,
domains with hundreds of MX hosts, and a machine out of file descriptors. Every oddity comes
back as data (a Failure with its own kind and a detail that names what happened)."""

from __future__ import annotations

import asyncio
import errno
import random
import time
from collections.abc import Awaitable, Callable

import pytest

from smtpprobe.core.classify import Classifier
from smtpprobe.core.knowledge.load import KnowledgeBase
from smtpprobe.lab.dns import LabDns, Record, many_mx, unused_udp_port
from smtpprobe.models import Failure, FailureKind, MxResult, Stage
from smtpprobe.net import dns as smtpdns
from smtpprobe.net.dns import (
    MAX_QUERIES_IN_FLIGHT,
    MX_ADDRESS_LIMIT,
    MX_LOOKUP_LIMIT,
    is_special_use,
    resolve_host,
    resolve_mx,
    resolve_server,
)

R = Record
# A root zone, so public-looking names (probe-lab.net) sit beside special-use ones (.test).
RECORDS = [
    R("order.test", "MX", "10 a.hosts.test."),
    R("a.hosts.test", "A", "127.0.0.11"),
    R("late.test", "MX", "10 a.hosts.test."),
    R("slow.test", "MX", "10 a.hosts.test."),
    R("forged.test", "MX", "10 a.hosts.test."),
    R("junk.test", "MX", "10 a.hosts.test."),
    # Addresses nobody may connect to, and loopback/private ones behind public names.
    R("bogus.test", "MX", "10 zero.bogus.test."),
    R("bogus.test", "MX", "20 bcast.bogus.test."),
    R("bogus.test", "MX", "30 mcast.bogus.test."),
    R("bogus.test", "MX", "40 mixed.bogus.test."),
    R("zero.bogus.test", "A", "0.0.0.0"),
    R("zero.bogus.test", "AAAA", "::"),
    R("bcast.bogus.test", "A", "255.255.255.255"),
    R("mcast.bogus.test", "A", "224.0.0.1"),
    R("mcast.bogus.test", "AAAA", "ff02::1"),
    R("mixed.bogus.test", "A", "0.0.0.0"),
    R("mixed.bogus.test", "A", "127.0.0.12"),
    R("mapped.test", "MX", "10 mx.mapped.test."),
    R("mx.mapped.test", "AAAA", "::ffff:0.0.0.0"),
    R("probe-lab.net", "MX", "10 mx.probe-lab.net."),
    R("probe-lab.net", "MX", "20 lan.probe-lab.net."),
    R("mx.probe-lab.net", "A", "127.0.0.13"),
    R("lan.probe-lab.net", "A", "10.1.2.3"),
    R("lan.probe-lab.net", "A", "192.168.7.7"),
    R("lan.probe-lab.net", "AAAA", "fd00::25"),
    R("lan.probe-lab.net", "AAAA", "fe80::1"),
    R("mixed.probe-lab.net", "A", "127.0.0.14"),
    R("mixed.probe-lab.net", "A", "192.0.2.25"),
    R("special.probe-lab.net", "MX", "10 mx.special.test."),
    R("mx.special.test", "A", "127.0.0.15"),
    R("example.com", "MX", "10 mx.example.com."),
    R("mx.example.com", "A", "127.0.0.16"),
    # 500 MX hosts, and a host with 40 addresses.
    *many_mx("huge.test", 500, addresses=[f"127.0.2.{i}" for i in range(1, 201)]),
    R("wide.test", "MX", "10 mx.wide.test."),
    *(R("mx.wide.test", "A", f"127.0.3.{i}") for i in range(1, 41)),
    # The first ten MX hosts do not exist: the lookups stop there.
    *(R("dead.test", "MX", f"{i} gone{i}.dead.test.") for i in range(1, 11)),
    R("dead.test", "MX", "50 a.hosts.test."),
    # Many hosts that answer slowly, for the bound on queries in flight.
    *(R(f"d{i}.test", "MX", f"10 mx.d{i}.test.") for i in range(60)),
    *(R(f"mx.d{i}.test", "A", "127.0.0.17") for i in range(60)),
]
BEHAVIOUR = {
    "late.test/MX": "late:2.5",
    "slow.test/MX": "delay:2.5",
    "forged.test/MX": "wrong-id",
    "junk.test/MX": "junk",
    **{f"mx.d{i}.test": "delay:0.3" for i in range(60)},
}
HANG_GUARD = 30.0


@pytest.fixture
async def lab(lab_dns: Callable[..., Awaitable[LabDns]]) -> LabDns:
    return await lab_dns(RECORDS, behaviour=BEHAVIOUR, zone=".")


async def mx(lab: LabDns, domain: str, *, timeout: float = 2.0,
             allow_private: bool = False) -> MxResult:
    async with asyncio.timeout(HANG_GUARD):
        return await resolve_mx(domain, nameservers=[lab.address], timeout=timeout,
                                rng=random.Random(0), allow_private=allow_private)


def kinds(failures: tuple[Failure, ...]) -> list[FailureKind]:
    return [f.kind for f in failures]


def host_failures(result: MxResult) -> dict[str, Failure]:
    return {h.name: h.failure for h in result.hosts if h.failure is not None}


# --- 1. a resolver where nothing listens ------------------------------------------------------


async def test_refused_resolver_fails_fast_and_is_named(kb: KnowledgeBase) -> None:
    port = unused_udp_port()
    started = time.perf_counter()
    async with asyncio.timeout(HANG_GUARD):
        result = await resolve_mx("order.test", nameservers=[("127.0.0.1", port)], timeout=5.0)
    elapsed = time.perf_counter() - started
    assert elapsed < 1.0, f"took {elapsed:.2f} s: the ICMP error arrives in milliseconds"
    assert result.failure is not None
    assert result.failure.kind is FailureKind.DNS_RESOLVER_REFUSED
    assert (f"the resolver 127.0.0.1:{port} refused the query (nothing listens there)"
            in result.failure.detail)
    finding = Classifier(kb).failure(Stage.DNS, result.failure)
    assert finding.rule == "failure.dns_resolver_refused"
    servfail = Classifier(kb).failure(Stage.DNS, Failure(FailureKind.DNS_SERVFAIL, "x"))
    assert finding.rule != servfail.rule
    assert "resolver" in finding.cause.en and "Resolver" in finding.cause.de


async def test_refused_resolver_for_a_named_server() -> None:
    port = unused_udp_port()
    started = time.perf_counter()
    found = await resolve_host("mx.lab.test", nameservers=[("127.0.0.1", port)], timeout=5.0)
    assert time.perf_counter() - started < 1.0
    assert found.failure is not None
    assert found.failure.kind is FailureKind.DNS_RESOLVER_REFUSED
    assert f"127.0.0.1:{port}" in found.failure.detail


async def test_a_refusing_first_resolver_hands_over_at_once(lab: LabDns) -> None:
    port = unused_udp_port()
    started = time.perf_counter()
    result = await resolve_mx("order.test", nameservers=[("127.0.0.1", port), lab.address],
                              timeout=4.0)
    assert time.perf_counter() - started < 1.0  # not after the first one's share (2 s)
    assert result.failure is None
    assert [h.addresses for h in result.hosts] == [("127.0.0.11",)]


# --- 2. late answers --------------------------------------------------------------------------


async def test_an_answer_after_2_5_s_counts_within_a_5_s_budget(lab: LabDns) -> None:
    # "late": the server answers the first query only, after 2.5 s, and drops every repeat.
    started = time.perf_counter()
    result = await mx(lab, "late.test", timeout=5.0)
    elapsed = time.perf_counter() - started
    assert result.failure is None, result.failure
    assert [h.name for h in result.hosts] == ["a.hosts.test"]
    assert 2.4 < elapsed < 3.5
    # Retransmissions repeat the first query's id: an answer to any of them fits.
    ids = {qid for name, rtype, qid in lab.query_ids if (name, rtype) == ("late.test", "MX")}
    assert len(ids) == 1


async def test_a_slow_server_is_not_asked_again_with_a_new_id(lab: LabDns) -> None:
    started = time.perf_counter()
    result = await mx(lab, "slow.test", timeout=5.0)
    elapsed = time.perf_counter() - started
    assert result.failure is None
    assert elapsed < 3.5  # the first answer (2.5 s), not the one to a retry (4.5 s)


async def test_a_forged_reply_with_another_id_is_ignored(lab: LabDns) -> None:
    result = await mx(lab, "forged.test")
    assert result.failure is None  # the forged NXDOMAIN came first
    assert [h.name for h in result.hosts] == ["a.hosts.test"]


async def test_junk_and_answers_to_other_questions_are_ignored(lab: LabDns) -> None:
    result = await mx(lab, "junk.test")
    assert result.failure is None
    assert [h.name for h in result.hosts] == ["a.hosts.test"]


async def test_silence_after_junk_says_what_was_ignored(lab_dns: Callable[
        ..., Awaitable[LabDns]]) -> None:
    # Junk first, and then the answer is never sent (the name times out for a second
    # server): the timeout names the server and counts what was thrown away.
    mute = await lab_dns(RECORDS, behaviour={"junk.test": "junk"}, zone=".")
    # junk's real answer arrives after 50 ms; with a 30 ms budget only the junk is seen.
    result = await resolve_mx("junk.test", nameservers=[mute.address], timeout=0.03)
    assert result.failure is not None
    assert result.failure.kind is FailureKind.DNS_TIMEOUT
    assert f"{mute.address[0]}:{mute.address[1]}" in result.failure.detail
    assert "ignored" in result.failure.detail


# --- 3. addresses nobody should connect to ------------------------------------------------------


async def test_unspecified_broadcast_and_multicast_addresses_are_never_used(lab: LabDns) -> None:
    result = await mx(lab, "bogus.test")
    failures = host_failures(result)
    for host in ("zero.bogus.test", "bcast.bogus.test", "mcast.bogus.test"):
        assert failures[host].kind is FailureKind.ADDRESS_UNUSABLE
        assert host in failures[host].detail
    assert "0.0.0.0" in failures["zero.bogus.test"].detail
    assert "::" in failures["zero.bogus.test"].detail
    assert "broadcast" in failures["bcast.bogus.test"].detail
    assert "multicast" in failures["mcast.bogus.test"].detail
    every = [a for h in result.hosts for a in h.addresses]
    assert every == ["127.0.0.12"]  # mixed.bogus.test keeps its usable address
    (warning,) = [w for w in result.warnings if w.kind is FailureKind.ADDRESS_UNUSABLE]
    assert "mixed.bogus.test" in warning.detail and "0.0.0.0" in warning.detail
    # allow_private changes nothing for these.
    again = await mx(lab, "bogus.test", allow_private=True)
    assert [a for h in again.hosts for a in h.addresses] == ["127.0.0.12"]


async def test_an_ipv4_mapped_unspecified_address_is_unspecified(lab: LabDns) -> None:
    result = await mx(lab, "mapped.test")
    (host,) = result.hosts
    assert host.addresses == ()
    assert host.failure is not None and host.failure.kind is FailureKind.ADDRESS_UNUSABLE


async def test_loopback_and_private_addresses_of_a_public_name_are_skipped(
        lab: LabDns, kb: KnowledgeBase) -> None:
    result = await mx(lab, "probe-lab.net")
    failures = host_failures(result)
    assert [a for h in result.hosts for a in h.addresses] == []
    loop_failure = failures["mx.probe-lab.net"]
    assert loop_failure.kind is FailureKind.ADDRESS_PRIVATE
    assert "127.0.0.13" in loop_failure.detail and "loopback" in loop_failure.detail
    lan = failures["lan.probe-lab.net"]
    assert lan.kind is FailureKind.ADDRESS_PRIVATE
    for address in ("10.1.2.3", "192.168.7.7", "fd00::25", "fe80::1"):
        assert address in lan.detail
    finding = Classifier(kb).failure(Stage.DNS, loop_failure)
    assert finding.rule == "failure.address_private"
    assert "--allow-private" in finding.remedy.en and "--allow-private" in finding.remedy.de


async def test_allow_private_uses_them_and_still_says_so(lab: LabDns) -> None:
    result = await mx(lab, "probe-lab.net", allow_private=True)
    assert result.hosts[0].addresses == ("127.0.0.13",)
    assert set(result.hosts[1].addresses) == {"10.1.2.3", "192.168.7.7", "fd00::25",
                                              "fe80::1"}
    assert all(h.failure is None for h in result.hosts)
    private = [w for w in result.warnings if w.kind is FailureKind.ADDRESS_PRIVATE]
    assert len(private) == 2 and all("allowed" in w.detail for w in private)


async def test_a_public_name_with_one_private_address_keeps_the_public_one(
        lab: LabDns) -> None:
    result = await resolve_server("mixed.probe-lab.net", nameservers=[lab.address], timeout=2.0)
    (host,) = result.hosts
    assert host.addresses == ("192.0.2.25",)
    assert result.failure is None
    assert kinds(result.warnings) == [FailureKind.ADDRESS_PRIVATE]
    assert "127.0.0.14" in result.warnings[0].detail


@pytest.mark.parametrize("domain", ["special.probe-lab.net", "example.com"])
async def test_special_use_names_may_have_loopback_addresses(lab: LabDns, domain: str) -> None:
    # An MX host under .test, and example.com (RFC 2606), are not public names.
    result = await mx(lab, domain)
    assert result.failure is None and result.warnings == ()
    assert len(result.hosts[0].addresses) == 1


@pytest.mark.parametrize(("name", "special"), [
    ("mx.good.test", True), ("localhost", True), ("a.b.localhost", True),
    ("x.invalid", True), ("mail.example", True), ("example.com", True),
    ("mx.example.net", True), ("www.example.org", True), ("printer.local", True),
    ("nas.home.arpa", True), ("mx.probe-lab.net", False), ("example.com.au", False),
    ("notexample.com", False), ("test.de", False), ("testing", False),
])
def test_special_use_names(name: str, special: bool) -> None:
    assert is_special_use(name) is special


# --- 4. many MX hosts, many queries, few file descriptors ----------------------------------------


async def test_five_hundred_mx_hosts_are_capped(lab: LabDns) -> None:
    result = await mx(lab, "huge.test", timeout=3.0)
    addresses = [a for h in result.hosts for a in h.addresses]
    assert addresses == [f"127.0.2.{i}" for i in range(1, MX_ADDRESS_LIMIT + 1)]
    assert [h.name for h in result.hosts] == [f"mx{i}.huge.test" for i in range(MX_ADDRESS_LIMIT)]
    (limit,) = [w for w in result.warnings if w.kind is FailureKind.MX_LIMIT]
    assert "500" in limit.detail and "495" in limit.detail and "not tried" in limit.detail
    address_queries = [q for q in lab.queries if q[0].endswith("huge.test") and q[1] != "MX"]
    assert len(address_queries) <= 2 * MX_ADDRESS_LIMIT  # not 1,000


async def test_a_host_with_forty_addresses_gives_five(lab: LabDns) -> None:
    result = await mx(lab, "wide.test")
    (host,) = result.hosts
    assert len(host.addresses) == MX_ADDRESS_LIMIT
    assert kinds(result.warnings) == [FailureKind.MX_LIMIT]
    assert "40" in result.warnings[0].detail


async def test_broken_mx_hosts_do_not_make_the_lookups_endless(lab: LabDns) -> None:
    # Ten MX hosts that do not exist, then a good one: at most MX_LOOKUP_LIMIT hosts are
    # looked up, so the good one (the eleventh) is not reached, and the result says so.
    result = await mx(lab, "dead.test")
    assert len(result.hosts) == MX_LOOKUP_LIMIT
    assert all(h.failure is not None and h.failure.kind is FailureKind.DNS_NO_ADDRESS
               for h in result.hosts)
    (limit,) = [w for w in result.warnings if w.kind is FailureKind.MX_LIMIT]
    assert "a.hosts.test" in limit.detail
    assert not [q for q in lab.queries if q[0] == "a.hosts.test"]


async def test_queries_in_flight_are_bounded(lab: LabDns) -> None:
    # 60 domains at once, each with a slow host: 180 queries, never more than the bound open.
    async with asyncio.timeout(HANG_GUARD):
        results = await asyncio.gather(*(mx(lab, f"d{i}.test", timeout=5.0) for i in range(60)))
    assert all(r.failure is None and r.hosts[0].addresses == ("127.0.0.17",) for r in results)
    assert 10 < lab.max_in_flight <= MAX_QUERIES_IN_FLIGHT


async def test_out_of_file_descriptors_is_a_failure_value(
        lab: LabDns, kb: KnowledgeBase, monkeypatch: pytest.MonkeyPatch) -> None:
    loop = asyncio.get_running_loop()

    async def no_socket(*args: object, **kwargs: object) -> object:
        raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr(loop, "create_datagram_endpoint", no_socket)
    result = await mx(lab, "order.test")
    assert result.failure is not None
    assert result.failure.kind is FailureKind.LOCAL
    assert "too many open files" in result.failure.detail.lower()
    assert f"{lab.address[0]}:{lab.address[1]}" in result.failure.detail
    classify = Classifier(kb)
    assert classify.failure(Stage.DNS, result.failure).rule == "failure.local.files"
    # The same fault at a TCP connect (net/session reports it as a closed connection with
    # the system's words) gets the same explanation.
    at_connect = Failure(FailureKind.CLOSED, "127.0.0.1:25: Too many open files")
    assert classify.failure(Stage.CONNECT, at_connect).rule == "failure.local.files"
    ENFILE = Failure(FailureKind.CLOSED, "127.0.0.1:25: Too many open files in system")
    assert classify.failure(Stage.CONNECT, ENFILE).rule == "failure.local.files"


def test_the_limits_are_postfix_defaults() -> None:
    # postconf(5): smtp_mx_address_limit = 5 (smtp_mx_session_limit = 2 is probe/check's).
    assert MX_ADDRESS_LIMIT == 5
    assert MX_LOOKUP_LIMIT >= MX_ADDRESS_LIMIT
    assert MAX_QUERIES_IN_FLIGHT >= 10  # A and AAAA of MX_ADDRESS_LIMIT hosts at once
    assert smtpdns._GRACE > 0
