"""resolve_mx against a real DNS server on loopback (LabDns), plus the input parsers."""

from __future__ import annotations

import asyncio
import random
import socket
import subprocess
import sys
from collections.abc import Awaitable, Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smtpprobe.lab.dns import LabDns, Record
from smtpprobe.models import Failure, FailureKind, MxResult
from smtpprobe.net import dns as smtpdns
from smtpprobe.net.dns import parse_resolver, resolve_host, resolve_mx, to_ascii_domain

R = Record
RECORDS = [
    # preference order: written out of order on purpose
    R("order.test", "MX", "30 c.hosts.test."),
    R("order.test", "MX", "10 a.hosts.test."),
    R("order.test", "MX", "20 b.hosts.test."),
    R("a.hosts.test", "A", "127.0.0.11"),
    R("b.hosts.test", "A", "127.0.0.12"),
    R("c.hosts.test", "A", "127.0.0.13"),
    # equal preferences
    R("equal.test", "MX", "10 a.hosts.test."),
    R("equal.test", "MX", "10 b.hosts.test."),
    R("equal.test", "MX", "20 c.hosts.test."),
    # both families, interleaved IPv6 first
    R("dual.test", "MX", "10 mx.dual.test."),
    R("mx.dual.test", "A", "127.0.0.21"),
    R("mx.dual.test", "A", "127.0.0.22"),
    R("mx.dual.test", "AAAA", "::1"),
    # no MX: the domain's own address
    R("implicit.test", "A", "127.0.0.31"),
    R("implicit.test", "AAAA", "::1"),
    R("nothing.test", "TXT", '"no mail here"'),
    R("null.test", "MX", "0 ."),
    R("mixed.test", "MX", "0 ."),
    R("mixed.test", "MX", "10 a.hosts.test."),
    R("ip.test", "MX", "10 192.0.2.1."),
    R("ip.test", "MX", "20 b.hosts.test."),
    R("cname.test", "MX", "10 alias.cname.test."),
    R("alias.cname.test", "CNAME", "a.hosts.test."),
    R("noaddr.test", "MX", "10 bare.noaddr.test."),
    R("noaddr.test", "MX", "20 gone.noaddr.test."),
    R("noaddr.test", "MX", "30 b.hosts.test."),
    R("bare.noaddr.test", "TXT", '"only text"'),
    R("partial.test", "MX", "10 broken.partial.test."),
    R("partial.test", "MX", "20 slow.partial.test."),
    R("partial.test", "MX", "30 b.hosts.test."),
    R("broken.partial.test", "A", "127.0.0.41"),
    R("slow.partial.test", "A", "127.0.0.42"),
    R("halfway.test", "MX", "10 mx.halfway.test."),
    R("mx.halfway.test", "A", "127.0.0.43"),
    R("servfail.test", "MX", "10 a.hosts.test."),
    R("silent.test", "MX", "10 a.hosts.test."),
    R("refused.test", "MX", "10 a.hosts.test."),
    R("xn--bcher-kva.test", "MX", "10 a.hosts.test."),
    R("truncated.test", "MX", "10 a.hosts.test."),
    R("implicit-down.test", "TXT", '"x"'),
    # five hosts that each answer slowly
    *(R("many.test", "MX", f"10 mx{i}.many.test.") for i in range(5)),
    *(R(f"mx{i}.many.test", "A", f"127.0.1.{i}") for i in range(5)),
]
BEHAVIOUR = {
    "servfail.test": "servfail",
    "silent.test": "timeout",
    "refused.test": "refused",
    "truncated.test": "truncate",
    "broken.partial.test": "servfail",
    "slow.partial.test": "timeout",
    "mx.halfway.test/AAAA": "servfail",
    "implicit-down.test/A": "servfail",
    **{f"mx{i}.many.test": "delay:0.3" for i in range(5)},
}
TIMEOUT = 1.0
# resolve_mx's documented bound is 2 x (timeout + 0.5 s); this guard only catches a hang.
HANG_GUARD = 2 * (TIMEOUT + smtpdns._GRACE) + 10


@pytest.fixture
async def lab(lab_dns: Callable[..., Awaitable[LabDns]]) -> LabDns:
    return await lab_dns(RECORDS, behaviour=BEHAVIOUR)


async def mx(lab: LabDns, domain: str, seed: int = 0, timeout: float = TIMEOUT) -> MxResult:
    async with asyncio.timeout(HANG_GUARD):
        return await resolve_mx(
            domain, nameservers=[lab.address], timeout=timeout, rng=random.Random(seed)
        )


