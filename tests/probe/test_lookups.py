"""Lookups that carry out a finding's remedy (probe/lookups.py), in `check` and
`explain --lookup`, against the lab DNS server: the blocklist the reply names, SPF and DMARC of
the sender domain, reverse DNS of the probing address."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Awaitable, Callable

import pytest

from smtpprobe.core.certs import TrustStore
from smtpprobe.core.classify import Classifier, classify_text
from smtpprobe.core.knowledge.model import KnowledgeBase
from smtpprobe.lab.dns import LabDns, Record
from smtpprobe.lab.world import DNSBL_ZONE, DOMAIN_DOMAINS, Domain, lab_world, records_for
from smtpprobe.models import Category, CheckReport, HealthStatus, Lookup, Stage
from smtpprobe.probe.check import CheckOptions
from smtpprobe.probe.lookups import addresses_in, confirm, zones_in

StartDns = Callable[..., Awaitable[LabDns]]
RunCli = Callable[..., subprocess.CompletedProcess[str]]


def test_addresses_and_zones_in_replies() -> None:
    text = ("554 5.7.1 Service unavailable; Client host [192.0.2.7] blocked using "
            "zen.example.org; see https://zen.example.org/query/192.0.2.7")
    assert addresses_in(text) == ["192.0.2.7"]
    assert zones_in(text) == ["zen.example.org"]
    assert addresses_in("from [IPv6:2001:db8::25] and 10.0.0.300") == ["2001:db8::25"]
    assert zones_in("550 5.7.1 Your IP 192.0.2.7 is listed in bl.example.net.") == [
        "bl.example.net"]
    assert zones_in("550 rejected: RBL b.barracudacentral.org") == ["b.barracudacentral.org"]
    assert zones_in("550 5.7.1 blocked") == []


async def run(kb: KnowledgeBase, trust: TrustStore, zone: LabDns, reply: str, *,
              stage: Stage = Stage.RCPT, **options: str) -> tuple[Lookup, ...]:
    finding = classify_text(kb, stage, reply)
    loop = asyncio.get_running_loop()
    return await confirm((finding,), classifier=Classifier(kb), trust=trust,
                         nameservers=(zone.address,), timeout=2,
                         deadline=loop.time() + 20, helo=options.pop("helo", "probe.test"),
                         **options)


@pytest.fixture
async def zone(lab_dns: StartDns) -> LabDns:
    return await lab_dns(records_for(DOMAIN_DOMAINS), zone=".")


async def test_blocklist_named_in_the_reply(kb: KnowledgeBase, trust: TrustStore,
                                            zone: LabDns) -> None:
    found = await run(kb, trust, zone, "554 5.7.1 Service unavailable; Client host "
                      f"[127.0.0.32] blocked using {DNSBL_ZONE}")
    assert [(x.kind, x.subject, x.status) for x in found] == [
        ("dnsbl", f"127.0.0.32 in {DNSBL_ZONE}", HealthStatus.FAIL)]
    assert "https://dnsbl.test/lookup?ip=127.0.0.32" in found[0].summary.en
    clear = await run(kb, trust, zone, "554 5.7.1 Client host [127.0.0.31] blocked using "
                      f"{DNSBL_ZONE}")
    assert clear[0].status is HealthStatus.OK


async def test_blocklist_without_address_uses_the_source_address(
        kb: KnowledgeBase, trust: TrustStore, zone: LabDns) -> None:
    reply = f"554 5.7.1 Your address is listed in {DNSBL_ZONE}"
    assert (await run(kb, trust, zone, reply))[0].status is HealthStatus.UNKNOWN
    found = await run(kb, trust, zone, reply, source_address="127.0.0.35")
    # 127.255.255.254: the list refused to answer, which is no listing.
    assert found[0].status is HealthStatus.UNKNOWN and found[0].details["state"] == "refused"


async def test_spf_and_dmarc_of_the_sender(kb: KnowledgeBase, trust: TrustStore,
                                           zone: LabDns) -> None:
    reply = "550 5.7.1 SPF check failed: 127.0.0.99 is not designated as permitted sender"
    found = await run(kb, trust, zone, reply, mail_from="probe@healthy.test")
    kinds = {(x.kind, x.status) for x in found}
    assert kinds == {("spf", HealthStatus.FAIL), ("dmarc", HealthStatus.OK)}
    spf = next(x for x in found if x.kind == "spf")
    assert spf.details["record"] == "v=spf1 mx -all" and spf.details["result"] == "fail"
    # The null sender: the HELO name is the identity SPF checks (RFC 7208 2.3).
    found = await run(kb, trust, zone, reply, helo="broken.test")
    assert {(x.kind, x.subject) for x in found} >= {("spf", "broken.test for 127.0.0.99")}


async def test_reverse_dns_of_the_named_address(kb: KnowledgeBase, trust: TrustStore,
                                                zone: LabDns) -> None:
    reply = "550 5.7.1 Client host rejected: cannot find your reverse hostname, [127.0.0.31]"
    assert classify_text(kb, Stage.RCPT, reply).category is Category.CLIENT_IDENTITY_REJECTED
    ok, = await run(kb, trust, zone, reply, helo="mx.healthy.test")
    assert ok.status is HealthStatus.OK and ok.details["confirmed"] == ["mx.healthy.test"]
    other, = await run(kb, trust, zone, reply, helo="probe.test")
    assert other.status is HealthStatus.WARN and other.details["helo_matches"] is False
    broken, = await run(kb, trust, zone, reply.replace("127.0.0.31", "127.0.0.32"))
    assert broken.status is HealthStatus.FAIL  # PTR mail.elsewhere.test has no address
    missing, = await run(kb, trust, zone, reply.replace("127.0.0.31", "127.0.0.35"))
    assert missing.status is HealthStatus.FAIL and missing.details["ptr"] == []


async def test_other_findings_ask_nothing(kb: KnowledgeBase, trust: TrustStore,
                                          zone: LabDns) -> None:
    assert await run(kb, trust, zone, "550 5.1.1 User unknown") == ()
    assert zone.queries == []


LISTING = (Record(f"1.0.0.127.{DNSBL_ZONE}", "A", "127.0.0.2"),
           Record(f"1.0.0.127.{DNSBL_ZONE}", "TXT", '"lab listing of 127.0.0.1"'))


async def test_check_attaches_the_lookup(check_options: Callable[..., CheckOptions],
                                         check_address: Callable[..., Awaitable[CheckReport]],
                                         ) -> None:
    """The lab's blocklisted server names zen.spamhaus.org; the lab resolver does not serve
    that zone, so the answer is REFUSED: the lookup says `unknown`, and nothing left the
    machine (the only resolver is the lab's)."""
    world_domains = (Domain("blocked.test", ((10, "mx.blocked.test", "127.0.0.24",
                                              "blocklisted"),)),)
    async with lab_world(world_domains) as world:
        report = await check_address(check_options(world), "alice@blocked.test")
    assert report.finding.category is Category.BLOCKLISTED
    item, = report.lookups
    assert (item.kind, item.subject, item.status) == (
        "dnsbl", "127.0.0.1 in zen.spamhaus.org", HealthStatus.UNKNOWN)
    assert ("1.0.0.127.zen.spamhaus.org", "A") in world.dns.queries


async def test_check_without_such_finding_has_no_lookups(
        check_options: Callable[..., CheckOptions],
        check_address: Callable[..., Awaitable[CheckReport]]) -> None:
    async with lab_world((Domain("good.test", ((10, "mx.good.test", "127.0.0.21",
                                                "mailbox"),)),)) as world:
        report = await check_address(check_options(world), "alice@good.test")
    assert report.lookups == ()


async def test_explain_lookup_needs_a_resolver_and_uses_it(run_cli: RunCli,
                                                           lab_dns: StartDns) -> None:
    reply = f"554 5.7.1 Client host [127.0.0.1] blocked using {DNSBL_ZONE}"
    done = run_cli("explain", "--lookup", reply)
    assert done.returncode == 2 and "--resolver" in done.stderr
    done = run_cli("explain", "--lookup", "--resolver", "127.0.0.1:9", "--batch", "-")
    assert done.returncode == 2 and "--batch" in done.stderr
    offline = run_cli("explain", "--json", reply)
    assert "lookups" not in json.loads(offline.stdout)
    server = await lab_dns(LISTING)
    host, port = server.address
    done = await asyncio.to_thread(run_cli, "explain", "--lookup", "--json", "--resolver",
                                   f"{host}:{port}", reply)
    assert done.returncode == 0, done.stderr
    item, = json.loads(done.stdout)["lookups"]
    assert (item["kind"], item["status"]) == ("dnsbl", "fail")
    assert item["details"]["reason"] == "lab listing of 127.0.0.1"
    text = await asyncio.to_thread(run_cli, "explain", "--lookup", "--lang", "de", "--resolver",
                                   f"{host}:{port}", reply)
    assert "Nachgeschlagen" in text.stdout and "eingetragen (127.0.0.2)" in text.stdout
