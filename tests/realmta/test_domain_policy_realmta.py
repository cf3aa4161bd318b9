"""The policy checks of `smtpprobe domain` against real servers: DANE through a validating
unbound in front of a bind9 that serves DNSSEC-signed TLSA zones (services/dnssec.sh), with the
certificate the real Postfix presents; MTA-STS policies from a real nginx with a certificate
of the realmta CA (services/https.sh); the DNSBL zone of dnsmasq.

Skipped only when the services' variables are missing (`tests/realmta/realmta.sh env`).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from smtpprobe.core.certs import load_trust_store
from smtpprobe.core.classify import Classifier
from smtpprobe.core.knowledge.model import KnowledgeBase
from smtpprobe.models import DomainCheck, DomainReport, HealthStatus, MxHost, MxResult
from smtpprobe.probe import domain_policy
from smtpprobe.probe.domain import DomainContext, run_domain

TOPOLOGY: dict[str, Any] = json.loads(
    (Path(__file__).parent / "topology.json").read_text(encoding="utf-8"))
ENV = TOPOLOGY["env"]
RESOLVER = "SMTPPROBE_DNSSEC_RESOLVER"  # validating unbound (services/dnssec.sh)
AUTHORITATIVE = "SMTPPROBE_DNSSEC_AUTHORITATIVE"  # bind9: answers, never validates
HTTPS = "SMTPPROBE_HTTPS_ADDRESS"  # nginx (services/https.sh)

pytestmark = [
    pytest.mark.realmta,
    pytest.mark.skipif(not (os.environ.get(RESOLVER) and os.environ.get(HTTPS)
                            and os.environ.get(ENV["ca_file"])),
                       reason="the dnssec and https services are not running "
                              '(eval "$(tests/realmta/realmta.sh env)")'),
]

POLICY_CHECKS = [("spf", domain_policy.check_spf), ("dmarc", domain_policy.check_dmarc),
                 ("dnsbl", domain_policy.check_dnsbl), ("mta_sts", domain_policy.check_mta_sts),
                 ("tls_rpt", domain_policy.check_tls_rpt), ("dane", domain_policy.check_dane)]


async def domain(kb: KnowledgeBase, name: str, *, resolver: str = RESOLVER,
                 **options: Any) -> DomainReport:
    """The policy checks of `name`, after the real conversations that fill `presented`."""
    trust = load_trust_store(os.environ[ENV["ca_file"]])
    return await run_domain(name, classifier=Classifier(kb), trust=trust,
                            nameservers=[(os.environ[resolver], 53)], timeout=5, deadline=60,
                            helo="probe.smtpprobe.test", checks=POLICY_CHECKS, **options)


def by(report: DomainReport, check_id: str) -> dict[str, DomainCheck]:
    found = [c for c in report.checks if c.id == check_id]
    subjects = {c.subject: c for c in found}
    assert len(subjects) == len(found), found
    return subjects


def rule(check: DomainCheck) -> str | None:
    return check.finding.rule if check.finding is not None else None


async def test_dane_validated_matches_the_real_postfix(kb: KnowledgeBase) -> None:
    report = await domain(kb, "accept.test")
    check = by(report, "dane")["mx1.accept.test"]
    assert check.status is HealthStatus.OK, check
    assert check.details["authenticated"] is True
    assert check.details["matched"] == check.details["records"]


async def test_dane_mismatch(kb: KnowledgeBase) -> None:
    report = await domain(kb, "greylist.test")
    check = by(report, "dane")["mx-grey.greylist.test"]
    assert (check.status, rule(check)) == (HealthStatus.FAIL, "domain.dane.mismatch")
    assert check.details["authenticated"] is True


async def test_dane_unsigned_zone_is_unvalidated(kb: KnowledgeBase) -> None:
    report = await domain(kb, "blocked.test")
    check = by(report, "dane")["mx-block.blocked.test"]
    assert (check.status, rule(check)) == (HealthStatus.WARN, "domain.dane.unvalidated")


async def test_dane_bogus_signature_is_unknown(kb: KnowledgeBase) -> None:
    report = await domain(kb, "fallback.test")
    checks = by(report, "dane")
    assert checks["dead.fallback.test"].status is HealthStatus.UNKNOWN
    assert "SERVFAIL" in checks["dead.fallback.test"].summary.en
    assert checks["mx1.accept.test"].status is HealthStatus.OK


async def test_signed_tlsa_from_a_non_validating_server_is_unvalidated(
        kb: KnowledgeBase) -> None:
    """The same signed records, asked of bind9 itself (authoritative, no validation, no AD):
    only a validating resolver's word counts."""
    report = await domain(kb, "accept.test")  # for the chain Postfix presents
    chain = next(iter(by(report, "dane").values())).details
    assert chain["authenticated"] is True
    loop = asyncio.get_running_loop()
    trust = load_trust_store(os.environ[ENV["ca_file"]])
    ctx = DomainContext(
        domain="accept.test", ascii_domain="accept.test",
        nameservers=((os.environ[AUTHORITATIVE], 53),), timeout=5, deadline=loop.time() + 30,
        trust=trust, classifier=Classifier(kb),
        mx=MxResult("accept.test", (MxHost("mx1.accept.test", 10, ("127.0.0.11",)),)))
    check, = await domain_policy.check_dane(ctx)
    assert (check.status, rule(check)) == (HealthStatus.WARN, "domain.dane.unvalidated")
    assert check.details["records"] == chain["records"]


