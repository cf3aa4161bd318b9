"""The wire rules without a server: commands as data, SASL messages, dot-stuffing, which reply
fits which command, and the one reply reader fed scripted bytes (httpcore's MockStream idea)."""

from __future__ import annotations

import base64

import pytest

from smtpprobe.core import wire
from smtpprobe.core.wire import MAX_LINE, MAX_REPLY, RawReply, ReplyReader
from smtpprobe.errors import UnsafeCommand
from smtpprobe.models import Failure, FailureKind, Reply, Stage


def read_all(*chunks: bytes) -> list[RawReply | Failure]:
    """Everything a reader makes of these bytes, fed in these pieces."""
    reader = ReplyReader()
    out: list[RawReply | Failure] = []
    for chunk in chunks:
        reader.feed(chunk)
        while (item := reader.next()) is not None:
            out.append(item)
            if isinstance(item, Failure):
                return out
    return out


# --- commands are data ----------------------------------------------------------------------


def test_commands_carry_verb_stage_and_what_a_transcript_shows() -> None:
    mail = wire.mail("", ["SMTPUTF8"])
    assert (mail.verb, mail.stage, mail.shown) == ("MAIL", Stage.MAIL, "MAIL FROM:<> SMTPUTF8")
    assert mail.line() == b"MAIL FROM:<> SMTPUTF8\r\n"
    rcpt = wire.rcpt("j\u00f6rg@b\u00fccher.example")
    assert rcpt.line() == "RCPT TO:<j\u00f6rg@b\u00fccher.example>\r\n".encode()
    assert wire.rset().stage is Stage.MAIL  # its reply belongs with the transaction
    assert wire.helo("client.example").verb == "HELO"
    assert wire.helo("client.example").stage is Stage.EHLO


@pytest.mark.parametrize("bad", ["a@b\r\nDATA", "a@b\n", "a\x00b", "x\x1b[2J", "a\x7fb"])
def test_a_command_with_a_control_character_never_becomes_bytes(bad: str) -> None:
    for command in (wire.mail(bad), wire.rcpt(bad), wire.ehlo(bad), wire.mail("a@b", [bad])):
        with pytest.raises(UnsafeCommand):
            command.line()


def test_auth_initial_response_is_masked_when_shown() -> None:
    blob = wire.sasl_plain("alice", "s3cret")
    command = wire.auth("plain", blob)
    assert command.shown == f"AUTH PLAIN {wire.MASK}"
    assert command.line() == f"AUTH PLAIN {blob}\r\n".encode()
    assert blob not in command.shown


# --- SASL -----------------------------------------------------------------------------------


def test_sasl_plain_is_authzid_user_password_separated_by_nul() -> None:
    # RFC 4616 2: message = [authzid] UTF8NUL authcid UTF8NUL passwd
    assert base64.b64decode(wire.sasl_plain("tim", "tanstaaf")) == b"\0tim\0tanstaaf"


def test_sasl_login_is_each_answer_in_base64() -> None:
    assert wire.sasl_login("m\u00fcller") == base64.b64encode("m\u00fcller".encode()).decode()


def test_cram_md5_gives_the_rfc_2195_example_answer() -> None:
    challenge = base64.b64encode(b"<1896.697170952@postoffice.reston.mci.net>").decode()
    answer = wire.cram_md5("tim", "tanstaaftanstaaf", challenge)
    assert answer is not None
    assert base64.b64decode(answer) == b"tim b913a602c7eda7a495b4e6e7334d3890"


def test_cram_md5_with_a_challenge_that_is_not_base64() -> None:
    assert wire.cram_md5("tim", "x", "not base64!") is None


# --- the message after 354 ------------------------------------------------------------------


@pytest.mark.parametrize("message, sent", [
    (b"Subject: x\n\nhello\n", b"Subject: x\r\n\r\nhello\r\n.\r\n"),
    (b".leading dot\r\n..two\r\n", b"..leading dot\r\n...two\r\n.\r\n"),
    (b"no final newline", b"no final newline\r\n.\r\n"),
    (b"a\rb\r\n.\r\nc", b"a\r\nb\r\n..\r\nc\r\n.\r\n"),  # a lone "." line cannot end it early
])
def test_dot_stuffing(message: bytes, sent: bytes) -> None:
    assert wire.dot_stuffed(message) == sent


# --- which reply fits which command ---------------------------------------------------------


@pytest.mark.parametrize("verb, code, fits", [
    ("CONNECT", 220, True), ("CONNECT", 250, False), ("CONNECT", 554, True),
    ("EHLO", 250, True), ("EHLO", 220, False), ("EHLO", 354, False),
    ("STARTTLS", 220, True), ("STARTTLS", 250, False), ("STARTTLS", 454, True),
    ("AUTH", 334, True), ("AUTH", 235, True), ("AUTH", 250, False), ("AUTH", 535, True),
    ("MAIL", 250, True), ("MAIL", 235, False), ("MAIL", 221, False), ("MAIL", 354, False),
    ("RCPT", 251, True), ("RCPT", 252, True), ("RCPT", 550, True),
    ("DATA", 354, True), ("DATA", 250, False), ("DATA", 554, True),
    ("QUIT", 221, True), ("QUIT", 250, True),
])
def test_reply_fits_command(verb: str, code: int, fits: bool) -> None:
    assert wire.fits(verb, code) is fits


