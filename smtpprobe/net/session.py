"""One SMTP conversation, one explicit step at a time.

Each public coroutine sends one command (or opens the connection) and returns its `Step`s: the
command as shown (secrets masked), the server's reply or a `Failure`, and the time it took. The
session keeps no list of them: callers get what happened as values. Server behaviour never
raises: refusals, timeouts, dropped connections, garbage and broken TLS all come back as data.
Exceptions from ssl, asyncio and the socket layer are translated in one table,
`_failure_from`, inside one step helper, `_step`, that also budgets the time.

The session opens the connection itself (asyncio's `create_connection` on the socket of its
own TCP handshake, with TLS for implicit-TLS ports) and upgrades it for STARTTLS with
`loop.start_tls`. Every reply, the greeting and the STARTTLS reply included, to one command or
to a pipelined group (RFC 2920), is read by `_Stream` with the one reply grammar of
`core.wire.ReplyReader`: the stream is installed from the first byte, so a reply that comes
early or unasked is kept, not dropped, and a multi-line reply with mixed codes is a protocol
error on every path (docs/architecture.md: why not aiosmtplib's reader).
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import ssl
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from smtpprobe.core import wire
from smtpprobe.core.redact import Redactor
from smtpprobe.core.replies import parse_ehlo
from smtpprobe.core.wire import (
    MAX_LINE,
    MAX_REPLY,
    Command,
    RawReply,
    shorten,
    to_reply,
)
from smtpprobe.errors import UnsafeCommand
from smtpprobe.models import (
    Capabilities,
    Failure,
    FailureKind,
    Proxy,
    Reply,
    Stage,
    Step,
    TlsInfo,
)

if TYPE_CHECKING:
    from smtpprobe.core.certs import TrustStore

__all__ = ["MAX_LINE", "MAX_REPLY", "Endpoint", "Session", "check_source_address",
           "client_tls_context"]

# Replies a server may queue up unasked before the stream calls it a flood.
_MAX_QUEUED = 64


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where to connect: an IP address and port, and the name we expect it to have."""

    address: str
    port: int
    name: str | None = None  # host name for SNI and the certificate check; None for literals

    @property
    def where(self) -> str:
        return f"[{self.address}]:{self.port}" if ":" in self.address else \
            f"{self.address}:{self.port}"


def _detail(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return shorten(text, 240)


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
                  verb: str) -> Failure:
    """The one translation table from the exceptions of ssl, asyncio and the socket layer to
    data (replies themselves never raise: the stream turns them into values)."""
    if isinstance(exc, ssl.SSLError):
        return Failure(FailureKind.TLS_HANDSHAKE, f"TLS handshake failed: {_detail(exc)}")
    if isinstance(exc, ConnectionAbortedError) and "handshake" in str(exc).lower():
        # asyncio's ssl_handshake_timeout ("SSL handshake is taking longer than ...").
        return Failure(FailureKind.TLS_HANDSHAKE,
                       f"TLS handshake did not finish within {timeout:g} s")
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
        if stage in (Stage.CONNECT, Stage.STARTTLS):
            return Failure(FailureKind.TLS_HANDSHAKE,
                           f"TLS handshake did not finish within {timeout:g} s")
        return Failure(FailureKind.TIMEOUT, f"no reply within {timeout:g} s")
    if isinstance(exc, OSError):
        if stage is Stage.STARTTLS:
            return Failure(FailureKind.TLS_HANDSHAKE,
                           f"the connection broke during the TLS handshake: {_detail(exc)}")
        return _os_failure(exc, what="connection")
    if isinstance(exc, RuntimeError) and stage in (Stage.CONNECT, Stage.STARTTLS):
        # start_tls on a transport that closed under it.
        return Failure(FailureKind.CLOSED, "the server closed the connection during the TLS "
                       "handshake")
    if isinstance(exc, (ValueError, UnicodeError)):
        return Failure(FailureKind.LOCAL, f"cannot send this command: {_detail(exc)}")
    raise exc  # our own fault: let it surface in tests


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




