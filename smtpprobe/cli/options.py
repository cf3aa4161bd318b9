"""Options and argument parsers shared by the commands. Each parser turns one option into a
value or a `UsageError` (one line, exit 2) before any traffic; heavy modules load inside."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn, Optional

import typer

from smtpprobe.cli.exits import USAGE
from smtpprobe.errors import UsageError

if TYPE_CHECKING:
    from smtpprobe.core.knowledge.load import KnowledgeBase
    from smtpprobe.models import Stage

# Stage values, not members: models.py (dozens of dataclasses) loads only when a command
# needs it, which keeps `--help` fast.
_STAGE_ALIASES = {
    "banner": "connect", "greeting": "connect", "helo": "ehlo",
    "tls": "starttls", "mail from": "mail", "mail_from": "mail",
    "rcpt to": "rcpt", "rcpt_to": "rcpt", "end of data": "data",
    "rset": "quit",
}

LangOpt = Annotated[Optional[str], typer.Option(
    "--lang", metavar="[de|en]", help="Output language (default: from the locale, else en).",
    show_default=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]
KnowledgeOpt = Annotated[Optional[Path], typer.Option(
    "--knowledge", help="Knowledge directory (default: $SMTPPROBE_KNOWLEDGE or the packaged one).",
    show_default=False, hidden=True)]  # for knowledge-base authors, not for users


HeloOpt = Annotated[Optional[str], typer.Option(
    "--helo", envvar="SMTPPROBE_HELO", help="Name to send in EHLO (default: this machine's "
    "name).", show_default=False)]
TimeoutOpt = Annotated[float, typer.Option("--timeout", help="Seconds to wait for each step.")]
SourceOpt = Annotated[Optional[str], typer.Option(
    "--source-address", help="Local IP address to connect from.", metavar="IP",
    show_default=False)]
CafileOpt = Annotated[Optional[Path], typer.Option(
    "--cafile", envvar="SMTPPROBE_CAFILE", help="PEM file of CA certificates to trust "
    "instead of the system store.", show_default=False)]
ResolverOpt = Annotated[Optional[str], typer.Option(
    "--resolver", envvar="SMTPPROBE_RESOLVER", help="DNS server to use instead of the "
    "system's.", metavar="HOST[:PORT]", show_default=False)]
AllowPrivateOpt = Annotated[bool, typer.Option(
    "--allow-private", help="Also connect to loopback, private and link-local addresses "
    "that a public name resolves to (skipped with a finding otherwise; names under .test, "
    ".localhost, .internal ... may always have them).")]
VerboseOpt = Annotated[bool, typer.Option("-v", "--verbose", help="Show the full transcript.")]


def default_helo() -> str:
    import socket

    from smtpprobe.core.address import check_host

    try:
        return check_host(socket.gethostname())
    except UsageError:
        return "localhost"


def parse_helo_option(helo: str | None) -> str:
    """--helo, or this machine's name."""
    from smtpprobe.core.address import parse_helo

    return parse_helo(helo) if helo else default_helo()


def warn_helo(helo: str | None, name: str, lang: str) -> None:
    """A warning on stderr when the EHLO name is not fully qualified: many servers refuse such
    an EHLO (RFC 5321 4.1.1.1 asks for the client's fully qualified domain name or an address
    literal). Called once every option is valid, right before the first traffic, so that a
    usage error stays the only line."""
    if "." in name or name.startswith("["):
        return
    from smtpprobe.report.words import text

    key = "warn.helo_given" if helo else "warn.helo_default"
    sys.stderr.write(f"smtpprobe: {text(key, lang, name=name)}\n")


def parse_source(source_address: str | None) -> str | None:
    """--source-address: an IP address this machine can actually send from."""
    if not source_address:
        return None
    from smtpprobe.core.address import parse_ip
    from smtpprobe.net.session import check_source_address

    source = parse_ip(source_address, what="source address")
    problem = check_source_address(source)
    if problem is not None:
        raise UsageError(f"--source-address {source}: cannot send from it ({problem})")
    return source


def parse_nameservers(resolver: str | None) -> tuple[tuple[str, int], ...] | None:
    if not resolver:
        return None
    from smtpprobe.net.dns import parse_resolver

    try:
        return (parse_resolver(resolver),)
    except ValueError as exc:
        raise UsageError(f"--resolver: {exc}") from None


_PEM_CERT = re.compile(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", re.S)


def check_cafile(cafile: Path | None) -> str | None:
    """--cafile must hold PEM certificates. Checked with the standard library only: the
    certificates themselves are parsed (with cryptography) after the first handshake."""
    if cafile is None:
        return None
    import ssl

    try:
        text = Path(cafile).read_bytes().decode("ascii", "replace")
    except OSError as exc:
        raise UsageError(f"--cafile {cafile}: {exc.strerror or exc}") from None
    blocks = _PEM_CERT.findall(text)
    if not blocks:
        raise UsageError(f"--cafile {cafile}: no PEM certificates in it")
    for block in blocks:
        try:
            der = ssl.PEM_cert_to_DER_cert(block)
        except ValueError:
            der = b""
        if der[:1] != b"\x30":  # an X.509 certificate is a DER SEQUENCE
            raise UsageError(f"--cafile {cafile}: a certificate in it is not valid PEM")
    return str(cafile)


def fail_usage(message: str) -> NoReturn:
    sys.stderr.write(f"smtpprobe: error: {message}\n")
    raise typer.Exit(USAGE)


def parse_stage(value: str | None) -> Stage | None:
    if value is None or value == "":
        return None
    from smtpprobe.models import Stage

    key = value.strip().lower()
    try:
        return Stage(_STAGE_ALIASES.get(key, key))
    except ValueError:
        names = ", ".join(s.value for s in Stage)
        raise UsageError(f"unknown stage {value!r} (use one of: {names})") from None


def resolve_lang(lang: str | None) -> str:
    if lang is None:
        from smtpprobe.report.words import default_lang

        return default_lang()
    if lang.lower() not in ("de", "en"):
        raise UsageError(f"unknown language {lang!r} (use de or en)")
    return lang.lower()


def load_kb(path: Path | None) -> KnowledgeBase:
    from smtpprobe.core.knowledge import load as knowledge

    return knowledge.load(path)
