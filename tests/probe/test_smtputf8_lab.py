"""SMTPUTF8 (RFC 6531) against the lab: the `smtputf8` scenario offers it and refuses a UTF-8
address in a transaction without it (Postfix's 553 5.6.7); `mailbox` does not offer it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from smtpprobe.core.address import parse_address
from smtpprobe.core.knowledge.load import KnowledgeBase
from smtpprobe.lab.smtp import LabServer
from smtpprobe.models import AddressStatus, CheckReport, Verdict
from smtpprobe.probe.check import Checker, CheckOptions

StartServer = Callable[..., Awaitable[LabServer]]
Options = Callable[..., CheckOptions]


async def _check(kb: KnowledgeBase, options: CheckOptions, address: str) -> CheckReport:
    parsed = parse_address(address)
    assert parsed is not None
    return await Checker(kb, options).check(parsed)


def _sent(report: CheckReport) -> list[str]:
    return [s.command or "" for s in report.hosts[-1].steps if s.stage in ("mail", "rcpt")]


async def test_requested_when_offered(kb: KnowledgeBase, lab_server: StartServer,
                                      check_options: Options) -> None:
    server = await lab_server("smtputf8", local_parts=("alice", "jörg"))
    options = check_options(server=("127.0.0.1", server.port), starttls=False)
    report = await _check(kb, options, "jörg@lab.test")
    assert report.verdict is Verdict.ACCEPTED
    assert _sent(report) == ["MAIL FROM:<> SMTPUTF8", "RCPT TO:<jörg@lab.test>"]
    unknown = await _check(kb, options, "nobödy@lab.test")
    assert unknown.address_status is AddressStatus.DOES_NOT_EXIST


async def test_not_requested_for_ascii(kb: KnowledgeBase, lab_server: StartServer,
                                       check_options: Options) -> None:
    server = await lab_server("smtputf8")
    options = check_options(server=("127.0.0.1", server.port), starttls=False)
    report = await _check(kb, options, "alice@bücher.test")
    assert _sent(report) == ["MAIL FROM:<>", "RCPT TO:<alice@xn--bcher-kva.test>"]
    assert report.verdict is Verdict.ACCEPTED


async def test_a_server_without_it(kb: KnowledgeBase, lab_server: StartServer,
                                   check_options: Options) -> None:
    server = await lab_server("mailbox", local_parts=("alice", "jörg"))
    options = check_options(server=("127.0.0.1", server.port), starttls=False)
    report = await _check(kb, options, "jörg@lab.test")
    assert report.verdict is Verdict.REJECTED
    assert report.address_status is AddressStatus.UNKNOWN
    assert report.finding.rule == "observe.smtputf8_not_offered"
    assert report.finding.title is not None
    assert "internationale" in report.finding.title.de
    assert _sent(report) == []  # RFC 6531 3.2: the address is not sent at all


async def test_a_batch_against_a_server_without_it_answers_like_a_lone_check(
        kb: KnowledgeBase, lab_server: StartServer, check_options: Options) -> None:
    from smtpprobe.probe.batch import Pooled
    from smtpprobe.probe.check import check_all

    server = await lab_server("mailbox", local_parts=("alice", "jörg"))
    options = check_options(server=("127.0.0.1", server.port), starttls=False)
    addresses = [parse_address(a) for a in ("alice@lab.test", "jörg@lab.test", "bob@lab.test")]
    batch = await check_all(Checker(kb, options, strategy=Pooled()),
                            [a for a in addresses if a is not None])
    assert [r.verdict for r in batch] == [Verdict.ACCEPTED, Verdict.REJECTED, Verdict.REJECTED]
    assert batch[1].finding.rule == "observe.smtputf8_not_offered"
    assert batch[1].address_status is AddressStatus.UNKNOWN
    assert not any("jörg" in command for command in server.commands)  # never sent
