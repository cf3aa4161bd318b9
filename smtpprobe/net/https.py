"""A small HTTPS GET client for one purpose: fetching an MTA-STS policy (RFC 8461 3.3).

Bounded in every direction: one connection to an address the caller resolved (through the
resolver the user chose, never the system's), one request, at most `max_bytes` of response and
`timeout` seconds in all. The certificate is verified against the caller's trust store and the
host name (RFC 8461 3.3: "the certificate MUST be valid for the mta-sts host name"); redirects
are not followed (RFC 8461 3.3: "HTTP 3xx redirects MUST NOT be followed"). Whatever happens
comes back as a `Response` or a `Failure`, never as an exception.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from smtpprobe.models import Failure, FailureKind

if TYPE_CHECKING:
    from cryptography import x509

__all__ = ["MAX_BYTES", "Response", "get"]

# RFC 8461 3.2 sets no size; a policy is a few lines. 64 KiB leaves room for long mx lists
# and stops a server that streams forever.
MAX_BYTES = 64 * 1024
_HEAD_MAX = 16 * 1024


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    reason: str
    headers: tuple[tuple[str, str], ...]  # names in lower case
    body: bytes

    def header(self, name: str) -> str | None:
        name = name.lower()
        return next((value for key, value in self.headers if key == name), None)


def _context(cadata: str | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cadata=cadata) if cadata is not None \
        else ssl.create_default_context()
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def _pem(roots: Sequence[x509.Certificate]) -> str:
    from cryptography.hazmat.primitives.serialization import Encoding

    return "".join(root.public_bytes(Encoding.PEM).decode("ascii") for root in roots)


async def get(
    host: str,
    path: str,
    *,
    address: str,
    roots: Sequence[x509.Certificate] | None,
    port: int = 443,
    timeout: float = 10.0,
    max_bytes: int = MAX_BYTES,
) -> Response | Failure:
    """GET https://host/path from `address` (already resolved).

    `roots`: the CA certificates (cryptography `x509.Certificate`) the server's chain must lead
    to; None uses this machine's default store.
    """
    try:
        context = _context(_pem(roots) if roots is not None else None)
    except (ssl.SSLError, ValueError) as exc:
        return Failure(FailureKind.LOCAL, f"cannot use the trust store for HTTPS: {exc}")
    where = f"https://{host}{path} ({address})"
    try:
        return await asyncio.wait_for(
            _exchange(host, path, address, port, context, max_bytes, where), timeout)
    except TimeoutError:
        return Failure(FailureKind.TIMEOUT, f"{where}: no complete answer within {timeout:g} s")
    except ssl.SSLCertVerificationError as exc:
        return Failure(FailureKind.TLS_HANDSHAKE,
                       f"{where}: the certificate does not verify: {exc.verify_message}")
    except ssl.SSLError as exc:
        return Failure(FailureKind.TLS_HANDSHAKE, f"{where}: TLS failed: {exc.reason or exc}")
    except ConnectionRefusedError:
        return Failure(FailureKind.REFUSED, f"{where}: connection refused")
    except OSError as exc:
        return Failure(FailureKind.UNREACHABLE, f"{where}: {exc.strerror or exc}")


async def _exchange(host: str, path: str, address: str, port: int, context: ssl.SSLContext,
                    max_bytes: int, where: str) -> Response | Failure:
    reader, writer = await asyncio.open_connection(address, port, ssl=context,
                                                   server_hostname=host)
    try:
        request = (f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: smtpprobe\r\n"
                   f"Accept: text/plain\r\nConnection: close\r\n\r\n")
        writer.write(request.encode("ascii"))
        await writer.drain()
        data = bytearray()
        while len(data) <= max_bytes + _HEAD_MAX:
            chunk = await reader.read(16384)
            if not chunk:
                break
            data += chunk
        else:
            return Failure(FailureKind.PROTOCOL,
                           f"{where}: the answer is larger than {max_bytes} bytes")
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except (OSError, ssl.SSLError):
            pass  # a server that drops the connection without close_notify: we have the data
    return _parse(bytes(data), max_bytes, where)


def _parse(data: bytes, max_bytes: int, where: str) -> Response | Failure:
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep or len(head) > _HEAD_MAX:
        return Failure(FailureKind.PROTOCOL, f"{where}: no complete HTTP response head")
    lines = head.decode("iso-8859-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        return Failure(FailureKind.PROTOCOL, f"{where}: not an HTTP response: {lines[0][:80]!r}")
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon:
            return Failure(FailureKind.PROTOCOL, f"{where}: bad header line {line[:80]!r}")
        headers.append((name.strip().lower(), value.strip()))
    response = Response(int(parts[1]), parts[2] if len(parts) > 2 else "", tuple(headers), b"")
    encoding = (response.header("transfer-encoding") or "").lower()
    if encoding == "chunked":
        decoded = _unchunk(body)
        if decoded is None:
            return Failure(FailureKind.PROTOCOL, f"{where}: broken chunked body")
        body = decoded
    elif encoding:
        return Failure(FailureKind.PROTOCOL, f"{where}: unsupported transfer encoding {encoding}")
    else:
        length = response.header("content-length")
        if length is not None:
            if not length.isdigit():
                return Failure(FailureKind.PROTOCOL, f"{where}: bad Content-Length {length!r}")
            if len(body) < int(length):
                return Failure(FailureKind.PROTOCOL,
                               f"{where}: the body ended after {len(body)} of {length} bytes")
            body = body[:int(length)]
    if len(body) > max_bytes:
        return Failure(FailureKind.PROTOCOL, f"{where}: the body is larger than {max_bytes} bytes")
    return Response(response.status, response.reason, response.headers, body)


def _unchunk(body: bytes) -> bytes | None:
    out = bytearray()
    rest = body
    while True:
        size_line, sep, rest = rest.partition(b"\r\n")
        if not sep:
            return None
        size_text = size_line.split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            return None
        if size == 0:
            return bytes(out)
        if len(rest) < size + 2:
            return None
        out += rest[:size]
        rest = rest[size + 2:]
