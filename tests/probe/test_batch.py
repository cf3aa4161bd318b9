"""The batch engine (`check` with many addresses): the same answers as checking each address
alone, with far fewer connections, within the server's limits.

Every comparison runs the lone checks and the batch in two fresh lab worlds built alike, so
stateful servers (greylisting) start from the same state for both.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from smtpprobe.core.address import Address, parse_address
from smtpprobe.core.knowledge.load import KnowledgeBase
from smtpprobe.lab.dns import LabDns, Record
from smtpprobe.lab.smtp import LabServer, RawConnection, Scenario, serve
from smtpprobe.lab.world import DEMO_DOMAINS, Domain, LabWorld, lab_world, lab_world_in_thread
from smtpprobe.models import CheckReport
from smtpprobe.probe.batch import BatchOptions, Pooled, transaction_size
from smtpprobe.probe.check import Checker, CheckOptions, check_all

# Loopback addresses of this module's lab servers: .61-.69 (see lab/world.py for the others).
EXTRA = (
    Domain("relay.test", ((10, "mx.relay.test", "127.0.0.61", "relay_denied"),)),
    Domain("banner.test", ((10, "mx.banner.test", "127.0.0.62", "banner_reject"),)),
    Domain("busy.test", ((10, "mx.busy.test", "127.0.0.63", "rate_limited"),)),
    Domain("old.test", ((10, "mx.old.test", "127.0.0.64", "no_esmtp"),)),
    Domain("plain.test", ((10, "mx.plain.test", "127.0.0.65", "no_starttls"),)),
    Domain("drop.test", ((10, "mx.drop.test", "127.0.0.66", "disconnect_mid"),)),
    Domain("allgone.test", ((10, "a.allgone.test", "127.0.0.67", None),
                            (20, "b.allgone.test", "127.0.0.68", None))),
    # Shares its MX host with good.test: one session serves both domains.
    Domain("alias.test", ((10, "mx.good.test", "127.0.0.21", "mailbox"),)),
)
DOMAINS = DEMO_DOMAINS + EXTRA
LOCAL_PARTS = ("alice", "bob", "nobody", "postmaster", "someone")

# The type of conftest's run_cli fixture.
RunCli = Callable[..., subprocess.CompletedProcess[str]]


def parsed(addresses: Sequence[str]) -> list[Address]:
    out = []
    for text in addresses:
        one = parse_address(text)
        assert one is not None
        out.append(one)
    return out


def options_for(world: LabWorld, **extra: Any) -> CheckOptions:
    base = CheckOptions(helo="probe.smtpprobe.test", port=world.port,
                        nameservers=(world.resolver,), cafile=world.cafile, timeout=3.0,
                        deadline=60.0)
    return replace(base, **extra)


def essence(report: CheckReport) -> dict[str, Any]:
    """What must not depend on batching: the answer and why."""
    return {
        "verdict": report.verdict.value,
        "category": report.finding.category.value,
        "rule": report.finding.rule,
        "code": report.finding.code,
        "address_status": report.address_status.value,
        "catch_all": report.catch_all,
        "hosts": [(h.host, h.address) for h in report.hosts],
        "findings": sorted(f.rule for f in report.findings),
    }


async def alone(kb: KnowledgeBase, options: CheckOptions,
                addresses: Sequence[Address]) -> list[CheckReport]:
    return await check_all(Checker(kb, options), addresses)


async def batched(kb: KnowledgeBase, options: CheckOptions, addresses: Sequence[Address],
                  batch: BatchOptions = BatchOptions()) -> tuple[list[CheckReport], Pooled]:
    pooled = Pooled(batch)
    return await check_all(Checker(kb, options, strategy=pooled), addresses), pooled


def assert_same(single: Sequence[CheckReport], many: Sequence[CheckReport]) -> None:
    assert [r.address for r in many] == [r.address for r in single]
    for one, other in zip(single, many, strict=True):
        assert essence(other) == essence(one), one.address


@pytest.mark.parametrize("catch_all", [False, True], ids=["plain", "catch-all"])
async def test_batch_answers_like_lone_checks_in_the_lab(kb: KnowledgeBase,
                                                         catch_all: bool) -> None:
    addresses = parsed([f"{local}@{domain.name}" for domain in DOMAINS for local in LOCAL_PARTS]
                       + ["alice@nosuch.test", "alice@good.test"])  # NXDOMAIN, a duplicate
    async with lab_world(DOMAINS, greylist_delay=30) as world:
        single = await alone(kb, options_for(world, catch_all=catch_all), addresses)
        lone_connections = sum(s.connections for s in world.servers.values())
    async with lab_world(DOMAINS, greylist_delay=30) as world:
        many, checker = await batched(kb, options_for(world, catch_all=catch_all), addresses)
        batch_connections = sum(s.connections for s in world.servers.values())
        good = world.servers["mx.good.test"]
        # good.test and alias.test share mx.good.test (and backup.test falls back to it).
        assert good.connections <= 2
    assert_same(single, many)
    assert batch_connections < lone_connections / 3
    # Attempts include the three hosts where nothing listens (backup.test, allgone.test).
    assert checker.sessions >= batch_connections + 3


async def test_batch_without_pipelining_answers_the_same(kb: KnowledgeBase) -> None:
    addresses = parsed([f"{local}@{domain}" for domain in ("good.test", "full.test",
                                                           "drop.test", "catchall.test")
                        for local in LOCAL_PARTS])
    async with lab_world(DOMAINS) as world:
        single = await alone(kb, options_for(world, pipelining=False), addresses)
    async with lab_world(DOMAINS) as world:
        many, _ = await batched(kb, options_for(world, pipelining=False), addresses)
        # Without PIPELINING each command waits for its reply, but the session is shared.
        assert world.servers["mx.good.test"].connections == 1
    assert_same(single, many)


# --- a server with tight limits ---------------------------------------------------------------


@dataclass
class Limits:
    """A strict server: `rcpt_limit` recipients per transaction (452 after), `error_limit`
    refused commands per connection (then 421 and hang up, as Postfix does at its hard limit).
    Records how many connections it had at once."""

    rcpt_limit: int = 3
    error_limit: int = 5
    mailboxes: tuple[str, ...] = ("alice", "bob", "postmaster")
    active: int = 0
    most_at_once: int = 0
    errors_per_connection: list[int] | None = None

    async def __call__(self, conn: RawConnection) -> None:
        self.active += 1
        self.most_at_once = max(self.most_at_once, self.active)
        if self.errors_per_connection is None:
            self.errors_per_connection = []
        self.errors_per_connection.append(0)
        mine = len(self.errors_per_connection) - 1
        name = conn.server.hostname
        try:
            await conn.send(f"220 {name} ESMTP strict")
            in_mail, rcpts, errors = False, 0, 0
            while (line := await conn.read_command(timeout=10)) is not None:
                verb, _, arg = line.partition(" ")
                verb = verb.upper()
                if verb == "EHLO":
                    await conn.send(f"250-{name}", "250-PIPELINING", "250 ENHANCEDSTATUSCODES")
                elif verb == "MAIL":
                    in_mail, rcpts = True, 0
                    await conn.send("250 2.1.0 Ok")
                elif verb == "RSET":
                    in_mail, rcpts = False, 0
                    await conn.send("250 2.0.0 Ok")
                elif verb == "RCPT":
                    address = arg.partition("<")[2].partition(">")[0]
                    if not in_mail:
                        errors += 1
                        await conn.send("503 5.5.1 Error: need MAIL command")
                    elif rcpts >= self.rcpt_limit:
                        await conn.send("452 4.5.3 Error: too many recipients")
                    elif address.partition("@")[0].lower() in self.mailboxes:
                        rcpts += 1
                        await conn.send("250 2.1.5 Ok")
                    else:
                        rcpts += 1
                        errors += 1
                        await conn.send(f"550 5.1.1 <{address}>: Recipient address rejected: "
                                        "User unknown in virtual mailbox table")
                elif verb == "QUIT":
                    await conn.send("221 2.0.0 Bye")
                    break
                else:
                    errors += 1
                    await conn.send("502 5.5.2 Error: command not recognized")
                self.errors_per_connection[mine] = errors
                if errors >= self.error_limit:
                    await conn.send(f"421 4.7.0 {name} Error: too many errors")
                    break
        finally:
            self.active -= 1
            conn.close()


@asynccontextmanager
async def strict_world(limits: Limits) -> AsyncIterator[tuple[LabServer, tuple[str, int]]]:
    server = await serve(Scenario("strict", "tight limits", raw=limits), host="127.0.0.69",
                         hostname="mx.strict.test")
    records = [Record("strict.test", "MX", "10 mx.strict.test."),
               Record("mx.strict.test", "A", "127.0.0.69")]
    try:
        async with LabDns(records) as zone:
            yield server, zone.address
    finally:
        await server.close()


def strict_options(port: int, resolver: tuple[str, int]) -> CheckOptions:
    return CheckOptions(helo="probe.smtpprobe.test", port=port, nameservers=(resolver,),
                        timeout=3.0, deadline=60.0, starttls=False)


STRICT = [f"{local}@strict.test" for local in
          ("alice", "x1", "bob", "x2", "x3", "postmaster", "x4", "x5", "x6", "alice", "x7",
           "bob", "x8", "x9", "x10", "postmaster", "x11", "bob", "x12", "alice")]


async def test_limits_421_and_452_are_asked_again_where_a_lone_check_would_ask(
        kb: KnowledgeBase) -> None:
    addresses = parsed(STRICT)
    async with strict_world(Limits()) as (server, resolver):
        single = await alone(kb, strict_options(server.port, resolver), addresses)
    # The engine's own error budget (8) is above this server's limit (5): it meets the 421
    # and must recover; the 452s after three recipients send the rest to new transactions.
    limits = Limits()
    async with strict_world(limits) as (server, resolver):
        many, checker = await batched(kb, strict_options(server.port, resolver), addresses)
        assert server.connections < len(addresses) / 2
    assert_same(single, many)
    assert checker.transactions > 1


async def test_error_budget_keeps_sessions_below_the_servers_limit(kb: KnowledgeBase) -> None:
    limits = Limits(rcpt_limit=1000, error_limit=5)
    async with strict_world(limits) as (server, resolver):
        many, checker = await batched(kb, strict_options(server.port, resolver),
                                      parsed(STRICT), BatchOptions(error_budget=4))
        sessions = list(server.sessions)
    assert limits.errors_per_connection and max(limits.errors_per_connection) <= 4
    # No session was ended by the server: each ended with our QUIT.
    assert all(s and s[-1].upper() == "QUIT" for s in sessions)
    assert [r.verdict.value for r in many] == [
        "accepted" if a.split("@")[0] in Limits.mailboxes else "rejected" for a in STRICT]


@pytest.mark.parametrize("per_mx", [1, 3])
async def test_per_mx_cap(kb: KnowledgeBase, per_mx: int) -> None:
    limits = Limits(rcpt_limit=1000, error_limit=100)
    addresses = parsed([f"user{i}x@strict.test" if i % 5 else "alice@strict.test"
                        for i in range(60)])
    async with strict_world(limits) as (server, resolver):
        await batched(kb, strict_options(server.port, resolver), addresses,
                      BatchOptions(per_mx=per_mx, error_budget=4))
    assert 1 <= limits.most_at_once <= per_mx
    if per_mx > 1:
        assert limits.most_at_once > 1  # the cap is a cap, not a serialisation


def test_transaction_size() -> None:
    # Nothing seen yet: no more recipients than refusals the budget allows.
    assert transaction_size(8, 0, 0, 100) == 8
    assert transaction_size(3, 0, 0, 100) == 3
    assert transaction_size(0, 50, 0, 100) == 0
    # Mostly accepted so far: transactions grow, up to the cap.
    grown = transaction_size(8, 40, 0, 100)
    assert 8 < grown <= 100
    assert transaction_size(8, 400, 0, 100) == 100
    assert transaction_size(8, 400, 0, 20) == 20
    # Many refusals: back to the safe size.
    assert transaction_size(8, 40, 20, 100) == 8
    # Less room left, smaller transactions.
    assert transaction_size(2, 40, 0, 100) < grown


def test_batch_options_are_checked() -> None:
    for bad in ({"per_mx": 0}, {"concurrency": 0}, {"rate": 0.0}, {"error_budget": 0},
                {"max_rcpt": 0}):
        with pytest.raises(ValueError):
            BatchOptions(**bad)  # type: ignore[arg-type]


# --- the command line ---------------------------------------------------------------------------


def test_cli_file_prints_json_lines_in_input_order(tmp_path: Path, run_cli: RunCli) -> None:
    """`check --file` through the real command line, against a lab run in a thread."""
    with lab_world_in_thread() as lab:
        assert isinstance(lab, LabWorld)
        listing = ["# a comment", "nobody@good.test", "alice@good.test", "",
                   "bob@full.test", "alice@nullmx.test", "postmaster@good.test"]
        path = tmp_path / "list.txt"
        path.write_text("\n".join(listing) + "\n", encoding="utf-8")
        host, port = lab.resolver
        done = run_cli("check", "--file", str(path), "--json", "--resolver", f"{host}:{port}",
                       "--port", str(lab.port), "--cafile", lab.cafile,
                       "--helo", "probe.smtpprobe.test", "--timeout", "3", "--per-mx", "1",
                       "--rate", "50")
        assert done.returncode == 1, done.stderr  # one address is rejected
        lines = [json.loads(line) for line in done.stdout.splitlines()]
        assert [d["address"] for d in lines] == [a for a in listing if a and a[0] != "#"]
        assert [d["verdict"] for d in lines] == ["rejected", "accepted", "rejected",
                                                 "rejected", "accepted"]  # 552: rejected
        assert all(d["schema"] == "smtpprobe.check/1" for d in lines)
        assert lab.servers["mx.good.test"].connections == 1
        bad = run_cli("check", "a@b.test", "c@d.test", "--per-mx", "0")
        assert bad.returncode == 2 and "--per-mx" in bad.stderr


# --- the real Postfix -----------------------------------------------------------------------------

TOPOLOGY: dict[str, Any] = json.loads(
    (Path(__file__).parents[1] / "realmta" / "topology.json").read_text(encoding="utf-8"))
ENV = TOPOLOGY["env"]


@pytest.mark.realmta
@pytest.mark.skipif(not os.environ.get(ENV["enabled"]),
                    reason=f"{ENV['enabled']} is not set (tests/realmta/realmta.sh start)")
async def test_batch_answers_like_lone_checks_against_postfix(kb: KnowledgeBase, tmp_path: Path,
                                                              run_cli: RunCli) -> None:
    # greylist.test is left out: postgrey remembers the first check, so a second one
    # seconds later is a different question.
    domains = [d for d, info in TOPOLOGY["domains"].items() if d != "greylist.test"]
    locals_ = ["alice", "bob", "postmaster", "nosuchuser", "full", "disabled", "moved"]
    listing = [f"{local}@{domain}" for domain in domains for local in locals_]
    listing += [f"nobody{n}x@accept.test" for n in range(12)]  # past Postfix's soft limit
    resolver = (os.environ[ENV["resolver"]], 53)
    options = CheckOptions(helo="probe.smtpprobe.test", nameservers=(resolver,),
                           cafile=os.environ[ENV["ca_file"]], timeout=10.0, deadline=120.0)
    single = await alone(kb, options, parsed(listing))
    path = tmp_path / "list.txt"
    path.write_text("\n".join(listing) + "\n", encoding="utf-8")
    # Many addresses against Postfix, 10 s per step at worst: a generous bound, not a budget.
    done = await asyncio.to_thread(
        run_cli, "check", "--file", str(path), "--json",
        "--resolver", os.environ[ENV["resolver"]], "--cafile", os.environ[ENV["ca_file"]],
        "--helo", "probe.smtpprobe.test", "--timeout", "10", timeout=900)
    assert "Traceback" not in done.stderr, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [d["address"] for d in lines] == listing
    for one, data in zip(single, lines, strict=True):
        got = (data["verdict"], data["finding"]["category"], data["address_status"],
               data["finding"]["rule"])
        want = (one.verdict.value, one.finding.category.value, one.address_status.value,
                one.finding.rule)
        assert got == want, one.address
