"""Outgoing port blocked on our side (issue 15): when every mail host is silent, a --canary or
several silent MX hosts make "this network blocks the port" the decisive finding.

What the lab simulates: `FilteredPort` is a listening socket with a full accept queue, so the
kernel drops the SYNs and a connect hangs exactly as behind a firewall that drops packets. It
cannot tell *whose* firewall that is: in these tests the "blocked network" is a set of
filtered loopback ports, and what is tested is the reasoning (all silent + silent canary ->
blocked; all silent + answering canary -> the hosts are at fault; a refusal is an answer).
"""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable, Iterator
from contextlib import ExitStack

import pytest

from smtpprobe.core.knowledge.load import KnowledgeBase
from smtpprobe.lab.dns import LabDns, Record
from smtpprobe.lab.hostile import FilteredPort
from smtpprobe.lab.smtp import LabServer
from smtpprobe.models import AddressStatus, Verdict
from smtpprobe.probe.check import Checker, CheckOptions

Options = Callable[..., CheckOptions]
StartDns = Callable[..., Awaitable[LabDns]]
StartServer = Callable[..., Awaitable[LabServer]]

# Loopback addresses of this module's hosts (the demo world uses .21-.29, realmta .11-.14).
MX_A, MX_B, CANARY, GOOD = "127.0.0.71", "127.0.0.72", "127.0.0.73", "127.0.0.74"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((MX_A, 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def blocked() -> Iterator[Callable[..., int]]:
    """`blocked(*hosts)`: one port number, filtered on each of the hosts."""
    with ExitStack() as stack:

        def make(*hosts: str) -> int:
            port = _free_port()
            for host in hosts:
                stack.enter_context(FilteredPort(host, port))
            return port

        yield make


def _records() -> list[Record]:
    return [Record("two.test", "MX", "10 mx1.two.test."),
            Record("two.test", "MX", "20 mx2.two.test."),
            Record("mx1.two.test", "A", MX_A), Record("mx2.two.test", "A", MX_B),
            Record("one.test", "MX", "10 mx1.two.test."),
            Record("canary.test", "A", CANARY)]


async def _check(kb: KnowledgeBase, options: CheckOptions, address: str):  # type: ignore[no-untyped-def]
    from smtpprobe.core.address import parse_address

    parsed = parse_address(address)
    assert parsed is not None
    return await Checker(kb, options).check(parsed)


async def test_every_mx_silent_means_the_port_is_blocked_here(
        kb: KnowledgeBase, lab_dns: StartDns, check_options: Options,
        blocked: Callable[..., int]) -> None:
    port = blocked(MX_A, MX_B)
    dns = await lab_dns(_records())
    options = check_options(port=port, nameservers=(dns.address,), timeout=1.0)
    report = await _check(kb, options, "alice@two.test")
    assert report.verdict is Verdict.UNREACHABLE
    assert report.address_status is AddressStatus.UNKNOWN
    assert report.finding.rule == "reach.port_blocked"
    assert "2 different mail hosts" in report.finding.evidence
    assert "--canary" in report.finding.evidence
    assert {h.address for h in report.hosts} == {MX_A, MX_B}
    assert "587" in report.finding.remedy.en and "587" in report.finding.remedy.de


async def test_one_silent_mx_alone_proves_nothing(
        kb: KnowledgeBase, lab_dns: StartDns, check_options: Options,
        blocked: Callable[..., int]) -> None:
    port = blocked(MX_A)
    dns = await lab_dns(_records())
    options = check_options(port=port, nameservers=(dns.address,), timeout=1.0)
    report = await _check(kb, options, "alice@one.test")
    assert report.finding.rule == "failure.timeout.connect"
    assert all(not f.rule.startswith("reach.") for f in report.findings)


async def test_a_silent_canary_confirms_the_block(
        kb: KnowledgeBase, lab_dns: StartDns, check_options: Options,
        blocked: Callable[..., int]) -> None:
    port = blocked(MX_A, CANARY)
    dns = await lab_dns(_records())
    options = check_options(port=port, nameservers=(dns.address,), timeout=1.0,
                            canary=("canary.test", port))
    report = await _check(kb, options, "alice@one.test")
    assert report.verdict is Verdict.UNREACHABLE
    assert report.finding.rule == "reach.port_blocked"
    assert "canary canary.test" in report.finding.evidence
    assert report.finding.title is not None
    assert report.finding.title.de == "Ihr Netz sperrt ausgehenden Port 25"


async def test_an_answering_canary_puts_the_blame_back_on_the_hosts(
        kb: KnowledgeBase, lab_dns: StartDns, check_options: Options,
        blocked: Callable[..., int], lab_server: StartServer) -> None:
    port = blocked(MX_A)
    await lab_server("mailbox", host=GOOD, port=port)
    dns = await lab_dns(_records())
    options = check_options(port=port, nameservers=(dns.address,), timeout=1.0,
                            canary=(GOOD, port))
    report = await _check(kb, options, "alice@one.test")
    assert report.finding.rule == "failure.timeout.connect"
    open_note = [f for f in report.findings if f.rule == "reach.port_open"]
    assert open_note and f"canary {GOOD} answered" in open_note[0].evidence
    assert all(f.rule != "reach.port_blocked" for f in report.findings)


async def test_a_refusal_is_an_answer_not_a_block(
        kb: KnowledgeBase, lab_dns: StartDns, check_options: Options,
        blocked: Callable[..., int]) -> None:
    # mx1 drops the SYN, mx2 answers with a reset on the same port: packets do get through.
    port = blocked(MX_A)
    dns = await lab_dns(_records())
    options = check_options(port=port, nameservers=(dns.address,), timeout=1.0)
    report = await _check(kb, options, "alice@two.test")
    assert all(not f.rule.startswith("reach.") for f in report.findings)
    assert report.finding.rule in ("failure.timeout.connect", "failure.refused.connect")


async def test_the_canary_is_asked_once_per_checker(
        kb: KnowledgeBase, lab_dns: StartDns, check_options: Options,
        blocked: Callable[..., int], lab_server: StartServer) -> None:
    port = blocked(MX_A)
    canary = await lab_server("mailbox", host=GOOD, port=port)
    dns = await lab_dns(_records())
    options = check_options(port=port, nameservers=(dns.address,), timeout=1.0,
                            canary=(GOOD, port))
    from smtpprobe.core.address import parse_address

    checker = Checker(kb, options)
    for name in ("alice", "bob"):
        parsed = parse_address(f"{name}@one.test")
        assert parsed is not None
        report = await checker.check(parsed)
        assert any(f.rule == "reach.port_open" for f in report.findings)
    assert canary.connections == 1
