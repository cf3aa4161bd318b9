"""Orchestration of `smtpprobe sweep`: which ports of a mail server work for sending, and the
settings to type into a mail program.

Every port is tried at the same time, each with its own `Session` (the sweep takes as long as
its slowest port, not the sum). Per port: TCP and the greeting, EHLO, STARTTLS (or TLS from the
first byte on 465), EHLO again, and with credentials a login, strongest sensible mechanism
first. The password only goes over an encrypted connection unless the user allows otherwise.
`recommend` is pure: it turns the port reports into one recommendation.

`Engine` holds what a sweep and a relay check share (classification, certificate findings,
the login); relay.py uses it too.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from smtpprobe.core.address import is_ip
from smtpprobe.core.certs import TrustStore
from smtpprobe.core.classify import classify_failure, classify_reply, unique_findings
from smtpprobe.core.knowledge.load import KnowledgeBase
from smtpprobe.core.redact import Redactor
from smtpprobe.core.tlsproblems import tls_problems
from smtpprobe.errors import UsageError
from smtpprobe.models import (
    AuthOutcome,
    AuthResult,
    Category,
    Credentials,
    Failure,
    FailureKind,
    Finding,
    PortMode,
    PortReport,
    PortState,
    Reason,
    Recommendation,
    Stage,
    Step,
    SweepReport,
    TlsInfo,
)
from smtpprobe.net.session import Endpoint, Session

DEFAULT_PORTS: tuple[int, ...] = (25, 587, 465, 2525)

# Over TLS: PLAIN first. It is the one mechanism every SASL back end can check (hashed
# password stores, LDAP, PAM), sends the password once, and TLS protects it (RFC 4616 4,
# RFC 8314). LOGIN is the same secret in two round trips, for old servers. CRAM-MD5 needs a
# password stored in a reversible form on the server and is often what triggers 534/432.
PREFERENCE_TLS: tuple[str, ...] = ("PLAIN", "LOGIN", "CRAM-MD5")
# In the clear (only with --allow-plaintext-auth): CRAM-MD5 first, the only one of the three
# that does not put the password itself on the wire (RFC 2195).
PREFERENCE_PLAIN: tuple[str, ...] = ("CRAM-MD5", "PLAIN", "LOGIN")

_MODE_NAMES = {
    "starttls": PortMode.STARTTLS, "tls": PortMode.TLS, "ssl": PortMode.TLS,
    "implicit": PortMode.TLS, "smtps": PortMode.TLS, "plain": PortMode.PLAIN,
    "none": PortMode.PLAIN,
}


NOT_TRIED = AuthOutcome(AuthResult.NOT_TRIED)


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


def mechanism_order(offered: Iterable[str], *, encrypted: bool) -> list[str]:
    """The mechanisms to try, best first, among those offered that smtpprobe can speak."""
    have = {m.upper() for m in offered}
    preference = PREFERENCE_TLS if encrypted else PREFERENCE_PLAIN
    return [m for m in preference if m in have]


def auth_result(step: Step) -> AuthResult:
    """What the last step of one login attempt means."""
    if step.failure is not None or step.reply is None:
        if step.failure is not None and step.failure.kind is FailureKind.NOT_OFFERED:
            return AuthResult.NOT_OFFERED
        return AuthResult.ERROR
    reply = step.reply
    if reply.klass == 2:
        return AuthResult.OK
    if reply.klass == 4:
        return AuthResult.TEMPORARY
    if reply.code == 534:
        return AuthResult.APP_PASSWORD
    if reply.code in (530, 538):
        return AuthResult.TLS_REQUIRED
    category = step.finding.category if step.finding is not None else None
    if reply.code == 535 or category is Category.AUTH_FAILED:
        return AuthResult.FAILED
    if category is Category.TLS_REQUIRED:
        return AuthResult.TLS_REQUIRED
    return AuthResult.METHOD_REJECTED


def _next_mechanism_may_help(step: Step) -> bool:
    # RFC 4954 6: 504 names the mechanism as unknown, 534 as too weak, 432 asks for a
    # password transition with this mechanism; another mechanism may then work. A 535 says
    # the credentials are wrong: more attempts would only bring a lockout closer.
    return step.reply is not None and step.reply.code in (504, 534, 432)


def where(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


class Engine:
    """Shared by sweep and relay: sessions, classification, certificate findings, login."""

    def __init__(self, kb: KnowledgeBase, *, helo: str, timeout: float, trust: TrustStore,
                 redactor: Redactor, source_address: str | None = None) -> None:
        self.kb = kb
        self.helo = helo
        self.timeout = timeout
        self.trust = trust
        self.redactor = redactor
        self.source_address = source_address

    def session(self, address: str, port: int, name: str | None, deadline: float) -> Session:
        return Session(Endpoint(address, port, name), helo=self.helo, timeout=self.timeout,
                       deadline=deadline, source_address=self.source_address, trust=self.trust,
                       redactor=self.redactor)

    def classify(self, step: Step) -> Step:
        if step.reply is not None:
            return replace(step, finding=classify_reply(self.kb, step.stage, step.reply))
        if step.failure is not None:
            return replace(step, finding=classify_failure(self.kb, step.stage, step.failure))
        return step

    def take(self, session: Session, into: list[Step]) -> list[Step]:
        """Move the session's new steps, classified, to `into`; return them."""
        new = [self.classify(step) for step in session.steps]
        session.steps.clear()
        into.extend(new)
        return new

    def observe(self, stage: Stage, kind: FailureKind, detail: str) -> Finding:
        return classify_failure(self.kb, stage, Failure(kind, self.redactor(detail)))

    def tls_findings(self, tls: TlsInfo | None, name: str) -> list[Finding]:
        """What is wrong with a TLS connection that worked (as probe.py judges an MX)."""
        if tls is None:
            return []
        return [self.observe(Stage.STARTTLS, kind, detail)
                for kind, detail in tls_problems(tls, name)]

    async def login(self, session: Session, creds: Credentials, steps: list[Step], *,
                    allow_plaintext: bool, tls_expected: bool = False,
                    verify: bool = True) -> AuthOutcome:
        """AUTH with the best mechanism offered; the next one only when the server objects to
        the mechanism itself.

        The password is withheld on an unencrypted connection unless `allow_plaintext`, and
        even then when TLS was expected here (a STARTTLS port that did not offer it looks
        exactly like a man in the middle stripping it); and over TLS whose certificate does
        not verify for the host unless `verify` is off (anyone could present such a one)."""
        ep = session.endpoint
        here = where(ep.address, ep.port)
        caps = session.capabilities
        offered = caps.auth_mechanisms if caps is not None else ()
        encrypted = session.encrypted
        if not offered:
            detail = f"{here} offers no AUTH" + (" after TLS" if encrypted else "")
            return AuthOutcome(AuthResult.NOT_OFFERED, finding=self.observe(
                Stage.AUTH, FailureKind.NOT_OFFERED, detail))
        order = mechanism_order(offered, encrypted=encrypted)
        if not order:
            return AuthOutcome(AuthResult.NOT_OFFERED, finding=self.observe(
                Stage.AUTH, FailureKind.NOT_OFFERED,
                f"{here} offers only AUTH {' '.join(offered)}, which smtpprobe cannot use"))
        if not encrypted and tls_expected:
            return AuthOutcome(AuthResult.WITHHELD, finding=self.observe(
                Stage.AUTH, FailureKind.WITHHELD,
                f"{here} was expected to offer STARTTLS and did not (a downgrade would look "
                f"the same); the password was not sent (to test a login without TLS on "
                f"purpose, name the port as PORT:plain and add --allow-plaintext-auth)"))
        if not encrypted and not allow_plaintext:
            return AuthOutcome(AuthResult.WITHHELD, finding=self.observe(
                Stage.AUTH, FailureKind.WITHHELD,
                f"the connection to {here} is not encrypted; the password was not sent "
                f"(--allow-plaintext-auth would send it)"))
        tls = session.tls
        if encrypted and verify and tls is not None and not (
                tls.verified and tls.name_matches is not False):
            problem = tls.verify_error if not tls.verified else (
                f"it names {', '.join(tls.names[:3]) or 'no host'}, not {ep.name}")
            return AuthOutcome(AuthResult.UNTRUSTED, finding=self.observe(
                Stage.AUTH, FailureKind.WITHHELD,
                f"the certificate of {here} does not verify ({problem}); the password was "
                f"not sent (--cafile for a private CA, --no-verify to send it anyway)"))
        tried: list[str] = []
        outcome = AuthOutcome(AuthResult.NOT_TRIED)
        for index, mechanism in enumerate(order):
            tried.append(mechanism)
            await session.auth(creds.user, creds.password, mechanism)
            new = self.take(session, steps)
            last = new[-1]
            outcome = AuthOutcome(auth_result(last), mechanism, tuple(tried), last.finding)
            if outcome.result is AuthResult.OK:
                return outcome
            more = index + 1 < len(order)
            if not (more and session.connected and _next_mechanism_may_help(last)):
                return outcome
        return outcome


