"""Every MX in preference order (issue 15): the walk moves on after a refused or silent
connection, a 421 greeting or a 4yz answer, and after a host without an address; it stops at
a definitive 5yz. These tests pin that behaviour (probe/check.py, Conversation.settle)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from smtpprobe.core.address import parse_address
from smtpprobe.core.knowledge.load import KnowledgeBase
from smtpprobe.lab.dns import LabDns, Record
from smtpprobe.lab.hostile import FilteredPort
from smtpprobe.lab.world import Domain, LabWorld, lab_world, records_for
from smtpprobe.models import CheckReport, Verdict
from smtpprobe.probe.check import Checker, CheckOptions

Options = Callable[..., CheckOptions]
StartDns = Callable[..., Awaitable[LabDns]]

GOOD = (20, "mx.backup.walk.test", "127.0.0.85", "mailbox")
DOMAINS = (
    Domain("refused.walk.test", ((10, "mx.refused.walk.test", "127.0.0.81", None), GOOD)),
    Domain("filtered.walk.test", ((10, "mx.filtered.walk.test", "127.0.0.83", None), GOOD)),
    Domain("defer.walk.test", ((10, "mx.defer.walk.test", "127.0.0.84", "greylist"), GOOD)),
    Domain("busy.walk.test", ((10, "mx.busy.walk.test", "127.0.0.86", "rate_limited"), GOOD)),
    Domain("unknown.walk.test", ((10, "mx.unknown.walk.test", "127.0.0.87", "mailbox"),
                                 (20, "mx.spare.walk.test", "127.0.0.88", "mailbox"))),
    Domain("order.walk.test", ((30, "mx.spare.walk.test", "127.0.0.88", "mailbox"),
                               (10, "mx.unknown.walk.test", "127.0.0.87", "mailbox"))),
    Domain("alldefer.walk.test", ((10, "mx.defer.walk.test", "127.0.0.84", "greylist"),
                                  (20, "mx.defer2.walk.test", "127.0.0.89", "greylist"))),
)
# A domain whose preferred MX has no address at all (NXDOMAIN for its name).
GHOST = [Record("ghost.walk.test", "MX", "10 nothing.ghost.walk.test."),
         Record("ghost.walk.test", "MX", "20 mx.backup.walk.test.")]


@pytest.fixture
async def world() -> AsyncIterator[LabWorld]:
    async with lab_world(DOMAINS, greylist_delay=30.0) as lab:
        with FilteredPort("127.0.0.83", lab.port):
            yield lab


@pytest.fixture
async def check(world: LabWorld, kb: KnowledgeBase, lab_dns: StartDns,
                check_options: Options) -> Callable[[str], Awaitable[CheckReport]]:
    zone = await lab_dns([*records_for(DOMAINS), *GHOST])
    options = check_options(port=world.port, nameservers=(zone.address,),
                            cafile=world.cafile, timeout=1.5)

    async def run(address: str) -> CheckReport:
        parsed = parse_address(address)
        assert parsed is not None
        return await Checker(kb, options).check(parsed)

    return run


def _walked(report: CheckReport) -> list[str]:
    return [h.host for h in report.hosts]


async def test_moves_on_after_a_refused_connection(check: Callable[..., Awaitable[CheckReport]]
                                                   ) -> None:
    report = await check("alice@refused.walk.test")
    assert report.verdict is Verdict.ACCEPTED
    assert _walked(report) == ["mx.refused.walk.test", "mx.backup.walk.test"]
    assert report.hosts[0].steps[0].failure is not None
    assert any(f.rule == "observe.mx_down" for f in report.findings)


async def test_moves_on_after_a_silent_connection(check: Callable[..., Awaitable[CheckReport]]
                                                  ) -> None:
    report = await check("alice@filtered.walk.test")
    assert report.verdict is Verdict.ACCEPTED
    assert _walked(report) == ["mx.filtered.walk.test", "mx.backup.walk.test"]
    assert all(not f.rule.startswith("reach.") for f in report.findings)


async def test_moves_on_after_a_4xx_at_rcpt(check: Callable[..., Awaitable[CheckReport]],
                                            world: LabWorld) -> None:
    report = await check("alice@defer.walk.test")
    assert report.verdict is Verdict.ACCEPTED
    assert _walked(report) == ["mx.defer.walk.test", "mx.backup.walk.test"]
    first_rcpt = next(s for s in report.hosts[0].steps if s.stage == "rcpt")
    assert first_rcpt.replied(450)


async def test_moves_on_after_a_421_greeting(check: Callable[..., Awaitable[CheckReport]]
                                             ) -> None:
    report = await check("alice@busy.walk.test")
    assert report.verdict is Verdict.ACCEPTED
    assert _walked(report) == ["mx.busy.walk.test", "mx.backup.walk.test"]
    assert report.hosts[0].steps[0].replied(421)


async def test_every_mx_deferring_is_a_deferral(check: Callable[..., Awaitable[CheckReport]]
                                                ) -> None:
    report = await check("alice@alldefer.walk.test")
    assert report.verdict is Verdict.DEFERRED
    assert _walked(report) == ["mx.defer.walk.test", "mx.defer2.walk.test"]
    assert report.finding.category == "greylisted"


async def test_stops_at_a_definitive_5xx(check: Callable[..., Awaitable[CheckReport]],
                                         world: LabWorld) -> None:
    report = await check("nobody@unknown.walk.test")
    assert report.verdict is Verdict.REJECTED
    assert _walked(report) == ["mx.unknown.walk.test"]
    assert world.servers["mx.spare.walk.test"].connections == 0


async def test_preference_order_not_record_order(check: Callable[..., Awaitable[CheckReport]],
                                                 world: LabWorld) -> None:
    report = await check("alice@order.walk.test")
    assert [h.preference for h in report.mx.hosts] == [10, 30]
    assert _walked(report) == ["mx.unknown.walk.test"]
    assert report.verdict is Verdict.ACCEPTED


async def test_an_unresolvable_mx_does_not_stop_the_walk(
        check: Callable[..., Awaitable[CheckReport]]) -> None:
    report = await check("alice@ghost.walk.test")
    assert report.verdict is Verdict.ACCEPTED
    assert [h.name for h in report.mx.hosts] == ["nothing.ghost.walk.test",
                                                 "mx.backup.walk.test"]
    assert report.mx.hosts[0].failure is not None and not report.mx.hosts[0].addresses
    assert _walked(report) == ["mx.backup.walk.test"]
    assert any(f.stage == "dns" for f in report.findings)
