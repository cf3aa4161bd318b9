"""The verdicts, as pure functions of plain values: no sockets, no clock, no knowledge loading.

`check`: one address, from the DNS answer and a `Summary` of each conversation (its classified
steps and observations). The MX order is the order of the summaries; the most preferred
conversation that got an answer which decides (`definitive`) gives the verdict. `relay`: pass,
temporary or fail from the checks of a relay run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from smtpprobe.core.address import Address
from smtpprobe.core.classify import Classifier, unique_findings
from smtpprobe.models import (
    AddressStatus,
    Category,
    CheckStatus,
    Failure,
    FailureKind,
    Finding,
    MxResult,
    RelayCheck,
    RelayVerdict,
    Severity,
    Stage,
    Step,
    Verdict,
)

# DNS answers after which sending MTAs bounce: NXDOMAIN, a null MX (RFC 7505), a domain
# without any mail host address, an MX that is an IP address. SERVFAIL and timeouts are not.
_PERMANENT_DNS = frozenset({FailureKind.DNS_NXDOMAIN, FailureKind.NULL_MX,
                            FailureKind.DNS_NO_ADDRESS, FailureKind.MX_IS_IP})


@dataclass(frozen=True, slots=True)
class Transaction:
    """The mail transaction of one conversation: the last MAIL and the RCPTs."""

    mail: Step | None
    rcpts: tuple[Step, ...]

    @classmethod
    def of(cls, steps: Sequence[Step]) -> Transaction:
        mails = [s for s in steps if s.stage is Stage.MAIL]
        return cls(mails[-1] if mails else None,
                   tuple(s for s in steps if s.stage is Stage.RCPT))

    @property
    def mail_refused(self) -> bool:
        return self.mail is not None and self.mail.refused

    @property
    def definitive(self) -> bool:
        """Whether the server gave an answer that decides (a 421 or no reply does not): a
        refused MAIL (its policy on our sender applies to the whole domain), or a reply to
        the first RCPT."""
        mail = self.mail
        if mail is None or mail.hanging_up:
            return False
        if mail.refused:
            return True
        return bool(self.rcpts) and not self.rcpts[0].hanging_up

    @property
    def decisive(self) -> Step | None:
        """The step whose reply gives the verdict: a refused MAIL, or the first RCPT."""
        if self.mail_refused:
            return self.mail
        return self.rcpts[0] if self.rcpts else None


@dataclass(frozen=True, slots=True)
class Summary:
    """One conversation as the verdict sees it."""

    steps: tuple[Step, ...]  # classified
    observations: tuple[Finding, ...] = ()  # facts found on the way, classified
    definitive: bool = False
    where: str = ""  # the host and address, for findings about the conversation as a whole


@dataclass(frozen=True, slots=True)
class Decision:
    verdict: Verdict
    finding: Finding
    status: AddressStatus
    findings: tuple[Finding, ...]
    catch_all: bool | None = None


def decide(classify: Classifier, address: Address, mx: MxResult, convs: Sequence[Summary], *,
           catch_all_asked: bool,
           stopped: tuple[Finding, Verdict] | None = None) -> Decision:
    """The verdict for one address. `stopped`: when no conversation decided, a finding of the
    flow's own that explains why, with its verdict (the port blocked on our side, a server
    without SMTPUTF8 for an address that needs it); it beats the conversations' failures."""
    findings: list[Finding] = [classify.failure(Stage.DNS, w) for w in mx.warnings]
    findings += [classify.failure(Stage.DNS, h.failure) for h in mx.hosts
                 if h.failure is not None]
    answered = next((c for c in convs if c.definitive), None)
    for conv in convs:
        findings.extend(conv.observations)
        if answered is not None and conv is not answered and _never_reached(conv):
            # Another host of the domain answered in this run: this one is down, not our
            # network (a "port 25 blocked" remedy would contradict what was just seen).
            failure = next(s.failure for s in conv.steps if s.failure is not None)
            findings.append(classify.observe(
                Stage.CONNECT, FailureKind.MX_DOWN,
                f"{conv.where or 'a mail host'}: {failure.detail}; {answered.where} answered"))
            continue
        transaction = Transaction.of(conv.steps)
        # The catch-all probe (a made-up address) is expected to be refused: its 5yz is the
        # good news, not a problem of the address (it becomes an info finding below).
        probe = transaction.rcpts[1] if catch_all_asked and len(transaction.rcpts) > 1 \
            else None
        for step in conv.steps:
            if step.finding is None or step.finding.severity in (Severity.OK, Severity.INFO):
                continue
            if transaction.mail_refused and step.stage is Stage.RCPT:
                continue  # only an echo of the refused MAIL (e.g. 503 bad sequence)
            if step is probe and step.refused and step.reply is not None \
                    and step.reply.klass == 5:
                continue
            findings.append(step.finding)

    decisive: Finding | None = None
    verdict = Verdict.UNREACHABLE
    status = AddressStatus.UNKNOWN
    catch_all: bool | None = None
    dns_finding = classify.failure(Stage.DNS, mx.failure) if mx.failure is not None else None
    definitive = next((c for c in convs if c.definitive), None)

    if dns_finding is not None and not convs:
        assert mx.failure is not None
        decisive = dns_finding
        if mx.failure.kind in _PERMANENT_DNS:
            verdict, status = Verdict.REJECTED, AddressStatus.DOES_NOT_EXIST
        findings.insert(0, dns_finding)
    elif definitive is not None:
        transaction = Transaction.of(definitive.steps)
        chosen = transaction.decisive
        assert chosen is not None and chosen.finding is not None and chosen.reply is not None
        found, reply = chosen.finding, chosen.reply
        decisive = found
        verdict = {2: Verdict.ACCEPTED, 4: Verdict.DEFERRED}.get(reply.klass or 5,
                                                                  Verdict.REJECTED)
        # A 5yz is a refusal whatever it says: senders bounce on it. RFC 5321 4.5.3.1.10
        # (treat 552 to RCPT as temporary) is about old servers that sent 552 for "too many
        # recipients"; a lone check sends one RCPT first, so its 552 is about the mailbox. A
        # full mailbox (X.2.2) may clear later (the finding says so: retryable), but this
        # attempt was rejected.
        if verdict is Verdict.ACCEPTED:
            # RFC 5321 3.5.3: 252 means "cannot verify, will try": existence unknown.
            status = AddressStatus.UNKNOWN if chosen.replied(252) else AddressStatus.EXISTS
            if catch_all_asked and len(transaction.rcpts) > 1:
                probe = transaction.rcpts[1]
                catch_all = probe.reply is not None and probe.reply.klass == 2
                if catch_all:
                    status = AddressStatus.CATCH_ALL
                    findings.append(classify.observe(
                        Stage.RCPT, FailureKind.CATCH_ALL,
                        f"{address.domain} also accepted a made-up address "
                        f"({probe.command or ''})"))
                elif probe.reply is not None and probe.reply.klass == 5:
                    findings.append(classify.observe(
                        Stage.RCPT, FailureKind.NOT_CATCH_ALL,
                        f"{address.domain} refused a made-up address ({probe.command or ''}: "
                        f"{probe.reply.render().splitlines()[-1]}), so its 250 for "
                        f"{address} counts"))
                else:
                    catch_all = None  # a deferral or no answer: no conclusion either way
        elif found.category in (Category.USER_UNKNOWN, Category.DOMAIN_NOT_FOUND):
            status = AddressStatus.DOES_NOT_EXIST
        elif found.category is Category.MAILBOX_FULL:
            status = AddressStatus.EXISTS
        elif found.category is Category.MAILBOX_INACTIVE:
            status = AddressStatus.INACTIVE
    else:
        # Nobody gave a definitive answer: the most preferred server that said anything
        # explains why; with no reply at all, the first failure does.
        replied = [s for c in convs for s in c.steps if s.refused and s.finding]
        failed = [s for c in convs for s in c.steps if s.failure is not None and s.finding]
        if stopped is not None:
            decisive, verdict = stopped
        elif replied:
            step = replied[0]
            assert step.finding is not None and step.reply is not None
            decisive = step.finding
            verdict = Verdict.DEFERRED if step.reply.klass == 4 else Verdict.REJECTED
        elif failed:
            assert failed[0].finding is not None
            decisive = failed[0].finding
        elif dns_finding is not None:
            decisive = dns_finding
            findings.insert(0, dns_finding)
        elif any(h.failure is not None for h in mx.hosts):
            # No host had an address to try: the most preferred host's problem explains it.
            host_failure = next(h.failure for h in mx.hosts if h.failure is not None)
            decisive = classify.failure(Stage.DNS, host_failure)
            if host_failure.kind in (FailureKind.MX_IS_IP, FailureKind.DNS_NO_ADDRESS):
                verdict = Verdict.REJECTED  # sending MTAs give up on such a domain
        else:
            decisive = classify.failure(Stage.DNS, Failure(
                FailureKind.DNS_NO_ADDRESS, "no mail host with a usable address"))
            findings.insert(0, decisive)
    assert decisive is not None
    if decisive.about_prober and verdict is not Verdict.ACCEPTED:
        status = AddressStatus.UNKNOWN
    if decisive not in findings and decisive.severity not in (Severity.OK, Severity.INFO):
        findings.insert(0, decisive)
    return Decision(verdict, decisive, status, tuple(unique_findings(findings)), catch_all)


