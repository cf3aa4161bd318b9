"""Local SMTP servers that play named scenarios: for the tests, `smtpprobe demo` and
`smtpprobe lab`.

Most scenarios run on aiosmtpd's `SMTP` protocol class, created with `loop.create_server`
inside the caller's running event loop (never aiosmtpd's threaded Controller). A subclass makes
its replies read like Postfix's, records every command, and applies the scenario's rules
(STARTTLS before anything else, AUTH before MAIL, sender ownership, recipient answers).
Scenarios aiosmtpd cannot express, because its greeting is always 220, run as a `RawScript`:
a coroutine that talks to one connection through `RawConnection`. Hostile servers (no banner,
endless lines, garbage after STARTTLS ...) are raw scripts as well; pass such a `Scenario` to
`serve` like any named one.

Servers listen on loopback only. Every message that reaches DATA is thrown away.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import secrets
import tempfile
from collections.abc import Awaitable, Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType, TracebackType
from typing import Any, Literal, Self

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session, TLSSetupException

from .tls import LabCA, LabCert

__all__ = [
    "SCENARIOS",
    "LabServer",
    "RawConnection",
    "RawScript",
    "Scenario",
    "ServerSpec",
    "describe",
    "run_forever",
    "serve",
    "serve_many",
    "start",
]

RecipientRule = Literal[
    "mailbox", "any", "full", "relay_denied", "blocklisted", "greylist", "disconnect"
]
AuthRule = Literal["none", "users", "fail", "app_password"]
EhloRule = Literal["ok", "reject", "helo_only"]

# Postfix's default message_size_limit, advertised with SIZE (RFC 1870).
DEFAULT_SIZE_LIMIT = 10_240_000
# Postfix's smtpd_timeout and smtpd_hard_error_limit.
COMMAND_TIMEOUT = 300.0
ERROR_LIMIT = 20
# Raw scripts read lines up to this length (RFC 5321 4.5.3.1.4 allows 512 for a command).
RAW_LINE_LIMIT = 4096

# RFC 3207 4: before TLS, a server that insists on it accepts only these.
_BEFORE_TLS = frozenset({"EHLO", "HELO", "STARTTLS", "NOOP", "RSET", "QUIT"})

AUTH_FAILED = "535 5.7.8 Error: authentication failed"
APP_PASSWORD = (
    "534-5.7.9 Application-specific password required. Learn more at\r\n"
    "534 5.7.9  https://support.google.com/mail/?p=InvalidSecondFactor lab - gsmtp"
)


class RawConnection:
    """One client connection of a raw script: read commands, send replies, nothing else.

    Every line read is recorded in the server's `commands`, like the aiosmtpd scenarios do.
    """

    def __init__(
        self,
        server: LabServer,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        log: list[str],
    ) -> None:
        self.server = server
        self.reader = reader
        self.writer = writer
        self._log = log
        peer = writer.get_extra_info("peername")
        self.peer_ip: str = peer[0] if peer else "unknown"

    async def send(self, *lines: str) -> None:
        """Send reply lines, each ended with CRLF."""
        self.writer.write("".join(f"{line}\r\n" for line in lines).encode("utf-8"))
        await self.writer.drain()

    async def send_bytes(self, data: bytes) -> None:
        """Send bytes exactly as given (for scripts that misbehave on purpose)."""
        self.writer.write(data)
        await self.writer.drain()

    async def read_command(self, timeout: float = COMMAND_TIMEOUT) -> str | None:
        """The next line without its line end, or None when the client closed or went quiet.

        A line longer than RAW_LINE_LIMIT is read to its end and returned cut short.
        """
        try:
            async with asyncio.timeout(timeout):
                try:
                    raw = await self.reader.readuntil(b"\n")
                except asyncio.LimitOverrunError as exc:
                    raw = await self.reader.readexactly(exc.consumed)
                    await self._skip_rest_of_line()
        except (asyncio.IncompleteReadError, ConnectionError, TimeoutError):
            return None
        line = raw.rstrip(b"\r\n").decode("utf-8", "replace")
        self.server._record(self._log, line)
        return line

    async def _skip_rest_of_line(self) -> None:
        while True:
            try:
                await self.reader.readuntil(b"\n")
                return
            except asyncio.LimitOverrunError as exc:
                await self.reader.readexactly(exc.consumed)

    async def start_tls(self) -> None:
        """Upgrade to TLS with the server's certificate (after a "220 Ready to start TLS")."""
        context = self.server._tls_context
        if context is None:
            raise RuntimeError("this lab server has no certificate")
        await self.writer.start_tls(context)

    def close(self) -> None:
        self.writer.close()


