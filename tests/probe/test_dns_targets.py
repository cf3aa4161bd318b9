"""Which addresses check, sweep and relay connect to: never 0.0.0.0, ::, broadcast or
multicast; loopback and private addresses of public names only when allowed; at most
MX_ADDRESS_LIMIT addresses and MX_SESSION_LIMIT sessions per check; the next address of a
host when the first cannot be connected to; and a run that survives a domain with 500 MX
hosts on a machine with few file descriptors.

The zones are served from the root (`zone="."`), so a public-looking name (mx.probe-lab.net)
can point at a lab server on 127.0.0.x beside the usual .test names. Lab servers of this
module listen on 127.0.0.81-89; 127.0.0.90-99 and 127.0.1.x have nothing listening.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pytest

from smtpprobe.core.certs import TrustStore
from smtpprobe.core.knowledge.load import KnowledgeBase
from smtpprobe.core.redact import Redactor
from smtpprobe.lab.dns import LabDns, Record, many_mx
from smtpprobe.lab.smtp import LabServer
from smtpprobe.models import CheckReport, CheckStatus, PortState, RelayVerdict, Verdict
from smtpprobe.net.dns import MX_ADDRESS_LIMIT
from smtpprobe.probe.check import MX_SESSION_LIMIT, CheckOptions
from smtpprobe.probe.relay import Relay, RelayOptions
from smtpprobe.probe.sweep import Sweeper, SweepOptions, parse_ports

R = Record
LabServerFactory = Callable[..., Awaitable[LabServer]]
LabDnsFactory = Callable[..., Awaitable[LabDns]]
CheckAddress = Callable[[CheckOptions, str], Awaitable[CheckReport]]
CheckOptionsFactory = Callable[..., CheckOptions]

RECORDS = [
    # A host whose AAAA is dead (nothing listens on [::1] at the lab port) and whose A works.
    R("two.test", "MX", "10 mx.two.test."),
    R("mx.two.test", "AAAA", "::1"),
    R("mx.two.test", "A", "127.0.0.81"),
    # Addresses that would reach this machine, or no single host at all.
    R("zero.test", "MX", "10 mx.zero.test."),
    R("zero.test", "MX", "20 cast.zero.test."),
    R("mx.zero.test", "A", "0.0.0.0"),
    R("mx.zero.test", "AAAA", "::"),
    R("cast.zero.test", "A", "255.255.255.255"),
    R("cast.zero.test", "AAAA", "ff02::1"),
    R("mx.zero-server.test", "A", "0.0.0.0"),
    # A public name pointing at this machine.
    R("probe-lab.net", "MX", "10 mx.probe-lab.net."),
    R("mx.probe-lab.net", "A", "127.0.0.82"),
    # Four MX hosts that take EHLO and MAIL and hang up at RCPT: no definitive answer.
    *(R("drops.test", "MX", f"{10 * i} mx{i}.drops.test.") for i in range(1, 5)),
    *(R(f"mx{i}.drops.test", "A", f"127.0.0.{82 + i}") for i in range(1, 5)),
    # Eight MX hosts where nothing listens.
    *many_mx("eight.test", 8, addresses=[f"127.0.0.{90 + i}" for i in range(8)]),
]


@pytest.fixture
async def zone(lab_dns: LabDnsFactory) -> LabDns:
    return await lab_dns(RECORDS, zone=".")


@pytest.fixture
async def port() -> int:
    # One port number for every lab server of a test (each on its own 127.0.0.x).
    with socket.socket() as probe:
        probe.bind(("127.0.0.81", 0))
        number: int = probe.getsockname()[1]
    return number


def options(check_options: CheckOptionsFactory, zone: LabDns, port: int,
            **fields: Any) -> CheckOptions:
    return check_options(port=port, nameservers=(zone.address,), starttls=False, **fields)


def rules(report: CheckReport) -> list[str]:
    return [f.rule for f in report.findings]


# --- check ------------------------------------------------------------------------------------


async def test_check_never_connects_to_unspecified_broadcast_or_multicast(
        zone: LabDns, port: int, lab_server: LabServerFactory,
        check_options: CheckOptionsFactory, check_address: CheckAddress) -> None:
    # 0.0.0.0:PORT would reach this server: a connection to the unspecified address goes to
    # this machine.
    here = await lab_server("mailbox", host="127.0.0.1", port=port)
    report = await check_address(options(check_options, zone, port), "alice@zero.test")
    assert here.connections == 0
    assert report.hosts == ()
    assert report.verdict is Verdict.UNREACHABLE
    unusable = [f for f in report.findings if f.rule == "failure.address_unusable"]
    assert len(unusable) == 2  # one per host
    assert "mx.zero.test" in unusable[0].evidence and "0.0.0.0" in unusable[0].evidence
    assert "cast.zero.test" in unusable[1].evidence
    # The same for --server with such a name.
    server = await check_address(
        options(check_options, zone, port, server=("mx.zero-server.test", port)),
        "alice@zero.test")
    assert here.connections == 0
    assert server.finding.rule == "failure.address_unusable"


async def test_check_skips_a_public_name_on_loopback_unless_allowed(
        zone: LabDns, port: int, lab_server: LabServerFactory,
        check_options: CheckOptionsFactory, check_address: CheckAddress) -> None:
    server = await lab_server("mailbox", host="127.0.0.82", port=port,
                              hostname="mx.probe-lab.net")
    skipped = await check_address(options(check_options, zone, port), "alice@probe-lab.net")
    assert server.connections == 0
    assert skipped.verdict is Verdict.UNREACHABLE
    assert skipped.finding.rule == "failure.address_private"
    assert "127.0.0.82" in skipped.finding.evidence
    allowed = await check_address(options(check_options, zone, port, allow_private=True),
                                  "alice@probe-lab.net")
    assert server.connections == 1
    assert allowed.verdict is Verdict.ACCEPTED
    assert "failure.address_private" in rules(allowed)  # said, though allowed


async def test_check_opens_at_most_two_sessions(
        zone: LabDns, port: int, lab_server: LabServerFactory,
        check_options: CheckOptionsFactory, check_address: CheckAddress) -> None:
    servers = [await lab_server("disconnect_mid", host=f"127.0.0.{82 + i}", port=port)
               for i in range(1, 5)]
    report = await check_address(options(check_options, zone, port), "alice@drops.test")
    assert len(report.hosts) == MX_SESSION_LIMIT == 2
    assert [s.connections for s in servers] == [1, 1, 0, 0]
    (limit,) = [f for f in report.findings if f.rule == "failure.mx_limit"]
    assert "2 more addresses were not tried" in limit.evidence
    assert "mx3.drops.test" in limit.evidence


async def test_check_tries_at_most_five_addresses(
        zone: LabDns, port: int, check_options: CheckOptionsFactory,
        check_address: CheckAddress) -> None:
    report = await check_address(options(check_options, zone, port, stagger=0.05),
                                 "alice@eight.test")
    assert [h.address for h in report.hosts] == [f"127.0.0.{90 + i}"
                                                 for i in range(MX_ADDRESS_LIMIT)]
    assert all(h.steps[0].failure is not None for h in report.hosts)  # all refused
    assert "failure.mx_limit" in rules(report)


# --- sweep ------------------------------------------------------------------------------------


def sweep_options(zone: LabDns, host: str, port: int, **fields: Any) -> SweepOptions:
    return SweepOptions(host=host, ports=parse_ports(f"{port}:plain"), helo="probe.lab.test",
                        timeout=2.0, deadline=10.0, nameservers=(zone.address,), **fields)


async def test_sweep_moves_to_the_next_address_when_no_port_connects(
        zone: LabDns, port: int, lab_server: LabServerFactory, kb: KnowledgeBase,
        trust: TrustStore) -> None:
    await lab_server("no_starttls", host="127.0.0.81", port=port, hostname="mx.two.test")
    report = await Sweeper(kb, sweep_options(zone, "mx.two.test", port), trust=trust,
                           redactor=Redactor()).sweep()
    assert report.addresses == ("::1", "127.0.0.81")  # IPv6 first (RFC 8305)
    assert report.address == "127.0.0.81"
    (result,) = report.ports
    assert result.state is PortState.OPEN and result.address == "127.0.0.81"
    (given_up,) = report.address_findings
    assert given_up.rule.startswith("failure.refused")
    assert "[::1]" in given_up.evidence
    # ... and the user sees it, in JSON and in the text's findings.
    from rich.console import Console

    from smtpprobe.report.json import sweep_dict
    from smtpprobe.report.text_sweep import sweep_view

    assert sweep_dict(report, "en")["address_findings"][0]["rule"] == given_up.rule
    console = Console(record=True, width=160, file=open(os.devnull, "w"))  # noqa: SIM115
    console.print(sweep_view(report, "en"))
    assert "[::1]" in console.export_text()


async def test_sweep_of_a_public_name_on_loopback(
        zone: LabDns, port: int, lab_server: LabServerFactory, kb: KnowledgeBase,
        trust: TrustStore) -> None:
    server = await lab_server("no_starttls", host="127.0.0.82", port=port,
                              hostname="mx.probe-lab.net")
    skipped = await Sweeper(kb, sweep_options(zone, "mx.probe-lab.net", port), trust=trust,
                            redactor=Redactor()).sweep()
    assert server.connections == 0
    assert skipped.ports == () and skipped.address is None
    assert skipped.dns_failure is not None
    assert skipped.dns_failure.rule == "failure.address_private"
    allowed = await Sweeper(kb, sweep_options(zone, "mx.probe-lab.net", port,
                                              allow_private=True),
                            trust=trust, redactor=Redactor()).sweep()
    assert allowed.address == "127.0.0.82"
    assert allowed.ports[0].state is PortState.OPEN
    assert [f.rule for f in allowed.address_findings] == ["failure.address_private"]


# --- relay ------------------------------------------------------------------------------------


def relay_options(zone: LabDns, host: str, port: int, **fields: Any) -> RelayOptions:
    return RelayOptions(host=host, port=port, tls="none", helo="ci.lab.test", timeout=2.0,
                        deadline=10.0, nameservers=(zone.address,), **fields)


async def test_relay_takes_the_next_address_after_a_connect_failure(
        zone: LabDns, port: int, lab_server: LabServerFactory, kb: KnowledgeBase,
        trust: TrustStore) -> None:
    await lab_server("no_starttls", host="127.0.0.81", port=port, hostname="mx.two.test")
    report = await Relay(kb, relay_options(zone, "mx.two.test", port), trust=trust,
                         redactor=Redactor()).run()
    assert report.verdict is RelayVerdict.PASS
    assert report.address == "127.0.0.81"
    assert report.addresses == ("::1", "127.0.0.81")
    connect = report.checks[0]
    assert connect.name == "connect" and connect.status is CheckStatus.PASS
    # The transcript shows the dead address first, then the one used.
    assert connect.steps[0].failure is not None and "[::1]" in connect.steps[0].failure.detail
    assert connect.steps[1].replied(220)


async def test_relay_of_a_public_name_on_loopback(
        zone: LabDns, port: int, lab_server: LabServerFactory, kb: KnowledgeBase,
        trust: TrustStore) -> None:
    server = await lab_server("no_starttls", host="127.0.0.82", port=port,
                              hostname="mx.probe-lab.net")
    skipped = await Relay(kb, relay_options(zone, "mx.probe-lab.net", port), trust=trust,
                          redactor=Redactor()).run()
    assert server.connections == 0
    assert skipped.verdict is RelayVerdict.FAIL
    connect = skipped.checks[0]
    assert connect.status is CheckStatus.FAIL and connect.finding is not None
    assert connect.finding.rule == "failure.address_private"
    allowed = await Relay(kb, relay_options(zone, "mx.probe-lab.net", port, allow_private=True),
                          trust=trust, redactor=Redactor()).run()
    assert allowed.verdict is RelayVerdict.PASS and allowed.address == "127.0.0.82"


# --- many MX hosts, few file descriptors --------------------------------------------------------


@contextmanager
def lab_in_thread(records: Sequence[Record], silent: Sequence[str],
                  port: int) -> Iterator[LabDns]:
    """A LabDns, and on each of the `silent` addresses a TCP server on `port` that accepts
    and never greets, in a loop of their own: for a command line run as a subprocess."""
    ready: dict[str, LabDns] = {}
    stop = threading.Event()

    async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.read()
        finally:
            writer.close()

    def serve() -> None:
        async def main() -> None:
            listeners = [await asyncio.start_server(mute, address, port) for address in silent]
            try:
                async with LabDns(records, zone=".") as server:
                    ready["dns"] = server
                    while not stop.is_set():
                        await asyncio.sleep(0.02)
            finally:
                for listener in listeners:
                    listener.close()

        asyncio.run(main())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        for _ in range(500):
            if "dns" in ready or not thread.is_alive():
                break
            time.sleep(0.02)
        assert "dns" in ready, "the lab did not start"
        yield ready["dns"]
    finally:
        stop.set()
        thread.join(timeout=10)


BIG_DOMAINS = [f"big{i}.test" for i in range(4)]
# Few enough that the SMTP connections run out of descriptors (the DNS queries get an eighth).
FD_LIMIT = 16


def _low_fd_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, FD_LIMIT))


def reports_of(stdout: str) -> list[dict[str, Any]]:
    text = stdout.strip()
    try:
        whole = json.loads(text)
    except json.JSONDecodeError:
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    return whole if isinstance(whole, list) else [whole]


def test_cli_survives_500_mx_domains_with_few_file_descriptors() -> None:
    # Four domains with 500 MX hosts each, on twenty addresses whose servers accept and never
    # greet; five addresses to check per domain, in a process allowed 16 open files. Before:
    # ~1,000 DNS queries per domain at once, each failing with EMFILE that was reported as
    # "network unreachable", and up to 500 conversations per address.
    silent = [f"127.0.1.{i + 1}" for i in range(20)]
    records = [r for i, domain in enumerate(BIG_DOMAINS)
               for r in many_mx(domain, 500, addresses=silent[5 * i:5 * i + 5])]
    addresses = [f"{local}@{domain}" for domain in BIG_DOMAINS
                 for local in ("alice", "bob", "carol", "dave", "erin")]
    with socket.socket() as probe:
        probe.bind(("127.0.1.1", 0))
        smtp_port = probe.getsockname()[1]
    with lab_in_thread(records, silent, smtp_port) as server:
        host, dns_port = server.address
        env = {k: v for k, v in os.environ.items() if not k.startswith("SMTPPROBE_")}
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "smtpprobe", "check", "--json", "--helo", "probe.lab.test",
             "--resolver", f"{host}:{dns_port}", "--port", str(smtp_port), "--timeout", "2",
             "--deadline", "60", *addresses],
            env=env, capture_output=True, text=True, timeout=120, preexec_fn=_low_fd_limit,
            check=False)
        elapsed = time.perf_counter() - started
        queries = list(server.queries)
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode in (1, 3), done.stderr  # unreachable: a result, not a crash
    reports = reports_of(done.stdout)
    assert sorted(r["address"] for r in reports) == sorted(addresses)
    found: list[str] = []
    for report in reports:
        assert report["verdict"] == "unreachable"
        assert len(report["hosts"]) <= MX_ADDRESS_LIMIT
        here = [f["rule"] for f in report["findings"]]
        assert "failure.mx_limit" in here
        found += here
    # Out of descriptors at a connect: said as such, never as "network unreachable".
    assert "failure.local.files" in found
    assert "failure.unreachable" not in found
    address_queries = [q for q in queries if q[1] in ("A", "AAAA")]
    # Each domain once (the batch shares lookups), ten hosts at most: not 4 x 1,000.
    assert len(address_queries) <= len(BIG_DOMAINS) * 2 * 10
    assert elapsed < 60
