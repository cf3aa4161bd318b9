"""Start-up (cli/startup.py): `check`'s head start through the real command line, the same
answers on both paths, every bad input still a usage error before any traffic, everything the
scan does not know on the normal path, and what `--help` and `explain` import.

`SMTPPROBE_STARTUP=trace` makes the command say on stderr, last, which path ran;
`SMTPPROBE_STARTUP=off` turns the head start off (both: `off,trace`).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from smtpprobe.cli import startup
from smtpprobe.cli.startup import STARTUP_ENV, HeadStart, Plan, scan
from smtpprobe.lab.smtp import LabServer
from smtpprobe.lab.tls import LabCert

RunCli = Callable[..., subprocess.CompletedProcess[str]]
LabServers = Callable[..., Awaitable[LabServer]]
HELO = "probe.smtpprobe.test"
ADOPTED = "smtpprobe: startup: head start, adopted\n"
ROOT = Path(__file__).resolve().parents[2]


def argv(server: LabServer, cafile: Path, *extra: str) -> list[str]:
    return ["check", "alice@lab.test", "--server", f"{server.host}:{server.port}",
            "--cafile", str(cafile), "--helo", HELO, "--timeout", "3", *extra]


def path_of(done: subprocess.CompletedProcess[str]) -> str:
    """The last stderr line: which start-up path ran."""
    last = done.stderr.splitlines()[-1] if done.stderr else ""
    assert last.startswith("smtpprobe: startup: "), done.stderr
    return last.removeprefix("smtpprobe: startup: ")


def without_times(value: Any) -> Any:
    """A JSON document without what differs from run to run on any path: times, the
    timestamp, and the reply to QUIT, which is kept when it came in time, never waited for."""
    if isinstance(value, dict):
        return {k: without_times(v) for k, v in value.items()
                if k not in ("elapsed_ms", "generated_at")}
    if isinstance(value, list):
        return [without_times(v) for v in value
                if not (isinstance(v, dict) and v.get("stage") == "quit")]
    return value


def assert_same(fast: str, normal: str) -> None:
    """The same JSON document, times aside; the paths that differ otherwise."""
    def flat(value: Any, path: str = "") -> dict[str, Any]:
        if isinstance(value, dict):
            return {k: v for key, item in value.items() for k, v in flat(item, f"{path}.{key}")
                    .items()}
        if isinstance(value, list):
            return {k: v for i, item in enumerate(value) for k, v in flat(item, f"{path}[{i}]")
                    .items()}
        return {path: value}

    one, other = flat(without_times(json.loads(fast))), flat(without_times(json.loads(normal)))
    differ = {k: (one.get(k), other.get(k)) for k in one.keys() | other.keys()
              if one.get(k) != other.get(k)}
    assert not differ, differ


def text_without_times(text: str) -> str:
    """Text output without times (and so without the padding that follows their width) and
    without the reply to QUIT (see without_times)."""
    kept = "\n".join(line for line in text.splitlines()
                     if not re.search(r"\bquit\b|\b221\b", line, re.I))
    return " ".join(re.sub(r"\d+(\.\d+)? ?(ms|s)\b", "T", kept).replace("─", "").split())


# --- through the real command line --------------------------------------------------------


@pytest.mark.parametrize("extra", [["--json"], [], ["-v"], ["--lang", "de"],
                                   ["--no-pipelining", "--json"], ["--tls", "none", "--json"]])
async def test_the_head_start_runs_the_check_the_normal_path_would(
        lab_server: LabServers, cert: LabCert, cafile: Path, run_cli: RunCli,
        extra: list[str]) -> None:
    server = await lab_server("mailbox", cert=cert)
    args = argv(server, cafile, *extra)
    fast = await asyncio.to_thread(run_cli, *args, env={STARTUP_ENV: "trace"})
    assert server.connections == 1
    normal = await asyncio.to_thread(run_cli, *args, env={STARTUP_ENV: "off,trace"})
    assert server.connections == 2
    assert fast.stderr == ADOPTED
    assert path_of(normal) == f"normal (${STARTUP_ENV}=off)"
    assert fast.returncode == normal.returncode == 0
    if "--json" in extra:
        assert_same(fast.stdout, normal.stdout)
    else:
        assert text_without_times(fast.stdout) == text_without_times(normal.stdout)
    # The same conversation on both paths, STARTTLS and the pipelined transaction included.
    half = len(server.commands) // 2
    assert server.commands[:half] == server.commands[half:] and "QUIT" in server.commands


async def test_the_head_start_over_plain_smtp_and_a_refusal(
        lab_server: LabServers, run_cli: RunCli) -> None:
    server = await lab_server("mailbox")  # no certificate: no STARTTLS offered
    args = ["check", "nobody@lab.test", "--server", f"{server.host}:{server.port}",
            "--helo", HELO, "--json"]
    fast = await asyncio.to_thread(run_cli, *args, env={STARTUP_ENV: "trace"})
    normal = await asyncio.to_thread(run_cli, *args, env={STARTUP_ENV: "off"})
    assert fast.stderr == ADOPTED
    assert fast.returncode == normal.returncode == 1
    data = json.loads(fast.stdout)
    assert data["verdict"] == "rejected"
    assert_same(fast.stdout, normal.stdout)


async def test_a_refused_connection_on_the_head_start(run_cli: RunCli) -> None:
    # Nothing listens on the port: the early connect is refused, reported as the normal
    # path reports it.
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    args = ["check", "alice@lab.test", "--server", f"127.0.0.1:{port}", "--helo", HELO,
            "--json", "--timeout", "2"]
    fast = await asyncio.to_thread(run_cli, *args, env={STARTUP_ENV: "trace"})
    normal = await asyncio.to_thread(run_cli, *args, env={STARTUP_ENV: "off"})
    assert fast.stderr == ADOPTED
    assert fast.returncode == normal.returncode == 3
    assert_same(fast.stdout, normal.stdout)


@pytest.mark.parametrize("bad", [
    ["--timeout", "0"], ["--timeout", "soon"], ["--deadline", "-1"], ["--lang", "fr"],
    ["--tls", "sometimes"], ["--no-starttls", "--tls", "starttls"], ["--port", "0"],
    ["--from", "not an address"], ["--cafile", "/nonexistent/ca.pem"], ["--helo", "a b"],
    ["--resolver", "dns.lab.test"],
])
async def test_bad_input_is_a_usage_error_before_any_traffic(
        lab_server: LabServers, cafile: Path, run_cli: RunCli, bad: list[str]) -> None:
    server = await lab_server("mailbox")
    args = ["check", "alice@lab.test", "--server", f"{server.host}:{server.port}",
            "--helo", HELO, *bad]
    if "--cafile" not in bad:
        args += ["--cafile", str(cafile)]
    done = await asyncio.to_thread(run_cli, *args, env={STARTUP_ENV: "trace"})
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("smtpprobe: error:"), done.stderr
    assert path_of(done).startswith("normal ("), done.stderr
    assert server.connections == 0


@pytest.mark.parametrize("target", ["not-an-address", "alice@", "a@b@lab.test"])
async def test_a_bad_address_is_a_usage_error_before_any_traffic(
        lab_server: LabServers, run_cli: RunCli, target: str) -> None:
    server = await lab_server("mailbox")
    done = await asyncio.to_thread(
        run_cli, "check", target, "--server", f"{server.host}:{server.port}", "--helo", HELO,
        env={STARTUP_ENV: "trace"})
    assert done.returncode == 2, done.stderr
    assert path_of(done).startswith("normal ("), done.stderr
    assert server.connections == 0


@pytest.mark.parametrize("extra, env, why", [
    (["-4"], {}, "-4 is not an option the head start knows"),
    (["--format", "json"], {}, "--format is not an option the head start knows"),
    (["--nagios"], {}, "--nagios is not an option the head start knows"),
    ([], {"SMTPPROBE_PROXY": "socks5://127.0.0.1:9"}, "$SMTPPROBE_PROXY is set"),
    (["bob@lab.test"], {}, "not exactly one address"),
])
async def test_what_the_scan_does_not_know_takes_the_normal_path(
        lab_server: LabServers, cert: LabCert, cafile: Path, run_cli: RunCli,
        extra: list[str], env: dict[str, str], why: str) -> None:
    server = await lab_server("mailbox", cert=cert)
    done = await asyncio.to_thread(run_cli, *argv(server, cafile, *extra),
                                   env={STARTUP_ENV: "trace", **env})
    assert path_of(done) == f"normal ({why})"
    assert "Traceback" not in done.stderr


def test_help_imports_no_asyncio_rich_or_knowledge() -> None:
    loaded = modules_after("--help")
    assert not [m for m in loaded if m.split(".")[0] in ("asyncio", "rich", "ssl")
                or m.startswith(("smtpprobe.core.knowledge", "smtpprobe.models",
                                 "typer.rich_utils"))]


def test_explain_imports_no_network_code() -> None:
    loaded = modules_after("explain", "550 5.1.1 <a@b.example>: user unknown")
    assert "smtpprobe.core.knowledge.load" in loaded
    assert not [m for m in loaded if m.split(".")[0] in ("asyncio", "dns", "ssl", "socket")
                or m.startswith(("smtpprobe.net", "smtpprobe.probe"))]


def modules_after(*args: str) -> set[str]:
    """The modules a run of the command line has imported (in a child, as a user runs it)."""
    code = ("import sys\nfrom smtpprobe.cli.startup import main\ntry:\n    main(sys.argv[1:])\n"
            "except SystemExit:\n    pass\nsys.stderr.write('\\n'.join(sorted(sys.modules)))\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMTPPROBE_")}
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          cwd=ROOT, env=dict(env, COLUMNS="100"), timeout=60)
    return set(done.stderr.splitlines())


# --- the scan, in-process -----------------------------------------------------------------


def test_the_scan_plans_what_check_plan_would_set(cafile: Path) -> None:
    plan = scan(["check", "Alice <alice@lab.test>", "-s", "127.0.0.1:2525", "--cafile",
                 str(cafile), "--helo", HELO, "--timeout=4", "-f", "bob@lab.test", "--json"],
                {"SMTPPROBE_CACHE": "off", "SMTPPROBE_REALMTA": "1"})
    assert isinstance(plan, Plan)
    assert plan.target == ("127.0.0.1", 2525)
    assert str(plan.address) == "alice@lab.test"
    assert plan.output == "smtpprobe.report.json"
    from smtpprobe.cli.jobs import check_plan

    expected = check_plan(mail_from="bob@lab.test", helo=HELO, port=25,
                          server="127.0.0.1:2525", timeout=4.0, deadline=None,
                          source_address=None, cafile=cafile, no_starttls=False,
                          no_pipelining=False, tls="auto", user=None, password_env=None,
                          password_file=None, catch_all=False, resolver=None,
                          allow_private=False).options
    from smtpprobe.probe.check import CheckOptions

    assert CheckOptions(**{**plan.options, "cafile": str(cafile)}) == expected


@pytest.mark.parametrize("args, env, why", [
    (["sweep", "mx.lab.test"], {}, "not a check"),
    (["check", "a@lab.test", "--server", "mx.lab.test"], {}, "a DNS lookup"),
    (["check", "a@lab.test"], {}, "the mail hosts come from DNS"),
    (["check", "a@lab.test", "-s", "127.0.0.1", "--file", "x"], {}, "--file is not"),
    (["check", "a@lab.test", "-s", "127.0.0.1", "--proxy", "socks5://h:1"], {}, "--proxy is"),
    (["check", "a@lab.test", "-s", "127.0.0.1", "-6"], {}, "-6 is not"),
    (["check", "a@lab.test", "-s", "127.0.0.1", "--json", "--format", "jsonl"], {},
     "--format is not"),
    (["check", "a@lab.test", "-s", "127.0.0.1", "-s", "127.0.0.2"], {}, "given twice"),
    (["check", "a@lab.test", "-s127.0.0.1"], {}, "-s127.0.0.1 is not"),
    (["check", "a@lab.test", "-s", "127.0.0.1", "--helo", "-v"], {}, "a value like an option"),
    (["check", "a@lab.test", "-s", "127.0.0.1", "--json=1"], {}, "--json is not"),
    (["check", "a@lab.test", "-s", "127.0.0.1", "-h"], {}, "-h is not"),
    (["check", "a@lab.test", "-s", "127.0.0.1", "--", "b@lab.test"], {}, "-- is not"),
    (["check", "a@lab.test", "-s", "127.0.0.1", "--helo", "localhost"], {}, "not fully qual"),
    (["check", "a@lab.test", "-s", "127.0.0.1"], {"SMTPPROBE_HELO": "localhost"},
     "not fully qual"),
    (["check", "a@lab.test", "-s", "127.0.0.1"], {"SMTPPROBE_KNOWLEDGE": "/k"},
     "$SMTPPROBE_KNOWLEDGE is set"),
    (["check", "a@lab.test", "-s", "127.0.0.1"], {"SMTPPROBE_RESOLVER": "127.0.0.1"},
     "$SMTPPROBE_RESOLVER is set"),
    (["check", "a@lab.test", "-s", "127.0.0.1"], {"_SMTPPROBE_COMPLETE": "complete_bash"},
     "$_SMTPPROBE_COMPLETE is set"),
    (["check", "a@lab.test", "-s", "127.0.0.1", "--timeout", "nan"], {}, "--timeout"),
    (["check", "a b@lab.test", "-s", "127.0.0.1"], {}, "normal path reports it"),
])
def test_the_scan_sends_everything_it_does_not_know_the_normal_way(
        args: list[str], env: dict[str, str], why: str) -> None:
    found = scan(args, {"SMTPPROBE_HELO": HELO, **env})
    assert isinstance(found, str), found
    assert why in found


def test_every_variable_the_package_reads_is_known_to_the_scan() -> None:
    # A variable the tool reads but the scan ignores would let the head start differ from
    # the normal path; one the tool never reads (the test set-up's) must not send the run the
    # normal way (CI sets SMTPPROBE_REALMTA_*, SMTPPROBE_DNSSEC_* ... for every test).
    package = Path(startup.__file__).resolve().parent.parent
    read = {name for path in package.rglob("*.py")
            for name in re.findall(r"_?SMTPPROBE_[A-Z][A-Z_]*[A-Z]", path.read_text("utf-8"))}
    known = {*startup._ENV_VALUES, *startup._ENV_HARMLESS, *startup._ENV_REFUSED}
    assert read - {"SMTPPROBE_REALMTA"} <= known, read - known
    plan = scan(["check", "a@lab.test", "-s", "127.0.0.1"],
                {"SMTPPROBE_HELO": HELO, "SMTPPROBE_DNSSEC_RESOLVER": "127.0.0.56",
                 "SMTPPROBE_REALMTA_DIR": "/tmp/x", "SMTPPROBE_PROMETHEUS_URL": "http://x"})
    assert isinstance(plan, Plan), plan


def test_the_helo_and_cafile_variables_are_read_as_typer_reads_them(cafile: Path) -> None:
    plan = scan(["check", "a@lab.test", "-s", "127.0.0.1"],
                {"SMTPPROBE_HELO": "env.lab.test", "SMTPPROBE_CAFILE": str(cafile)})
    assert isinstance(plan, Plan)
    assert plan.options["helo"] == "env.lab.test" and plan.options["cafile"] == str(cafile)
    given = scan(["check", "a@lab.test", "-s", "127.0.0.1", "--helo", "arg.lab.test"],
                 {"SMTPPROBE_HELO": "env.lab.test"})
    assert isinstance(given, Plan) and given.options["helo"] == "arg.lab.test"


def test_off_means_no_head_start() -> None:
    head, why = startup.begin(["check", "a@lab.test", "-s", "127.0.0.1", "--helo", HELO],
                              {STARTUP_ENV: "off"})
    assert head is None and why == f"${STARTUP_ENV}=off"


# --- adoption, in-process -----------------------------------------------------------------


async def test_a_head_start_that_is_not_adopted_ends_its_conversation(
        lab_server: LabServers) -> None:
    server = await lab_server("slow_banner", banner_delay=2.0)  # still waiting when asked
    plan = scan(["check", "alice@lab.test", "-s", f"{server.host}:{server.port}", "--helo",
                 HELO, "--json"], {})
    assert isinstance(plan, Plan)

    def other_check() -> tuple[bool, bool]:
        from dataclasses import replace

        head = HeadStart(plan)

        async def main() -> tuple[bool, bool]:
            other = replace(head.options, catch_all=True)  # not what the head start runs
            early = head.adopt(other, [plan.address], credentials=None,
                               packaged_knowledge=True)
            await asyncio.gather(head.task, return_exceptions=True)
            return early is None, head.task.cancelled()

        return head.run(main())

    not_taken, cancelled = await asyncio.to_thread(other_check)
    assert not_taken and cancelled
    assert server.connections == 1 and server.commands == []  # hung up before the greeting


async def test_an_adopted_head_start_gives_the_early_report(lab_server: LabServers) -> None:
    server = await lab_server("mailbox")
    plan = scan(["check", "alice@lab.test", "-s", f"{server.host}:{server.port}", "--helo",
                 HELO, "--json"], {})
    assert isinstance(plan, Plan)

    def same_check() -> str:
        head = HeadStart(plan)

        async def main() -> str:
            early = head.adopt(head.options, [plan.address], credentials=None,
                               packaged_knowledge=True)
            assert early is not None
            return (await early).verdict.value

        return head.run(main())

    assert await asyncio.to_thread(same_check) == "accepted"
    assert server.connections == 1


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
async def test_an_interrupted_head_start_ends_as_the_normal_path_does(
        lab_server: LabServers, signum: int, code: int) -> None:
    server = await lab_server("slow_banner", banner_delay=20.0)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMTPPROBE_")}
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "smtpprobe", "check", "alice@lab.test", "--server",
        f"{server.host}:{server.port}", "--helo", HELO, "--json", cwd=ROOT,
        env=dict(env, **{STARTUP_ENV: "trace"}), stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    # Connected at once; the command line is parsed and the check adopted well before this
    # (a signal before that ends the run as "interrupted" too, but with no report).
    await asyncio.sleep(2.5)
    child.send_signal(signum)
    out, err = await asyncio.wait_for(child.communicate(), 30)
    assert child.returncode == code, err
    assert json.loads(out)["verdict"] == "interrupted"
    assert err.decode().splitlines() == ["smtpprobe: interrupted: 0 of 1 addresses checked",
                                         ADOPTED.strip()]
