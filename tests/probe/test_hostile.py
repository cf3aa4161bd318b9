"""Every command against every hostile lab server: it ends, classifies, keeps memory bounded and
never shows a traceback.

Each scenario of `smtpprobe.lab.hostile.HOSTILE` runs in the test's event loop on 127.0.0.1,
port 0. The real CLI runs in a subprocess (`python -m smtpprobe ...`) with `--timeout 2
--deadline 10`; the library (Session, Checker) runs in-process with tracemalloc. The subprocess
timeout is a safety net against a hang, not an assertion; the times are printed (run with -s)
and never asserted.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import time
import tracemalloc
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from smtpprobe.core import wire
from smtpprobe.core.address import parse_address
from smtpprobe.core.knowledge.load import KnowledgeBase
from smtpprobe.lab.dns import LabDns, Record
from smtpprobe.lab.hostile import HOSTILE, HUGE_LINE, FilteredPort
from smtpprobe.lab.smtp import LabServer, ServerSpec, serve, serve_many
from smtpprobe.lab.tls import LabCert
from smtpprobe.models import Category, FailureKind, Stage, Step
from smtpprobe.net.session import Endpoint, Session
from smtpprobe.probe.check import Checker, CheckOptions, exchange
from smtpprobe.probe.dialog import open_dialog

HELO = "probe.lab.test"
TIMEOUT, DEADLINE = 2.0, 10.0
SAFETY_NET = 60.0  # seconds before a child is declared hung (far above the deadline)
MAX_RSS_KB = 200 * 1024  # a generous bound on any child's peak memory
PASSWORD = "Hostile-Pa55word!"
# Bytes that would steer a terminal; text output may hold none (line feeds are fine).
TERMINAL_CONTROL = re.compile(rb"[\x00-\x09\x0b-\x1f\x7f]|\xc2[\x80-\x9f]")


@dataclass(frozen=True)
class Expect:
    stage: Stage  # where a Session first meets trouble
    trouble: FailureKind | int  # the failure kind, or the reply code, it meets there
    exit: int  # exit code of `check`
    category: Category  # the decisive finding of `check`
    also: tuple[Category, ...] = ()  # more findings `check` must list


EXPECT: dict[str, Expect] = {
    "no_banner": Expect(Stage.CONNECT, FailureKind.TIMEOUT, 3, Category.CONNECTION_FAILED),
    "banner_60s": Expect(Stage.CONNECT, FailureKind.TIMEOUT, 3, Category.CONNECTION_FAILED),
    "huge_line": Expect(Stage.CONNECT, FailureKind.REPLY_TOO_LONG, 3, Category.PROTOCOL_ERROR),
    "endless_multiline": Expect(Stage.EHLO, FailureKind.REPLY_TOO_LONG, 3,
                                Category.PROTOCOL_ERROR),
    "non_utf8": Expect(Stage.RCPT, 550, 1, Category.USER_UNKNOWN),
    "bad_code": Expect(Stage.CONNECT, FailureKind.PROTOCOL, 3, Category.PROTOCOL_ERROR),
    "mixed_greeting": Expect(Stage.CONNECT, FailureKind.PROTOCOL, 3, Category.PROTOCOL_ERROR),
    "greet_and_close": Expect(Stage.EHLO, FailureKind.CLOSED, 3, Category.CONNECTION_FAILED),
    # Like broken TLS: the check goes on without it (this server does not insist on TLS).
    "starttls_mixed": Expect(Stage.STARTTLS, FailureKind.PROTOCOL, 0, Category.SUCCESS),
    "starttls_injection": Expect(Stage.STARTTLS, FailureKind.TLS_HANDSHAKE, 0, Category.SUCCESS,
                                 (Category.TLS_FAILED,)),
    "mismatched_replies": Expect(Stage.MAIL, FailureKind.PROTOCOL, 3, Category.PROTOCOL_ERROR),
    "close_mid_reply": Expect(Stage.EHLO, FailureKind.CLOSED, 3, Category.CONNECTION_FAILED),
    # Broken TLS: like an MTA the check goes on without it, and the server wants TLS.
    "starttls_garbage": Expect(Stage.STARTTLS, FailureKind.TLS_HANDSHAKE, 1,
                               Category.TLS_REQUIRED, (Category.TLS_FAILED,)),
    "tls_stall": Expect(Stage.STARTTLS, FailureKind.TLS_HANDSHAKE, 1, Category.TLS_REQUIRED,
                        (Category.TLS_FAILED,)),
    "starttls_refused": Expect(Stage.STARTTLS, 454, 1, Category.TLS_REQUIRED,
                               (Category.TLS_UNAVAILABLE,)),
    "strip_starttls": Expect(Stage.MAIL, 530, 1, Category.AUTH_REQUIRED,
                             (Category.TLS_UNAVAILABLE,)),
    "never_read": Expect(Stage.EHLO, FailureKind.TIMEOUT, 3, Category.SERVER_UNAVAILABLE),
    "echo_auth": Expect(Stage.MAIL, 530, 1, Category.AUTH_REQUIRED),
    "drip_banner": Expect(Stage.CONNECT, FailureKind.TIMEOUT, 3, Category.CONNECTION_FAILED),
    "slowloris_reply": Expect(Stage.EHLO, FailureKind.TIMEOUT, 3, Category.SERVER_UNAVAILABLE),
    "pipelining_stall": Expect(Stage.RCPT, FailureKind.TIMEOUT, 3,
                               Category.SERVER_UNAVAILABLE),
    "escape_codes": Expect(Stage.RCPT, 550, 1, Category.USER_UNKNOWN),
}


def test_every_hostile_scenario_has_an_expectation() -> None:
    assert set(EXPECT) == set(HOSTILE)


@pytest.fixture
async def hostile(request: pytest.FixtureRequest) -> AsyncIterator[LabServer]:
    async with await serve(HOSTILE[request.param]) as server:
        yield server


# The child runs the real command line and then reports its own peak memory on stderr: a
# per-process figure (RUSAGE_CHILDREN would be the largest of every child the test session
# ever waited for, pip and interpreters included; and even a child's own ru_maxrss starts at
# the forked parent's size).
CHILD = """
import os, sys
from smtpprobe.cli.startup import main
try:
    main(sys.argv[1:])
    code = 0
