"""The client's side of SMTP as rules without I/O (h11's lesson): commands as data, the one
reply grammar, which reply fits which command, SASL messages, dot-stuffing, and cleaning what
a server says before anyone reads it.

`net.session` moves the bytes; everything it decides about them is decided here, so the rules
are tested with scripted bytes and no server (tests/core/test_wire.py).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
from collections.abc import Sequence
from dataclasses import dataclass

from smtpprobe.core.replies import from_code_and_message
from smtpprobe.errors import UnsafeCommand
from smtpprobe.models import Failure, FailureKind, Reply, Stage

MASK = "****"

# aiosmtplib's limits (its protocol.py), which every reply read here keeps too.
MAX_LINE = 8192
MAX_REPLY = 32768

# What may never be part of a command line (RFC 5321 2.3.8: CR and LF only end a line).
_UNSAFE = re.compile(r"[\x00-\x1f\x7f]")
# C0 and C1 controls and DEL, except tab and the line feeds that separate reply lines.
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def safe(text: str) -> str:
    """`text` unchanged, or UnsafeCommand when it holds a control character (SMTP injection:
    a CR or LF would end our command and start one the user never asked for)."""
    if _UNSAFE.search(text):
        raise UnsafeCommand(f"refusing to send a command with a control character: "
                            f"{text.encode('unicode_escape').decode('ascii')[:80]}")
    return text


def shorten(text: str, limit: int) -> str:
    """`text` in at most `limit` characters: cut at a word boundary when one is near (never
    in the middle of a URL or a word if avoidable), and marked with "…" when cut."""
    if len(text) <= limit:
        return text
    head = text[: limit - 1]
    if not text[limit - 1].isspace():
        space = head.rfind(" ")
        if space > 0:  # the cut would split a word or a URL: end before it
            head = head[:space]
    return head.rstrip(" ,;:") + "\u2026"


def clean(raw: bytes | str) -> str:
    """Server text as printable Unicode, harmless on a terminal.

    A reply that is not UTF-8 is read as Windows-1252, which is what old servers with German or
    French texts send; bytes that fit neither become U+FFFD. Control characters (escape
    sequences that could clear a screen or retitle a window) become U+FFFD as well. Text given
    as str may carry undecodable bytes as surrogate escapes (aiosmtplib's form).
    """
    data = raw if isinstance(raw, bytes) else raw.encode("utf-8", "surrogateescape")
    try:
        decoded = data.decode("utf-8")
    except UnicodeDecodeError:
        decoded = data.decode("cp1252", "replace")
    return _CONTROLS.sub("\ufffd", decoded)


# --- commands as data ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Command:
    """One command line. `words` go on the wire joined by spaces; `shown` is what a transcript
    shows (secrets masked); `stage` is where its reply is classified."""

    verb: str  # the command its reply answers (RFC 5321 4.3.2), e.g. "MAIL", "AUTH"
    words: tuple[str, ...]
    stage: Stage
    shown: str

    def line(self) -> bytes:
        """The bytes to write, CRLF included; UnsafeCommand before anything is written."""
        return (" ".join(safe(word) for word in self.words) + "\r\n").encode("utf-8")


def _plain(verb: str, stage: Stage, *args: str) -> Command:
    words = (verb, *args)
    return Command(verb, words, stage, " ".join(words))


def ehlo(name: str) -> Command:
    return _plain("EHLO", Stage.EHLO, name)


def helo(name: str) -> Command:
    return _plain("HELO", Stage.EHLO, name)


def mail(sender: str, params: Sequence[str] = ()) -> Command:
    """MAIL FROM:<sender> with ESMTP parameters (RFC 5321 4.1.1.2); "" is the null sender."""
    return _plain("MAIL", Stage.MAIL, f"FROM:<{sender}>", *params)


def rcpt(address: str, params: Sequence[str] = ()) -> Command:
    return _plain("RCPT", Stage.RCPT, f"TO:<{address}>", *params)


def starttls() -> Command:
    return _plain("STARTTLS", Stage.STARTTLS)


def rset() -> Command:
    # RFC 5321 4.1.1.5: it ends a transaction, so its reply belongs with MAIL.
    return _plain("RSET", Stage.MAIL)


def noop() -> Command:
    return _plain("NOOP", Stage.QUIT)


def data() -> Command:
    return _plain("DATA", Stage.DATA)


def quit_() -> Command:
    return _plain("QUIT", Stage.QUIT)


def auth(mechanism: str, initial: str | None = None, *, secret: bool = True) -> Command:
    """AUTH MECH [initial-response] (RFC 4954 4); the initial response is masked when shown."""
    mechanism = mechanism.upper()
    if initial is None:
        return _plain("AUTH", Stage.AUTH, mechanism)
    shown = f"AUTH {mechanism} {MASK if secret else initial}"
    return Command("AUTH", ("AUTH", mechanism, initial), Stage.AUTH, shown)


def auth_line(response: str, shown: str) -> Command:
    """One line of a SASL exchange after a 334 (RFC 4954 4): base64, shown as `shown`."""
    return Command("AUTH", (response,), Stage.AUTH, shown)


# --- SASL messages (RFC 4616, draft-murchison-sasl-login, RFC 2195) ---------------------------


def _b64(text: str | bytes) -> str:
    raw = text.encode("utf-8") if isinstance(text, str) else text
    return base64.b64encode(raw).decode("ascii")


def sasl_plain(user: str, password: str) -> str:
    """PLAIN's one message: authorization identity (empty), user, password (RFC 4616 2)."""
    return _b64(f"\0{user}\0{password}")


def sasl_login(text: str) -> str:
    """LOGIN's answers are the user name and the password, each base64 on its own."""
    return _b64(text)


def cram_md5(user: str, password: str, challenge: str) -> str | None:
    """The answer to a CRAM-MD5 challenge (RFC 2195 2), None when the challenge is not base64."""
    try:
        raw = base64.b64decode(challenge.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    digest = hmac.new(password.encode("utf-8"), raw, "md5").hexdigest()
    return _b64(f"{user} {digest}")


# --- OAuth 2.0 bearer tokens: XOAUTH2 (Google's, Microsoft's) and OAUTHBEARER (RFC 7628) -------

OAUTH_MECHANISMS = ("OAUTHBEARER", "XOAUTH2")


def sasl_xoauth2(user: str, token: str) -> str:
    """XOAUTH2's one message: "user=" USER ^A "auth=Bearer " TOKEN ^A ^A, in base64 (the
    providers' documentation; the same key-value pairs as RFC 7628 3.1, without its header)."""
    return _b64(f"user={user}\x01auth=Bearer {token}\x01\x01")


def sasl_oauthbearer(user: str, token: str, *, host: str | None = None,
                     port: int | None = None) -> str:
    """OAUTHBEARER's client response (RFC 7628 3.1): the GS2 header "n,a=USER," (no channel
    binding; "," and "=" in the user name escaped as =2C and =3D, RFC 5801 4), then ^A-separated
    key-value pairs: host and port (optional), "auth=Bearer TOKEN", and a final ^A ^A."""
    authzid = user.replace("=", "=3D").replace(",", "=2C")
    pairs = [f"host={host}" if host else "", f"port={port}" if port else "",
             f"auth=Bearer {token}"]
    body = "\x01".join(p for p in pairs if p)
    return _b64(f"n,a={authzid},\x01{body}\x01\x01")


def oauth_abort(mechanism: str) -> str:
    """What the client sends after a 334 error challenge, so that the server can end the
    exchange with its final reply: OAUTHBEARER's dummy response is one ^A (RFC 7628 3.2.3);
    XOAUTH2's is an empty line (the providers' documentation)."""
    return _b64("\x01") if mechanism.upper() == "OAUTHBEARER" else ""


@dataclass(frozen=True, slots=True)
class OAuthError:
    """The provider's error in a 334 challenge (RFC 7628 3.2.2: a JSON object in base64)."""

    status: str
    scope: str | None = None
    schemes: str | None = None
    configuration: str | None = None  # "openid-configuration": where the issuer is described


def oauth_error(challenge: str) -> OAuthError | None:
    """The error a 334 challenge carries, or None when it is no base64 JSON object with a
    "status" (a server that sends something else gets the dummy response all the same)."""
    import json

    try:
        raw = base64.b64decode(challenge.strip(), validate=True)
        data = json.loads(raw.decode("utf-8"))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict) or "status" not in data:
        return None

    def text(key: str) -> str | None:
        value = data.get(key)
        return None if value is None else shorten(clean(str(value)), 200)

    return OAuthError(status=text("status") or "", scope=text("scope"),
                      schemes=text("schemes"), configuration=text("openid-configuration"))


# --- the message after 354 -------------------------------------------------------------------


def dot_stuffed(message: bytes) -> bytes:
    """The message as it goes after 354: CRLF line ends, a leading dot doubled, and the final
    "." line (RFC 5321 4.5.2, 4.1.1.4)."""
    lines = message.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    body = b"".join((b"." + line if line.startswith(b".") else line) + b"\r\n"
                    for line in lines)
    return body + b".\r\n"


# --- which reply fits which command -----------------------------------------------------------

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


def fits(verb: str, code: int) -> bool:
    """Whether `code` can be the answer to `verb`."""
    if code // 100 in (4, 5):
        return True
    allowed = _POSITIVE.get(verb)
    if allowed is not None:
        return code in allowed
    return code // 100 == 2 and code not in _NOT_FOR_OTHERS


def to_reply(verb: str, code: int, message: str) -> Reply | Failure:
    """A reply as data, or a protocol failure when it cannot be an answer to `verb`.

    `message` is the text of the reply's lines joined by newlines, as read.
    """
    text = clean(message)
    if not 200 <= code <= 599:
        # RFC 5321 4.2: three digits, the first 2-5 (SMTP has no 1yz replies).
        shown = f"{code:03d}" if 0 <= code <= 999 else str(code)
        return Failure(FailureKind.PROTOCOL, f"not an SMTP reply code: {shown} "
                       f"{text.splitlines()[0] if text else ''}"[:200].rstrip())
    if not fits(verb, code):
        first = text.splitlines()[0] if text else ""
        return Failure(FailureKind.PROTOCOL,
                       f"{code} {first}"[:120].rstrip() + f" is no answer to {verb}: the "
                       f"server's replies are out of step with our commands")
    return from_code_and_message(code, text)


# --- the one reply reader -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RawReply:
    """A complete reply as read: its code and the text of each line."""

    code: int
    text: str  # lines joined by newlines, undecodable bytes as surrogate escapes


class ReplyReader:
    """Replies out of bytes, for every path (one command or a pipelined group; RFC 2920 3.1).

    The grammar (RFC 5321 4.2): each line is three digits, then "-" when more lines follow, or
    a space or the end of the line on the last one; every line of a reply has the same code.
    Bytes go in with `feed`; `next` returns a complete reply, a `Failure` (the stream no longer
    follows the grammar or is too long; nothing after it is parsed), or None (need more bytes).
    """

    def __init__(self, *, max_line: int = MAX_LINE, max_reply: int = MAX_REPLY) -> None:
        self.max_line = max_line
        self.max_reply = max_reply
        self.failure: Failure | None = None
        self._buffer = bytearray()
        self._lines: list[str] = []
        self._size = 0  # bytes in _lines
        self._code: int | None = None

    @property
    def pending(self) -> bool:
        """Whether bytes of an unfinished reply are waiting."""
        return bool(self._buffer or self._lines)

    def feed(self, data: bytes) -> None:
        if self.failure is None:
            self._buffer.extend(data)

    def next(self) -> RawReply | Failure | None:
        while self.failure is None:
            end = self._buffer.find(b"\n")
            if end == -1:
                if len(self._buffer) > self.max_line:
                    return self._fail(Failure(FailureKind.REPLY_TOO_LONG,
                                              f"a reply line exceeded {self.max_line} bytes"))
                return None
            line = bytes(self._buffer[: end + 1])
            del self._buffer[: end + 1]
            self._size += len(line)
            if len(line) > self.max_line or self._size > self.max_reply:
                return self._fail(Failure(
                    FailureKind.REPLY_TOO_LONG, f"a reply exceeded {self.max_line} bytes per "
                    f"line or {self.max_reply} in all"))
            head, sep = line[:3], line[3:4]
            if not head.isdigit() or sep not in (b" ", b"-", b"\r", b"\n"):
                text = clean(line).strip()
                return self._fail(Failure(FailureKind.PROTOCOL, f"not an SMTP reply: {text[:160]}"))
            if self._code is not None and int(head) != self._code:
                # RFC 5321 4.2.1: every line of a multi-line reply carries the same code; the
                # evidence quotes both, so nobody reads the last line's code as the answer.
                text = clean(line).strip()
                first = clean(self._lines[0]).strip() if self._lines else ""
                return self._fail(Failure(
                    FailureKind.PROTOCOL, f"a reply that began with {self._code} "
                    f"({first[:60]}) went on with {head.decode()}: {text[:100]}; RFC 5321 "
                    f"4.2.1 wants the same code on every line"))
            self._code = int(head)
            self._lines.append(line[4:].strip(b" \t\r\n").decode("utf-8", "surrogateescape"))
            if sep != b"-":
                reply = RawReply(self._code, "\n".join(self._lines))
                self._lines, self._code, self._size = [], None, 0
                return reply
        return self.failure

    def _fail(self, failure: Failure) -> Failure:
        self.failure = failure
        self._buffer.clear()  # nothing more will be parsed: give the memory back
        self._lines = []
        return failure
