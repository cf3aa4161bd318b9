"""Orchestration of `smtpprobe check`: find the mail hosts, talk to them in MX order, classify
every step, and reach one verdict per address.

Concurrency and deadlines live here. Attempts on the hosts (and addresses) of a domain are
staggered, happy-eyeballs style (RFC 8305 in spirit): when the preferred host has not greeted
us within `stagger` seconds, the next one is started beside it, so a dead first MX costs a
fraction of a second instead of a whole timeout. The verdict still follows MX preference: the
most preferred host that gave a definitive answer decides.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from smtpprobe.core.address import Address
from smtpprobe.core.classify import classify_failure, classify_reply, unique_findings
from smtpprobe.core.redact import Redactor
from smtpprobe.core.tlsproblems import tls_problems
from smtpprobe.models import (
    AddressStatus,
    Category,
    CheckReport,
    Failure,
    FailureKind,
    Finding,
    HostReport,
    MxHost,
    MxResult,
    Severity,
    Stage,
    Step,
    Verdict,
)
from smtpprobe.net.session import Endpoint, Session

if TYPE_CHECKING:
    from smtpprobe.core.certs import TrustStore
    from smtpprobe.core.knowledge.load import KnowledgeBase

DEFAULT_STAGGER = 0.5  # seconds before the next MX host is tried beside a silent one
MAX_PARALLEL_ATTEMPTS = 4

Resolver = Callable[..., Awaitable[MxResult]]
KnowledgeLoader = Callable[[], "KnowledgeBase"]


@dataclass(frozen=True, slots=True)
class CheckOptions:
    helo: str
    mail_from: str = ""  # "" is the null reverse-path (RFC 5321 4.5.5), see docs/check.md
    port: int = 25
    timeout: float = 10.0  # per step
    deadline: float = 60.0  # for the whole check of one address
    source_address: str | None = None
    cafile: str | None = None
    starttls: bool = True
    pipelining: bool = True  # use PIPELINING when the server offers it
    catch_all: bool = False
    server: tuple[str, int] | None = None  # talk to this server instead of the MX hosts
    nameservers: tuple[tuple[str, int], ...] | None = None
    dns_timeout: float = 5.0
    stagger: float = DEFAULT_STAGGER


@dataclass(slots=True)
class Conversation:
    """One conversation with one address of one host, and what it established."""

    host: MxHost
    address: str
    port: int
    steps: list[Step] = field(default_factory=list)
    session: Session | None = None
    # Facts found on the way (no STARTTLS, certificate problems), classified with the steps.
    observations: list[tuple[Stage, FailureKind, str]] = field(default_factory=list)
    mail_step: Step | None = None
    rcpt_steps: list[Step] = field(default_factory=list)
    definitive: bool = False
    greeted: asyncio.Event = field(default_factory=asyncio.Event)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    tls_session: Session | None = None

    def report(self) -> HostReport:
        tls_from = self.tls_session or self.session
        return HostReport(
            host=self.host.name, address=self.address, port=self.port, steps=tuple(self.steps),
            tls=tls_from.tls if tls_from else None,
            capabilities=tls_from.capabilities_before_tls if tls_from else None,
            capabilities_after_tls=(tls_from.capabilities
                                    if tls_from is not None and tls_from.tls else None),
        )


def random_local_part(rng: random.Random) -> str:
    return "smtpprobe-catchall-" + "".join(rng.choice("abcdefghijkmnpqrstuvwxyz23456789")
                                           for _ in range(12))


class Checker:
    """Runs checks with shared dependencies: knowledge base, trust store, resolver, clock."""

    def __init__(self, kb: KnowledgeBase | KnowledgeLoader, options: CheckOptions, *,
                 resolve: Resolver | None = None, rng: random.Random | None = None,
                 redactor: Redactor | None = None, trust: TrustStore | None = None) -> None:
        # A loader instead of a knowledge base: it runs in a thread while the first
        # conversation waits for the network (classification needs it only at the end).
        self._kb = None if callable(kb) else kb
        self._load = kb if callable(kb) else None
        self._loading: asyncio.Future[KnowledgeBase] | None = None
        self.options = options
        self.rng = rng or random.Random()
        self.redactor = redactor or Redactor()
        self._trust = trust
        self._trust_loading: asyncio.Future[TrustStore] | None = None
        self._resolve = resolve  # None: dnspython's, imported on first use (start-up time)

    @property
    def resolve(self) -> Resolver:
        if self._resolve is None:
            from smtpprobe.net.dns import resolve_mx

            self._resolve = resolve_mx
        return self._resolve

    # --- classification helpers -----------------------------------------------------------

    @property
    def kb(self) -> KnowledgeBase:
        if self._kb is None:
            raise RuntimeError("the knowledge base is still loading: await knowledge() first")
        return self._kb

    def _start_loading(self) -> None:
        if self._kb is None and self._loading is None and self._load is not None:
            self._loading = asyncio.ensure_future(asyncio.to_thread(self._load))
        if self._trust is None and self._trust_loading is None and self.options.starttls:
            self._trust_loading = asyncio.ensure_future(asyncio.to_thread(self._load_trust))

    async def knowledge(self) -> KnowledgeBase:
        """The knowledge base, once loaded; a loading error (KnowledgeError) is raised here."""
        if self._kb is None:
            self._start_loading()
            assert self._loading is not None
            self._kb = await asyncio.shield(self._loading)
        return self._kb

    def classify(self, step: Step) -> Step:
        if step.reply is not None:
            return replace(step, finding=classify_reply(self.kb, step.stage, step.reply))
        if step.failure is not None:
            return replace(step, finding=classify_failure(self.kb, step.stage, step.failure))
        return step

    def observe(self, stage: Stage, kind: FailureKind, detail: str) -> Finding:
        return classify_failure(self.kb, stage, Failure(kind, detail))

    def _load_trust(self) -> TrustStore:
        from smtpprobe.core.certs import TrustStore, load_trust_store

        try:
            return load_trust_store(self.options.cafile)
        except (OSError, ValueError) as exc:
            # The CLI checks --cafile up front; this guards library callers.
            return TrustStore((), f"{self.options.cafile}: {exc}")

    async def trust(self) -> TrustStore:
        """The trust store, loaded (with cryptography) in a thread while the first
        conversation waits for the network; it is needed only after a TLS handshake."""
        if self._trust is None:
            if self._trust_loading is None:
                self._trust_loading = asyncio.ensure_future(asyncio.to_thread(self._load_trust))
            self._trust = await asyncio.shield(self._trust_loading)
        return self._trust

    # --- one conversation -----------------------------------------------------------------

    async def converse(self, conv: Conversation, recipients: Sequence[str], *,
                       deadline: float) -> Conversation:
        """Banner, EHLO, STARTTLS, EHLO, MAIL, RCPT..., QUIT with one server address."""
        try:
            await self._converse(conv, recipients, deadline=deadline)
        finally:
            conv.done.set()
            conv.greeted.set()
            if conv.session is not None:
                conv.session.close()
        return conv

    def _session(self, conv: Conversation, deadline: float) -> Session:
        name = conv.host.name if not conv.host.name == conv.address else None
        return Session(Endpoint(conv.address, conv.port, name), helo=self.options.helo,
                       timeout=self.options.timeout, deadline=deadline,
                       source_address=self.options.source_address, trust=self._trust,
                       redactor=self.redactor)

    @staticmethod
    def _take(conv: Conversation, session: Session) -> None:
        """Move the session's new steps into the conversation (classified at the end)."""
        conv.steps.extend(session.steps)
        session.steps.clear()

    async def _open(self, conv: Conversation, deadline: float, *, use_tls: bool) -> Session | None:
        """Connect, EHLO and (when offered and wanted) STARTTLS + EHLO. None when the server
        could not be brought to the point of a mail transaction."""
        session = self._session(conv, deadline)
        conv.session = session
        banner = await session.connect()
        self._take(conv, session)
        if banner.reply is None or banner.reply.code != 220:
            return None
        conv.greeted.set()
        hello = await session.ehlo()
        self._take(conv, session)
        if hello.reply is None or hello.reply.code != 250:
            return None
        caps = session.capabilities
        if not use_tls:
            return session
        if caps is None or not caps.starttls:
            conv.observations.append((
                Stage.STARTTLS, FailureKind.NOT_OFFERED,
                f"{conv.host.name} does not offer STARTTLS"))
            return session
        session.trust = await self.trust()
        start = await session.starttls()
        self._take(conv, session)
        if start.reply is not None and start.reply.code == 220:
            conv.tls_session = session
            self._tls_findings(conv, session)
            again = await session.ehlo()
            self._take(conv, session)
            return session if again.reply is not None and again.reply.code == 250 else None
        if start.reply is not None and session.connected:
            # RFC 3207 4: a refused STARTTLS leaves the plain connection usable.
            return session
        # The handshake broke: like an opportunistic MTA, try again without TLS.
        session.close()
        return await self._open(conv, deadline, use_tls=False)

    def _tls_findings(self, conv: Conversation, session: Session) -> None:
        if session.tls is not None:
            conv.observations.extend((Stage.STARTTLS, kind, detail)
                                     for kind, detail in tls_problems(session.tls,
                                                                      conv.host.name))

    async def _converse(self, conv: Conversation, recipients: Sequence[str], *,
                        deadline: float) -> None:
        session = await self._open(conv, deadline, use_tls=self.options.starttls)
        if session is None:
            if conv.session is not None:
                await conv.session.quit()
            return
        caps = session.capabilities
        mail_params: list[str] = []
        if caps is not None and caps.has("SMTPUTF8") and any(not r.isascii() for r in recipients):
            mail_params.append("SMTPUTF8")
        mail_cmd = " ".join([f"MAIL FROM:<{self.options.mail_from}>", *mail_params])
        commands = [(Stage.MAIL, mail_cmd)] + [(Stage.RCPT, f"RCPT TO:<{r}>") for r in recipients]
        if self.options.pipelining and caps is not None and caps.pipelining:
            await session.pipeline(commands, quit_after=True)
            self._take(conv, session)
        else:
            mail = await session.mail(self.options.mail_from, mail_params)
            if mail.reply is not None and mail.reply.code == 250:
                for recipient in recipients:
                    step = await session.rcpt(recipient)
                    if step.reply is None or step.reply.code == 421:
                        break
            await session.quit()
            self._take(conv, session)
        self.settle(conv)

    @staticmethod
    def settle(conv: Conversation) -> None:
        """Read the transaction off the steps: MAIL, the RCPTs, and whether the server gave an
        answer that decides (a 421 or no reply at all does not)."""
        classified = [s for s in conv.steps if s.stage in (Stage.MAIL, Stage.RCPT)]
        mails = [s for s in classified if s.stage is Stage.MAIL]
        conv.mail_step = mails[-1] if mails else None
        conv.rcpt_steps = [s for s in classified if s.stage is Stage.RCPT]
        mail_step = conv.mail_step
        if mail_step is None or mail_step.reply is None or mail_step.reply.code == 421:
            return
        if mail_step.reply.klass in (4, 5):
            conv.definitive = True  # the server's policy on our sender applies to the domain
            return
        first = conv.rcpt_steps[0] if conv.rcpt_steps else None
        conv.definitive = bool(first and first.reply is not None and first.reply.code != 421)

    # --- one address ------------------------------------------------------------------------

    async def check(self, address: Address, *, deadline: float | None = None) -> CheckReport:
        """Everything about one address. Never raises for anything a server or DNS does.

        `deadline` is a loop time shared by a whole command; by default the check gets
        `options.deadline` seconds of its own.
        """
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        if deadline is None:
            deadline = loop.time() + self.options.deadline
        mx = await self._mail_hosts(address, deadline)
        recipients = [address.smtp]
        if self.options.catch_all:
            recipients.append(self.made_up_address(address.smtp.rpartition('@')[2]))
        self._start_loading()
        convs = await self._attempts(mx, recipients, deadline)
        await self.knowledge()
        for conv in convs:
            conv.steps = [self.classify(step) for step in conv.steps]
            self.settle(conv)  # again, now that the steps carry findings
        return self._verdict(address, mx, convs, started)

    def made_up_address(self, domain: str) -> str:
        """An address at `domain` that should not exist, for the catch-all test."""
        return f"{random_local_part(self.rng)}@{domain}"

    async def _mail_hosts(self, address: Address, deadline: float) -> MxResult:
        opts = self.options
        if opts.server is not None:
            host, port = opts.server
            return await self._host_result(host, deadline)
        if address.literal is not None:
            # RFC 5321 5.1 / 4.1.3: an address literal names the host directly, no DNS.
            return MxResult(domain=address.literal,
                            hosts=(MxHost(address.literal, 0, (address.literal,)),))
        budget = max(0.1, min(opts.dns_timeout, deadline - asyncio.get_running_loop().time()))
        return await self.resolve(address.ascii_domain, nameservers=opts.nameservers,
                                  timeout=budget, rng=self.rng)

    async def _host_result(self, host: str, deadline: float) -> MxResult:
        from smtpprobe.core.address import is_ip

        if is_ip(host):
            return MxResult(domain=host, hosts=(MxHost(host, 0, (host,)),))
        from smtpprobe.net.dns import resolve_host

        budget = max(0.1, min(self.options.dns_timeout,
                              deadline - asyncio.get_running_loop().time()))
        found = await resolve_host(host, nameservers=self.options.nameservers, timeout=budget)
        return MxResult(domain=host, hosts=(found,), failure=found.failure)

    async def _attempts(self, mx: MxResult, recipients: Sequence[str],
                        deadline: float) -> list[Conversation]:
        """Run conversations in MX order, staggered; return the started ones in that order."""
        port = self.options.server[1] if self.options.server else self.options.port
        pending = [Conversation(host, addr, port) for host in mx.hosts for addr in host.addresses]
        pending.reverse()  # pop() takes the most preferred
        started: list[Conversation] = []
        tasks: list[asyncio.Task[Conversation]] = []
        loop = asyncio.get_running_loop()

        def start_next() -> None:
            conv = pending.pop()
            started.append(conv)
            tasks.append(asyncio.create_task(self.converse(conv, recipients, deadline=deadline)))

        def decided() -> bool:
            # The first definitive conversation decides once every earlier one has ended,
            # except earlier ones with another address of the same host: its addresses are
            # interchangeable (RFC 8305: the first to answer wins, the others are dropped).
            for index, conv in enumerate(started):
                if conv.definitive:
                    return True
                if not conv.done.is_set() and not any(
                        later.definitive and later.host is conv.host
                        for later in started[index + 1:]):
                    return False
            return False

        try:
            while not decided():
                running = [c for c in started if not c.done.is_set()]
                if not running:
                    if not pending or loop.time() >= deadline:
                        break
                    start_next()
                    continue
                silent = [c for c in running if not c.greeted.is_set()]
                may_add = bool(pending) and len(silent) == len(running) and (
                    len(running) < MAX_PARALLEL_ATTEMPTS)
                waiters = [asyncio.ensure_future(c.done.wait()) for c in running]
                waiters += [asyncio.ensure_future(c.greeted.wait()) for c in silent]
                done, rest = await asyncio.wait(
                    waiters, timeout=self.options.stagger if may_add else None,
                    return_when=asyncio.FIRST_COMPLETED)
                for waiter in rest:
                    waiter.cancel()
                if not done and may_add and loop.time() < deadline:
                    start_next()  # every running attempt is still silent: try the next beside
        finally:
            for task in tasks:
                if not task.done():
                    task.cancel()
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)
        return started

    # --- the verdict --------------------------------------------------------------------------

    def _dns_finding(self, mx: MxResult) -> Finding | None:
        if mx.failure is not None:
            return classify_failure(self.kb, Stage.DNS, mx.failure)
        return None

    def _verdict(self, address: Address, mx: MxResult, convs: list[Conversation],
                 started: float) -> CheckReport:
        findings: list[Finding] = [classify_failure(self.kb, Stage.DNS, w) for w in mx.warnings]
        for host in mx.hosts:
            if host.failure is not None:
                findings.append(classify_failure(self.kb, Stage.DNS, host.failure))
        for conv in convs:
            findings.extend(self.observe(*fact) for fact in conv.observations)
            mail_failed = conv.mail_step is not None and conv.mail_step.reply is not None and (
                conv.mail_step.reply.klass in (4, 5))
            for step in conv.steps:
                if step.finding is None or step.finding.severity in (Severity.OK, Severity.INFO):
                    continue
                if mail_failed and step.stage is Stage.RCPT:
                    continue  # only an echo of the refused MAIL (e.g. 503 bad sequence)
                findings.append(step.finding)

        decisive: Finding | None = None
        verdict = Verdict.UNREACHABLE
        status = AddressStatus.UNKNOWN
        catch_all: bool | None = None
        dns_finding = self._dns_finding(mx)

        definitive = next((c for c in convs if c.definitive), None)
        if dns_finding is not None and not convs:
            decisive = dns_finding
            assert mx.failure is not None
            # NXDOMAIN, a null MX (RFC 7505) and a domain without any mail host address are
            # permanent: senders bounce. SERVFAIL and timeouts are not.
            if mx.failure.kind in (FailureKind.DNS_NXDOMAIN, FailureKind.NULL_MX,
                                   FailureKind.DNS_NO_ADDRESS, FailureKind.MX_IS_IP):
                verdict = Verdict.REJECTED
                status = AddressStatus.DOES_NOT_EXIST
            else:
                verdict = Verdict.UNREACHABLE
            findings.insert(0, dns_finding)
        elif definitive is not None:
            mail = definitive.mail_step
            main_rcpt = definitive.rcpt_steps[0] if definitive.rcpt_steps else None
            chosen = mail if (mail and mail.reply and mail.reply.klass in (4, 5)) else main_rcpt
            assert chosen is not None and chosen.finding is not None and chosen.reply is not None
            found, reply = chosen.finding, chosen.reply
            decisive = found
            verdict = {2: Verdict.ACCEPTED, 4: Verdict.DEFERRED}.get(reply.klass or 5,
                                                                      Verdict.REJECTED)
            if reply.code == 552 and chosen.stage is Stage.RCPT:
                # RFC 5321 4.5.3.1.10: clients treat 552 to RCPT as temporary (old servers
                # sent it for "too many recipients"); a full mailbox (X.2.2) is persistent
                # transient too (RFC 3463 3.3). MTAs defer, so does the verdict.
                verdict = Verdict.DEFERRED
            if verdict is Verdict.ACCEPTED:
                # RFC 5321 3.5.3: 252 means "cannot verify, will try": existence unknown.
                status = AddressStatus.UNKNOWN if reply.code == 252 else AddressStatus.EXISTS
                if self.options.catch_all and len(definitive.rcpt_steps) > 1:
                    probe = definitive.rcpt_steps[1]
                    catch_all = probe.reply is not None and probe.reply.klass == 2
                    if catch_all:
                        status = AddressStatus.CATCH_ALL
                        findings.append(self.observe(
                            Stage.RCPT, FailureKind.CATCH_ALL,
                            f"{address.domain} also accepted a made-up address "
                            f"({probe.command or ''})"))
            elif found.category in (Category.USER_UNKNOWN, Category.DOMAIN_NOT_FOUND):
                status = AddressStatus.DOES_NOT_EXIST
            elif found.category is Category.MAILBOX_FULL:
                status = AddressStatus.EXISTS
            elif found.category is Category.MAILBOX_INACTIVE:
                status = AddressStatus.INACTIVE
        else:
            # Nobody gave a definitive answer: the most preferred server that said anything
            # explains why; with no reply at all, the first failure does.
            replied = [s for c in convs for s in c.steps
                       if s.reply is not None and s.reply.klass in (4, 5) and s.finding]
            failed = [s for c in convs for s in c.steps if s.failure is not None and s.finding]
            if replied:
                step = replied[0]
                assert step.finding is not None and step.reply is not None
                decisive = step.finding
                verdict = Verdict.DEFERRED if step.reply.klass == 4 else Verdict.REJECTED
            elif failed:
                step = failed[0]
                assert step.finding is not None
                decisive = step.finding
                verdict = Verdict.UNREACHABLE
            elif dns_finding is not None:
                decisive = dns_finding
                findings.insert(0, dns_finding)
            elif any(h.failure is not None for h in mx.hosts):
                # No host had an address to try: the most preferred host's problem explains it.
                host_failure = next(h.failure for h in mx.hosts if h.failure is not None)
                decisive = classify_failure(self.kb, Stage.DNS, host_failure)
                if host_failure.kind in (FailureKind.MX_IS_IP, FailureKind.DNS_NO_ADDRESS):
                    # Sending MTAs give up on such a domain: mail to it bounces.
                    verdict = Verdict.REJECTED
            else:
                detail = "no mail host with a usable address"
                decisive = classify_failure(self.kb, Stage.DNS,
                                            Failure(FailureKind.DNS_NO_ADDRESS, detail))
                findings.insert(0, decisive)
        assert decisive is not None
        if decisive.about_prober and verdict is not Verdict.ACCEPTED:
            status = AddressStatus.UNKNOWN
        if decisive not in findings and decisive.severity not in (Severity.OK, Severity.INFO):
            findings.insert(0, decisive)
        return CheckReport(
            address=str(address), domain=mx.domain or address.ascii_domain, verdict=verdict,
            finding=decisive, address_status=status, mx=mx,
            hosts=tuple(c.report() for c in convs), findings=tuple(unique_findings(findings)),
            catch_all=catch_all, elapsed_ms=(time.perf_counter() - started) * 1000,
            mail_from=self.options.mail_from,
        )

