"""Is a port sweep as long as its slowest port, or the sum of all? At 50 ms round trip.

`smtpprobe sweep` tries ports 25, 587 and 465 of the real Postfix (tests/realmta, with the
test account's login on 587 and 465), each through its own delaying proxy on 127.0.0.91. From
the proxies' records of one sweep: the time from the first connection opened to the last one
closed (the sweep's span), against the longest single connection and the sum of all three.
Also the wall time of the whole command for all three ports and for each port alone.

usage: python bench/sweep.py [--runs N] [--rtt MS] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import HELO, PROXY_HOST, median_ms, realmta, run, smtpprobe_argv, table  # noqa: E402
from proxy import DelayProxy  # noqa: E402

PORTS = (25, 587, 465)
UPSTREAM = "127.0.0.11"


async def measure(runs: int, rtt_ms: float) -> dict[str, float]:
    env = realmta()
    proxies = [await DelayProxy((PROXY_HOST, port), (UPSTREAM, port),
                                delay=rtt_ms / 2000).start() for port in PORTS]
    argv = [*smtpprobe_argv(), "sweep", PROXY_HOST, "--cafile", env["ca_file"], "--helo", HELO,
            "--user", env["user"], "--password-file", env["password_file"], "--json"]
    spans: list[float] = []
    longest: list[float] = []
    sums: list[float] = []
    walls: dict[str, list[float]] = {"all": [], **{str(p): [] for p in PORTS}}
    try:
        for index in range(runs + 1):
            for proxy in proxies:
                proxy.reset()
            done = await run([*argv, "--ports", ",".join(map(str, PORTS))])
            await asyncio.sleep(rtt_ms / 1000 + 0.1)
            flows = [f for proxy in proxies for f in proxy.reset()]
            if done.returncode not in (0, 1, 3) or len(flows) != len(PORTS):
                sys.exit(f"sweep failed (exit {done.returncode}, {len(flows)} connections): "
                         f"{done.stderr.decode()[-2000:]}")
            for port in PORTS:
                single = await run([*argv, "--ports", str(port)])
                if index:
                    walls[str(port)].append(single.seconds)
            if not index:
                continue  # warm-up
            walls["all"].append(done.seconds)
            spans.append(max(f.closed or 0.0 for f in flows) - min(f.opened for f in flows))
            longest.append(max(f.duration for f in flows))
            sums.append(sum(f.duration for f in flows))
    finally:
        for proxy in proxies:
            await proxy.close()
    return {"span_ms": median_ms(spans), "longest_ms": median_ms(longest),
            "sum_ms": median_ms(sums),
            "span_over_longest": statistics.median(
                s / m for s, m in zip(spans, longest, strict=True)),
            **{f"wall_{name}_ms": median_ms(values) for name, values in walls.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--rtt", type=float, default=50.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    fig = asyncio.run(measure(args.runs, args.rtt))
    print(f"sweep of ports {', '.join(map(str, PORTS))} at {args.rtt:g} ms round trip, "
          f"{args.runs} runs (medians):")
    print(table(["measure", "ms"], [
        ["sweep span (first connect to last close)", f"{fig['span_ms']:.0f}"],
        ["longest single port connection", f"{fig['longest_ms']:.0f}"],
        ["sum of the three connections", f"{fig['sum_ms']:.0f}"],
        ["smtpprobe sweep, all three ports (wall)", f"{fig['wall_all_ms']:.0f}"],
        *[[f"smtpprobe sweep --ports {p} (wall)", f"{fig[f'wall_{p}_ms']:.0f}"]
          for p in PORTS],
    ]))
    print(f"span / longest port: {fig['span_over_longest']:.2f} "
          f"(1.00 = fully concurrent; serial would be about "
          f"{fig['sum_ms'] / fig['longest_ms']:.2f})")
    if args.json:
        args.json.write_text(json.dumps(fig, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
