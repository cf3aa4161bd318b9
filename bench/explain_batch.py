#!/usr/bin/env python3
"""How fast `smtpprobe explain --batch` classifies: replies per second, end to end and in-process.

Builds a batch from the labelled corpus (tests/data/corpus.jsonl) repeated to --count lines,
then times, --runs times each:
  * the real command: `python -m smtpprobe explain --batch FILE --json > /dev/null`
    (start-up and knowledge loading included), and
  * the classifier alone, in this process (knowledge loaded once, outside the timing).
Prints medians (wall time, and the in-process CPU time, which other load on the machine
disturbs less). Usage: .venv/bin/python bench/explain_batch.py [--count 10000] [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10000)
    parser.add_argument("--runs", type=int, default=5)
    opts = parser.parse_args()

    corpus = [json.loads(line) for line in (ROOT / "tests/data/corpus.jsonl").open()]
    items = [{"stage": e["stage"], "reply": e["reply"]} for e in corpus]
    lines = [json.dumps(items[i % len(items)]) for i in range(opts.count)]

    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as handle:
        handle.write("\n".join(lines) + "\n")
        batch = handle.name

    cli: list[float] = []
    for _ in range(opts.runs):
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "smtpprobe", "explain", "--batch", batch,
                               "--json"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        cli.append(time.perf_counter() - started)
        if done.returncode != 0:
            print(done.stderr.decode(), file=sys.stderr)
            return 1

    from smtpprobe.cli.app import parse_stage
    from smtpprobe.core.classify import explain
    from smtpprobe.core.knowledge import load as knowledge

    kb = knowledge.load()
    parsed = [(parse_stage(i["stage"]), i["reply"]) for i in
              (items[k % len(items)] for k in range(opts.count))]
    inproc: list[float] = []
    cpu: list[float] = []
    for _ in range(opts.runs):
        started, cpu_started = time.perf_counter(), time.process_time()
        for stage, reply in parsed:
            explain(kb, reply, stage)
        inproc.append(time.perf_counter() - started)
        cpu.append(time.process_time() - cpu_started)
    Path(batch).unlink()

    cli_med, in_med = statistics.median(cli), statistics.median(inproc)
    print(f"explain --batch, {opts.count} replies from the corpus, {len(kb.rules)} rules, "
          f"median of {opts.runs} runs")
    print(f"  command line (start-up included): {cli_med:6.2f} s  "
          f"{opts.count / cli_med:8.0f} replies/s")
    print(f"  classifier in-process:            {in_med:6.2f} s  "
          f"{opts.count / in_med:8.0f} replies/s")
    cpu_med = statistics.median(cpu)
    print(f"  classifier in-process, CPU time:  {cpu_med:6.2f} s  "
          f"{opts.count / cpu_med:8.0f} replies/s  (less sensitive to other load)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
