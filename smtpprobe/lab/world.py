"""A small mail world on loopback: a DNS zone whose MX records point at lab servers.

`smtpprobe demo`, the check tests and the benchmarks use it, so the whole pipeline (MX lookup,
staggered attempts, STARTTLS with certificate checks, classification) runs as it would against
the internet, without a single packet leaving 127.0.0.0/8. Every MX host gets its own loopback
address (127.0.0.x works on Linux without configuration) and all listen on one port number,
which the probe is told with `port=`.
"""

from __future__ import annotations

import asyncio
import tempfile
import threading
from collections.abc import AsyncIterator, Collection, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path

from .dns import LabDns, Record
from .smtp import LabServer, Scenario, ServerSpec, serve_many
from .tls import LabCA


@dataclass(frozen=True, slots=True)
class Domain:
    """A test domain: its MX hosts as (preference, host name, loopback address, scenario);
    the scenario is a name, a `Scenario` (a glitch of lab.hostile, a test's own script), or
    None: nothing listens there (connections are refused)."""

    name: str
    mx: tuple[tuple[int, str, str, str | Scenario | None], ...] = ()
    null_mx: bool = False
    summary: str = ""


# The demo's world. Addresses 127.0.0.21-29 are reserved for it (the real-MTA test set-up
# uses 127.0.0.11-14 and 127.0.0.53).
DEMO_DOMAINS: tuple[Domain, ...] = (
    Domain("good.test", ((10, "mx.good.test", "127.0.0.21", "mailbox"),),
           summary="a mailbox server with STARTTLS: alice, bob and postmaster exist"),
    Domain("backup.test", ((10, "mx1.backup.test", "127.0.0.29", None),
                           (20, "mx.good.test", "127.0.0.21", "mailbox")),
           summary="the preferred MX is down, the backup answers"),
    Domain("full.test", ((10, "mx.full.test", "127.0.0.22", "mailbox_full"),),
           summary="every mailbox is over quota"),
    Domain("grey.test", ((10, "mx.grey.test", "127.0.0.23", "greylist"),),
           summary="greylisting: the first try is deferred"),
    Domain("blocked.test", ((10, "mx.blocked.test", "127.0.0.24", "blocklisted"),),
           summary="the server rejects the prober's IP (a DNS blocklist)"),
    Domain("catchall.test", ((10, "mx.catchall.test", "127.0.0.25", "catch_all"),),
           summary="accepts any address"),
    Domain("tls.test", ((10, "mx.tls.test", "127.0.0.26", "starttls_required"),),
           summary="refuses mail until STARTTLS"),
    Domain("nullmx.test", null_mx=True, summary="publishes a null MX (RFC 7505): no mail"),
)


@dataclass(frozen=True, slots=True)
class LabWorld:
    dns: LabDns
    servers: Mapping[str, LabServer]  # by host name
    port: int
    cafile: str
    domains: tuple[Domain, ...]

    @property
    def resolver(self) -> tuple[str, int]:
        return self.dns.address


def records_for(domains: Sequence[Domain]) -> list[Record]:
    records: list[Record] = []
    seen_hosts: set[str] = set()
    for domain in domains:
        if domain.null_mx:
            records.append(Record(domain.name, "MX", "0 ."))
        for preference, host, address, _ in domain.mx:
            records.append(Record(domain.name, "MX", f"{preference} {host}."))
            if host not in seen_hosts:
                seen_hosts.add(host)
                records.append(Record(host, "A", address))
    return records


@asynccontextmanager
async def lab_world(domains: Sequence[Domain] = DEMO_DOMAINS, *,
                    greylist_delay: float = 1.0,
                    dns_host: str = "127.0.0.1",
                    local_parts: Collection[str] | None = None) -> AsyncIterator[LabWorld]:
    """Start the DNS server and one lab server per MX host, all in the running loop.
    `local_parts`: the mailboxes of every server (default: alice, bob and postmaster)."""
    ca = LabCA.create()
    hosts: dict[str, tuple[str, str | Scenario]] = {}
    for domain in domains:
        for _, host, address, scenario in domain.mx:
            if scenario is not None:
                hosts.setdefault(host, (address, scenario))
    cert = ca.issue(*hosts) if hosts else None
    mailboxes = ServerSpec.local_parts if local_parts is None else local_parts
    specs = [ServerSpec(scenario=scenario, host=address, hostname=host, cert=cert,
                        greylist_delay=greylist_delay, local_parts=mailboxes)
             for host, (address, scenario) in hosts.items()]
    with tempfile.TemporaryDirectory(prefix="smtpprobe-world-") as tmp:
        cafile = str(ca.write_pem(Path(tmp) / "lab-ca.pem"))
        servers = await serve_many(specs, same_port=True)
        try:
            async with LabDns(records_for(domains), host=dns_host) as zone:
                port = servers[0].port if servers else 25
                yield LabWorld(dns=zone, servers=dict(zip(hosts, servers, strict=True)), port=port,
                               cafile=cafile, domains=tuple(domains))
        finally:
            for server in servers:
                await server.close()


@contextmanager
def lab_world_in_thread(domains: Sequence[Domain] | None = None) -> Iterator[LabWorld]:
    """A lab world served from a thread of its own, for tests that run the real command line
    as a subprocess (the lab needs a running event loop while the test waits)."""
    ready: dict[str, LabWorld] = {}
    stop = threading.Event()

    def serve() -> None:
        async def main() -> None:
            async with lab_world(domains or DEMO_DOMAINS) as lab:
                ready["world"] = lab
                while not stop.is_set():
                    await asyncio.sleep(0.05)

        asyncio.run(main())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        for _ in range(200):
            if "world" in ready or not thread.is_alive():
                break
            stop.wait(0.05)
        assert "world" in ready, "the lab world did not start"
        yield ready["world"]
    finally:
        stop.set()
        thread.join(timeout=10)
