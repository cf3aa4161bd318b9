"""How the batch engine scales: 5,000 / 20,000 / 100,000 addresses, before and after.

A lab world on loopback (no real MTA, no root): eight domains, scale0.test ... scale7.test, two
on each of four lab mailbox servers (127.0.0.131-134, one port, STARTTLS with a lab CA), and
the lab DNS server. 85% of the addresses exist (user<n>), the others get 550 5.1.1
(nobody<n>; `--unknown` sets their share), shuffled with a fixed seed. The servers run in
this process; each measured run is a child process that imports smtpprobe from a source tree
and runs what `check --file` runs:
`check_all` with the `Pooled` strategy, the results streaming out through `on_done` (counted,
not kept, wherever the tree's check_all allows it) and the command line's default deadline
(60 s + 2 s per further address). With `--via cli`, the child is the command line itself,
`python -m smtpprobe check --file LIST --json`, with the tree first on PYTHONPATH.

Two trees are compared: the code as it is (this checkout) and `--before`, an exported copy of
an older commit, read-only, e.g.

    git archive 1e4c82a | tar -x -C /tmp/batch_before   # (an empty directory first)

Printed per size: wall time and the child's peak RSS (os.wait4's ru_maxrss), medians of
`--runs` runs for sizes up to 20,000 and one run above; every run's answers are checked (all
user<n> accepted, all nobody<n> rejected).

usage: .venv/bin/python bench/batch_scale.py [--sizes 5000,20000,100000] [--runs 3]
           [--before /tmp/batch_before] [--via engine|cli] [--unknown 0.15] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import HELO, ROOT, Measured, run_measured, table  # noqa: E402

DOMAINS = tuple(f"scale{i}.test" for i in range(8))
HOSTS = tuple(f"127.0.0.{131 + i}" for i in range(4))  # two domains per MX host
UNKNOWN = 0.15  # the share of addresses that do not exist (--unknown)
SINGLE_RUN_ABOVE = 20_000  # larger sizes are measured once


def address_list(count: int, unknown: float = UNKNOWN, seed: int = 5321) -> list[str]:
    rng = random.Random(seed)
    out = [f"nobody{n}@{DOMAINS[n % len(DOMAINS)]}" if rng.random() < unknown
           else f"user{n}@{DOMAINS[n % len(DOMAINS)]}" for n in range(count)]
    rng.shuffle(out)
    return out


# --- the child: one run, in its own process ---------------------------------------------------


def child(args: argparse.Namespace) -> None:
    tree = Path(args.tree).resolve()
    sys.path.insert(0, str(tree))
    import inspect

    import smtpprobe
    from smtpprobe.core.address import parse_address
    from smtpprobe.core.knowledge import load as knowledge
    from smtpprobe.probe.batch import Pooled
    from smtpprobe.probe.check import Checker, CheckOptions, check_all

    where = Path(smtpprobe.__file__).resolve()
    assert where.is_relative_to(tree), f"smtpprobe came from {where}, not {tree}"
    addresses = []
    for line in Path(args.list).read_text(encoding="utf-8").splitlines():
        parsed = parse_address(line)
        assert parsed is not None, line
        addresses.append(parsed)
    parsed_rss = _rss_kib()  # the run's floor: interpreter, modules, the parsed list
    host, port = args.resolver.rsplit(":", 1)
    options = CheckOptions(helo=HELO, port=args.port, nameservers=((host, int(port)),),
                           cafile=args.cafile, timeout=10.0,
                           deadline=60.0 + 2.0 * (len(addresses) - 1))
    pooled = Pooled()
    checker = Checker(knowledge.load(), options, strategy=pooled)
    verdicts: Counter[str] = Counter()
    wrong = 0

    def on_done(index: int, report: Any) -> None:
        nonlocal wrong
        verdicts[report.verdict.value] += 1
        want = "accepted" if report.address.startswith("user") else "rejected"
        wrong += report.verdict.value != want

    extra = {"collect": False} if "collect" in inspect.signature(check_all).parameters else {}
    asyncio.run(check_all(checker, addresses, on_done=on_done, **extra))
    print(json.dumps({"verdicts": verdicts, "wrong": wrong, "sessions": pooled.sessions,
                      "transactions": pooled.transactions, "streamed": bool(extra),
                      "rss_after_parsing_mib": round(parsed_rss / 1024)}))


def _rss_kib() -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


# --- the parent: lab servers, runs, the table -------------------------------------------------


async def measure(tree: Path, size: int, runs: int, via: str, world: Any,
                  listing: Path) -> dict[str, Any]:
    host, port = world.resolver
    figures: list[Measured] = []
    notes: list[dict[str, Any]] = []
    # Bytecode for both trees goes to a cache of the benchmark's own, so neither run compiles
    # from source every time (this machine sets PYTHONDONTWRITEBYTECODE) and the exported
    # tree stays untouched.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("SMTPPROBE_") and k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(Path(tempfile.gettempdir()) / "smtpprobe-bench-pycache")
    for _ in range(runs):
        if via == "engine":
            argv = [sys.executable, str(Path(__file__).resolve()), "--child", "--tree",
                    str(tree), "--list", str(listing), "--resolver", f"{host}:{port}",
                    "--port", str(world.port), "--cafile", world.cafile]
        else:
            argv = [sys.executable, "-m", "smtpprobe", "check", "--file", str(listing),
                    "--json", "--resolver", f"{host}:{port}", "--port", str(world.port),
                    "--cafile", world.cafile, "--helo", HELO, "--timeout", "10"]
            env["PYTHONPATH"] = str(tree)
        done = await run_measured(argv, env=env, cwd=str(tree) if via == "cli" else None)
        if via == "engine":
            if done.returncode != 0:
                sys.exit(f"{tree}: the child failed ({done.returncode}):\n"
                         f"{done.stderr.decode()[-3000:]}")
            note = json.loads(done.stdout.decode().splitlines()[-1])
        else:
            if "Traceback" in done.stderr.decode():
                sys.exit(f"{tree}: the command line failed:\n{done.stderr.decode()[-3000:]}")
            docs = [json.loads(line) for line in done.stdout.splitlines()]
            verdicts = Counter(d["verdict"] for d in docs)
            wrong = sum(1 for d in docs if d["verdict"] != (
                "accepted" if d["address"].startswith("user") else "rejected"))
            note = {"verdicts": verdicts, "wrong": wrong}
        if note["wrong"] or sum(note["verdicts"].values()) != size:
            sys.exit(f"{tree}: {note['wrong']} wrong answers of {size}: {note}")
        figures.append(done)
        notes.append(note)
        floor = note.get("rss_after_parsing_mib")
        print(f"  {str(tree):<20} {size:>7,}  {done.seconds:8.1f} s  "
              f"{done.max_rss_kib / 1024:7.0f} MiB peak"
              + (f" ({floor} MiB once the list was parsed)" if floor else ""), flush=True)
    return {"seconds": statistics.median(f.seconds for f in figures),
            "max_rss_mib": statistics.median(f.max_rss_kib for f in figures) / 1024,
            "runs": [{"seconds": round(f.seconds, 2), "max_rss_mib": round(f.max_rss_kib / 1024),
                      **n} for f, n in zip(figures, notes, strict=True)]}


async def parent(args: argparse.Namespace) -> None:
    sys.path.insert(0, str(ROOT))
    from smtpprobe.lab.world import Domain, lab_world

    sizes = [int(s) for s in args.sizes.split(",")]
    trees = [("before", Path(args.before).resolve()), ("after", ROOT)]
    for name, tree in trees:
        if not (tree / "smtpprobe" / "probe" / "batch.py").exists():
            sys.exit(f"{tree}: no smtpprobe source tree here ({name}); see --help")
    domains = [Domain(d, ((10, f"mx{i % len(HOSTS)}.scale.test", HOSTS[i % len(HOSTS)],
                           "mailbox"),)) for i, d in enumerate(DOMAINS)]
    results: dict[str, Any] = {"via": args.via, "unknown": args.unknown, "sizes": {}}
    with tempfile.TemporaryDirectory(prefix="smtpprobe-scale-") as tmp:
        for size in sizes:
            addresses = address_list(size, args.unknown)
            listing = Path(tmp) / f"list-{size}.txt"
            listing.write_text("\n".join(addresses) + "\n", encoding="utf-8")
            mailboxes = {a.partition("@")[0] for a in addresses if a.startswith("user")}
            runs = args.runs if size <= SINGLE_RUN_ABOVE else 1
            results["sizes"][size] = {}
            # A fresh world per size and tree: the servers' command logs start empty.
            for name, tree in trees:
                async with lab_world(domains, local_parts=mailboxes) as world:
                    results["sizes"][size][name] = await measure(
                        tree, size, runs, args.via, world, listing)
    rows = []
    for size, both in results["sizes"].items():
        before, after = both["before"], both["after"]
        rows.append([f"{size:,}", f"{before['seconds']:.1f}", f"{after['seconds']:.1f}",
                     f"{before['seconds'] / after['seconds']:.1f}x",
                     f"{before['max_rss_mib']:.0f}", f"{after['max_rss_mib']:.0f}"])
    print()
    print(table(["addresses", "before s", "after s", "speed-up", "before MiB peak",
                 "after MiB peak"], rows))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="5000,20000,100000")
    parser.add_argument("--runs", type=int, default=3,
                        help=f"runs per size up to {SINGLE_RUN_ABOVE:,} (medians); one above")
    parser.add_argument("--before", default="/tmp/batch_before",
                        help="an exported source tree of the older commit")
    parser.add_argument("--via", choices=("engine", "cli"), default="engine")
    parser.add_argument("--unknown", type=float, default=UNKNOWN,
                        help="the share of addresses that do not exist")
    parser.add_argument("--json", help="write every figure to this file")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--tree", help=argparse.SUPPRESS)
    parser.add_argument("--list", help=argparse.SUPPRESS)
    parser.add_argument("--resolver", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--cafile", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
    else:
        asyncio.run(parent(args))


if __name__ == "__main__":
    main()
