"""The policy checks of `smtpprobe domain` (probe/domain_policy.py) against the lab DNS zone:
SPF through pyspf with our resolver, DMARC, DKIM, DNS blocklists, TLS-RPT and DANE."""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from smtpprobe.core.certs import TrustStore
from smtpprobe.core.classify import Classifier
from smtpprobe.core.knowledge.model import KnowledgeBase
from smtpprobe.lab.dns import LabDns, Record
from smtpprobe.lab.tls import LabCA
from smtpprobe.lab.world import DNSBL_ZONE, DOMAIN_DOMAINS, records_for
from smtpprobe.models import Category, DomainCheck, HealthStatus
from smtpprobe.probe import domain_policy
from smtpprobe.probe.domain import DomainContext

StartDns = Callable[..., Awaitable[LabDns]]


def _txt(text: str) -> str:
    return " ".join('"' + text[i:i + 255] + '"' for i in range(0, len(text), 255))


# SPF cases beside the world's healthy.test (good) and broken.test (+all).
SPF_CASES: list[Record] = [
    Record("syntax.test", "TXT", _txt("v=spf1 ip4:127.0.0.1 frobnicate:x -all")),
    Record("twice.test", "TXT", _txt("v=spf1 -all")),
    Record("twice.test", "TXT", _txt("v=spf1 mx -all")),
    Record("lots.test", "TXT",
           _txt("v=spf1 " + " ".join(f"include:i{n}.lots.test" for n in range(11)) + " -all")),
    *[Record(f"i{n}.lots.test", "TXT", _txt("v=spf1 -all")) for n in range(11)],
    Record("void.test", "TXT",
           _txt("v=spf1 a:nx1.void.test a:nx2.void.test a:nx3.void.test -all")),
    Record("neutral.test", "TXT", _txt("v=spf1 ip4:192.0.2.0/24 ?all")),
    Record("ips.test", "TXT", _txt("v=spf1 ip4:127.0.0.77 -all")),
    Record("ips.test", "MX", "10 mx.healthy.test."),
    Record("tempfail.test", "TXT", _txt("v=spf1 include:slow.tempfail.test -all")),
    Record("slow.tempfail.test", "TXT", _txt("v=spf1 -all")),
    Record("nospf.test", "TXT", _txt("google-site-verification=abc")),
    # DMARC cases
    Record("_dmarc.nospf.test", "TXT", _txt("v=DMARC1; p=bogus")),
    Record("_dmarc.ips.test", "TXT", _txt("v=DMARC1; p=reject; sp=none; rua=mailto:d@ips.test")),
    Record("_dmarc.twice.test", "TXT", _txt("v=DMARC1; p=reject")),
    Record("_dmarc.twice.test", "TXT", _txt("v=DMARC1; p=none")),
    # DKIM cases
    Record("gone._domainkey.healthy.test", "TXT", _txt("v=DKIM1; p=")),
    Record("junk._domainkey.healthy.test", "TXT", _txt("v=DKIM1; k=rsa; p=not*base64")),
    # TLS-RPT: an https: rua is fine too
    Record("_smtp._tls.ips.test", "TXT", _txt("v=TLSRPTv1; rua=https://reports.ips.test/tls")),
]


@pytest.fixture
async def zone(lab_dns: StartDns) -> LabDns:
    records = records_for(DOMAIN_DOMAINS) + SPF_CASES
    return await lab_dns(records, zone=".", behaviour={"slow.tempfail.test": "timeout"})


def context(zone: LabDns, kb: KnowledgeBase, trust: TrustStore, domain: str,
            **options: Any) -> DomainContext:
    loop = asyncio.get_running_loop()
    return DomainContext(domain=domain, ascii_domain=domain, nameservers=(zone.address,),
                         timeout=options.pop("timeout", 2.0), deadline=loop.time() + 30,
                         trust=trust, classifier=Classifier(kb), **options)


