"""Pure parsing of what servers and users hand us: replies, EHLO lists, pasted bounces.

Every function here takes any string and returns a value; none of them raises on bad input.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from smtpprobe.models import Capabilities, Reply, Stage

# RFC 3463 2: class "." subject "." detail; class is 2, 4 or 5. The syntax allows 1-3 digit
# subjects, but every registered subject is 0-7 (RFC 5248), and taking one digit keeps version
# numbers like "Exim 4.96.2" from passing for a status code. Exchange and some gateways write
# it as "#5.1.1"; it may stand anywhere in the first line.
_ENHANCED = re.compile(r"(?<![\w.])#?([245])\.([0-7])\.(\d{1,3})(?![\w]|\.\d)")
# One reply line: three digits, then "-" (more lines follow), " " or the end of the line.
_LINE = re.compile(r"^(\d{3})([ -]|$)(.*)$")
# A whole reply that starts with a code; anything before it (a prompt, a date, "smtp;") is noise.
_CODE_ANYWHERE = re.compile(r"(?<!\d)([1-5]\d\d)(?:[ -]|$)")

MAX_TEXT = 64 * 1024  # we never need more than this of anything a user or server hands us


def find_enhanced(text: str) -> str | None:
    """The first enhanced status code (RFC 3463) in a line of text, without a leading '#'."""
    match = _ENHANCED.search(text[:4096])
    if match is None:
        return None
    return ".".join(match.groups())


def from_code_and_message(code: int, message: str) -> Reply:
    """Build a Reply from a code and the message text, lines joined by newlines.

    This is the form aiosmtplib hands back (multi-line replies joined with '\\n').
    """
    lines = tuple(line.rstrip("\r") for line in message.split("\n")) if message else ()
    valid = 100 <= code <= 599
    return Reply(
        code=code if valid else None,
        enhanced=find_enhanced(lines[0]) if lines else None,
        lines=lines,
    )


def parse_reply(text: str) -> Reply:
    """Parse a reply as pasted or received: one or more lines, `550-` continuation form too.

    Lines that carry the same code as the first are joined; the text of a line starting with a
    code and '-' or ' ' is what follows the separator. Input without a valid three-digit code
    gives a Reply with code None, so that the text alone can still be classified.
    """
    text = text[:MAX_TEXT].replace("\r\n", "\n").replace("\r", "\n")
    raw_lines = [line.strip() for line in text.split("\n")]
    raw_lines = [line for line in raw_lines if line]
    if not raw_lines:
        return Reply(code=None, enhanced=None, lines=())

    first = _LINE.match(raw_lines[0])
    if first is None:
        # Not a reply line: maybe a code later in the line ("smtp; 550 5.1.1 ..." or
        # "Remote server returned '550 ...'"). Take the first code that starts a word.
        found = _CODE_ANYWHERE.search(raw_lines[0])
        if found is not None and found.start() < 200:
            rest = raw_lines[0][found.start():]
            return parse_reply("\n".join([rest, *raw_lines[1:]]))
        return Reply(code=None, enhanced=find_enhanced(raw_lines[0]), lines=tuple(raw_lines))

    code = int(first.group(1))
    lines: list[str] = []
    for line in raw_lines:
        match = _LINE.match(line)
        if match is not None and int(match.group(1)) == code:
            lines.append(match.group(3).strip())
        else:
            lines.append(line)
    if not 100 <= code <= 599:
        return Reply(code=None, enhanced=find_enhanced(raw_lines[0]), lines=tuple(raw_lines))
    return Reply(code=code, enhanced=find_enhanced(lines[0]), lines=tuple(lines))


def parse_ehlo(reply: Reply) -> Capabilities:
    """The extensions an EHLO reply advertises (RFC 5321 4.1.1.1): first line is the greeting."""
    extensions: list[tuple[str, str]] = []
    for line in reply.lines[1:]:
        keyword, _, params = line.strip().partition(" ")
        if not keyword:
            continue
        keyword = keyword.upper()
        # "AUTH=LOGIN PLAIN" is a pre-RFC 4954 form some servers still send.
        if keyword.startswith("AUTH="):
            params = keyword[5:] + (" " + params if params else "")
            keyword = "AUTH=LOGIN"
        extensions.append((keyword, params.strip()))
    return Capabilities(greeting=reply.first_line, extensions=tuple(extensions), esmtp=True)


# --- pasted bounces (RFC 3464 delivery status notifications and their look-alikes) ---------
#
# A pasted bounce comes from a stranger and may be anything, so the extraction works on lines
# and every pattern below is linear: each one starts with a literal word or is anchored to the
# start of a line, and repetition is bounded ({m,n}) or over a class the next item cannot
# match. Lines are compared with their white space collapsed (" ".join(line.split())), so no
# pattern needs `\s*` at all: runs of white space, the classic trap, never reach a regex.

# What of a pasted text extraction looks at: cli/explain.py cuts its input here (with a note).
BOUNCE_MAX = 1 << 20
# Lines of it scanned: a bounce says what it has to say at its top, and the original message
# it carries comes after that.
_SCAN_LINES = 20_000
_PHRASES_PER_LINE = 100  # phrase matches judged on one line; a bounce has one or two
_WRAP_LINES = 20  # continuation lines one reply may take
_NEAR = 4  # non-blank lines between an address line and the reply or heading it belongs to
_BLANKS = 3  # blank lines between a phrase that ends its line and the reply below it

_CMD = r"MAIL FROM|RCPT TO|DATA|EHLO|HELO|STARTTLS|AUTH|QUIT|RSET"
# Postfix: "(in reply to RCPT TO command)"; Exim: "SMTP error from remote mail server after
# RCPT TO:<x>:" or "after end of data:".
_IN_REPLY_TO = re.compile(rf"\(?in reply to (?:end of )?({_CMD})(?: command)?\)?", re.I)
_EXIM_AFTER = re.compile(
    rf"error from remote mail server after ({_CMD}|end of data|initial connection)", re.I)
_STAGE_OF_COMMAND = {
    "MAIL FROM": Stage.MAIL,
    "RCPT TO": Stage.RCPT,
    "DATA": Stage.DATA,
    "END OF DATA": Stage.DATA,
    ".": Stage.DATA,
    "EHLO": Stage.EHLO,
    "HELO": Stage.EHLO,
    "STARTTLS": Stage.STARTTLS,
    "AUTH": Stage.AUTH,
    "QUIT": Stage.QUIT,
    "RSET": Stage.QUIT,
    "INITIAL CONNECTION": Stage.CONNECT,
}
# Phrases with which MTAs and webmailers quote the remote server inside a bounce. The reply
# follows on the same line or, when the phrase ends the line, below it.
#   quoted:   Exchange's "Remote Server returned '...'" (German: "Remoteserver hat '...'
#             zurückgegeben"): the reply is what the quotes enclose.
#   labelled: a label whose text is the reply, with or without a code: Microsoft 365's
#             "Reported error:", Gmail's "The response from the remote server was:".
#   status:   Microsoft 365's "Status code: 550 5.1.1": the codes alone, the last resort
#             before a DSN's bare "Status:".
#   exim:     "SMTP error from remote mail server after RCPT TO:<x>:", the reply below.
#   said:     Postfix's "said:", "refused to talk to me:" and other words before a reply;
#             the text that follows must start with a code.
_PHRASE = re.compile(
    r"(?P<quoted>\bremote ?server returned\b|\bremoteserver hat\b)"
    r"|(?P<labelled>\breported error:|\bgemeldeter fehler:"
    r"|\bthe error that the other server returned was\b:?"
    r"|\bresponse from the remote server was\b:?|\bthe response was:"
    r"|\bantwort (?:des|vom) remote-?servers? (?:lautete|lautet|war)\b:?)"
    r"|(?P<status>\bstatus ?code:)"
    r"|(?P<exim>\berror from remote mail server after\b)"
    r"|(?P<said>\bsaid\b|\breturned\b|\bserver replied\b|\brefused to talk to me\b)",
    re.IGNORECASE,
)
# A word every phrase contains: lines without any are skipped by substring tests, which are
# far faster than trying the alternatives of _PHRASE at every position.
_PHRASE_WORDS = ("said", "returned", "replied", "refused to talk", "reported error",
                 "gemeldeter fehler", "response", "antwort", "status", "remote mail server",
                 "remoteserver hat")


def _has_phrase(norm: str) -> bool:
    low = norm.lower()
    return any(word in low for word in _PHRASE_WORDS) and _PHRASE.search(norm) is not None


_REPLY_AT = re.compile(r"[1-5]\d\d(?:[ -]|$)")  # a reply starts here (match, not search)
_CODE_AFTER_COLON = re.compile(r": ?['\"]?(?=[1-5]\d\d(?:[ -]|$))")
_STATUS_CODE = re.compile(r"['\"]?([1-5]\d\d)(?:[ -]#?([245]\.\d{1,3}\.\d{1,3})\b)?")
_DIAG = re.compile(r"diagnostic-code: ?(?:[\w-]{1,40} ?; ?)?", re.IGNORECASE)
_DSN_STATUS = re.compile(r"status: ?([245]\.\d{1,3}\.\d{1,3})\b", re.IGNORECASE)
_SENDMAIL_IN = re.compile(r"<<< ?(?=[45]\d\d(?:[ -]|$))")
_SENDMAIL_OUT = re.compile(
    r">>> ?(MAIL ?FROM|RCPT ?TO|DATA|EHLO|HELO|STARTTLS|AUTH|QUIT|RSET|\.$)", re.IGNORECASE)
# A header-like "Field: value" at the start of a line ends a reply that runs on unindented.
_FIELD = re.compile(r"[A-Za-z][A-Za-z0-9-]{0,40}: ")
_QUOTES = "'\"\u2018\u2019\u201a\u201c\u201d\u201e"

# Addresses and host names, bounded so that a long run of their characters costs no more
# than one pass. The local part of a quoted address ("a b"@x) is not taken.
_ADDR = r"[^\s<>()\[\],;:\"'@]{1,64}@[^\s<>()\[\],;:\"'@]{1,253}"
# A line that is an address and nothing else: "x@y", "<x@y>:", "Name (x@y)", "x@y<mailto:x@y>".
_ADDRESS_LINE = re.compile(
    rf"(?:[^<>()@:]{{0,80}}[<(])?(?:mailto:)?({_ADDR})[>)]?(?:<mailto:[^\s<>]{{1,320}}>)?[.:]?")
_RECIPIENT_DSN = re.compile(rf"(final|original)-recipient: ?(?:rfc822 ?; ?)?<?({_ADDR})",
                            re.IGNORECASE)
_RECIPIENT_FIELD = re.compile(
    rf"(?:recipient address|recipient|empfängeradresse|empfänger): ?<?({_ADDR})", re.IGNORECASE)
# Microsoft 365's "Your message to x@y couldn't be delivered", Gmail's "Your message wasn't
# delivered to x@y because ..." (German: "Ihre Nachricht wurde nicht an x@y zugestellt").
_RECIPIENT_SENTENCE = re.compile(
    rf"(?:\byour message to|\b(?:wasn't|was not|be) delivered to|\bihre nachricht an) <?({_ADDR})"
    rf"|\bnicht an <?({_ADDR})>? zugestellt", re.IGNORECASE)
# Headings with the failed addresses on the lines below them (Exchange, Exim, old Gmail).
_RECIPIENT_HEADING = re.compile(
    r"recipients or groups|empfänger oder gruppen|address\(es\) failed|following recipients?\b"
    r"|following address(?:es)?\b|folgenden? empfänger", re.IGNORECASE)
_HEADINGS_MAX = 20  # headings looked under; more are not a bounce's
# Lines that may name the reporting host (matched against the start, lower-cased).
_HOST_LINES = ("reporting-mta:", "generating server", "generierender serv", "dsn generated by",
               "dsn generiert von", "from:", "von:", "this is the mail", "hi. this is the qm")
_TALK = re.compile(r"refused to talk to me", re.IGNORECASE)
# A line break followed by white space and more text: a folded line (a blank line is not).
_FOLD = re.compile(r"\n[^\S\n]+(?=\S)")
_BLANK_RUN = re.compile(r"[^\S\n]+")
_PEEK = 400  # characters after a phrase that decide whether a reply follows
_POSTFIX_RECIPIENT = re.compile(rf"<({_ADDR})>:")
_RCPT_ADDRESS = re.compile(rf"rcpt to: ?<({_ADDR})>", re.IGNORECASE)
_HOST = r"\[?[\w][\w.:-]{0,252}\]?"
_REPORTING = re.compile(
    rf"(?:reporting-mta: ?(?:[\w-]{{1,20}} ?; ?)?|generating server: ?|generierender server: ?"
    rf"|dsn generated by: ?|dsn generiert von: ?)({_HOST})", re.IGNORECASE)
_POSTFIX_HOST = re.compile(rf"\bthis is the mail system at host ({_HOST})", re.IGNORECASE)
_QMAIL_HOST = re.compile(rf"hi\. this is the qmail-send program at ({_HOST})", re.IGNORECASE)
# qmail-remote says in its own words which step failed (qmail-remote.c): the greeting, HELO,
# MAIL, RCPT, DATA or the message itself.
_QMAIL_STAGE = re.compile(
    r"\bconnected to \S{1,260} but (?:(greeting failed)|(my name was rejected)"
    r"|(sender was rejected))|\bdoes not like (recipient)|\bfailed on (DATA) command"
    r"|\bfailed after I sent the (message)", re.IGNORECASE)
_QMAIL_STAGES = (Stage.CONNECT, Stage.EHLO, Stage.MAIL, Stage.RCPT, Stage.DATA, Stage.DATA)
_DAEMON_FROM = re.compile(rf"\b(?:mailer-daemon|postmaster)@({_HOST})", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Extracted:
    """The reply found in a pasted text, and what else the text says about it.

    `reply_text` is the decisive reply alone (the whole text when none was found); `stage` the
    command the text names, if any; `recipient` the address that bounced and `reporting_host`
    the server that wrote the bounce (Reporting-MTA, Exchange's "Generating server"), when
    the text names them.
    """

    reply_text: str
    stage: Stage | None
    from_bounce: bool
    recipient: str | None = None
    reporting_host: str | None = None


def _stage_of(name: str) -> Stage | None:
    return _STAGE_OF_COMMAND.get(" ".join(name.upper().split()))


def _tidy(reply: str) -> str:
    reply = _IN_REPLY_TO.sub("", reply).strip()
    return reply.rstrip("'\"").strip()


def _address(found: str | None) -> str | None:
    """An address as a bounce names it, or None when it does not look like one."""
    if not found:
        return None
    found = found.rstrip(".")
    local, _, domain = found.rpartition("@")
    if not local or "." not in domain or ".." in domain or domain.startswith(("-", ".")):
        return None
    return found


def _host(found: str | None) -> str | None:
    if not found:
        return None
    found = found.rstrip(".:")
    return found if any(ch.isalnum() for ch in found) else None


def _closing(text: str) -> int | None:
    """Where the closing quote of Exchange's "returned '...'" is in this line, if it ends it."""
    end = text.rstrip(" .")
    if end.lower().endswith("zurückgegeben"):
        end = end[: -len("zurückgegeben")].rstrip()
    if end and end[-1] in _QUOTES:
        return len(end) - 1
    return None


def _exchange_inner(body: str) -> str:
    """Older Exchange quotes a whole DSN line: '<mx.example.net #5.0.0 smtp;550 5.1.1 ...>'."""
    body = body.strip()
    if body.startswith("<") and body.endswith(">"):
        body = body[1:-1].strip()
        at = body.lower().find("smtp;")
        if at >= 0:
            body = body[at + 5:].strip()
    return body


def _group(found: re.Match[str] | None, *numbers: int) -> str | None:
    """The first of these groups that took part in the match, or None without a match."""
    if found is None:
        return None
    return next((found.group(n) for n in numbers if found.group(n) is not None), None)


class _Bounce:
    """One pass over the lines of a pasted text, collecting what `extract_reply` returns.

    Work per line is bounded by the line's length: a phrase is judged by the few characters
    after it (`_PEEK`), the rest of the line is taken once, for the reply that is kept, and the
    look-arounds (lines above or below) are bounded in number and tried a bounded number of
    times.
    """

    def __init__(self, text: str) -> None:
        self.raws = text.split("\n", _SCAN_LINES)[:_SCAN_LINES]
        self.norms = [" ".join(raw.split()) for raw in self.raws]
        self.count = len(self.raws)
        self.reply: str | None = None  # the best reply found so far ...
        self.rank = 99  # ... its rank (lower is better) ...
        self.at = -1  # ... and the line that introduced it
        self.stage: Stage | None = None  # a stage only that reply names (Sendmail's ">>>")
        self.recipients: dict[int, str] = {}  # rank -> the first address found at that rank
        self.hosts: dict[int, str] = {}
        self.headings = 0
        self.seen = False  # something only a bounce says

    # -- lines --------------------------------------------------------------------------------

    def indent(self, index: int) -> int:
        raw = self.raws[index]
        return len(raw) - len(raw.lstrip())

    def next_text(self, index: int) -> int | None:
        """The next non-blank line after `index`, at most a few blank lines down."""
        for j in range(index + 1, min(index + 2 + _BLANKS, self.count)):
            if self.norms[j]:
                return j
        return None

    def gather(self, index: int, first: str, *, folded: bool, phrases: bool = False) -> str:
        """A reply that starts with `first` on line `index`, with the lines that continue it.

        `folded` (Postfix's wrapped lines, a DSN field): indented lines continue it, except one
        with a phrase of its own when `phrases`. Otherwise the reply stands on lines of its own
        (Exim, Gmail): lines indented at least as far continue it, and an unindented reply runs
        on until a blank line, a "Field: value" line or a "--" separator. A line that starts
        with the reply's code is its next line (a multi-line reply); others are wraps.
        """
        code = first[:3] if _REPLY_AT.match(first) else None
        base = self.indent(index)
        out = [first]
        size = len(first)
        for j in range(index + 1, min(index + 1 + _WRAP_LINES, self.count)):
            norm = self.norms[j]
            if not norm or size > MAX_TEXT:
                break
            depth = self.indent(j)
            if folded:
                if depth == 0 or (phrases and _has_phrase(norm)):
                    break
            elif depth < base or (depth == 0 and (_FIELD.match(norm) or norm.startswith("--"))):
                break
            same = code is not None and norm.startswith(code) and norm[3:4] in ("", " ", "-")
            out.append(("\n" if same else " ") + norm)
            size += len(norm)
        return "".join(out)

    def offer(self, rank: int, index: int, reply: str | None,
              stage: Stage | None = None) -> bool:
        """A reply introduced on line `index`: the best rank wins, the first one among equals."""
        if reply is None or not reply.strip() or rank >= self.rank:
            return False
        self.reply, self.rank, self.at, self.stage = reply, rank, index, stage
        return True

    def recipient(self, rank: int, found: str | None) -> None:
        address = _address(found)
        if address is not None:
            self.seen = True
            self.recipients.setdefault(rank, address)

    def host(self, rank: int, found: str | None) -> None:
        host = _host(found)
        if host is not None:
            self.seen = True
            self.hosts.setdefault(rank, host)

    # -- the scan -----------------------------------------------------------------------------

    def scan(self) -> None:
        for index, norm in enumerate(self.norms):
            if not norm:
                continue
            head = norm[:20].lower()
            if head.startswith("diagnostic-code:"):
                self.seen = True
                if self.rank > 0:
                    start = _DIAG.match(norm)
                    value = norm[start.end():] if start else ""
                    if value:
                        self.offer(0, index, self.gather(index, value, folded=True))
            elif head.startswith(("final-recipient:", "original-recipient:")):
                found = _RECIPIENT_DSN.match(norm)
                if found:
                    self.recipient(0 if found.group(1).lower() == "final" else 1, found.group(2))
            elif head.startswith("status:"):
                self.offer(6, index, _group(_DSN_STATUS.match(norm), 1))
            elif norm.startswith("<<<"):
                self.sendmail(index, norm)
            elif not norm.startswith(">>>"):
                self.facts(index, norm, head)
                if self.rank > 1:
                    self.phrases(index, norm)

    def sendmail(self, index: int, norm: str) -> None:
        found = _SENDMAIL_IN.match(norm)
        if found is None or self.rank < 3:
            return
        # The last "<<<" reply of a Sendmail transcript is the one that failed; the ">>>" line
        # above it says which command it answered.
        stage: Stage | None = None
        for j in range(index - 1, max(index - 1 - _NEAR, -1), -1):
            command = _SENDMAIL_OUT.match(self.norms[j])
            if command:
                name = command.group(1).upper().replace("MAILFROM", "MAIL FROM")
                stage = _stage_of(name.replace("RCPTTO", "RCPT TO"))
                self.recipient(2, _group(_RCPT_ADDRESS.search(self.norms[j][:400]), 1))
                break
        self.rank = 99  # a later "<<<" line replaces an earlier one
        self.offer(3, index, norm[found.end():], stage)

    def facts(self, index: int, norm: str, head: str) -> None:
        """The recipient and the reporting host, as far as this line names them."""
        if head.startswith(_HOST_LINES):
            if head.startswith(("from:", "von:")):
                self.host(2, _group(_DAEMON_FROM.search(norm[:400]), 1))
            elif head.startswith("this is the mail"):
                self.host(1, _group(_POSTFIX_HOST.match(norm[:400]), 1))
            elif head.startswith("hi. this is the qm"):
                self.host(1, _group(_QMAIL_HOST.match(norm[:400]), 1))
            else:
                self.host(0, _group(_REPORTING.match(norm), 1))
            return
        below = self.norms[index + 1] if index + 1 < self.count else ""
        if "@" in norm[:2000] or "@" in below[:400]:
            if len(norm) <= 400 and ":" in norm[:40]:
                self.recipient(1, _group(_RECIPIENT_FIELD.match(norm), 1))
            if 3 not in self.recipients:
                # Gmail's "wasn't delivered to x@y because" may be folded after any word.
                pair = norm[:2000] + " " + below[:400] if below else norm[:2000]
                self.recipient(3, _group(_RECIPIENT_SENTENCE.search(pair), 1, 2))
        if (4 not in self.recipients and self.headings < _HEADINGS_MAX
                and _RECIPIENT_HEADING.search(norm[:400])):
            self.headings += 1
            self.recipient(4, self.address_line_below(index))

    def address_line(self, index: int) -> str | None:
        norm = self.norms[index]
        return _group(_ADDRESS_LINE.fullmatch(norm), 1) if len(norm) <= 400 else None

    def address_line_below(self, index: int) -> str | None:
        lines = 0
        for j in range(index + 1, min(index + 1 + 2 * _NEAR, self.count)):
            if self.norms[j]:
                found = self.address_line(j)
                lines += 1
                if found or lines >= _NEAR:
                    return found
        return None

    def phrases(self, index: int, norm: str) -> None:
        """A reply that a phrase on this line introduces (the first one in the text wins)."""
        low = norm.lower()
        if not any(word in low for word in _PHRASE_WORDS):
            return
        for count, match in enumerate(_PHRASE.finditer(norm)):
            if count >= _PHRASES_PER_LINE:
                return
            kind = match.lastgroup
            peek = norm[match.end(): match.end() + _PEEK]
            start = match.end() + len(peek) - len(peek.lstrip(" :"))
            peek = norm[start: start + _PEEK]
            ended = start >= len(norm)  # the phrase ends the line: the reply is below
            if kind == "status":
                if ended:
                    below = self.next_text(index)
                    peek = self.norms[below][:_PEEK] if below is not None else ""
                codes = _STATUS_CODE.match(peek)
                if codes:
                    self.offer(5, index, " ".join(x for x in codes.groups() if x))
                continue
            reply: str | None = None
            if kind == "quoted" and peek[:1] and peek[0] in _QUOTES:
                reply = _exchange_inner(self.quoted(index, norm[start + 1:]))
            elif kind == "labelled" and peek.strip(_QUOTES + " "):
                reply = self.gather(index, norm[start:].strip(_QUOTES + " "), folded=True)
            elif kind == "labelled" and ended:
                below = self.next_text(index)
                if below is not None:
                    reply = self.gather(below, self.norms[below].lstrip(_QUOTES), folded=False)
            elif kind == "exim":
                reply = self.exim(index, norm, start)
            else:  # said, or a quoted phrase without quotes: a code must follow
                reply = self.said(index, norm, start, ended)
            if self.offer(1, index, reply):
                return

    def quoted(self, index: int, body: str) -> str:
        """What Exchange's quotes enclose: to the quote that ends this line or one below."""
        end = _closing(body)
        if end is not None:
            return body[:end]
        parts = [body]
        for j in range(index + 1, min(index + 1 + _WRAP_LINES, self.count)):
            norm = self.norms[j]
            if not norm:
                break
            end = _closing(norm)
            if end is not None:
                parts.append(norm[:end])
                return " ".join(parts)
            parts.append(norm)
        return body  # no closing quote: the line as it is

    def said(self, index: int, norm: str, start: int, ended: bool) -> str | None:
        if not ended:
            skip = len(norm[start: start + 4]) - len(norm[start: start + 4].lstrip(_QUOTES))
            if _REPLY_AT.match(norm, start + skip):
                return self.gather(index, norm[start + skip:], folded=True, phrases=True)
            return None
        below = self.next_text(index)
        if below is None:
            return None
        first = self.norms[below].lstrip(_QUOTES)
        return self.gather(below, first, folded=False) if _REPLY_AT.match(first) else None

    def exim(self, index: int, norm: str, start: int) -> str | None:
        # "after RCPT TO:<x>: 550 ..." on one line, or the reply on the next line, possibly
        # behind older Exim's "host mx.example.net [192.0.2.1]: ".
        peek = norm[start: start + _PEEK]
        self.recipient(2, _group(_RCPT_ADDRESS.search(peek), 1))
        found = _CODE_AFTER_COLON.search(peek)
        if found:
            return self.gather(index, norm[start + found.end():], folded=True, phrases=True)
        if not peek.endswith(":") or start + len(peek) < len(norm):
            return None
        below = self.next_text(index)
        if below is None:
            return None
        first = self.norms[below]
        if not _REPLY_AT.match(first) and first[:5].lower() == "host ":
            found = _CODE_AFTER_COLON.search(first[:_PEEK])
            first = first[found.end():] if found else first
        return self.gather(below, first, folded=False) if _REPLY_AT.match(first) else None

    # -- after the scan -----------------------------------------------------------------------

    def near_reply(self) -> None:
        """The recipient next to the decisive reply: Postfix's "<x@y>: host ... said:" on its
        line, or Exchange's and Exim's address line just above it."""
        if self.at < 0:
            return
        self.recipient(2, _group(_POSTFIX_RECIPIENT.match(self.norms[self.at]), 1))
        lines = 0
        for j in range(self.at - 1, max(self.at - 1 - 2 * _NEAR, -1), -1):
            if self.norms[j] and 2 not in self.recipients and lines < _NEAR:
                self.recipient(2, self.address_line(j))
                lines += 1

    def folded(self) -> str:
        """The text with each folded line joined to the one above (RFC 5322 folding, Postfix's
        wrapped lines) and its white space collapsed: what the stage phrases are looked for in,
        and the text of a bounce that names a stage but quotes no reply."""
        text = _FOLD.sub(" ", "\n".join(self.raws))
        return _BLANK_RUN.sub(" ", text)

    def command_stage(self, folded: str) -> Stage | None:
        """The stage the text names: Postfix's "(in reply to ... command)" anywhere, else
        Exim's "after ...", else Postfix's "refused to talk to me" (a rejected greeting)."""
        for pattern in (_IN_REPLY_TO, _EXIM_AFTER):
            found = pattern.search(folded)
            if found:
                return _stage_of(found.group(1))
        qmail = _QMAIL_STAGE.search(folded)
        if qmail:
            return _QMAIL_STAGES[qmail.lastindex - 1] if qmail.lastindex else None
        return Stage.CONNECT if _TALK.search(folded) else None


def extract_reply(text: str) -> Extracted:
    """Find the server's reply in whatever a user pasted: a bare reply or a bounce message.

    A delivery status notification's `Diagnostic-Code:` line wins; then a reply quoted after
    "Remote Server returned" (German: "Remoteserver hat ... zurückgegeben"), Microsoft 365's
    "Reported error:", Gmail's "The response from the remote server was:", Postfix's
    "said:", Exim's "SMTP error from remote mail server after ...:", qmail's "Remote host
    said:" (the first of these in the text); then Sendmail's "<<<" transcript lines; then
    Microsoft 365's "Status code:" and a DSN's `Status:`, which give codes only. Postfix's
    "(in reply to RCPT TO command)", Exim's "after RCPT TO", qmail's "does not like
    recipient" and Sendmail's ">>>" tell the stage. The recipient comes from
    Final-Recipient, the address next to the reply or the bounce's own words; the reporting
    host from Reporting-MTA, Exchange's "Generating server:", Postfix's "This is the mail
    system at host" or qmail's "This is the qmail-send program at". Linear in the length of
    the text; looks at its first BOUNCE_MAX characters.
    """
    text = text[:BOUNCE_MAX].replace("\r\n", "\n").replace("\r", "\n")
    bounce = _Bounce(text)
    bounce.scan()
    bounce.near_reply()
    folded = bounce.folded()
    stage = bounce.command_stage(folded) or bounce.stage
    recipient = bounce.recipients[min(bounce.recipients)] if bounce.recipients else None
    host = bounce.hosts[min(bounce.hosts)] if bounce.hosts else None
    if bounce.reply is not None:
        return Extracted(_tidy(bounce.reply)[:MAX_TEXT], stage, True, recipient, host)
    if stage is not None:
        return Extracted(_tidy(folded.strip()[:MAX_TEXT]), stage, True, recipient, host)
    return Extracted(text.strip()[:MAX_TEXT], None, bounce.seen, recipient, host)