@dataclass(frozen=True, slots=True)
class SweepOptions:
    host: str
    ports: tuple[tuple[int, PortMode], ...] = tuple((p, default_mode(p)) for p in DEFAULT_PORTS)
    helo: str = "localhost"
    timeout: float = 10.0  # per step
    deadline: float = 60.0  # for the whole sweep
    allow_plaintext_auth: bool = False
    verify: bool = True  # withhold the password over TLS whose certificate does not verify
    nameservers: tuple[tuple[str, int], ...] | None = None
    dns_timeout: float = 5.0
    source_address: str | None = None


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
        self.engine = Engine(kb, helo=options.helo, timeout=options.timeout, trust=trust,
                             redactor=redactor, source_address=options.source_address)

    async def sweep(self) -> SweepReport:
        """Every port at once. Never raises for anything a server or DNS does."""
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        deadline = loop.time() + self.options.deadline
        host = self.options.host
        user = self.credentials.user if self.credentials else None
        if is_ip(host):
            addresses: tuple[str, ...] = (host,)
            name: str | None = None
        else:
            from smtpprobe.net.dns import resolve_host

            budget = max(0.1, min(self.options.dns_timeout, deadline - loop.time()))
            found = await resolve_host(host, nameservers=self.options.nameservers,
                                       timeout=budget)
            addresses, name = found.addresses, host
            if not addresses:
                failure = found.failure or Failure(FailureKind.DNS_NO_ADDRESS,
                                                   f"{host} has no address")
                finding = classify_failure(self.kb, Stage.DNS, failure)
                return SweepReport(
                    host=host, addresses=(), ports=(), user=user, dns_failure=finding,
                    recommendation=Recommendation(usable=False, tested=False, host=host,
                                                  reasons=(Reason("no_address"),),
                                                  finding=finding),
                    elapsed_ms=(time.perf_counter() - started) * 1000)
        # One address for all ports: the mail program will also use one.
        address = addresses[0]
        reports = await asyncio.gather(*(self.port(address, name, port, mode, deadline)
                                         for port, mode in self.options.ports))
        return SweepReport(host=host, addresses=addresses, ports=tuple(reports), user=user,
                           recommendation=recommend(host, reports,
                                                    credentials=self.credentials is not None),
                           elapsed_ms=(time.perf_counter() - started) * 1000)

    async def port(self, address: str, name: str | None, port: int, mode: PortMode,
                   deadline: float) -> PortReport:
        session = self.engine.session(address, port, name, deadline)
        try:
            return await self._port(session, mode)
        finally:
            session.close()

    async def _port(self, session: Session, mode: PortMode) -> PortReport:
        engine = self.engine
        started = time.perf_counter()
        ep = session.endpoint
        label = ep.name or ep.address
        steps: list[Step] = []
        findings: list[Finding] = []

        def done(state: PortState, *, failure: Finding | None = None,
                 auth: AuthOutcome = NOT_TRIED, banner: str | None = None) -> PortReport:
            return PortReport(
                port=ep.port, mode=mode, host=label, address=ep.address, state=state,
                reachable=session.tcp_connected, steps=tuple(steps), banner=banner,
                failure=failure, tls=session.tls,
                capabilities_before_tls=session.capabilities_before_tls,
                capabilities_after_tls=session.capabilities if session.tls else None,
                auth=auth, findings=tuple(unique_findings(findings)),
                elapsed_ms=(time.perf_counter() - started) * 1000)

        await session.connect(implicit_tls=mode is PortMode.TLS)
        [connect] = engine.take(session, steps)
        state = _state(connect, session.tcp_connected)
        banner = connect.reply.text if connect.reply is not None else None
        if state is not PortState.OPEN:
            findings.append(_require(connect.finding))
            return done(state, failure=connect.finding, banner=banner)
        if session.tls is not None:
            findings += engine.tls_findings(session.tls, label)

        hello = await session.ehlo()
        engine.take(session, steps)
        if not _ok(hello, 250):
            failure = _require(steps[-1].finding)
            findings.append(failure)
            await session.quit()
            return done(PortState.OPEN, failure=failure, banner=banner)

        if mode is PortMode.STARTTLS:
            caps = session.capabilities
            if caps is not None and caps.starttls:
                start = await session.starttls()
                engine.take(session, steps)
                if _ok(start, 220):
                    findings += engine.tls_findings(session.tls, label)
                    again = await session.ehlo()
                    engine.take(session, steps)
                    if not _ok(again, 250):
                        failure = _require(steps[-1].finding)
                        findings.append(failure)
                        await session.quit()
                        return done(PortState.OPEN, failure=failure, banner=banner)
                else:
                    findings.append(_require(steps[-1].finding))
                    if not session.connected:
                        # RFC 3207 4.1: after a failed handshake the connection is gone.
                        return done(PortState.OPEN, failure=steps[-1].finding, banner=banner)
            else:
                findings.append(engine.observe(
                    Stage.STARTTLS, FailureKind.NOT_OFFERED,
                    f"{where(ep.address, ep.port)} does not offer STARTTLS"))

        caps = session.capabilities
        offers_starttls = caps is not None and caps.starttls
        if (session.tls is None and caps is not None and caps.auth_mechanisms
                and not (mode is PortMode.PLAIN and offers_starttls)):
            # A login is offered, and this connection could not be encrypted.
            findings.append(engine.observe(
                Stage.EHLO, FailureKind.WITHHELD,
                f"{where(ep.address, ep.port)} offers AUTH {' '.join(caps.auth_mechanisms)} "
                f"without encryption"))

        auth = NOT_TRIED
        if self.credentials is not None:
            auth = await engine.login(session, self.credentials, steps,
                                      allow_plaintext=self.options.allow_plaintext_auth,
                                      tls_expected=mode is not PortMode.PLAIN,
                                      verify=self.options.verify)
            # A port without AUTH shows that in its login column; the other outcomes are
            # problems worth listing with the port's findings.
            if auth.result not in (AuthResult.OK, AuthResult.NOT_OFFERED) and auth.finding:
                findings.append(auth.finding)
        await session.quit()
        engine.take(session, steps)
        return done(PortState.OPEN, auth=auth, banner=banner)


