"""Session against real lab servers: replies that cannot be answers, text that must not reach a
terminal, command text that must not reach the wire, DATA, deadlines and secrets.

Every server is a lab server on 127.0.0.1, port 0, started inside the test's event loop; the
raw ones are small scripts written for the case at hand.
"""

from __future__ import annotations

import asyncio
import base64
import gc
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smtpprobe.core import wire
from smtpprobe.core.address import parse_address
from smtpprobe.core.redact import MASK, Redactor
from smtpprobe.core.wire import MAX_LINE, RawReply, ReplyReader
from smtpprobe.errors import UnsafeCommand, UsageError
from smtpprobe.lab.hostile import HOSTILE
from smtpprobe.lab.smtp import LabServer, RawConnection, Scenario, serve
from smtpprobe.lab.tls import LabCert
from smtpprobe.models import Failure, FailureKind, Reply, Stage
from smtpprobe.net.session import Endpoint, Session

pytestmark = pytest.mark.filterwarnings("error")


@pytest.fixture(scope="module", autouse=True)
def _no_garbage_from_other_modules() -> Iterator[None]:
    """Warnings are errors here, so that a transport this module leaves open fails it. What
    earlier modules left for the garbage collector is theirs to report, not ours: collect it
    before the first test, quietly."""
    previous = sys.unraisablehook
    sys.unraisablehook = lambda unraisable: None
    try:
        gc.collect()
    finally:
        sys.unraisablehook = previous
    yield

HELO = "probe.lab.test"
Script = Callable[[RawConnection], Awaitable[None]]


def scenario(script: Script, name: str = "scripted") -> Scenario:
    return Scenario(name, "a script written for one test", raw=script)


def session_for(server: LabServer, **extra: object) -> Session:
    return Session(Endpoint(server.host, server.port), helo=HELO, timeout=2.0,
                   **extra)  # type: ignore[arg-type]


async def answer_with(conn: RawConnection, replies: dict[str, list[str]], *,
                      greeting: str = "220 mx.lab.test ESMTP") -> None:
    """Greet, then answer each verb with its list of reply lines (250 Ok for the rest)."""
    await conn.send(greeting)
    while (line := await conn.read_command()) is not None:
        verb = line.split(" ", 1)[0].upper()
        if verb == "QUIT":
            await conn.send("221 2.0.0 Bye")
            break
        await conn.send(*replies.get(verb, ["250 2.0.0 Ok"]))
    conn.close()


# --- replies that cannot be replies -----------------------------------------------------------


@pytest.mark.parametrize("greeting", ["22 mx.lab.test ready", "1000 hello", "600 what",
                                      "099 early", "ABC no code", "250 mx.lab.test hello",
                                      "354 go ahead"])
async def test_greeting_that_is_no_greeting_is_a_protocol_failure(greeting: str) -> None:
    async def script(conn: RawConnection) -> None:
        await answer_with(conn, {}, greeting=greeting)

    async with await serve(scenario(script)) as server:
        session = session_for(server)
        step = await session.connect()
        assert step.failure is not None and step.failure.kind is FailureKind.PROTOCOL, step
        assert step.reply is None
        assert not session.connected


@pytest.mark.parametrize("verb,reply", [
    ("EHLO", "354 End data with <CR><LF>.<CR><LF>"),
    ("EHLO", "220 mx.lab.test ESMTP"),
    ("MAIL", "354 go ahead"),
    ("MAIL", "334 VXNlcm5hbWU6"),
    ("MAIL", "221 2.0.0 Bye"),
    ("RCPT", "235 2.7.0 Authentication successful"),
    ("RCPT", "999 nine nine nine"),
])
async def test_reply_that_belongs_to_another_command_stops_the_session(verb: str,
                                                                       reply: str) -> None:
    async def script(conn: RawConnection) -> None:
        await answer_with(conn, {verb: [reply], "EHLO": ["250 mx.lab.test"] if verb != "EHLO"
                                 else [reply]})

    async with await serve(scenario(script)) as server:
        session = session_for(server)
        await session.connect()
        steps = [await session.ehlo()]
        if verb != "EHLO":
            steps.append(await session.mail("probe@lab.test"))
        if verb == "RCPT":
            steps.append(await session.rcpt("alice@lab.test"))
        last = steps[-1]
        assert last.failure is not None and last.failure.kind is FailureKind.PROTOCOL, last
        assert "no answer to" in last.failure.detail or "not an SMTP reply code" in \
            last.failure.detail
        assert not session.connected
        follow = await session.rcpt("bob@lab.test")
        assert follow.failure is not None and follow.failure.kind is FailureKind.CLOSED
        assert all(s.failure is None for s in steps[:-1])


