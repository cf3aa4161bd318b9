"""Pure validation of what users type: mail addresses, server specs, ports, IP addresses.

Everything is checked before any network traffic. Errors are `UsageError` with one line that
names the problem; the CLI prints it and exits with code 2. Whatever passes here can be put on
the wire without a chance of SMTP command injection (no CR, LF or NUL survives).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from smtpprobe.errors import UsageError

# RFC 5321 4.5.3.1: limits on the parts of a path.
MAX_LOCAL = 64
MAX_DOMAIN = 255
MAX_PATH = 256

# RFC 5322 3.2.3 atext, plus UTF-8 for RFC 6531 (SMTPUTF8) local parts.
_ATEXT = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-\u0080-\U0010FFFF]+$")
_LABEL = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
# C0 and C1 controls and DEL; line and paragraph separators; bidirectional overrides, which
# make text display as something it is not; and lone surrogates, which is how Python passes
# on bytes from the command line that were not UTF-8.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069"
                      "\ud800-\udfff]")
_SURROGATE = re.compile("[\ud800-\udfff]")


# Characters that take no room on screen: Unicode format characters (category Cf: zero-width
# space and joiners, word joiner, byte-order mark, soft hyphen, left/right marks ...) and the
# other invisible ones users paste from spreadsheets and web pages. The bidirectional
# overrides among them are refused, not removed (_CONTROL): they make text look like
# something else.
_STRIPPABLE_EXTRA = frozenset("\u034f\u115f\u1160\u17b4\u17b5\u180b\u180c\u180d\u180e"
                              "\u3164\uffa0\ufe00\ufe01\ufe02\ufe03\ufe04\ufe05\ufe06\ufe07"
                              "\ufe08\ufe09\ufe0a\ufe0b\ufe0c\ufe0d\ufe0e\ufe0f")


def _invisible(ch: str) -> bool:
    import unicodedata

    return (unicodedata.category(ch) == "Cf" or ch in _STRIPPABLE_EXTRA) and \
        not _CONTROL.match(ch)


def strip_invisible(text: str) -> tuple[str, tuple[str, ...]]:
    """`text` without invisible characters, and the names of those removed ("U+200B ZERO
    WIDTH SPACE"), for a warning. A byte-order mark at the start of a file is one of them."""
    if text.isascii():
        return text, ()
    import unicodedata

    removed: list[str] = []
    kept: list[str] = []
    for ch in text:
        if _invisible(ch):
            name = f"U+{ord(ch):04X} {unicodedata.name(ch, 'unnamed')}"
            if name not in removed:
                removed.append(name)
        else:
            kept.append(ch)
    return "".join(kept), tuple(removed)


def address_part(text: str) -> str:
    """The address of a line as people paste it: `Name <addr>`, `"Name" <addr>`, `<addr>` or
    the address alone."""
    stripped = text.strip()
    if stripped.endswith(">") and "<" in stripped:
        inner = stripped[stripped.rfind("<") + 1:-1]
        if "@" in inner or not inner.strip():
            return inner.strip()
    return stripped


@dataclass(frozen=True, slots=True)
class Address:
    local: str  # as typed (a quoted local part keeps its quotes)
    domain: str  # as typed, without brackets for literals
    ascii_domain: str  # IDNA A-label form, or the literal's IP address
    literal: str | None = None  # the IP address of a domain literal ("user@[192.0.2.1]")

    @property
    def smtp(self) -> str:
        """The mailbox as it goes into MAIL FROM / RCPT TO (domain in ASCII)."""
        if self.literal is not None:
            ip = ipaddress.ip_address(self.literal)
            tag = "IPv6:" if ip.version == 6 else ""
            return f"{self.local}@[{tag}{self.literal}]"
        return f"{self.local}@{self.ascii_domain}"

    @property
    def needs_smtputf8(self) -> bool:
        return not self.local.isascii()

    def __str__(self) -> str:
        return f"{self.local}@[{self.domain}]" if self.literal else f"{self.local}@{self.domain}"


def _shown(text: str) -> str:
    """A safe rendering of user input inside an error message (one line, bounded)."""
    text = repr(text)
    return text if len(text) <= 80 else text[:77] + "..."


def check_domain(domain: str) -> str:
    """A domain's ASCII form (IDNA 2008 with UTS 46 mapping), or UsageError."""
    if not domain:
        raise UsageError("the domain is empty")
    if _CONTROL.search(domain):
        raise UsageError(f"domain {_shown(domain)} contains a control character")
    if domain.endswith("."):
        raise UsageError(f"domain {_shown(domain)} must not end with a dot")
    if ".." in domain or domain.startswith("."):
        raise UsageError(f"domain {_shown(domain)} has an empty label")
    if any(ch.isspace() for ch in domain):
        raise UsageError(f"domain {_shown(domain)} contains white space")
    if domain.isascii():
        ascii_domain = domain.lower()
    else:
        import idna  # imported for international names only (start-up time)

        try:
            ascii_domain = idna.encode(domain, uts46=True).decode("ascii")
        except idna.IDNAError as exc:
            raise UsageError(f"domain {_shown(domain)} is not a valid internationalised "
                             f"name: {exc}") from None
        except UnicodeError:
            raise UsageError(f"domain {_shown(domain)} is not a valid internationalised "
                             f"name") from None
    if len(ascii_domain) > MAX_DOMAIN:
        raise UsageError(f"domain {_shown(domain)} is longer than {MAX_DOMAIN} characters")
    labels = ascii_domain.split(".")
    for label in labels:
        if not _LABEL.fullmatch(label):
            raise UsageError(f"domain {_shown(domain)} has an invalid label {_shown(label)}")
        if label.startswith("xn--"):
            # An A-label must decode to a valid U-label (RFC 5891 5.4).
            import idna

            try:
                idna.decode(label)
            except (idna.IDNAError, UnicodeError):
                raise UsageError(f"domain {_shown(domain)} is not a valid internationalised "
                                 f"name: {_shown(label)} does not decode") from None
    if len(labels) < 2:
        raise UsageError(f"domain {_shown(domain)} needs at least two labels (like example.org)")
    if labels[-1].isdigit():
        raise UsageError(f"domain {_shown(domain)} looks like an IP address: write it as "
                         f"a literal, user@[{domain}]")
    return ascii_domain


def _check_literal(text: str) -> str:
    # RFC 5321 4.1.3: "[192.0.2.1]" or "[IPv6:2001:db8::1]".
    inner = text[1:-1]
    if inner[:5].lower() == "ipv6:":
        try:
            return str(ipaddress.IPv6Address(inner[5:]))
        except ValueError:
            raise UsageError(f"{_shown(text)} is not a valid IPv6 address literal") from None
    try:
        return str(ipaddress.IPv4Address(inner))
    except ValueError:
        raise UsageError(f"{_shown(text)} is not a valid address literal "
                         f"(use [192.0.2.1] or [IPv6:2001:db8::1])") from None


def _check_local(local: str, whole: str) -> None:
    if not local:
        raise UsageError(f"address {_shown(whole)} has an empty local part")
    if len(local.encode("utf-8")) > MAX_LOCAL:
        raise UsageError(f"the local part of {_shown(whole)} is longer than {MAX_LOCAL} "
                         f"bytes (RFC 5321 4.5.3.1.1)")
    if local.startswith('"'):
        # RFC 5321 4.1.2 Quoted-string: printable ASCII, with backslash pairs.
        if len(local) < 2 or not local.endswith('"'):
            raise UsageError(f"address {_shown(whole)} has an unterminated quoted local part")
        body = local[1:-1]
        i = 0
        while i < len(body):
            ch = body[i]
            if ch == "\\":
                if i + 1 >= len(body):
                    raise UsageError(f"address {_shown(whole)} ends its quoted part with '\\'")
                i += 2
                continue
            if ch == '"':
                raise UsageError(f"address {_shown(whole)} has a stray quote in its local part")
            i += 1
        return
    if local.startswith(".") or local.endswith(".") or ".." in local:
        raise UsageError(f"address {_shown(whole)} has a misplaced dot in its local part")
    for atom in local.split("."):
        if not _ATEXT.fullmatch(atom):
            bad = next((ch for ch in atom if not _ATEXT.fullmatch(ch)), atom[:1])
            raise UsageError(f"address {_shown(whole)} has a character {_shown(bad)} that "
                             f"needs quoting in its local part")


def check_text(text: str) -> None:
    """UsageError when `text` holds what must never reach the wire or the screen: bytes that
    were not UTF-8, control characters, bidirectional overrides."""
    if _SURROGATE.search(text):
        raise UsageError(f"address {_shown(text)} contains bytes that are not UTF-8")
    if _CONTROL.search(text):
        raise UsageError(f"address {_shown(text)} contains a control character (CR, LF, NUL "
                         f"or similar)")


def parse_address(text: str, *, allow_empty: bool = False) -> Address | None:
    """Validate a mail address as a user typed it. `allow_empty` accepts "" and "<>" (the null
    reverse-path of RFC 5321 4.5.5) and returns None for it."""
    if not isinstance(text, str):
        raise UsageError("the address must be text")
    if _SURROGATE.search(text):
        raise UsageError(f"address {_shown(text)} contains bytes that are not UTF-8")
    if _CONTROL.search(text):
        raise UsageError(f"address {_shown(text)} contains a control character (CR, LF, NUL "
                         f"or similar)")
    hidden = next((ch for ch in text if not ch.isascii() and _invisible(ch)), None)
    if hidden is not None:
        raise UsageError(f"address {_shown(text)} contains an invisible character "
                         f"(U+{ord(hidden):04X}): it would go into RCPT and change the address")
    stripped = text.strip()
    if stripped.startswith("<") and stripped.endswith(">"):
        stripped = stripped[1:-1].strip()
    if stripped == "":
        if allow_empty:
            return None
        raise UsageError("the address is empty")
    if len(stripped.encode("utf-8")) > MAX_PATH:
        raise UsageError(f"address {_shown(text)} is longer than {MAX_PATH} bytes "
                         f"(RFC 5321 4.5.3.1.3)")
    if "@" not in stripped:
        raise UsageError(f"address {_shown(text)} has no '@'")
    local, _, domain = stripped.rpartition("@")
    if not local.startswith('"') and "@" in local:
        raise UsageError(f"address {_shown(text)} has more than one '@'")
    if not local.startswith('"') and any(ch.isspace() for ch in local):
        raise UsageError(f"address {_shown(text)} contains white space")
    _check_local(local, text)
    if domain.startswith("[") and domain.endswith("]"):
        ip = _check_literal(domain)
        return Address(local=local, domain=ip, ascii_domain=ip, literal=ip)
    try:
        ascii_domain = check_domain(domain)
    except UsageError as exc:
        raise UsageError(f"address {_shown(text)}: {exc}") from None
    return Address(local=local, domain=domain, ascii_domain=ascii_domain)


def parse_port(value: int | str) -> int:
    try:
        port = int(value)
    except (TypeError, ValueError):
        raise UsageError(f"port {_shown(str(value))} is not a number") from None
    if not 1 <= port <= 65535:
        raise UsageError(f"port {port} is outside 1-65535")
    return port


def parse_server(spec: str, *, default_port: int) -> tuple[str, int]:
    """'host', 'host:port', '192.0.2.1:25', '[2001:db8::1]:25' or a bare IPv6 address."""
    spec = spec.strip()
    if not spec or _CONTROL.search(spec) or any(ch.isspace() for ch in spec):
        raise UsageError(f"server {_shown(spec)} is empty or contains white space or "
                         f"control characters")
    host, port_text = spec, ""
    if spec.startswith("["):
        end = spec.find("]")
        if end == -1:
            raise UsageError(f"server {_shown(spec)} has an unclosed '['")
        host, rest = spec[1:end], spec[end + 1:]
        if rest and not rest.startswith(":"):
            raise UsageError(f"server {_shown(spec)}: expected ':PORT' after ']'")
        port_text = rest[1:]
        try:
            host = str(ipaddress.IPv6Address(host))
        except ValueError:
            raise UsageError(f"server {_shown(spec)}: {_shown(host)} is not an IPv6 address") \
                from None
    elif spec.count(":") == 1:
        host, port_text = spec.split(":")
    elif spec.count(":") > 1:
        try:
            host = str(ipaddress.IPv6Address(spec))
        except ValueError:
            raise UsageError(f"server {_shown(spec)}: write IPv6 with a port as "
                             f"[2001:db8::1]:25") from None
    port = parse_port(port_text) if port_text else default_port
    if not is_ip(host):
        host = check_host(host)
    return host, port


def check_host(host: str) -> str:
    """A host name's ASCII form; a single label such as 'localhost' is allowed here."""
    if host.endswith("."):
        host = host[:-1]
    if "." not in host:
        if not _LABEL.fullmatch(host):
            raise UsageError(f"host {_shown(host)} is not a valid host name")
        if host.isdigit():
            raise UsageError(f"host {_shown(host)} looks like a number, not a host name or "
                             f"an IP address")
        return host.lower()
    return check_domain(host)


def is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def parse_ip(text: str, *, what: str = "address") -> str:
    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        raise UsageError(f"{what} {_shown(text)} is not an IPv4 or IPv6 address") from None


def parse_helo(name: str) -> str:
    """The EHLO argument: a host name or an address literal (RFC 5321 4.1.1.1)."""
    if _CONTROL.search(name) or any(ch.isspace() for ch in name) or not name:
        raise UsageError(f"HELO name {_shown(name)} is empty or contains white space or "
                         f"control characters")
    if name.startswith("[") and name.endswith("]"):
        _check_literal(name)
        return name
    return check_host(name)


def of_family(addresses: tuple[str, ...], family: int | None) -> tuple[str, ...]:
    """The addresses of one IP version (-4 / -6: 4 or 6); all of them for None."""
    if family is None:
        return addresses
    return tuple(a for a in addresses if ipaddress.ip_address(a).version == family)
