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
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Protocol

from smtpprobe.core import wire
from smtpprobe.core.address import Address
from smtpprobe.core.classify import Classifier
from smtpprobe.core.redact import Redactor
from smtpprobe.core.tlsproblems import tls_problems
from smtpprobe.core.verdict import Summary, Transaction, decide, slow_steps
from smtpprobe.core.wire import Command
from smtpprobe.models import (
    AuthResult,
    Capabilities,
    Category,
    CheckReport,
    Credentials,
    Failure,
    FailureKind,
    Finding,
    HostReport,
    Lookup,
    MxHost,
    MxResult,
    Proxy,
    Stage,
    Step,
    Verdict,
)
from smtpprobe.net.session import Endpoint, Session
from smtpprobe.probe.dialog import Tls, open_dialog

if TYPE_CHECKING:
    import socket

    from smtpprobe.core.certs import TrustStore
    from smtpprobe.core.knowledge.load import KnowledgeBase

DEFAULT_STAGGER = 0.5  # seconds before the next MX host is tried beside a silent one
MAX_PARALLEL_ATTEMPTS = 4
# Postfix's smtp_mx_session_limit (postconf(5), default 2): "the maximal number of SMTP
# sessions per delivery request before the Postfix SMTP client gives up", not counting
# sessions that fail to complete the initial handshake (greeting and EHLO). After that many
# sessions without a definitive answer the check tries no further address. (How many
# addresses there are at most is net.dns.MX_ADDRESS_LIMIT, Postfix's smtp_mx_address_limit.)
MX_SESSION_LIMIT = 2
MAX_CONCURRENT_CHECKS = 20  # addresses checked at once by check_all

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
    implicit_tls: bool = False  # TLS from the first byte (port 465, RFC 8314 3.3)
    pipelining: bool = True  # use PIPELINING when the server offers it
    catch_all: bool = False
    server: tuple[str, int] | None = None  # talk to this server instead of the MX hosts
    nameservers: tuple[tuple[str, int], ...] | None = None
    dns_timeout: float = 5.0
    stagger: float = DEFAULT_STAGGER
    # Connect to loopback, private and link-local addresses of public names too (they are
    # skipped with a finding otherwise); names under .test, .localhost ... may always have them.
    allow_private: bool = False
    proxy: Proxy | None = None  # SOCKS5: every connection goes through it (net/proxy.py)
    family: int | None = None  # 4 or 6 (-4/-6): only addresses of that family are tried
    # A host known to take connections on the port (--canary HOST[:PORT]): when every mail
    # host is silent, it tells a blocked port on our side from dead hosts on theirs.
    canary: tuple[str, int] | None = None


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
    found: list[Finding] = field(default_factory=list)  # already classified (the login's)
    definitive: bool = False  # set once, when the conversation ends (core.verdict)
    greeted: asyncio.Event = field(default_factory=asyncio.Event)
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def settle(self) -> None:
        """The conversation is over: whether its answer decides, from its replies alone."""
        transaction = Transaction.of(self.steps)
        decisive = transaction.decisive
        # A 4yz decides nothing for the domain: a sending MTA keeps the deferred recipient and
        # tries the next MX in the same delivery (RFC 5321 5.1: more than one address; Postfix
        # does so up to smtp_mx_session_limit). A 5yz ends the walk.
        self.definitive = transaction.definitive and not (
            decisive is not None and decisive.reply is not None and decisive.reply.klass == 4)

    def report(self, steps: Sequence[Step]) -> HostReport:
        session = self.session
        return HostReport(
            host=self.host.name, address=self.address, port=self.port, steps=tuple(steps),
            tls=session.tls if session else None,
            capabilities=session.capabilities_before_tls if session else None,
            capabilities_after_tls=(session.capabilities
                                    if session is not None and session.tls else None),
        )


# Refusals about the prober's identity or address, which the self-check can explain.
_ABOUT_US = frozenset({Category.CLIENT_IDENTITY_REJECTED, Category.BLOCKLISTED,
                       Category.DYNAMIC_IP_REJECTED})