RawScript = Callable[[RawConnection], Awaitable[None]]


@dataclass(frozen=True)
class Scenario:
    """How a lab server behaves. The named ones are in SCENARIOS; tests may build their own."""

    name: str
    summary: str
    recipients: RecipientRule = "mailbox"
    needs_cert: bool = False
    starttls: bool = True  # offer STARTTLS when the server has a certificate
    tls_first: bool = False  # RFC 3207 4: refuse other commands until TLS is up
    auth: AuthRule = "none"
    auth_tls_only: bool = False  # offer and accept AUTH only inside TLS (RFC 4954 4)
    mail_needs_auth: bool = False
    sender_owned: bool = False  # MAIL FROM must belong to the login
    ehlo: EhloRule = "ok"
    banner_delay: float = 0.0
    greeting: str = "ESMTP Postfix"
    raw: RawScript | None = None  # a script for servers aiosmtpd cannot play
    smtputf8: bool = False  # offer SMTPUTF8 (RFC 6531) and take UTF-8 addresses


async def _banner_reject(conn: RawConnection) -> None:
    await conn.send(f"554 5.7.1 <{conn.server.hostname}>: No SMTP service here")
    # RFC 5321 3.1: after a 554 greeting the server waits for QUIT and answers anything
    # else with 503.
    errors = 0
    while (line := await conn.read_command()) is not None:
        if _verb(line) == "QUIT":
            await conn.send("221 2.0.0 Bye")
            break
        errors += 1
        if errors >= ERROR_LIMIT:
            await conn.send(f"421 4.7.0 {conn.server.hostname} Error: too many errors")
            break
        await conn.send("503 5.5.1 Error: bad sequence of commands")
    conn.close()


async def _rate_limited(conn: RawConnection) -> None:
    # RFC 5321 3.8: a server that must stop sends 421 and closes without waiting for QUIT.
    await conn.send(
        f"421 4.7.0 {conn.server.hostname} Error: too many connections from {conn.peer_ip}"
    )
    conn.close()


_SCENARIO_LIST = (
    Scenario("mailbox", "an MX with real mailboxes: the configured local parts exist, "
             "other recipients get 550 5.1.1"),
    Scenario("catch_all", "an MX that accepts every recipient (a catch-all domain)",
             recipients="any"),
    Scenario("mailbox_full", "every recipient is over quota: RCPT gets 552 5.2.2",
             recipients="full"),
    Scenario("relay_denied", "refuses all recipients with 554 5.7.1 Relay access denied",
             recipients="relay_denied"),
    Scenario("greylist", "postgrey-style: a new (client, sender, recipient) triple gets 450 "
             "4.2.0 until greylist_delay has passed, then mailbox rules apply",
             recipients="greylist"),
    Scenario("starttls_required", "MAIL and every other transaction command need STARTTLS "
             "first (530 5.7.0); needs a certificate", needs_cert=True, tls_first=True),
    Scenario("auth_required", "MAIL without AUTH gets 530 5.7.0; AUTH PLAIN/LOGIN is "
             "offered, the configured users may send anywhere",
             recipients="any", auth="users", mail_needs_auth=True),
    Scenario("auth_failing", "offers AUTH but answers every attempt with 535 5.7.8",
             recipients="any", auth="fail", mail_needs_auth=True),
    Scenario("app_password", "answers AUTH with a two-line 534 5.7.9 that asks for an "
             "application-specific password (as Gmail does)",
             recipients="any", auth="app_password", mail_needs_auth=True),
    Scenario("submission", "a correct submission server: STARTTLS, then AUTH, then only "
             "senders the login owns; queues and discards the message; needs a certificate",
             recipients="any", needs_cert=True, tls_first=True, auth="users",
             auth_tls_only=True, mail_needs_auth=True, sender_owned=True),
    Scenario("open_relay", "a misconfigured server that relays for anyone to any domain "
             "without AUTH", recipients="any"),
    Scenario("blocklisted", "rejects every recipient because the client's address is on "
             "a DNS blocklist (554 5.7.1)", recipients="blocklisted"),
    Scenario("banner_reject", "greets with 554 5.7.1 No SMTP service here, then waits for "
             "QUIT", raw=_banner_reject),
    Scenario("slow_banner", "sends its greeting only after banner_delay seconds "
             "(default 5), then acts like mailbox", banner_delay=5.0),
    Scenario("disconnect_mid", "answers MAIL FROM, then drops the connection when RCPT "
             "arrives, without a reply", recipients="disconnect"),
    Scenario("rate_limited", "greets with 421 4.7.0 too many connections and hangs up",
             raw=_rate_limited),
    Scenario("helo_reject", "rejects EHLO and HELO with 504 5.5.2 (not a fully-qualified "
             "hostname)", ehlo="reject"),
    Scenario("no_esmtp", "an old server: EHLO gets 502 5.5.2, HELO works", ehlo="helo_only",
             greeting="Sendmail 8.8.8/8.8.8; ready"),
    Scenario("smtputf8", "like mailbox, and offers SMTPUTF8 (RFC 6531): international "
             "addresses such as jörg@ are taken when MAIL asks for SMTPUTF8",
             smtputf8=True),
    Scenario("no_starttls", "like mailbox, but never offers STARTTLS, even with a "
             "certificate", starttls=False),
)

