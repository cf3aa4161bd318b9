"""One SMTP conversation, one explicit step at a time. The only module that imports aiosmtplib.

Each public coroutine sends one command (or opens the connection) and returns a `Step`: the
command as sent (secrets masked), the server's reply or a `Failure`, and the time it took.
Server behaviour never raises: refusals, timeouts, dropped connections, garbage and broken TLS
all come back as data. Exceptions from aiosmtplib, ssl and the socket layer are translated in
one place, `_failure_from`.

aiosmtplib reads exactly one reply per command. For PIPELINING (RFC 2920) the session writes a
group of commands at once and reads their replies with `_GroupReader`, a small protocol that
takes over the transport (asyncio's public `set_protocol`) until the group is answered, then
hands it back to aiosmtplib.
"""

from __future__ import annotations

import asyncio
import base64
import errno
import hmac
import re
import socket
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from smtpprobe.core.redact import MASK, Redactor
from smtpprobe.core.replies import from_code_and_message, parse_ehlo
from smtpprobe.errors import UnsafeCommand
from smtpprobe.models import Capabilities, Failure, FailureKind, Reply, Stage, Step, TlsInfo

if TYPE_CHECKING:
    import aiosmtplib

    from smtpprobe.core.certs import TrustStore

# aiosmtplib's own limits (protocol.py), repeated for the pipelined reader.
MAX_LINE = 8192
MAX_REPLY = 32768
# aiosmtplib reports these two with code -1 (SMTPStatus.invalid_response).
_INVALID = -1


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where to connect: an IP address and port, and the name we expect it to have."""

    address: str
    port: int
    name: str | None = None  # host name for SNI and the certificate check; None for literals


# C0 and C1 controls and DEL, except tab and the line feeds that separate reply lines.
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
# What may never be part of a command line (RFC 5321 2.3.8: CR and LF only end a line).
_UNSAFE = re.compile(r"[\x00-\x1f\x7f]")


def _safe(text: str) -> str:
    if _UNSAFE.search(text):
        raise UnsafeCommand(f"refusing to send a command with a control character: "
                            f"{text.encode('unicode_escape').decode('ascii')[:80]}")
    return text


def _clean(text: str) -> str:
    """Server text as printable Unicode, harmless on a terminal.

    aiosmtplib keeps undecodable bytes as surrogate escapes. A reply that is not UTF-8 is
    read as Windows-1252, which is what old servers with German or French texts send; bytes
    that fit neither become U+FFFD. Control characters (escape sequences that could clear a
    screen or retitle a window) become U+FFFD as well.
    """
    raw = text.encode("utf-8", "surrogateescape")
    try:
        decoded = raw.decode("utf-8")
    except UnicodeDecodeError:
        decoded = raw.decode("cp1252", "replace")
    return _CONTROLS.sub("\ufffd", decoded)


def _detail(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:240]


def _os_failure(exc: OSError, *, what: str) -> Failure:
    code = exc.errno
    if isinstance(exc, ConnectionRefusedError) or code == errno.ECONNREFUSED:
        return Failure(FailureKind.REFUSED, f"{what}: connection refused")
    if isinstance(exc, TimeoutError) or code == errno.ETIMEDOUT:
        return Failure(FailureKind.TIMEOUT, f"{what}: timed out")
    if code in (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ENETDOWN, errno.EHOSTDOWN):
        return Failure(FailureKind.UNREACHABLE, f"{what}: {exc.strerror or exc}")
    if isinstance(exc, (ConnectionResetError, ConnectionAbortedError, BrokenPipeError)):
        return Failure(FailureKind.CLOSED, f"{what}: connection reset by the server")
    return Failure(FailureKind.CLOSED, f"{what}: {exc.strerror or _detail(exc)}")


def _failure_from(exc: BaseException, *, stage: Stage, timeout: float,
                  verb: str) -> Failure | Reply:
    """The one translation table from third-party exceptions to data."""
    import aiosmtplib
    from aiosmtplib.errors import (
        SMTPConnectResponseError,
        SMTPConnectTimeoutError,
        SMTPException,
        SMTPResponseException,
        SMTPServerDisconnected,
        SMTPTimeoutError,
    )

    if isinstance(exc, SMTPConnectResponseError):
        return _reply(verb, exc.code, exc.message)
    if isinstance(exc, SMTPResponseException):
        if exc.code == _INVALID:
            if "too long" in exc.message.lower():
                return Failure(FailureKind.REPLY_TOO_LONG,
                               f"the server's reply exceeded {MAX_LINE} bytes per line or "
                               f"{MAX_REPLY} in all")
            return Failure(FailureKind.PROTOCOL, f"not an SMTP reply: {_clean(exc.message)[:160]}")
        return _reply(verb, exc.code, exc.message)
    if isinstance(exc, ssl.SSLError):
        return Failure(FailureKind.TLS_HANDSHAKE, f"TLS handshake failed: {_detail(exc)}")
    if isinstance(exc, SMTPConnectTimeoutError):
        if "ready message" in str(exc):
            return Failure(FailureKind.TIMEOUT, f"no greeting from the server within {timeout:g} s")
        return Failure(FailureKind.TIMEOUT, f"TLS handshake did not finish within {timeout:g} s")
    if isinstance(exc, (SMTPTimeoutError, TimeoutError, asyncio.TimeoutError)):
        if "upgrading transport" in str(exc):
            return Failure(FailureKind.TLS_HANDSHAKE,
                           f"TLS handshake did not finish within {timeout:g} s")
        return Failure(FailureKind.TIMEOUT, f"no reply within {timeout:g} s")
    if isinstance(exc, SMTPServerDisconnected) or isinstance(exc, aiosmtplib.SMTPConnectError):
        cause = exc.__cause__
        if isinstance(cause, ssl.SSLError):
            return Failure(FailureKind.TLS_HANDSHAKE, f"TLS handshake failed: {_detail(cause)}")
        if stage is Stage.STARTTLS and "upgrading transport" in str(exc):
            return Failure(FailureKind.TLS_HANDSHAKE,
                           "the connection broke during the TLS handshake")
        return Failure(FailureKind.CLOSED, "the server closed the connection")
    if isinstance(exc, OSError):
        return _os_failure(exc, what="connection")
    if isinstance(exc, SMTPException):
        return Failure(FailureKind.PROTOCOL, _detail(exc))
    if isinstance(exc, (ValueError, UnicodeError)):
        return Failure(FailureKind.LOCAL, f"cannot send this command: {_detail(exc)}")
    raise exc  # our own fault: let it surface in tests


# The positive replies each command may get (RFC 5321 4.3.2, RFC 3207 4, RFC 4954 4); any
# command may get a 4yz or 5yz. Commands not listed take any 2yz except the ones that belong
# to the greeting, STARTTLS, QUIT or AUTH.
_POSITIVE: dict[str, frozenset[int]] = {
    "CONNECT": frozenset({220}),
    "STARTTLS": frozenset({220}),
    "AUTH": frozenset({235, 334}),
    "DATA": frozenset({354}),
    "QUIT": frozenset(range(200, 300)),  # 221, and servers that say 250 are harmless
}
_NOT_FOR_OTHERS = frozenset({220, 221, 235})


def _reply(verb: str, code: int, message: str) -> Reply | Failure:
    """A reply as data, or a protocol failure when it cannot be an answer to `verb`."""
    text = _clean(message)
    if not 200 <= code <= 599:
        # RFC 5321 4.2: three digits, the first 2-5 (SMTP has no 1yz replies).
        shown = f"{code:03d}" if 0 <= code <= 999 else str(code)
        return Failure(FailureKind.PROTOCOL, f"not an SMTP reply code: {shown} "
                       f"{text.splitlines()[0] if text else ''}"[:200].rstrip())
    allowed = _POSITIVE.get(verb)
    fits = code // 100 in (4, 5) or (
        code in allowed if allowed is not None
        else code // 100 == 2 and code not in _NOT_FOR_OTHERS)
    if not fits:
        first = text.splitlines()[0] if text else ""
        return Failure(FailureKind.PROTOCOL,
                       f"{code} {first}"[:120].rstrip() + f" is no answer to {verb}: the "
                       f"server's replies are out of step with our commands")
    return from_code_and_message(code, text)


def check_source_address(address: str) -> str | None:
    """Why connections cannot come from `address` on this machine, or None when they can.

    It binds a socket to the address (port 0) and closes it again; nothing goes on the wire.
    """
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.bind((address, 0))
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


def client_tls_context() -> ssl.SSLContext:
    """A context that completes the handshake with any server, old ones included: verification
    is done afterwards by `certs.inspect_chain`, so a bad certificate is a finding, not a stop."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    try:
        # Outdated servers still exist on port 25; talk to them and report it.
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
    except ssl.SSLError:  # pragma: no cover - depends on the OpenSSL build
        pass
    return context


