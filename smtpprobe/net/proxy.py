"""A TCP connection through a SOCKS5 proxy (RFC 1928, login RFC 1929), with python-socks.

`open_via` returns the connected socket, positioned right after the proxy's CONNECT reply,
so the session goes on exactly as after its own TCP handshake; or a `Failure` that names the
proxy, never the target, when the proxy is the one that stopped it: unreachable, wanting a
login, refusing the connection by its rules, or failing to reach the target onward.

python-socks is imported here, on the first connection through a proxy, not at start-up.
"""

from __future__ import annotations

import os
import socket

from smtpprobe.core.wire import shorten
from smtpprobe.models import Failure, FailureKind, Proxy

# RFC 1928 6: the reply field of a refused CONNECT.
_ONWARD = {
    3: "network unreachable",
    4: "host unreachable",
    5: "connection refused",
    6: "TTL expired",
}
_REFUSED = {
    1: "general SOCKS server failure",
    2: "connection not allowed by ruleset",
    7: "command not supported",
    8: "address type not supported",
}


def describe(code: int | None) -> str | None:
    """The RFC 1928 meaning of a CONNECT reply code."""
    if code is None:
        return None
    return _ONWARD.get(code) or _REFUSED.get(code)


def failure_of(proxy: Proxy, target: str, exc: BaseException) -> Failure:
    """The translation of python-socks' exceptions: what the proxy said, as data."""
    from python_socks import ProxyConnectionError, ProxyError, ProxyTimeoutError

    where = f"proxy {proxy.url}"
    if isinstance(exc, ProxyTimeoutError):
        return Failure(FailureKind.TIMEOUT, f"{where}: no connection to {target} through the "
                       f"proxy in time")
    if isinstance(exc, ProxyConnectionError):
        reason = os.strerror(exc.errno) if exc.errno else "cannot connect"
        return Failure(FailureKind.PROXY_UNREACHABLE, f"{where}: cannot connect to the proxy "
                       f"({shorten(str(reason), 80)})")
    if isinstance(exc, ProxyError):
        code = getattr(exc, "error_code", None)
        text = " ".join(str(exc).split())
        lowered = text.lower()
        if code in _ONWARD:
            return Failure(FailureKind.PROXY_ONWARD, f"{where}: could not reach {target} "
                           f"(SOCKS reply {code}: {_ONWARD[code]})")
        if code in _REFUSED:
            return Failure(FailureKind.PROXY_REFUSED, f"{where}: refused the connection to "
                           f"{target} (SOCKS reply {code}: {_REFUSED[code]})")
        if "authentication" in lowered:
            # "No acceptable authentication methods" (RFC 1928 3: X'FF'): a login is wanted
            # and none was given, or the given one was refused (RFC 1929 2: status not 0).
            what = ("refused the user name and password" if "failure" in lowered
                    else "wants a login smtpprobe did not offer" if proxy.user is None
                    else "accepts none of the login methods smtpprobe offers")
            return Failure(FailureKind.PROXY_AUTH, f"{where}: {what} ({shorten(text, 80)})")
        return Failure(FailureKind.PROXY_PROTOCOL, f"{where}: not a usable SOCKS5 answer "
                       f"({shorten(text, 80)})")
    if isinstance(exc, OSError):
        return Failure(FailureKind.PROXY_UNREACHABLE,
                       f"{where}: the connection to the proxy broke "
                       f"({shorten(exc.strerror or type(exc).__name__, 80)})")
    raise exc  # our own fault


async def open_via(proxy: Proxy, address: str, port: int, *, name: str | None,
                   timeout: float, source_address: str | None = None
                   ) -> socket.socket | Failure:
    """A socket connected to `address`:`port` through `proxy`, or why not.

    With `remote_dns` (socks5h) and a host name, the proxy is given the name (the proxy's
    resolver picks the address); otherwise the address the caller resolved.
    """
    from python_socks import ProxyType
    from python_socks.async_.asyncio import Proxy as SocksProxy

    host = name if (proxy.remote_dns and name) else address
    target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    client = SocksProxy(ProxyType.SOCKS5, proxy.host, proxy.port, username=proxy.user,
                        password=proxy.password, rdns=proxy.remote_dns)
    try:
        local = (source_address, 0) if source_address else None
        sock = await client.connect(host, port, timeout=max(timeout, 0.001), local_addr=local)
    except Exception as exc:  # noqa: BLE001 - translated, or re-raised by failure_of
        return failure_of(proxy, target, exc)
    sock.setblocking(False)
    return sock