def _never_reached(conv: Summary) -> bool:
    """The conversation ended at the connection: refused, timed out, unreachable."""
    return bool(conv.steps) and conv.steps[0].stage is Stage.CONNECT and \
        conv.steps[0].failure is not None and conv.steps[0].failure.kind in _UNREACHED


_UNREACHED = frozenset({FailureKind.REFUSED, FailureKind.TIMEOUT, FailureKind.UNREACHABLE})
SLOW_MS = 3000.0  # a greeting or reply slower than this is worth a word


def slow_steps(steps: Sequence[Step], name: str) -> list[tuple[Stage, FailureKind, str]]:
    """Observations for replies that took more than SLOW_MS (an 8 s greeting passes every
    check, and is still worth knowing)."""
    out: list[tuple[Stage, FailureKind, str]] = []
    for step in steps:
        # Transaction replies are left out: in a pipelined group (a batch's hundred RCPTs)
        # their times run from the group's one write, and say nothing about one command.
        if step.stage not in (Stage.CONNECT, Stage.EHLO, Stage.STARTTLS, Stage.AUTH):
            continue
        if step.reply is not None and step.elapsed_ms > SLOW_MS:
            what = "greeting" if step.stage is Stage.CONNECT else f"reply to {step.stage.upper()}"
            out.append((step.stage, FailureKind.SLOW_REPLY,
                        f"{name}: the {what} took {step.elapsed_ms / 1000:.1f} s"))
    return out


def relay_verdict(checks: Sequence[RelayCheck]) -> RelayVerdict:
    """Fail when a check fails for good, temporary when every failure may clear up by itself
    (4xx, timeouts), pass otherwise."""
    failed = [c for c in checks if c.status is CheckStatus.FAIL]
    if any(not c.temporary for c in failed):
        return RelayVerdict.FAIL
    if failed:
        return RelayVerdict.TEMPORARY
    return RelayVerdict.PASS
