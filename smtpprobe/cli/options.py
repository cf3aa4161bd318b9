"""Options and argument parsers shared by the commands. Each parser turns one option into a
value or a `UsageError` (one line, exit 2) before any traffic; heavy modules load inside."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn, Optional

import typer

from smtpprobe.cli.exits import USAGE

# Checks that need no typer live in cli/values.py (start-up uses them before typer loads).
from smtpprobe.cli.values import check_cafile as check_cafile
from smtpprobe.cli.values import default_helo as default_helo
from smtpprobe.cli.values import parse_helo_option as parse_helo_option
from smtpprobe.errors import UsageError

if TYPE_CHECKING:
    from smtpprobe.core.knowledge.load import KnowledgeBase
    from smtpprobe.models import Proxy, Stage

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
# Where users sit (issue 15): a SOCKS5 proxy, the address family.
ProxyOpt = Annotated[Optional[str], typer.Option(
    "--proxy", envvar="SMTPPROBE_PROXY", help="Connect through a SOCKS5 proxy: "
    "socks5://[USER@]HOST:PORT, or socks5h://... to let the proxy resolve host names. The "
    "password comes from --proxy-password-env, --proxy-password-file or "
    "$SMTPPROBE_PROXY_PASSWORD, never from the URL.", metavar="URL", show_default=False)]
ProxyPasswordEnvOpt = Annotated[Optional[str], typer.Option(
    "--proxy-password-env", help="Read the proxy password from this environment variable.",
    metavar="NAME", show_default=False)]
ProxyPasswordFileOpt = Annotated[Optional[str], typer.Option(
    "--proxy-password-file", help="Read the proxy password from the first line of FILE.",
    metavar="FILE", show_default=False)]
Ipv4Opt = Annotated[bool, typer.Option("-4", "--ipv4", help="Connect over IPv4 only.")]
AuthMechOpt = Annotated[Optional[str], typer.Option(
    "--auth-mech", help="Log in with this mechanism only: plain, login, cram-md5, or "
    "xoauth2 / oauthbearer (RFC 7628), for which the password options give the OAuth 2.0 "
    "access token instead of a password.", metavar="MECH", show_default=False)]
Ipv6Opt = Annotated[bool, typer.Option("-6", "--ipv6", help="Connect over IPv6 only.")]


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


def parse_proxy(url: str | None, password_env: str | None,
                password_file: str | None) -> Proxy | None:
    """--proxy with its password (cli/secrets.py); None without --proxy."""
    if not url:
        if password_env or password_file:
            raise UsageError("a proxy password source was given without --proxy")
        return None
    from smtpprobe.cli.secrets import PROXY_ENV, resolve_proxy_password
    from smtpprobe.core.proxyurl import parse_proxy_url

    password, source = resolve_proxy_password(password_env, password_file)
    proxy = parse_proxy_url(url)
    if proxy.user is None and source == f"${PROXY_ENV}":
        return proxy  # the default variable is set for another proxy: no login here
    return parse_proxy_url(url, password=password, source=source)


AUTH_MECHS = ("PLAIN", "LOGIN", "CRAM-MD5", "XOAUTH2", "OAUTHBEARER")


def parse_auth_mech(mech: str | None, user: str | None) -> str | None:
    """--auth-mech: one of AUTH_MECHS (upper case), None for the best one offered."""
    if not mech:
        return None
    wanted = mech.strip().upper()
    if wanted not in AUTH_MECHS:
        raise UsageError(f"--auth-mech {mech!r}: use one of "
                         f"{', '.join(m.lower() for m in AUTH_MECHS)}")
    if not user:
        raise UsageError("--auth-mech needs --user (the account to log in as)")
    return wanted


def parse_family(ipv4: bool, ipv6: bool) -> int | None:
    """-4 / -6: 4, 6, or None for both."""
    if ipv4 and ipv6:
        raise UsageError("-4 and -6 exclude each other")
    return 4 if ipv4 else 6 if ipv6 else None


def parse_nameservers(resolver: str | None) -> tuple[tuple[str, int], ...] | None:
    if not resolver:
        return None
    from smtpprobe.net.dns import parse_resolver

    try:
        return (parse_resolver(resolver),)
    except ValueError as exc:
        raise UsageError(f"--resolver: {exc}") from None


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