async def test_mta_sts_good_policy(kb: KnowledgeBase) -> None:
    report = await domain(kb, "accept.test")
    check, = by(report, "mta_sts").values()
    assert check.status is HealthStatus.OK, check
    assert (check.details["mode"], check.details["max_age"], check.details["mx"]) == (
        "enforce", 604800, ["mx1.accept.test"])


async def test_mta_sts_policy_misses_the_mx(kb: KnowledgeBase) -> None:
    report = await domain(kb, "greylist.test")
    check = by(report, "mta_sts")["mx-grey.greylist.test"]
    assert (check.status, rule(check)) == (HealthStatus.FAIL, "domain.mta_sts.mx_uncovered")


async def test_mta_sts_certificate_from_another_ca_is_a_fetch_failure(
        kb: KnowledgeBase, trust: Any) -> None:
    """The lab CA does not vouch for nginx's certificate: the policy does not count."""
    loop = asyncio.get_running_loop()
    ctx = DomainContext(
        domain="accept.test", ascii_domain="accept.test",
        nameservers=((os.environ[RESOLVER], 53),), timeout=5, deadline=loop.time() + 30,
        trust=trust, classifier=Classifier(kb))
    check, = await domain_policy.check_mta_sts(ctx)
    assert (check.status, rule(check)) == (HealthStatus.FAIL, "domain.mta_sts.fetch")
    assert "certificate" in str(check.details["error"])


async def test_good_and_broken_domain_policies(kb: KnowledgeBase) -> None:
    good = await domain(kb, "accept.test", dnsbl_zones=[TOPOLOGY["dnsbl"]["zone"]])
    assert {c.id: c.status for c in good.checks if c.status is not HealthStatus.OK} == {}, [
        (c.id, c.subject, c.summary.en) for c in good.checks if c.status is not HealthStatus.OK]
    listed = next(iter(TOPOLOGY["dnsbl"]["listed"]))
    broken = await domain(kb, "greylist.test", dnsbl_zones=[TOPOLOGY["dnsbl"]["zone"]],
                          ips=[listed])
    rules = {rule(c) for c in broken.checks}
    assert {"domain.spf.permissive", "domain.dmarc.monitoring", "domain.dnsbl.listed",
            "domain.tls_rpt.missing", "domain.dane.mismatch",
            "domain.mta_sts.mx_uncovered"} <= rules
    dnsbl = by(broken, "dnsbl")[listed]
    assert TOPOLOGY["dnsbl"]["listed"][listed]["txt"] in dnsbl.finding.evidence  # type: ignore[union-attr]


def test_check_looks_up_the_blocklist_the_real_postfix_names(
        run_cli: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    """Postfix refuses 127.0.0.1 "blocked using zen.dnsbl.test": check asks that zone (dnsmasq)
    for the address and shows the list's reason beside the finding."""
    case = TOPOLOGY["replies"]["dnsbl_listed"]
    listed = TOPOLOGY["dnsbl"]["listed"][case["client"]]
    done = run_cli("check", case["rcpt"], "--json", "--resolver",
                   os.environ[ENV["resolver"]], "--cafile", os.environ[ENV["ca_file"]],
                   "--timeout", "10", timeout=120)
    assert "Traceback" not in done.stderr, done.stderr
    data = json.loads(done.stdout)
    assert data["finding"]["category"] == "blocklisted"
    item, = data["lookups"]
    assert (item["kind"], item["subject"], item["status"]) == (
        "dnsbl", f"{case['client']} in {TOPOLOGY['dnsbl']['zone']}", "fail")
    assert item["details"]["codes"] == [listed["a"]]
    assert item["details"]["reason"] == listed["txt"]
    text = run_cli("check", case["rcpt"], "--lang", "de", "--resolver",
                   os.environ[ENV["resolver"]], "--cafile", os.environ[ENV["ca_file"]],
                   "--timeout", "10", timeout=120)
    assert "Nachgeschlagen" in text.stdout and f"eingetragen ({listed['a']})" in text.stdout