def only(checks: Iterable[DomainCheck], status: HealthStatus | None = None) -> DomainCheck:
    found = [c for c in checks if status is None or c.status is status]
    assert len(found) == 1, found
    return found[0]


def rule(check: DomainCheck) -> str:
    assert check.finding is not None, check
    return check.finding.rule


@pytest.fixture(autouse=True)
def no_system_resolver(monkeypatch: pytest.MonkeyPatch) -> None:
    """pyspf's own DNS (its module-level DNSLookup, the system resolver) must never run."""
    import spf  # type: ignore[import-untyped]

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"pyspf asked the system resolver: {args}")

    monkeypatch.setattr(spf, "DNSLookup", refuse)


# -- SPF -------------------------------------------------------------------------------------------


async def test_spf_good_record_and_mx_pass(zone: LabDns, kb: KnowledgeBase,
                                           trust: TrustStore) -> None:
    checks = await domain_policy.check_spf(context(zone, kb, trust, "healthy.test"))
    check = only(checks)
    assert check.status is HealthStatus.OK, check
    assert check.details["record"] == "v=spf1 mx -all"
    assert check.details["mx_results"] == {"127.0.0.31": "pass", "::1": "pass"}
    # Every question went to the lab server, on loopback.
    assert ("healthy.test", "TXT") in zone.queries
    assert ("mx.healthy.test", "A") in zone.queries or ("mx.healthy.test", "AAAA") in zone.queries


async def test_spf_plus_all_fails(zone: LabDns, kb: KnowledgeBase, trust: TrustStore) -> None:
    checks = await domain_policy.check_spf(context(zone, kb, trust, "broken.test"))
    check = only(checks, HealthStatus.FAIL)
    assert rule(check) == "domain.spf.permissive"
    assert check.details["all"] == "+all"
    assert "+all" in check.summary.en


async def test_spf_question_all_warns(zone: LabDns, kb: KnowledgeBase, trust: TrustStore) -> None:
    checks = await domain_policy.check_spf(context(zone, kb, trust, "neutral.test"))
    check = only(checks, HealthStatus.WARN)
    assert rule(check) == "domain.spf.permissive"
    assert check.details["all"] == "?all"


@pytest.mark.parametrize(("domain", "rule_id", "words"), [
    ("syntax.test", "domain.spf.invalid", "frobnicate"),
    ("lots.test", "domain.spf.too_many_lookups", "lookups"),
    ("void.test", "domain.spf.void_lookups", "void lookup"),
    ("twice.test", "domain.spf.multiple", "2 v=spf1 records"),
    ("nospf.test", "domain.spf.missing", "no TXT record beginning with v=spf1"),
])
async def test_spf_broken_records(zone: LabDns, kb: KnowledgeBase, trust: TrustStore,
                                  domain: str, rule_id: str, words: str) -> None:
    checks = await domain_policy.check_spf(context(zone, kb, trust, domain))
    check = only(checks)
    assert check.status in (HealthStatus.FAIL, HealthStatus.WARN), check
    assert rule(check) == rule_id
    assert check.finding is not None and words.lower() in check.finding.evidence.lower()


async def test_spf_lookup_limit_counts_the_eleventh_include(zone: LabDns, kb: KnowledgeBase,
                                                           trust: TrustStore) -> None:
    await domain_policy.check_spf(context(zone, kb, trust, "lots.test"))
    asked = {name for name, rtype in zone.queries if rtype == "TXT"}
    # pyspf stopped at the limit: the includes up to the eleventh were asked, none after.
    assert "i9.lots.test" in asked
    assert "i10.lots.test" not in asked


