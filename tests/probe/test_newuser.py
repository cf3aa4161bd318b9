"""What a new user tripped over (issue 10), pinned against lab servers: a wrong password is
not sprayed over every port, and the results that were wrong answer right."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

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