def names(result: MxResult) -> list[str]:
    return [host.name for host in result.hosts]


def no_dnspython_in(result: MxResult) -> None:
    """Nothing from dnspython may leak into the result's values."""
    failures: list[Failure] = [*result.warnings]
    failures += [h.failure for h in result.hosts if h.failure is not None]
    if result.failure is not None:
        failures.append(result.failure)
    for failure in failures:
        assert type(failure.kind) is FailureKind
        assert type(failure.detail) is str
        assert "\n" not in failure.detail
        assert "Do53" not in failure.detail


async def test_preference_order(lab: LabDns) -> None:
    result = await mx(lab, "order.test")
    assert result.failure is None
    assert names(result) == ["a.hosts.test", "b.hosts.test", "c.hosts.test"]
    assert [h.preference for h in result.hosts] == [10, 20, 30]
    assert [h.addresses for h in result.hosts] == [
        ("127.0.0.11",),
        ("127.0.0.12",),
        ("127.0.0.13",),
    ]
    assert not any(h.implicit for h in result.hosts)
    assert result.domain == "order.test"
    assert result.elapsed_ms > 0
    assert result.warnings == ()


async def test_equal_preferences_are_shuffled_with_the_rng(lab: LabDns) -> None:
    orders = set()
    for seed in range(12):
        first = await mx(lab, "equal.test", seed=seed)
        again = await mx(lab, "equal.test", seed=seed)
        assert names(first) == names(again)  # the seeded rng decides, nothing else
        assert names(first)[2] == "c.hosts.test"  # the worse preference stays last
        orders.add(tuple(names(first)[:2]))
    assert orders == {("a.hosts.test", "b.hosts.test"), ("b.hosts.test", "a.hosts.test")}


async def test_addresses_interleave_ipv6_first(lab: LabDns) -> None:
    result = await mx(lab, "dual.test")
    (host,) = result.hosts
    assert host.addresses[0] == "::1"
    assert sorted(host.addresses[1:]) == ["127.0.0.21", "127.0.0.22"]
    assert host.failure is None


async def test_no_mx_means_implicit_mx(lab: LabDns) -> None:
    result = await mx(lab, "implicit.test")
    assert result.failure is None
    (host,) = result.hosts
    assert host.name == "implicit.test"
    assert host.implicit
    assert host.preference == 0
    assert host.addresses == ("::1", "127.0.0.31")


async def test_neither_mx_nor_address(lab: LabDns) -> None:
    result = await mx(lab, "nothing.test")
    assert result.hosts == ()
    assert result.failure is not None
    assert result.failure.kind is FailureKind.DNS_NO_ADDRESS
    assert "nothing.test" in result.failure.detail


async def test_implicit_mx_lookup_failing(lab: LabDns) -> None:
    result = await mx(lab, "implicit-down.test")
    assert result.failure is not None
    assert result.failure.kind is FailureKind.DNS_SERVFAIL
    assert "implicit-down.test" in result.failure.detail


async def test_null_mx(lab: LabDns) -> None:
    result = await mx(lab, "null.test")
    assert result.hosts == ()
    assert result.failure is not None
    assert result.failure.kind is FailureKind.NULL_MX
    # Connect to nothing: not even an address lookup for "."
    assert [q for q in lab.queries if q[1] != "MX"] == []


async def test_null_mx_mixed_with_real_mx_is_ignored_with_a_warning(lab: LabDns) -> None:
    result = await mx(lab, "mixed.test")
    assert result.failure is None
    assert names(result) == ["a.hosts.test"]
    assert [w.kind for w in result.warnings] == [FailureKind.NULL_MX]
    assert "mixed.test" in result.warnings[0].detail


async def test_nxdomain(lab: LabDns) -> None:
    result = await mx(lab, "does-not-exist.test")
    assert result.hosts == ()
    assert result.failure is not None
    assert result.failure.kind is FailureKind.DNS_NXDOMAIN
    assert "does-not-exist.test" in result.failure.detail
    assert "NXDOMAIN" in result.failure.detail
    no_dnspython_in(result)


