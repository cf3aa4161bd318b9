"""`check` end to end against lab servers and the lab DNS zone on 127.0.0.x."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from smtpprobe.core.knowledge.load import KnowledgeBase
from smtpprobe.lab.dns import LabDns, Record
from smtpprobe.lab.smtp import serve
from smtpprobe.lab.tls import LabCA
from smtpprobe.lab.world import (
    DEMO_DOMAINS,
    Domain,
    LabWorld,
    lab_world,
    lab_world_in_thread,
    records_for,
)
from smtpprobe.models import (
    AddressStatus,
    Category,
    CheckReport,
    FailureKind,
    Severity,
    Stage,
    Verdict,
)
from smtpprobe.probe.check import CheckOptions
from smtpprobe.report.text_check import check_view

EXTRA = (
    Domain("relay.test", ((10, "mx.relay.test", "127.0.0.31", "relay_denied"),)),
    Domain("auth.test", ((10, "mx.auth.test", "127.0.0.32", "auth_required"),)),
    Domain("banner.test", ((10, "mx.banner.test", "127.0.0.33", "banner_reject"),)),
    Domain("slow.test", ((10, "mx.slow.test", "127.0.0.34", "slow_banner"),)),
    Domain("drop.test", ((10, "mx.drop.test", "127.0.0.35", "disconnect_mid"),)),
    Domain("busy.test", ((10, "mx.busy.test", "127.0.0.36", "rate_limited"),)),
    Domain("old.test", ((10, "mx.old.test", "127.0.0.37", "no_esmtp"),)),
    Domain("helo.test", ((10, "mx.helo.test", "127.0.0.38", "helo_reject"),)),
    Domain("plain.test", ((10, "mx.plain.test", "127.0.0.39", "no_starttls"),)),
    Domain("authfail.test", ((10, "mx.authfail.test", "127.0.0.40", "auth_failing"),)),
    # The preferred MX greets only after 5 s; the backup answers at once.
    Domain("tarpit.test", ((10, "mx.slow.test", "127.0.0.34", "slow_banner"),
                           (20, "mx.good.test", "127.0.0.21", "mailbox"))),
    Domain("allgone.test", ((10, "a.allgone.test", "127.0.0.41", None),
                            (20, "b.allgone.test", "127.0.0.42", None))),
)
DOMAINS = DEMO_DOMAINS + EXTRA

# The types of conftest's check_options, check_address and run_cli fixtures, and of `check`.
Options = Callable[..., CheckOptions]
CheckAddress = Callable[[CheckOptions, str], Awaitable[CheckReport]]
RunCli = Callable[..., subprocess.CompletedProcess[str]]
Check = Callable[..., Awaitable[CheckReport]]


@pytest.fixture
async def world() -> AsyncIterator[LabWorld]:
    async with lab_world(DOMAINS, greylist_delay=0.5) as lab:
        yield lab


@pytest.fixture
def check(world: LabWorld, check_options: Options, check_address: CheckAddress) -> Check:
    """`await check(address, **options)`: a check of `address` in `world`, with conftest's
    lab options (3 s a step, 15 s an address) unless `options` say otherwise."""

    async def run(address: str, **extra: Any) -> CheckReport:
        return await check_address(check_options(world, **extra), address)

    return run


def stages(report: CheckReport, host: int = -1) -> list[str]:
    return [str(s.stage) for s in report.hosts[host].steps]


async def test_accepted_with_starttls_and_verified_certificate(
        check: Check, world: LabWorld) -> None:
    report = await check("alice@good.test")
    assert report.verdict is Verdict.ACCEPTED
    assert report.address_status is AddressStatus.EXISTS
    assert report.finding.category is Category.SUCCESS and report.finding.stage is Stage.RCPT
    assert [m.name for m in report.mx.hosts] == ["mx.good.test"]
    assert stages(report) == ["connect", "ehlo", "starttls", "ehlo", "mail", "rcpt", "quit"]
    host = report.hosts[0]
    assert host.tls is not None and host.tls.verified and host.tls.name_matches
    assert host.capabilities is not None and host.capabilities.starttls
    assert host.capabilities_after_tls is not None and not host.capabilities_after_tls.starttls
    server = world.servers["mx.good.test"]
    assert not any(c.upper().startswith("DATA") for c in server.commands)
    assert report.findings == ()


async def test_unknown_user(check: Check) -> None:
    report = await check("nobody@good.test")
    assert report.verdict is Verdict.REJECTED
    assert report.address_status is AddressStatus.DOES_NOT_EXIST
    assert report.finding.category is Category.USER_UNKNOWN
    assert report.finding.code == 550 and report.finding.enhanced_code == "5.1.1"
    assert not report.finding.retryable


async def test_mailbox_full_with_a_5xx_is_rejected_but_the_address_exists(check: Check) -> None:
    # Senders bounce on 552 5.2.2; the mailbox exists and a later try may work (retryable).
    report = await check("bob@full.test")
    assert report.verdict is Verdict.REJECTED
    assert report.finding.code == 552 and report.finding.enhanced_code == "5.2.2"
    assert report.finding.category is Category.MAILBOX_FULL and report.finding.retryable
    assert report.address_status is AddressStatus.EXISTS


async def test_relay_denied_leaves_address_unknown(check: Check) -> None:
    report = await check("alice@relay.test")
    assert report.verdict is Verdict.REJECTED
    assert report.finding.category is Category.RELAY_DENIED
    assert report.address_status is AddressStatus.UNKNOWN


async def test_greylisting_defers_then_passes(check: Check) -> None:
    first = await check("alice@grey.test")
    assert first.verdict is Verdict.DEFERRED
    assert first.finding.category is Category.GREYLISTED and first.finding.retryable
    await asyncio.sleep(0.6)
    second = await check("alice@grey.test")
    assert second.verdict is Verdict.ACCEPTED


async def test_blocklisted_prober(check: Check) -> None:
    report = await check("alice@blocked.test")
    assert report.verdict is Verdict.REJECTED
    assert report.finding.category is Category.BLOCKLISTED
    assert report.finding.about_prober
    assert report.address_status is AddressStatus.UNKNOWN


async def test_starttls_required_without_starttls(check: Check) -> None:
    report = await check("alice@tls.test", starttls=False)
    assert report.finding.category is Category.TLS_REQUIRED
    assert report.finding.stage is Stage.MAIL
    # With STARTTLS (the default) the same server accepts.
    assert (await check("alice@tls.test")).verdict is Verdict.ACCEPTED


async def test_auth_required_and_auth_failing_servers(check: Check) -> None:
    for domain in ("auth.test", "authfail.test"):
        report = await check(f"alice@{domain}")
        assert report.verdict is Verdict.REJECTED
        assert report.finding.category is Category.AUTH_REQUIRED, domain
        assert report.address_status is AddressStatus.UNKNOWN


async def test_banner_rejection(check: Check) -> None:
    report = await check("alice@banner.test")
    assert report.verdict is Verdict.REJECTED
    assert report.finding.stage is Stage.CONNECT and report.finding.code == 554
    assert report.address_status is AddressStatus.UNKNOWN
    assert stages(report) == ["connect", "quit"] or stages(report) == ["connect"]


async def test_slow_banner_times_out(check: Check) -> None:
    report = await check("alice@slow.test", timeout=1.0)
    assert report.verdict is Verdict.UNREACHABLE
    step = report.hosts[0].steps[0]
    assert step.failure is not None and step.failure.kind is FailureKind.TIMEOUT
    assert report.finding.category is Category.CONNECTION_FAILED and report.finding.retryable


async def test_disconnect_mid_conversation(check: Check) -> None:
    report = await check("alice@drop.test")
    assert report.verdict is Verdict.UNREACHABLE
    failed = [s for s in report.hosts[0].steps if s.failure is not None]
    assert failed and failed[0].failure is not None
    assert failed[0].failure.kind is FailureKind.CLOSED and failed[0].stage is Stage.RCPT


async def test_rate_limited_banner_is_a_deferral(check: Check) -> None:
    report = await check("alice@busy.test")
    assert report.verdict is Verdict.DEFERRED
    assert report.finding.code == 421 and report.finding.retryable


async def test_helo_fallback_for_an_old_server(check: Check) -> None:
    report = await check("alice@old.test")
    assert report.verdict is Verdict.ACCEPTED
    commands = [s.command or "" for s in report.hosts[0].steps]
    assert any(c.startswith("EHLO") for c in commands)
    assert any(c.startswith("HELO") for c in commands)


async def test_helo_rejected(check: Check) -> None:
    report = await check("alice@helo.test")
    assert report.finding.category is Category.CLIENT_IDENTITY_REJECTED
    assert report.address_status is AddressStatus.UNKNOWN


async def test_no_starttls_is_a_finding(check: Check) -> None:
    report = await check("alice@plain.test")
    assert report.verdict is Verdict.ACCEPTED
    assert report.hosts[0].tls is None
    assert any(f.category is Category.TLS_UNAVAILABLE for f in report.findings)


async def test_backup_mx_after_refused_primary(check: Check) -> None:
    report = await check("alice@backup.test")
    assert report.verdict is Verdict.ACCEPTED
    assert [h.host for h in report.hosts] == ["mx1.backup.test", "mx.good.test"]
    first = report.hosts[0].steps[0]
    assert first.failure is not None and first.failure.kind is FailureKind.REFUSED
    # The dead primary is a warning about that host, not an error with "port 25 is blocked"
    # advice: the same run reached the backup on port 25.
    assert [f.rule for f in report.findings if f.severity not in (
        Severity.OK, Severity.INFO)] == ["observe.mx_down"]
    down = report.findings[0]
    assert down.severity is Severity.WARNING and "mx1.backup.test" in down.evidence
    assert "mx.good.test" in down.evidence and "127.0.0.29" in down.evidence
    assert "port 25" not in down.remedy.get("en").lower()


async def test_staggered_attempt_does_not_wait_for_a_tarpit(check: Check) -> None:
    # The preferred MX greets only after 5 s, beyond the 1.5 s step timeout: the backup,
    # started beside it after the stagger delay, decides.
    report = await check("alice@tarpit.test", timeout=1.5, stagger=0.2)
    assert report.verdict is Verdict.ACCEPTED
    assert [h.host for h in report.hosts] == ["mx.slow.test", "mx.good.test"]
    slow = report.hosts[0].steps[0]
    assert slow.failure is not None and slow.failure.kind is FailureKind.TIMEOUT
    # The backup was started while the first attempt was still waiting for its greeting:
    # the backup's whole conversation fits inside the first attempt's timeout.
    good_total = sum(s.elapsed_ms for s in report.hosts[1].steps)
    assert good_total < slow.elapsed_ms


async def test_preference_wins_when_the_preferred_host_answers_late(check: Check) -> None:
    # Same tarpit, but a timeout long enough for the 5 s greeting: the backup answers first,
    # yet the verdict comes from the preferred host, as a sending MTA would deliver there.
    report = await check("alice@tarpit.test", timeout=8.0, stagger=0.2)
    assert report.verdict is Verdict.ACCEPTED
    assert report.hosts[0].host == "mx.slow.test"
    assert report.hosts[0].steps[-1].stage in (Stage.QUIT, Stage.RCPT)
    rcpt = [s for s in report.hosts[0].steps if s.stage is Stage.RCPT]
    assert rcpt and rcpt[0].reply is not None and rcpt[0].reply.code == 250
    # The 5 s greeting passed, and is worth a word.
    slow = next(f for f in report.findings if f.rule == "observe.slow_reply")
    assert slow.severity is Severity.WARNING and "greeting took 5." in slow.evidence


async def test_all_hosts_refuse(check: Check) -> None:
    report = await check("alice@allgone.test")
    assert report.verdict is Verdict.UNREACHABLE
    assert report.finding.category is Category.CONNECTION_FAILED
    assert len(report.hosts) == 2


async def test_catch_all_detection(check: Check) -> None:
    report = await check("someone@catchall.test", catch_all=True)
    assert report.verdict is Verdict.ACCEPTED and report.catch_all is True
    assert report.address_status is AddressStatus.CATCH_ALL
    assert any(f.category is Category.CATCH_ALL for f in report.findings)
    # A real mailbox server rejects the made-up local part: the address is confirmed.
    real = await check("alice@good.test", catch_all=True)
    assert real.catch_all is False and real.address_status is AddressStatus.EXISTS
    # The made-up address's 550 is the good news: an info finding, no error or warning.
    assert [f.severity for f in real.findings if f.severity not in (
        Severity.OK, Severity.INFO)] == []
    note = next(f for f in real.findings if f.rule == "observe.not_catch_all")
    assert note.severity is Severity.INFO and "counts" in note.evidence
    assert real.finding.category is Category.SUCCESS
    # In the text, the made-up address's row is information, and the finding line keeps the
    # server's words whole or ends a cut with "…" (issue 10).
    shown = rendered(check_view(real, "en"))
    [probe_row] = [line for line in shown.splitlines() if "550" in line and "rcpt" in line]
    assert probe_row.lstrip().startswith("·"), probe_row
    assert any("Not a catch-all" in line for line in shown.splitlines())
    assert "✗" not in shown


async def test_null_mx_and_nxdomain_connect_to_nothing(check: Check, world: LabWorld) -> None:
    before = {name: server.connections for name, server in world.servers.items()}
    for address, kind in (("alice@nullmx.test", FailureKind.NULL_MX),
                          ("alice@nosuch.test", FailureKind.DNS_NXDOMAIN)):
        report = await check(address)
        assert report.verdict is Verdict.REJECTED
        assert report.finding.category is Category.DOMAIN_NOT_FOUND
        assert report.mx.failure is not None and report.mx.failure.kind is kind
        assert report.hosts == ()
    assert {name: server.connections for name, server in world.servers.items()} == before


async def test_pipelining_used_when_offered(check: Check, world: LabWorld) -> None:
    report = await check("alice@good.test")
    session = world.servers["mx.good.test"].sessions[-1]
    # MAIL, RCPT and QUIT arrived as one group (the lab records them in order).
    tail = [c.split()[0].upper() for c in session[-3:]]
    assert tail == ["MAIL", "RCPT", "QUIT"]
    assert report.verdict is Verdict.ACCEPTED
    serial = await check("alice@good.test", pipelining=False)
    assert serial.verdict is Verdict.ACCEPTED


async def test_certificate_problems_are_findings_not_failures(
        ca: LabCA, cafile: Path, check_options: Options, check_address: CheckAddress) -> None:
    cases = {
        "expired": (ca.issue("mx.cert.test", expired=True), Category.CERTIFICATE_PROBLEM,
                    "observe.cert.expired"),
        "wrong name": (ca.issue("other.example"), Category.CERTIFICATE_PROBLEM,
                       "observe.cert.name_mismatch"),
        "self-signed": (ca.issue("mx.cert.test", self_signed=True),
                        Category.CERTIFICATE_PROBLEM, "observe.cert.untrusted"),
    }
    for label, (cert, category, rule) in cases.items():
        async with await serve("mailbox", host="127.0.0.43", cert=cert,
                               hostname="mx.cert.test") as server:
            records = records_for([Domain("cert.test", ((10, "mx.cert.test", "127.0.0.43",
                                                          "mailbox"),))])
            async with LabDns(records) as zone:
                opts = check_options(port=server.port, nameservers=(zone.address,),
                                     cafile=str(cafile), deadline=10.0)
                report = await check_address(opts, "alice@cert.test")
        assert report.verdict is Verdict.ACCEPTED, label
        assert report.hosts[0].tls is not None, label
        matching = [f for f in report.findings if f.rule == rule]
        assert matching and matching[0].category is category, (label, report.findings)


async def test_mx_is_ip_cname_and_no_address(check_options: Options,
                                             check_address: CheckAddress) -> None:
    async with await serve("mailbox", host="127.0.0.44", hostname="mx.odd.test") as server:
        records = [
            Record("mxip.test", "MX", "10 127.0.0.44."),
            Record("cname.test", "MX", "10 alias.cname.test."),
            Record("alias.cname.test", "CNAME", "mx.odd.test."),
            Record("mx.odd.test", "A", "127.0.0.44"),
            Record("noaddr.test", "MX", "10 ghost.noaddr.test."),
        ]
        async with LabDns(records) as zone:
            opts = check_options(port=server.port, nameservers=(zone.address,), deadline=10.0)
            results = {}
            for address in ("a@mxip.test", "alice@cname.test", "a@noaddr.test"):
                results[address] = await check_address(opts, address)
    assert results["a@mxip.test"].verdict is Verdict.REJECTED
    assert results["a@mxip.test"].finding.category is Category.ROUTING_ERROR
    cname = results["alice@cname.test"]
    assert cname.verdict is Verdict.ACCEPTED
    assert any(f.rule.startswith("failure.mx_is_cname") for f in cname.findings)
    assert results["a@noaddr.test"].verdict is Verdict.REJECTED


async def test_ip_literal_address_skips_dns(check_options: Options,
                                            check_address: CheckAddress) -> None:
    async with await serve("mailbox", host="127.0.0.45") as server:
        opts = check_options(port=server.port, deadline=10.0, nameservers=(("127.0.0.1", 9),))
        report = await check_address(opts, "alice@[127.0.0.45]")
    assert report.verdict is Verdict.ACCEPTED
    assert server.sessions and any("alice@[127.0.0.45]" in c for c in server.sessions[0])


async def test_german_and_english_texts_differ(check: Check) -> None:
    report = await check("nobody@good.test")
    assert report.finding.cause.en != report.finding.cause.de
    assert report.finding.remedy.get("de") == report.finding.remedy.de


def test_cli_json_and_exit_codes(run_cli: RunCli) -> None:
    """The real command line, through a lab the test runs in a background thread."""
    with lab_world_in_thread() as lab:
        assert isinstance(lab, LabWorld)
        host, port = lab.resolver
        common = ["--resolver", f"{host}:{port}", "--port", str(lab.port), "--cafile",
                  lab.cafile, "--helo", "probe.smtpprobe.test", "--timeout", "3"]
        expected = {"alice@good.test": (0, "accepted"), "nobody@good.test": (1, "rejected"),
                    "alice@grey.test": (3, "deferred"), "alice@nullmx.test": (1, "rejected")}
        for address, (code, verdict) in expected.items():
            done = run_cli("check", address, "--json", *common)
            assert done.returncode == code, (address, done.stderr)
            data = json.loads(done.stdout)
            assert data["schema"] == "smtpprobe.check/1"
            assert data["verdict"] == verdict
            for key in ("finding", "findings", "mx", "hosts", "address_status"):
                assert key in data
            for key in ("category", "retryable", "code", "enhanced_code", "stage", "cause",
                        "remedy"):
                assert key in data["finding"]
            for host_entry in data["hosts"]:
                for step in host_entry["steps"]:
                    assert set(step) >= {"stage", "command", "reply", "failure", "elapsed_ms",
                                         "finding"}
        text = run_cli("check", "nobody@good.test", "alice@good.test", "--lang", "de", "-v",
                       *common)
        assert text.returncode == 1
        assert "ABGELEHNT" in text.stdout and "ANGENOMMEN" in text.stdout
        assert "-> RCPT TO:<nobody@good.test>" in text.stdout
        assert "<-  550 5.1.1" in text.stdout


def rendered(view: object) -> str:
    import os

    from rich.console import Console

    console = Console(record=True, width=200, file=open(os.devnull, "w"))  # noqa: SIM115
    console.print(view)
    return console.export_text()


def test_a_finding_line_is_cut_at_a_word_and_marked(kb: KnowledgeBase) -> None:
    from smtpprobe.core.classify import Classifier
    from smtpprobe.models import FailureKind, Stage
    from smtpprobe.report.text import finding_line

    evidence = "dead.example [192.0.2.1]: connection refused; " + "mx1.example answered " * 20
    finding = Classifier(kb).observe(Stage.CONNECT, FailureKind.REFUSED, evidence.strip())
    line = finding_line(finding, "en").plain
    assert line.endswith("…")
    last = line[:-1].split()[-1]
    assert last in ("mx1.example", "answered"), last  # whole words only, never "ans"
