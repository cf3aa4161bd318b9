"""Orchestration of `smtpprobe relay`: can an application still send through its relay?

A CI smoke test after each deploy. One conversation runs the checks in order (connect, tls,
auth, mail, one rcpt per recipient, and with --send a small test message); each passes, fails
or is skipped with its classified finding. The open-relay check is a second conversation
without a login that asks the server to pass mail between two outside domains, and never
sends DATA. The names in that envelope are never connected to: they only fill MAIL and RCPT.

The verdict: fail when a check fails for good, temporary when the only failures may clear up
by themselves (4xx, timeouts), pass otherwise. Exit codes follow it (0 / 1 / 3).
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import formatdate
from enum import Enum
from typing import ClassVar

from smtpprobe.core.address import is_ip, of_family
from smtpprobe.core.certs import TrustStore
from smtpprobe.core.classify import Classifier
from smtpprobe.core.knowledge.load import KnowledgeBase
from smtpprobe.core.redact import Redactor
from smtpprobe.core.tlsproblems import covered_names, tls_problems
from smtpprobe.core.verdict import relay_verdict, slow_steps
from smtpprobe.models import (
    AuthResult,
    CheckStatus,
    Credentials,
    Failure,
    FailureKind,
    Finding,
    PortMode,
    Proxy,
    Reason,
    RelayCheck,
    RelayReport,
    Reply,
    Severity,
    Stage,
    Step,
    TlsInfo,
)
from smtpprobe.net.session import Endpoint, Session
from smtpprobe.probe.dialog import Opening, Tls, open_dialog
from smtpprobe.probe.login import login

TLS_MODES = ("auto", "starttls", "implicit", "none")
OPEN_RELAY_FROM = "smtpprobe-relay-test@example.com"
OPEN_RELAY_TO = "smtpprobe-relay-test@example.net"


@dataclass(frozen=True, slots=True)
class RelayTrick:
    """One envelope an open-relay test offers: a name, MAIL FROM, RCPT TO, and whether the
    recipient is disguised as one of the server's own domain (`local`: a catch-all accepts
    it too, so acceptance is a suspicion, not proof)."""

    name: str
    sender: str
    recipient: str
    local: bool = False


def relay_tricks(domain: str, *, outside_from: str = OPEN_RELAY_FROM,
                 outside_to: str = OPEN_RELAY_TO) -> tuple[RelayTrick, ...]:
    """The envelopes that spammers use to get mail relayed through a server that takes mail
    for `domain`. None of them is ever followed by DATA.

    The disguised forms are the old routing syntaxes that some MTAs still rewrite into an
    outside address: the percent hack and the UUCP bang path (sendmail and Postfix know
    both: allow_percent_hack, swap_bangpath), a quoted local part, and a source route
    (RFC 5321 4.1.1.3 and appendix C: accepted but to be ignored).
    """
    user, _, outside = outside_to.rpartition("@")
    return (
        RelayTrick("outside", outside_from, outside_to),
        RelayTrick("local_sender", f"postmaster@{domain}", outside_to),
        RelayTrick("percent", outside_from, f"{user}%{outside}@{domain}", local=True),
        RelayTrick("bang", outside_from, f"{outside}!{user}@{domain}", local=True),
        RelayTrick("quoted", outside_from, f'"{user}@{outside}"@{domain}', local=True),
        RelayTrick("source_route", outside_from, f"@{domain}:{outside_to}"),
    )


@dataclass(frozen=True, slots=True)
class RelayOptions:
    host: str
    port: int = 587
    tls: str = "auto"  # auto | starttls | implicit | none
    helo: str = "localhost"
    mail_from: str | None = None
    recipients: tuple[str, ...] = ()
    send: bool = False
    open_relay_check: bool = False
    open_relay_from: str = OPEN_RELAY_FROM
    open_relay_to: str = OPEN_RELAY_TO
    timeout: float = 10.0  # per step
    deadline: float = 60.0  # for the whole run
    allow_plaintext_auth: bool = False
    verify: bool = True  # a certificate problem fails the tls check
    allow_old_tls: bool = False  # also send the password over TLS 1.0/1.1 (RFC 8996)
    nameservers: tuple[tuple[str, int], ...] | None = None
    dns_timeout: float = 5.0
    source_address: str | None = None
    # Also loopback, private and link-local addresses of a public host name (skipped with a
    # finding otherwise); names under .test, .localhost ... and typed addresses always may.
    allow_private: bool = False
    proxy: Proxy | None = None  # SOCKS5 (--proxy): the connection goes through it
    family: int | None = None  # 4 or 6 (-4/-6): only addresses of that family
    # --auth-mech: only this SASL mechanism; XOAUTH2/OAUTHBEARER take the password as a token
    auth_mech: str | None = None


def port_mode(port: int, tls: str) -> tuple[PortMode, bool]:
    """The mode for a port and --tls, and whether TLS is required. Port 465 is implicit TLS
    (RFC 8314 3.3); on 587 STARTTLS is required, since a submission client must not send its
    password in the clear (RFC 8314 3.4); on other ports it is used when offered."""
    if tls == "implicit":
        return PortMode.TLS, True
    if tls == "starttls":
        return PortMode.STARTTLS, True
    if tls == "none":
        return PortMode.PLAIN, False
    if port == 465:
        return PortMode.TLS, True
    return PortMode.STARTTLS, port == 587


# --- pure helpers ----------------------------------------------------------------------------

_QUEUE_ID_PATTERNS = (
    re.compile(r"queued as\s+<?([A-Za-z0-9._-]+)>?", re.IGNORECASE),  # Postfix, many others
    re.compile(r"\bid=([A-Za-z0-9-]+)", re.IGNORECASE),  # Exim
    re.compile(r"\bInternalId=(\d+)", re.IGNORECASE),  # Microsoft 365 / Exchange
    re.compile(r"(<[^<>\s]+>)\s.*queued mail for delivery", re.IGNORECASE),  # Exchange
    re.compile(r"\bok\s+\d+\s+([A-Za-z0-9._-]+)\s+-\s+gsmtp", re.IGNORECASE),  # Gmail
    re.compile(r"\bqp\s+(\d+)", re.IGNORECASE),  # qmail
    re.compile(r"^(?:2\.\d{1,3}\.\d{1,3}\s+)?([A-Za-z0-9]{8,})\s+message accepted",
               re.IGNORECASE),  # Sendmail
)


def parse_queue_id(reply: Reply) -> str | None:
    """The id the server gave the accepted message (RFC 5321 4.2.5 leaves its form free)."""
    if reply.klass != 2:
        return None
    for line in reply.lines:
        text = line.strip()
        for pattern in _QUEUE_ID_PATTERNS:
            match = pattern.search(text)
            if match:
                return match.group(1)
    return None


def build_message(mail_from: str, recipients: Sequence[str], *, helo: str,
                  token: str | None = None) -> tuple[bytes, str, str]:
    """A small test message: (bytes, Message-ID, subject). The token makes both unique, so
    the message can be found in a mailbox or a log."""
    token = token or uuid.uuid4().hex
    domain = helo.strip("[]") if helo else "localhost"
    message_id = f"<smtpprobe-{token}@{domain}>"
    subject = f"smtpprobe relay test {token}"
    msg = EmailMessage(policy=SMTP_POLICY)
    msg["From"] = mail_from
    msg["To"] = ", ".join(recipients)
    msg["Subject"] = subject
    msg["Date"] = formatdate(usegmt=True)
    msg["Message-ID"] = message_id
    # RFC 3834 5: tell auto-responders and vacation programs not to answer.
    msg["Auto-Submitted"] = "auto-generated"
    msg["X-Smtpprobe"] = "relay test"
    msg.set_content(
        "This message was sent by `smtpprobe relay --send` to check that the mail relay\n"
        "accepts and queues mail. It can be deleted.\n\n"
        f"Test id: {token}\n", charset="us-ascii", cte="7bit")
    return msg.as_bytes(), message_id, subject


# What a failed tls check shows beside its finding's title: the certificate's own facts, not
# the last reply (the EHLO after STARTTLS says nothing about the certificate).
_PROBLEM_NOTES = {
    "self_signed": "cert_self_signed", "unknown_issuer": "cert_unknown_issuer",
    "missing_intermediate": "cert_missing_intermediate", "untrusted": "cert_untrusted",
    "no_trust_store": "cert_no_trust_store", "no_certificate": "cert_none",
}


def _tls_note(kind: FailureKind, tls: TlsInfo | None, label: str) -> Reason | None:
    if tls is None:
        return None
    if kind in (FailureKind.CERT_NAME_MISMATCH_SUBMISSION, FailureKind.CERT_NAME_MISMATCH):
        return Reason("cert_names", (("names", covered_names(tls) or "-"), ("name", label)))
    if kind is FailureKind.CERT_EXPIRED:
        return Reason("cert_expired", (("date", tls.not_after or "?"),))
    if kind is FailureKind.CERT_NOT_YET_VALID:
        return Reason("cert_not_yet_valid", (("date", tls.not_before or "?"),))
    if kind is FailureKind.CERT_WRONG_PURPOSE:
        return Reason("cert_wrong_purpose")
    if kind is FailureKind.CERT_UNREADABLE:
        return Reason("cert_unreadable")
    if kind is FailureKind.TLS_OUTDATED:
        return Reason("tls_outdated", (("version", tls.version),))
    key = _PROBLEM_NOTES.get(tls.verify_problem or "")
    return Reason(key) if key is not None else None


def _temporary(finding: Finding | None, step: Step | None) -> bool:
    if step is not None and step.reply is not None:
        return step.reply.klass == 4
    return bool(finding is not None and finding.retryable)


# --- the run ---------------------------------------------------------------------------------


class _Next(Enum):
    """What the runner does after a check."""

    GO_ON = "go_on"
    SKIP_REST = "skip_rest"  # the later checks cannot run: each is listed as skipped
    END = "end"  # the run is complete as it is (no sender: nothing after mail applies)


@dataclass(slots=True)
class _Run:
    """What one run collects on its way."""

    session: Session = field(init=False)
    opening: Opening | None = None
    accepted: list[str] = field(default_factory=list)
    checks: list[RelayCheck] = field(default_factory=list)
    tls: TlsInfo | None = None
    message_id: str | None = None
    queue_id: str | None = None


class Relay:
    def __init__(self, kb: KnowledgeBase, options: RelayOptions, *, trust: TrustStore,
                 redactor: Redactor, credentials: Credentials | None = None) -> None:
        self.kb = kb
        self.options = options
        self.credentials = credentials
        self.trust = trust
        self.redactor = redactor
        self.classifier = Classifier(kb)
        self.mode, self.tls_required = port_mode(options.port, options.tls)

    async def run(self) -> RelayReport:
        """Every check in order. Never raises for anything a server or DNS does."""
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        deadline = loop.time() + self.options.deadline
        opts = self.options
        run = _Run()
        addresses, name, dns_finding, notes = await self._resolve(deadline)
        used: str | None = None
        if not addresses:
            assert dns_finding is not None
            run.checks.append(RelayCheck("connect", CheckStatus.FAIL, dns_finding,
                                         temporary=dns_finding.retryable))
            self._skip_rest(run, "connect")
        else:
            # The addresses in turn (IPv6 first), the next one only when the TCP connection
            # to this one failed; the attempts given up lead the connect check's steps.
            given_up: list[Step] = []
            for index, address in enumerate(addresses):
                run, used = _Run(), address
                session = self._session(address, name, deadline)
                try:
                    await self._main(session, run)
                finally:
                    session.close()
                if (session.tcp_connected or index == len(addresses) - 1
                        or loop.time() >= deadline):
                    break
                given_up += run.checks[0].steps
            if given_up:
                run.checks[0] = replace(run.checks[0],
                                        steps=(*given_up, *run.checks[0].steps))
            assert used is not None
            if opts.open_relay_check:
                relay_session = self._session(used, name, deadline)
                try:
                    run.checks.append(await self._open_relay(relay_session))
                finally:
                    relay_session.close()
        return RelayReport(
            host=opts.host, address=used or "", port=opts.port, mode=self.mode,
            verdict=relay_verdict(run.checks), checks=tuple(run.checks), tls=run.tls,
            message_id=run.message_id, queue_id=run.queue_id,
            user=self.credentials.user if self.credentials else None,
            elapsed_ms=(time.perf_counter() - started) * 1000,
            addresses=addresses, address_findings=notes,
            notes=tuple(self.classifier.observe(stage, kind, detail)
                        for stage, kind, detail in slow_steps(
                            [s for c in run.checks for s in c.steps], opts.host)))

    def _session(self, address: str, name: str | None, deadline: float) -> Session:
        opts = self.options
        return Session(Endpoint(address, opts.port, name), helo=opts.helo, timeout=opts.timeout,
                       deadline=deadline, source_address=opts.source_address, trust=self.trust,
                       redactor=self.redactor, proxy=opts.proxy)

    async def _open(self, session: Session) -> Opening:
        opening = await open_dialog(session, starttls=self.mode is PortMode.STARTTLS,
                                    implicit_tls=self.mode is PortMode.TLS)
        opening.plain = self.classifier.steps(opening.plain)
        opening.secured = self.classifier.steps(opening.secured)
        return opening

    async def _resolve(self, deadline: float) -> tuple[
            tuple[str, ...], str | None, Finding | None, tuple[Finding, ...]]:
        """The addresses to try in turn, the name to expect, why there is none, and what
        was left out (net.dns.resolve_server's warnings, classified)."""
        host = self.options.host
        if is_ip(host):
            # An address the user typed is used as typed, loopback and private included.
            return (host,), None, None, ()
        from smtpprobe.net.dns import resolve_server

        loop = asyncio.get_running_loop()
        budget = max(0.1, min(self.options.dns_timeout, deadline - loop.time()))
        found = await resolve_server(host, nameservers=self.options.nameservers,
                                     timeout=budget, allow_private=self.options.allow_private)
        notes = tuple(self.classifier.failure(Stage.DNS, w) for w in found.warnings)
        every = found.hosts[0].addresses if found.hosts else ()
        addresses = of_family(every, self.options.family)
        if addresses:
            return addresses, host, None, notes
        family = self.options.family
        failure = found.failure or Failure(
            FailureKind.FAMILY_EXCLUDED if every else FailureKind.DNS_NO_ADDRESS, (
            f"{host} has no IPv{family} address, and -{family} allows only that" if every
            else f"{host} has no address"))
        return (), None, self.classifier.failure(Stage.DNS, failure), notes

    # The checks after the first one that could not run: skipped, with the reason.
    def _skip_rest(self, run: _Run, after: str) -> None:
        opts = self.options
        names = ["tls", "auth", "mail"] + [f"rcpt:{r}" for r in opts.recipients] + ["send"]
        done = {c.name if c.subject is None else f"{c.name}:{c.subject}" for c in run.checks}
        for item in names:
            if item in done:
                continue
            check, _, subject = item.partition(":")
            if check == "send" and not opts.send:
                continue
            run.checks.append(RelayCheck(check, CheckStatus.SKIP, subject=subject or None,
                                         note=Reason("skip_after", (("check", after),))))

    def _failed(self, name: str, steps: list[Step], *, subject: str | None = None,
                started: float) -> RelayCheck:
        last = steps[-1]
        return RelayCheck(name, CheckStatus.FAIL, last.finding, subject=subject,
                          temporary=_temporary(last.finding, last), steps=tuple(steps),
                          elapsed_ms=(time.perf_counter() - started) * 1000)

    def _passed(self, name: str, steps: list[Step], *, subject: str | None = None,
                started: float, finding: Finding | None = None,
                note: Reason | None = None) -> RelayCheck:
        return RelayCheck(name, CheckStatus.PASS, finding or steps[-1].finding,
                          subject=subject, steps=tuple(steps), note=note,
                          elapsed_ms=(time.perf_counter() - started) * 1000)

    async def _main(self, session: Session, run: _Run) -> None:
        """The checks in order (sslyze's table of named checks, one runner): after a check
        that stops the run, the rest are marked skipped once, here."""
        run.session = session
        for name, check in self._CHECKS:
            after = await check(self, run)
            if after is _Next.GO_ON:
                continue
            await session.quit()
            if after is _Next.SKIP_REST:
                self._skip_rest(run, name)
            return
        await session.quit()

    async def _connect(self, run: _Run) -> _Next:
        """TCP, (TLS on 465), the greeting and EHLO; the whole opening runs here, the tls
        check reads the rest of it."""
        started = time.perf_counter()
        run.opening = opening = await self._open(run.session)
        if not opening.hello:
            run.checks.append(self._failed("connect", opening.plain, started=started))
            return _Next.SKIP_REST
        run.checks.append(self._passed("connect", opening.plain, started=started,
                                       finding=opening.plain[0].finding))
        return _Next.GO_ON

    async def _tls(self, run: _Run) -> _Next:
        session, opening = run.session, run.opening
        assert opening is not None
        started = time.perf_counter()
        label = session.endpoint.name or session.endpoint.address
        if opening.tls is Tls.NOT_OFFERED:
            finding = self.classifier.observe(Stage.STARTTLS, FailureKind.NOT_OFFERED,
                                              f"{session.endpoint.where} does not offer "
                                              f"STARTTLS")
            if self.tls_required:
                run.checks.append(RelayCheck("tls", CheckStatus.FAIL, finding,
                                             elapsed_ms=0.0))
                return _Next.SKIP_REST
            run.checks.append(RelayCheck("tls", CheckStatus.SKIP, finding,
                                         note=Reason("tls_optional")))
        elif opening.tls in (Tls.REFUSED, Tls.BROKEN) or not opening.ready:
            run.checks.append(self._failed("tls", opening.secured, started=started))
            return _Next.SKIP_REST
        elif opening.tls in (Tls.UP, Tls.IMPLICIT):
            run.checks.append(self._tls_check(session, opening.secured, label, started))
        else:
            run.checks.append(RelayCheck("tls", CheckStatus.SKIP, note=Reason("tls_none")))
        run.tls = session.tls
        return _Next.SKIP_REST if run.checks[-1].status is CheckStatus.FAIL else _Next.GO_ON

    async def _auth(self, run: _Run) -> _Next:
        opts = self.options
        if self.credentials is None:
            run.checks.append(RelayCheck("auth", CheckStatus.SKIP, note=Reason("no_user")))
            return _Next.GO_ON
        started = time.perf_counter()
        steps: list[Step] = []
        outcome = await login(run.session, self.credentials, self.classifier, steps,
                              allow_plaintext=opts.allow_plaintext_auth,
                              tls_expected=self.tls_required, verify=opts.verify,
                              allow_old_tls=opts.allow_old_tls, mechanism=opts.auth_mech)
        elapsed = (time.perf_counter() - started) * 1000
        if outcome.result is AuthResult.OK:
            run.checks.append(RelayCheck("auth", CheckStatus.PASS, outcome.finding,
                                         steps=tuple(steps), elapsed_ms=elapsed,
                                         note=Reason("auth_with", (
                                             ("mechanism", outcome.mechanism or ""),))))
            return _Next.GO_ON
        last = steps[-1] if steps else None
        run.checks.append(RelayCheck(
            "auth", CheckStatus.FAIL, outcome.finding, steps=tuple(steps),
            temporary=outcome.result is AuthResult.TEMPORARY or (
                outcome.result is AuthResult.ERROR and _temporary(outcome.finding, last)),
            elapsed_ms=elapsed))
        return _Next.SKIP_REST

    async def _mail(self, run: _Run) -> _Next:
        opts = self.options
        if opts.mail_from is None:
            run.checks.append(RelayCheck("mail", CheckStatus.SKIP, note=Reason("no_from")))
            return _Next.END  # without a sender there is no transaction to check
        started = time.perf_counter()
        mail = self.classifier.step(await run.session.mail(opts.mail_from))
        if not mail.replied(250):
            run.checks.append(self._failed("mail", [mail], started=started))
            return _Next.SKIP_REST
        run.checks.append(self._passed("mail", [mail], started=started))
        return _Next.GO_ON

    async def _rcpts(self, run: _Run) -> _Next:
        """One check per recipient; a refusal does not stop the others."""
        for recipient in self.options.recipients:
            started = time.perf_counter()
            rcpt = self.classifier.step(await run.session.rcpt(recipient))
            if rcpt.replied(250, 251):
                run.accepted.append(recipient)
                run.checks.append(self._passed("rcpt", [rcpt], subject=recipient,
                                               started=started))
            else:
                run.checks.append(self._failed("rcpt", [rcpt], subject=recipient,
                                               started=started))
                if not run.session.connected:
                    return _Next.SKIP_REST
        return _Next.GO_ON

    async def _send_check(self, run: _Run) -> _Next:
        if not self.options.send or not run.accepted:
            # Not asked for, or no recipient to send to: what is left (a recipient after a
            # lost connection, send) is skipped because of the rcpt checks.
            self._skip_rest(run, "rcpt")
            return _Next.END
        run.checks.append(await self._send(run.session, run, run.accepted))
        return _Next.GO_ON

    _CHECKS: ClassVar[tuple[tuple[str, Callable[[Relay, _Run], Awaitable[_Next]]], ...]] = (
        ("connect", _connect), ("tls", _tls), ("auth", _auth), ("mail", _mail),
        ("rcpt", _rcpts), ("send", _send_check))

    def _tls_check(self, session: Session, steps: list[Step], label: str,
                   started: float) -> RelayCheck:
        tls = session.tls
        # A relay is a server users log in to: a name mismatch is about the name in their
        # settings (the submission variant of the finding), not about an MX record.
        found = tls_problems(tls, label, submission=True) if tls is not None else []
        problems = [(kind, self.classifier.observe(Stage.STARTTLS, kind, detail))
                    for kind, detail in found]
        serious = [(k, f) for k, f in problems if f.severity not in (Severity.OK, Severity.INFO)]
        elapsed = (time.perf_counter() - started) * 1000
        if serious and self.options.verify:
            kind, finding = serious[0]
            return RelayCheck("tls", CheckStatus.FAIL, finding, steps=tuple(steps),
                              elapsed_ms=elapsed, note=_tls_note(kind, tls, label))
        note = Reason("tls_with", (("version", tls.version if tls else ""),
                                   ("cipher", tls.cipher if tls else "")))
        chosen = serious[0][1] if serious else (problems[0][1] if problems else
                                                (steps[0].finding if steps else None))
        return RelayCheck("tls", CheckStatus.PASS, chosen, steps=tuple(steps),
                          elapsed_ms=elapsed, note=note)

    async def _send(self, session: Session, run: _Run, accepted: list[str]) -> RelayCheck:
        opts = self.options
        assert opts.mail_from is not None
        started = time.perf_counter()
        message, message_id, _ = build_message(opts.mail_from, accepted, helo=opts.helo)
        run.message_id = message_id
        steps = self.classifier.steps(await session.data(message))
        last = steps[-1]
        if last.reply is not None and last.replied(250) and len(steps) >= 2:
            run.queue_id = parse_queue_id(last.reply)
            return self._passed("send", steps, started=started,
                                note=Reason("queued", (("queue_id", run.queue_id or "?"),
                                                       ("message_id", message_id))))
        return self._failed("send", steps, started=started)

    async def _open_relay(self, session: Session) -> RelayCheck:
        """Without AUTH: MAIL from an outside sender, RCPT to an outside recipient, no DATA."""
        opts = self.options
        started = time.perf_counter()
        here = session.endpoint.where
        # Some servers refuse everything before STARTTLS; the question is whether they relay
        # once it is up, so it is asked over TLS when offered.
        opening = await self._open(session)
        steps = opening.steps

        def cannot_tell() -> RelayCheck:
            last = steps[-1]
            return RelayCheck("open_relay", CheckStatus.FAIL, last.finding,
                              temporary=_temporary(last.finding, last), steps=tuple(steps),
                              elapsed_ms=(time.perf_counter() - started) * 1000,
                              note=Reason("open_relay_unknown"))

        if not opening.ready:
            if session.connected:
                await session.quit()
            return cannot_tell()
        mail = self.classifier.step(await session.mail(opts.open_relay_from))
        steps.append(mail)
        decisive = mail
        if mail.replied(250):
            decisive = self.classifier.step(await session.rcpt(opts.open_relay_to))
            steps.append(decisive)
        goodbye = await session.quit()
        if goodbye is not None:
            steps.append(goodbye)
        elapsed = (time.perf_counter() - started) * 1000
        reply = decisive.reply
        if reply is None or reply.klass == 4:
            return cannot_tell()
        said = reply.render().replace("\n", " | ")
        if reply.klass == 2:
            finding = self.classifier.observe(
                Stage.RCPT, FailureKind.OPEN_RELAY,
                f"{here} accepted RCPT TO:<{opts.open_relay_to}> from "
                f"<{opts.open_relay_from}> without authentication: {said}")
            return RelayCheck("open_relay", CheckStatus.FAIL, finding, steps=tuple(steps),
                              elapsed_ms=elapsed)
        command = "RCPT TO" if decisive.stage is Stage.RCPT else "MAIL FROM"
        finding = self.classifier.observe(decisive.stage, FailureKind.RELAY_REFUSED,
                                          f"without authentication {here} refused {command}: "
                                          f"{said}")
        return RelayCheck("open_relay", CheckStatus.PASS, finding, steps=tuple(steps),
                          elapsed_ms=elapsed)
