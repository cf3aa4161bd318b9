"""Shared pieces of the benchmarks: where things are, timing subprocesses, medians."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOPOLOGY = json.loads((ROOT / "tests" / "realmta" / "topology.json").read_text(encoding="utf-8"))
HELO = "bench.smtpprobe.test"


# The installed packages smtpprobe imports (typer brings rich, and rich markdown_it and pygments).
_DEPENDENCIES = ("typer", "rich", "markdown_it", "mdurl", "pygments", "shellingham", "dns",
                 "idna", "cryptography", "python_socks", "prometheus_client", "nagiosplugin",
                 "spf", "typing_extensions")


def _byte_compile() -> None:
    """Compile smtpprobe's modules, and those of the packages it imports, once, as installing
    a wheel does. An editable install under PYTHONDONTWRITEBYTECODE (set on some machines)
    would otherwise compile every module from source on every run (this machine's venv has no
    bytecode for rich, markdown_it or pygments), and the benchmarks would time the compiler,
    not the tool."""
    import compileall
    import importlib.util

    compileall.compile_dir(str(ROOT / "smtpprobe"), quiet=2)
    for name in _DEPENDENCIES:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            continue
        origin = Path(spec.origin)
        if spec.submodule_search_locations:
            compileall.compile_dir(str(origin.parent), quiet=2)
        else:
            compileall.compile_file(str(origin), quiet=2)


_byte_compile()

# Loopback addresses for the benchmarks' own listeners (the demo uses .21-.29, the tests
# .31-.42, the real-MTA set-up .11-.14, .20 and .53).
PROXY_HOST = "127.0.0.91"


def smtpprobe_argv() -> list[str]:
    """The installed command line, as a user runs it."""
    script = Path(sys.executable).parent / "smtpprobe"
    return [str(script)] if script.exists() else [sys.executable, "-m", "smtpprobe"]


def realmta() -> dict[str, str]:
    """The real-MTA environment (tests/realmta/realmta.sh env), or exit with a hint."""
    env = TOPOLOGY["env"]
    if not os.environ.get(env["enabled"]):
        sys.exit(f"{env['enabled']} is not set: sudo tests/realmta/realmta.sh start && "
                 f'eval "$(tests/realmta/realmta.sh env)"')
    return {key: os.environ[name] for key, name in env.items() if name in os.environ}


def need_swaks() -> str:
    found = shutil.which("swaks")
    if found is None:
        sys.exit("swaks is not installed (apt-get install swaks)")
    return found


@dataclass(frozen=True, slots=True)
class Run:
    seconds: float
    returncode: int
    stdout: bytes
    stderr: bytes


async def run(argv: Sequence[str], *, stdin: bytes | None = None,
              env: dict[str, str] | None = None, cwd: str | None = None) -> Run:
    started = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env, cwd=cwd)
    out, err = await proc.communicate(stdin)
    assert proc.returncode is not None
    return Run(time.perf_counter() - started, proc.returncode, out, err)


def median_ms(values: Sequence[float]) -> float:
    return statistics.median(values) * 1000 if values else float("nan")


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain Markdown table (the figures go straight into docs/performance.md)."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"
             for row in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class Measured:
    seconds: float
    returncode: int
    max_rss_kib: int  # the child's peak resident memory (getrusage ru_maxrss, KiB on Linux)
    stdout: bytes
    stderr: bytes


# A small launcher between the benchmark and the measured child. Linux carries a process's
# ru_maxrss across exec, and a child forked straight from the benchmark (which holds the lab
# servers, their logs and earlier results) would start with the benchmark's RSS as its peak;
# forked from this launcher (python -S, about 10 MiB) it starts from the launcher's.
_LAUNCHER = """\
import os, sys
pid = os.fork()
if pid == 0:
    os.execvp(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as out:
    out.write(f"{usage.ru_maxrss} {os.waitstatus_to_exitcode(status)}")
"""


async def run_measured(argv: Sequence[str], *, env: dict[str, str] | None = None,
                       cwd: str | None = None) -> Measured:
    """Run a child and measure its wall time and its RSS high-water mark, through _LAUNCHER
    (os.wait4: the rusage of that one child). The event loop keeps running while the child
    does, so lab servers in this process go on answering it."""
    import subprocess
    import tempfile

    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            tempfile.NamedTemporaryFile("r", suffix=".rusage") as usage:
        started = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-S", "-c", _LAUNCHER, usage.name, *argv],
                                stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env,
                                cwd=cwd)
        launcher = await asyncio.to_thread(proc.wait)
        seconds = time.perf_counter() - started
        figures = usage.read().split()
        if launcher != 0 or len(figures) != 2:
            err.seek(0)
            raise RuntimeError(f"the launcher failed ({launcher}): {err.read()[-2000:]!r}")
        out.seek(0)
        err.seek(0)
        return Measured(seconds, int(figures[1]), int(figures[0]), out.read(), err.read())