def _ok(step: Step, code: int) -> bool:
    return step.reply is not None and step.reply.code == code


def _require(finding: Finding | None) -> Finding:
    assert finding is not None, "every classified step has a finding"
    return finding


# --- the recommendation (pure) ------------------------------------------------------------

_SECURITY_RANK = {PortMode.TLS: 2, PortMode.STARTTLS: 1, PortMode.PLAIN: 0}


def _rank(report: PortReport, order: int) -> tuple[int, int, int, int]:
    # Encrypted first; then a certificate that verifies (a mail program warns about or
    # refuses any other); then implicit TLS over STARTTLS (RFC 8314 3.3); then the order given.
    encrypted = report.tls is not None
    security = _SECURITY_RANK[report.mode] if encrypted else -1
    cert_ok = 1 if report.tls is not None and report.tls.verified and \
        report.tls.name_matches is not False else 0
    return (-int(encrypted), -cert_ok, -security, order)


def _security(report: PortReport) -> PortMode:
    if report.tls is None:
        return PortMode.PLAIN
    return PortMode.TLS if report.mode is PortMode.TLS else PortMode.STARTTLS


def _offered_after_tls(report: PortReport) -> tuple[str, ...]:
    caps = report.capabilities_after_tls
    return caps.auth_mechanisms if caps is not None else ()