async def _connected(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
    """Wait for a non-blocking connect started elsewhere to finish; its error as OSError."""
    done: asyncio.Future[None] = loop.create_future()

    def writable() -> None:
        if not done.done():
            done.set_result(None)

    loop.add_writer(sock.fileno(), writable)
    try:
        await done
    finally:
        loop.remove_writer(sock.fileno())
    code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if code:
        raise OSError(code, os.strerror(code))


class _Stream(asyncio.Protocol):
    """The connection's reader from the first byte to the end: bytes in, replies out.

    It is the protocol of the connection's transport (and stays so through the STARTTLS
    upgrade). Replies are parsed as they arrive and queued with their arrival time, so nothing
    the server says is lost between commands.
    """

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.reader = wire.ReplyReader()
        self.queue: deque[tuple[RawReply | Failure, float]] = deque()
        self.closed = False
        self._wake: asyncio.Event = asyncio.Event()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def forget(self) -> int:
        """Drop what the server said before the TLS handshake (RFC 3207 6: nothing from before
        it may be trusted after it); how many replies or bytes were waiting."""
        left = len(self.queue) + (1 if self.reader.pending else 0)
        self.queue.clear()
        self.reader = wire.ReplyReader()
        return left

    def write(self, data: bytes) -> None:
        if self.transport is None or self.closed or self.transport.is_closing():
            raise ConnectionResetError(errno.ECONNRESET, "the connection is already closed")
        self.transport.write(data)

    def close(self) -> None:
        self.closed = True
        self._wake.set()
        if self.transport is not None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self.reader.failure is not None:
            return  # the stream is out of step: nothing more is parsed, a flood costs nothing
        self.reader.feed(data)
        while (item := self.reader.next()) is not None:
            self.queue.append((item, time.perf_counter()))
            if isinstance(item, Failure):
                break
            if len(self.queue) > _MAX_QUEUED:
                self.reader.failure = Failure(
                    FailureKind.PROTOCOL, f"the server sent more than {_MAX_QUEUED} replies "
                    f"nobody asked for")
                self.queue.append((self.reader.failure, time.perf_counter()))
                break
        self._wake.set()

    def eof_received(self) -> bool | None:
        self.closed = True
        self._wake.set()
        return None  # the transport closes

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._wake.set()

    async def take(self, count: int, timeout: float) -> list[tuple[RawReply | Failure, float]]:
        """Up to `count` replies, waiting at most `timeout` seconds; fewer when the connection
        ends, the grammar breaks, or the time runs out."""
        loop = asyncio.get_running_loop()
        until = loop.time() + timeout
        out: list[tuple[RawReply | Failure, float]] = []
        while len(out) < count:
            if self.queue:
                item = self.queue.popleft()
                out.append(item)
                if isinstance(item[0], Failure):
                    break
                continue
            if self.closed or self.reader.failure is not None:
                break
            left = until - loop.time()
            if left <= 0:
                break
            self._wake.clear()
            try:
                # asyncio.timeout, not wait_for: Python 3.11's wait_for drops a cancellation
                # that comes as the wait ends (cli/startup.py cancels a head start so).
                async with asyncio.timeout(left):
                    await self._wake.wait()
            except TimeoutError:
                break
        return out


Act = Callable[[float], Awaitable["Reply | Failure"]]


class Session:
    """One conversation with one server address.

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
        proxy: Proxy | None = None,
        tls_context: ssl.SSLContext | None = None,
        connecting: socket.socket | None = None,
    ) -> None:
        if not helo or " " in helo:
            raise UnsafeCommand(f"not a HELO name: {helo!r}")
        self.endpoint = endpoint
        self.helo = wire.safe(helo)
        self.timeout = timeout
        self.deadline = deadline  # loop.time() after which no step starts or waits
        self.source_address = source_address
        self.trust = trust
        # The handshake's context (default `client_tls_context()`); the domain check's
        # old-version probe passes one that speaks only TLS 1.0 or 1.1.
        self.tls_context = tls_context
        self.peer_chain: tuple[bytes, ...] = ()  # the DER chain the server presented, leaf first
        self.redact = redactor or Redactor()
        self.proxy = proxy  # SOCKS5 (net/proxy.py): the TCP handshake goes through it
        self.local_address: str | None = None  # our end of the TCP connection (no proxy)
        self._secrets: list[Redactor] = []  # added by auth(): the credentials in use
        self.capabilities: Capabilities | None = None
        self.capabilities_before_tls: Capabilities | None = None
        self.tls: TlsInfo | None = None
        self.tcp_connected = False
        self._stream: _Stream | None = None
        self._sock: socket.socket | None = None  # between the TCP handshake and the transport
        # A non-blocking socket whose connect to `endpoint` was started elsewhere (cli/startup.py
        # starts it before the command line's imports): `connect` waits for it instead of
        # opening its own. Its bytes wait in the kernel until the stream reads them.
        self._connecting = connecting
        self._inspect_later = False  # starttls(inspect=False): inspect_tls() comes later

    # --- bookkeeping ------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._stream is not None and not self._stream.closed

    @property
    def encrypted(self) -> bool:
        return self.tls is not None

    def scrub(self, text: str) -> str:
        """`text` with every form of every secret masked, from the moment this session sent
        one (AUTH): before that the server cannot echo it, and masking its text in a banner
        or a host name would only tell it (core/redact.py)."""
        if not self._secrets:
            return text
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

    def _record(self, stage: Stage, command: str | None, outcome: Failure | Reply,
                started: float, ended: float | None = None) -> Step:
        # `ended` lets a step leave out our own work after the reply (certificate checks).
        elapsed = ((ended if ended is not None else time.perf_counter()) - started) * 1000
        shown = self.scrub(command) if command is not None else None
        if isinstance(outcome, Reply):
            outcome = Reply(outcome.code, outcome.enhanced,
                            tuple(self.scrub(line) for line in outcome.lines))
            return Step(stage=stage, command=shown, reply=outcome, elapsed_ms=elapsed)
        if outcome.kind is FailureKind.PROTOCOL:
            # The stream no longer lines up with our commands: nothing more it says can be
            # trusted to answer what we send.
            self.close()
        return Step(stage=stage, command=shown, elapsed_ms=elapsed,
                    failure=Failure(outcome.kind, self.scrub(outcome.detail)))

    @staticmethod
    def _deadline_failure(what: str) -> Failure:
        return Failure(FailureKind.DEADLINE, f"the overall deadline ran out {what}")

    async def _step(self, stage: Stage, shown: str | None, act: Act, *, verb: str,
                    waiting: str = "while waiting for the reply", started: float | None = None,
                    needs_connection: bool = True) -> Step:
        """The one step helper: the time budget, the hard stop at the deadline, and the
        translation of every exception into data, around `act(budget)`."""
        budget, by_deadline = self._budget()
        if started is None:
            started = time.perf_counter()
        if budget <= 0:
            return self._record(stage, shown, Failure(
                FailureKind.DEADLINE, "the overall deadline ran out before this step"), started)
        if needs_connection and not self.connected:
            return self._record(stage, shown, Failure(
                FailureKind.CLOSED, "the connection is already closed"), started)
        # The hard stop at the deadline, around waits whose own timeouts may add up (the
        # STARTTLS reply and then the handshake, the greeting after the TCP connect).
        guard = asyncio.timeout_at(self.deadline)
        try:
            async with guard:
                outcome = await act(budget)
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):
                raise
            if guard.expired():
                self.close()
                return self._record(stage, shown, self._deadline_failure(waiting), started)
            outcome = _failure_from(exc, stage=stage, timeout=budget, verb=verb)
        if by_deadline and isinstance(outcome, Failure) and (
                outcome.kind is FailureKind.TIMEOUT or (
                    outcome.kind is FailureKind.TLS_HANDSHAKE and "within" in outcome.detail)):
            outcome = self._deadline_failure(waiting)
        ended = time.perf_counter()
        if isinstance(outcome, Reply) and stage in (Stage.CONNECT, Stage.STARTTLS) and \
                self._ssl_object() is not None and not self._inspect_later:
            # Certificate inspection is our work, not the server's: the step's time leaves it
            # out.
            self.tls = self._tls_info()
        return self._record(stage, shown, outcome, started, ended)

    # --- replies through the stream --------------------------------------------------------------

    def _ssl_object(self) -> ssl.SSLObject | None:
        stream = self._stream
        if stream is None or stream.transport is None:
            return None
        found = stream.transport.get_extra_info("ssl_object")
        return found if isinstance(found, ssl.SSLObject) else None

    async def _exchange(self, commands: Sequence[Command], budget: float, *,
                        needed: int | None = None) -> list[tuple[Reply | Failure, float]]:
        """Write the commands in one go and read their replies: one (reply or failure, arrival
        time) per command, the first `needed` waited for (the rest taken if already there)."""
        stream = self._stream
        assert stream is not None
        _, by_deadline = self._budget()
        silent = (self._deadline_failure("while waiting for the reply") if by_deadline else
                  Failure(FailureKind.TIMEOUT, f"no reply within {budget:g} s"))
        lines = b"".join(command.line() for command in commands)
        stream.write(lines)
        needed = len(commands) if needed is None else needed
        got = await stream.take(needed, budget)
        while len(got) < len(commands) and stream.queue and not isinstance(got[-1][0], Failure):
            got.append(stream.queue.popleft())
        out: list[tuple[Reply | Failure, float]] = []
        failure: Failure | None = None
        for index, command in enumerate(commands):
            if failure is not None:
                out.append((failure, time.perf_counter()))
                continue
            if index < len(got):
                raw, at = got[index]
                outcome = raw if isinstance(raw, Failure) else to_reply(command.verb, raw.code,
                                                                        raw.text)
                if isinstance(outcome, Failure):
                    failure = outcome
                out.append((outcome, at))
                continue
            if index >= needed:
                break  # not waited for (QUIT at the end of a group)
            if stream.closed:
                failure = Failure(FailureKind.CLOSED, "the server closed the connection")
            else:
                failure = silent
            out.append((failure, time.perf_counter()))
        if failure is not None or any(isinstance(o, Reply) and o.code == 421 for o, _ in out):
            # Out of step, gone, silent, or closing (421, RFC 5321 3.8): it cannot be reused.
            self.close()
        return out

    async def send(self, command: Command) -> Step:
        """One command and its reply."""
        command.line()  # UnsafeCommand before anything else happens

        async def act(budget: float) -> Reply | Failure:
            [(outcome, _)] = await self._exchange([command], budget)
            return outcome

        return await self._step(command.stage, command.shown, act, verb=command.verb)

    # --- the steps --------------------------------------------------------------------------

    async def connect(self, *, implicit_tls: bool = False) -> Step:
        """Open TCP (and TLS for port 465 style), read the greeting (RFC 5321 4.3.1)."""
        ep = self.endpoint
        where = ep.where
        via = f" through {self.proxy.url}" if self.proxy is not None else ""
        command = f"(connect to {where}{via}{' with TLS' if implicit_tls else ''})"
        started = time.perf_counter()
        opened = await self._step(Stage.CONNECT, command, self._tcp, verb="CONNECT",
                                  waiting=f"with no TCP connection to {where} (the port may "
                                  f"be filtered)",
                                  started=started, needs_connection=False)
        if opened.failure is not None or self._sock is None:
            return opened
        sock, self._sock = self._sock, None

        async def greet(budget: float) -> Reply | Failure:
            loop = asyncio.get_running_loop()
            until = loop.time() + budget
            stream = _Stream()
            try:
                await loop.create_connection(
                    lambda: stream, sock=sock,
                    ssl=(self.tls_context or client_tls_context()) if implicit_tls else None,
                    server_hostname=(ep.name or "") if implicit_tls else None,
                    ssl_handshake_timeout=max(budget, 0.001) if implicit_tls else None)
            except BaseException:
                sock.close()
                raise
            self._stream = stream
            return await self._greeting(stream, until - loop.time(), budget)

        return await self._step(Stage.CONNECT, command, greet, verb="CONNECT",
                                waiting="while waiting for the greeting", started=started,
                                needs_connection=False)

    async def _greeting(self, stream: _Stream, left: float, budget: float) -> Reply | Failure:
        """The greeting (RFC 5321 4.3.1, 3.1) through the one reply reader."""
        got = await stream.take(1, max(left, 0.0))
        if got:
            raw = got[0][0]
            if isinstance(raw, Failure):
                return raw
            outcome = to_reply("CONNECT", raw.code, raw.text)
        elif stream.closed:
            outcome = Failure(FailureKind.CLOSED,
                              "the server closed the connection without a greeting")
        else:
            outcome = Failure(FailureKind.TIMEOUT,
                              f"no greeting from the server within {budget:g} s")
        if isinstance(outcome, Failure):
            self.close()
        return outcome

    async def _tcp(self, budget: float) -> Reply | Failure:
        """The TCP handshake, ending in `self._sock`; a Failure for what stops it. Returns a
        placeholder reply on success (the step continues with the greeting)."""
        ep = self.endpoint
        where = ep.where
        loop = asyncio.get_running_loop()
        if self.proxy is not None:
            from smtpprobe.net.proxy import open_via

            through = await open_via(self.proxy, ep.address, ep.port, name=ep.name,
                                     timeout=budget, source_address=self.source_address)
            if isinstance(through, Failure):
                return through
            self.tcp_connected = True
            self._sock = through
            return Reply(None, None, ())
        sock, self._connecting = self._connecting, None
        try:
            if sock is not None:
                connecting = asyncio.ensure_future(_connected(loop, sock))
            else:
                family = socket.AF_INET6 if ":" in ep.address else socket.AF_INET
                sock = socket.socket(family, socket.SOCK_STREAM)
                sock.setblocking(False)
                if self.source_address is not None:
                    try:
                        sock.bind((self.source_address, 0))
                    except OSError as exc:
                        sock.close()
                        return Failure(FailureKind.LOCAL, f"cannot send from "
                                       f"{self.source_address}: {exc.strerror or exc}")
                connecting = asyncio.ensure_future(loop.sock_connect(sock, (ep.address, ep.port)))
            try:
                async with asyncio.timeout(budget):  # not wait_for: see _Stream.take
                    await connecting
            except TimeoutError:
                sock.close()
                _, by_deadline = self._budget()
                if by_deadline or (self.deadline is not None
                                   and loop.time() >= self.deadline):
                    return Failure(FailureKind.DEADLINE, f"no TCP connection to {where} "
                                   f"before the overall deadline ran out (the port may be "
                                   f"filtered)")
                return Failure(FailureKind.TIMEOUT, f"no TCP connection to {where} within "
                               f"{budget:g} s (the port may be filtered)")
            except OSError as exc:
                sock.close()
                return _os_failure(exc, what=where)
        except BaseException:
            if sock is not None:
                sock.close()
            raise
        self.tcp_connected = True
        self._sock = sock
        try:
            self.local_address = str(sock.getsockname()[0])
        except OSError:
            self.local_address = None
        return Reply(None, None, ())

    async def hello(self) -> list[Step]:
        """EHLO, and HELO when the server does not know EHLO (RFC 5321 4.1.4, 3.2)."""
        step = await self.send(wire.ehlo(self.helo))
        steps = [step]
        if step.replied(250):
            self._set_capabilities(step, esmtp=True)
        elif step.replied(500, 502) and self.connected:
            step = await self.send(wire.helo(self.helo))
            steps.append(step)
            if step.replied(250):
                self._set_capabilities(step, esmtp=False)
        return steps

    async def ehlo(self) -> Step:
        """`hello`, for callers that need only the step that decided."""
        return (await self.hello())[-1]

    def _set_capabilities(self, step: Step, *, esmtp: bool) -> None:
        assert step.reply is not None
        caps = parse_ehlo(step.reply) if esmtp else Capabilities(
            greeting=step.reply.first_line, esmtp=False)
        # Before TLS is whether the wire is encrypted, not whether the certificate has been
        # looked at yet (that may come later, after the EHLO over TLS).
        if self._ssl_object() is None:
            self.capabilities_before_tls = caps
        self.capabilities = caps

    async def starttls(self, *, inspect: bool = True) -> Step:
        """STARTTLS and the handshake (RFC 3207). Afterwards the caller must EHLO again.

        The command is sent whether or not it was advertised: the caller decided to try (e.g.
        to see how a server that hides it reacts). With `inspect=False` the certificate is
        not inspected yet: the caller calls `inspect_tls` (probe/dialog.py does while the
        server answers the EHLO after the handshake)."""
        command = wire.starttls()
        self._inspect_later = not inspect

        async def act(budget: float) -> Reply | Failure:
            loop = asyncio.get_running_loop()
            until = loop.time() + budget
            [(outcome, _)] = await self._exchange([command], budget)
            stream = self._stream
            if not isinstance(outcome, Reply) or outcome.code != 220 or stream is None:
                return outcome
            # Whatever came after the 220 in the clear is dropped (RFC 3207 6: a man in the
            # middle may have put it there, CVE-2011-0411).
            stream.forget()
            assert stream.transport is not None
            left = until - loop.time()
            if left <= 0:
                raise ConnectionAbortedError("TLS handshake: no time left")
            if stream.closed or stream.transport.is_closing():
                return Failure(FailureKind.TLS_HANDSHAKE, "the server closed the connection "
                               "right after its 220, before the TLS handshake")
            # asyncio's own handshake timeout never fires when the peer is gone before the
            # handshake starts: the step's own bound as well.
            transport = await asyncio.wait_for(loop.start_tls(
                stream.transport, stream, self.tls_context or client_tls_context(),
                server_hostname=self.endpoint.name or None, ssl_handshake_timeout=left), left)
            if transport is None:
                raise ConnectionResetError(errno.ECONNRESET, "closed during the handshake")
            stream.transport = transport
            self.capabilities = None  # RFC 3207 4.2: forget what was learned before TLS
            return outcome

        step = await self._step(Stage.STARTTLS, "STARTTLS", act, verb="STARTTLS",
                                waiting="during STARTTLS")
        if step.failure is not None and step.failure.kind in (
                FailureKind.TLS_HANDSHAKE, FailureKind.DEADLINE, FailureKind.TIMEOUT):
            # After a broken handshake the connection is unusable (RFC 3207 4.1).
            self.close()
        return step

    def inspect_tls(self) -> TlsInfo | None:
        """Inspect the certificate of the TLS handshake (after `starttls(inspect=False)`);
        sets `tls`. None when there is no TLS layer (any more)."""
        self._inspect_later = False
        if self.tls is None and self._ssl_object() is not None:
            self.tls = self._tls_info()
        return self.tls

    def _tls_info(self) -> TlsInfo:
        ssl_object = self._ssl_object()
        assert ssl_object is not None
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
        self.peer_chain = tuple(chain)
        # cryptography is imported here, after the handshake, not at start-up.
        from smtpprobe.core.certs import TrustStore, inspect_chain

        store = self.trust or TrustStore((), "(no trust store given)")
        # A server given by its address must be covered by that address (RFC 6125: an
        # iPAddress entry), just as a named one by its name.
        return inspect_chain(chain, version=version, cipher=cipher_name, bits=bits,
                             expected_name=self.endpoint.name or self.endpoint.address,
                             store=store)


    async def auth(self, user: str, password: str, mechanism: str) -> list[Step]:
        """AUTH with one mechanism (RFC 4954); the shown commands never hold the secret.

        The session masks the password (and the user name inside AUTH blobs) in everything it
        records from now on, whatever redactor it was given. Whether credentials may go over
        this connection (`encrypted`) is the caller's decision.
        """
        mechanism = mechanism.upper()
        self._secrets.append(Redactor([(user, password)]))
        if mechanism == "PLAIN":
            return [await self.send(wire.auth("PLAIN", wire.sasl_plain(user, password)))]
        if mechanism == "LOGIN":
            steps = [await self.send(wire.auth("LOGIN"))]
            if not steps[-1].continues:
                return steps
            user_b64 = wire.sasl_login(user)
            steps.append(await self.send(wire.auth_line(user_b64, f"{user_b64}  (user name)")))
            if not steps[-1].continues:
                return steps
            steps.append(await self.send(wire.auth_line(wire.sasl_login(password),
                                                        f"{wire.MASK}  (password)")))
            return steps
        if mechanism == "CRAM-MD5":
            steps = [await self.send(wire.auth("CRAM-MD5"))]
            challenge = steps[-1].reply
            if challenge is None or not steps[-1].continues:
                return steps
            answer = wire.cram_md5(user, password, challenge.text)
            if answer is None:
                steps.append(self._record(Stage.AUTH, None, Failure(
                    FailureKind.PROTOCOL, "the CRAM-MD5 challenge is not base64"),
                    time.perf_counter()))
                return steps
            steps.append(await self.send(wire.auth_line(answer,
                                                        f"{wire.MASK}  (CRAM-MD5 response)")))
            return steps
        if mechanism in wire.OAUTH_MECHANISMS:
            # `password` is an OAuth 2.0 access token (RFC 7628; XOAUTH2 the providers' own).
            blob = (wire.sasl_xoauth2(user, password) if mechanism == "XOAUTH2" else
                    wire.sasl_oauthbearer(user, password, host=self.endpoint.name,
                                          port=self.endpoint.port))
            # The exact message too: its edges hold bytes of the token that the offset forms
            # of core/redact.py leave out (an echo of the whole blob must not show them).
            self._secrets.append(Redactor([(None, blob)]))
            steps = [await self.send(wire.auth(mechanism, blob))]
            if steps[-1].continues and self.connected:
                # A 334 here is the provider's error (RFC 7628 3.2.2); the exchange ends only
                # when the client answers it with the dummy response (3.2.3).
                steps.append(await self.send(wire.auth_line(
                    wire.oauth_abort(mechanism), "(empty response: the error was read)")))
            return steps
        return [self._record(Stage.AUTH, f"AUTH {wire.safe(mechanism)}", Failure(
            FailureKind.NOT_OFFERED, f"smtpprobe does not implement AUTH {mechanism}"),
            time.perf_counter())]

    async def mail(self, sender: str, params: Sequence[str] = ()) -> Step:
        return await self.send(wire.mail(sender, params))

    async def rcpt(self, recipient: str) -> Step:
        return await self.send(wire.rcpt(recipient))

    async def rset(self) -> Step:
        return await self.send(wire.rset())

    async def noop(self) -> Step:
        return await self.send(wire.noop())

    async def data(self, message: bytes) -> list[Step]:
        """DATA, then the message and its final dot (RFC 5321 4.1.1.4): two steps."""
        first = await self.send(wire.data())
        if not first.replied(354):
            return [first]
        body = wire.dot_stuffed(message)
        shown = f"(message, {len(message)} bytes)"

        async def act(budget: float) -> Reply | Failure:
            assert self._stream is not None
            self._stream.write(body)
            [(outcome, _)] = await self._exchange_written(".", budget)
            return outcome

        return [first, await self._step(
            Stage.DATA, shown, act, verb=".",
            waiting="while waiting for the reply to the message")]

    async def _exchange_written(self, verb: str, budget: float
                                ) -> list[tuple[Reply | Failure, float]]:
        """The reply to something already written (the message after 354)."""
        end = wire.Command(verb, (), Stage.DATA, verb)
        stream = self._stream
        assert stream is not None
        got = await stream.take(1, budget)
        if got:
            raw, at = got[0]
            outcome = raw if isinstance(raw, Failure) else to_reply(end.verb, raw.code, raw.text)
        elif stream.closed:
            outcome, at = Failure(FailureKind.CLOSED, "the server closed the connection"), 0.0
        else:
            outcome, at = Failure(FailureKind.TIMEOUT, f"no reply within {budget:g} s"), 0.0
        if isinstance(outcome, Failure):
            self.close()
        return [(outcome, at)]

    async def pipeline(self, commands: Sequence[Command], *,
                       quit_after: bool = False) -> list[Step]:
        """Send a group of commands in one write and read their replies (RFC 2920).

        Only for servers that advertise PIPELINING. With `quit_after`, QUIT ends the group
        (RFC 2920 3.1 allows it last); its reply is taken if it is already there, never waited
        for, and its step (when it came) is the last one returned.
        """
        if not commands:
            return []
        for command in commands:
            command.line()  # UnsafeCommand before anything is written
        group = [*commands, wire.quit_()] if quit_after else list(commands)
        started = time.perf_counter()
        results: list[tuple[Reply | Failure, float]] = []

        async def act(budget: float) -> Reply | Failure:
            results.extend(await self._exchange(group, budget, needed=len(commands)))
            return results[0][0] if results else Failure(
                FailureKind.CLOSED, "the server closed the connection")

        first = await self._step(commands[0].stage, commands[0].shown, act,
                                 verb=commands[0].verb, started=started)
        if not results:
            # The step helper answered for the whole group (deadline, closed connection).
            assert first.failure is not None
            return [first, *(self._record(c.stage, c.shown, first.failure, started)
                             for c in commands[1:])]
        steps: list[Step] = []
        for index, (outcome, at) in enumerate(results):
            command = group[index]
            step = self._record(command.stage, command.shown, outcome, started)
            # Each reply's time is from the group's write to that reply's arrival.
            steps.append(Step(step.stage, step.command, step.reply, step.failure,
                              (max(at, started) - started) * 1000))
        if quit_after:
            self.close()
        return steps

    async def quit(self) -> Step | None:
        """Say goodbye without waiting for the reply (nothing depends on it), then close."""
        step = None
        if self.connected and self._stream is not None:
            try:
                self._stream.write(b"QUIT\r\n")
            except (OSError, RuntimeError):
                pass
            step = Step(stage=Stage.QUIT, command="QUIT", elapsed_ms=0.0)
        self.close()
        return step

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None
        for sock in (self._sock, self._connecting):
            if sock is not None:
                sock.close()
        self._sock = self._connecting = None

