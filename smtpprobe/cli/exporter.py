"""`smtpprobe exporter`: a Prometheus exporter in the multi-target pattern (blackbox_exporter's):
`/probe?target=...&module=...` runs one check, relay, sweep or domain probe and answers with
its metrics; `/metrics` has the exporter's own (process, probes run). docs/monitoring.md.

Modules come from a TOML file, one table each: `[modules.NAME]` with `job = "check" | "relay"
| "sweep" | "domain"` and the command's own long options as keys, dashes as underscores. Each
module becomes a plan (cli/jobs.py, the builder the commands use) when the exporter starts:
a bad file or module stops it there (one line, exit 2). A password comes only from
`password_env` or `password_file` in the module, never from the URL or a prompt.

Requests are served by threads of the standard library's HTTP server; every probe runs in one
asyncio loop of its own thread, at most `--concurrency` at once, each bounded by the scrape
timeout Prometheus sends (X-Prometheus-Scrape-Timeout-Seconds) less `--margin`. A probe that
fails or runs out of time is a metric (`smtpprobe_probe_error`) and a log line, never a 500.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from smtpprobe.cli.options import KnowledgeOpt, load_kb
from smtpprobe.errors import UsageError

if TYPE_CHECKING:
    import asyncio
    from http.server import ThreadingHTTPServer

    from prometheus_client.registry import CollectorRegistry

    from smtpprobe.cli.jobs import Plan
    from smtpprobe.core.certs import TrustStore
    from smtpprobe.core.knowledge.load import KnowledgeBase
    from smtpprobe.report.metrics import Families

DEFAULT_LISTEN = "127.0.0.1:9125"
DEFAULT_BUDGET = 10.0  # seconds, when the request names no scrape timeout
MAX_BUDGET = 300.0
MIN_BUDGET = 0.5


@dataclass(frozen=True, slots=True)
class _Job:
    command: str  # the module of the command whose options a module takes
    builder: str  # its plan builder in cli/jobs.py
    # Options of the command that are not the flow's (output, input, the target itself).
    excluded: frozenset[str]
    target_option: str | None = None  # the option that the target takes the place of


_OUTPUT = frozenset({"lang", "as_json", "verbose", "knowledge_dir", "nagios", "warning",
                     "critical", "cert_warning", "cert_critical"})
JOBS: dict[str, _Job] = {
    "check": _Job("smtpprobe.cli.check", "check_plan",
                  _OUTPUT | {"addresses", "file", "column", "strict", "fmt", "per_mx", "rate",
                             "concurrency"}),
    "relay": _Job("smtpprobe.cli.relay", "relay_plan", _OUTPUT | {"server", "junit"},
                  target_option="server"),
    "sweep": _Job("smtpprobe.cli.sweep", "sweep_plan", _OUTPUT | {"host"}),
    "domain": _Job("smtpprobe.cli.domain", "domain_plan", _OUTPUT | {"name"}),
}
TARGETS = {"check": "an address", "relay": "HOST[:PORT]", "sweep": "a host",
           "domain": "a domain"}


def _option_table(job: _Job) -> dict[str, Any]:
    """Long option name (dashes as underscores) -> the command's click parameter."""
    import importlib

    command = typer.main.get_command(importlib.import_module(job.command).app)
    table: dict[str, Any] = {}
    for param in command.params:
        for opt in [*getattr(param, "opts", ()), *getattr(param, "secondary_opts", ())]:
            if opt.startswith("--"):
                table[opt[2:].replace("-", "_")] = param
    return table


def _convert(module: str, key: str, param: Any, value: object) -> object:
    where = f"module {module}: {key}"
    if getattr(param, "is_flag", False):
        if not isinstance(value, bool):
            raise UsageError(f"{where}: give true or false")
        return value
    if getattr(param, "multiple", False):
        items = value if isinstance(value, list) else [value]
        if not all(isinstance(item, str) for item in items):
            raise UsageError(f"{where}: give a string or a list of strings")
        return [_convert(module, key, _Single(param), item) for item in items]
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise UsageError(f"{where}: give a string or a number")
    try:
        return param.type.convert(value, param, None)
    except Exception as exc:  # click's BadParameter (typer vendors click)
        format_message = getattr(exc, "format_message", None)
        message = format_message() if callable(format_message) else str(exc)
        raise UsageError(f"{where}: {' '.join(str(message).split())}") from None