async def test_spf_ip_option_and_mx_not_listed(zone: LabDns, kb: KnowledgeBase,
                                               trust: TrustStore) -> None:
    ctx = context(zone, kb, trust, "ips.test", ips=("127.0.0.77", "127.0.0.78"))
    checks = await domain_policy.check_spf(ctx)
    by_subject = {(c.subject, c.status): c for c in checks}
    assert by_subject[("127.0.0.77", HealthStatus.OK)].details["result"] == "pass"
    bad = by_subject[("127.0.0.78", HealthStatus.FAIL)]
    assert rule(bad) == "domain.spf.ip_fails" and bad.details["result"] == "fail"
    mx = by_subject[("ips.test", HealthStatus.INFO)]
    assert rule(mx) == "domain.spf.mx_not_listed"
    assert "127.0.0.31 (fail)" in mx.summary.en


async def test_spf_temperror_is_unknown(zone: LabDns, kb: KnowledgeBase,
                                        trust: TrustStore) -> None:
    checks = await domain_policy.check_spf(context(zone, kb, trust, "tempfail.test",
                                                   timeout=0.3))
    check = only(checks)
    assert check.status is HealthStatus.UNKNOWN
    assert rule(check) == "domain.spf.temperror"


async def test_spf_dns_failure_is_unknown(lab_dns: StartDns, kb: KnowledgeBase,
                                          trust: TrustStore) -> None:
    server = await lab_dns([Record("x.test", "A", "127.0.0.1")],
                           behaviour={"x.test": "servfail"})
    check = only(await domain_policy.check_spf(context(server, kb, trust, "x.test")))
    assert check.status is HealthStatus.UNKNOWN
    assert check.finding is not None and check.finding.category is Category.DNS_FAILED


# -- DMARC -----------------------------------------------------------------------------------------


async def test_dmarc_good(zone: LabDns, kb: KnowledgeBase, trust: TrustStore) -> None:
    check = only(await domain_policy.check_dmarc(context(zone, kb, trust, "healthy.test")))
    assert check.status is HealthStatus.OK
    assert check.details["p"] == "reject" and check.details["adkim"] == "s"
    assert check.details["rua"] == ["mailto:dmarc@healthy.test"]


async def test_dmarc_monitoring_partial(zone: LabDns, kb: KnowledgeBase, trust: TrustStore) -> None:
    checks = await domain_policy.check_dmarc(context(zone, kb, trust, "broken.test"))
    rules = {rule(c): c.status for c in checks}
    # p=none: pct does not matter yet; no rua: nobody reads reports.
    assert rules == {"domain.dmarc.monitoring": HealthStatus.WARN,
                     "domain.dmarc.no_reports": HealthStatus.INFO}


async def test_dmarc_weaker_subdomain_policy(zone: LabDns, kb: KnowledgeBase,
                                             trust: TrustStore) -> None:
    checks = await domain_policy.check_dmarc(context(zone, kb, trust, "ips.test"))
    assert [c.status for c in checks] == [HealthStatus.OK, HealthStatus.INFO]
    assert rule(checks[1]) == "domain.dmarc.partial"
    assert "sp=none is weaker than p=reject" in checks[1].summary.en


@pytest.mark.parametrize(("domain", "rule_id", "status"), [
    ("nospf.test", "domain.dmarc.invalid", HealthStatus.FAIL),
    ("twice.test", "domain.dmarc.invalid", HealthStatus.FAIL),
    ("void.test", "domain.dmarc.missing", HealthStatus.WARN),
])
async def test_dmarc_broken(zone: LabDns, kb: KnowledgeBase, trust: TrustStore, domain: str,
                            rule_id: str, status: HealthStatus) -> None:
    check = only(await domain_policy.check_dmarc(context(zone, kb, trust, domain)))
    assert (rule(check), check.status) == (rule_id, status)


# -- DKIM ------------------------------------------------------------------------------------------


async def test_dkim_without_selector_says_so(zone: LabDns, kb: KnowledgeBase,
                                             trust: TrustStore) -> None:
    check = only(await domain_policy.check_dkim(context(zone, kb, trust, "healthy.test")))
    assert check.status is HealthStatus.INFO and rule(check) == "domain.dkim.no_selector"
    assert not [q for q in zone.queries if "_domainkey" in q[0]]  # no guessing


