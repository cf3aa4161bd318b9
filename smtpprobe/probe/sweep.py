"""Orchestration of `smtpprobe sweep`: which ports of a mail server work for sending, and the
settings to type into a mail program.

Every port is tried at the same time, each with its own `Session` (the sweep takes as long as
its slowest port, not the sum). Per port: TCP and the greeting, EHLO, STARTTLS (or TLS from the
first byte on 465), EHLO again, and with credentials a login, strongest sensible mechanism
first (probe/login.py). The password only goes over an encrypted connection unless the user
allows otherwise. `core.recommendation.recommend` turns the port reports into one
recommendation.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from smtpprobe.core.address import is_ip, of_family
from smtpprobe.core.certs import TrustStore
from smtpprobe.core.classify import Classifier, unique_findings
from smtpprobe.core.knowledge.load import KnowledgeBase
from smtpprobe.core.recommendation import recommend
from smtpprobe.core.redact import Redactor
from smtpprobe.core.verdict import slow_steps
from smtpprobe.errors import UsageError
from smtpprobe.models import (
    AuthOutcome,
    AuthResult,
    Credentials,
    Failure,
    FailureKind,
    Finding,
    PortMode,
    PortReport,
    PortState,
    Proxy,
    Reason,
    Recommendation,
    Stage,
    Step,
    SweepReport,
)
from smtpprobe.net.session import Endpoint, Session
from smtpprobe.probe.dialog import Tls, open_dialog
from smtpprobe.probe.login import NOT_TRIED, login

DEFAULT_PORTS: tuple[int, ...] = (25, 587, 465, 2525)

_MODE_NAMES = {
    "starttls": PortMode.STARTTLS, "tls": PortMode.TLS, "ssl": PortMode.TLS,
    "implicit": PortMode.TLS, "smtps": PortMode.TLS, "plain": PortMode.PLAIN,
    "none": PortMode.PLAIN,
}


def default_mode(port: int) -> PortMode:
    """465 is the submissions port with implicit TLS (RFC 8314 7.3); the rest STARTTLS."""
    return PortMode.TLS if port == 465 else PortMode.STARTTLS


def parse_ports(spec: str) -> tuple[tuple[int, PortMode], ...]:
    """'25,587,465' or '587:starttls, 465:tls, 2525:plain' -> ((port, mode), ...)."""
    from smtpprobe.core.address import parse_port

    found: list[tuple[int, PortMode]] = []
    for item in spec.replace(" ", "").split(","):
        if not item:
            continue
        port_text, _, mode_text = item.partition(":")
        port = parse_port(port_text)
        if mode_text:
            mode = _MODE_NAMES.get(mode_text.lower())
            if mode is None:
                raise UsageError(f"--ports: unknown mode {mode_text!r} for port {port} "
                                 f"(use starttls, tls or plain)")
        else:
            mode = default_mode(port)
        if any(p == port for p, _ in found):
            raise UsageError(f"--ports: port {port} is listed twice")
        found.append((port, mode))
    if not found:
        raise UsageError("--ports: name at least one port")
    if len(found) > 16:
        raise UsageError("--ports: at most 16 ports")
    return tuple(found)


@dataclass(frozen=True, slots=True)
class SweepOptions:
    host: str
    ports: tuple[tuple[int, PortMode], ...] = tuple((p, default_mode(p)) for p in DEFAULT_PORTS)
    helo: str = "localhost"
    timeout: float = 10.0  # per step
    deadline: float = 60.0  # for the whole sweep
    allow_plaintext_auth: bool = False
    verify: bool = True  # withhold the password over TLS whose certificate does not verify
    allow_old_tls: bool = False  # also send the password over TLS 1.0/1.1 (RFC 8996)
    nameservers: tuple[tuple[str, int], ...] | None = None
    dns_timeout: float = 5.0
    source_address: str | None = None
    # Also loopback, private and link-local addresses of a public host name (skipped with a
    # finding otherwise); names under .test, .localhost ... and typed addresses always may.
    allow_private: bool = False
    proxy: Proxy | None = None  # SOCKS5 (--proxy): every port is tried through it
    family: int | None = None  # 4 or 6 (-4/-6): only addresses of that family
    # --auth-mech: only this SASL mechanism; XOAUTH2/OAUTHBEARER take the password as a token
    auth_mech: str | None = None


# No TCP connection at all: another address of the host may do better.
_NOT_CONNECTED = frozenset({PortState.REFUSED, PortState.FILTERED, PortState.UNREACHABLE})


def _state(step: Step, tcp_connected: bool) -> PortState:
    if step.reply is not None:
        return PortState.OPEN if step.reply.code == 220 else PortState.REJECTED
    kind = step.failure.kind if step.failure is not None else None
    if kind is FailureKind.REFUSED:
        return PortState.REFUSED
    if kind is FailureKind.UNREACHABLE:
        return PortState.UNREACHABLE
    if kind in (FailureKind.TIMEOUT, FailureKind.DEADLINE):
        return PortState.SILENT if tcp_connected else PortState.FILTERED
    return PortState.FAILED


class Sweeper:
    def __init__(self, kb: KnowledgeBase, options: SweepOptions, *, trust: TrustStore,
                 redactor: Redactor, credentials: Credentials | None = None) -> None:
        self.kb = kb
        self.options = options
        self.credentials = credentials
        self.trust = trust
        self.redactor = redactor
        self.classifier = Classifier(kb)
        # One login at a time across the ports; after a refused password, no other port gets
        # it (each failed login brings an account lock-out closer).
        self._login_turn: asyncio.Lock | None = None
        self._refused_on: str | None = None

    async def sweep(self) -> SweepReport:
        """Every port at once. Never raises for anything a server or DNS does."""
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        deadline = loop.time() + self.options.deadline
        host = self.options.host
        user = self.credentials.user if self.credentials else None
        notes: list[Finding] = []
        if is_ip(host):
            # An address the user typed is used as typed, loopback and private included.
            addresses: tuple[str, ...] = (host,)
            name: str | None = None
        else:
            from smtpprobe.net.dns import resolve_server

            budget = max(0.1, min(self.options.dns_timeout, deadline - loop.time()))
            found = await resolve_server(host, nameservers=self.options.nameservers,
                                         timeout=budget, allow_private=self.options.allow_private)
            notes += (self.classifier.failure(Stage.DNS, w) for w in found.warnings)
            addresses, name = found.hosts[0].addresses if found.hosts else (), host
            every = addresses
            addresses = of_family(addresses, self.options.family)
            if not addresses:
                failure = found.failure or Failure(
                    FailureKind.FAMILY_EXCLUDED if every else FailureKind.DNS_NO_ADDRESS, (
                    f"{host} has no IPv{self.options.family} address, and "
                    f"-{self.options.family} allows only that" if every else
                    f"{host} has no address"))
                finding = self.classifier.failure(Stage.DNS, failure)
                return SweepReport(
                    host=host, addresses=(), ports=(), user=user, dns_failure=finding,
                    recommendation=Recommendation(usable=False, tested=False, host=host,
                                                  reasons=(Reason("no_address"),),
                                                  finding=finding),
                    elapsed_ms=(time.perf_counter() - started) * 1000,
                    address_findings=tuple(notes))
        # One address for all ports: the mail program will also use one. The next address
        # only when no port could be connected to at all on this one (as a mail program that
        # falls back from a dead AAAA to the A record).
        for index, address in enumerate(addresses):
            reports = await asyncio.gather(*(self.port(address, name, port, mode, deadline)
                                             for port, mode in self.options.ports))
            last = index == len(addresses) - 1
            if last or loop.time() >= deadline or not all(
                    r.state in _NOT_CONNECTED for r in reports):
                break
            notes += unique_findings(r.failure for r in reports if r.failure is not None)
        return SweepReport(host=host, addresses=addresses, ports=tuple(reports), user=user,
                           recommendation=recommend(host, reports,
                                                    credentials=self.credentials is not None),
                           elapsed_ms=(time.perf_counter() - started) * 1000,
                           address=address, address_findings=tuple(notes))

    async def port(self, address: str, name: str | None, port: int, mode: PortMode,
                   deadline: float) -> PortReport:
        opts = self.options
        session = Session(Endpoint(address, port, name), helo=opts.helo, timeout=opts.timeout,
                          deadline=deadline, source_address=opts.source_address,
                          trust=self.trust, redactor=self.redactor, proxy=opts.proxy)
        try:
            return await self._port(session, mode)
        finally:
            session.close()

    async def _port(self, session: Session, mode: PortMode) -> PortReport:
        classifier = self.classifier
        started = time.perf_counter()
        ep = session.endpoint
        label = ep.name or ep.address
        findings: list[Finding] = []
        opening = await open_dialog(session, starttls=mode is PortMode.STARTTLS,
                                    implicit_tls=mode is PortMode.TLS)
        steps = classifier.steps(opening.steps)
        banner = steps[0].reply.text if steps[0].reply is not None else None

        def done(state: PortState, *, failure: Finding | None = None,
                 auth: AuthOutcome = NOT_TRIED) -> PortReport:
            return PortReport(
                port=ep.port, mode=mode, host=label, address=ep.address, state=state,
                reachable=session.tcp_connected, steps=tuple(steps), banner=banner,
                failure=failure, tls=session.tls,
                capabilities_before_tls=session.capabilities_before_tls,
                capabilities_after_tls=session.capabilities if session.tls else None,
                auth=auth, findings=tuple(unique_findings([*findings, *(
                    classifier.observe(stage, kind, detail)
                    for stage, kind, detail in slow_steps(steps, label))])),
                elapsed_ms=(time.perf_counter() - started) * 1000)

        if not opening.greeted:
            connect = steps[0]
            findings.append(_require(connect.finding))
            return done(_state(connect, session.tcp_connected), failure=connect.finding)
        findings += classifier.tls(session.tls, label, submission=True)
        if opening.tls is Tls.NOT_OFFERED:
            findings.append(classifier.observe(Stage.STARTTLS, FailureKind.NOT_OFFERED,
                                               f"{ep.where} does not offer STARTTLS"))
        elif opening.tls in (Tls.REFUSED, Tls.BROKEN):
            findings.append(_require(steps[-1].finding))
        if not opening.ready:
            failure = steps[-1].finding
            if opening.tls is not Tls.BROKEN:
                # An EHLO refused, before or after TLS; after a broken handshake the
                # connection is already gone (RFC 3207 4.1).
                findings.append(_require(failure))
                await session.quit()
            return done(PortState.OPEN, failure=failure)

        caps = session.capabilities
        offers_starttls = caps is not None and caps.starttls
        if (session.tls is None and caps is not None and caps.auth_mechanisms
                and not (mode is PortMode.PLAIN and offers_starttls)):
            # A login is offered, and this connection could not be encrypted.
            findings.append(classifier.observe(
                Stage.EHLO, FailureKind.WITHHELD,
                f"{ep.where} offers AUTH {' '.join(caps.auth_mechanisms)} without encryption"))

        auth = NOT_TRIED
        if self.credentials is not None:
            auth = await self._login(session, mode, steps)
            # A port without AUTH shows that in its login column; the other outcomes are
            # problems worth listing with the port's findings.
            if auth.result not in (AuthResult.OK, AuthResult.NOT_OFFERED) and auth.finding:
                findings.append(auth.finding)
        goodbye = await session.quit()
        if goodbye is not None:
            steps.append(goodbye)
        return done(PortState.OPEN, auth=auth)


    async def _login(self, session: Session, mode: PortMode, steps: list[Step]) -> AuthOutcome:
        if self._login_turn is None:
            self._login_turn = asyncio.Lock()
        async with self._login_turn:
            if self._refused_on is not None:
                return AuthOutcome(AuthResult.WITHHELD, finding=self.classifier.observe(
                    Stage.AUTH, FailureKind.WITHHELD,
                    f"the password was not sent to {session.endpoint.where}: "
                    f"{self._refused_on} already refused these credentials, and every "
                    f"further failed login brings an account lock-out closer"))
            outcome = await login(session, self.credentials, self.classifier, steps,
                                  allow_plaintext=self.options.allow_plaintext_auth,
                                  tls_expected=mode is not PortMode.PLAIN,
                                  verify=self.options.verify,
                                  allow_old_tls=self.options.allow_old_tls,
                                  mechanism=self.options.auth_mech) \
                if self.credentials is not None else NOT_TRIED
            if outcome.result is AuthResult.FAILED:
                self._refused_on = session.endpoint.where
            return outcome


def _require(finding: Finding | None) -> Finding:
    assert finding is not None, "every classified step has a finding"
    return finding