class _Single:
    """A multiple option's parameter, for converting one of its values."""

    def __init__(self, param: Any) -> None:
        self.type = param.type
        self.is_flag = False
        self.multiple = False


def build_plan(name: str, table: Mapping[str, object]) -> Plan:
    """One `[modules.NAME]` table as a validated plan (a UsageError names the module)."""
    import inspect

    from smtpprobe.cli import jobs

    job_name = table.get("job")
    if not isinstance(job_name, str) or job_name not in JOBS:
        raise UsageError(f"module {name}: job must be one of {', '.join(JOBS)}"
                         + ("" if job_name is None else f", not {job_name!r}"))
    job = JOBS[job_name]
    builder: Callable[..., Plan] = getattr(jobs, job.builder)
    accepted = set(inspect.signature(builder).parameters) - {"interactive", "count"}
    options = _option_table(job)
    values: dict[str, object] = {}
    for key, value in table.items():
        if key == "job":
            continue
        param = options.get(key)
        if param is None:
            raise UsageError(f"module {name}: {job_name} has no option --"
                             f"{key.replace('_', '-')}")
        if param.name in job.excluded or param.name not in accepted:
            why = ("comes from the target" if param.name == job.target_option
                   else "is not for the exporter")
            raise UsageError(f"module {name}: --{key.replace('_', '-')} {why}")
        values[param.name] = _convert(name, key, param, value)
    for param in {id(p): p for p in options.values()}.values():
        if param.name in accepted and param.name not in values:
            default = param.default
            values[param.name] = list(default) if isinstance(default, tuple) else default
    try:
        return builder(**values, interactive=False)
    except UsageError as exc:
        raise UsageError(f"module {name}: {exc}") from None


def load_config(path: Path) -> dict[str, Plan]:
    import tomllib

    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"--config {path}: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"--config {path}: not valid TOML ({exc})") from None
    unknown = set(data) - {"modules"}
    if unknown:
        raise UsageError(f"--config {path}: unknown table {sorted(unknown)[0]!r} (only "
                         f"[modules.NAME])")
    modules = data.get("modules")
    if not isinstance(modules, dict) or not modules:
        raise UsageError(f"--config {path}: no [modules.NAME] table")
    plans: dict[str, Plan] = {}
    for name, table in modules.items():
        if not isinstance(table, dict):
            raise UsageError(f"--config {path}: modules.{name} is not a table")
        plans[name] = build_plan(name, table)
    return plans


