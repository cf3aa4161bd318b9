"""Start-up time of the command line: `smtpprobe --help` and `smtpprobe explain`, against the
interpreter alone (`python -c pass`) and `python -c "import typer"` (the CLI framework's own
floor). Runs alternate between the commands; medians of the wall time of each process.

Also lists the heaviest imports of each command (python -X importtime, cumulative).

usage: python bench/startup.py [--runs N] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import median_ms, run, smtpprobe_argv, table  # noqa: E402

REPLY = "550 5.1.1 <nobody@example.org>: Recipient address rejected: User unknown"


def commands() -> dict[str, list[str]]:
    cli = smtpprobe_argv()
    return {
        "python -c pass": [sys.executable, "-c", "pass"],
        "python -c 'import typer'": [sys.executable, "-c", "import typer"],
        "smtpprobe --help": [*cli, "--help"],
        "smtpprobe explain REPLY": [*cli, "explain", REPLY],
        "smtpprobe explain --json REPLY": [*cli, "explain", "--json", REPLY],
    }


async def measure(runs: int) -> dict[str, float]:
    tools = commands()
    env = dict(os.environ, COLUMNS="100")
    times: dict[str, list[float]] = {name: [] for name in tools}
    names = list(tools)
    for index in range(runs + 1):
        for name in names[index % len(names):] + names[:index % len(names)]:
            done = await run(tools[name], env=env)
            if done.returncode != 0:
                sys.exit(f"{name} failed: {done.stderr.decode()[-2000:]}")
            if index:
                times[name].append(done.seconds)
    return {name: median_ms(values) for name, values in times.items()}


WATCH = ("typer", "typer.rich_utils", "pydantic", "rich", "asyncio", "smtpprobe.models",
         "smtpprobe.core.knowledge.load", "smtpprobe.report.text", "aiosmtplib", "dns",
         "cryptography")


def heaviest(argv: list[str]) -> list[tuple[str, float]]:
    """Cumulative import time (ms, one run) of the big modules a command loads."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "smtpprobe", *argv[1:]],
                          capture_output=True, text=True, env=dict(os.environ, COLUMNS="100"))
    found: dict[str, float] = {}
    for line in done.stderr.splitlines():
        match = re.match(r"import time:\s+\d+ \|\s+(\d+) \|\s*(\S+)", line)
        if match and match.group(2) in WATCH:
            found[match.group(2)] = int(match.group(1)) / 1000
    return sorted(found.items(), key=lambda item: -item[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    medians = asyncio.run(measure(args.runs))
    base = medians["python -c pass"]
    print(f"start-up, {args.runs} runs each (medians):")
    print(table(["command", "wall ms", "minus python -c pass"],
                [[name, f"{ms:.0f}", f"{ms - base:.0f}"] for name, ms in medians.items()]))
    for name in ("smtpprobe --help", "smtpprobe explain REPLY"):
        parts = ", ".join(f"{mod} {ms:.0f}" for mod, ms in heaviest(commands()[name]))
        print(f"big imports of `{name}` (cumulative ms, one run): {parts or 'none'}")
    if args.json:
        args.json.write_text(json.dumps(medians, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
