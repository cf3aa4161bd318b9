"""The self-check against the lab DNS server, and check's use of it after a refusal about the
prober (a blocklisting lab server that names its list)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from smtpprobe.core.address import parse_address
from smtpprobe.core.knowledge.load import KnowledgeBase
from smtpprobe.lab.dns import LabDns, Record
from smtpprobe.lab.smtp import LabServer
from smtpprobe.models import Category
from smtpprobe.probe.check import Checker, CheckOptions
from smtpprobe.probe.selfcheck import self_check, source_address

StartDns = Callable[..., Awaitable[LabDns]]
StartServer = Callable[..., Awaitable[LabServer]]
Options = Callable[..., CheckOptions]

SELF = "127.0.0.91"


def _zone(*extra: Record) -> list[Record]:
    return [Record("91.0.0.127.in-addr.arpa", "PTR", "probe.lab.test."),
            Record("probe.lab.test", "A", SELF),
            Record("92.0.0.127.in-addr.arpa", "PTR", "liar.lab.test."),
            Record("liar.lab.test", "A", "127.0.0.250"),
            Record("91.0.0.127.zen.spamhaus.org", "A", "127.0.0.10"),
            Record("91.0.0.127.zen.spamhaus.org", "TXT", '"PBL listed, see the web site"'),
            *extra]


async def test_a_proper_sender(lab_dns: StartDns) -> None:
    dns = await lab_dns(_zone(), zone=".")
    found = await self_check(SELF, helo="probe.lab.test", zones=["bl.lab.test"],
                             nameservers=(dns.address,), timeout=2)
    assert found.ptr == ("probe.lab.test",) and found.confirmed == "probe.lab.test"
    assert found.helo_matches is True
    assert [(x.zone, x.listed) for x in found.listings] == [("bl.lab.test", False)]


async def test_a_reverse_name_that_does_not_point_back(lab_dns: StartDns) -> None:
    dns = await lab_dns(_zone(), zone=".")
    found = await self_check("127.0.0.92", helo="probe.lab.test", zones=(),
                             nameservers=(dns.address,), timeout=2)
    assert found.ptr == ("liar.lab.test",) and found.confirmed is None
    assert found.helo_matches is False and found.helo_addresses == (SELF,)


async def test_a_listing_with_its_reason(lab_dns: StartDns) -> None:
    dns = await lab_dns(_zone(), zone=".")
    found = await self_check(SELF, helo=None, zones=["zen.spamhaus.org"],
                             nameservers=(dns.address,), timeout=2)
    [listing] = found.listings
    assert listing.listed and listing.answer == "127.0.0.10"
    assert "PBL listed" in listing.reason


def test_the_source_address_toward_a_loopback_host() -> None:
    assert source_address("127.0.0.1") == "127.0.0.1"
    assert source_address("::1") == "::1"


async def test_check_attaches_the_self_check_to_a_blocklisting(
        kb: KnowledgeBase, lab_dns: StartDns, lab_server: StartServer,
        check_options: Options) -> None:
    # The lab's blocklisted server names zen.spamhaus.org; the lab zone (on loopback) lists
    # 127.0.0.91, the address this check connects from.
    server = await lab_server("blocklisted", host="127.0.0.93")
    dns = await lab_dns(_zone(Record("bl.lab.test", "MX", "10 mx.bl.lab.test."),
                              Record("mx.bl.lab.test", "A", "127.0.0.93")), zone=".")
    options = check_options(port=server.port, nameservers=(dns.address,),
                            source_address=SELF, helo="probe.lab.test")
    parsed = parse_address("alice@bl.lab.test")
    assert parsed is not None
    report = await Checker(kb, options).check(parsed)
    assert report.finding.category is Category.BLOCKLISTED
    rules = [f.rule for f in report.findings]
    assert "self.listed" in rules
    listed = next(f for f in report.findings if f.rule == "self.listed")
    assert "127.0.0.91 is listed on zen.spamhaus.org (127.0.0.10)" in listed.evidence
    assert "self.no_ptr" not in rules and "self.helo_mismatch" not in rules


async def test_no_self_check_for_a_refusal_about_the_address(
        kb: KnowledgeBase, lab_dns: StartDns, lab_server: StartServer,
        check_options: Options) -> None:
    server = await lab_server("mailbox", host="127.0.0.93")
    dns = await lab_dns(_zone(Record("bl.lab.test", "MX", "10 mx.bl.lab.test."),
                              Record("mx.bl.lab.test", "A", "127.0.0.93")), zone=".")
    options = check_options(port=server.port, nameservers=(dns.address,),
                            source_address=SELF, helo="probe.lab.test")
    parsed = parse_address("nobody@bl.lab.test")
    assert parsed is not None
    report = await Checker(kb, options).check(parsed)
    assert report.finding.category is Category.USER_UNKNOWN
    assert not any(f.rule.startswith("self.") for f in report.findings)