async def test_mismatched_replies_scenario_is_caught_at_mail() -> None:
    async with await serve(HOSTILE["mismatched_replies"]) as server:
        session = session_for(server)
        await session.connect()
        hello = await session.ehlo()
        assert hello.reply is not None and hello.reply.code == 250
        mail = await session.mail("")
        assert mail.failure is not None and mail.failure.kind is FailureKind.PROTOCOL
        assert mail.failure.detail.startswith("354 ")


@pytest.mark.parametrize("bad", ["2500 Ok", "25O Ok", "250Ok"])
async def test_pipelined_reply_with_a_malformed_code_is_a_protocol_failure(bad: str) -> None:
    async def script(conn: RawConnection) -> None:
        await answer_with(conn, {"EHLO": ["250-mx.lab.test", "250 PIPELINING"],
                                 "RCPT": [bad]})

    async with await serve(scenario(script)) as server:
        session = session_for(server)
        await session.connect()
        await session.ehlo()
        assert session.capabilities is not None and session.capabilities.pipelining
        mail, rcpt = await session.pipeline([wire.mail(""), wire.rcpt("alice@lab.test")])
        assert mail.reply is not None and mail.reply.code == 250
        assert rcpt.failure is not None and rcpt.failure.kind is FailureKind.PROTOCOL
        assert not session.connected


async def test_pipelined_replies_out_of_step_are_caught() -> None:
    async def script(conn: RawConnection) -> None:
        await answer_with(conn, {"EHLO": ["250-mx.lab.test", "250 PIPELINING"],
                                 "MAIL": ["250 2.1.0 Ok", "354 surprise"]})

    async with await serve(scenario(script)) as server:
        session = session_for(server)
        await session.connect()
        await session.ehlo()
        steps = await session.pipeline([wire.mail(""), wire.rcpt("alice@lab.test")],
                                       quit_after=True)
        assert steps[0].reply is not None and steps[0].reply.code == 250
        assert steps[1].failure is not None and steps[1].failure.kind is FailureKind.PROTOCOL
        assert "354" in steps[1].failure.detail


# --- server text that must not steer a terminal -------------------------------------------------


def test_clean_keeps_line_breaks_and_replaces_controls() -> None:
    assert wire.clean("a\nb\tc") == "a\nb\tc"
    cleaned = wire.clean("x\x1b[2J\x1b]0;t\x07\x00\r\x7f\u009b31m y")
    assert not any(ord(ch) < 32 and ch not in "\n\t" for ch in cleaned)
    assert "\x7f" not in cleaned and "\u009b" not in cleaned
    assert cleaned.startswith("x\ufffd[2J") and cleaned.endswith(" y")


def test_clean_reads_latin1_replies_and_marks_what_fits_nothing() -> None:
    raw = "550 Empf\xe4nger unbekannt: M\xfcller".encode("latin-1")
    assert wire.clean(raw.decode("utf-8", "surrogateescape")) == "550 Empfänger unbekannt: Müller"
    assert wire.clean(b"ok \x81".decode("utf-8", "surrogateescape")) == "ok \ufffd"
    assert wire.clean("schön") == "schön"  # valid UTF-8 stays as it is


async def test_escape_codes_never_reach_the_steps() -> None:
    async with await serve(HOSTILE["escape_codes"]) as server:
        session = session_for(server)
        steps = [await session.connect(), await session.ehlo(),
                 await session.mail(""), await session.rcpt("alice@lab.test")]
        await session.quit()
        texts = [line for s in steps if s.reply for line in s.reply.lines]
        assert steps[-1].reply is not None and steps[-1].reply.code == 550
        for text in texts:
            assert not any(ord(ch) < 32 or 0x7f <= ord(ch) <= 0x9f for ch in text), text
        assert "[bold red]" in steps[-1].reply.text  # markup stays text; the renderer escapes it


async def test_non_utf8_replies_are_read() -> None:
    async with await serve(HOSTILE["non_utf8"]) as server:
        session = session_for(server)
        greeting = await session.connect()
        hello = await session.ehlo()
        await session.mail("")
        rcpt = await session.rcpt("alice@lab.test")
        await session.quit()
        assert greeting.reply is not None and greeting.reply.code == 220
        assert hello.reply is not None and "Grüß Gott" in hello.reply.text
        assert rcpt.reply is not None and rcpt.reply.code == 550
        assert rcpt.reply.enhanced == "5.1.1"
        assert "Empfänger unbekannt: Müller €\ufffd" in rcpt.reply.text


# --- command text that must never reach the wire ------------------------------------------------