class _GroupReader(asyncio.Protocol):
    """Reads the replies to a pipelined group of commands (RFC 2920 3.1)."""

    def __init__(self, verbs: Sequence[str], needed: int | None = None) -> None:
        self.verbs = list(verbs)  # the command each reply answers, in order
        self.expected = len(self.verbs)  # replies to parse at most
        self.needed = self.expected if needed is None else needed  # replies to wait for
        self.replies: list[tuple[Reply, float]] = []
        self.failure: Failure | None = None
        self.lost: Exception | None = None
        self.connection_lost_called = False
        self._buffer = bytearray()
        self._done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._lines: list[str] = []
        self._size = 0  # bytes in _lines
        self._code: int | None = None

    def data_received(self, data: bytes) -> None:
        if len(self.replies) >= self.expected or self.failure is not None:
            return  # anything more is ignored, so a flood costs no memory
        self._buffer.extend(data)
        self._parse()

    def _finish(self) -> None:
        if not self._done.done():
            self._done.set_result(None)

    def _parse(self) -> None:
        while len(self.replies) < self.expected and self.failure is None:
            end = self._buffer.find(b"\n")
            if end == -1:
                if len(self._buffer) > MAX_LINE:
                    self.failure = Failure(FailureKind.REPLY_TOO_LONG,
                                           f"a reply line exceeded {MAX_LINE} bytes")
                break
            line = bytes(self._buffer[: end + 1])
            del self._buffer[: end + 1]
            self._size += len(line)
            if len(line) > MAX_LINE or self._size > MAX_REPLY:
                self.failure = Failure(FailureKind.REPLY_TOO_LONG,
                                       f"a reply exceeded {MAX_LINE} bytes per line or "
                                       f"{MAX_REPLY} in all")
                break
            head, sep = line[:3], line[3:4]
            # RFC 5321 4.2: three digits, then "-" (more lines follow), a space or the end.
            if (not head.isdigit() or sep not in (b" ", b"-", b"\r", b"\n")
                    or (self._code is not None and int(head) != self._code)):
                text = _clean(line.decode("utf-8", "surrogateescape")).strip()
                self.failure = Failure(FailureKind.PROTOCOL, f"not an SMTP reply: {text[:160]}")
                break
            self._code = int(head)
            self._lines.append(line[4:].strip(b" \t\r\n").decode("utf-8", "surrogateescape"))
            if sep != b"-":
                outcome = _reply(self.verbs[len(self.replies)], self._code,
                                 "\n".join(self._lines))
                if isinstance(outcome, Failure):
                    self.failure = outcome
                    break
                self.replies.append((outcome, time.perf_counter()))
                self._lines, self._code, self._size = [], None, 0
        if self.failure is not None or len(self.replies) >= self.expected:
            self._buffer.clear()  # nothing more will be parsed: give the memory back
        if len(self.replies) >= self.needed or self.failure is not None:
            self._finish()

    def eof_received(self) -> bool | None:
        self._finish()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.connection_lost_called = True
        self.lost = exc
        self._finish()

    async def wait(self, timeout: float) -> bool:
        """True when all replies arrived (or the reader stopped for a reason it recorded)."""
        try:
            await asyncio.wait_for(asyncio.shield(self._done), timeout)
        except TimeoutError:
            return False
        return True


