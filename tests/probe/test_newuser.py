"""What a new user tripped over (issue 10), pinned against lab servers: a wrong password is
not sprayed over every port, and the results that were wrong answer right."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from smtpprobe.core.certs import TrustStore
from smtpprobe.core.knowledge.model import KnowledgeBase
from smtpprobe.core.recommendation import recommend
from smtpprobe.core.redact import Redactor
from smtpprobe.lab.smtp import LabServer
from smtpprobe.lab.tls import LabCert
from smtpprobe.models import AuthResult, Credentials, PortState
from smtpprobe.probe.sweep import Sweeper, SweepOptions, parse_ports

LabServerFactory = Callable[..., Awaitable[LabServer]]
USER = "alice@lab.test"


async def test_a_refused_password_is_not_sent_to_the_other_ports(
        kb: KnowledgeBase, trust: TrustStore, cert: LabCert,
        lab_server: LabServerFactory) -> None:
    servers = [await lab_server("submission", cert=cert, users={USER: "the-real-one"},
                                hostname="smtp.lab.test"),
               await lab_server("submission", cert=cert, users={USER: "the-real-one"},
                                hostname="smtp.lab.test", implicit_tls=True)]
    creds = Credentials(USER, "Wrong-Guess-1", "test")
    opts = SweepOptions(host="127.0.0.1", helo="probe.lab.test", timeout=2.0, deadline=10.0,
                        ports=parse_ports(f"{servers[0].port}:starttls,"
                                          f"{servers[1].port}:tls"), verify=False)
    report = await Sweeper(kb, opts, trust=trust, redactor=Redactor([(USER, creds.password)]),
                           credentials=creds).sweep()
    results = sorted(p.auth.result for p in report.ports)
    assert results == sorted([AuthResult.FAILED, AuthResult.WITHHELD])
    # One AUTH in all: the second port never saw the password.
    auths = [c for s in servers for c in s.commands if c.upper().startswith("AUTH")]
    assert len(auths) == 1, auths
    held = next(p for p in report.ports if p.auth.result is AuthResult.WITHHELD)
    assert held.auth.finding is not None and "already refused" in held.auth.finding.evidence
    assert held.auth.finding.rule == "withheld.refused_elsewhere"
    assert all(p.state is PortState.OPEN for p in report.ports)
    # The recommendation names the refusal, not the port that was spared.
    rec = recommend("127.0.0.1", report.ports, credentials=True)
    assert not rec.usable and rec.reasons[0].key == "auth_failed"


async def test_an_inbound_mx_is_named_as_such(kb: KnowledgeBase, trust: TrustStore,
                                              cert: LabCert, lab_server: LabServerFactory
                                              ) -> None:
    from smtpprobe.lab.hostile import closed_port
    from smtpprobe.report.words import reason_text

    mx = await lab_server("mailbox", cert=cert, hostname="mx.lab.test")  # no AUTH at all
    gone = [closed_port(), closed_port()]
    opts = SweepOptions(host="127.0.0.1", helo="probe.lab.test", timeout=2.0, deadline=10.0,
                        ports=parse_ports(f"{mx.port},{gone[0]},{gone[1]}"))
    report = await Sweeper(kb, opts, trust=trust, redactor=Redactor()).sweep()
    rec = report.recommendation
    assert not rec.usable
    assert [r.key for r in rec.reasons] == ["inbound_only"]  # not "every port refused"
    said = reason_text(rec.reasons[0], "en")
    assert f"port {mx.port}" in said and "587 or 465" in said
    assert str(gone[0]) in said and "MX" in said
    assert "Einlieferungsserver" in reason_text(rec.reasons[0], "de")


async def test_check_of_a_submission_server_with_login_and_implicit_tls(
        kb: KnowledgeBase, trust: TrustStore, cert: LabCert,
        lab_server: LabServerFactory, lab_dns: Callable[..., Awaitable[Any]]) -> None:
    from smtpprobe.core.address import parse_address
    from smtpprobe.lab.dns import Record
    from smtpprobe.models import Verdict
    from smtpprobe.probe.check import Checker, CheckOptions

    password = "Subm1ssion-Pw"
    creds = Credentials(USER, password, "test")
    implicit = await lab_server("submission", cert=cert, users={USER: password},
                                hostname="smtp.lab.test", implicit_tls=True)
    starttls = await lab_server("submission", cert=cert, users={USER: password},
                                hostname="smtp.lab.test")
    address = parse_address("someone@example.net")
    assert address is not None
    dns = await lab_dns([Record("smtp.lab.test", "A", "127.0.0.1")])
    resolver = (dns.address,)
    for server, tls in ((implicit, True), (starttls, False)):
        opts = CheckOptions(helo="probe.lab.test", server=("smtp.lab.test", server.port),
                            nameservers=resolver, timeout=3.0, deadline=15.0,
                            implicit_tls=tls, starttls=not tls, mail_from=USER)
        checker = Checker(kb, opts, trust=trust, credentials=creds,
                          redactor=Redactor([(USER, password)]))
        report = await checker.check(address)
        stages = [s.stage.value for s in report.hosts[0].steps]
        assert stages.index("auth") < stages.index("mail"), stages
        assert report.verdict is Verdict.ACCEPTED, report.finding
        assert report.hosts[0].tls is not None
        assert password not in repr(report)
    # Without the login, the same server refuses MAIL: the check says why.
    opts = CheckOptions(helo="probe.lab.test", server=("smtp.lab.test", implicit.port),
                        nameservers=resolver, timeout=3.0, deadline=15.0, implicit_tls=True,
                        starttls=False)
    checker = Checker(kb, opts, trust=trust)
    refused = await checker.check(address)
    assert refused.verdict is Verdict.REJECTED and refused.finding.code == 530