CONTROL = st.characters(max_codepoint=0x1f) | st.just("\x7f")


@pytest.mark.parametrize("bad", ["a@b.example\r\nRCPT TO:<x@y.example>", "a@b.example\n",
                                 "a\x00@b.example", "a@b.example\rDATA", "a\x1b@b.example"])
async def test_session_refuses_control_characters_before_writing(bad: str) -> None:
    async with await serve(HOSTILE["strip_starttls"]) as server:
        session = session_for(server)
        await session.connect()
        await session.ehlo()
        for call in (lambda: session.mail(bad), lambda: session.rcpt(bad),
                     lambda: session.pipeline([wire.rcpt(bad)]),
                     lambda: session.mail("ok@b.example", [f"SIZE=1{bad}"])):
            with pytest.raises(UnsafeCommand):
                await call()
        await session.quit()
        await asyncio.sleep(0.05)
        assert [c.split(" ", 1)[0] for c in server.commands] == ["EHLO", "QUIT"]


@pytest.mark.parametrize("helo", ["probe\r\nMAIL FROM:<>", "probe\x00", "two words", ""])
def test_session_refuses_a_bad_helo_name(helo: str) -> None:
    with pytest.raises(UnsafeCommand):
        Session(Endpoint("127.0.0.1", 25), helo=helo)


class _LoopThread:
    """One event loop in a thread with a recording server, for property tests that run many
    examples against a live server (hypothesis drives synchronous functions)."""

    def __init__(self, script: Script) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server: LabServer = self.run(serve(scenario(script)))

    def run(self, coro: Awaitable[object]) -> object:
        async def wrapped() -> object:
            return await coro

        return asyncio.run_coroutine_threadsafe(wrapped(), self.loop).result(30)

    def close(self) -> None:
        self.run(self.server.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture(scope="module")
def recorder() -> Iterator[_LoopThread]:
    async def script(conn: RawConnection) -> None:
        await answer_with(conn, {"EHLO": ["250-mx.lab.test", "250 SMTPUTF8"]})

    thread = _LoopThread(script)
    yield thread
    thread.close()


# Addresses that are nearly right: a local part of any characters (quotes, spaces, controls,
# non-ASCII), at a domain of any shape, so that many examples pass validation.
ATEXT = st.characters(codec="ascii", categories=["L", "N"]) | st.sampled_from("!#$%&'*+/=?^_`{|}~-")
LOCAL = st.text(ATEXT, min_size=1, max_size=30) | st.text(
    st.characters(codec="utf-8"), min_size=1, max_size=30) | st.builds(
    lambda a, c, b: f'"{a}{c}{b}"', st.text(max_size=10), CONTROL | st.sampled_from(' "\\'),
    st.text(max_size=10))
DOMAIN = st.sampled_from(["example.org", "bücher.example", "[192.0.2.1]",
                          "[IPv6:2001:db8::1]", "xn--bcher-kva.example", "a.b.c.example"])
NEAR_ADDRESS = st.builds(lambda local, domain, tail: f"{local}@{domain}{tail}", LOCAL, DOMAIN,
                         st.sampled_from(["", "", "", "", " ", "\r\nRCPT TO:<x@y.example>",
                                          "\n", "\x00", "."]))


def test_whatever_the_user_types_one_command_is_one_line_on_the_wire(
        recorder: _LoopThread) -> None:
    """Validation first, as the CLI does; what passes goes through a real Session to a real
    server, which must see exactly the commands we meant, each on one line."""
    server = recorder.server
    passed: list[str] = []

    async def converse(smtp_form: str) -> list[str]:
        session = Session(Endpoint(server.host, server.port), helo=HELO, timeout=5.0)
        await session.connect()
        await session.ehlo()
        steps = [await session.mail(smtp_form), await session.rcpt(smtp_form)]
        await session.quit()
        return [s.command or "" for s in steps]

    @settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.one_of(NEAR_ADDRESS, NEAR_ADDRESS, NEAR_ADDRESS, st.text(max_size=80)))
    def one(text: str) -> None:
        try:
            address = parse_address(text)
        except UsageError:
            return
        assert address is not None
        passed.append(text)
        before = len(server.commands)
        sent = recorder.run(converse(address.smtp))
        for _ in range(500):  # QUIT is written without waiting for its reply
            if len(server.commands) - before >= 4:
                break
            recorder.run(asyncio.sleep(0.01))
        assert server.commands[before:] == [f"EHLO {HELO}", *sent, "QUIT"]  # type: ignore[misc]

    one()
    # The property proves nothing if validation turned every example away.
    assert len(passed) >= 10, passed


