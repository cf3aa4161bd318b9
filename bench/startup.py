"""Start-up time of the command line: `smtpprobe --help` and `smtpprobe explain`, against the
interpreter alone (`python -c pass`) and `python -c "import typer"` (the CLI framework's own
floor); with `--before DIR`, side by side with an exported older tree. Runs alternate between
the commands (and between before and after); medians of the wall time of each process, with
the spread (the interquartile range).

`--before DIR` takes a tree made with `git archive COMMIT | tar -x -C DIR`. Both trees run as
`python -m smtpprobe` from their own directory (so each imports its own package), each with a
knowledge cache of its own (SMTPPROBE_CACHE), both byte-compiled first, as an install would.

Also lists the heaviest imports of each command (python -X importtime, cumulative).

usage: python bench/startup.py [--runs N] [--before DIR] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import compileall
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, median_ms, run, table  # noqa: E402

REPLY = "550 5.1.1 <nobody@example.org>: Recipient address rejected: User unknown"
COMMANDS = {
    "smtpprobe --help": ["--help"],
    "smtpprobe explain REPLY": ["explain", REPLY],
    "smtpprobe explain --json REPLY": ["explain", "--json", REPLY],
}


def spread_ms(values: list[float]) -> float:
    """The interquartile range, in ms."""
    if len(values) < 4:
        return 0.0
    quartiles = statistics.quantiles(values, n=4)
    return (quartiles[2] - quartiles[0]) * 1000


async def measure(runs: int, tools: dict[str, tuple[list[str], dict[str, str], str]]
                  ) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name in tools}
    names = list(tools)
    for index in range(runs + 1):  # the first round warms caches and is not counted
        for name in names[index % len(names):] + names[:index % len(names)]:
            argv, env, cwd = tools[name]
            done = await run(argv, env=env, cwd=cwd)  # `python -m` imports from cwd
            if done.returncode != 0:
                sys.exit(f"{name} failed: {done.stderr.decode()[-2000:]}")
            if index:
                times[name].append(done.seconds)
    return times


WATCH = ("typer", "typer.rich_utils", "pydantic", "rich", "asyncio", "smtpprobe.models",
         "smtpprobe.core.knowledge.load", "smtpprobe.report.text", "aiosmtplib", "dns",
         "cryptography")


def heaviest(args: list[str], env: dict[str, str]) -> list[tuple[str, float]]:
    """Cumulative import time (ms, one run) of the big modules a command loads."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "smtpprobe", *args],
                          capture_output=True, text=True, env=env, cwd=ROOT)
    found: dict[str, float] = {}
    for line in done.stderr.splitlines():
        match = re.match(r"import time:\s+\d+ \|\s+(\d+) \|\s*(\S+)", line)
        if match and match.group(2) in WATCH:
            found[match.group(2)] = int(match.group(1)) / 1000
    return sorted(found.items(), key=lambda item: -item[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--before", type=Path, help="an exported older tree to compare with")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    caches = tempfile.TemporaryDirectory(prefix="smtpprobe-startup-")
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("SMTPPROBE_")}
    base_env["COLUMNS"] = "100"
    after_env = dict(base_env, SMTPPROBE_CACHE=str(Path(caches.name) / "after"))
    python = sys.executable
    tools: dict[str, tuple[list[str], dict[str, str], str]] = {
        "python -c pass": ([python, "-c", "pass"], base_env, str(ROOT)),
        "python -c 'import typer'": ([python, "-c", "import typer"], base_env, str(ROOT)),
    }
    for name, argv in COMMANDS.items():
        tools[name] = ([python, "-m", "smtpprobe", *argv], after_env, str(ROOT))
    if args.before:
        before = args.before.resolve()
        compileall.compile_dir(str(before / "smtpprobe"), quiet=2)
        before_env = dict(base_env, PYTHONPATH=str(before),
                          SMTPPROBE_CACHE=str(Path(caches.name) / "before"))
        for name, argv in COMMANDS.items():
            tools[f"{name} (before)"] = ([python, "-m", "smtpprobe", *argv], before_env,
                                         str(before))
    times = asyncio.run(measure(args.runs, tools))
    medians = {name: median_ms(values) for name, values in times.items()}
    base = medians["python -c pass"]
    print(f"start-up, {args.runs} runs each, alternating (medians, spread = interquartile "
          f"range):")
    if args.before:
        rows = [[name, f"{medians[f'{name} (before)']:.0f}",
                 f"{spread_ms(times[f'{name} (before)']):.0f}", f"{medians[name]:.0f}",
                 f"{spread_ms(times[name]):.0f}",
                 f"{medians[name] / medians[f'{name} (before)']:.2f}"]
                for name in COMMANDS]
        print(table(["command", "before ms", "spread", "after ms", "spread", "after / before"],
                    rows))
    print(table(["command", "wall ms", "spread", "minus python -c pass"],
                [[name, f"{ms:.0f}", f"{spread_ms(times[name]):.0f}", f"{ms - base:.0f}"]
                 for name, ms in medians.items() if not name.endswith("(before)")]))
    for name in ("smtpprobe --help", "smtpprobe explain REPLY"):
        parts = ", ".join(f"{mod} {ms:.0f}" for mod, ms in heaviest(COMMANDS[name], after_env))
        print(f"big imports of `{name}` (cumulative ms, one run): {parts or 'none'}")
    if args.json:
        args.json.write_text(json.dumps({"medians_ms": medians, "spread_ms": {
            name: spread_ms(values) for name, values in times.items()}}, indent=1) + "\n",
            encoding="utf-8")
    caches.cleanup()


if __name__ == "__main__":
    main()
