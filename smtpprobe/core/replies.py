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

_DIAG = re.compile(r"^\s*Diagnostic-Code:\s*(?:[\w-]+\s*;)?\s*(.*)$", re.IGNORECASE)
_STATUS = re.compile(r"^\s*Status:\s*([245]\.\d{1,3}\.\d{1,3})\b", re.IGNORECASE)
# Postfix: "(in reply to RCPT TO command)"; Exim: "SMTP error from remote mail server after
# RCPT TO:<x>:" or "after end of data:".
_IN_REPLY_TO = re.compile(
    r"\(?\s*in\s+reply\s+to\s+(?:end\s+of\s+)?(MAIL\s+FROM|RCPT\s+TO|DATA|EHLO|HELO|STARTTLS"
    r"|AUTH|QUIT|RSET)(?:\s+command)?\s*\)?",
    re.IGNORECASE,
)
_EXIM_AFTER = re.compile(
    r"error from remote mail server after\s+(MAIL\s+FROM|RCPT\s+TO|end\s+of\s+data|DATA|EHLO"
    r"|HELO|STARTTLS|AUTH|initial connection)[^\n]*?:\s*$",
    re.IGNORECASE | re.MULTILINE,
)
_STAGE_OF_COMMAND = {
    "MAIL FROM": Stage.MAIL,
    "RCPT TO": Stage.RCPT,
    "DATA": Stage.DATA,
    "END OF DATA": Stage.DATA,
    "EHLO": Stage.EHLO,
    "HELO": Stage.EHLO,
    "STARTTLS": Stage.STARTTLS,
    "AUTH": Stage.AUTH,
    "QUIT": Stage.QUIT,
    "RSET": Stage.QUIT,
    "INITIAL CONNECTION": Stage.CONNECT,
}
# Phrases with which MTAs and webmailers quote the remote server inside a bounce text; the
# reply follows on the same line or, when the phrase ends the line, on the next one.
_QUOTED = re.compile(
    r"(?:\bsaid|\breturned|response from the remote server was|the error that the other server"
    r" returned was|server replied|refused to talk to me|error from remote mail server after"
    r"[^\n]*?)\s*:?\s*['\"]?([1-5]\d\d[ -].*)?$",
    re.IGNORECASE,
)
_SENDMAIL_IN = re.compile(r"^\s*<<<\s*([45]\d\d[ -].*)$")
_REPLY_START = re.compile(r"^['\"]?([1-5]\d\d[ -].*)$")


@dataclass(frozen=True, slots=True)
class Extracted:
    """The reply found in a pasted text, and the stage the text names, if any."""

    reply_text: str
    stage: Stage | None
    from_bounce: bool


def _stage_of(name: str) -> Stage | None:
    return _STAGE_OF_COMMAND.get(" ".join(name.upper().split()))


def _unfold(text: str) -> str:
    """Join continuation lines (leading white space) to the line before, as RFC 5322 folding
    and Postfix's wrapped bounce lines need."""
    return re.sub(r"\n[ \t]+", " ", text)


def _tidy(reply: str) -> str:
    reply = _IN_REPLY_TO.sub("", reply).strip()
    return reply.rstrip("'\"").strip()


def extract_reply(text: str) -> Extracted:
    """Find the server's reply in whatever a user pasted: a bare reply or a bounce message.

    A delivery status notification's `Diagnostic-Code:` line wins; then a reply quoted after
    "said:", "Remote Server returned", Exim's "SMTP error from remote mail server after ...:",
    Sendmail's "<<<" transcript lines; `Status:` alone gives an enhanced code. Postfix's
    "(in reply to RCPT TO command)" and Exim's "after RCPT TO" tell the stage.
    """
    text = text[:MAX_TEXT].replace("\r\n", "\n").replace("\r", "\n")
    flat = _unfold(text)
    stage_match = _IN_REPLY_TO.search(flat)
    exim = _EXIM_AFTER.search(text) or _EXIM_AFTER.search(flat)
    stage = _stage_of(stage_match.group(1)) if stage_match else (
        _stage_of(exim.group(1)) if exim else None)
    if stage is None and "refused to talk to me" in flat.lower():
        stage = Stage.CONNECT  # Postfix's words for a rejected greeting

    lines = flat.split("\n")
    for line in lines:
        diag = _DIAG.match(line)
        if diag and diag.group(1).strip():
            return Extracted(_tidy(diag.group(1)), stage, True)

    raw_lines = text.split("\n")
    for index, line in enumerate(raw_lines):
        quoted = _QUOTED.search(line)
        if not quoted:
            continue
        if quoted.group(1):
            # Postfix wraps long lines: the rest of the reply is on the indented lines below.
            rest = [quoted.group(1).strip()]
            for more in raw_lines[index + 1:]:
                if more[:1] in (" ", "\t") and more.strip() and not _QUOTED.search(more):
                    rest.append(more.strip())
                else:
                    break
            return Extracted(_tidy(" ".join(rest)), stage, True)
        following = [line for line in raw_lines[index + 1:]]
        while following and not following[0].strip():
            following.pop(0)
        start = _REPLY_START.match(following[0].strip()) if following else None
        if start:
            rest = [start.group(1).strip()]
            for more in following[1:]:
                # A wrapped reply goes on in indented lines until a blank line.
                if more[:1] in (" ", "\t") and more.strip():
                    rest.append(more.strip())
                else:
                    break
            return Extracted(_tidy(" ".join(rest)), stage, True)

    sendmail = [m.group(1) for m in map(_SENDMAIL_IN.match, raw_lines) if m]
    if sendmail:
        return Extracted(_tidy(sendmail[-1]), stage, True)

    for line in lines:
        status = _STATUS.match(line)
        if status:
            return Extracted(status.group(1), stage, True)

    if stage is not None:
        return Extracted(_tidy(flat), stage, True)
    return Extracted(text.strip(), None, False)