@settings(max_examples=300)
@given(st.text(max_size=40), CONTROL, st.text(max_size=40))
def test_session_refuses_any_command_text_with_a_control_character(head: str, control: str,
                                                                    tail: str) -> None:
    session = Session(Endpoint("127.0.0.1", 9), helo=HELO)
    text = head + control + tail

    async def attempt() -> None:
        for call in (session.mail(text), session.rcpt(text),
                     session.pipeline([wire.mail(text)])):
            with pytest.raises(UnsafeCommand):
                await call

    asyncio.run(attempt())
    assert not session.connected and not session.tcp_connected  # nothing was even opened


# --- DATA ---------------------------------------------------------------------------------------


async def test_data_sends_the_message_once_with_dots_doubled() -> None:
    received: list[str] = []

    async def script(conn: RawConnection) -> None:
        await conn.send("220 mx.lab.test ESMTP")
        while (line := await conn.read_command()) is not None:
            verb = line.split(" ", 1)[0].upper()
            if verb == "DATA":
                await conn.send("354 End data with <CR><LF>.<CR><LF>")
                while (body := await conn.read_command()) not in (".", None):
                    assert body is not None
                    received.append(body)
                await conn.send("250 2.0.0 Ok: queued as 4ABCDEF123")
            elif verb == "QUIT":
                await conn.send("221 2.0.0 Bye")
                break
            else:
                await conn.send("250 2.0.0 Ok")

    async with await serve(scenario(script)) as server:
        session = session_for(server)
        await session.connect()
        await session.ehlo()
        await session.mail("probe@lab.test")
        await session.rcpt("alice@lab.test")
        first, end = await session.data(b"Subject: t\n\n.hidden\nline\r\n..two\n")
        await session.quit()
        assert first.reply is not None and first.reply.code == 354
        assert end.reply is not None and end.reply.code == 250, end
        assert end.reply.text.endswith("queued as 4ABCDEF123")
        assert received == ["Subject: t", "", "..hidden", "line", "...two"]
        assert [c for c in server.commands if c == "DATA"] == ["DATA"]


async def test_data_against_the_lab_mailbox_is_queued() -> None:
    async with await serve("mailbox") as server:
        session = session_for(server)
        await session.connect()
        await session.ehlo()
        await session.mail("probe@lab.test")
        await session.rcpt("alice@lab.test")
        steps = await session.data(b"Subject: hello\r\n\r\nbody\r\n")
        await session.quit()
        assert [s.reply.code for s in steps if s.reply] == [354, 250]
        assert len(server.queued) == 1


# --- deadlines ----------------------------------------------------------------------------------


async def test_the_deadline_cuts_a_stalled_handshake_short() -> None:
    async with await serve(HOSTILE["tls_stall"]) as server:
        loop = asyncio.get_running_loop()
        session = Session(Endpoint(server.host, server.port), helo=HELO, timeout=30.0,
                          deadline=loop.time() + 1.0)
        await session.connect()
        await session.ehlo()
        step = await session.starttls()
        assert step.failure is not None and step.failure.kind is FailureKind.DEADLINE, step
        assert not session.connected
        after = await session.ehlo()
        assert after.failure is not None and after.failure.kind is FailureKind.DEADLINE


@pytest.mark.parametrize("name,stage", [("no_banner", Stage.CONNECT),
                                        ("slowloris_reply", Stage.EHLO),
                                        ("drip_banner", Stage.CONNECT)])
async def test_the_deadline_ends_waits_longer_than_it(name: str, stage: Stage) -> None:
    async with await serve(HOSTILE[name]) as server:
        loop = asyncio.get_running_loop()
        session = Session(Endpoint(server.host, server.port), helo=HELO, timeout=30.0,
                          deadline=loop.time() + 0.8)
        steps = [await session.connect()]
        if steps[-1].failure is None:
            steps.append(await session.ehlo())
        last = steps[-1]
        assert last.stage is stage
        assert last.failure is not None and last.failure.kind is FailureKind.DEADLINE, last


async def test_no_step_starts_after_the_deadline() -> None:
    async with await serve("mailbox") as server:
        loop = asyncio.get_running_loop()
        session = Session(Endpoint(server.host, server.port), helo=HELO,
                          deadline=loop.time() - 1)
        step = await session.connect()
        assert step.failure is not None and step.failure.kind is FailureKind.DEADLINE
        assert server.connections == 0