async def test_servfail(lab: LabDns) -> None:
    result = await mx(lab, "servfail.test")
    assert result.failure is not None
    assert result.failure.kind is FailureKind.DNS_SERVFAIL
    assert "servfail.test" in result.failure.detail
    assert "SERVFAIL" in result.failure.detail
    assert f"{lab.address[0]}:{lab.address[1]}" in result.failure.detail
    no_dnspython_in(result)


async def test_refused(lab: LabDns) -> None:
    result = await mx(lab, "refused.test")
    assert result.failure is not None
    assert result.failure.kind is FailureKind.DNS_SERVFAIL
    assert "refused" in result.failure.detail.lower()
    assert "refused.test" in result.failure.detail
    no_dnspython_in(result)


async def test_timeout_ends_with_a_failure(lab: LabDns) -> None:
    result = await mx(lab, "silent.test", timeout=0.3)
    assert result.hosts == ()
    assert result.failure is not None
    assert result.failure.kind is FailureKind.DNS_TIMEOUT
    assert "silent.test" in result.failure.detail
    assert ("silent.test", "MX") in lab.queries
    no_dnspython_in(result)


async def test_no_nameserver_listening() -> None:
    # A port that was free a moment ago: nothing answers there.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with asyncio.timeout(HANG_GUARD):
        result = await resolve_mx("order.test", nameservers=[("127.0.0.1", port)], timeout=0.3)
    assert result.failure is not None
    # Nothing listens: the ICMP port-unreachable comes back at once and names the resolver.
    assert result.failure.kind in (FailureKind.DNS_RESOLVER_REFUSED, FailureKind.DNS_TIMEOUT,
                                   FailureKind.UNREACHABLE)
    assert f"127.0.0.1:{port}" in result.failure.detail
    no_dnspython_in(result)


async def test_second_nameserver_answers_when_the_first_is_silent(lab: LabDns) -> None:
    async with LabDns(RECORDS, behaviour={"order.test": "timeout"}, host="127.0.0.2") as mute:
        async with asyncio.timeout(HANG_GUARD):
            result = await resolve_mx(
                "order.test", nameservers=[mute.address, lab.address], timeout=TIMEOUT
            )
    assert result.failure is None
    assert names(result) == ["a.hosts.test", "b.hosts.test", "c.hosts.test"]
    assert ("order.test", "MX") in mute.queries
    assert ("order.test", "MX") in lab.queries


async def test_mx_naming_an_ip_address(lab: LabDns) -> None:
    result = await mx(lab, "ip.test")
    assert result.failure is None
    first, second = result.hosts
    assert first.addresses == ()
    assert first.failure is not None
    assert first.failure.kind is FailureKind.MX_IS_IP
    assert "192.0.2.1" in first.failure.detail
    assert second.name == "b.hosts.test"
    assert second.addresses == ("127.0.0.12",)
    # RFC 5321 5.1: no lookup of the address-looking name at all.
    assert not [q for q in lab.queries if q[0].startswith("192.0.2.1")]


async def test_mx_pointing_at_a_cname(lab: LabDns) -> None:
    result = await mx(lab, "cname.test")
    (host,) = result.hosts
    assert host.name == "alias.cname.test"
    assert host.addresses == ("127.0.0.11",)  # still followed
    assert host.failure is None
    assert [w.kind for w in result.warnings] == [FailureKind.MX_IS_CNAME]
    assert "alias.cname.test" in result.warnings[0].detail
    assert "a.hosts.test" in result.warnings[0].detail


async def test_mx_hosts_without_address_are_kept_apart(lab: LabDns) -> None:
    result = await mx(lab, "noaddr.test")
    assert result.failure is None
    bare, gone, good = result.hosts
    assert bare.failure is not None and bare.failure.kind is FailureKind.DNS_NO_ADDRESS
    assert "bare.noaddr.test" in bare.failure.detail
    assert gone.failure is not None and gone.failure.kind is FailureKind.DNS_NO_ADDRESS
    assert "NXDOMAIN" in gone.failure.detail
    assert good.failure is None and good.addresses == ("127.0.0.12",)


async def test_temporary_failures_of_single_mx_hosts(lab: LabDns) -> None:
    result = await mx(lab, "partial.test", timeout=0.5)
    assert result.failure is None
    broken, slow, good = result.hosts
    assert broken.failure is not None and broken.failure.kind is FailureKind.DNS_SERVFAIL
    assert "broken.partial.test" in broken.failure.detail
    assert slow.failure is not None and slow.failure.kind is FailureKind.DNS_TIMEOUT
    assert "slow.partial.test" in slow.failure.detail
    assert good.addresses == ("127.0.0.12",)
    no_dnspython_in(result)