@pytest.mark.parametrize(("domain", "selector", "status", "rule_id", "bits"), [
    ("healthy.test", "lab", HealthStatus.OK, None, 2048),
    ("broken.test", "lab", HealthStatus.WARN, "domain.dkim.weak_key", 1024),
    ("healthy.test", "gone", HealthStatus.WARN, "domain.dkim.revoked", None),
    ("healthy.test", "junk", HealthStatus.FAIL, "domain.dkim.invalid", None),
    ("healthy.test", "nosuch", HealthStatus.FAIL, "domain.dkim.missing", None),
])
async def test_dkim_selectors(zone: LabDns, kb: KnowledgeBase, trust: TrustStore, domain: str,
                              selector: str, status: HealthStatus, rule_id: str | None,
                              bits: int | None) -> None:
    ctx = context(zone, kb, trust, domain, selectors=(selector,))
    check = only(await domain_policy.check_dkim(ctx))
    assert check.status is status, check
    assert check.subject == f"{selector}._domainkey.{domain}"
    if rule_id is None:
        assert check.finding is None
    else:
        assert rule(check) == rule_id
    if bits is not None:
        assert check.details["bits"] == bits


# -- DNS blocklists --------------------------------------------------------------------------------


async def test_dnsbl_listed_with_reason(zone: LabDns, kb: KnowledgeBase, trust: TrustStore) -> None:
    ctx = context(zone, kb, trust, "broken.test", dnsbl_zones=(DNSBL_ZONE,))
    check = only(await domain_policy.check_dnsbl(ctx))
    assert (check.subject, check.status, rule(check)) == ("127.0.0.32", HealthStatus.FAIL,
                                                          "domain.dnsbl.listed")
    assert check.finding is not None
    assert check.finding.category is Category.BLOCKLISTED
    assert "https://dnsbl.test/lookup?ip=127.0.0.32" in check.finding.evidence
    assert ("32.0.0.127.dnsbl.test", "A") in zone.queries


async def test_dnsbl_refused_answer_is_unknown_not_listed(zone: LabDns, kb: KnowledgeBase,
                                                          trust: TrustStore) -> None:
    ctx = context(zone, kb, trust, "noptr.test", dnsbl_zones=(DNSBL_ZONE,))
    check = only(await domain_policy.check_dnsbl(ctx))
    assert check.status is HealthStatus.UNKNOWN
    assert rule(check) == "domain.dnsbl.unanswered"
    assert "public resolver" in check.finding.evidence  # type: ignore[union-attr]


async def test_dnsbl_clean_and_ip_option(zone: LabDns, kb: KnowledgeBase,
                                         trust: TrustStore) -> None:
    ctx = context(zone, kb, trust, "healthy.test", dnsbl_zones=(DNSBL_ZONE,),
                  ips=("127.0.0.32",))
    checks = await domain_policy.check_dnsbl(ctx)
    statuses = {c.subject: c.status for c in checks}
    assert statuses == {"127.0.0.32": HealthStatus.FAIL, "127.0.0.31": HealthStatus.OK,
                        "::1": HealthStatus.OK}
    asked = [name for name, _ in zone.queries if name.endswith(DNSBL_ZONE)]
    assert "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.dnsbl.test" in asked


async def test_dnsbl_without_zones_asks_nothing(zone: LabDns, kb: KnowledgeBase,
                                                trust: TrustStore) -> None:
    check = only(await domain_policy.check_dnsbl(context(zone, kb, trust, "broken.test")))
    assert check.status is HealthStatus.INFO
    assert not [q for q in zone.queries if DNSBL_ZONE in q[0]]


