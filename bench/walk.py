"""One address, one walk: `smtpprobe check` against swaks, at 0, 50, 100 and 150 ms round trip.

Both clients do the same walk against a real Postfix through bench/proxy.py: greeting, EHLO,
STARTTLS, EHLO, MAIL FROM:<>, RCPT TO:<an existing mailbox>, QUIT. The Postfix is the
benchmark's own (bench/benchmta.py, bench0.test on 127.0.0.111:25, started here); with
`--realmta` it is the test installation's mx1 (127.0.0.11:25, alice@accept.test). Both run
Postfix's defaults, except that the benchmark's has flow control off (in_flow_delay = 0): a
probe never delivers, so a test server's flow-control tokens run out, and from then on every
first accepted RCPT of a transaction waits one second, for every client alike.
Runs alternate between the clients, so a busy moment of the machine hits all of them alike.
For each client and delay the script prints the median wall time of the whole command
(start-up included) with its spread (the interquartile range), the median time the connection
was open, the round trips counted by the proxy, and the ratio of the medians to swaks. With
`--startup-off` smtpprobe also runs with its head start turned off (SMTPPROBE_STARTUP=off,
cli/startup.py), as a fourth client in the same alternation.

usage: python bench/walk.py [--runs N] [--rtt MS ...] [--realmta] [--startup-off] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchmta  # noqa: E402
from common import (  # noqa: E402
    HELO,
    PROXY_HOST,
    median_ms,
    need_swaks,
    realmta,
    run,
    smtpprobe_argv,
    table,
)
from proxy import DelayProxy  # noqa: E402

REALMTA = (("127.0.0.11", 25), "alice@accept.test")
BENCH = ((benchmta.LISTENERS[0], 25), f"user1@{benchmta.DOMAINS[0]}")


OFF = "smtpprobe check (head start off)"


def clients(port: int, cafile: str, swaks: str, recipient: str, *,
            startup_off: bool = False) -> dict[str, list[str]]:
    common_swaks = [swaks, "--server", PROXY_HOST, "--port", str(port), "--tls",
                    "--to", recipient, "--from", "<>", "--helo", HELO, "--quit-after", "RCPT"]
    check = [*smtpprobe_argv(), "check", recipient, "--server", f"{PROXY_HOST}:{port}",
             "--cafile", cafile, "--helo", HELO, "--json"]
    return {
        "smtpprobe check": check,
        "swaks": common_swaks,
        "swaks --pipeline": [*common_swaks, "--pipeline"],
        **({OFF: check} if startup_off else {}),
    }


def spread_ms(values: list[float]) -> float:
    """The interquartile range of the wall times, in ms."""
    if len(values) < 4:
        return 0.0
    quartiles = statistics.quantiles(values, n=4)
    return (quartiles[2] - quartiles[0]) * 1000


async def measure(rtt_ms: float, runs: int, cafile: str, swaks: str,
                  target: tuple[tuple[str, int], str], *,
                  startup_off: bool = False) -> dict[str, dict[str, float]]:
    upstream, recipient = target
    proxy = await DelayProxy((PROXY_HOST, 0), upstream, delay=rtt_ms / 2000).start()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMTPPROBE_")}
    try:
        tools = clients(proxy.address[1], cafile, swaks, recipient, startup_off=startup_off)
        walls: dict[str, list[float]] = {name: [] for name in tools}
        opens: dict[str, list[float]] = {name: [] for name in tools}
        trips: dict[str, Counter[int]] = {name: Counter() for name in tools}
        writes: dict[str, Counter[int]] = {name: Counter() for name in tools}
        names = list(tools)
        for index in range(runs + 1):
            order = names[index % len(names):] + names[:index % len(names)]
            for name in order:
                proxy.reset()
                done = await run(tools[name], env=dict(env, SMTPPROBE_STARTUP="off")
                                 if name == OFF else env)
                await asyncio.sleep(rtt_ms / 1000 + 0.02)  # let the proxy see the close
                flows = proxy.reset()
                if done.returncode != 0 or len(flows) != 1:
                    sys.exit(f"{name} failed (exit {done.returncode}, {len(flows)} connections):"
                             f"\n{done.stdout.decode()[-2000:]}\n{done.stderr.decode()[-2000:]}")
                if index == 0:
                    continue  # warm-up: caches, bytecode
                walls[name].append(done.seconds)
                opens[name].append(flows[0].duration)
                trips[name][flows[0].round_trips] += 1
                writes[name][flows[0].client_writes] += 1
        return {name: {
            "wall_ms": median_ms(walls[name]),
            "connection_ms": median_ms(opens[name]),
            "round_trips": trips[name].most_common(1)[0][0],
            "client_writes": writes[name].most_common(1)[0][0],
            "runs": len(walls[name]),
            "wall_spread_ms": spread_ms(walls[name]),
        } for name in tools}
    finally:
        await proxy.close()


async def main_async(rtts: list[float], runs: int, use_realmta: bool, *,
                     startup_off: bool = False) -> dict[str, dict[str, dict[str, float]]]:
    swaks = need_swaks()
    if use_realmta:
        cafile, target = realmta()["ca_file"], REALMTA
    else:
        cafile, target = str(benchmta.STATE / "ca.pem"), BENCH
    results = {}
    for rtt in rtts:
        results[f"{rtt:g}"] = await measure(rtt, runs, cafile, swaks, target,
                                            startup_off=startup_off)
    return results


def report(results: dict[str, dict[str, dict[str, float]]]) -> str:
    rows = []
    for rtt, tools in results.items():
        base = tools["swaks"]
        for name, fig in tools.items():
            rows.append([f"{rtt} ms", name, f"{fig['wall_ms']:.0f}",
                         f"{fig['wall_spread_ms']:.0f}",
                         f"{fig['wall_ms'] / base['wall_ms']:.2f}",
                         f"{fig['connection_ms']:.0f}",
                         f"{fig['connection_ms'] / base['connection_ms']:.2f}",
                         # Without delay, bursts blur (a TLS ticket arrives between the
                         # client's Finished and its EHLO): count at a real round trip only.
                         int(fig["round_trips"]) if float(rtt) > 0 else "-",
                         int(fig["client_writes"]) if float(rtt) > 0 else "-"])
    return table(["round trip", "client", "wall ms (median)", "spread", "vs swaks",
                  "connection ms (median)", "vs swaks", "round trips", "client writes"], rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--rtt", type=float, nargs="+", default=[0.0, 50.0, 100.0, 150.0],
                        help="round-trip times in ms")
    parser.add_argument("--startup-off", action="store_true",
                        help="also run smtpprobe with its head start off (cli/startup.py)")
    parser.add_argument("--realmta", action="store_true",
                        help="walk to the test installation's mx1 instead of the bench Postfix")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    started_mta = False
    if not args.realmta and not benchmta.running():
        benchmta.start()
        started_mta = True
    try:
        results = asyncio.run(main_async(args.rtt, args.runs, args.realmta,
                                         startup_off=args.startup_off))
    finally:
        if started_mta:
            benchmta.stop()
    print(f"single walk, {args.runs} runs per client and round trip, alternating (medians; "
          f"spread: interquartile range of the wall time):")
    print(report(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
