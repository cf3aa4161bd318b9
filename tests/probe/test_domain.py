"""`smtpprobe domain`'s MX and TLS checks against lab servers and the lab DNS (probe/domain.py).

Each lab domain of `DOMAIN_DOMAINS` has one condition; every check is run on a good and a
broken case. Only the MX/TLS table (`CHECKS`) runs here: the policy checks have their own
tests.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace

import pytest

from smtpprobe.core.certs import TrustStore, load_trust_store
from smtpprobe.core.classify import Classifier
from smtpprobe.core.knowledge.load import KnowledgeBase
from smtpprobe.lab.dns import LabDns, Record
from smtpprobe.lab.hostile import HOSTILE
from smtpprobe.lab.world import DOMAIN_DOMAINS, Domain, LabWorld, lab_world, ptr
from smtpprobe.models import DomainCheck, DomainReport, HealthStatus
from smtpprobe.probe.domain import CHECKS, DomainContext, run_domain
from smtpprobe.probe.relay import OPEN_RELAY_FROM, OPEN_RELAY_TO, relay_tricks

OK, WARN, FAIL, INFO, UNKNOWN = (HealthStatus.OK, HealthStatus.WARN, HealthStatus.FAIL,
                                 HealthStatus.INFO, HealthStatus.UNKNOWN)
BY_NAME = {d.name: d for d in DOMAIN_DOMAINS}
LabDnsFactory = Callable[..., Awaitable[LabDns]]


def _domains(*names: str) -> list[Domain]:
    # healthy.test always: other domains point at its MX host.
    return [BY_NAME[n] for n in dict.fromkeys(("healthy.test", *names))]


async def _run(kb: KnowledgeBase, lab: LabWorld, domain: str, *,
               checks: Sequence[tuple[str, object]] = CHECKS, **options: object) -> DomainReport:
    settings: dict[str, object] = {"timeout": 3.0, "deadline": 20.0, "helo": "probe.test"}
    settings.update(options)
    return await run_domain(domain, classifier=Classifier(kb),
                            trust=load_trust_store(lab.cafile), nameservers=[lab.resolver],
                            port=lab.port, checks=checks, **settings)  # type: ignore[arg-type]


def _of(report: DomainReport, check_id: str) -> list[DomainCheck]:
    return [c for c in report.checks if c.id == check_id]


def _one(report: DomainReport, check_id: str) -> DomainCheck:
    found = _of(report, check_id)
    assert len(found) == 1, [(c.id, c.subject, c.status) for c in report.checks]
    return found[0]


def _rule(check: DomainCheck) -> str | None:
    return check.finding.rule if check.finding is not None else None


def _every_non_ok_explained(report: DomainReport) -> None:
    for check in report.checks:
        if check.status is OK:
            assert check.finding is None, check
        else:
            assert check.finding is not None, check
            assert check.finding.cause.en and check.finding.cause.de
            assert check.finding.remedy.en and check.finding.remedy.de
        assert check.summary.en and check.summary.de


async def test_healthy_domain_passes_every_check(kb: KnowledgeBase) -> None:
    seen: list[DomainContext] = []

    async def capture(ctx: DomainContext) -> list[DomainCheck]:
        seen.append(ctx)
        return []

    async with lab_world(_domains()) as lab:
        report = await _run(kb, lab, "healthy.test", open_relay=True,
                            checks=(*CHECKS, ("capture", capture)))
    assert {c.id for c in report.checks} == {cid for cid, _ in CHECKS}
    assert [c for c in report.checks if c.status is not OK] == []
    assert report.counts()["ok"] == len(report.checks)
    # Two addresses (one IPv6), each with every per-address check.
    assert {c.subject for c in _of(report, "starttls")} == {
        "mx.healthy.test [127.0.0.31]", "mx6.healthy.test [::1]"}
    assert _one(report, "ipv6").details["reached"] == ["mx6.healthy.test [::1]"]
    cert = _of(report, "certificate")[0]
    assert cert.details["verified"] is True and isinstance(cert.details["days_left"], int)
    assert "days left" in cert.summary.en and "Tage" in cert.summary.de
    # The runner hands the policy checks the MX lookup and the chains the hosts presented.
    [ctx] = seen
    assert ctx.mx is not None and [h.name for h in ctx.mx.hosts] == [
        "mx.healthy.test", "mx6.healthy.test"]
    assert set(ctx.presented) == {"mx.healthy.test", "mx6.healthy.test"}
    assert all(chain and chain[0][:1] == b"\x30" for chain in ctx.presented.values())
    _every_non_ok_explained(report)


async def test_broken_domain_fails_where_it_is_broken(kb: KnowledgeBase) -> None:
    async with lab_world(_domains("broken.test")) as lab:
        report = await _run(kb, lab, "broken.test")
    mx = _one(report, "mx")
    assert (mx.status, _rule(mx)) == (WARN, "domain.mx.duplicate")
    assert mx.details["preferences"] == [10, 20]
    assert _one(report, "ptr").status is OK  # a PTR exists ...
    fcrdns = _one(report, "fcrdns")  # ... but its name does not lead back
    assert (fcrdns.status, _rule(fcrdns)) == (FAIL, "domain.ptr.not_confirmed")
    banner = _one(report, "banner_name")
    assert (banner.status, _rule(banner)) == (WARN, "domain.banner.mismatch")
    assert banner.details["greeting"] == "localhost"
    version = _one(report, "tls_version")
    assert (version.status, _rule(version)) == (WARN, "domain.tls.old_accepted")
    assert version.details["lowest"] == "TLSv1"
    cert = _one(report, "certificate")
    assert (cert.status, _rule(cert)) == (FAIL, "observe.cert.expired")
    assert isinstance(cert.details["days_left"], int) and cert.details["days_left"] < 0
    postmaster = _one(report, "postmaster")
    assert (postmaster.status, _rule(postmaster)) == (FAIL, "domain.postmaster.refused")
    assert "550" in str(postmaster.details["said"])
    assert _one(report, "starttls").status is OK
    _every_non_ok_explained(report)


@pytest.mark.parametrize(("domain", "status", "rule"), [
    ("nullmx.test", INFO, "domain.mx.null"),
    ("nullmixed.test", FAIL, "domain.mx.null_mixed"),
    ("nomx.test", WARN, "domain.mx.none"),
    ("nomail.test", FAIL, "domain.mx.no_mail_host"),
    ("mxip.test", FAIL, "failure.mx_is_ip"),
    ("cname.test", WARN, "failure.mx_is_cname"),
    ("pair.test", INFO, "domain.mx.same_preference"),
    ("nosuch.test", FAIL, "failure.dns_nxdomain"),
])
async def test_mx_set_sanity(kb: KnowledgeBase, domain: str, status: HealthStatus,
                             rule: str) -> None:
    names = [domain] if domain in BY_NAME else []
    async with lab_world(_domains(*names)) as lab:
        report = await _run(kb, lab, domain)
    mx = _of(report, "mx")
    assert [(c.status, _rule(c)) for c in mx] == [(status, rule)]
    _every_non_ok_explained(report)


async def test_null_mx_has_no_address_checks(kb: KnowledgeBase) -> None:
    async with lab_world(_domains("nullmx.test")) as lab:
        report = await _run(kb, lab, "nullmx.test")
    assert [c.id for c in report.checks] == ["mx"]
    assert report.checks[0].details["null_mx"] is True


async def test_without_mail_host_the_address_checks_are_marked_once(kb: KnowledgeBase) -> None:
    async with lab_world(_domains("mxip.test")) as lab:
        report = await _run(kb, lab, "mxip.test")
    skipped = [c for c in report.checks if c.id not in ("mx", "mx_address")]
    assert skipped and all(c.status is UNKNOWN and c.subject == "mxip.test" for c in skipped)
    # The reason is the MX's own finding, not a guess; open_relay only when asked for.
    assert {_rule(c) for c in skipped} == {"failure.mx_is_ip"}
    assert "open_relay" not in {c.id for c in skipped}


async def test_implicit_mx_is_visited(kb: KnowledgeBase) -> None:
    async with lab_world(_domains("nomx.test")) as lab:
        report = await _run(kb, lab, "nomx.test")
    assert _one(report, "mx").details["addresses"] == ["127.0.0.33"]
    # Nothing listens on 127.0.0.33: the greeting check fails with the connection's finding,
    # the later checks of that conversation cannot say anything.
    banner = _one(report, "banner_name")
    assert banner.status is FAIL and banner.finding is not None
    assert banner.finding.category == "connection_failed"
    assert _one(report, "starttls").status is UNKNOWN
    assert _of(report, "certificate") == []


@pytest.mark.parametrize(("domain", "host", "status", "rule"), [
    ("healthy.test", "mx.healthy.test", OK, None),
    ("nohost.test", "gone.nohost.test", FAIL, "failure.dns_no_address"),
    ("private.test", "mx.private-lab.net", FAIL, "failure.address_private"),
])
async def test_mx_address(kb: KnowledgeBase, domain: str, host: str, status: HealthStatus,
                          rule: str | None) -> None:
    async with lab_world(_domains(domain)) as lab:
        report = await _run(kb, lab, domain)
    found = [c for c in _of(report, "mx_address") if c.subject == host]
    assert [(c.status, _rule(c)) for c in found] == [(status, rule)]


async def test_private_address_is_never_connected_to(kb: KnowledgeBase) -> None:
    async with lab_world(_domains("private.test")) as lab:
        report = await _run(kb, lab, "private.test")
    assert _of(report, "banner_name")[0].status is UNKNOWN  # marked, not tried
    assert all("10.1.2.3" not in c.subject for c in report.checks)


async def test_no_ptr(kb: KnowledgeBase) -> None:
    async with lab_world(_domains("noptr.test")) as lab:
        report = await _run(kb, lab, "noptr.test")
    ptr_check = _one(report, "ptr")
    assert (ptr_check.status, _rule(ptr_check)) == (FAIL, "domain.ptr.missing")
    assert _one(report, "fcrdns").status is FAIL
    banner = _one(report, "banner_name")
    assert banner.status is WARN and "no PTR name" in (banner.finding.evidence
                                                        if banner.finding else "")


async def test_ipv6(kb: KnowledgeBase) -> None:
    dead = Domain("v6dead.test", ((10, "mx.v6dead.test", "127.0.0.45", "mailbox"),
                                  (20, "mx6.v6dead.test", "::1", None)),
                  records=(ptr("127.0.0.45", "mx.v6dead.test"),))
    async with lab_world([dead]) as lab:
        report = await _run(kb, lab, "v6dead.test")
    check = _one(report, "ipv6")
    # The only IPv6 address does not answer: IPv6-only senders cannot deliver at all.
    assert (check.status, _rule(check)) == (FAIL, "domain.ipv6.unreachable")
    assert check.details["unreachable"] == ["mx6.v6dead.test [::1]"]
    assert _of(report, "banner_name")[0].status is OK  # IPv4 works
    async with lab_world(_domains("noptr.test")) as lab:
        report = await _run(kb, lab, "noptr.test")
    check = _one(report, "ipv6")
    assert (check.status, _rule(check)) == (WARN, "domain.ipv6.none")


async def test_starttls_missing(kb: KnowledgeBase) -> None:
    async with lab_world(_domains("plain.test")) as lab:
        report = await _run(kb, lab, "plain.test")
    check = _one(report, "starttls")
    assert (check.status, _rule(check)) == (FAIL, "domain.starttls.missing")
    assert _of(report, "tls_version") == [] and _of(report, "certificate") == []
    assert _one(report, "postmaster").status is OK  # the plain conversation went on


async def test_starttls_refused_and_broken(kb: KnowledgeBase) -> None:
    domains = [Domain("refuse.test", ((10, "mx.refuse.test", "127.0.0.47",
                                       HOSTILE["starttls_refused"]),)),
               Domain("garble.test", ((10, "mx.garble.test", "127.0.0.48",
                                       HOSTILE["starttls_garbage"]),))]
    async with lab_world(domains) as lab:
        refused = await _run(kb, lab, "refuse.test")
        broken = await _run(kb, lab, "garble.test", timeout=1.0, deadline=8.0)
    check = _one(refused, "starttls")
    assert check.status is FAIL and check.summary.en == "STARTTLS refused"
    check = _one(broken, "starttls")
    assert check.status is FAIL and check.finding is not None


async def test_tls_only_old_versions(kb: KnowledgeBase) -> None:
    async with lab_world(_domains("oldtls.test")) as lab:
        report = await _run(kb, lab, "oldtls.test")
    check = _one(report, "tls_version")
    assert (check.status, _rule(check)) == (FAIL, "domain.tls.old_only")
    assert check.details["best"] == "TLSv1"


async def test_tls_version_ok_refuses_old(kb: KnowledgeBase) -> None:
    async with lab_world(_domains()) as lab:
        report = await _run(kb, lab, "healthy.test")
    for check in _of(report, "tls_version"):
        assert check.status is OK
        assert check.details["best"] in ("TLSv1.2", "TLSv1.3")


@pytest.mark.skipif(not ssl.HAS_TLSv1_1, reason="this OpenSSL has no TLS 1.1 at all")
async def test_tls_1_1_accepted_is_named(kb: KnowledgeBase) -> None:
    only11 = replace(BY_NAME["oldtls.test"], name="tls11.test", max_tls="TLSv1_1",
                     mx=((10, "mx.tls11.test", "127.0.0.49", "mailbox"),),
                     records=(ptr("127.0.0.49", "mx.tls11.test"),))
    async with lab_world([only11]) as lab:
        report = await _run(kb, lab, "tls11.test")
    check = _one(report, "tls_version")
    assert check.status is FAIL and check.details["best"] == "TLSv1.1"


async def test_certificate_wrong_name(kb: KnowledgeBase) -> None:
    async with lab_world(_domains("wrongname.test", "cname.test")) as lab:
        wrong = await _run(kb, lab, "wrongname.test")
        alias = await _run(kb, lab, "cname.test")
    check = _one(wrong, "certificate")
    assert (check.status, _rule(check)) == (WARN, "observe.cert.name_mismatch")
    assert check.details["name_matches"] is False
    # An MX that is an alias is checked against the name in the MX record.
    check = _one(alias, "certificate")
    assert check.subject.startswith("alias.cname.test") and check.status is WARN


async def test_certificate_untrusted_with_another_trust_store(
        kb: KnowledgeBase, other_trust: TrustStore) -> None:
    async with lab_world(_domains()) as lab:
        report = await run_domain(
            "healthy.test", classifier=Classifier(kb), trust=other_trust,
            nameservers=[lab.resolver], port=lab.port, checks=CHECKS, timeout=3.0,
            deadline=20.0, helo="probe.test")
    checks = _of(report, "certificate")
    assert len(checks) == 2
    for check in checks:
        assert (check.status, _rule(check)) == (WARN, "observe.cert.untrusted")


async def test_open_relay(kb: KnowledgeBase) -> None:
    async with lab_world(_domains("relay.test")) as lab:
        relay = await _run(kb, lab, "relay.test", open_relay=True)
        without = await _run(kb, lab, "relay.test")
        closed = await _run(kb, lab, "healthy.test", open_relay=True)
    check = _one(relay, "open_relay")
    assert (check.status, _rule(check)) == (FAIL, "observe.open_relay")
    assert _of(without, "open_relay") == []
    for check in _of(closed, "open_relay"):
        assert check.status is OK
        tried = check.details["tried"]
        assert isinstance(tried, list) and len(tried) == len(relay_tricks("healthy.test"))
    # Never DATA: only MAIL, RCPT and RSET after the opening.
    server = lab.servers["mx.relay.test"]
    assert not any(c.upper().startswith("DATA") for c in server.commands)


async def test_relay_trick_accepted_is_a_suspicion(kb: KnowledgeBase) -> None:
    # A server that takes the percent-hack local part, as a catch-all or a rewriting MTA would.
    user = OPEN_RELAY_TO.split("@")[0]
    trick = f"{user}%{OPEN_RELAY_TO.split('@')[1]}"
    domain = Domain("trick.test", ((10, "mx.trick.test", "127.0.0.40", "mailbox"),),
                    local_parts=("postmaster", trick))
    async with lab_world([domain]) as lab:
        report = await _run(kb, lab, "trick.test", open_relay=True)
    check = _one(report, "open_relay")
    assert (check.status, _rule(check)) == (WARN, "domain.relay.trick")
    assert "percent" in check.summary.en


def test_relay_tricks_are_envelopes_only() -> None:
    tricks = relay_tricks("example.test")
    assert tricks[0].sender == OPEN_RELAY_FROM and tricks[0].recipient == OPEN_RELAY_TO
    assert {t.name for t in tricks} == {"outside", "local_sender", "percent", "bang",
                                         "quoted", "source_route"}
    assert all("\r" not in t.recipient and "\n" not in t.recipient for t in tricks)
    local = {t.name for t in tricks if t.local}
    assert local == {"percent", "bang", "quoted"}
    assert all(t.recipient.endswith("@example.test") for t in tricks if t.local)


async def test_dns_timeout_is_unknown_and_bounded(kb: KnowledgeBase,
                                                  lab_dns: LabDnsFactory) -> None:
    zone: LabDns = await lab_dns(
        [Record("slow.test", "MX", "10 mx.slow.test."), Record("mx.slow.test", "A",
                                                               "127.0.0.50")],
        behaviour={"slow.test/MX": "timeout"})
    report = await asyncio.wait_for(run_domain(
        "slow.test", classifier=Classifier(kb), trust=load_trust_store(None),
        nameservers=[zone.address], timeout=0.5, deadline=5.0, checks=CHECKS), 30)
    mx = _one(report, "mx")
    assert (mx.status, _rule(mx)) == (UNKNOWN, "failure.dns_timeout")
    assert all(c.status is UNKNOWN for c in report.checks)


async def test_silent_server_ends_by_the_deadline(kb: KnowledgeBase) -> None:
    domain = Domain("mute.test", ((10, "mx.mute.test", "127.0.0.51", HOSTILE["no_banner"]),),
                    records=(ptr("127.0.0.51", "mx.mute.test"),))
    async with lab_world([domain]) as lab:
        report = await asyncio.wait_for(_run(kb, lab, "mute.test", timeout=1.0,
                                             deadline=3.0), 30)
    banner = _one(report, "banner_name")
    assert banner.status is FAIL and banner.finding is not None
    assert _one(report, "ptr").status is OK
    _every_non_ok_explained(report)


async def test_idn_domain_is_checked_in_ascii(kb: KnowledgeBase) -> None:
    domain = Domain("xn--bcher-kva.test", ((10, "mx.healthy.test", "127.0.0.31", "mailbox"),))
    async with lab_world([*_domains(), domain]) as lab:
        report = await _run(kb, lab, "bücher.test")
    assert (report.domain, report.ascii_domain) == ("bücher.test", "xn--bcher-kva.test")
    assert _one(report, "mx").status is OK
    assert "postmaster@xn--bcher-kva.test" in _of(report, "postmaster")[0].summary.en


async def test_postmaster_refused_for_this_client_or_for_now_is_unknown(
        kb: KnowledgeBase) -> None:
    domains = [Domain("listed.test", ((10, "mx.listed.test", "127.0.0.54", "blocklisted"),)),
               Domain("grey.test", ((10, "mx.grey.test", "127.0.0.55", "greylist"),))]
    async with lab_world(domains, greylist_delay=3600) as lab:
        listed = await _run(kb, lab, "listed.test")
        grey = await _run(kb, lab, "grey.test")
    check = _one(listed, "postmaster")
    # A blocklist refusing the prober says nothing about postmaster.
    assert check.status is UNKNOWN and check.finding is not None
    assert check.finding.category == "blocklisted"
    check = _one(grey, "postmaster")
    assert check.status is UNKNOWN and check.finding is not None
    assert check.finding.category == "greylisted"


async def test_many_mx_hosts_are_bounded(kb: KnowledgeBase, lab_dns: LabDnsFactory) -> None:
    from smtpprobe.lab.dns import many_mx

    # 40 MX hosts on an address where nothing listens: ten are talked to, the rest named.
    records = many_mx("many.test", 40, addresses=("127.0.0.56",))
    zone: LabDns = await lab_dns(records)
    report = await asyncio.wait_for(run_domain(
        "many.test", classifier=Classifier(kb), trust=load_trust_store(None),
        nameservers=[zone.address], timeout=1.0, deadline=10.0, checks=CHECKS, port=9), 60)
    assert len(_of(report, "mx_address")) == 10
    assert len(_of(report, "banner_name")) == 10
    assert all(c.status is FAIL for c in _of(report, "banner_name"))
