"""Round trips and concurrency of one check: what goes on the wire in how many writes, that
QUIT's reply is never waited for, and that the addresses of one host race (RFC 8305) while
MX hosts keep their preference order (tests/probe/test_check_lab.py has the MX cases)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest

from smtpprobe.lab.dns import LabDns, Record
from smtpprobe.lab.smtp import LabServer, RawConnection, Scenario, ServerSpec, serve, serve_many
from smtpprobe.models import CheckReport, FailureKind, Stage, Verdict
from smtpprobe.probe.check import CheckOptions

# The types of conftest's check_options and check_address fixtures, and of `check`.
Options = Callable[..., CheckOptions]
CheckAddress = Callable[[CheckOptions, str], Awaitable[CheckReport]]
Check = Callable[..., Awaitable[CheckReport]]


@dataclass
class Quiet:
    """A plain server (no STARTTLS) that never answers QUIT: it waits for the client to hang up.
    Records whether a QUIT came and whether the client closed after it."""

    pipelining: bool = True
    quit_seen: bool = False
    closed_after_quit: bool = False

    async def __call__(self, conn: RawConnection) -> None:
        name = conn.server.hostname
        await conn.send(f"220 {name} ESMTP quiet")
        while (line := await conn.read_command(timeout=20)) is not None:
            verb = line.partition(" ")[0].upper()
            if verb == "EHLO":
                await conn.send(*([f"250-{name}", "250-PIPELINING", "250 8BITMIME"]
                                  if self.pipelining else [f"250-{name}", "250 8BITMIME"]))
            elif verb == "MAIL":
                await conn.send("250 2.1.0 Ok")
            elif verb == "RCPT":
                await conn.send("250 2.1.5 Ok")
            elif verb == "QUIT":
                self.quit_seen = True  # and no reply: a client that waited would time out
            else:
                await conn.send("502 5.5.2 Error: command not recognized")
        self.closed_after_quit = self.quit_seen
        conn.close()


@dataclass
class Relay:
    """A loopback TCP relay that records what the client wrote, one entry per read."""

    upstream: tuple[str, int]
    client_chunks: list[bytes] = field(default_factory=list)
    server: asyncio.Server | None = None

    async def start(self) -> tuple[str, int]:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[:2]

    async def _serve(self, c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        s_reader, s_writer = await asyncio.open_connection(*self.upstream)

        async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                       record: bool) -> None:
            while data := await reader.read(65536):
                if record:
                    self.client_chunks.append(data)
                writer.write(data)
            writer.close()

        await asyncio.gather(pump(c_reader, s_writer, True), pump(s_reader, c_writer, False),
                             return_exceptions=True)

    async def close(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


@asynccontextmanager
async def relayed(script: Quiet) -> AsyncIterator[tuple[Relay, tuple[str, int]]]:
    server = await serve(Scenario("quiet", "never answers QUIT", raw=script),
                         host="127.0.0.71", hostname="mx.quiet.test")
    relay = Relay(server.address)
    address = await relay.start()
    try:
        yield relay, address
    finally:
        await relay.close()
        await server.close()


@pytest.fixture
def check(check_options: Options, check_address: CheckAddress) -> Check:
    """`await check(address="alice@quiet.test", **options)`: one check, with conftest's lab
    options (3 s a step, 15 s an address) unless `options` say otherwise."""

    async def run(address: str = "alice@quiet.test", **extra: Any) -> CheckReport:
        return await check_address(check_options(**extra), address)

    return run


async def test_pipelined_walk_is_two_writes_and_quit_is_not_waited_for(check: Check) -> None:
    script = Quiet()
    async with relayed(script) as (relay, address):
        report = await check(server=address, starttls=False)
        await asyncio.sleep(0.1)
    assert report.verdict is Verdict.ACCEPTED
    # Greeting (1), EHLO (2), then MAIL, RCPT and QUIT in one write (3): RFC 2920.
    assert relay.client_chunks == [
        b"EHLO probe.smtpprobe.test\r\n",
        b"MAIL FROM:<>\r\nRCPT TO:<alice@quiet.test>\r\nQUIT\r\n",
    ]
    # The server never answered QUIT, and nothing timed out: the client did not wait.
    assert script.quit_seen and script.closed_after_quit
    assert not any(s.failure for h in report.hosts for s in h.steps)


async def test_catch_all_probe_rides_in_the_same_write(check: Check) -> None:
    script = Quiet()
    async with relayed(script) as (relay, address):
        await check(server=address, starttls=False, catch_all=True)
        await asyncio.sleep(0.1)
    assert len(relay.client_chunks) == 2
    mail, rcpt, probe, quit_ = relay.client_chunks[1].split(b"\r\n")[:4]
    assert (mail, rcpt, quit_) == (b"MAIL FROM:<>", b"RCPT TO:<alice@quiet.test>", b"QUIT")
    assert probe.startswith(b"RCPT TO:<smtpprobe-catchall-") and probe.endswith(b"@quiet.test>")


@pytest.mark.parametrize("server_offers", [True, False], ids=["refused", "not-offered"])
async def test_one_command_per_write_without_pipelining(check: Check,
                                                        server_offers: bool) -> None:
    script = Quiet(pipelining=server_offers)
    async with relayed(script) as (relay, address):
        report = await check(server=address, starttls=False, pipelining=not server_offers)
        await asyncio.sleep(0.1)
    assert report.verdict is Verdict.ACCEPTED
    assert relay.client_chunks == [b"EHLO probe.smtpprobe.test\r\n", b"MAIL FROM:<>\r\n",
                                   b"RCPT TO:<alice@quiet.test>\r\n", b"QUIT\r\n"]
    assert script.closed_after_quit
    assert not any(s.failure for h in report.hosts for s in h.steps)


# --- IPv6 and IPv4 addresses of one host ------------------------------------------------------


@asynccontextmanager
async def dual_stack(v6_scenario: str | None) -> AsyncIterator[
        tuple[tuple[str, int], int, dict[str, LabServer]]]:
    """mx.dual.test with AAAA ::1 and A 127.0.0.72 on one port; what listens on ::1 varies."""
    specs = [ServerSpec("mailbox", host="127.0.0.72", hostname="mx.dual.test")]
    if v6_scenario is not None:
        specs.insert(0, ServerSpec(v6_scenario, host="::1", hostname="mx.dual.test",
                                   banner_delay=6.0))
    servers = await serve_many(specs, same_port=True)
    records = [Record("dual.test", "MX", "10 mx.dual.test."),
               Record("mx.dual.test", "AAAA", "::1"), Record("mx.dual.test", "A", "127.0.0.72")]
    try:
        async with LabDns(records) as zone:
            yield zone.address, servers[0].port, {s.host: s for s in servers}
    finally:
        for server in servers:
            await server.close()


async def test_addresses_of_one_host_race_happy_eyeballs(check: Check) -> None:
    # ::1 accepts TCP but greets only after 6 s; the step timeout (10 s) would wait for it.
    # After the stagger the IPv4 address is tried beside it and, being the same host, its
    # answer is the host's answer at once.
    async with dual_stack("slow_banner") as (resolver, port, servers):
        report = await check("alice@dual.test", nameservers=(resolver,), port=port,
                             timeout=10.0, stagger=0.2, starttls=False)
        slow = servers["::1"]
        assert not any(c.upper().startswith("EHLO") for c in slow.commands)
    assert report.verdict is Verdict.ACCEPTED
    assert [h.address for h in report.hosts] == ["::1", "127.0.0.72"]
    first = report.hosts[0].steps
    assert not any(s.reply is not None and s.reply.code == 220 for s in first)
    assert any(s.stage is Stage.RCPT for s in report.hosts[1].steps)


async def test_refused_ipv6_falls_through_to_ipv4_at_once(check: Check) -> None:
    async with dual_stack(None) as (resolver, port, _):
        report = await check("alice@dual.test", nameservers=(resolver,), port=port,
                             stagger=5.0, starttls=False)
    assert report.verdict is Verdict.ACCEPTED
    assert [h.address for h in report.hosts] == ["::1", "127.0.0.72"]
    refused = report.hosts[0].steps[0]
    assert refused.failure is not None and refused.failure.kind is FailureKind.REFUSED
