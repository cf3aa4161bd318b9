"""A thousand addresses over ten domains at 50 ms round trip, against a real Postfix.

The private Postfix of bench/benchmta.py serves bench0.test ... bench9.test, one MX address per
domain. Each MX address gets its own delaying proxy (bench/proxy.py, 127.0.0.101-110:2525), and
a lab DNS server on 127.0.0.100 answers with the same delay (a query is one round trip). The
list: 100 addresses per domain, 85 that exist and 15 that do not, shuffled with a fixed seed.

Compared, on the same list:
- `smtpprobe check --file LIST --json`: the batch engine, as a user runs it;
- one by one: every address on its own connections, 20 at a time, in one process
  (bench/one_by_one.py, smtpprobe's reference path);
- swaks in a loop, one run per address (`--loop-limit N` times the first N and scales up);
- `smtpprobe check ADDRESS` in a loop, one process per address (same limit).

Prints wall time, connections, round trips in all, and whether every answer agrees with the
one-by-one results.

usage: python bench/many.py [--rtt MS] [--count N] [--loop-limit N] [--keep-mta] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import benchmta  # noqa: E402
from common import HELO, ROOT, need_swaks, run, smtpprobe_argv, table  # noqa: E402
from proxy import DelayProxy  # noqa: E402

PROXY_PORT = 2525
DNS_HOST = "127.0.0.100"
PROXIES = tuple(f"127.0.0.{101 + i}" for i in range(len(benchmta.DOMAINS)))


def address_list(count: int, seed: int = 5321) -> list[str]:
    rng = random.Random(seed)
    per_domain = count // len(benchmta.DOMAINS)
    addresses = []
    for domain in benchmta.DOMAINS:
        exist = round(per_domain * 0.85)
        addresses += [f"user{n}@{domain}" for n in rng.sample(range(100000), exist)]
        addresses += [f"nobody{chr(97 + n % 26)}{n}@{domain}" for n in
                      rng.sample(range(100000), per_domain - exist)]
    rng.shuffle(addresses)
    return addresses


def expected(address: str) -> str:
    return "accepted" if address.startswith("user") else "rejected"


@dataclass
class Figure:
    name: str
    seconds: float
    connections: int
    round_trips: int
    answers: list[dict[str, Any]] | None = None
    note: str = ""


class World:
    """The proxies and the DNS server, in the benchmark's event loop."""

    def __init__(self, rtt_ms: float) -> None:
        self.rtt = rtt_ms / 1000
        self.proxies: list[DelayProxy] = []
        self.dns: Any = None

    async def __aenter__(self) -> World:
        sys.path.insert(0, str(ROOT))
        from smtpprobe.lab.dns import LabDns, Record

        for listen, upstream in zip(PROXIES, benchmta.LISTENERS, strict=True):
            proxy = DelayProxy((listen, PROXY_PORT), (upstream, 25), delay=self.rtt / 2)
            self.proxies.append(await proxy.start())
        records = []
        for i, domain in enumerate(benchmta.DOMAINS):
            records.append(Record(domain, "MX", f"10 {benchmta.mx_name(i)}."))
            records.append(Record(benchmta.mx_name(i), "A", PROXIES[i]))
        names = {r.name for r in records}
        behaviour = {name: f"delay:{self.rtt:g}" for name in names} if self.rtt else None
        self.dns = LabDns(records, host=DNS_HOST, behaviour=behaviour)
        await self.dns.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.dns.__aexit__(None, None, None)
        for proxy in self.proxies:
            await proxy.close()

    @property
    def resolver(self) -> str:
        host, port = self.dns.address
        return f"{host}:{port}"

    def reset(self) -> None:
        for proxy in self.proxies:
            proxy.reset()

    def flows(self) -> tuple[int, int]:
        flows = [f for proxy in self.proxies for f in proxy.reset()]
        return len(flows), sum(f.round_trips for f in flows)


def answers(stdout: bytes) -> list[dict[str, Any]]:
    out = []
    for line in stdout.decode().splitlines():
        data = json.loads(line)
        out.append({"address": data["address"], "verdict": data["verdict"],
                    "category": data["finding"]["category"],
                    "address_status": data["address_status"]})
    return out