def test_default_zones_are_public_lists_and_not_lab_ones() -> None:
    assert domain_policy.DEFAULT_DNSBL_ZONES
    assert DNSBL_ZONE not in domain_policy.DEFAULT_DNSBL_ZONES


# -- TLS-RPT ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("domain", "status", "rule_id"), [
    ("healthy.test", HealthStatus.OK, None),
    ("ips.test", HealthStatus.OK, None),
    ("broken.test", HealthStatus.WARN, "domain.tls_rpt.invalid"),
    ("void.test", HealthStatus.INFO, "domain.tls_rpt.missing"),
])
async def test_tls_rpt(zone: LabDns, kb: KnowledgeBase, trust: TrustStore, domain: str,
                       status: HealthStatus, rule_id: str | None) -> None:
    check = only(await domain_policy.check_tls_rpt(context(zone, kb, trust, domain)))
    assert check.status is status
    assert (check.finding.rule if check.finding else None) == rule_id


# -- MTA-STS without a record ---------------------------------------------------------------------


async def test_mta_sts_missing_is_info(zone: LabDns, kb: KnowledgeBase, trust: TrustStore) -> None:
    check = only(await domain_policy.check_mta_sts(context(zone, kb, trust, "healthy.test")))
    assert check.status is HealthStatus.INFO and rule(check) == "domain.mta_sts.missing"


# -- DANE: the answer's AD bit decides; the lab server never sets it -------------------------------


def _spki_sha256(ca: LabCA, host: str) -> tuple[str, bytes]:
    cert = ca.issue(host)
    spki = cert.cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).hexdigest(), cert.cert.public_bytes(Encoding.DER)


async def test_dane_unvalidated_and_missing(lab_dns: StartDns, kb: KnowledgeBase,
                                            trust: TrustStore, ca: LabCA) -> None:
    digest, der = _spki_sha256(ca, "mx1.dane.test")
    server = await lab_dns([
        Record("dane.test", "MX", "10 mx1.dane.test."),
        Record("dane.test", "MX", "20 mx2.dane.test."),
        Record("mx1.dane.test", "A", "127.0.0.61"), Record("mx2.dane.test", "A", "127.0.0.62"),
        Record("_25._tcp.mx1.dane.test", "TLSA", f"3 1 1 {digest}"),
    ])
    ctx = context(server, kb, trust, "dane.test", presented={"mx1.dane.test": (der,)})
    checks = {c.subject: c for c in await domain_policy.check_dane(ctx)}
    # The record matches, but without the AD bit it does not count (RFC 7672 2.2).
    assert checks["mx1.dane.test"].status is HealthStatus.WARN
    assert rule(checks["mx1.dane.test"]) == "domain.dane.unvalidated"
    assert checks["mx2.dane.test"].status is HealthStatus.INFO
    assert rule(checks["mx2.dane.test"]) == "domain.dane.missing"


# -- pyspf through our resolver: every record type it asks for ---------------------------------

# RFC 7208 mechanisms that make pyspf ask A, AAAA, MX, PTR and TXT (and follow a CNAME), each
# answered by the lab server only. (address, record of eval.test, result)
EVAL_CASES = [
    ("192.0.2.10", "v=spf1 mx -all", "pass"),  # MX -> A (5.4)
    ("2001:db8::10", "v=spf1 mx -all", "pass"),  # MX -> AAAA
    ("192.0.2.11", "v=spf1 mx -all", "fail"),
    ("192.0.2.10", "v=spf1 a:host.eval.test/24 -all", "pass"),  # a with a CIDR length (5.3)
    ("192.0.2.99", "v=spf1 a:alias.eval.test -all", "pass"),  # CNAME followed
    ("192.0.2.20", "v=spf1 ptr:eval.test -all", "pass"),  # PTR, then A to confirm (5.5)
    ("192.0.2.21", "v=spf1 ptr:eval.test -all", "fail"),  # PTR name does not lead back
    ("192.0.2.30", "v=spf1 exists:%{i}.allow.eval.test -all", "pass"),  # macro (7.3)
    ("192.0.2.31", "v=spf1 exists:%{i}.allow.eval.test -all", "fail"),
    ("192.0.2.40", "v=spf1 redirect=other.eval.test", "pass"),  # redirect (6.1)
    ("192.0.2.41", "v=spf1 include:other.eval.test ~all", "softfail"),  # include (5.2)
    ("192.0.2.41", "v=spf1 include:broken.eval.test -all", "permerror"),  # include -> none
    ("2001:db8::40", "v=spf1 ip6:2001:db8::/64 -all", "pass"),
    ("192.0.2.50", "v=spf1 -ip4:192.0.2.0/24 +all", "fail"),
]