async def test_one_address_family_failing_leaves_the_other(lab: LabDns) -> None:
    result = await mx(lab, "halfway.test")
    (host,) = result.hosts
    assert host.addresses == ("127.0.0.43",)
    assert host.failure is None


async def test_unicode_domain_is_asked_in_punycode(lab: LabDns) -> None:
    for spelling in ("bücher.test", "BÜCHER.test.", "xn--bcher-kva.test"):
        result = await mx(lab, spelling)
        assert result.domain == "xn--bcher-kva.test"
        assert names(result) == ["a.hosts.test"]
    assert {q for q in lab.queries if q[1] == "MX"} == {("xn--bcher-kva.test", "MX")}


async def test_truncated_answer_is_fetched_over_tcp(lab: LabDns) -> None:
    result = await mx(lab, "truncated.test")
    assert names(result) == ["a.hosts.test"]
    assert ("truncated.test", "MX") in lab.tcp_queries
    assert lab.queries.count(("truncated.test", "MX")) == 2  # UDP, then TCP


async def test_host_lookups_run_concurrently(lab: LabDns) -> None:
    result = await mx(lab, "many.test", timeout=5.0)
    assert sorted(h.addresses[0] for h in result.hosts) == [f"127.0.1.{i}" for i in range(5)]
    # Each A and AAAA lookup waits 0.3 s at the server; one after another there would never
    # be more than one open at a time. All ten were open together.
    assert lab.max_in_flight == 10


async def test_resolve_host_for_a_named_server(lab: LabDns) -> None:
    async with asyncio.timeout(HANG_GUARD):
        found = await resolve_host("mx.dual.test", nameservers=[lab.address], timeout=TIMEOUT)
        missing = await resolve_host("nope.hosts.test", nameservers=[lab.address], timeout=TIMEOUT)
    assert found.addresses[0] == "::1"
    assert found.failure is None
    assert missing.addresses == ()
    assert missing.failure is not None and missing.failure.kind is FailureKind.DNS_NO_ADDRESS


@pytest.mark.parametrize("bad", ["", ".", "a..b", "-lead.test", "under_score.test", "192.0.2.1"])
async def test_invalid_domain_is_a_value_error_before_any_query(lab: LabDns, bad: str) -> None:
    with pytest.raises(ValueError):
        await resolve_mx(bad, nameservers=[lab.address], timeout=TIMEOUT)
    assert lab.queries == []


async def test_bad_arguments_are_value_errors(lab: LabDns) -> None:
    with pytest.raises(ValueError):
        await resolve_mx("order.test", nameservers=[], timeout=TIMEOUT)
    with pytest.raises(ValueError):
        await resolve_mx("order.test", nameservers=[("not-an-ip", 53)], timeout=TIMEOUT)
    with pytest.raises(ValueError):
        await resolve_mx("order.test", nameservers=[lab.address], timeout=0)
    assert lab.queries == []


def test_unexpected_errors_are_translated_from_the_table() -> None:
    import dns.resolver

    query = smtpdns._Query("x.test", "MX", "127.0.0.1:53", 1.0)
    failure = smtpdns._translate(dns.resolver.NoRootSOA(), query)  # type: ignore[no-untyped-call]
    assert failure.kind is FailureKind.DNS_SERVFAIL
    assert "NoRootSOA" in failure.detail and "x.test" in failure.detail
    failure = smtpdns._translate(KeyError("odd"), query)
    assert failure.kind is FailureKind.DNS_SERVFAIL
    assert "KeyError" in failure.detail
    with pytest.raises(asyncio.CancelledError):
        smtpdns._translate(asyncio.CancelledError(), query)


# -- parse_resolver --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("127.0.0.53", ("127.0.0.53", 53)),
        ("127.0.0.1:5353", ("127.0.0.1", 5353)),
        (" 127.0.0.1:53 ", ("127.0.0.1", 53)),
        ("::1", ("::1", 53)),
        ("[::1]", ("::1", 53)),
        ("[::1]:5353", ("::1", 5353)),
        ("[0:0:0:0:0:0:0:1]:53", ("::1", 53)),
        ("2001:db8::53", ("2001:db8::53", 53)),
    ],
)
def test_parse_resolver(spec: str, expected: tuple[str, int]) -> None:
    assert parse_resolver(spec) == expected