def parse_listen(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise UsageError(f"--listen {listen!r}: give HOST:PORT")
    host = host.strip("[]") or "127.0.0.1"
    return host, int(port)


def scrape_budget(header: str | None, *, margin: float) -> float:
    """The seconds a probe may take: Prometheus's scrape timeout less the margin."""
    try:
        budget = float(header) if header else DEFAULT_BUDGET
    except ValueError:
        budget = DEFAULT_BUDGET
    if budget != budget:  # NaN
        budget = DEFAULT_BUDGET
    return min(max(budget - margin, MIN_BUDGET), MAX_BUDGET)


def _log(line: str) -> None:
    sys.stderr.write(f"smtpprobe exporter: {line}\n")
    sys.stderr.flush()


class Exporter:
    """The modules, the probe loop and the exporter's own metrics."""

    def __init__(self, plans: Mapping[str, Plan], *, kb: KnowledgeBase,
                 trusts: Mapping[str, TrustStore], concurrency: int, margin: float) -> None:
        from prometheus_client.metrics import Counter, Gauge
        from prometheus_client.platform_collector import PlatformCollector
        from prometheus_client.process_collector import ProcessCollector
        from prometheus_client.registry import CollectorRegistry

        from smtpprobe.report.metrics import HELP

        self.plans = plans
        self.kb = kb
        self.trusts = trusts
        self.margin = margin
        self.concurrency = concurrency
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        name = "smtpprobe_exporter_probes_total"
        self.probes = Counter(name.removesuffix("_total"), HELP[name], ["module", "result"],
                              registry=self.registry)
        name = "smtpprobe_exporter_probes_in_flight"
        self.in_flight = Gauge(name, HELP[name], registry=self.registry)
        name = "smtpprobe_exporter_probes_rejected_total"
        self.rejected = Counter(name.removesuffix("_total"), HELP[name], ["reason"],
                                registry=self.registry)
        import asyncio  # here, not at import: `smtpprobe --help` loads this module

        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="probes",
                                        daemon=True)
        self._slots: asyncio.Semaphore | None = None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)

    async def _run(self, module: str, target: Any, budget: float) -> Families:
        import asyncio

        from smtpprobe.report import metrics

        plan = self.plans[module]
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.concurrency)
        started = time.perf_counter()
        try:
            async with asyncio.timeout(budget):
                async with self._slots:
                    self.in_flight.inc()
                    try:
                        left = budget - (time.perf_counter() - started)
                        report = await plan.probe(target, kb=self.kb, trust=self.trusts[module],
                                                  budget=left)
                    finally:
                        self.in_flight.dec()
        except TimeoutError:
            seconds = time.perf_counter() - started
            _log(f"module={module} target={target!r}: no result within {budget:.1f} s "
                 f"(the scrape timeout less {self.margin:g} s)")
            self.probes.labels(module, "timeout").inc()
            return metrics.error_metrics("timeout", seconds=seconds)
        except Exception as exc:  # a fault of smtpprobe: a metric and a line, never a 500
            seconds = time.perf_counter() - started
            _log(f"module={module} target={target!r}: probe failed: "
                 f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}")
            self.probes.labels(module, "error").inc()
            return metrics.error_metrics("error", seconds=seconds)
        seconds = time.perf_counter() - started
        families = _families(report, seconds)
        good = families.value("probe_success") == 1
        self.probes.labels(module, "success" if good else "failure").inc()
        return families

    def probe(self, module: str, target: Any, budget: float) -> Families:
        """Run one probe in the loop from a request thread; bounded even if the loop is
        stuck (the thread gives up a second after the budget)."""
        import asyncio
        import concurrent.futures

        from smtpprobe.report import metrics

        future = asyncio.run_coroutine_threadsafe(self._run(module, target, budget),
                                                  self.loop)
        try:
            return future.result(timeout=budget + 1.0)
        except concurrent.futures.TimeoutError:
            future.cancel()
            _log(f"module={module} target={target!r}: the probe loop did not answer")
            self.probes.labels(module, "timeout").inc()
            return metrics.error_metrics("timeout", seconds=budget + 1.0)

    def reject(self, reason: str) -> None:
        self.rejected.labels(reason).inc()


def _families(report: object, seconds: float) -> Families:
    from smtpprobe.models import CheckReport, DomainReport, RelayReport, SweepReport
    from smtpprobe.report import metrics

    if isinstance(report, DomainReport):
        return metrics.domain_metrics(report, seconds=seconds)
    if isinstance(report, CheckReport):
        return metrics.check_metrics(report, seconds=seconds)
    if isinstance(report, RelayReport):
        return metrics.relay_metrics(report, seconds=seconds)
    if isinstance(report, SweepReport):
        return metrics.sweep_metrics(report, seconds=seconds)
    raise TypeError(f"no metrics for {type(report).__name__}")


def exposition(registry: CollectorRegistry, accept: str | None) -> tuple[bytes, str]:
    from prometheus_client.exposition import choose_encoder

    encoder, content_type = choose_encoder(accept or "")
    return encoder(registry), content_type