def only_family(mx: MxResult, family: int | None) -> MxResult:
    """The lookup with only the addresses of `family` (-4/-6); a host left without one gets
    a failure that names the option, so the report does not blame the domain silently."""
    if family is None:
        return mx
    from ipaddress import ip_address

    hosts: list[MxHost] = []
    for host in mx.hosts:
        kept = tuple(a for a in host.addresses if ip_address(a).version == family)
        if host.addresses and not kept:
            record = "AAAA" if family == 6 else "A"
            hosts.append(replace(host, addresses=(), failure=Failure(
                FailureKind.FAMILY_EXCLUDED, f"{host.name} has no IPv{family} address "
                f"({record} record), and -{family} allows only IPv{family}")))
        else:
            hosts.append(replace(host, addresses=kept))
    return replace(mx, hosts=tuple(hosts))


def _silent(conv: Conversation) -> bool:
    """The conversation never got a TCP connection: the packets were dropped (a timeout, the
    deadline) or no route led there; a refusal is an answer, so it does not count."""
    if not conv.steps or conv.steps[0].stage is not Stage.CONNECT:
        return False
    failure = conv.steps[0].failure
    if failure is None or (conv.session is not None and conv.session.tcp_connected):
        return False
    return failure.kind in (FailureKind.TIMEOUT, FailureKind.UNREACHABLE,
                            FailureKind.DEADLINE)


def random_local_part(rng: random.Random) -> str:
    return "smtpprobe-catchall-" + "".join(rng.choice("abcdefghijkmnpqrstuvwxyz23456789")
                                           for _ in range(12))


async def exchange(session: Session, commands: Sequence[Command], *, pipelining: bool,
                   quit_after: bool = False) -> list[Step]:
    """A transaction's commands (RSET, MAIL, RCPT...): in one group when the server pipelines
    (RFC 2920), else one by one, stopping where a client must: a refused RSET or MAIL, a 421,
    a lost connection. With `quit_after`, QUIT ends it (its step, when there is one, last)."""
    if pipelining:
        return await session.pipeline(commands, quit_after=quit_after)
    steps: list[Step] = []
    for command in commands:
        step = await session.send(command)
        steps.append(step)
        if step.hanging_up or (command.verb in ("RSET", "MAIL") and not step.replied(250)):
            break
    if quit_after:
        goodbye = await session.quit()
        if goodbye is not None:
            steps.append(goodbye)
    return steps


class Strategy(Protocol):
    """How a check's conversations happen: one connection each (`Lone`), or shared sessions
    (`probe.batch.Pooled`). The check logic (MX order, staggering, the verdict) is the same."""

    # Checks at once in `check_all`; None when the strategy bounds its connections itself.
    concurrent_checks: int | None

    async def mail_hosts(self, checker: Checker, address: Address,
                         deadline: float) -> MxResult: ...

    async def converse(self, checker: Checker, conv: Conversation, recipients: Sequence[str],
                       *, deadline: float) -> Conversation: ...

    def made_up_address(self, checker: Checker, domain: str) -> str: ...

    async def close(self) -> None: ...


class Lone:
    """Each conversation has its own connection: the reference the batch must agree with."""

    concurrent_checks: int | None = MAX_CONCURRENT_CHECKS

    async def mail_hosts(self, checker: Checker, address: Address,
                         deadline: float) -> MxResult:
        return await checker.lookup(address, deadline)

    async def converse(self, checker: Checker, conv: Conversation, recipients: Sequence[str],
                       *, deadline: float) -> Conversation:
        return await checker.converse(conv, recipients, deadline=deadline)

    def made_up_address(self, checker: Checker, domain: str) -> str:
        return f"{random_local_part(checker.rng)}@{domain}"

    async def close(self) -> None:
        return None


