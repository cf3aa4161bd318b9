"""A loopback TCP proxy that adds a fixed delay in each direction and counts round trips.

Put it in front of a mail server on 127.0.0.x and a client sees a distant server: every chunk
of bytes is held for `delay` seconds before it is passed on, so a command and its reply cost
2 x delay (25 ms one way = 50 ms round trip). The TCP handshake is modelled as well: the proxy
connects upstream only after 3 x delay, so the greeting reaches the client 2 round trips after
its connect(), as it would over a real network (SYN, SYN-ACK, then ACK and the server's first
bytes). Bytes are passed on unchanged, TLS included.

Counting happens on the client's side of the proxy, in the client's timeline: bytes the client
sent are noted when they arrive, the server's bytes when they are handed to the client. A
*round trip* is one burst of server bytes that reached the client: everything the server said
between two things the client said. The greeting is the first. Bytes the server sends after
the client has closed (the reply to a QUIT nobody waits for) never reach the client and are not
counted.

Run alone for manual tests:  python bench/proxy.py --listen 127.0.0.91:2525 --to 127.0.0.11:25
--delay-ms 25
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(slots=True)
class Flow:
    """What happened on one proxied connection, in the client's timeline."""

    opened: float
    closed: float | None = None
    events: list[tuple[float, str, int]] = field(default_factory=list)  # (time, "c"|"s", bytes)
    refused: bool = False

    @property
    def round_trips(self) -> int:
        """Server bursts that reached the client (the greeting counts as one)."""
        bursts = 0
        last = ""
        for _, side, _ in self.events:
            if side == "s" and last != "s":
                bursts += 1
            last = side
        return bursts

    @property
    def client_writes(self) -> int:
        """Client bursts: runs of client bytes with no server bytes in between."""
        bursts = 0
        last = ""
        for _, side, _ in self.events:
            if side == "c" and last != "c":
                bursts += 1
            last = side
        return bursts

    @property
    def duration(self) -> float:
        end = self.closed if self.closed is not None else time.perf_counter()
        return end - self.opened


class DelayProxy:
    """One listening address forwarding to one upstream address with a one-way delay."""

    def __init__(self, listen: tuple[str, int], upstream: tuple[str, int], *,
                 delay: float, source: str | None = None) -> None:
        self.listen = listen
        self.upstream = upstream
        self.delay = delay
        self.source = source  # local address for the upstream connection (the client address
        # the server sees); None lets the kernel choose
        self.flows: list[Flow] = []
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def address(self) -> tuple[str, int]:
        assert self._server is not None
        host, port = self._server.sockets[0].getsockname()[:2]
        return host, port

    async def start(self) -> DelayProxy:
        self._server = await asyncio.start_server(self._accepted, *self.listen)
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def reset(self) -> list[Flow]:
        """The flows recorded so far; start a new record."""
        flows, self.flows = self.flows, []
        return flows

    def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.ensure_future(self._serve(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, c_reader: asyncio.StreamReader,
                     c_writer: asyncio.StreamWriter) -> None:
        flow = Flow(opened=time.perf_counter())
        self.flows.append(flow)
        # SYN to the server and back, then the ACK: the server accepts 1.5 round trips in.
        await asyncio.sleep(3 * self.delay)
        try:
            s_reader, s_writer = await asyncio.open_connection(
                *self.upstream,
                local_addr=(self.source, 0) if self.source is not None else None)
        except OSError:
            flow.refused = True
            await asyncio.sleep(self.delay)  # the RST travels back
            flow.closed = time.perf_counter()
            c_writer.close()
            return

        def client_said(size: int) -> None:
            flow.events.append((time.perf_counter(), "c", size))

        def server_said(size: int) -> None:
            if flow.closed is None:
                flow.events.append((time.perf_counter(), "s", size))

        def client_gone() -> None:
            if flow.closed is None:
                flow.closed = time.perf_counter()

        up = asyncio.ensure_future(self._pump(c_reader, s_writer, on_read=client_said,
                                              on_eof=client_gone))
        down = asyncio.ensure_future(self._pump(s_reader, c_writer, on_write=server_said))
        try:
            await asyncio.gather(up, down)
        finally:
            client_gone()
            for writer in (c_writer, s_writer):
                writer.close()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *,
                    on_read: Callable[[int], None] | None = None,
                    on_write: Callable[[int], None] | None = None,
                    on_eof: Callable[[], None] | None = None) -> None:
        """Copy reader to writer, each chunk (and the end) `delay` seconds late, in order."""
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        loop = asyncio.get_running_loop()

        async def deliver() -> None:
            while True:
                due, data = await queue.get()
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                if not data:
                    try:
                        if writer.can_write_eof():
                            writer.write_eof()
                    except OSError:
                        pass
                    return
                if writer.is_closing():
                    continue
                writer.write(data)
                if on_write is not None:
                    on_write(len(data))

        sender = asyncio.ensure_future(deliver())
        try:
            while True:
                try:
                    data = await reader.read(65536)
                except OSError:
                    data = b""
                if not data and on_eof is not None:
                    on_eof()
                if data and on_read is not None:
                    on_read(len(data))
                queue.put_nowait((loop.time() + self.delay, data))
                if not data:
                    break
            await sender
        finally:
            sender.cancel()


def parse_hostport(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


async def _main(listen: tuple[str, int], upstream: tuple[str, int], delay: float) -> None:
    proxy = await DelayProxy(listen, upstream, delay=delay).start()
    host, port = proxy.address
    print(f"proxy {host}:{port} -> {upstream[0]}:{upstream[1]}, {delay * 1000:g} ms each way",
          flush=True)
    try:
        while True:
            await asyncio.sleep(1)
            flows = proxy.reset()
            proxy.flows = [f for f in flows if f.closed is None]
            for flow in (f for f in flows if f.closed is not None):
                print(f"connection: {flow.round_trips} round trips, {flow.client_writes} client "
                      f"writes, {flow.duration * 1000:.0f} ms", flush=True)
    finally:
        await proxy.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--listen", default="127.0.0.91:0")
    parser.add_argument("--to", default="127.0.0.11:25")
    parser.add_argument("--delay-ms", type=float, default=25.0, help="one-way delay")
    args = parser.parse_args()
    try:
        asyncio.run(_main(parse_hostport(args.listen), parse_hostport(args.to),
                          args.delay_ms / 1000))
    except KeyboardInterrupt:
        pass