_CAUSE_ORDER = (AuthResult.FAILED, AuthResult.APP_PASSWORD, AuthResult.TLS_REQUIRED,
                AuthResult.METHOD_REJECTED, AuthResult.TEMPORARY, AuthResult.ERROR,
                AuthResult.UNTRUSTED, AuthResult.WITHHELD, AuthResult.NOT_OFFERED)


def recommend(host: str, ports: Sequence[PortReport], *, credentials: bool) -> Recommendation:
    """The settings to use, with reasons; or, when no port works, the likeliest cause."""
    ordered = sorted(((r, i) for i, r in enumerate(ports)), key=lambda ri: _rank(*ri))
    if credentials:
        working = [r for r, _ in ordered if r.auth.result is AuthResult.OK]
        if working:
            best = working[0]
            reasons = [Reason("login_ok", (("mechanism", best.auth.mechanism or ""),
                                           ("port", str(best.port))))]
            reasons += _why_security(best)
            reasons += _notes(ports, best)
            return Recommendation(usable=True, tested=True, host=host, port=best.port,
                                  mode=_security(best), mechanism=best.auth.mechanism,
                                  reasons=tuple(reasons))
    else:
        offering = [r for r, _ in ordered
                    if r.tls is not None and mechanism_order(_offered_after_tls(r),
                                                             encrypted=True)]
        if offering:
            best = offering[0]
            mechanism = mechanism_order(_offered_after_tls(best), encrypted=True)[0]
            reasons = [Reason("login_offered", (("mechanisms",
                                                 " ".join(_offered_after_tls(best))),))]
            reasons += _why_security(best)
            reasons += _notes(ports, best)
            reasons.append(Reason("untested"))
            return Recommendation(usable=True, tested=False, host=host, port=best.port,
                                  mode=_security(best), mechanism=mechanism,
                                  reasons=tuple(reasons))

    # Nothing works: the most telling failure explains why.
    open_ports = [r for r in ports if r.state is PortState.OPEN]
    finding: Finding | None = None
    reasons = []
    if credentials:
        for result in _CAUSE_ORDER:
            hit = next((r for r, _ in ordered if r.auth.result is result and r.auth.finding),
                       None)
            if hit is not None:
                finding = hit.auth.finding
                reasons.append(Reason(f"auth_{result.value}", (("port", str(hit.port)),)))
                break
    if finding is None and open_ports:
        broken = next((r for r in open_ports if r.failure is not None), None)
        if broken is not None:
            finding = broken.failure
            reasons.append(Reason("port_failed", (("port", str(broken.port)),)))
        elif not any(r.tls is not None for r in open_ports):
            reasons.append(Reason("no_tls_anywhere"))
            finding = next((f for r in open_ports for f in r.findings
                            if f.category in (Category.TLS_UNAVAILABLE,
                                              Category.CREDENTIALS_WITHHELD)), None)
        else:
            reasons.append(Reason("no_auth_anywhere"))
            finding = next((f for r in open_ports for f in r.findings
                            if f.category is Category.AUTH_METHOD_REJECTED), None)
    if finding is None:
        closed = [r for r in ports if r.state is not PortState.OPEN]
        if closed and all(r.state is PortState.FILTERED for r in closed):
            reasons.append(Reason("all_filtered"))
        elif closed and all(r.state is PortState.REFUSED for r in closed):
            reasons.append(Reason("all_refused"))
        elif closed:
            reasons.append(Reason("none_reachable"))
        first = next((r.failure for r in closed if r.failure is not None), None)
        finding = first
    return Recommendation(usable=False, tested=False, host=host, reasons=tuple(reasons),
                          finding=finding)


def _why_security(best: PortReport) -> list[Reason]:
    reasons: list[Reason] = []
    security = _security(best)
    if security is PortMode.TLS:
        reasons.append(Reason("why_tls"))
    elif security is PortMode.STARTTLS:
        reasons.append(Reason("why_starttls"))
    else:
        reasons.append(Reason("why_plain"))
    tls = best.tls
    if tls is not None and (not tls.verified or tls.name_matches is False):
        reasons.append(Reason("cert_warning", (("error", tls.verify_error or
                                                "the names do not match"),)))
    return reasons


def _notes(ports: Sequence[PortReport], best: PortReport) -> list[Reason]:
    """Remarks about the other ports: why they were not picked."""
    out: list[Reason] = []
    for report in ports:
        if report is best:
            continue
        values = (("port", str(report.port)), ("chosen", str(best.port)))
        if report.state is PortState.FILTERED:
            # The classic case: a home, mobile or cloud network that blocks outgoing port 25
            # (RFC 5068 3); submission on 587 or 465 is the way around it (RFC 6409).
            out.append(Reason("port25_filtered" if report.port == 25 else "port_filtered",
                              values))
        elif report.state is PortState.REFUSED:
            out.append(Reason("port_refused", values))
    return out