except SystemExit as exc:
    code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
sys.stdout.flush()
# VmHWM belongs to this program's own address space; ru_maxrss would carry over the peak of
# the forked pytest process across exec.
hwm = next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:"))
sys.stderr.write("\\n[child-maxrss-kb %s]\\n" % hwm)
sys.stderr.flush()
os._exit(code)
"""
_MAXRSS = re.compile(rb"\n\[child-maxrss-kb (\d+)\]\n$")


@dataclass(frozen=True)
class Run:
    code: int
    out: bytes
    err: bytes
    seconds: float
    maxrss_kb: int = 0

    @property
    def text(self) -> str:
        return self.out.decode("utf-8", "replace")


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("FORCE_COLOR", "CLICOLOR_FORCE", "SMTPPROBE_PASSWORD")}
    env.update(COLUMNS="120", NO_COLOR="1", **extra)
    return env


async def smtpprobe(*args: str, env: dict[str, str] | None = None) -> Run:
    """Run the real CLI in a subprocess while the lab servers keep serving in this loop."""
    started = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD, *args, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env or child_env())
    try:
        out, err = await asyncio.wait_for(proc.communicate(), SAFETY_NET)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        pytest.fail(f"smtpprobe {' '.join(args)} did not end within {SAFETY_NET:g} s")
    seconds = time.perf_counter() - started
    assert proc.returncode is not None
    found = _MAXRSS.search(err)
    assert found is not None, err.decode("utf-8", "replace")[-2000:]
    return Run(proc.returncode, out, err[:found.start()], seconds, int(found.group(1)))


def assert_clean_end(run: Run, *, codes: tuple[int, ...] = (1, 3)) -> None:
    assert b"Traceback" not in run.err and b"Traceback" not in run.out, run.err.decode()
    assert run.code in codes, (run.code, run.err.decode(), run.text[-2000:])
    assert run.maxrss_kb < MAX_RSS_KB, f"peak memory {run.maxrss_kb} KiB"


def report_time(what: str, name: str, run: Run, result: str) -> None:
    rss = run.maxrss_kb / 1024
    print(f"\n[hostile] {what:<6} {name:<18} ended after {run.seconds:5.2f} s, "
          f"exit {run.code}: {result} [peak memory {rss:.0f} MB]")


# --- check, through the CLI -----------------------------------------------------------------------


@pytest.mark.parametrize("hostile", list(HOSTILE), indirect=True)
async def test_check_cli(hostile: LabServer) -> None:
    name = hostile.scenario.name
    expect = EXPECT[name]
    common = ["check", "alice@lab.test", "--server", f"127.0.0.1:{hostile.port}",
              "--timeout", str(TIMEOUT), "--deadline", str(DEADLINE), "--helo", HELO]
    # The text run goes beside the JSON one; only the JSON run's time is reported. Both take
    # check's head start (cli/startup.py): the JSON run says so on stderr.
    run, text = await asyncio.gather(
        smtpprobe(*common, "--json", env=child_env(SMTPPROBE_STARTUP="trace")),
        smtpprobe(*common, "-v"))
    assert_clean_end(run, codes=(expect.exit,))
    assert run.err == b"smtpprobe: startup: head start, adopted\n"
    data = json.loads(run.out)
    decisive = data["finding"]["category"]
    report_time("check", name, run, f"{decisive} ({data['finding']['rule']}), "
                f"{data['elapsed_ms'] / 1000:.2f} s inside the probe")
    assert run.code == expect.exit
    assert decisive == expect.category.value, data["finding"]
    listed = {f["category"] for f in data["findings"]}
    assert set(c.value for c in expect.also) <= listed, listed
    assert not any(c.upper().startswith("AUTH") for c in hostile.commands)

    assert_clean_end(text, codes=(expect.exit,))
    assert text.code == run.code
    assert not TERMINAL_CONTROL.search(text.out), TERMINAL_CONTROL.findall(text.out)[:5]
    assert "Verdict" in text.text


# --- check and Session, in-process ----------------------------------------------------------------


async def drive(server: LabServer, *, timeout: float = 1.0) -> list[Step]:
    """A conversation as `check` has it, one Session step at a time."""
    loop = asyncio.get_running_loop()
    session = Session(Endpoint(server.host, server.port), helo=HELO, timeout=timeout,
                      deadline=loop.time() + DEADLINE)
    try:
        opening = await open_dialog(session, starttls=True)
        steps = opening.steps
        if not opening.ready:
            return steps
        caps = session.capabilities
        steps += await exchange(session, [wire.mail(""), wire.rcpt("alice@lab.test")],
                                pipelining=caps is not None and caps.pipelining,
                                quit_after=True)
        return steps
    finally:
        session.close()


def first_trouble(steps: list[Step]) -> Step:
    for step in steps:
        if step.failure is not None or (step.reply is not None and step.reply.klass in (4, 5)):
            return step
    raise AssertionError(f"no step went wrong: {steps}")


@pytest.mark.parametrize("hostile", list(HOSTILE), indirect=True)
async def test_session_meets_the_trouble_where_expected(hostile: LabServer) -> None:
    expect = EXPECT[hostile.scenario.name]
    steps = await drive(hostile)
    trouble = first_trouble(steps)
    assert trouble.stage is expect.stage, steps
    if isinstance(expect.trouble, FailureKind):
        assert trouble.failure is not None and trouble.failure.kind is expect.trouble, trouble
    else:
        assert trouble.reply is not None and trouble.reply.code == expect.trouble, trouble
    for step in steps:
        for line in step.reply.lines if step.reply else ():
            assert not any(ord(ch) < 32 or 0x7f <= ord(ch) <= 0x9f for ch in line), line


@pytest.mark.parametrize("hostile", ["huge_line", "endless_multiline", "slowloris_reply",
                                     "non_utf8", "mismatched_replies"], indirect=True)
async def test_checker_in_process_with_bounded_memory(kb: KnowledgeBase,
                                                      hostile: LabServer) -> None:
    expect = EXPECT[hostile.scenario.name]
    checker = Checker(kb, CheckOptions(helo=HELO, server=(hostile.host, hostile.port),
                                       timeout=1.0, deadline=DEADLINE))
    await checker.trust()  # the system trust store is loaded before memory is measured
    address = parse_address("alice@lab.test")
    assert address is not None
    already = tracemalloc.is_tracing()  # e.g. python -X tracemalloc
    if not already:
        tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        report = await checker.check(address)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        if not already:
            tracemalloc.stop()
    assert report.finding.category is expect.category
    # Less than the one megabyte line itself: what the server floods is never all kept.
    assert peak < HUGE_LINE, peak
    print(f"\n[hostile] memory {hostile.scenario.name:<18} peak {peak / 1e6:.2f} MB "
          f"(server and client together)")


# --- sweep and relay, through the CLI -------------------------------------------------------------


# Servers whose trouble lies before a TLS handshake they then do properly.
SOUND_WITH_A_CERTIFICATE = frozenset({"starttls_injection"})


@pytest.fixture
async def all_hostile(cert: LabCert) -> AsyncIterator[dict[str, LabServer]]:
    servers = {name: await serve(scenario, cert=cert) for name, scenario in HOSTILE.items()}
    try:
        yield servers
    finally:
        for server in servers.values():
            await server.close()


def assert_no_secret(run: Run) -> None:
    import base64

    for form in (PASSWORD, PASSWORD.encode().hex(), base64.b64encode(PASSWORD.encode()).decode()):
        assert form.encode() not in run.out and form.encode() not in run.err, form


async def test_sweeps_of_every_hostile_port(all_hostile: dict[str, LabServer],
                                            cafile: Path) -> None:
    """Two sweeps (a sweep takes at most 16 ports) over half of them each, concurrently, with
    a login to try: each ends within its deadline, each port with its own outcome; the
    password goes only into TLS."""
    by_port = {server.port: server for server in all_hostile.values()}
    numbers = list(by_port)
    halves = [numbers[: len(numbers) // 2], numbers[len(numbers) // 2:]]

    async def sweep(ports: list[int]) -> Run:
        return await smtpprobe(
            "sweep", "127.0.0.1", "--ports", ",".join(f"{p}:starttls" for p in ports),
            "--timeout", str(TIMEOUT), "--deadline", str(DEADLINE), "--helo", HELO,
            "--cafile", str(cafile), "--user", "carol", "--password-env", "H5_PASSWORD",
            "--json", env=child_env(H5_PASSWORD=PASSWORD))

    runs = await asyncio.gather(*(sweep(half) for half in halves))
    seen: set[int] = set()
    for half, run in zip(halves, runs, strict=True):
        assert_clean_end(run)
        assert_no_secret(run)
        data = json.loads(run.out)
        assert data["recommendation"]["usable"] is False
        report_time("sweep", f"{len(half)} ports", run, "no usable settings")
        assert {p["port"] for p in data["ports"]} == set(half)
        for port in data["ports"]:
            seen.add(port["port"])
            server = by_port[port["port"]]
            name = server.scenario.name
            result = port["auth"]["result"]
            wire_auth = [c for c in server.commands if c.upper().startswith("AUTH")]
            failure = (port["failure"] or {}).get("category")
            print(f"[hostile] sweep  {name:<18} failure {failure}, auth {result}")
            if name == "echo_auth":
                assert result == "failed" and wire_auth, port  # inside TLS: it was tried
            elif name == "strip_starttls":
                assert result == "withheld" and not wire_auth, port
            else:
                assert result in ("not_tried", "not_offered") and not wire_auth, port
            if EXPECT[name].stage in (Stage.CONNECT, Stage.EHLO) or name in (
                    "starttls_garbage", "tls_stall"):
                assert failure is not None, port  # the port itself is broken
    assert seen == set(by_port)


async def test_relay_against_every_hostile_server(all_hostile: dict[str, LabServer],
                                                  cafile: Path, tmp_path: Path) -> None:
    """A relay run per server, all at once: each fails or is temporary, with a finding, a
    JUnit file, and never DATA."""

    limit = asyncio.Semaphore(3)  # a few at a time: the machine is shared

    async def relay(name: str, server: LabServer) -> tuple[str, Run]:
        async with limit:
            return name, await relay_run(name, server)

    async def relay_run(name: str, server: LabServer) -> Run:
        return await smtpprobe(
            "relay", "--server", f"127.0.0.1:{server.port}", "--tls", "auto", "--from",
            "carol@lab.test", "--to", "alice@lab.test", "--timeout", str(TIMEOUT),
            "--deadline", str(DEADLINE), "--helo", HELO, "--cafile", str(cafile),
            "--junit", str(tmp_path / f"{name}.xml"), "--json")

    runs = await asyncio.gather(*(relay(n, s) for n, s in all_hostile.items()))
    for name, run in runs:
        if name in SOUND_WITH_A_CERTIFICATE:
            # Its trick (a reply in the clear behind the 220) is dropped; over TLS it is sound.
            assert_clean_end(run, codes=(0,))
            data = json.loads(run.out)
            assert data["verdict"] == "pass", data["checks"]
            assert {c["name"]: c["status"] for c in data["checks"]}["tls"] == "pass"
            continue
        assert_clean_end(run)
        data = json.loads(run.out)
        failed = [c for c in data["checks"] if c["status"] == "fail"]
        assert data["verdict"] in ("fail", "temporary") and failed, (name, data["checks"])
        first = failed[0]
        assert first["finding"] is not None and first["finding"]["category"], first
        report_time("relay", name, run,
                    f"{data['verdict']}: {first['name']} {first['finding']['category']}")
        assert (tmp_path / f"{name}.xml").read_text(encoding="utf-8").startswith("<?xml")
        assert "DATA" not in all_hostile[name].commands


# --- the downgrade: credentials are withheld ------------------------------------------------------


@pytest.fixture
async def stripped() -> AsyncIterator[LabServer]:
    async with await serve(HOSTILE["strip_starttls"]) as server:
        yield server


async def test_relay_withholds_credentials_when_starttls_was_stripped(
        stripped: LabServer) -> None:
    run = await smtpprobe(
        "relay", "--server", f"127.0.0.1:{stripped.port}", "--tls", "auto", "--user", "carol",
        "--password-env", "H5_PASSWORD", "--from", "carol@lab.test", "--to", "alice@lab.test",
        "--timeout", str(TIMEOUT), "--json", env=child_env(H5_PASSWORD=PASSWORD))
    assert_clean_end(run)
    assert_no_secret(run)
    checks = {c["name"]: c for c in json.loads(run.out)["checks"]}
    assert checks["auth"]["status"] == "fail"
    assert checks["auth"]["finding"]["category"] == Category.CREDENTIALS_WITHHELD.value
    assert not any(c.upper().startswith("AUTH") for c in stripped.commands)


async def test_relay_on_a_port_that_expects_tls_sends_nothing_when_starttls_is_missing(
        stripped: LabServer) -> None:
    # --tls starttls makes TLS a requirement: even --allow-plaintext-auth sends no password.
    run = await smtpprobe(
        "relay", "--server", f"127.0.0.1:{stripped.port}", "--tls", "starttls", "--user",
        "carol", "--password-env", "H5_PASSWORD", "--allow-plaintext-auth", "--from",
        "carol@lab.test", "--to", "alice@lab.test", "--timeout", str(TIMEOUT), "--json",
        env=child_env(H5_PASSWORD=PASSWORD))
    assert_clean_end(run)
    checks = {c["name"]: c for c in json.loads(run.out)["checks"]}
    assert checks["tls"]["status"] == "fail"
    assert checks["auth"]["status"] == "skip"
    assert not any(c.upper().startswith("AUTH") for c in stripped.commands)


async def test_sweep_withholds_credentials_when_starttls_was_stripped(
        stripped: LabServer) -> None:
    run = await smtpprobe(
        "sweep", "127.0.0.1", "--ports", f"{stripped.port}", "--user", "carol",
        "--password-env", "H5_PASSWORD", "--timeout", str(TIMEOUT), "--json", "-v",
        env=child_env(H5_PASSWORD=PASSWORD))
    assert_clean_end(run, codes=(0, 1, 3))
    assert_no_secret(run)
    (port,) = json.loads(run.out)["ports"]
    assert port["auth"]["result"] == "withheld"
    assert port["auth"]["finding"]["category"] == Category.CREDENTIALS_WITHHELD.value
    assert not any(c.upper().startswith("AUTH") for c in stripped.commands)


# --- deadlines ------------------------------------------------------------------------------------

TARPITS = ("no_banner", "drip_banner", "never_read", "tls_stall")


@pytest.fixture
async def tarpit_domain(cert: LabCert) -> AsyncIterator[tuple[tuple[str, int], int]]:
    """tarpit.test with four MX hosts on 127.0.0.71-74, every one a tarpit."""
    specs = [ServerSpec(HOSTILE[name], host=f"127.0.0.{71 + i}", hostname=f"mx{i}.tarpit.test",
                        cert=cert) for i, name in enumerate(TARPITS)]
    records = [Record("tarpit.test", "MX", f"{10 * (i + 1)} mx{i}.tarpit.test.")
               for i in range(len(TARPITS))]
    records += [Record(f"mx{i}.tarpit.test", "A", f"127.0.0.{71 + i}")
                for i in range(len(TARPITS))]
    servers = await serve_many(specs, same_port=True)
    try:
        async with LabDns(records) as zone:
            yield zone.address, servers[0].port
    finally:
        for server in servers:
            await server.close()


async def test_check_of_a_domain_whose_mx_hosts_all_tarpit_ends_at_the_deadline(
        tarpit_domain: tuple[tuple[str, int], int]) -> None:
    (dns_host, dns_port), port = tarpit_domain
    # A step timeout of 300 s can never be what ends this: only the 3 s deadline can.
    run = await smtpprobe("check", "alice@tarpit.test", "--resolver", f"{dns_host}:{dns_port}",
                          "--port", str(port), "--timeout", "300", "--deadline", "3",
                          "--helo", HELO, "--json")
    assert_clean_end(run, codes=(3,))
    data = json.loads(run.out)
    assert data["verdict"] == "unreachable"
    assert data["finding"]["rule"] == "failure.deadline", data["finding"]
    report_time("check", "4 tarpit MX", run, f"{data['finding']['category']} "
                f"({data['finding']['rule']}), {len(data['hosts'])} hosts tried, "
                f"{data['elapsed_ms'] / 1000:.2f} s inside the probe")
    # Silent hosts make the probe try the next one beside them (staggered); one that greets
    # holds its attention. Either way every conversation was cut by the deadline.
    assert len(data["hosts"]) >= 3
    for host in data["hosts"]:
        kinds = [s["failure"]["kind"] for s in host["steps"] if s["failure"]]
        assert "deadline" in kinds and "timeout" not in kinds, host["steps"]


async def test_sweep_of_filtered_ports_ends_at_the_deadline() -> None:
    with FilteredPort() as a, FilteredPort() as b, FilteredPort() as c, FilteredPort() as d:
        run = await smtpprobe("sweep", "127.0.0.1", "--ports",
                              f"{a.port},{b.port}:tls,{c.port}:plain,{d.port}:starttls",
                              "--timeout", "300", "--deadline", "3", "--helo", HELO, "--json")
    assert_clean_end(run)
    data = json.loads(run.out)
    report_time("sweep", "4 filtered", run, data["recommendation"]["reasons"][0]["key"])
    assert len(data["ports"]) == 4
    for port in data["ports"]:
        assert port["state"] == "filtered" and port["reachable"] is False, port
        assert [s["failure"]["kind"] for s in port["steps"]] == ["deadline"], port["steps"]
        assert port["failure"]["rule"] == "failure.deadline"


async def test_relay_to_a_tarpit_ends_at_the_deadline(cert: LabCert) -> None:
    async with await serve(HOSTILE["tls_stall"], cert=cert) as server:
        run = await smtpprobe("relay", "--server", f"127.0.0.1:{server.port}", "--tls",
                              "starttls", "--timeout", "300", "--deadline", "3", "--helo",
                              HELO, "--json")
    assert_clean_end(run)
    checks = {c["name"]: c for c in json.loads(run.out)["checks"]}
    report_time("relay", "tls_stall", run, f"tls {checks['tls']['status']}")
    assert checks["tls"]["status"] == "fail"
    assert checks["tls"]["finding"]["rule"] == "failure.deadline", checks["tls"]


@pytest.mark.parametrize("name", ["escape_codes", "non_utf8"])
async def test_sweep_and_relay_text_output_cannot_steer_the_terminal(name: str) -> None:
    async with await serve(HOSTILE[name]) as server:
        sweep, relay = await asyncio.gather(
            smtpprobe("sweep", "127.0.0.1", "--ports", f"{server.port}:starttls", "-v",
                      "--timeout", str(TIMEOUT), "--helo", HELO),
            smtpprobe("relay", "--server", f"127.0.0.1:{server.port}", "--tls", "auto",
                      "--from", "carol@lab.test", "--to", "alice@lab.test", "-v",
                      "--timeout", str(TIMEOUT), "--helo", HELO))
    for run in (sweep, relay):
        assert_clean_end(run)
        assert not TERMINAL_CONTROL.search(run.out), TERMINAL_CONTROL.findall(run.out)[:5]
    assert "550" in relay.text  # the hostile reply was shown, cleaned


# --- one reply grammar from the greeting on (the session's own transport) -------------------------


async def test_a_reply_in_the_clear_behind_starttls_220_is_dropped(cert: LabCert) -> None:
    # RFC 3207 6: what came before the handshake is not trusted after it. The injected 250
    # must not become the answer to the EHLO sent over TLS.
    async with await serve(HOSTILE["starttls_injection"], cert=cert) as server:
        steps = await drive(server)
    [hello_after] = [s for s in steps if s.stage is Stage.EHLO][1:]
    assert hello_after.reply is not None and hello_after.reply.code == 250
    assert "injected" not in hello_after.reply.text
    assert "PIPELINING" in hello_after.reply.text  # the real capabilities, over TLS
    [rcpt] = [s for s in steps if s.stage is Stage.RCPT]
    assert rcpt.stage is Stage.RCPT and rcpt.reply is not None and rcpt.reply.code == 250


async def test_a_greeting_whose_lines_disagree_is_no_welcome() -> None:
    async with await serve(HOSTILE["mixed_greeting"]) as server:
        steps = await drive(server)
    [greeting] = steps
    assert greeting.failure is not None and greeting.failure.kind is FailureKind.PROTOCOL
    # The evidence quotes the server's own codes.
    assert "554" in greeting.failure.detail and "220" in greeting.failure.detail


async def test_a_check_of_a_server_that_greets_and_hangs_up(kb: KnowledgeBase) -> None:
    async with await serve(HOSTILE["greet_and_close"]) as server:
        report = await Checker(kb, CheckOptions(
            helo=HELO, timeout=TIMEOUT, deadline=DEADLINE,
            server=(server.host, server.port))).check(parse_address("alice@lab.test"))
    assert report.finding is not None
    assert report.finding.category is Category.CONNECTION_FAILED, report.finding
