"""net/https.py: the bounded HTTPS GET of MTA-STS policies, against a TLS server in the test's
loop on 127.0.0.1 (lab certificate): verification, redirects refused, size and time bounds."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from smtpprobe.core.certs import TrustStore
from smtpprobe.lab.tls import LabCA, LabCert
from smtpprobe.models import Failure, FailureKind
from smtpprobe.net import https

Answer = Callable[[bytes], bytes | None]  # request -> raw response (None: say nothing)


@pytest.fixture
async def server(cert: LabCert) -> AsyncIterator[Callable[[Answer], Any]]:
    servers: list[asyncio.Server] = []
    requests: list[bytes] = []

    async def start(answer: Answer) -> tuple[int, list[bytes]]:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            request = await reader.readuntil(b"\r\n\r\n")
            requests.append(request)
            reply = answer(request)
            if reply is None:
                await asyncio.sleep(5)
            else:
                writer.write(reply)
                await writer.drain()
            writer.close()

        srv = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=cert.server_context())
        servers.append(srv)
        return srv.sockets[0].getsockname()[1], requests

    yield start
    for srv in servers:
        srv.close()
        await srv.wait_closed()


POLICY = b"version: STSv1\r\nmode: enforce\r\nmx: mx.lab.test\r\nmax_age: 86400\r\n"


def ok(body: bytes = POLICY, *, headers: str = "Content-Type: text/plain\r\n") -> bytes:
    return (f"HTTP/1.1 200 OK\r\n{headers}Content-Length: {len(body)}\r\n\r\n").encode() + body


async def test_get_verifies_and_reads_the_body(server: Any, trust: TrustStore) -> None:
    port, requests = await server(lambda _: ok())
    response = await https.get("mx.lab.test", "/.well-known/mta-sts.txt", address="127.0.0.1",
                               roots=trust.roots, port=port, timeout=5)
    assert not isinstance(response, Failure), response
    assert (response.status, response.header("Content-Type"), response.body) == (
        200, "text/plain", POLICY)
    assert requests[0].startswith(b"GET /.well-known/mta-sts.txt HTTP/1.1\r\n")
    assert b"\r\nHost: mx.lab.test\r\n" in requests[0]


async def test_chunked_body(server: Any, trust: TrustStore) -> None:
    raw = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"7\r\nversion\r\n9;ext=1\r\n: STSv1\r\n\r\n0\r\n\r\n")
    port, _ = await server(lambda _: raw)
    response = await https.get("mx.lab.test", "/", address="127.0.0.1", roots=trust.roots,
                               port=port, timeout=5)
    assert not isinstance(response, Failure) and response.body == b"version: STSv1\r\n"


async def test_redirect_is_returned_not_followed(server: Any, trust: TrustStore) -> None:
    port, requests = await server(
        lambda _: b"HTTP/1.1 301 Moved\r\nLocation: https://elsewhere.test/\r\n"
                  b"Content-Length: 0\r\n\r\n")
    response = await https.get("mx.lab.test", "/", address="127.0.0.1", roots=trust.roots,
                               port=port, timeout=5)
    assert not isinstance(response, Failure)
    assert response.status == 301 and len(requests) == 1


async def test_untrusted_and_wrong_name(server: Any, other_ca: LabCA) -> None:
    port, _ = await server(lambda _: ok())
    other = TrustStore((other_ca.cert,), "another CA")
    failure = await https.get("mx.lab.test", "/", address="127.0.0.1", roots=other.roots,
                              port=port, timeout=5)
    assert isinstance(failure, Failure) and failure.kind is FailureKind.TLS_HANDSHAKE
    assert "certificate" in failure.detail


async def test_name_not_in_certificate(server: Any, trust: TrustStore) -> None:
    port, _ = await server(lambda _: ok())
    failure = await https.get("mta-sts.other.test", "/", address="127.0.0.1",
                              roots=trust.roots, port=port, timeout=5)
    assert isinstance(failure, Failure) and failure.kind is FailureKind.TLS_HANDSHAKE
    assert "mta-sts.other.test" in failure.detail or "match" in failure.detail


async def test_size_bound(server: Any, trust: TrustStore) -> None:
    port, _ = await server(lambda _: ok(b"x" * 5000))
    failure = await https.get("mx.lab.test", "/", address="127.0.0.1", roots=trust.roots,
                              port=port, timeout=5, max_bytes=1000)
    assert isinstance(failure, Failure) and failure.kind is FailureKind.PROTOCOL
    assert "1000 bytes" in failure.detail


async def test_silence_is_a_timeout(server: Any, trust: TrustStore) -> None:
    port, _ = await server(lambda _: None)
    failure = await https.get("mx.lab.test", "/", address="127.0.0.1", roots=trust.roots,
                              port=port, timeout=0.5)
    assert isinstance(failure, Failure) and failure.kind is FailureKind.TIMEOUT


@pytest.mark.parametrize("raw", [
    b"SSH-2.0-OpenSSH\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\nshort",
    b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
])
async def test_broken_responses_are_protocol_failures(server: Any, trust: TrustStore,
                                                      raw: bytes) -> None:
    port, _ = await server(lambda _: raw)
    failure = await https.get("mx.lab.test", "/", address="127.0.0.1", roots=trust.roots,
                              port=port, timeout=5)
    assert isinstance(failure, Failure) and failure.kind is FailureKind.PROTOCOL, failure


async def test_nothing_listening(trust: TrustStore) -> None:
    from smtpprobe.lab.dns import unused_udp_port

    failure = await https.get("mx.lab.test", "/", address="127.0.0.1", roots=trust.roots,
                              port=unused_udp_port(), timeout=2)
    assert isinstance(failure, Failure)
    assert failure.kind in (FailureKind.REFUSED, FailureKind.UNREACHABLE)