async def measure(args: argparse.Namespace) -> list[Figure]:
    cafile = str(benchmta.STATE / "ca.pem")
    addresses = address_list(args.count)
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="smtpprobe-bench-") as tmp:
        listing = Path(tmp) / "addresses.txt"
        listing.write_text("\n".join(addresses) + "\n", encoding="utf-8")
        async with World(args.rtt) as world:
            common = ["--resolver", world.resolver, "--port", str(PROXY_PORT), "--cafile",
                      cafile, "--helo", HELO]

            async def timed(name: str, argv: list[str], note: str = "") -> Figure:
                world.reset()
                done = await run(argv)
                await asyncio.sleep(world.rtt + 0.1)
                connections, trips = world.flows()
                if done.returncode not in (0, 1):
                    sys.exit(f"{name} failed ({done.returncode}): {done.stderr.decode()[-3000:]}")
                return Figure(name, done.seconds, connections, trips, answers(done.stdout), note)

            figures.append(await timed("smtpprobe check --file (batch)",
                                       [*smtpprobe_argv(), "check", "--file", str(listing),
                                        "--json", *common]))
            figures.append(await timed("one by one, 20 at a time (one process)",
                                       [sys.executable, str(HERE / "one_by_one.py"),
                                        str(listing), *common]))
            limit = min(args.loop_limit or len(addresses), len(addresses))
            scale = len(addresses) / limit
            note = "" if limit == len(addresses) else f"first {limit}, times {scale:g}"
            swaks = need_swaks()
            world.reset()
            started = time.perf_counter()
            swaks_answers = []
            for address in addresses[:limit]:
                index = benchmta.DOMAINS.index(address.rpartition("@")[2])
                done = await run([swaks, "--server", PROXIES[index], "--port", str(PROXY_PORT),
                                  "--tls", "--to", address, "--from", "<>", "--helo", HELO,
                                  "--quit-after", "RCPT"])
                swaks_answers.append({"address": address,
                                      "verdict": "accepted" if done.returncode == 0
                                      else "rejected"})
            seconds = time.perf_counter() - started
            await asyncio.sleep(world.rtt + 0.1)
            connections, trips = world.flows()
            figures.append(Figure("swaks in a loop", seconds * scale, round(connections * scale),
                                  round(trips * scale), None, note))
            world.reset()
            started = time.perf_counter()
            for address in addresses[:limit]:
                await run([*smtpprobe_argv(), "check", address, "--json", *common])
            seconds = time.perf_counter() - started
            await asyncio.sleep(world.rtt + 0.1)
            connections, trips = world.flows()
            figures.append(Figure("smtpprobe check in a loop", seconds * scale,
                                  round(connections * scale), round(trips * scale), None, note))
            wrong = [a["address"] for a in swaks_answers if a["verdict"] != expected(a["address"])]
            if wrong:
                sys.exit(f"swaks disagrees with the mailbox list on {wrong[:5]}")
    return figures


def report(figures: list[Figure], count: int, rtt: float) -> str:
    reference = figures[1].answers or []
    batch = figures[0].answers or []
    same = batch == reference
    verdicts = Counter(a["verdict"] for a in batch)
    wrong = [a["address"] for a in batch if a["verdict"] != expected(a["address"])]
    rows = [[f.name, f"{f.seconds:.1f}", f"{f.seconds / figures[0].seconds:.1f}",
             f.connections, f.round_trips, f.note] for f in figures]
    lines = [
        f"{count} addresses over {len({a.rpartition('@')[2] for a in address_list(count)})} "
        f"domains, {rtt:g} ms round trip:",
        table(["method", "wall s", "vs batch", "connections", "round trips in all", "note"],
              rows),
        f"batch verdicts: {dict(verdicts)}; as the mailbox list says: "
        f"{'yes' if not wrong else f'no, {len(wrong)} differ'}",
        f"batch answers identical to one by one (verdict, category, address status): "
        f"{'yes' if same else 'NO'}",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rtt", type=float, default=50.0, help="round trip in ms")
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--loop-limit", type=int, default=0,
                        help="time the per-address loops on the first N addresses only")
    parser.add_argument("--keep-mta", action="store_true", help="leave the bench Postfix up")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    was_running = benchmta.running()
    benchmta.start()
    try:
        figures = asyncio.run(measure(args))
    finally:
        if not (args.keep_mta or was_running):
            benchmta.stop()
    print(report(figures, args.count, args.rtt))
    if args.json:
        args.json.write_text(json.dumps([{k: v for k, v in vars(f).items() if k != "answers"}
                                         for f in figures], indent=1) + "\n")
    if figures[0].answers != figures[1].answers:
        sys.exit(1)


if __name__ == "__main__":
    main()
