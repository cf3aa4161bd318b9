"""What `smtpprobe exporter` costs: probes per second it sustains, CPU and memory per probe, at
50 ms round trip to the mail server.

A lab mailbox server (STARTTLS, a lab CA certificate) on 127.0.0.92 sits behind a delaying
proxy (bench/proxy.py, 25 ms each way, the TCP handshake included) on 127.0.0.91; the
exporter runs as its own process with a `check` module for that server and is scraped by
C client threads at once, each asking `/probe?module=mx&target=alice@bench.test` again as
soon as it has its answer, as Prometheus would with C targets due at the same moment. For each
C, in several rounds: probes per second (all must succeed), the exporter process's CPU time
per probe (/proc/PID/stat utime+stime), and its resident memory at the peak of the round less
its idle memory, per concurrent probe. Medians over the rounds.

usage: python bench/exporter.py [--rounds N] [--rtt MS] [--levels 1,10,50,100,200] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import HELO, PROXY_HOST, smtpprobe_argv, table  # noqa: E402
from proxy import DelayProxy  # noqa: E402

from smtpprobe.lab.smtp import serve  # noqa: E402
from smtpprobe.lab.tls import LabCA  # noqa: E402

SERVER_HOST = "127.0.0.92"
TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


async def serve_lab(rtt_ms: float, cafile: Path) -> None:
    """The lab server and its delaying proxy (`--serve-lab`, a process of its own, so that
    neither shares an interpreter with the exporter or the clients); prints the port."""
    ca = LabCA.create()
    ca.write_pem(cafile)
    cert = ca.issue(PROXY_HOST, "mx.bench.test")
    server = await serve("mailbox", cert=cert, host=SERVER_HOST, hostname="mx.bench.test")
    proxy = await DelayProxy((PROXY_HOST, 0), server.address, delay=rtt_ms / 2000).start()
    print(proxy.address[1], flush=True)
    try:
        await asyncio.Event().wait()  # until the benchmark ends this process
    finally:
        await proxy.close()
        await server.close()


class Lab:
    """`serve_lab` in a child process."""

    def __init__(self, rtt_ms: float, cafile: Path) -> None:
        self.argv = [sys.executable, __file__, "--serve-lab", "--rtt", str(rtt_ms),
                     "--cafile", str(cafile)]
        self.port = 0
        self.process: subprocess.Popen[str] | None = None

    def __enter__(self) -> Lab:
        self.process = subprocess.Popen(self.argv, stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.strip().isdigit():
            raise SystemExit("the lab server did not start")
        self.port = int(line)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.process is not None
        self.process.terminate()
        self.process.wait(timeout=10)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def rss_bytes(pid: int) -> int:
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE


def start_exporter(config: Path, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMTPPROBE_")}
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*smtpprobe_argv(), "exporter", "--listen", "127.0.0.1:0", "--config", str(config),
             "--concurrency", "1000"], stdout=out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, env=env)
    for _ in range(600):
        text = log.read_text(errors="replace")
        if "listening on http://" in text:
            return process, "http://" + text.split("listening on http://", 1)[1].split("/ ")[0]
        if process.poll() is not None:
            raise SystemExit(f"the exporter ended: {text}")
        time.sleep(0.05)
    process.kill()
    raise SystemExit("the exporter did not start")


def probe(url: str) -> bool:
    request = urllib.request.Request(f"{url}/probe?module=mx&target=alice@bench.test",
                                     headers={"X-Prometheus-Scrape-Timeout-Seconds": "10"})
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            body = answer.read().decode()
    except OSError as exc:
        print(f"a request failed: {exc}", file=sys.stderr)
        return False
    return "\nprobe_success 1.0\n" in body


def one_round(url: str, pid: int, clients: int, probes: int) -> dict[str, float]:
    """`probes` probes by `clients` threads at once: rate, CPU per probe, peak RSS."""
    peak = [rss_bytes(pid)]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.01):
            try:
                peak.append(rss_bytes(pid))
            except OSError:
                return  # the exporter has ended; the round fails below

    sampler = threading.Thread(target=sample, daemon=True)
    counter = iter(range(probes))
    lock = threading.Lock()
    failures = [0]

    def client() -> None:
        while True:
            with lock:
                if next(counter, None) is None:
                    return
            if not probe(url):
                failures[0] += 1

    cpu0 = cpu_seconds(pid)
    sampler.start()
    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        for future in [pool.submit(client) for _ in range(clients)]:
            future.result()
    elapsed = time.perf_counter() - started
    done.set()
    sampler.join()
    cpu = cpu_seconds(pid) - cpu0
    if failures[0]:
        raise SystemExit(f"{failures[0]} of {probes} probes did not succeed at {clients} "
                         f"at once: the figures would not be of working probes")
    return {"rate": probes / elapsed, "cpu_ms": cpu / probes * 1000,
            "peak_rss": float(max(peak)), "seconds": elapsed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--rtt", type=float, default=50.0, help="round trip in ms")
    parser.add_argument("--levels", default="1,10,50,100,200")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--serve-lab", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--cafile", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_lab:
        asyncio.run(serve_lab(args.rtt, args.cafile))
        return
    levels = [int(x) for x in args.levels.split(",")]
    results: dict[int, list[dict[str, float]]] = {c: [] for c in levels}
    idles: list[float] = []
    with tempfile.TemporaryDirectory(prefix="smtpprobe-bench-exporter-") as tmp:
        cafile = Path(tmp) / "ca.pem"
        with Lab(args.rtt, cafile) as lab:
            config = Path(tmp) / "modules.toml"
            config.write_text(
                f'[modules.mx]\njob = "check"\nserver = "{PROXY_HOST}:{lab.port}"\n'
                f'cafile = "{cafile}"\nhelo = "{HELO}"\ntimeout = 10\n', encoding="utf-8")
            for _ in range(args.rounds):
                for clients in levels:  # the levels alternate within each round
                    # A fresh exporter for each: Python keeps memory it once used, so the
                    # growth of a round is only that round's when it starts from idle.
                    process, url = start_exporter(config, Path(tmp) / "exporter.log")
                    try:
                        for _ in range(3):  # warm: imports, the classifier's memo, TLS
                            probe(url)
                        idle = rss_bytes(process.pid)
                        idles.append(idle)
                        run = one_round(url, process.pid, clients, max(30, 4 * clients))
                        run["growth"] = max(run["peak_rss"] - idle, 0.0)
                        results[clients].append(run)
                    finally:
                        process.terminate()
                        process.wait(timeout=10)
    idle = statistics.median(idles)
    rows = []
    summary = {"rtt_ms": args.rtt, "rounds": args.rounds, "idle_rss_mib": idle / 2**20,
               "levels": {}}
    for clients in levels:
        runs = results[clients]
        rate = statistics.median(r["rate"] for r in runs)
        cpu_ms = statistics.median(r["cpu_ms"] for r in runs)
        peak = statistics.median(r["peak_rss"] for r in runs)
        per_probe_kib = statistics.median(r["growth"] for r in runs) / clients / 1024
        summary["levels"][clients] = {"probes_per_s": rate, "cpu_ms_per_probe": cpu_ms,
                                      "peak_rss_mib": peak / 2**20,
                                      "rss_kib_per_concurrent_probe": per_probe_kib}
        rows.append([clients, f"{rate:.1f}", f"{cpu_ms:.1f}", f"{peak / 2**20:.1f}",
                     f"{per_probe_kib:.0f}"])
    print(f"smtpprobe exporter, check with STARTTLS at {args.rtt:g} ms round trip, "
          f"medians of {args.rounds} rounds; idle RSS {idle / 2**20:.1f} MiB")
    print(table(["probes at once", "probes/s", "CPU ms/probe", "peak RSS MiB",
                 "RSS KiB per concurrent probe"], rows))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