class Session:
    """One conversation with one server address. Steps are recorded in `steps`.

    `timeout` bounds each step; `deadline` (a `loop.time()` value) bounds them all: no step
    starts after it, and a step that is still waiting when it passes ends with a `deadline`
    failure, whatever its own timeout. Command text with CR, LF, NUL or another control
    character is refused with `UnsafeCommand` before anything is written.
    """

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        helo: str,
        timeout: float = 10.0,
        deadline: float | None = None,
        source_address: str | None = None,
        trust: TrustStore | None = None,
        redactor: Redactor | None = None,
    ) -> None:
        if not helo or " " in helo:
            raise UnsafeCommand(f"not a HELO name: {helo!r}")
        self.endpoint = endpoint
        self.helo = _safe(helo)
        self.timeout = timeout
        self.deadline = deadline  # loop.time() after which no step starts or waits
        self.source_address = source_address
        self.trust = trust
        self.redact = redactor or Redactor()
        self._secrets: list[Redactor] = []  # added by auth(): the credentials in use
        self.steps: list[Step] = []
        self.capabilities: Capabilities | None = None
        self.capabilities_before_tls: Capabilities | None = None
        self.tls: TlsInfo | None = None
        self.tcp_connected = False
        self._smtp: aiosmtplib.SMTP | None = None

    # --- bookkeeping ------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._smtp is not None and self._smtp.is_connected

    @property
    def encrypted(self) -> bool:
        return self.tls is not None

    def scrub(self, text: str) -> str:
        """`text` with every form of every secret this session knows masked."""
        text = self.redact(text)
        for secrets in self._secrets:
            text = secrets(text)
        return text

    def _budget(self) -> tuple[float, bool]:
        """Seconds this step may take, and whether the overall deadline is what limits it."""
        if self.deadline is None:
            return self.timeout, False
        left = self.deadline - asyncio.get_running_loop().time()
        if left < self.timeout:
            return max(left, 0.0), True
        return self.timeout, False

    def _guard(self) -> asyncio.Timeout:
        """The hard stop at the deadline, around waits whose own timeouts may add up (the
        STARTTLS reply and then the handshake, the greeting after the TCP connect)."""
        return asyncio.timeout_at(self.deadline)

    def _record(self, stage: Stage, command: str | None, outcome: Failure | Reply,
                started: float, ended: float | None = None) -> Step:
        # `ended` lets a step leave out our own work after the reply (certificate checks).
        elapsed = ((ended if ended is not None else time.perf_counter()) - started) * 1000
        shown = self.scrub(command) if command is not None else None
        if isinstance(outcome, Reply):
            outcome = Reply(outcome.code, outcome.enhanced,
                            tuple(self.scrub(line) for line in outcome.lines))
            step = Step(stage=stage, command=shown, reply=outcome, elapsed_ms=elapsed)
        else:
            step = Step(stage=stage, command=shown, elapsed_ms=elapsed,
                        failure=Failure(outcome.kind, self.scrub(outcome.detail)))
            if outcome.kind is FailureKind.PROTOCOL:
                # The stream no longer lines up with our commands: nothing more it says
                # can be trusted to answer what we send.
                self.close()
        self.steps.append(step)
        return step

    def _deadline_step(self, stage: Stage, command: str | None) -> Step:
        return self._record(stage, command, Failure(
            FailureKind.DEADLINE, "the overall deadline ran out before this step"),
            time.perf_counter())

    def _not_connected(self, stage: Stage, command: str | None) -> Step:
        return self._record(stage, command, Failure(
            FailureKind.CLOSED, "the connection is already closed"), time.perf_counter())

    @staticmethod
    def _deadline_failure(what: str) -> Failure:
        return Failure(FailureKind.DEADLINE, f"the overall deadline ran out {what}")

    async def _run(self, stage: Stage, command: str, *args: bytes, verb: str | None = None
                   ) -> Step:
        """Send one command through aiosmtplib and record what came back."""
        _safe(command)
        for arg in args:
            _safe(arg.decode("utf-8", "surrogateescape"))
        verb = verb or args[0].decode("ascii", "replace").upper()
        budget, by_deadline = self._budget()
        if budget <= 0:
            return self._deadline_step(stage, command)
        if not self.connected or self._smtp is None:
            return self._not_connected(stage, command)
        started = time.perf_counter()
        guard = self._guard()
        try:
            async with guard:
                response = await self._smtp.execute_command(*args, timeout=budget)
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):
                raise
            if guard.expired():
                self.close()
                return self._record(stage, command, self._deadline_failure(
                    "while waiting for the reply"), started)
            outcome = _failure_from(exc, stage=stage, timeout=budget, verb=verb)
            if by_deadline and isinstance(outcome, Failure) and outcome.kind is FailureKind.TIMEOUT:
                outcome = self._deadline_failure("while waiting for the reply")
            return self._record(stage, command, outcome, started)
        return self._record(stage, command, _reply(verb, response.code, response.message),
                            started)

    # --- the steps --------------------------------------------------------------------------

    async def connect(self, *, implicit_tls: bool = False) -> Step:
        """Open TCP (and TLS for port 465 style), read the greeting (RFC 5321 4.3.1)."""
        ep = self.endpoint
        where = f"[{ep.address}]:{ep.port}" if ":" in ep.address else f"{ep.address}:{ep.port}"
        command = f"(connect to {where}{' with TLS' if implicit_tls else ''})"
        budget, by_deadline = self._budget()
        if budget <= 0:
            return self._deadline_step(Stage.CONNECT, command)
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in ep.address else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            if self.source_address is not None:
                try:
                    sock.bind((self.source_address, 0))
                except OSError as exc:
                    sock.close()
                    return self._record(Stage.CONNECT, command, Failure(
                        FailureKind.LOCAL, f"cannot send from {self.source_address}: "
                        f"{exc.strerror or exc}"), started)
            connecting = asyncio.ensure_future(loop.sock_connect(sock, (ep.address, ep.port)))
            # Let the connect start (the SYN leaves), then load aiosmtplib while the kernel
            # completes the handshake: on the first connection of a run its import is off the
            # critical path (start-up time; a no-op later).
            await asyncio.sleep(0)
            importing = time.perf_counter()
            import aiosmtplib  # noqa: F401

            # The import is our work, not the server's: the step's time leaves it out.
            started += time.perf_counter() - importing
            try:
                await asyncio.wait_for(connecting, budget)
            except TimeoutError:
                sock.close()
                if by_deadline:
                    failure = Failure(FailureKind.DEADLINE, f"no TCP connection to {where} "
                                      f"before the overall deadline ran out (the port may be "
                                      f"filtered)")
                else:
                    failure = Failure(FailureKind.TIMEOUT, f"no TCP connection to {where} "
                                      f"within {budget:g} s (the port may be filtered)")
                return self._record(Stage.CONNECT, command, failure, started)
            except OSError as exc:
                sock.close()
                return self._record(Stage.CONNECT, command, _os_failure(exc, what=where),
                                    started)
        except asyncio.CancelledError:
            sock.close()
            raise
        self.tcp_connected = True

        budget, by_deadline = self._budget()
        if budget <= 0:
            sock.close()
            return self._record(Stage.CONNECT, command, self._deadline_failure(
                "before the greeting came"), started)
        import aiosmtplib

        smtp = aiosmtplib.SMTP(
            hostname=ep.name or ep.address, sock=sock, timeout=budget,
            local_hostname=self.helo, start_tls=False, use_tls=implicit_tls,
            tls_context=client_tls_context() if implicit_tls else None,
        )
        guard = self._guard()
        try:
            async with guard:
                response = await smtp.connect()
        except BaseException as exc:
            smtp.close()
            if isinstance(exc, asyncio.CancelledError):
                raise
            if guard.expired():
                return self._record(Stage.CONNECT, command, self._deadline_failure(
                    "while waiting for the greeting"), started)
            outcome = _failure_from(exc, stage=Stage.CONNECT, timeout=budget, verb="CONNECT")
            if by_deadline and isinstance(outcome, Failure) and outcome.kind is FailureKind.TIMEOUT:
                outcome = self._deadline_failure("while waiting for the greeting")
            return self._record(Stage.CONNECT, command, outcome, started)
        self._smtp = smtp
        ended = time.perf_counter()
        outcome = _reply("CONNECT", response.code, response.message)
        if implicit_tls and isinstance(outcome, Reply):
            self.tls = self._tls_info()
        return self._record(Stage.CONNECT, command, outcome, started, ended)

    async def ehlo(self) -> Step:
        """EHLO, and HELO when the server does not know EHLO (RFC 5321 4.1.4, 3.2)."""
        step = await self._run(Stage.EHLO, f"EHLO {self.helo}", b"EHLO", self.helo.encode())
        if step.reply is not None and step.reply.code == 250:
            self._set_capabilities(step, esmtp=True)
        elif step.reply is not None and step.reply.code in (500, 502) and self.connected:
            step = await self._run(Stage.EHLO, f"HELO {self.helo}", b"HELO", self.helo.encode())
            if step.reply is not None and step.reply.code == 250:
                self._set_capabilities(step, esmtp=False)
        return step

    def _set_capabilities(self, step: Step, *, esmtp: bool) -> None:
        from aiosmtplib import SMTPResponse

        assert step.reply is not None and self._smtp is not None
        caps = parse_ehlo(step.reply) if esmtp else Capabilities(
            greeting=step.reply.first_line, esmtp=False)
        if not esmtp:
            self._smtp.last_helo_response = SMTPResponse(250, step.reply.text)
        else:
            # Tell aiosmtplib what we learned, so that starttls() does not send its own EHLO.
            self._smtp.last_ehlo_response = SMTPResponse(250, step.reply.text)
        if self.tls is None:
            self.capabilities_before_tls = caps
        self.capabilities = caps

    async def starttls(self) -> Step:
        """STARTTLS and the handshake (RFC 3207). Afterwards the caller must EHLO again."""
        budget, by_deadline = self._budget()
        if budget <= 0:
            return self._deadline_step(Stage.STARTTLS, "STARTTLS")
        if not self.connected or self._smtp is None:
            return self._not_connected(Stage.STARTTLS, "STARTTLS")
        started = time.perf_counter()
        smtp = self._smtp
        if not smtp.supports_extension("starttls"):
            # aiosmtplib refuses to send STARTTLS unless it was advertised; pretend it was, the
            # caller decided to try (e.g. to see how a server that hides it reacts).
            smtp.esmtp_extensions["starttls"] = ""
        guard = self._guard()
        try:
            async with guard:
                response = await smtp.starttls(
                    tls_context=client_tls_context(),
                    server_hostname=self.endpoint.name or None,
                    timeout=budget,
                )
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):
                raise
            if guard.expired():
                smtp.close()
                return self._record(Stage.STARTTLS, "STARTTLS",
                                    self._deadline_failure("during STARTTLS"), started)
            outcome = _failure_from(exc, stage=Stage.STARTTLS, timeout=budget, verb="STARTTLS")
            if by_deadline and isinstance(outcome, Failure) and outcome.kind in (
                    FailureKind.TIMEOUT, FailureKind.TLS_HANDSHAKE) and "within" in outcome.detail:
                outcome = self._deadline_failure("during STARTTLS")
            if isinstance(outcome, Failure) and outcome.kind in (
                    FailureKind.TLS_HANDSHAKE, FailureKind.DEADLINE, FailureKind.TIMEOUT):
                # After a broken handshake the connection is unusable (RFC 3207 4.1).
                smtp.close()
            return self._record(Stage.STARTTLS, "STARTTLS", outcome, started)
        ended = time.perf_counter()
        self.tls = self._tls_info()
        self.capabilities = None  # RFC 3207 4.2: forget what was learned before TLS
        return self._record(Stage.STARTTLS, "STARTTLS",
                            _reply("STARTTLS", response.code, response.message), started, ended)

    def _tls_info(self) -> TlsInfo:
        assert self._smtp is not None
        ssl_object = self._smtp.get_transport_info("ssl_object")
        version = ssl_object.version() or "unknown"
        cipher_name, _, bits = ssl_object.cipher() or ("unknown", "", None)
        chain: list[bytes] = []
        inner = getattr(ssl_object, "_sslobj", None)
        getter = getattr(ssl_object, "get_unverified_chain", None) or getattr(
            inner, "get_unverified_chain", None)
        if getter is not None:
            try:
                for cert in getter() or ():
                    chain.append(cert if isinstance(cert, bytes)
                                 else cert.public_bytes(ssl._ssl.ENCODING_DER))  # type: ignore[attr-defined]
            except (ssl.SSLError, ValueError, AttributeError):
                chain = []
        if not chain:
            leaf = ssl_object.getpeercert(binary_form=True)
            chain = [leaf] if leaf else []
        # cryptography is imported here, after the handshake, not at start-up.
        from smtpprobe.core.certs import TrustStore, inspect_chain

        store = self.trust or TrustStore((), "(no trust store given)")
        return inspect_chain(chain, version=version, cipher=cipher_name, bits=bits,
                             expected_name=self.endpoint.name, store=store)

    async def auth(self, user: str, password: str, mechanism: str) -> Step:
        """AUTH with one mechanism (RFC 4954); the recorded command never holds the secret.

        The session masks the password (and the user name inside AUTH blobs) in everything it
        records from now on, whatever redactor it was given. Whether credentials may go over
        this connection (`encrypted`) is the caller's decision.
        """
        mechanism = mechanism.upper()
        self._secrets.append(Redactor([(user, password)]))
        if mechanism == "PLAIN":
            blob = base64.b64encode(f"\0{user}\0{password}".encode()).decode("ascii")
            return await self._run(Stage.AUTH, f"AUTH PLAIN {MASK}",
                                   b"AUTH", b"PLAIN", blob.encode())
        if mechanism == "LOGIN":
            step = await self._run(Stage.AUTH, "AUTH LOGIN", b"AUTH", b"LOGIN")
            if step.reply is None or step.reply.code != 334:
                return step
            user_b64 = base64.b64encode(user.encode()).decode("ascii")
            step = await self._run(Stage.AUTH, f"{user_b64}  (user name)", user_b64.encode(),
                                   verb="AUTH")
            if step.reply is None or step.reply.code != 334:
                return step
            secret = base64.b64encode(password.encode()).decode("ascii")
            return await self._run(Stage.AUTH, f"{MASK}  (password)", secret.encode(),
                                   verb="AUTH")
        if mechanism == "CRAM-MD5":
            step = await self._run(Stage.AUTH, "AUTH CRAM-MD5", b"AUTH", b"CRAM-MD5")
            if step.reply is None or step.reply.code != 334:
                return step
            try:
                challenge = base64.b64decode(step.reply.text.strip(), validate=True)
            except ValueError:
                return self._record(Stage.AUTH, None, Failure(
                    FailureKind.PROTOCOL, "the CRAM-MD5 challenge is not base64"),
                    time.perf_counter())
            digest = hmac.new(password.encode(), challenge, "md5").hexdigest()
            answer = base64.b64encode(f"{user} {digest}".encode()).decode("ascii")
            return await self._run(Stage.AUTH, f"{MASK}  (CRAM-MD5 response)", answer.encode(),
                                   verb="AUTH")
        return self._record(Stage.AUTH, f"AUTH {_safe(mechanism)}", Failure(
            FailureKind.NOT_OFFERED, f"smtpprobe does not implement AUTH {mechanism}"),
            time.perf_counter())

    async def mail(self, sender: str, params: Sequence[str] = ()) -> Step:
        args = [f"FROM:<{sender}>", *params]
        return await self._run(Stage.MAIL, "MAIL " + " ".join(args),
                               b"MAIL", *(a.encode() for a in args))

    async def rcpt(self, recipient: str) -> Step:
        arg = f"TO:<{recipient}>"
        return await self._run(Stage.RCPT, f"RCPT {arg}", b"RCPT", arg.encode())

    async def rset(self) -> Step:
        return await self._run(Stage.MAIL, "RSET", b"RSET")

    async def noop(self) -> Step:
        return await self._run(Stage.QUIT, "NOOP", b"NOOP")

    async def data(self, message: bytes) -> list[Step]:
        """DATA, then the message and its final dot (RFC 5321 4.1.1.4): two steps."""
        first = await self._run(Stage.DATA, "DATA", b"DATA")
        command = f"(message, {len(message)} bytes)"
        if first.reply is None or first.reply.code != 354:
            return [first]
        budget, by_deadline = self._budget()
        if budget <= 0:
            return [first, self._deadline_step(Stage.DATA, command)]
        protocol = self._smtp.protocol if self._smtp is not None else None
        if protocol is None or not self.connected:
            return [first, self._not_connected(Stage.DATA, command)]
        started = time.perf_counter()
        guard = self._guard()
        try:
            async with guard:
                protocol.write(_dot_stuffed(message))
                response = await protocol.read_response(timeout=budget)
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):
                raise
            if guard.expired():
                self.close()
                return [first, self._record(Stage.DATA, command, self._deadline_failure(
                    "while waiting for the reply to the message"), started)]
            outcome = _failure_from(exc, stage=Stage.DATA, timeout=budget, verb=".")
            if by_deadline and isinstance(outcome, Failure) and outcome.kind is FailureKind.TIMEOUT:
                outcome = self._deadline_failure("while waiting for the reply to the message")
            return [first, self._record(Stage.DATA, command, outcome, started)]
        return [first, self._record(Stage.DATA, command,
                                    _reply(".", response.code, response.message), started)]

    async def pipeline(self, commands: Sequence[tuple[Stage, str]], *,
                       quit_after: bool = False) -> list[Step]:
        """Send a group of commands in one write and read their replies (RFC 2920).

        Only for servers that advertise PIPELINING. With `quit_after`, QUIT ends the group
        (RFC 2920 3.1 allows it last) and its reply is taken if it is already there, never
        waited for.
        """
        if not commands:
            return []
        for _, text in commands:
            _safe(text)
        budget, by_deadline = self._budget()
        if budget <= 0:
            return [self._deadline_step(stage, text) for stage, text in commands]
        if not self.connected or self._smtp is None or self._smtp.transport is None:
            return [self._not_connected(stage, text) for stage, text in commands]
        transport = self._smtp.transport
        assert isinstance(transport, asyncio.Transport)
        original = transport.get_protocol()
        wire = "".join(text + "\r\n" for _, text in commands)
        verbs = [text.split(" ", 1)[0].upper() for _, text in commands]
        if quit_after:
            wire += "QUIT\r\n"
            verbs.append("QUIT")
        # With QUIT last, its reply is parsed if it comes with the others, never waited for.
        reader = _GroupReader(verbs, len(commands))
        started = time.perf_counter()
        transport.set_protocol(reader)
        try:
            transport.write(wire.encode("utf-8"))
            complete = await reader.wait(budget) and len(reader.replies) >= len(commands)
        finally:
            transport.set_protocol(original)
        if reader.connection_lost_called and hasattr(original, "connection_lost"):
            # aiosmtplib must learn that its transport is gone.
            original.connection_lost(reader.lost)
        steps: list[Step] = []
        for index, (stage, text) in enumerate(commands):
            if index < len(reader.replies):
                reply, at = reader.replies[index]
                steps.append(self._record(stage, text, reply, started))
                # Each reply's time is from the group's write to that reply's arrival.
                last = self.steps[-1]
                self.steps[-1] = Step(last.stage, last.command, last.reply, last.failure,
                                      (at - started) * 1000, last.finding)
                steps[-1] = self.steps[-1]
                continue
            if reader.failure is not None:
                failure = reader.failure
            elif reader.connection_lost_called or not complete and transport.is_closing():
                failure = Failure(FailureKind.CLOSED, "the server closed the connection")
            elif not complete:
                failure = (self._deadline_failure("while waiting for the reply")
                           if by_deadline else
                           Failure(FailureKind.TIMEOUT, f"no reply within {budget:g} s"))
            else:
                failure = Failure(FailureKind.CLOSED, "the server closed the connection")
            steps.append(self._record(stage, text, failure, started))
        if quit_after:
            if len(reader.replies) > len(commands):
                reply, at = reader.replies[len(commands)]
                self._record(Stage.QUIT, "QUIT", reply, started)
            self.close()
        elif reader.failure is not None or not complete or reader.connection_lost_called:
            # The stream is out of step with our commands (or gone): it cannot be reused.
            self.close()
        return steps

    async def quit(self) -> None:
        """Say goodbye without waiting for the reply (nothing depends on it), then close."""
        if self.connected and self._smtp is not None and self._smtp.transport is not None:
            try:
                self._smtp.transport.write(b"QUIT\r\n")  # type: ignore[attr-defined]
            except (OSError, RuntimeError):
                pass
            self.steps.append(Step(stage=Stage.QUIT, command="QUIT", elapsed_ms=0.0))
        self.close()

    def close(self) -> None:
        if self._smtp is not None:
            self._smtp.close()
            self._smtp = None


def _dot_stuffed(message: bytes) -> bytes:
    """The message as it goes after 354: CRLF line ends, a leading dot doubled, and the
    final "." line (RFC 5321 4.5.2, 4.1.1.4)."""
    lines = message.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    body = b"".join((b"." + line if line.startswith(b".") else line) + b"\r\n"
                    for line in lines)
    return body + b".\r\n"