SCENARIOS: Mapping[str, Scenario] = MappingProxyType({s.name: s for s in _SCENARIO_LIST})


def describe() -> list[tuple[str, str]]:
    """(name, summary) of every named scenario, for `smtpprobe lab --list`."""
    return [(s.name, s.summary) for s in SCENARIOS.values()]


def _verb(line: str) -> str:
    return line.split(" ", 1)[0].upper()


def _mask(command: str, arg: str | None) -> str:
    """The command as recorded: an AUTH initial response may hold a password (RFC 4954 4)."""
    if arg is None:
        return command
    if command == "AUTH":
        parts = arg.split()
        if len(parts) > 1:
            return f"AUTH {parts[0]} ****"
    return f"{command} {arg}"


def _local_part(address: str) -> str:
    return address.rpartition("@")[0] if "@" in address else address


def _domain(address: str) -> str:
    return address.rpartition("@")[2] if "@" in address else ""


def _owns(login: str, sender: str) -> bool:
    """A login "alice@lab.test" owns exactly that address; a bare login "alice" owns the
    local part "alice" at any domain."""
    login, sender = login.lower(), sender.lower()
    if "@" in login:
        return sender == login
    return "@" in sender and _local_part(sender) == login


# aiosmtpd's own replies, in Postfix's words and with enhanced codes: ENHANCEDSTATUSCODES is
# advertised, and RFC 2034 3 then expects them on (nearly) every reply. Matched by prefix.
_STOCK_REPLIES: tuple[tuple[str, str], ...] = (
    ("503 Error: send HELO first", "503 5.5.1 Error: send HELO/EHLO first"),
    ("503 Error: send EHLO first", "503 5.5.1 Error: send HELO/EHLO first"),
    ("503 Error: need MAIL command", "503 5.5.1 Error: need MAIL command"),
    ("503 Error: need RCPT command", "554 5.5.1 Error: no valid recipients"),
    ("503 Error: nested MAIL command", "503 5.5.1 Error: nested MAIL command"),
    ("503 Already authenticated", "503 5.5.1 Error: already authenticated"),
    ("501 Syntax: MAIL", "501 5.5.4 Syntax: MAIL FROM:<address>"),
    ("501 Syntax: RCPT", "501 5.5.4 Syntax: RCPT TO:<address>"),
    ("501 Syntax: EHLO", "501 5.5.4 Syntax: EHLO hostname"),
    ("501 Syntax: HELO", "501 5.5.4 Syntax: HELO hostname"),
    ("501 Syntax: ", "501 5.5.4 Syntax error in parameters or arguments"),
    ("501 Not enough value", "501 5.5.4 Syntax: AUTH mechanism"),
    ("501 Too many values", "501 5.5.4 Syntax: AUTH mechanism"),
    ("501 Error: BODY", "501 5.5.4 Bad BODY parameter"),
    ("501 Error: SMTPUTF8", "501 5.5.4 Bad SMTPUTF8 parameter"),
    ("553 5.1.3 Error: malformed address", "501 5.1.3 Bad address syntax"),
    ("552 Error: message size exceeds", "552 5.3.4 Message size exceeds fixed limit"),
    ("552 Error: Too much mail data", "552 5.3.4 Error: message file too big"),
    ("555 MAIL FROM parameters", "555 5.5.4 Unsupported option"),
    ("555 RCPT TO parameters", "555 5.5.4 Unsupported option"),
    ("500 Error: bad syntax", "500 5.5.2 Error: bad syntax"),
    ("500 Command line too long", "500 5.5.2 Error: line too long"),
    ("500 Line too long", "500 5.5.2 Error: line too long"),
    ("500 Error: strict ASCII mode", "500 5.5.2 Error: bad UTF-8 syntax"),
    ("500 Error: command 'AUTH' not recognized", "503 5.5.1 Error: authentication not enabled"),
    ("535 5.7.8 Authentication credentials invalid", AUTH_FAILED),
    ("220 Ready to start TLS", "220 2.0.0 Ready to start TLS"),
    ("501 5.7.0 Auth aborted", "501 5.7.0 Authentication aborted"),
)


