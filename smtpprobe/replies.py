"""Pure parsing of what servers and users hand us: replies, EHLO lists, pasted bounces.

Every function here takes any string and returns a value; none of them raises on bad input.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .models import Capabilities, Reply, Stage

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

_DIAG = re.compile(r"^\s*Diagnostic-Code:\s*(?:[\w-]+\s*;)?\s*(.*)$", re.IGNORECASE)
_STATUS = re.compile(r"^\s*Status:\s*([245]\.\d{1,3}\.\d{1,3})\b", re.IGNORECASE)
_IN_REPLY_TO = re.compile(
    r"in reply to (?:end of )?(MAIL FROM|RCPT TO|DATA|EHLO|HELO|STARTTLS|AUTH|QUIT|RSET)"
    r"(?: command)?",
    re.IGNORECASE,
)
_STAGE_OF_COMMAND = {
    "MAIL FROM": Stage.MAIL,
    "RCPT TO": Stage.RCPT,
    "DATA": Stage.DATA,
    "EHLO": Stage.EHLO,
    "HELO": Stage.EHLO,
    "STARTTLS": Stage.STARTTLS,
    "AUTH": Stage.AUTH,
    "QUIT": Stage.QUIT,
    "RSET": Stage.QUIT,
}
# Phrases with which MTAs and webmailers quote the remote server inside a bounce text.
_QUOTED = re.compile(
    r"(?:said|returned|response from the remote server was|the error that the other server"
    r" returned was|server replied|remote server replied|host .{1,200}? said)\s*[:']?\s*"
    r"['\"]?([1-5]\d\d[ -].*)$",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class Extracted:
    """The reply found in a pasted text, and the stage the text names, if any."""

    reply_text: str
    stage: Stage | None
    from_bounce: bool


def extract_reply(text: str) -> Extracted:
    """Find the server's reply in whatever a user pasted: a bare reply or a bounce message.

    A delivery status notification's `Diagnostic-Code:` line wins; `Status:` alone gives an
    enhanced code; Postfix's "(in reply to RCPT TO command)" tells the stage.
    """
    text = text[:MAX_TEXT]
    stage_match = _IN_REPLY_TO.search(text)
    stage = _STAGE_OF_COMMAND.get(stage_match.group(1).upper()) if stage_match else None

    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    for i, line in enumerate(lines):
        diag = _DIAG.match(line)
        if diag:
            # RFC 3464 2.3.6: the value may continue on folded lines (leading white space).
            parts = [diag.group(1).strip()]
            for more in lines[i + 1 :]:
                if more[:1] in (" ", "\t") and more.strip():
                    parts.append(more.strip())
                else:
                    break
            return Extracted(" ".join(p for p in parts if p), stage, True)

    for line in lines:
        quoted = _QUOTED.search(line)
        if quoted:
            return Extracted(quoted.group(1).strip().strip("'\"").strip(), stage, True)

    for line in lines:
        status = _STATUS.match(line)
        if status:
            return Extracted(status.group(1), stage, True)

    if stage is not None:
        # A Postfix-style bounce line: "host mx.example[192.0.2.1] said: 550 5.1.1 ... (in
        # reply to RCPT TO command)": keep the reply, drop the trailer.
        cleaned = _IN_REPLY_TO.sub("", text).replace("()", "").strip()
        return Extracted(cleaned, stage, True)
    return Extracted(text.strip(), None, False)