@pytest.mark.parametrize(
    "spec",
    [
        "",
        "dns.example",
        "127.0.0.1:",
        "127.0.0.1:0",
        "127.0.0.1:65536",
        "127.0.0.1:5x",
        "127.0.0.1:٥٣",  # Arabic-Indic digits are digits to int(), not to us
        "[127.0.0.1]:53",
        "[::1",
        "[::1]53",
        "01.2.3.4",
        "1.2.3.4.5",
    ],
)
def test_parse_resolver_rejects(spec: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_resolver(spec)
    assert "\n" not in str(caught.value)


@given(st.text(max_size=60))
def test_parse_resolver_only_raises_value_error(spec: str) -> None:
    try:
        address, port = parse_resolver(spec)
    except ValueError as exc:
        assert "\n" not in str(exc)
    else:
        assert 1 <= port <= 65535
        assert parse_resolver(f"[{address}]:{port}" if ":" in address else f"{address}:{port}") == (
            address,
            port,
        )


@given(st.ip_addresses(), st.integers(1, 65535))
def test_parse_resolver_round_trip(address: object, port: int) -> None:
    text = str(address)
    spec = f"[{text}]:{port}" if ":" in text else f"{text}:{port}"
    assert parse_resolver(spec) == (text, port)


# -- to_ascii_domain -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("domain", "expected"),
    [
        ("example.test", "example.test"),
        ("Example.TEST.", "example.test"),
        ("bücher.example", "xn--bcher-kva.example"),
        ("BÜCHER.example", "xn--bcher-kva.example"),
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ("straße.de", "xn--strae-oqa.de"),  # IDNA 2008 keeps the sharp s (not "strasse")
        ("例え.テスト", "xn--r8jz45g.xn--zckzah"),
        ("mail.example\u3002test", "mail.example.test"),  # UTS 46 maps the ideographic dot
        ("localhost", "localhost"),
    ],
)
def test_to_ascii_domain(domain: str, expected: str) -> None:
    assert to_ascii_domain(domain) == expected


@pytest.mark.parametrize(
    "domain",
    [
        "",
        ".",
        "..",
        "a..b",
        "example.test..",
        "-start.test",
        "end-.test",
        "under_score.test",
        "space here.test",
        "user@example.test",
        "192.0.2.1",
        "[192.0.2.1]",
        "xn--zz.test",  # not a valid A-label
        "a" * 64 + ".test",
        ".".join(["abcdefghi"] * 26),  # 259 characters
    ],
)
def test_to_ascii_domain_rejects(domain: str) -> None:
    with pytest.raises(ValueError) as caught:
        to_ascii_domain(domain)
    assert "\n" not in str(caught.value)


def test_ascii_names_are_checked_without_the_idna_package() -> None:
    # IDNA 2008 needs the optional "idna" package; without it ASCII names must keep working
    # and the rest must be refused with a ValueError. A fresh interpreter that cannot import
    # idna shows what a bare install does.
    script = """
import sys
sys.modules["idna"] = None
import dns._features
dns._features.force("idna", False)  # as dnspython decides when the package is not installed
import dns.name
assert not dns.name.have_idna_2008
from smtpprobe.net.dns import to_ascii_domain
print(to_ascii_domain("Mail.Example.TEST."))
for bad in ("bücher.test", "under_score.test", "a..b", "192.0.2.1"):
    try:
        to_ascii_domain(bad)
    except ValueError:
        print("refused", bad)
"""
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    ).stdout.splitlines()
    assert out == [
        "mail.example.test",
        "refused bücher.test",
        "refused under_score.test",
        "refused a..b",
        "refused 192.0.2.1",
    ]


@given(st.text(max_size=80))
def test_to_ascii_domain_only_raises_value_error(domain: str) -> None:
    try:
        result = to_ascii_domain(domain)
    except ValueError:
        return
    assert result.isascii()
    assert result == result.lower()
    assert len(result) <= 253
    assert to_ascii_domain(result) == result


@given(
    st.lists(
        st.text(st.characters(categories=("Ll", "Lu", "Lo", "Nd")), min_size=1, max_size=12),
        min_size=1,
        max_size=4,
    )
)
def test_to_ascii_domain_on_letter_labels(labels: list[str]) -> None:
    try:
        result = to_ascii_domain(".".join(labels))
    except ValueError:
        return
    assert result.isascii()
    assert result.count(".") == len(labels) - 1