class Checker:
    """Runs checks with shared dependencies: knowledge base, trust store, resolver, clock."""

    def __init__(self, kb: KnowledgeBase | KnowledgeLoader, options: CheckOptions, *,
                 resolve: Resolver | None = None, rng: random.Random | None = None,
                 redactor: Redactor | None = None, trust: TrustStore | None = None,
                 strategy: Strategy | None = None,
                 credentials: Credentials | None = None,
                 connecting: dict[tuple[str, int], socket.socket] | None = None) -> None:
        # A loader instead of a knowledge base: it runs in a thread while the first
        # conversation waits for the network (classification needs it only at the end).
        self._kb = None if callable(kb) else kb
        self._load = kb if callable(kb) else None
        self._loading: asyncio.Future[KnowledgeBase] | None = None
        self._classifier: Classifier | None = None
        self.options = options
        self.rng = rng or random.Random()
        self.redactor = redactor or Redactor()
        self.strategy: Strategy = strategy or Lone()
        self.credentials = credentials  # a login before MAIL (a submission server)
        self._trust = trust
        self._trust_loading: asyncio.Future[TrustStore] | None = None
        self._resolve = resolve  # None: dnspython's, imported on first use (start-up time)
        # The --canary's answer, once per checker (a batch asks it for one domain at most once).
        self._canary: asyncio.Future[tuple[str, int, bool, str]] | None = None
        # TCP connects already under way (cli/startup.py starts one before the command line
        # is imported), by (address, port): the first conversation with it takes it over.
        self._connecting = connecting if connecting is not None else {}

    @property
    def resolve(self) -> Resolver:
        if self._resolve is None:
            from smtpprobe.net.dns import resolve_mx

            self._resolve = resolve_mx
        return self._resolve

    # --- what loads in the background ----------------------------------------------------

    @property
    def classifier(self) -> Classifier:
        if self._kb is None:
            raise RuntimeError("the knowledge base is still loading: await knowledge() first")
        if self._classifier is None:
            self._classifier = Classifier(self._kb)
        return self._classifier

    def _start_loading(self) -> None:
        if self._kb is None and self._loading is None and self._load is not None:
            self._loading = asyncio.ensure_future(asyncio.to_thread(self._load))
        if self._trust is None and self._trust_loading is None and (
                self.options.starttls or self.options.implicit_tls):
            self._trust_loading = asyncio.ensure_future(asyncio.to_thread(self._load_trust))

    async def knowledge(self) -> KnowledgeBase:
        """The knowledge base, once loaded; a loading error (KnowledgeError) is raised here."""
        if self._kb is None:
            self._start_loading()
            assert self._loading is not None
            self._kb = await asyncio.shield(self._loading)
        return self._kb

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

    def session(self, conv: Conversation, deadline: float) -> Session:
        name = conv.host.name if not conv.host.name == conv.address else None
        return Session(Endpoint(conv.address, conv.port, name), helo=self.options.helo,
                       timeout=self.options.timeout, deadline=deadline,
                       source_address=self.options.source_address, trust=self._trust,
                       redactor=self.redactor, proxy=self.options.proxy,
                       connecting=self._connecting.pop((conv.address, conv.port), None))

    async def open(self, conv: Conversation, deadline: float, *,
                   use_tls: bool | None = None) -> Session | None:
        """The opening sequence with check's policy: STARTTLS when offered and wanted, and
        like an opportunistic MTA a second try without TLS when the handshake breaks. The
        steps and observations go into `conv`; None when no mail transaction can start."""
        if use_tls is None:
            use_tls = self.options.starttls
        session = self.session(conv, deadline)
        conv.session = session
        implicit = self.options.implicit_tls
        if implicit:
            session.trust = await self.trust()  # the handshake comes with the connection
        opening = await open_dialog(session, starttls=use_tls and not implicit,
                                    implicit_tls=implicit, trust=self.trust,
                                    on_greeting=conv.greeted.set)
        conv.steps.extend(opening.steps)
        if opening.tls is Tls.NOT_OFFERED:
            conv.observations.append((Stage.STARTTLS, FailureKind.NOT_OFFERED,
                                      f"{conv.host.name} does not offer STARTTLS"))
        elif opening.tls in (Tls.UP, Tls.IMPLICIT) and session.tls is not None:
            conv.observations.extend((Stage.STARTTLS, kind, detail)
                                     for kind, detail in tls_problems(session.tls,
                                                                      conv.host.name))
        elif opening.tls is Tls.BROKEN:
            session.close()
            return await self.open(conv, deadline, use_tls=False)
        return session if opening.ready else None

    async def login(self, conv: Conversation, session: Session) -> bool:
        """With credentials (checking a submission server): AUTH before MAIL, as a mail
        program does, with the login's rules for when the password may go (probe/login.py).
        False when the transaction should not start."""
        if self.credentials is None:
            return True
        from smtpprobe.probe.login import login

        await self.knowledge()
        steps: list[Step] = []
        outcome = await login(session, self.credentials, self.classifier, steps,
                              allow_plaintext=False, tls_expected=True, verify=True)
        conv.steps += steps
        if outcome.result is AuthResult.OK:
            return True
        if not steps and outcome.finding is not None:
            conv.found.append(outcome.finding)  # withheld or not offered: nothing was sent
        return False

    def transaction(self, recipients: Sequence[str], caps: Capabilities | None, *,
                    rset: bool = False) -> list[Command]:
        """RSET (when asked), MAIL and one RCPT per recipient, SMTPUTF8 when it is needed and
        offered (RFC 6531)."""
        params = ["SMTPUTF8"] if (caps is not None and caps.has("SMTPUTF8")
                                  and any(not r.isascii() for r in recipients)) else []
        return [*([wire.rset()] if rset else []), wire.mail(self.options.mail_from, params),
                *(wire.rcpt(r) for r in recipients)]

    def pipelines(self, caps: Capabilities | None) -> bool:
        return self.options.pipelining and caps is not None and caps.pipelining

    async def converse(self, conv: Conversation, recipients: Sequence[str], *,
                       deadline: float) -> Conversation:
        """Banner, EHLO, STARTTLS, EHLO, MAIL, RCPT..., QUIT with one server address."""
        try:
            session = await self.open(conv, deadline)
            if session is None:
                if conv.session is not None:
                    await conv.session.quit()
            elif not await self.login(conv, session):
                await session.quit()
            elif (caps := session.capabilities) is not None and not caps.has("SMTPUTF8") and \
                    any(not r.isascii() for r in recipients):
                # RFC 6531 3.2: a non-ASCII address goes only to a server that offers SMTPUTF8.
                needs = next(r for r in recipients if not r.isascii())
                conv.observations.append((Stage.MAIL, FailureKind.SMTPUTF8_NOT_OFFERED,
                                          f"{conv.host.name} does not offer SMTPUTF8, which "
                                          f"{needs} needs (RFC 6531)"))
                await session.quit()
            else:
                caps = session.capabilities
                conv.steps += await exchange(session, self.transaction(recipients, caps),
                                             pipelining=self.pipelines(caps), quit_after=True)
            conv.settle()
        finally:
            conv.done.set()
            conv.greeted.set()
            if conv.session is not None:
                conv.session.close()
        return conv

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
        mx = only_family(await self.strategy.mail_hosts(self, address, deadline),
                         self.options.family)
        recipients = [address.smtp]
        if self.options.catch_all:
            recipients.append(self.strategy.made_up_address(
                self, address.smtp.rpartition('@')[2]))
        self._start_loading()
        convs = await self._attempts(mx, recipients, deadline)
        reach = await self.reachability(convs, deadline)
        await self.knowledge()
        # The one classification pass: every step and observation gets its finding here.
        classify = self.classifier
        summaries = [Summary(tuple(classify.steps(c.steps)),
                             (*c.found, *(classify.observe(*fact) for fact in
                                          [*c.observations,
                                           *slow_steps(c.steps, c.host.name)])),
                             c.definitive, where=f"{c.host.name} [{c.address}]")
                     for c in convs]
        stopped: tuple[Finding, Verdict] | None = None
        if reach is not None:
            found = classify.observe(Stage.CONNECT, *reach)
            if reach[0] is FailureKind.PORT_BLOCKED:
                stopped = (found, Verdict.UNREACHABLE)
            else:  # the canary answered: the mail hosts are down, not our network
                summaries[-1] = replace(summaries[-1],
                                        observations=(*summaries[-1].observations, found))
        for conv, summary in zip(convs, summaries, strict=True):
            if stopped is None and any(kind is FailureKind.SMTPUTF8_NOT_OFFERED
                                       for _, kind, _ in conv.observations):
                # RFC 6531 3.2: without SMTPUTF8 the address cannot be sent to this host at
                # all; a sending MTA bounces (or downgrades, which needs an ASCII address).
                stopped = (next(f for f in summary.observations
                                if f.rule.startswith("observe.smtputf8")), Verdict.REJECTED)
        decision = decide(classify, address, mx, summaries,
                          catch_all_asked=self.options.catch_all, stopped=stopped)
        lookups = await self.confirm((decision.finding, *decision.findings), deadline)
        about_us = await self.about_us(decision.finding, convs, deadline)
        return CheckReport(
            address=str(address), domain=mx.domain or address.ascii_domain,
            verdict=decision.verdict, finding=decision.finding,
            address_status=decision.status, mx=mx,
            hosts=tuple(c.report(s.steps) for c, s in zip(convs, summaries, strict=True)),
            findings=(*decision.findings, *about_us), catch_all=decision.catch_all,
            elapsed_ms=(time.perf_counter() - started) * 1000,
            mail_from=self.options.mail_from, lookups=lookups,
        )

    async def confirm(self, findings: Sequence[Finding], deadline: float) -> tuple[Lookup, ...]:
        """The DNS lookups the findings' remedies call for (probe/lookups.py): blocklist, SPF
        and DMARC, reverse DNS; nothing when no finding names such a cause."""
        from smtpprobe.probe.lookups import LOOKUP_CATEGORIES, confirm

        if not any(f.category in LOOKUP_CATEGORIES for f in findings):
            return ()
        # Within the check's deadline, but with room for the lookups when the conversation
        # used it up: they are the answer to the finding, not more conversation.
        loop = asyncio.get_running_loop()
        until = max(deadline, loop.time() + 2 * self.options.dns_timeout)
        return await confirm(findings, classifier=self.classifier, trust=await self.trust(),
                             nameservers=self.options.nameservers,
                             timeout=self.options.dns_timeout, deadline=until,
                             helo=self.options.helo, mail_from=self.options.mail_from,
                             source_address=self.options.source_address)

    async def about_us(self, decisive: Finding, convs: Sequence[Conversation],
                       deadline: float) -> list[Finding]:
        """A refusal about the prober's name or address (PROBER_CATEGORIES' identity and
        blocklist ones) gets the self-check of the address we connected from: its PTR and
        forward confirmation, the EHLO name, and the blocklists the replies named
        (core/selfcheck.py). Through a proxy the address the server saw is the proxy's, which
        this host cannot check: nothing is added then."""
        if decisive.category not in _ABOUT_US or self.options.proxy is not None:
            return []
        local = next((c.session.local_address for c in convs if c.session is not None
                      and c.session.local_address is not None), None)
        if local is None:
            return []
        from smtpprobe.core.selfcheck import blocklist_zones, observations
        from smtpprobe.probe.selfcheck import self_check

        texts = [s.reply.text for c in convs for s in c.steps
                 if s.reply is not None and s.refused]
        left = deadline - asyncio.get_running_loop().time()
        found = await self_check(local, helo=self.options.helo, zones=blocklist_zones(texts),
                                 nameservers=self.options.nameservers,
                                 timeout=max(0.5, min(self.options.dns_timeout, left)))
        return [self.classifier.observe(Stage.CONNECT, kind, detail)
                for kind, detail in observations(found)]

    async def reachability(self, convs: Sequence[Conversation], deadline: float
                           ) -> tuple[FailureKind, str] | None:
        """When every mail host was silent on the port: is the port blocked on our side?

        With --canary, one quick connection to that host (known to take connections) tells:
        silent too, the port is blocked here; it answers, the mail hosts are at fault. Without
        it, two or more different mail hosts all silent point to our network (a domain's MX
        hosts are rarely all down at once). None when there is nothing to say; through a
        proxy the proxy connects, so nothing is said about this network. The answer is kept
        for the checker's other addresses (one canary connection per run)."""
        opts = self.options
        if opts.proxy is not None or not convs or not all(_silent(c) for c in convs):
            return None
        port = convs[0].port
        hosts = list(dict.fromkeys(c.host.name for c in convs))
        shown = ", ".join(hosts[:3]) + (" ..." if len(hosts) > 3 else "")
        if opts.canary is None:
            if len(hosts) < 2:
                return None
            return (FailureKind.PORT_BLOCKED,
                    f"{len(hosts)} different mail hosts ({shown}) all failed to answer on port "
                    f"{port}: most likely this network blocks outgoing connections to port "
                    f"{port} (give --canary HOST to confirm)")
        if self._canary is None:
            self._canary = asyncio.ensure_future(self._try_canary(deadline))
        canary, canary_port, answered, detail = await asyncio.shield(self._canary)
        if answered:
            return (FailureKind.PORT_OPEN,
                    f"the canary {canary} answered on port {canary_port} ({detail}), so this "
                    f"network does not block it: the mail hosts ({shown}) are unreachable")
        return (FailureKind.PORT_BLOCKED,
                f"the mail hosts ({shown}) and the canary {canary}, a host that takes "
                f"connections, all failed on port {port} ({detail}): this network blocks "
                f"outgoing connections to port {canary_port}")

    async def _try_canary(self, deadline: float) -> tuple[str, int, bool, str]:
        """(host, port, whether the TCP connection was made, what happened)."""
        assert self.options.canary is not None
        host, port = self.options.canary
        loop = asyncio.get_running_loop()
        result = await self._host_result(host, max(deadline, loop.time() + 1.0))
        addresses = [a for h in result.hosts for a in h.addresses]
        if not addresses:
            reason = result.failure.detail if result.failure else "no address"
            return host, port, False, f"not tried: {reason}"
        # The canary gets a short wait of its own (its connect and its greeting, each at most
        # `timeout`): it is a known-good host.
        timeout = min(self.options.timeout, 5.0)
        session = Session(Endpoint(addresses[0], port, None if addresses[0] == host else host),
                          helo=self.options.helo, timeout=timeout,
                          source_address=self.options.source_address)
        try:
            step = await session.connect()
            if session.tcp_connected:
                greeting = step.reply.first_line if step.reply is not None else (
                    step.failure.detail if step.failure else "")
                return host, port, True, f"TCP connected{': ' if greeting else ''}" \
                    f"{wire.clean(greeting)[:80]}"
            assert step.failure is not None
            return host, port, False, step.failure.detail
        finally:
            await session.quit()
            session.close()

    async def lookup(self, address: Address, deadline: float) -> MxResult:
        """The mail hosts of the address's domain (or the --server), within the deadline."""
        # The knowledge base and trust store load in threads while DNS waits; started before
        # the queries open their sockets, so a run short of file descriptors cannot starve
        # the loading (it needs a few files and, the first time, an import).
        self._start_loading()
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
                                  timeout=budget, rng=self.rng,
                                  allow_private=opts.allow_private)

    async def _host_result(self, host: str, deadline: float) -> MxResult:
        from smtpprobe.core.address import is_ip

        if is_ip(host):
            # An address the user typed is used as typed, loopback and private included.
            return MxResult(domain=host, hosts=(MxHost(host, 0, (host,)),))
        from smtpprobe.net.dns import resolve_server

        budget = max(0.1, min(self.options.dns_timeout,
                              deadline - asyncio.get_running_loop().time()))
        found = await resolve_server(host, nameservers=self.options.nameservers, timeout=budget,
                                     allow_private=self.options.allow_private)
        return replace(found, domain=host)

    async def _attempts(self, mx: MxResult, recipients: Sequence[str],
                        deadline: float) -> list[Conversation]:
        """Run conversations in MX order, staggered; return the started ones in that order.

        The addresses are the lookup's (at most net.dns.MX_ADDRESS_LIMIT); after
        MX_SESSION_LIMIT sessions without a definitive answer no further one is started, and
        an observation on the last says which addresses were not tried."""
        port = self.options.server[1] if self.options.server else self.options.port
        pending = [Conversation(host, addr, port) for host in mx.hosts for addr in host.addresses]
        pending.reverse()  # pop() takes the most preferred
        started: list[Conversation] = []
        tasks: list[asyncio.Task[Conversation]] = []
        loop = asyncio.get_running_loop()

        def sessions() -> int:
            # A session counts once the server greeted and (when it has ended) took the EHLO.
            return sum(1 for c in started if c.greeted.is_set() and (not c.done.is_set() or any(
                s.stage is Stage.EHLO and s.replied(250) for s in c.steps)))

        def not_tried() -> None:
            left = list(reversed(pending))
            hosts = list(dict.fromkeys(c.host.name for c in left))
            what = "address was" if len(left) == 1 else "addresses were"
            more = " ..." if len(hosts) > 3 else ""
            started[-1].observations.append((
                Stage.CONNECT, FailureKind.MX_LIMIT,
                f"{sessions()} sessions ended without a definitive answer; {len(left)} more "
                f"{what} not tried ({', '.join(hosts[:3])}{more}): smtpprobe opens at most "
                f"{MX_SESSION_LIMIT} sessions per check (as Postfix's smtp_mx_session_limit)"))

        def start_next() -> None:
            conv = pending.pop()
            started.append(conv)
            tasks.append(asyncio.create_task(
                self.strategy.converse(self, conv, recipients, deadline=deadline)))

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
                    if sessions() >= MX_SESSION_LIMIT:
                        not_tried()
                        break
                    start_next()
                    continue
                silent = [c for c in running if not c.greeted.is_set()]
                may_add = bool(pending) and len(silent) == len(running) and (
                    len(running) < MAX_PARALLEL_ATTEMPTS) and sessions() < MX_SESSION_LIMIT
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