EVAL_ZONE = [
    Record("eval.test", "MX", "10 host.eval.test."),
    Record("host.eval.test", "A", "192.0.2.10"),
    Record("host.eval.test", "AAAA", "2001:db8::10"),
    Record("alias.eval.test", "CNAME", "real.eval.test."),
    Record("real.eval.test", "A", "192.0.2.99"),
    Record("20.2.0.192.in-addr.arpa", "PTR", "named.eval.test."),
    Record("named.eval.test", "A", "192.0.2.20"),
    Record("21.2.0.192.in-addr.arpa", "PTR", "liar.eval.test."),
    Record("liar.eval.test", "A", "192.0.2.77"),
    Record("192.0.2.30.allow.eval.test", "A", "127.0.0.2"),
    Record("other.eval.test", "TXT", _txt("v=spf1 ip4:192.0.2.40 -all")),
    Record("broken.eval.test", "TXT", _txt("not spf at all")),
]


@pytest.mark.parametrize(("address", "record", "expected"), EVAL_CASES)
async def test_pyspf_asks_only_our_resolver(lab_dns: StartDns, kb: KnowledgeBase,
                                            trust: TrustStore, address: str, record: str,
                                            expected: str) -> None:
    server = await lab_dns([*EVAL_ZONE, Record("eval.test", "TXT", _txt(record))], zone=".")
    ctx = context(server, kb, trust, "eval.test")
    result, explanation, used = await domain_policy.spf_evaluate(ctx, address)
    assert (result, used) == (expected, record), explanation
    assert ("eval.test", "TXT") in server.queries


# -- both languages ------------------------------------------------------------------------------

_ENGLISH = re.compile(r"\b(?:the|not|no|is|does|record|records|invalid|listed|missing|policy|"
                      r"key|cannot|matches|every|server|servers|bits|zone|zones)\b")


@pytest.mark.parametrize("domain", ["broken.test", "healthy.test", "syntax.test", "nospf.test",
                                    "ips.test", "lots.test"])
async def test_summaries_are_german_in_german(zone: LabDns, kb: KnowledgeBase,
                                              trust: TrustStore, domain: str) -> None:
    ctx = context(zone, kb, trust, domain, selectors=("lab", "gone", "junk", "nosuch"),
                  dnsbl_zones=(DNSBL_ZONE,), ips=("127.0.0.78",))
    checks: list[DomainCheck] = []
    for check in (domain_policy.check_spf, domain_policy.check_dmarc, domain_policy.check_dkim,
                  domain_policy.check_dnsbl, domain_policy.check_mta_sts,
                  domain_policy.check_tls_rpt, domain_policy.check_dane):
        checks.extend(await check(ctx))
    assert len(checks) >= 7
    for check in checks:
        # Record texts (v=spf1 ..., mailto:...) are quoted as they are; the words around them
        # are German.
        words = re.sub(r"v=\S+.*|mailto:\S+|\S+\.test\S*", "", check.summary.de)
        assert not _ENGLISH.search(words), (check.id, check.summary.de)
        assert check.summary.en != check.summary.de or check.summary.en.startswith(
            ("SPF", "DMARC", "MTA-STS")), check.summary