def test_a_reply_that_fits_nothing_is_a_protocol_failure() -> None:
    out = wire.to_reply("RCPT", 354, "go ahead")
    assert isinstance(out, Failure) and out.kind is FailureKind.PROTOCOL
    assert "out of step" in out.detail
    bad = wire.to_reply("MAIL", 999, "what")
    assert isinstance(bad, Failure) and "999" in bad.detail
    good = wire.to_reply("RCPT", 550, "5.1.1 <x@y> unknown\nsecond line")
    assert isinstance(good, Reply) and good.enhanced == "5.1.1"
    assert good.lines == ("5.1.1 <x@y> unknown", "second line")


def test_cleaning_keeps_line_breaks_and_masks_terminal_controls() -> None:
    assert wire.clean("a\nb\tc") == "a\nb\tc"
    assert "\x1b" not in wire.clean("x\x1b[2J y") and "\x9b" not in wire.clean("\u009b31m")
    assert wire.clean(b"550 Empf\xe4nger") == "550 Empf\u00e4nger"  # Latin-1 server text


# --- the one reply reader, fed scripted bytes -------------------------------------------------


def test_single_and_multiline_replies() -> None:
    assert read_all(b"250 ok\r\n") == [RawReply(250, "ok")]
    assert read_all(b"250-mx.example\r\n250-PIPELINING\r\n250 SIZE 1000\r\n") == [
        RawReply(250, "mx.example\nPIPELINING\nSIZE 1000")]


def test_replies_split_anywhere_and_joined_in_one_read() -> None:
    data = b"250-a\r\n250 b\r\n550 5.1.1 no\r\n221 bye\r\n"
    whole = read_all(data)
    assert whole == [RawReply(250, "a\nb"), RawReply(550, "5.1.1 no"), RawReply(221, "bye")]
    for cut in range(1, len(data)):
        assert read_all(data[:cut], data[cut:]) == whole
    assert read_all(*(bytes([b]) for b in data)) == whole


def test_bare_lf_and_a_code_without_text_are_accepted() -> None:
    # RFC 5321 4.2: "250" alone is a reply; many servers end lines with LF only.
    assert read_all(b"250\n354\r\n") == [RawReply(250, ""), RawReply(354, "")]


def test_a_multiline_reply_with_mixed_codes_is_a_protocol_error() -> None:
    [failure] = read_all(b"250-first\r\n550 second\r\n")
    assert isinstance(failure, Failure) and failure.kind is FailureKind.PROTOCOL


@pytest.mark.parametrize("junk", [b"hello there\r\n", b"25 short\r\n", b"250_x\r\n",
                                  b"\r\n", b"HTTP/1.1 400 Bad Request\r\n"])
def test_lines_outside_the_grammar_are_a_protocol_error(junk: bytes) -> None:
    out = read_all(b"250 ok\r\n" + junk + b"250 ok\r\n")
    assert out[0] == RawReply(250, "ok")
    assert isinstance(out[1], Failure) and out[1].kind is FailureKind.PROTOCOL
    assert len(out) == 2  # nothing after the break is parsed


def test_a_line_longer_than_the_limit_is_refused_without_waiting_for_its_end() -> None:
    reader = ReplyReader()
    reader.feed(b"250-" + b"x" * (MAX_LINE + 10))  # no newline yet
    failure = reader.next()
    assert isinstance(failure, Failure) and failure.kind is FailureKind.REPLY_TOO_LONG
    assert not reader.pending  # the buffer was given back
    reader.feed(b"250 ok\r\n")
    assert reader.next() is failure


def test_an_endless_multiline_reply_stops_at_the_reply_limit() -> None:
    line = b"250-" + b"y" * 1000 + b"\r\n"
    out = read_all(line * (MAX_REPLY // len(line) + 2) + b"250 end\r\n")
    assert len(out) == 1 and isinstance(out[0], Failure)
    assert out[0].kind is FailureKind.REPLY_TOO_LONG


def test_pending_tells_an_unfinished_reply() -> None:
    reader = ReplyReader()
    reader.feed(b"250-first\r\n250 se")
    assert reader.next() is None and reader.pending
    reader.feed(b"cond\r\n")
    assert reader.next() == RawReply(250, "first\nsecond") and not reader.pending


# --- shortening server text for display -------------------------------------------------------


def test_shorten_cuts_at_a_word_and_marks_the_cut() -> None:
    said = "550 5.1.1 <x@y.example>: Recipient address rejected: User unknown in local table"
    assert wire.shorten(said, 200) == said  # short enough: untouched
    cut = wire.shorten(said, 60)
    assert cut.endswith("\u2026") and len(cut) <= 60
    assert said.startswith(cut[:-1]) and said[len(cut) - 1] == " "  # ends on a word
    url = "see https://support.example.com/kb/blocklist-removal?ip=192.0.2.1&ref=smtp"
    assert wire.shorten(url, 40) == "see\u2026"  # never half a URL
    assert wire.shorten("x" * 100, 10) == "x" * 9 + "\u2026"  # no space at all: a plain cut