def _postfix_words(status: str) -> str:
    for prefix, replacement in _STOCK_REPLIES:
        if status.startswith(prefix):
            return replacement
    return status


def _queue_id() -> str:
    # Postfix's short queue ids are upper-case hex.
    return secrets.token_hex(5).upper()


class _Handler:
    """aiosmtpd hooks (`handle_*`): the scenario's answers. One per server, shared by its
    connections; per-connection state lives in aiosmtpd's Session and Envelope."""

    def __init__(self, lab: LabServer) -> None:
        self.lab = lab

    async def handle_EHLO(
        self,
        server: _LabSMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        lab, scenario = self.lab, self.lab.scenario
        if scenario.ehlo == "reject":
            session.extended_smtp = False
            return [_helo_rejected(hostname)]
        if scenario.ehlo == "helo_only":
            session.extended_smtp = False
            return ["502 5.5.2 Error: command not recognized"]
        # With a 5-argument hook, aiosmtpd leaves recording the client's name to the hook.
        session.host_name = hostname
        encrypted = server.encrypted()
        keywords = [lab.hostname]
        if lab.pipelining:
            keywords.append("PIPELINING")
        keywords.append(f"SIZE {lab.size_limit}")
        if server.tls_context is not None and not encrypted:
            keywords.append("STARTTLS")
        if server.auth_offered():
            keywords.append("AUTH PLAIN LOGIN")
        keywords += ["ENHANCEDSTATUSCODES", "8BITMIME"]
        if scenario.smtputf8:
            keywords.append("SMTPUTF8")
        return [f"250-{k}" for k in keywords[:-1]] + [f"250 {keywords[-1]}"]

    async def handle_HELO(
        self, server: _LabSMTP, session: Session, envelope: Envelope, hostname: str
    ) -> str:
        if self.lab.scenario.ehlo == "reject":
            return _helo_rejected(hostname)
        session.host_name = hostname
        return f"250 {self.lab.hostname}"

    async def handle_MAIL(
        self,
        server: _LabSMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        scenario = self.lab.scenario
        if scenario.mail_needs_auth and not session.authenticated:
            return "530 5.7.0 Authentication required"
        if scenario.sender_owned:
            login = session.auth_data if isinstance(session.auth_data, str) else ""
            if not _owns(login, address):
                return f"553 5.7.1 <{address}>: Sender address rejected: not owned by user {login}"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 Ok"

    async def handle_RCPT(
        self,
        server: _LabSMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str | None:
        lab = self.lab
        rule = lab.scenario.recipients
        peer_ip = server.peer_ip()
        status: str
        if rule == "disconnect":
            server.hang_up()
            return None
        if not address.isascii() and "SMTPUTF8" not in (
                o.upper() for o in envelope.mail_options):
            # Postfix's words (smtpd.c) for a UTF-8 address in a transaction without
            # SMTPUTF8 (RFC 6531 3.4).
            return "553 5.6.7 Must declare SMTPUTF8 to send unicode address"
        if rule == "full":
            status = (
                f"552 5.2.2 <{address}>: Recipient address rejected: "
                "Mailbox full (quota exceeded)"
            )
        elif rule == "relay_denied":
            status = f"554 5.7.1 <{address}>: Relay access denied"
        elif rule == "blocklisted":
            status = (
                f"554 5.7.1 Service unavailable; Client host [{peer_ip}] blocked using "
                f"zen.spamhaus.org; https://www.spamhaus.org/query/ip/{peer_ip}"
            )
        elif rule == "greylist" and lab._greylisted(peer_ip, envelope.mail_from or "", address):
            status = (
                f"450 4.2.0 <{address}>: Recipient address rejected: Greylisted, see "
                f"https://postgrey.lab.test/help/{_domain(address) or 'lab.test'}.html"
            )
        elif rule != "any" and _local_part(address).lower() not in lab.local_parts:
            status = (
                f"550 5.1.1 <{address}>: Recipient address rejected: "
                "User unknown in virtual alias table"
            )
        else:
            envelope.rcpt_tos.append(address)
            envelope.rcpt_options.extend(rcpt_options)
            status = "250 2.1.5 Ok"
        return status

    async def handle_DATA(self, server: _LabSMTP, session: Session, envelope: Envelope) -> str:
        queue_id = _queue_id()
        self.lab.queued.append(queue_id)
        # The lab never keeps a message.
        envelope.content = envelope.original_content = None
        return f"250 2.0.0 Ok: queued as {queue_id}"

    async def handle_RSET(self, server: _LabSMTP, session: Session, envelope: Envelope) -> str:
        return "250 2.0.0 Ok"

    async def handle_NOOP(
        self, server: _LabSMTP, session: Session, envelope: Envelope, arg: str | None
    ) -> str:
        return "250 2.0.0 Ok"

    async def handle_QUIT(self, server: _LabSMTP, session: Session, envelope: Envelope) -> str:
        return "221 2.0.0 Bye"

    async def handle_VRFY(
        self, server: _LabSMTP, session: Session, envelope: Envelope, address: str
    ) -> str:
        # Most MX hosts set disable_vrfy_command = yes (it hands out the list of users).
        return "502 5.5.1 VRFY command is disabled"

    async def handle_exception(self, error: Exception) -> str:
        if not isinstance(error, TLSSetupException):
            self.lab.errors.append(f"{type(error).__name__}: {error}")
        return "451 4.3.0 Error: internal error in the lab server"


def _helo_rejected(hostname: str) -> str:
    return f"504 5.5.2 <{hostname}>: Helo command rejected: need fully-qualified hostname"


class _Commands(dict[str, Any]):
    """aiosmtpd's table of command methods, wrapped: each call is recorded first and passes
    the scenario's STARTTLS gate; an unknown command gets Postfix's answer instead of
    aiosmtpd's."""

    def __init__(self, protocol: _LabSMTP, methods: Mapping[str, Any]) -> None:
        super().__init__({name: self._wrap(protocol, name, m) for name, m in methods.items()})
        self._protocol = protocol

    @staticmethod
    def _wrap(protocol: _LabSMTP, name: str, method: Any) -> Any:
        async def call(arg: str | None) -> None:
            protocol.record(_mask(name, arg))
            if protocol.tls_gate(name):
                await protocol.push("530 5.7.0 Must issue a STARTTLS command first")
                return
            await method(arg)

        return call

    def get(self, key: str, default: Any = None) -> Any:
        found = super().get(key)
        if found is not None:
            return found
        protocol = self._protocol

        async def unknown(arg: str | None) -> None:
            protocol.record(_mask(key, arg))
            await protocol.command_error("502 5.5.2 Error: command not recognized")

        return unknown


class _LabSession(Session):
    """aiosmtpd's Session without the deprecation warning that its AUTH code itself sets off
    (it assigns `login_data` on every successful login, and the setter logs a warning)."""

    @property
    def login_data(self) -> Any:
        return self._login_data

    @login_data.setter
    def login_data(self, value: Any) -> None:
        self._login_data = value


class _LabSMTP(SMTP):
    """aiosmtpd's protocol with Postfix's words, command recording and the scenario's gates."""

    # Postfix's LOGIN prompts (RFC 4954 leaves them free; clients ignore them).
    AuthLoginUsernameChallenge = "Username:"
    AuthLoginPasswordChallenge = "Password:"

    def __init__(self, lab: LabServer, loop: asyncio.AbstractEventLoop) -> None:
        self._lab = lab
        self._log: list[str] = []
        self._raw_transport: asyncio.BaseTransport | None = None
        self._errors = 0
        handler = _Handler(lab)
        super().__init__(
            handler,
            hostname=lab.hostname,
            ident=lab.scenario.greeting,
            tls_context=lab._tls_context if lab._offers_starttls() else None,
            data_size_limit=lab.size_limit,
            timeout=COMMAND_TIMEOUT,
            # The scenario decides about TLS and AUTH, with Postfix's replies; aiosmtpd's
            # own checks would answer with its texts.
            auth_require_tls=False,
            authenticator=self._check_login,
            enable_SMTPUTF8=lab.scenario.smtputf8,
            loop=loop,
        )
        self._smtp_methods = _Commands(self, self._smtp_methods)

    # -- state -------------------------------------------------------------------------------

    def encrypted(self) -> bool:
        if self._lab.implicit_tls:
            return True
        return self.session is not None and self.session.ssl is not None

    def auth_offered(self) -> bool:
        scenario = self._lab.scenario
        if scenario.auth == "none":
            return False
        return self.encrypted() or not scenario.auth_tls_only

    def tls_gate(self, command: str) -> bool:
        """True when the command must wait for STARTTLS (RFC 3207 4)."""
        return (
            self._lab.scenario.tls_first
            and not self.encrypted()
            and command not in _BEFORE_TLS
        )

    def peer_ip(self) -> str:
        peer = self.session.peer if self.session is not None else None
        if isinstance(peer, tuple) and peer:
            return str(peer[0])
        return "unknown"

    def record(self, line: str) -> None:
        self._lab._record(self._log, line)

    def hang_up(self) -> None:
        """Drop the connection without a reply."""
        if self.transport is not None:
            self.transport.close()

    # -- connection life ---------------------------------------------------------------------

    def _create_session(self) -> Session:
        return _LabSession(self.loop)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # aiosmtpd calls this a second time when STARTTLS completes; count the first only.
        if self._raw_transport is None:
            self._raw_transport = transport
            self._log = self._lab._connected(transport)
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        if self._raw_transport is not None:
            self._lab._transports.discard(self._raw_transport)
        super().connection_lost(error)

    async def _handle_client(self) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._lab._track(task)
        if self._lab.banner_delay > 0:
            await asyncio.sleep(self._lab.banner_delay)
        await super()._handle_client()

    # -- replies and commands ----------------------------------------------------------------

    async def push(self, status: str | bytes | None) -> None:
        if status is None:
            return  # a hook that hung up on purpose (disconnect_mid) has nothing to say
        if isinstance(status, str):
            await super().push(_postfix_words(status))
        else:
            await super().push(status)

    async def command_error(self, status: str) -> None:
        # Postfix hangs up on a client that keeps sending nonsense (smtpd_hard_error_limit).
        self._errors += 1
        if self._errors >= ERROR_LIMIT:
            await self.push(f"421 4.7.0 {self._lab.hostname} Error: too many errors")
            self.hang_up()
            return
        await self.push(status)

    async def smtp_HELP(self, arg: str) -> None:
        await self.command_error("502 5.5.2 Error: command not recognized")

    async def smtp_EXPN(self, arg: str) -> None:
        await self.push("502 5.5.1 Error: command not implemented")

    async def smtp_STARTTLS(self, arg: str) -> None:
        if self.encrypted():
            await self.push("554 5.5.1 Error: TLS already active")
            return
        if self.tls_context is None:
            await self.push("502 5.5.1 Error: command not implemented")
            return
        await super().smtp_STARTTLS(arg)

    async def smtp_AUTH(self, arg: str) -> None:
        if not self.auth_offered():
            await self.push("503 5.5.1 Error: authentication not enabled")
            return
        await super().smtp_AUTH(arg)

    def _check_login(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        mechanism: str,
        auth_data: object,
    ) -> AuthResult:
        rule = self._lab.scenario.auth
        if rule == "app_password":
            return AuthResult(success=False, handled=False, message=APP_PASSWORD)
        if rule == "users" and isinstance(auth_data, LoginPassword):
            login = auth_data.login.decode("utf-8", "replace")
            expected = self._lab.users.get(login)
            if expected is not None and hmac.compare_digest(
                expected.encode("utf-8"), auth_data.password
            ):
                # Only the login is kept; the password goes no further than this comparison.
                return AuthResult(success=True, auth_data=login)
        return AuthResult(success=False, handled=False, message=AUTH_FAILED)


@dataclass(frozen=True)
class ServerSpec:
    """Everything `serve` takes, as a value (for `serve_many`)."""

    scenario: str | Scenario
    host: str = "127.0.0.1"
    port: int = 0
    hostname: str = "mx.lab.test"
    cert: LabCert | None = None
    implicit_tls: bool = False
    users: Mapping[str, str] | None = None
    local_parts: Collection[str] = ("alice", "bob", "postmaster")
    banner_delay: float | None = None  # None: the scenario's own (5 s for slow_banner)
    greylist_delay: float = 1.0
    pipelining: bool = True
    size_limit: int = DEFAULT_SIZE_LIMIT


def _scenario(value: str | Scenario) -> Scenario:
    if isinstance(value, Scenario):
        return value
    try:
        return SCENARIOS[value]
    except KeyError:
        known = ", ".join(SCENARIOS)
        raise ValueError(f"unknown lab scenario {value!r} (known: {known})") from None


class LabServer:
    """A running lab server. Use `async with` or `await server.close()`."""

    def __init__(self, spec: ServerSpec) -> None:
        scenario = _scenario(spec.scenario)
        try:
            loopback = ipaddress.ip_address(spec.host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise ValueError(f"lab servers listen on loopback addresses only, not {spec.host!r}")
        if (scenario.needs_cert or spec.implicit_tls) and spec.cert is None:
            what = "implicit TLS" if spec.implicit_tls else f"scenario {scenario.name!r}"
            raise ValueError(f"{what} needs a certificate (cert=)")
        if spec.greylist_delay < 0 or (spec.banner_delay is not None and spec.banner_delay < 0):
            raise ValueError("delays cannot be negative")
        self.spec = spec
        self.scenario = scenario
        self.host = spec.host
        self.port = spec.port
        self.hostname = spec.hostname
        self.cert = spec.cert
        self.implicit_tls = spec.implicit_tls
        self.users: Mapping[str, str] = dict(spec.users or {})
        self.local_parts = frozenset(p.lower() for p in spec.local_parts)
        self.banner_delay = (
            scenario.banner_delay if spec.banner_delay is None else spec.banner_delay
        )
        self.greylist_delay = spec.greylist_delay
        self.pipelining = spec.pipelining
        self.size_limit = spec.size_limit

        self.commands: list[str] = []  # every command line received, in arrival order
        self.sessions: list[list[str]] = []  # the same, one list per connection
        self.connections = 0
        self.queued: list[str] = []  # queue ids of accepted (and discarded) messages
        self.errors: list[str] = []  # faults of the lab itself; tests expect none

        self._tls_context = spec.cert.server_context() if spec.cert is not None else None
        self._greylist: dict[tuple[str, str, str], float] = {}
        self._server: asyncio.Server | None = None
        self._transports: set[asyncio.BaseTransport] = set()
        self._tasks: set[asyncio.Task[Any]] = set()

    def __repr__(self) -> str:
        return f"<LabServer {self.scenario.name} on {self.host}:{self.port}>"

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    # -- bookkeeping used by the protocols ---------------------------------------------------

    def _offers_starttls(self) -> bool:
        return self._tls_context is not None and self.scenario.starttls and not self.implicit_tls

    def _connected(self, transport: asyncio.BaseTransport) -> list[str]:
        self.connections += 1
        self._transports.add(transport)
        log: list[str] = []
        self.sessions.append(log)
        return log

    def _record(self, log: list[str], line: str) -> None:
        log.append(line)
        self.commands.append(line)

    def _track(self, task: asyncio.Task[Any]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _greylisted(self, client: str, sender: str, recipient: str) -> bool:
        now = asyncio.get_running_loop().time()
        key = (client, sender.lower(), recipient.lower())
        first = self._greylist.setdefault(key, now)
        return now - first < self.greylist_delay

    def _raw_connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # A plain callback that starts our own task: when StreamReaderProtocol starts the
        # task itself, Python 3.11 logs an error for it once close() has cancelled it.
        log = self._connected(writer.transport)
        self._track(asyncio.get_running_loop().create_task(self._raw_client(reader, writer, log)))

    async def _raw_client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, log: list[str]
    ) -> None:
        transport = writer.transport
        assert self.scenario.raw is not None
        conn = RawConnection(self, reader, writer, log)
        try:
            if self.banner_delay > 0:
                await asyncio.sleep(self.banner_delay)
            await self.scenario.raw(conn)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away: nothing to report
        except Exception as exc:  # noqa: BLE001 - a fault in the script: report, not crash
            self.errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            self._transports.discard(transport)
            writer.close()

    # -- life --------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._server is not None:
            raise RuntimeError("already started")
        loop = asyncio.get_running_loop()
        ssl_context = self._tls_context if self.implicit_tls else None
        factory: Callable[[], asyncio.BaseProtocol]
        if self.scenario.raw is not None:

            def factory() -> asyncio.BaseProtocol:
                reader = asyncio.StreamReader(limit=RAW_LINE_LIMIT)
                return asyncio.StreamReaderProtocol(reader, self._raw_connected)

        else:

            def factory() -> asyncio.BaseProtocol:
                return _LabSMTP(self, loop)

        self._server = await loop.create_server(factory, self.host, self.port, ssl=ssl_context)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        """Stop listening, cut every open connection and wait for its handler to end."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for transport in list(self._transports):
            # abort(): the lab is going away, there is no client left to be polite to.
            abort = getattr(transport, "abort", None)
            if abort is not None:
                abort()
            else:
                transport.close()
        self._transports.clear()
        while self._tasks:
            tasks = list(self._tasks)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._tasks.difference_update(tasks)
        if server is not None:
            await server.wait_closed()

    async def __aenter__(self) -> Self:
        if self._server is None:
            await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


async def serve(
    scenario: str | Scenario,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    hostname: str = "mx.lab.test",
    cert: LabCert | None = None,
    implicit_tls: bool = False,
    users: Mapping[str, str] | None = None,
    local_parts: Collection[str] = ("alice", "bob", "postmaster"),
    banner_delay: float | None = None,
    greylist_delay: float = 1.0,
    pipelining: bool = True,
    size_limit: int = DEFAULT_SIZE_LIMIT,
) -> LabServer:
    """Start a lab server in the running loop and return it (port 0: the kernel picks one)."""
    spec = ServerSpec(
        scenario=scenario, host=host, port=port, hostname=hostname, cert=cert,
        implicit_tls=implicit_tls, users=users, local_parts=local_parts,
        banner_delay=banner_delay, greylist_delay=greylist_delay, pipelining=pipelining,
        size_limit=size_limit,
    )
    return await start(spec)


async def start(spec: ServerSpec) -> LabServer:
    """`serve` for a spec held as a value."""
    server = LabServer(spec)
    await server.start()
    return server


async def serve_many(
    specs: Iterable[ServerSpec], *, same_port: bool = False, attempts: int = 20
) -> list[LabServer]:
    """Start several servers; on any failure, close the ones already started and re-raise.

    `same_port=True` puts them all on one port number (each spec on its own loopback address,
    as the demo's MX hosts are): the first gets a free port, the rest follow it, and the whole
    group moves to a new port when one of the addresses has it taken already.
    """
    spec_list = list(specs)
    if not same_port:
        started: list[LabServer] = []
        try:
            for spec in spec_list:
                started.append(await start(spec))
        except BaseException:
            await _close_all(started)
            raise
        return started
    if len({spec.host for spec in spec_list}) != len(spec_list):
        raise ValueError("same_port needs a different host address for every server")
    last_error: OSError | None = None
    for _ in range(attempts):
        group: list[LabServer] = []
        try:
            port = spec_list[0].port if spec_list else 0
            for spec in spec_list:
                server = await start(replace(spec, port=port))
                port = server.port
                group.append(server)
            return group
        except OSError as exc:
            await _close_all(group)
            if spec_list[0].port:
                raise
            last_error = exc
        except BaseException:
            await _close_all(group)
            raise
    raise OSError(f"no port was free on all of {', '.join(s.host for s in spec_list)}") from (
        last_error
    )


async def _close_all(servers: Iterable[LabServer]) -> None:
    for server in servers:
        await server.close()


def _ports(first: int, count: int) -> Iterator[int]:
    for i in range(count):
        yield first + i if first else 0


async def run_forever(
    names: Sequence[str],
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    hostname: str = "mx.lab.test",
    users: Mapping[str, str] | None = None,
    cert_dir: str | Path | None = None,
    write: Callable[[str], None] = print,
) -> None:
    """Serve the named scenarios until cancelled, for `smtpprobe lab`.

    Each scenario gets its own port (`port`, `port`+1, ...; all kernel-chosen when `port` is 0)
    and one printed line. A fresh lab CA signs a certificate for `hostname` and `host`; its
    PEM is written to `cert_dir` (a temporary directory when None) for the client's --cafile.
    Only login names are printed, never passwords.
    """
    scenarios = [_scenario(name) for name in names]
    if not scenarios:
        raise ValueError("name at least one scenario")
    ca = LabCA.create()
    cert = ca.issue(hostname, host)
    with tempfile.TemporaryDirectory(prefix="smtpprobe-lab-") as tmp:
        folder = Path(cert_dir) if cert_dir is not None else Path(tmp)
        cafile = ca.write_pem(folder / "lab-ca.pem")
        specs = [
            ServerSpec(scenario=s, host=host, port=p, hostname=hostname, cert=cert, users=users)
            for s, p in zip(scenarios, _ports(port, len(scenarios)), strict=True)
        ]
        servers = await serve_many(specs)
        try:
            write(f"lab CA certificate: {cafile} (trust it with --cafile)")
            if users:
                write(f"logins: {', '.join(sorted(users))}")
            width = max(len(s.scenario.name) for s in servers)
            for server in servers:
                where = f"{server.host}:{server.port}"
                write(f"{server.scenario.name:<{width}}  {where:<21}  {server.scenario.summary}")
            await asyncio.Event().wait()
        finally:
            await _close_all(servers)