# --- secrets ------------------------------------------------------------------------------------


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
async def test_auth_masks_credentials_even_with_a_redactor_for_something_else(
        mechanism: str) -> None:
    user, password = "carol@lab.test", "s3cret-Pa55word!"
    other = Redactor([("x", "another-secret-value")])
    async with await serve(HOSTILE["echo_auth"]) as server:
        session = session_for(server, redactor=other)
        steps = [await session.connect(), *await session.hello()]
        steps += await session.auth(user, password, mechanism)
        step = steps[-1]
        await session.quit()
    assert step.reply is not None and step.reply.code == 535
    text = "\n".join(f"{s.command} {s.reply.text if s.reply else ''}" for s in steps)
    assert MASK in text
    forms = [password, password.encode().hex(), base64.b64encode(password.encode()).decode(),
             base64.b64encode(f"\0{user}\0{password}".encode()).decode()]
    for form in forms:
        assert form not in text, form
    assert "another-secret-value" not in session.scrub("x another-secret-value y")


@pytest.fixture
async def echo_tls(cert: LabCert) -> AsyncIterator[LabServer]:
    async with await serve(HOSTILE["echo_auth"], cert=cert) as server:
        yield server


async def test_auth_after_starttls_against_an_echoing_server(echo_tls: LabServer) -> None:
    user, password = "dave", "Tr0ub4dor&3"
    session = session_for(echo_tls)
    await session.connect()
    await session.ehlo()
    assert session.capabilities is not None and not session.capabilities.auth_mechanisms
    start = await session.starttls()
    assert start.reply is not None and start.reply.code == 220 and session.encrypted
    await session.ehlo()
    assert session.capabilities is not None and "PLAIN" in session.capabilities.auth_mechanisms
    steps = await session.auth(user, password, "PLAIN")
    await session.quit()
    assert steps[-1].reply is not None and steps[-1].reply.code == 535
    assert password not in repr(steps)
    assert base64.b64encode(password.encode()).decode() not in repr(steps)


# --- the reply reader, with any bytes -------------------------------------------------------------

VERBS = ["CONNECT", "EHLO", "STARTTLS", "AUTH", "MAIL", "RCPT", "RSET", "NOOP", "DATA", ".",
         "QUIT"]


@settings(max_examples=400)
@given(st.sampled_from(VERBS), st.integers(min_value=-10**6, max_value=10**6),
       st.text(max_size=200) | st.binary(max_size=200).map(
           lambda b: b.decode("utf-8", "surrogateescape")))
def test_any_code_and_text_give_a_reply_or_a_protocol_failure(verb: str, code: int,
                                                               message: str) -> None:
    outcome = wire.to_reply(verb, code, message)
    if isinstance(outcome, Failure):
        assert outcome.kind is FailureKind.PROTOCOL
        text = outcome.detail
    else:
        assert outcome.code is not None and 200 <= outcome.code <= 599
        text = outcome.text
    text.encode("utf-8")  # no lone surrogate left
    assert not any(ord(ch) < 32 and ch not in "\n\t" or 0x7f <= ord(ch) <= 0x9f for ch in text)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=3000) | st.sampled_from(
    [b"250 ok\r\n", b"250-a\r\n", b"354 go\r\n", b"2500 x\r\n", b"\r\n", b"421 bye\r\n",
     b"250-" + b"x" * 9000, b"250 ok\r\n" + b"y" * 9000, b"\n"]), max_size=30),
       st.lists(st.sampled_from(["MAIL", "RCPT", "DATA", "RSET", "QUIT"]), min_size=1,
                max_size=5))
def test_reply_reader_takes_any_bytes(chunks: list[bytes], verbs: list[str]) -> None:
    reader = ReplyReader()
    got: list[RawReply | Failure] = []
    for chunk in chunks:
        reader.feed(chunk)
        while (item := reader.next()) is not None:
            got.append(item)
            if isinstance(item, Failure):
                break
        # Never more than a line's worth of bytes waits in the buffer.
        assert len(reader._buffer) <= MAX_LINE
        if reader.failure is not None:
            break
    failures = [item for item in got if isinstance(item, Failure)]
    # A failure is final: it is the last thing read, and nothing is parsed after it.
    assert len(failures) <= 1 and (not failures or got[-1] is failures[0])
    if failures:
        assert failures[0].kind in (FailureKind.PROTOCOL, FailureKind.REPLY_TOO_LONG)
        reader.feed(b"250 ok\r\n")
        assert reader.next() is failures[0]
    for raw, verb in zip((i for i in got if isinstance(i, RawReply)), verbs * 10, strict=False):
        assert 0 <= raw.code <= 999
        outcome = wire.to_reply(verb, raw.code, raw.text)
        assert isinstance(outcome, Reply) or outcome.kind is FailureKind.PROTOCOL
