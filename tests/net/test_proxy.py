"""net/proxy.py with scripted SOCKS5 answers (RFC 1928): what the client asks for (an address,
or with socks5h the name), and how every answer of a proxy becomes a failure that names the
proxy. The real proxies (dante, microsocks) are in tests/realmta/test_proxy_realmta.py.

The "proxy" here is a test-local asyncio server that plays one scripted exchange; after a
success reply it speaks as the target would (a 220 greeting), so a whole Session.connect runs
through it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest

from smtpprobe.models import FailureKind, Proxy
from smtpprobe.net.proxy import describe, open_via
from smtpprobe.net.session import Endpoint, Session


@dataclass
class Script:
    """What the fake proxy answers, and what it was asked."""

    method: int = 0  # 0 no login, 2 user/password, 0xFF none acceptable
    auth_status: int = 0
    reply: int = 0
    garbage: bool = False
    requests: list[tuple[str, int]] = field(default_factory=list)
    logins: list[tuple[bytes, bytes]] = field(default_factory=list)


async def _play(script: Script, reader: asyncio.StreamReader,
                writer: asyncio.StreamWriter) -> None:
    try:
        head = await reader.readexactly(2)
        await reader.readexactly(head[1])
        if script.garbage:
            writer.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")
            return
        writer.write(bytes([5, script.method]))
        if script.method == 0xFF:
            return
        if script.method == 2:
            _, ulen = await reader.readexactly(2)
            user = await reader.readexactly(ulen)
            (plen,) = await reader.readexactly(1)
            script.logins.append((user, await reader.readexactly(plen)))
            writer.write(bytes([1, script.auth_status]))
            if script.auth_status:
                return
        _, _, _, atyp = await reader.readexactly(4)
        if atyp == 1:
            host = str(ipaddress.IPv4Address(await reader.readexactly(4)))
        elif atyp == 4:
            host = str(ipaddress.IPv6Address(await reader.readexactly(16)))
        else:
            (length,) = await reader.readexactly(1)
            host = (await reader.readexactly(length)).decode()
        port = int.from_bytes(await reader.readexactly(2), "big")
        script.requests.append((host, port))
        writer.write(bytes([5, script.reply, 0, 1, 127, 0, 0, 1, 0, 25]))
        if script.reply == 0:
            writer.write(b"220 target.lab.test ESMTP via the proxy\r\n")
            await writer.drain()
            await reader.read(100)
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


@pytest.fixture
async def fake_proxy() -> AsyncIterator[Callable[[Script], Awaitable[int]]]:
    servers: list[asyncio.Server] = []

    async def start(script: Script) -> int:
        server = await asyncio.start_server(lambda r, w: _play(script, r, w), "127.0.0.1", 0)
        servers.append(server)
        return int(server.sockets[0].getsockname()[1])

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


async def test_socks5_asks_for_the_address(fake_proxy: Callable[..., Awaitable[int]]
                                           ) -> None:
    script = Script()
    port = await fake_proxy(script)
    sock = await open_via(Proxy("127.0.0.1", port), "192.0.2.7", 25, name="mx.example.test",
                          timeout=3)
    assert isinstance(sock, socket.socket)
    sock.close()
    assert script.requests == [("192.0.2.7", 25)]


async def test_socks5h_asks_for_the_name(fake_proxy: Callable[..., Awaitable[int]]
                                         ) -> None:
    script = Script()
    port = await fake_proxy(script)
    sock = await open_via(Proxy("127.0.0.1", port, remote_dns=True), "192.0.2.7", 25,
                          name="mx.example.test", timeout=3)
    assert isinstance(sock, socket.socket)
    sock.close()
    assert script.requests == [("mx.example.test", 25)]


async def test_socks5h_without_a_name_asks_for_the_address(
        fake_proxy: Callable[..., Awaitable[int]]) -> None:
    script = Script()
    port = await fake_proxy(script)
    sock = await open_via(Proxy("127.0.0.1", port, remote_dns=True), "2001:db8::25", 25,
                          name=None, timeout=3)
    assert isinstance(sock, socket.socket)
    sock.close()
    assert script.requests == [("2001:db8::25", 25)]


async def test_the_login_goes_to_the_proxy(fake_proxy: Callable[..., Awaitable[int]]
                                           ) -> None:
    script = Script(method=2)
    port = await fake_proxy(script)
    sock = await open_via(Proxy("127.0.0.1", port, user="probe", password="pw-1929"),
                          "192.0.2.7", 25, name=None, timeout=3)
    assert isinstance(sock, socket.socket)
    sock.close()
    assert script.logins == [(b"probe", b"pw-1929")]


@pytest.mark.parametrize("code,kind", [
    (1, FailureKind.PROXY_REFUSED), (2, FailureKind.PROXY_REFUSED),
    (3, FailureKind.PROXY_ONWARD), (4, FailureKind.PROXY_ONWARD),
    (5, FailureKind.PROXY_ONWARD), (6, FailureKind.PROXY_ONWARD),
    (7, FailureKind.PROXY_REFUSED), (8, FailureKind.PROXY_REFUSED)])
async def test_every_connect_reply(fake_proxy: Callable[..., Awaitable[int]], code: int,
                                   kind: FailureKind) -> None:
    port = await fake_proxy(Script(reply=code))
    failure = await open_via(Proxy("127.0.0.1", port), "192.0.2.7", 25, name=None, timeout=3)
    assert not isinstance(failure, socket.socket)
    assert failure.kind is kind
    assert f"proxy socks5://127.0.0.1:{port}" in failure.detail
    assert f"SOCKS reply {code}: {describe(code)}" in failure.detail
    assert "192.0.2.7:25" in failure.detail


async def test_a_login_is_wanted(fake_proxy: Callable[..., Awaitable[int]]) -> None:
    port = await fake_proxy(Script(method=0xFF))
    failure = await open_via(Proxy("127.0.0.1", port), "192.0.2.7", 25, name=None, timeout=3)
    assert not isinstance(failure, socket.socket)
    assert failure.kind is FailureKind.PROXY_AUTH
    assert "wants a login" in failure.detail


async def test_a_login_is_refused_and_the_password_is_not_shown(
        fake_proxy: Callable[..., Awaitable[int]]) -> None:
    port = await fake_proxy(Script(method=2, auth_status=1))
    proxy = Proxy("127.0.0.1", port, user="probe", password="pw-never-shown")
    failure = await open_via(proxy, "192.0.2.7", 25, name=None, timeout=3)
    assert not isinstance(failure, socket.socket)
    assert failure.kind is FailureKind.PROXY_AUTH
    assert "refused the user name and password" in failure.detail
    assert "pw-never-shown" not in failure.detail


async def test_not_a_socks_proxy(fake_proxy: Callable[..., Awaitable[int]]) -> None:
    port = await fake_proxy(Script(garbage=True))
    failure = await open_via(Proxy("127.0.0.1", port), "192.0.2.7", 25, name=None, timeout=3)
    assert not isinstance(failure, socket.socket)
    assert failure.kind is FailureKind.PROXY_PROTOCOL


async def test_no_proxy_listens() -> None:
    from smtpprobe.lab.hostile import closed_port

    port = closed_port()
    failure = await open_via(Proxy("127.0.0.1", port), "192.0.2.7", 25, name=None, timeout=3)
    assert not isinstance(failure, socket.socket)
    assert failure.kind is FailureKind.PROXY_UNREACHABLE
    assert "Connection refused" in failure.detail


async def test_a_silent_proxy_times_out_and_is_named(filtered_port: int) -> None:
    failure = await open_via(Proxy("127.0.0.1", filtered_port), "192.0.2.7", 25, name=None,
                             timeout=0.5)
    assert not isinstance(failure, socket.socket)
    assert failure.kind is FailureKind.TIMEOUT
    assert f"proxy socks5://127.0.0.1:{filtered_port}" in failure.detail


async def test_a_session_connects_through_the_proxy(
        fake_proxy: Callable[..., Awaitable[int]]) -> None:
    script = Script()
    port = await fake_proxy(script)
    session = Session(Endpoint("192.0.2.7", 25, "mx.example.test"), helo="probe.lab.test",
                      timeout=3, proxy=Proxy("127.0.0.1", port))
    try:
        step = await session.connect()
        assert step.reply is not None and step.reply.code == 220, step
        assert "via the proxy" in step.reply.text
        assert session.tcp_connected
    finally:
        await session.quit()
        session.close()
    assert script.requests == [("192.0.2.7", 25)]


async def test_a_session_reports_the_proxys_refusal(
        fake_proxy: Callable[..., Awaitable[int]]) -> None:
    port = await fake_proxy(Script(reply=2))
    session = Session(Endpoint("192.0.2.7", 25), helo="probe.lab.test", timeout=3,
                      proxy=Proxy("127.0.0.1", port))
    step = await session.connect()
    session.close()
    assert step.failure is not None and step.failure.kind is FailureKind.PROXY_REFUSED
    assert not session.tcp_connected
