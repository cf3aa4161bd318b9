"""The batch engine against servers that fail for a while, or now and then (lab.hostile's
GLITCHES): one glitch must not decide the results of every address queued for that server.

Each test sends 500+ addresses through a glitching server and checks every verdict against
what the server says once it works, and a sample against lone checks of the same addresses
(made afterwards, against the same server). Servers that keep failing must give every
address the failure a lone check meets, after a bounded number of sessions.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from typing import Any

import pytest

from smtpprobe.core.address import Address, parse_address
from smtpprobe.core.knowledge.load import KnowledgeBase
from smtpprobe.lab.hostile import RCPT_421, busy_greeting, drop_after_greeting, rcpt_421
from smtpprobe.lab.smtp import Scenario
from smtpprobe.lab.world import Domain, LabWorld, lab_world
from smtpprobe.models import CheckReport, Failure, FailureKind, MxResult
from smtpprobe.probe.batch import (
    DEFAULT_SESSION_FAILURES,
    BatchOptions,
    Pooled,
    backoff_delay,
)
from smtpprobe.probe.check import Checker, CheckOptions, check_all

# Loopback addresses of this module's lab servers: 127.0.0.141-149.
MAILBOXES = tuple(f"user{n}" for n in range(0, 1000, 2))  # even numbers exist
COUNT = 600


def parsed(addresses: Sequence[str]) -> list[Address]:
    out = []
    for text in addresses:
        one = parse_address(text)
        assert one is not None, text
        out.append(one)
    return out


def listing(domains: Sequence[str], count: int = COUNT, *, busy: int = 0,
            seed: int = 25) -> list[str]:
    """`count` addresses over `domains`: user<even> exist, user<odd> do not; `busy` of them
    have a local part that rcpt_421 answers with 421."""
    rng = random.Random(seed)
    out = [f"user{n}@{domains[n % len(domains)]}" for n in rng.sample(range(1000), count - busy)]
    out += [f"busy{n}@{domains[n % len(domains)]}" for n in range(busy)]
    rng.shuffle(out)
    return out


def expected(address: str) -> str:
    local = address.partition("@")[0]
    if local.startswith("busy"):
        return "deferred"
    return "accepted" if local in MAILBOXES else "rejected"


def options(world: LabWorld, **extra: Any) -> CheckOptions:
    settings: dict[str, Any] = {"helo": "probe.smtpprobe.test", "port": world.port,
                                "nameservers": (world.resolver,), "cafile": world.cafile,
                                "timeout": 3.0, "deadline": 120.0}
    settings.update(extra)
    return CheckOptions(**settings)


def essence(report: CheckReport) -> dict[str, Any]:
    return {
        "verdict": report.verdict.value,
        "category": report.finding.category.value,
        "rule": report.finding.rule,
        "code": report.finding.code,
        "address_status": report.address_status.value,
        "catch_all": report.catch_all,
        "hosts": [(h.host, h.address) for h in report.hosts],
        "findings": sorted(f.rule for f in report.findings),
    }


def world_of(*mx: tuple[str, str, Scenario | str]) -> list[Domain]:
    """One domain per (domain, loopback address, scenario), each with its own MX host."""
    return [Domain(name, ((10, f"mx.{name}", address, scenario),)) for name, address, scenario
            in mx]


async def batch_then_sample(kb: KnowledgeBase, world: LabWorld, addresses: list[str], *,
                            sample: int = 30, batch: BatchOptions | None = None,
                            **extra: Any) -> tuple[list[CheckReport], Pooled]:
    """The batch over every address, then lone checks of a sample, against the same servers
    (the glitch is spent by then): both must agree."""
    pooled = Pooled(batch)
    many = await check_all(Checker(kb, options(world, **extra), strategy=pooled),
                           parsed(addresses))
    assert [r.address for r in many] == addresses
    picks = sorted(random.Random(7).sample(range(len(addresses)), sample))
    picks += [i for i, a in enumerate(addresses) if a.startswith("busy")][:5]
    alone = await check_all(Checker(kb, options(world, **extra)),
                            parsed([addresses[i] for i in picks]))
    for index, lone in zip(picks, alone, strict=True):
        assert essence(many[index]) == essence(lone), addresses[index]
    return many, pooled


def assert_verdicts(reports: Sequence[CheckReport]) -> None:
    wrong = [(r.address, r.verdict.value) for r in reports if r.verdict.value != expected(
        r.address)]
    assert not wrong, f"{len(wrong)} of {len(reports)} wrong, e.g. {wrong[:5]}"


# --- a glitch, then the server works ----------------------------------------------------------


async def test_connections_dropped_after_the_greeting_decide_nothing(kb: KnowledgeBase) -> None:
    domains = world_of(("drop1.test", "127.0.0.141", drop_after_greeting(first=3)))
    addresses = listing(["drop1.test"])
    async with lab_world(domains, local_parts=MAILBOXES) as world:
        many, pooled = await batch_then_sample(kb, world, addresses)
    assert_verdicts(many)
    assert 3 <= pooled.failed_sessions < DEFAULT_SESSION_FAILURES


async def test_greetings_with_421_decide_nothing(kb: KnowledgeBase) -> None:
    # Two domains on one glitching MX host, and one on a good one.
    glitch = busy_greeting(first=3)
    domains = [Domain("busy1.test", ((10, "mx.busy1.test", "127.0.0.142", glitch),)),
               Domain("busy2.test", ((10, "mx.busy1.test", "127.0.0.142", glitch),)),
               Domain("fine.test", ((10, "mx.fine.test", "127.0.0.143", "mailbox"),))]
    addresses = listing(["busy1.test", "busy2.test", "fine.test"])
    async with lab_world(domains, local_parts=MAILBOXES) as world:
        many, pooled = await batch_then_sample(kb, world, addresses)
    assert_verdicts(many)
    assert 3 <= pooled.failed_sessions < DEFAULT_SESSION_FAILURES


@pytest.mark.parametrize("catch_all", [False, True], ids=["plain", "catch-all"])
async def test_rcpt_421_gives_the_lone_answer(kb: KnowledgeBase, catch_all: bool) -> None:
    """The 5th RCPT of each connection gets 421 (a lone check never sends five), and so does
    every RCPT to busy<n>: those must get the category of a lone check's 421, the others
    their mailbox's answer."""
    domains = world_of(("rcpt1.test", "127.0.0.144", rcpt_421(nth=5)))
    addresses = listing(["rcpt1.test"], busy=30)
    async with lab_world(domains, local_parts=MAILBOXES) as world:
        many, _ = await batch_then_sample(kb, world, addresses, catch_all=catch_all)
        lone_busy = await check_all(Checker(kb, options(world, catch_all=catch_all)),
                                    parsed(["busy999@rcpt1.test"]))
    assert_verdicts(many)
    want = essence(lone_busy[0])
    for report in many:
        if report.address.startswith("busy"):
            assert essence(report) == want, report.address
            assert report.finding.code == int(RCPT_421[:3])