async def check_all(checker: Checker, addresses: Iterable[Address], *,
                    on_done: Callable[[int, CheckReport], None] | None = None,
                    on_start: Callable[[int, Address], None] | None = None,
                    collect: bool = True) -> list[CheckReport]:
    """Check many addresses; `on_done(index, report)` as each is ready, and (with `collect`)
    the reports in input order. `--deadline` bounds the whole run, not each address. With the
    `Lone` strategy this is the one-by-one reference the batch must agree with; with
    `batch.Pooled` it is `check --file`.

    At most `strategy.concurrent_checks` addresses are in flight (all of them when None): the
    next one starts, in input order, when one is done. So with `collect=False` the memory a
    run needs is that of the window, however long the list (`addresses` may be an iterator).
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + checker.options.deadline
    width = checker.strategy.concurrent_checks
    slots = asyncio.Semaphore(width) if width else None
    reports: dict[int, CheckReport] = {}
    running: set[asyncio.Task[None]] = set()
    failures: list[BaseException] = []

    async def one(index: int, address: Address) -> None:
        try:
            report = await checker.check(address, deadline=deadline)
        finally:
            if slots is not None:
                slots.release()
        if collect:
            reports[index] = report
        if on_done is not None:
            on_done(index, report)

    def ended(task: asyncio.Task[None]) -> None:
        running.discard(task)
        if not task.cancelled():
            failure = task.exception()
            if failure is not None:
                failures.append(failure)  # the feeder stops at the next address

    count = 0
    try:
        for index, address in enumerate(addresses):
            if slots is not None:
                await slots.acquire()
            if failures:
                break
            if on_start is not None:
                on_start(index, address)
            task = asyncio.create_task(one(index, address))
            running.add(task)
            task.add_done_callback(ended)
            count = index + 1
        while running and not failures:
            await asyncio.wait(set(running), return_when=asyncio.FIRST_EXCEPTION)
        if failures:
            raise failures[0]
        return [reports[i] for i in range(count)] if collect else []
    finally:
        for task in running:
            task.cancel()
        if running:
            await asyncio.gather(*running, return_exceptions=True)
        await checker.strategy.close()
