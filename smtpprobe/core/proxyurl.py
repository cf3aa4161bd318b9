"""`--proxy socks5://[user@]host[:port]` and `socks5h://...`: the proxy as a value.

A password in the URL is refused: argv is visible to every user of the machine and lands in
shell histories and CI logs, so the proxy password comes from the environment or a file like
every other secret (docs/security.md). The error never repeats what was given after the user
name.
"""

from __future__ import annotations

from urllib.parse import unquote

from smtpprobe.core.address import check_host, is_ip, parse_port
from smtpprobe.errors import UsageError
from smtpprobe.models import Proxy

DEFAULT_PORT = 1080  # RFC 1928 3


def parse_proxy_url(url: str, *, password: str | None = None, source: str = "") -> Proxy:
    """The proxy of `url`; `password` (from a secret source) goes with its user name."""
    scheme, sep, rest = url.strip().partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in ("socks5", "socks5h"):
        raise UsageError("--proxy: use socks5://[user@]host:port or socks5h://[user@]host:port")
    login, at, hostport = rest.rpartition("@")
    user: str | None = None
    if at:
        if ":" in login:
            # Not echoed: what follows the colon is a password.
            raise UsageError("--proxy: a password in the URL is refused (it would be visible "
                             "in the process list); use --proxy-password-env NAME, "
                             "--proxy-password-file FILE or $SMTPPROBE_PROXY_PASSWORD")
        user = unquote(login)
        if not user or len(user) > 255 or any(ord(ch) < 32 or ord(ch) == 127 for ch in user):
            raise UsageError("--proxy: the user name is empty, too long (RFC 1929: 255 bytes) "
                             "or has a control character")
    hostport = hostport.rstrip("/")
    if "/" in hostport or "?" in hostport or "#" in hostport:
        raise UsageError("--proxy: a SOCKS proxy URL has no path: socks5://host:port")
    if hostport.startswith("["):
        host, close, tail = hostport[1:].partition("]")
        if not close or not is_ip(host) or ":" not in host:
            raise UsageError("--proxy: not an IPv6 address in brackets")
        port_text = tail.removeprefix(":") if tail.startswith(":") else None
        if tail and not tail.startswith(":"):
            raise UsageError("--proxy: expected :PORT after the IPv6 address")
    else:
        host, colon, port_text_ = hostport.partition(":")
        port_text = port_text_ if colon else None
        if not host:
            raise UsageError("--proxy: no host")
        if not is_ip(host):
            host = check_host(host)
    if port_text is not None and not port_text.isdigit():
        raise UsageError("--proxy: the port must be a number")
    port = parse_port(int(port_text)) if port_text is not None else DEFAULT_PORT
    if password is not None:
        if user is None:
            raise UsageError("--proxy: a proxy password was given but the URL names no user "
                             "(socks5://USER@host:port)")
        if not password or len(password.encode()) > 255:
            raise UsageError(f"the proxy password from {source or 'its source'} is empty or "
                             f"longer than 255 bytes (RFC 1929)")
    return Proxy(host=host, port=port, remote_dns=scheme == "socks5h", user=user,
                 password=password if user is not None else None, source=source)
