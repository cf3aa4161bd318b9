"""Every performance figure of docs/performance.md, from one command.

Needs the real-MTA test installation running (sudo tests/realmta/realmta.sh start; eval
"$(tests/realmta/realmta.sh env)"), swaks, and root for the benchmark's own Postfix
(bench/benchmta.py, started and stopped here). Runs, in order:

  bench/startup.py   start-up of --help and explain against python -c pass
  bench/walk.py      one address, smtpprobe check against swaks, 0 to 150 ms round trip
  bench/sweep.py     a three-port sweep: concurrent or serial
  bench/many.py      1,000 addresses over 10 domains at 50 ms round trip

and writes all figures to bench/results.json as well (`--out` to change).

usage: .venv/bin/python bench/run.py [--quick] [--full-loops] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs, for a smoke test")
    parser.add_argument("--full-loops", action="store_true",
                        help="run the per-address loops (swaks, smtpprobe) over all 1,000 "
                             "addresses instead of timing the first 50 and scaling")
    parser.add_argument("--out", type=Path, default=HERE / "results.json")
    args = parser.parse_args()
    runs = "3" if args.quick else "15"
    loop_limit = "0" if args.full_loops else ("10" if args.quick else "50")
    results: dict[str, object] = {"when": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    with tempfile.TemporaryDirectory(prefix="smtpprobe-bench-") as tmp:
        steps = [
            ("startup", ["startup.py", "--runs", runs]),
            ("walk", ["walk.py", "--runs", runs]),
            ("sweep", ["sweep.py", "--runs", "3" if args.quick else "7"]),
            ("many", ["many.py", "--loop-limit", loop_limit]),
        ]
        for name, argv in steps:
            out = Path(tmp) / f"{name}.json"
            print(f"== {name} ==", flush=True)
            done = subprocess.run([sys.executable, str(HERE / argv[0]), *argv[1:],
                                   "--json", str(out)])
            if done.returncode != 0:
                sys.exit(f"bench/{argv[0]} failed (exit {done.returncode})")
            results[name] = json.loads(out.read_text(encoding="utf-8"))
            print(flush=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    print(f"figures written to {args.out}")


if __name__ == "__main__":
    main()
