"""Broken and hostile SMTP servers, as raw lab scenarios.

Each entry of `HOSTILE` is a `Scenario` with a raw script: pass it to `smtpprobe.lab.smtp.serve`
like a named scenario. They misbehave the ways real servers, middleboxes and attackers do: no
greeting, endless or huge replies, bytes that are not UTF-8, codes that are not codes, replies
that belong to another command, STARTTLS that leads nowhere, a downgrade that hides STARTTLS,
and a server that echoes the credentials it was sent. The robustness tests of smtpprobe run
every command against each of them.

`GLITCHES` are servers that fail for a while and then work, or fail only some of the time, the
way a busy or restarting MTA does: they drop the first connections right after the greeting,
greet the first connections with 421, or answer some RCPTs with 421 and close. The batch tests
check that such a glitch decides no address that a lone check would have answered. The
factories (`drop_after_greeting`, `busy_greeting`, `rcpt_421`) make them with other counts;
each server keeps its own count.

Where a script is not misbehaving it acts like a small Postfix-like MTA (`_Mta`): mailboxes are
the server's `local_parts`, anything else gets 550 5.1.1. Scripts that wait forever wait for
the client to go away or for the lab server to close, never longer than `COMMAND_TIMEOUT`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import socket
import weakref
from collections.abc import Awaitable, Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Self

from .smtp import COMMAND_TIMEOUT, LabServer, RawConnection, Scenario

__all__ = ["GLITCHES", "HOSTILE", "FilteredPort", "busy_greeting", "describe",
           "drop_after_greeting", "rcpt_421"]

# Postfix's default extensions, minus the ones a script adds itself.
_EXTENSIONS = ("PIPELINING", "SIZE 10240000", "ENHANCEDSTATUSCODES", "8BITMIME")
HUGE_LINE = 1 << 20  # bytes in the huge_line greeting
DRIP_INTERVAL = 0.5  # seconds between the bytes of a dripping reply


def _verb(line: str) -> str:
    return line.split(" ", 1)[0].upper()


def _multiline(code: int, lines: Iterable[str]) -> list[str]:
    items = list(lines)
    return [f"{code}-{x}" for x in items[:-1]] + [f"{code} {items[-1]}"]


Hook = Callable[["_Mta", str], Awaitable[bool]]  # True: the conversation is over


class _Mta:
    """The well-behaved part of a hostile script: a minimal MTA that rejects unknown mailboxes.

    `hooks` replace the answer to a verb; `tls_required` makes MAIL wait for STARTTLS
    (RFC 3207 4: "530 Must issue a STARTTLS command first"); `auth_required` makes MAIL wait
    for a successful AUTH (RFC 4954 6: 530 5.7.0).
    """

    def __init__(
        self,
        conn: RawConnection,
        *,
        extensions: Iterable[str] = _EXTENSIONS,
        hooks: Mapping[str, Hook] | None = None,
        tls_required: bool = False,
        auth_required: bool = False,
    ) -> None:
        self.conn = conn
        self.host = conn.server.hostname
        self.extensions = list(extensions)
        self.hooks = dict(hooks or {})
        self.tls_required = tls_required
        self.auth_required = auth_required
        self.encrypted = False
        self.authenticated = False
        self.in_mail = False

    async def greet(self) -> None:
        await self.conn.send(f"220 {self.host} ESMTP Postfix")

    async def run(self) -> None:
        while (line := await self.conn.read_command()) is not None:
            verb = _verb(line)
            hook = self.hooks.get(verb)
            if hook is not None:
                if await hook(self, line):
                    break
                continue
            if await self.answer(verb, line):
                break
        self.conn.close()

    async def answer(self, verb: str, line: str) -> bool:
        send = self.conn.send
        if verb == "EHLO":
            await send(*_multiline(250, [self.host, *self.extensions]))
        elif verb == "HELO":
            await send(f"250 {self.host}")
        elif verb == "MAIL":
            if self.tls_required and not self.encrypted:
                await send("530 5.7.0 Must issue a STARTTLS command first")
            elif self.auth_required and not self.authenticated:
                await send("530 5.7.0 Authentication required")
            elif self.in_mail:
                await send("503 5.5.1 Error: nested MAIL command")
            else:
                self.in_mail = True
                await send("250 2.1.0 Ok")
        elif verb == "RCPT":
            if not self.in_mail:
                await send("503 5.5.1 Error: need MAIL command")
            else:
                await send(self._rcpt(line))
        elif verb in ("RSET", "NOOP"):
            self.in_mail = self.in_mail and verb == "NOOP"
            await send("250 2.0.0 Ok")
        elif verb == "QUIT":
            await send("221 2.0.0 Bye")
            return True
        elif verb == "DATA":
            await send("554 5.5.1 Error: no valid recipients")
        else:
            await send("502 5.5.2 Error: command not recognized")
        return False

    def _rcpt(self, line: str) -> str:
        start, end = line.find("<"), line.rfind(">")
        address = line[start + 1:end] if 0 <= start < end else ""
        local = address.rpartition("@")[0].lower()
        if local in self.conn.server.local_parts:
            return "250 2.1.5 Ok"
        return (f"550 5.1.1 <{address}>: Recipient address rejected: "
                f"User unknown in virtual mailbox table")


async def _linger(conn: RawConnection) -> None:
    """Wait, reading and ignoring whatever comes, until the client goes away."""
    while await conn.read_command() is not None:
        pass


# --- the scripts ------------------------------------------------------------------------------


async def _no_banner(conn: RawConnection) -> None:
    # RFC 5321 4.3.1: the client waits for the greeting; this server never sends one.
    await _linger(conn)


async def _banner_60s(conn: RawConnection) -> None:
    await asyncio.sleep(60)
    mta = _Mta(conn)
    await mta.greet()
    await mta.run()


async def _huge_line(conn: RawConnection) -> None:
    # One greeting line of a megabyte: RFC 5321 4.5.3.1.5 allows 512 octets per reply line.
    chunk = b"x" * 65536
    await conn.send_bytes(b"220 " + conn.server.hostname.encode())
    for _ in range(HUGE_LINE // len(chunk)):
        await conn.send_bytes(chunk)
    await conn.send_bytes(b"\r\n")
    await _linger(conn)


async def _endless_multiline(conn: RawConnection) -> None:
    # A greeting, then an EHLO reply whose continuation lines ("250-") never end.
    mta = _Mta(conn)
    await mta.greet()
    if await conn.read_command() is None:
        return
    await conn.send(f"250-{conn.server.hostname}")
    number = 0
    while not conn.writer.is_closing():
        number += 1
        block = "".join(f"250-X-FILLER-{number}-{i} {'y' * 40}\r\n" for i in range(100))
        await conn.send_bytes(block.encode())
        await asyncio.sleep(0.001)  # let the loop breathe; the flood is the point, not CPU


async def _non_utf8(conn: RawConnection) -> None:
    # Latin-1 and plain invalid bytes, as old or misconfigured servers send them.
    async def ehlo(mta: _Mta, line: str) -> bool:
        await conn.send_bytes(f"250-{mta.host} Gr\xfc\xdf Gott\r\n".encode("latin-1")
                              + b"250-\xff\xfe\xfd\r\n250 8BITMIME\r\n")
        return False

    async def rcpt(mta: _Mta, line: str) -> bool:
        if not mta.in_mail:
            await conn.send("503 5.5.1 Error: need MAIL command")
            return False
        await conn.send_bytes("550 5.1.1 Empf\xe4nger unbekannt: M\xfcller \x80\x81\r\n"
                              .encode("latin-1"))
        return False

    mta = _Mta(conn, hooks={"EHLO": ehlo, "RCPT": rcpt})
    await conn.send_bytes(f"220 {mta.host} ESMTP \xc3\x28 caf\xe9 \xff ready\r\n"
                          .encode("latin-1"))
    await mta.run()


async def _bad_code(conn: RawConnection) -> None:
    # RFC 5321 4.2: a reply starts with exactly three digits; this one has two.
    await conn.send(f"22 {conn.server.hostname} ESMTP ready")
    await _linger(conn)


async def _mixed_greeting(conn: RawConnection) -> None:
    # RFC 5321 4.2.1: every line of a reply carries the same code. A refusal that ends in a
    # welcome is no welcome: a reader that takes the last line's code would go on.
    await conn.send(f"554-{conn.server.hostname} no service for you", "220 but do come in")
    await _linger(conn)


async def _greet_and_close(conn: RawConnection) -> None:
    # The welcome and the hang-up in one go: there is nobody to say EHLO to.
    await conn.send(f"220 {conn.server.hostname} ESMTP")
    conn.close()


async def _starttls_mixed(conn: RawConnection) -> None:
    # A STARTTLS reply whose lines disagree (454 then 220): not a go-ahead for the handshake.
    async def starttls(mta: _Mta, line: str) -> bool:
        await conn.send("454-4.7.0 TLS not available", "220 2.0.0 Ready to start TLS")
        return False

    mta = _Mta(conn, extensions=[*_EXTENSIONS, "STARTTLS"], hooks={"STARTTLS": starttls})
    await mta.greet()
    await mta.run()


async def _starttls_injection(conn: RawConnection) -> None:
    # CVE-2011-0411 in reverse: a reply in the clear right behind the 220, which a client must
    # not read as the answer to its first command after the handshake (RFC 3207 6). The EHLO
    # after TLS then gets the real reply, and the mailbox check proceeds as usual.
    async def starttls(m: _Mta, line: str) -> bool:
        await conn.send("220 2.0.0 Ready to start TLS", "250 injected before the handshake")
        if conn.server.cert is None:
            return True  # nothing to shake hands with: the connection ends (a broken TLS)
        await conn.start_tls()
        m.encrypted = True
        return False

    mta = _Mta(conn, extensions=[*_EXTENSIONS, "STARTTLS"], hooks={"STARTTLS": starttls})
    await mta.greet()
    await mta.run()


async def _mismatched_replies(conn: RawConnection) -> None:
    # The EHLO reply comes with a second, unasked-for reply behind it, so every later reply
    # answers the command before (MAIL gets a 354 that belongs to DATA).
    async def ehlo(mta: _Mta, line: str) -> bool:
        await conn.send(*_multiline(250, [mta.host, "SIZE 10240000", "8BITMIME"]),
                        "354 End data with <CR><LF>.<CR><LF>")
        return False

    mta = _Mta(conn, hooks={"EHLO": ehlo})
    await mta.greet()
    await mta.run()


async def _close_mid_reply(conn: RawConnection) -> None:
    mta = _Mta(conn)
    await mta.greet()
    if await conn.read_command() is None:
        return
    await conn.send_bytes(f"250-{mta.host}\r\n250-PIPELINING\r\n250-SIZE 1024".encode())
    conn.close()


def _starttls_then(action: Callable[[RawConnection], Awaitable[None]]) -> Callable[
        [RawConnection], Awaitable[None]]:
    """A TLS-only server (MAIL before STARTTLS gets 530) whose STARTTLS leads to `action`."""

    async def script(conn: RawConnection) -> None:
        async def starttls(mta: _Mta, line: str) -> bool:
            await conn.send("220 2.0.0 Ready to start TLS")
            await action(conn)
            return True

        mta = _Mta(conn, extensions=[*_EXTENSIONS, "STARTTLS"], hooks={"STARTTLS": starttls},
                   tls_required=True)
        await mta.greet()
        await mta.run()

    return script


async def _garbage(conn: RawConnection) -> None:
    # Plain text where the TLS ServerHello should be, sent once the ClientHello is in (sent
    # together with the 220, a client would rightly discard it, RFC 3207 4.2 / aiosmtplib).
    try:
        async with asyncio.timeout(COMMAND_TIMEOUT):
            await conn.reader.read(4096)
    except TimeoutError:
        return
    await conn.send_bytes(b"HTTP/1.1 400 Bad Request\r\nthis is not TLS at all\r\n" * 4)
    while await conn.reader.read(4096):
        pass


async def _stall(conn: RawConnection) -> None:
    # Neither read the ClientHello nor answer it.
    await asyncio.sleep(COMMAND_TIMEOUT)


async def _starttls_refused(conn: RawConnection) -> None:
    # Postfix with a broken certificate says this, and still insists on TLS for MAIL.
    async def starttls(mta: _Mta, line: str) -> bool:
        await conn.send("454 4.7.0 TLS not available due to local problem")
        return False

    mta = _Mta(conn, extensions=[*_EXTENSIONS, "STARTTLS"], hooks={"STARTTLS": starttls},
               tls_required=True)
    await mta.greet()
    await mta.run()


def _auth_hook(echo: bool) -> Hook:
    """AUTH PLAIN / LOGIN. With `echo`, the 535 repeats what the client sent, decoded and
    encoded, the way a careless or malicious server might; otherwise any login is accepted
    (a man in the middle harvesting credentials has no reason to refuse them)."""

    async def auth(mta: _Mta, line: str) -> bool:
        conn = mta.conn
        parts = line.split()
        mechanism = parts[1].upper() if len(parts) > 1 else ""
        received: list[str] = [line]
        if mechanism == "PLAIN":
            if len(parts) > 2:
                blob = parts[2]
            else:
                await conn.send("334 ")
                blob = await conn.read_command() or ""
                received.append(blob)
        elif mechanism == "LOGIN":
            await conn.send("334 VXNlcm5hbWU6")
            user = await conn.read_command() or ""
            await conn.send("334 UGFzc3dvcmQ6")
            secret = await conn.read_command() or ""
            received += [user, secret]
            blob = base64.b64encode(b"\0" + _b64(user) + b"\0" + _b64(secret)).decode()
        else:
            await conn.send("504 5.5.4 Unrecognized authentication type")
            return False
        if not echo:
            mta.authenticated = True
            await conn.send("235 2.7.0 Authentication successful")
            return False
        decoded = _b64(blob).decode("utf-8", "replace").replace("\0", " | ")
        pieces = [p for p in decoded.split(" | ") if p]
        await conn.send(
            f"535-5.7.8 Authentication failed for: {' '.join(received)}",
            f"535-5.7.8 decoded: {decoded}",
            f"535-5.7.8 hex: {' '.join(p.encode().hex() for p in pieces)}",
            f"535 5.7.8 b64: {' '.join(base64.b64encode(p.encode()).decode() for p in pieces)}",
        )
        return False

    return auth


def _b64(text: str) -> bytes:
    try:
        return base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        return text.encode()


async def _strip_starttls(conn: RawConnection) -> None:
    # A downgrade: a middlebox removed STARTTLS from the EHLO reply of a submission server;
    # AUTH is offered in the clear and any login "works" (the attacker keeps it).
    mta = _Mta(conn, extensions=[*_EXTENSIONS, "AUTH PLAIN LOGIN"],
               hooks={"AUTH": _auth_hook(echo=False), "STARTTLS": _not_offered},
               auth_required=True)
    await mta.greet()
    await mta.run()


async def _not_offered(mta: _Mta, line: str) -> bool:
    await mta.conn.send("502 5.5.1 Error: command not implemented")
    return False


async def _never_read(conn: RawConnection) -> None:
    # Greets, then neither reads nor answers: the client's commands pile up unread.
    await conn.send(f"220 {conn.server.hostname} ESMTP")
    await asyncio.sleep(COMMAND_TIMEOUT)


async def _echo_auth(conn: RawConnection) -> None:
    # Offers STARTTLS when the lab server has a certificate, AUTH after it (or at once when
    # it has none), and echoes the credentials back in its 535.
    async def starttls(m: _Mta, line: str) -> bool:
        await conn.send("220 2.0.0 Ready to start TLS")
        await conn.start_tls()
        m.encrypted = True
        m.extensions = [*_EXTENSIONS, "AUTH PLAIN LOGIN"]
        return False

    with_tls = conn.server.cert is not None
    mta = _Mta(
        conn,
        extensions=[*_EXTENSIONS, "STARTTLS"] if with_tls else [*_EXTENSIONS, "AUTH PLAIN LOGIN"],
        hooks={"STARTTLS": starttls if with_tls else _not_offered, "AUTH": _auth_hook(echo=True)},
        auth_required=True,
    )
    await mta.greet()
    await mta.run()


async def _drip_banner(conn: RawConnection) -> None:
    # The greeting one byte at a time, slower than any client waits for.
    for byte in f"220 {conn.server.hostname} ESMTP Postfix\r\n".encode():
        await conn.send_bytes(bytes([byte]))
        await asyncio.sleep(DRIP_INTERVAL)
    await _linger(conn)


async def _slowloris_reply(conn: RawConnection) -> None:
    # A reply line to EHLO that is kept open forever, one byte at a time.
    mta = _Mta(conn)
    await mta.greet()
    if await conn.read_command() is None:
        return
    await conn.send_bytes(f"250-{mta.host}\r\n250-PIPELINING\r\n250 SIZE ".encode())
    while not conn.writer.is_closing():
        await conn.send_bytes(b"9")
        await asyncio.sleep(DRIP_INTERVAL)


async def _pipelining_stall(conn: RawConnection) -> None:
    # Offers PIPELINING, answers the first command of a group and then nothing more.
    async def mail(mta: _Mta, line: str) -> bool:
        await conn.send("250 2.1.0 Ok")
        await _linger(conn)
        return True

    mta = _Mta(conn, hooks={"MAIL": mail})
    await mta.greet()
    await mta.run()


async def _escape_codes(conn: RawConnection) -> None:
    # Terminal control sequences and rich markup in replies: a hostile server trying to
    # clear the user's screen, set the window title or restyle the output.
    async def rcpt(mta: _Mta, line: str) -> bool:
        if not mta.in_mail:
            await conn.send("503 5.5.1 Error: need MAIL command")
            return False
        await conn.send("550 5.1.1 \x1b[2J\x1b]0;pwned\x07 [bold red]no such user[/] "
                        "\x9b31m \x00 \x08\x08\x08 gone")
        return False

    mta = _Mta(conn, hooks={"RCPT": rcpt})
    await conn.send(f"220 {mta.host} \x1b[5m[blink]ESMTP[/blink]\x1b[0m \x1b]8;;http://x/\x07")
    await mta.run()


# --- glitches: servers that fail for a while, or now and then -----------------------------------


class _Count:
    """Connections per lab server, in the order their scripts start (one count per server,
    so one scenario can serve several servers)."""

    def __init__(self) -> None:
        self._seen: weakref.WeakKeyDictionary[LabServer, int] = weakref.WeakKeyDictionary()

    def next(self, server: LabServer) -> int:
        number = self._seen.get(server, 0) + 1
        self._seen[server] = number
        return number


def drop_after_greeting(first: int = 3) -> Scenario:
    """Greets the first `first` connections and closes each when the client's first command
    (EHLO) arrives, without a reply, as a server does that restarts or runs out of processes;
    every later one gets the MTA."""
    count = _Count()

    async def script(conn: RawConnection) -> None:
        mta = _Mta(conn)
        await mta.greet()
        if count.next(conn.server) <= first:
            await conn.read_command()
            conn.close()
            return
        await mta.run()

    return Scenario("drop_after_greeting", f"greets the first {first} connections and "
                    "drops them at the first command, then acts as an MTA", raw=script)


def busy_greeting(first: int = 3) -> Scenario:
    """Greets the first `first` connections with 421 4.7.0 too many connections and hangs
    up (RFC 5321 3.8), as Postfix does at its connection limits; then the MTA."""
    count = _Count()

    async def script(conn: RawConnection) -> None:
        if count.next(conn.server) <= first:
            await conn.send(f"421 4.7.0 {conn.server.hostname} Error: too many connections "
                            f"from {conn.peer_ip}")
            conn.close()
            return
        mta = _Mta(conn)
        await mta.greet()
        await mta.run()

    return Scenario("busy_greeting", f"greets the first {first} connections with 421 4.7.0 "
                    "too many connections, then acts as an MTA", raw=script)


RCPT_421 = "421 4.3.2 Service shutting down and closing transmission channel"


def rcpt_421(nth: int = 5, busy: str = "busy") -> Scenario:
    """An MTA that answers the `nth` RCPT of every connection, and every RCPT to a local part
    that starts with `busy`, with RCPT_421 and closes: a lone check (one or two RCPTs) meets
    only the second; a batch meets both."""

    async def script(conn: RawConnection) -> None:
        rcpts = 0

        async def rcpt(mta: _Mta, line: str) -> bool:
            nonlocal rcpts
            if not mta.in_mail:
                await conn.send("503 5.5.1 Error: need MAIL command")
                return False
            rcpts += 1
            start, end = line.find("<"), line.rfind(">")
            local = line[start + 1:end].rpartition("@")[0].lower() if 0 <= start < end else ""
            if rcpts == nth or local.startswith(busy):
                await conn.send(RCPT_421)
                return True
            await conn.send(mta._rcpt(line))
            return False

        mta = _Mta(conn, hooks={"RCPT": rcpt})
        await mta.greet()
        await mta.run()

    return Scenario("rcpt_421", f"answers the RCPT number {nth} of each connection, and any "
                    f"RCPT to a local part starting with {busy!r}, with 421 and closes",
                    raw=script)


def closed_port() -> int:
    """A port nothing listens on (it was free a moment ago): connecting is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class FilteredPort:
    """A loopback port that acts like one behind a firewall that drops packets: TCP connects
    to it hang until the client gives up.

    A listening socket with a backlog of 0 that never accepts holds one connection in its
    queue; once this class has put its own connection there, Linux drops the SYNs of every
    later one, and the client sees no answer at all, not a refusal.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self._listener: socket.socket | None = None
        self._filler: socket.socket | None = None
        self.port = port  # 0: any free port (several hosts of a lab world share one number)

    def open(self) -> int:
        listener = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET)
        listener.bind((self.host, self.port))
        listener.listen(0)
        self._listener = listener
        self.port = listener.getsockname()[1]
        filler = socket.create_connection((self.host, self.port), timeout=5)
        self._filler = filler
        return self.port

    def close(self) -> None:
        for sock in (self._filler, self._listener):
            if sock is not None:
                sock.close()
        self._filler = self._listener = None

    def __enter__(self) -> Self:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_HOSTILE_LIST = (
    Scenario("no_banner", "accepts the connection and never sends a greeting",
             raw=_no_banner),
    Scenario("banner_60s", "greets only after 60 seconds, then acts as an MTA",
             raw=_banner_60s),
    Scenario("huge_line", f"a greeting line of {HUGE_LINE} bytes", raw=_huge_line),
    Scenario("endless_multiline", "answers EHLO with continuation lines that never end",
             raw=_endless_multiline),
    Scenario("non_utf8", "greeting, EHLO and RCPT replies in Latin-1 and invalid bytes; RCPT "
             "says 550 5.1.1", raw=_non_utf8),
    Scenario("bad_code", "a greeting whose code has two digits", raw=_bad_code),
    Scenario("mixed_greeting", "a greeting of 554- lines that ends in a 220 line",
             raw=_mixed_greeting),
    Scenario("greet_and_close", "greets and closes the connection at once",
             raw=_greet_and_close),
    Scenario("starttls_mixed", "answers STARTTLS with 454- lines ending in a 220 line",
             raw=_starttls_mixed),
    Scenario("starttls_injection", "puts a plain-text 250 right behind its STARTTLS 220, "
             "then does TLS properly", raw=_starttls_injection),
    Scenario("mismatched_replies", "sends an extra 354 after the EHLO reply, so each later "
             "reply answers the command before", raw=_mismatched_replies),
    Scenario("close_mid_reply", "closes the connection in the middle of the EHLO reply",
             raw=_close_mid_reply),
    Scenario("starttls_garbage", "answers STARTTLS with 220 and then plain-text garbage "
             "instead of a TLS handshake; MAIL without TLS gets 530",
             raw=_starttls_then(_garbage)),
    Scenario("tls_stall", "answers STARTTLS with 220 and then never answers the handshake; "
             "MAIL without TLS gets 530", raw=_starttls_then(_stall)),
    Scenario("starttls_refused", "advertises STARTTLS, refuses it with 454, and still "
             "wants TLS before MAIL (530)", raw=_starttls_refused),
    Scenario("strip_starttls", "a downgrade: STARTTLS missing from EHLO, AUTH offered in "
             "plain text and any login accepted; MAIL needs AUTH", raw=_strip_starttls),
    Scenario("never_read", "greets, then never reads or answers anything", raw=_never_read),
    Scenario("echo_auth", "answers AUTH with a 535 that repeats the credentials it got, "
             "plain, hex and base64 (after STARTTLS when it has a certificate)",
             raw=_echo_auth),
    Scenario("drip_banner", f"sends its greeting one byte every {DRIP_INTERVAL:g} s",
             raw=_drip_banner),
    Scenario("slowloris_reply", f"keeps the last EHLO reply line open, one byte every "
             f"{DRIP_INTERVAL:g} s", raw=_slowloris_reply),
    Scenario("pipelining_stall", "offers PIPELINING, answers MAIL of a group and never "
             "the RCPT", raw=_pipelining_stall),
    Scenario("escape_codes", "greeting and RCPT replies full of terminal escape sequences, "
             "control characters and rich markup", raw=_escape_codes),
)

HOSTILE: Mapping[str, Scenario] = MappingProxyType({s.name: s for s in _HOSTILE_LIST})

GLITCHES: Mapping[str, Scenario] = MappingProxyType({s.name: s for s in (
    drop_after_greeting(), busy_greeting(), rcpt_421())})


def describe() -> list[tuple[str, str]]:
    """(name, summary) of every hostile scenario."""
    return [(s.name, s.summary) for s in HOSTILE.values()]