def make_server(exporter: Exporter, host: str, port: int) -> ThreadingHTTPServer:
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from urllib.parse import parse_qs, urlsplit

    from prometheus_client.registry import CollectorRegistry

    class Handler(BaseHTTPRequestHandler):
        timeout = 30  # seconds to send a request: a slow client cannot hold a thread
        server_version = "smtpprobe-exporter"

        def log_message(self, format: str, *args: Any) -> None:
            pass  # no access log: probe errors have their own line

        def _send(self, code: int, body: bytes, content_type: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _bad(self, reason: str, message: str) -> None:
            exporter.reject(reason)
            line = " ".join(message.split())
            self._send(400, (line + "\n").encode("utf-8", "replace"),
                       "text/plain; charset=utf-8")

        def do_HEAD(self) -> None:
            self.do_GET()

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            if url.path == "/metrics":
                body, content_type = exposition(exporter.registry, self.headers.get("Accept"))
                self._send(200, body, content_type)
            elif url.path == "/probe":
                self._probe(parse_qs(url.query, keep_blank_values=True))
            elif url.path == "/":
                modules = "".join(f"  {name} ({plan.job}: target is {TARGETS[plan.job]})\n"
                                  for name, plan in exporter.plans.items())
                self._send(200, (f"smtpprobe exporter: /probe?module=NAME&target=T, /metrics"
                                 f"\nmodules:\n{modules}").encode(),
                           "text/plain; charset=utf-8")
            else:
                self._send(404, b"not found: use /probe or /metrics\n",
                           "text/plain; charset=utf-8")

        def _probe(self, query: dict[str, list[str]]) -> None:
            module = (query.get("module") or [""])[-1]
            targets = query.get("target") or []
            if not module:
                return self._bad("no_module", "give module=NAME (one of: "
                                 f"{', '.join(exporter.plans)})")
            plan = exporter.plans.get(module)
            if plan is None:
                return self._bad("unknown_module", f"unknown module {module!r} (known: "
                                 f"{', '.join(exporter.plans)})")
            if len(targets) != 1:
                return self._bad("bad_target", "give one target=" + TARGETS[plan.job])
            unknown = set(query) - {"module", "target"}
            if unknown:
                return self._bad("bad_option", f"unknown parameter {sorted(unknown)[0]!r}: "
                                 "options belong in the module, credentials too")
            try:
                target = plan.target(targets[0])
            except UsageError as exc:
                return self._bad("bad_target", f"target {targets[0]!r}: {exc}")
            budget = scrape_budget(self.headers.get("X-Prometheus-Scrape-Timeout-Seconds"),
                                   margin=exporter.margin)
            families = exporter.probe(module, target, budget)
            registry = CollectorRegistry(auto_describe=False)
            registry.register(families)
            body, content_type = exposition(registry, self.headers.get("Accept"))
            self._send(200, body, content_type)

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        allow_reuse_address = True
        # The listen backlog: Prometheus opens a connection per target due, hundreds at the
        # same moment after a restart; the standard library's 5 would drop their SYNs.
        request_queue_size = 1024

    if ":" in host:
        import socket

        Server.address_family = socket.AF_INET6
    return Server((host, port), Handler)


app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@app.command(epilog="Example:  smtpprobe exporter --listen 127.0.0.1:9125 --config "
             "modules.toml  (docs/monitoring.md: prometheus.yml, modules, alerts)\n\n"
             "Exit codes: 0 stopped, 2 usage error (a bad --config: one line).")
def exporter(
    config: Annotated[Path, typer.Option(
        "--config", help="TOML file of modules: [modules.NAME] with job = check, relay, "
        "sweep or domain and the command's long options as keys.", metavar="FILE",
        show_default=False)],
    listen: Annotated[str, typer.Option(
        "--listen", help="Address and port to serve /probe and /metrics on.",
        metavar="HOST:PORT")] = DEFAULT_LISTEN,
    concurrency: Annotated[int, typer.Option(
        "--concurrency", help="Probes at once; further requests wait, within their scrape "
        "timeout.", metavar="N")] = 50,
    margin: Annotated[float, typer.Option(
        "--margin", help="Seconds kept back from Prometheus's scrape timeout for the "
        "answer to arrive.", metavar="SECONDS")] = 0.5,
    knowledge_dir: KnowledgeOpt = None,
) -> None:
    """Serve Prometheus metrics of check, relay, sweep and domain probes (multi-target
    exporter)."""
    import signal

    from smtpprobe.cli.jobs import load_trust

    host, port = parse_listen(listen)
    if not 1 <= concurrency <= 10000:
        raise UsageError("--concurrency must be from 1 to 10000")
    if not 0 <= margin < 60:
        raise UsageError("--margin must be from 0 to 60 seconds")
    plans = load_config(config)
    trusts: dict[str, TrustStore] = {}
    for name, plan in plans.items():
        try:
            trusts[name] = load_trust(plan.cafile)
        except UsageError as exc:
            raise UsageError(f"module {name}: {exc}") from None
    kb = load_kb(knowledge_dir)
    runner = Exporter(plans, kb=kb, trusts=trusts, concurrency=concurrency, margin=margin)
    try:
        server = make_server(runner, host, port)
    except OSError as exc:
        raise UsageError(f"--listen {listen}: {exc.strerror or exc}") from None
    runner.start()
    bound_host, bound_port = str(server.server_address[0]), int(server.server_address[1])
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    _log(f"listening on http://{shown}:{bound_port}/ with {len(plans)} module(s): "
         f"{', '.join(plans)}")

    def stop(signum: int, frame: object) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    try:
        server.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        runner.stop()
    _log("stopped")