async def test_one_restart_in_a_long_run(kb: KnowledgeBase) -> None:
    """A server that goes away in the middle of a run (its connections break, new ones are
    refused for a moment) and comes back: nothing that was queued for it is lost."""
    domains = world_of(("restart.test", "127.0.0.145", "mailbox"))
    addresses = listing(["restart.test"])
    async with lab_world(domains, local_parts=MAILBOXES) as world:
        server = world.servers["mx.restart.test"]
        port = server.port

        async def restart() -> None:
            while len(server.commands) < 150:
                await asyncio.sleep(0.005)
            await server.close()  # cuts every connection; connects are refused now
            await asyncio.sleep(0.5)
            server.port = port
            await server.start()

        bounce = asyncio.create_task(restart())
        many, pooled = await batch_then_sample(kb, world, addresses)
        await bounce
    assert_verdicts(many)
    assert pooled.failed_sessions >= 1


# --- servers that keep failing: their failure stands, as a lone check meets it ----------------


@pytest.mark.parametrize("scenario", [drop_after_greeting(first=10 ** 9),
                                      busy_greeting(first=10 ** 9), "rate_limited"],
                         ids=["drop", "421", "rate_limited"])
async def test_a_server_that_keeps_failing_fails_like_a_lone_check(
        kb: KnowledgeBase, scenario: Scenario | str) -> None:
    domains = world_of(("down.test", "127.0.0.146", scenario))
    addresses = listing(["down.test"], 300)
    async with lab_world(domains, local_parts=MAILBOXES) as world:
        many, _ = await batch_then_sample(kb, world, addresses, sample=5,
                                          batch=BatchOptions(backoff=0.05))
        server = world.servers["mx.down.test"]
        # The sample's five lone checks took five connections; the batch a bounded number.
        assert server.connections - 5 <= DEFAULT_SESSION_FAILURES + 2
    assert len({essence(r)["category"] for r in many}) == 1
    assert all(r.verdict.value != "accepted" for r in many)


async def test_hang_ups_at_every_first_rcpt_stand_one_address_at_a_time(
        kb: KnowledgeBase) -> None:
    # Every local part starts with "" : every RCPT gets 421, the first of a session too.
    domains = world_of(("hangup.test", "127.0.0.147", rcpt_421(nth=1000, busy="")))
    addresses = listing(["hangup.test"], 40)
    async with lab_world(domains, local_parts=MAILBOXES) as world:
        many, pooled = await batch_then_sample(kb, world, addresses, sample=5,
                                               batch=BatchOptions(backoff=0.05))
        server = world.servers["mx.hangup.test"]
        assert server.connections - 5 <= len(addresses) + DEFAULT_SESSION_FAILURES
    assert {r.finding.code for r in many} == {421}
    assert pooled.failed_sessions >= 1


async def test_at_the_deadline_waiting_addresses_get_the_servers_failure(
        kb: KnowledgeBase) -> None:
    domains = world_of(("late.test", "127.0.0.148", busy_greeting(first=10 ** 9)))
    addresses = listing(["late.test"], 50)
    async with lab_world(domains, local_parts=MAILBOXES) as world:
        # A backoff longer than the deadline: the server never gets its last chance.
        pooled = Pooled(BatchOptions(backoff=10.0))
        many = await check_all(Checker(kb, options(world, deadline=3.0), strategy=pooled),
                               parsed(addresses))
        lone = await check_all(Checker(kb, options(world)), parsed(addresses[:1]))
    assert {essence(r)["category"] for r in many} == {essence(lone[0])["category"]}
    assert {r.finding.code for r in many} == {421}


def test_backoff_grows_and_has_a_ceiling() -> None:
    assert backoff_delay(1) == 0  # one failure: try again at once
    assert 0 < backoff_delay(2) < backoff_delay(3) <= backoff_delay(50) <= 8.0
    assert backoff_delay(5, base=0) == 0
    for bad in ({"window": 0}, {"session_failures": 0}, {"backoff": -1.0}):
        with pytest.raises(ValueError):
            BatchOptions(**bad)  # type: ignore[arg-type]


# --- check_all: a bounded window, reports in input order -----------------------------------------


class Counting:
    """A strategy without network: every domain is NXDOMAIN after a short wait; counts how many
    checks are in flight at once."""

    def __init__(self, window: int | None, fail_at: str | None = None) -> None:
        self.concurrent_checks = window
        self.fail_at = fail_at
        self.now = self.most = self.calls = 0
        self.closed = False

    async def mail_hosts(self, checker: Checker, address: Address,
                         deadline: float) -> MxResult:
        self.now += 1
        self.calls += 1
        self.most = max(self.most, self.now)
        try:
            await asyncio.sleep(0.001 * (hash(address.smtp) % 3))
            if address.smtp == self.fail_at:
                raise RuntimeError("a fault of our own")
            return MxResult(domain=address.ascii_domain, hosts=(),
                            failure=Failure(FailureKind.DNS_NXDOMAIN, "no such domain"))
        finally:
            self.now -= 1

    async def converse(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("no conversation without mail hosts")

    def made_up_address(self, checker: Checker, domain: str) -> str:
        return f"x@{domain}"

    async def close(self) -> None:
        self.closed = True


async def test_check_all_keeps_a_bounded_window_and_the_input_order(kb: KnowledgeBase) -> None:
    addresses = parsed([f"a{n}@d{n % 7}.test" for n in range(2000)])
    strategy = Counting(window=64)
    seen: list[int] = []
    checker = Checker(kb, CheckOptions(helo="probe.smtpprobe.test"), strategy=strategy)
    reports = await check_all(checker, iter(addresses), on_done=lambda i, r: seen.append(i))
    assert [r.address for r in reports] == [a.smtp for a in addresses]
    assert sorted(seen) == list(range(2000))
    assert strategy.most == 64 and strategy.closed
    # Streaming: nothing is kept.
    strategy = Counting(window=10)
    checker = Checker(kb, CheckOptions(helo="probe.smtpprobe.test"), strategy=strategy)
    assert await check_all(checker, addresses[:100], collect=False) == []
    assert strategy.most <= 10


async def test_check_all_stops_at_a_fault_of_its_own(kb: KnowledgeBase) -> None:
    addresses = parsed([f"a{n}@d.test" for n in range(500)])
    strategy = Counting(window=20, fail_at="a100@d.test")
    checker = Checker(kb, CheckOptions(helo="probe.smtpprobe.test"), strategy=strategy)
    with pytest.raises(RuntimeError, match="of our own"):
        await check_all(checker, addresses)
    assert strategy.closed and strategy.calls < 200
