"""The password never leaves smtpprobe in any form, on any path.

Every command that takes a password (sweep, relay) runs against lab servers that accept it, that
refuse it, and that echo it back (plain, hex and base64, inside TLS and, with
--allow-plaintext-auth, without), through every output: text, -v transcript, --json, --junit,
German text, error messages. Then once more in-process with logging at DEBUG (aiosmtplib, asyncio
and everything else), checking the log records and the reprs of what the run produced; the
process's argv (/proc/PID/cmdline) while it runs; and the interactive prompt on a real
pseudo-terminal.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import logging
import os
import pty
import select
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from smtpprobe.core.redact import MASK
from smtpprobe.lab.hostile import HOSTILE
from smtpprobe.lab.smtp import LabServer, serve
from smtpprobe.lab.tls import LabCert

USER = "carol@lab.test"
PASSWORD = "Corr3ct horse:battery-St4ple!"
ENV = "H5_SECRET"
HELO = "probe.lab.test"

# The type of conftest's run_cli fixture, and of what it returns.
Run = subprocess.CompletedProcess[str]
RunCli = Callable[..., Run]


def forms(user: str = USER, password: str = PASSWORD) -> list[str]:
    """Every shape the password takes on the wire or in a careless log."""
    raw, who = password.encode(), user.encode()
    plain = b"\0" + who + b"\0" + raw  # RFC 4616 PLAIN, empty authzid
    plain_z = who + plain  # with authzid = user
    return [password, raw.hex(), raw.hex().upper(), quote(password, safe=""),
            base64.b64encode(raw).decode(),  # AUTH LOGIN's password line
            base64.b64encode(plain).decode(), base64.b64encode(plain_z).decode(),
            plain.hex(), repr(password)[1:-1]]


def assert_clean(text: str | bytes, where: str) -> None:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    for form in forms():
        assert form not in text, f"{where} holds {form!r}"


# --- the lab --------------------------------------------------------------------------------------


class _Lab:
    """Lab servers in a loop of their own thread, so that tests can run smtpprobe in this
    thread (in-process, with asyncio.run) or in subprocesses while the servers answer."""

    def __init__(self, cert: LabCert) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.servers: dict[str, LabServer] = {}
        users = {USER: PASSWORD}
        plans = {
            "accepting": serve("submission", cert=cert, users=users),
            "echo_tls": serve(HOSTILE["echo_auth"], cert=cert),
            "echo_plain": serve(HOSTILE["echo_auth"]),
            "app_password": serve("app_password", users=users, cert=cert),
            "failing": serve("auth_failing", cert=cert),
            "tarpit": serve(HOSTILE["no_banner"]),
        }
        for name, start in plans.items():
            self.servers[name] = self.run(start)

    def run(self, coro: Awaitable[LabServer]) -> LabServer:
        async def wrapped() -> LabServer:
            return await coro

        return asyncio.run_coroutine_threadsafe(wrapped(), self.loop).result(30)

    def port(self, name: str) -> int:
        return self.servers[name].port

    def close(self) -> None:
        async def close_all() -> None:
            for server in self.servers.values():
                await server.close()

        asyncio.run_coroutine_threadsafe(close_all(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture(scope="module")
def lab(cert: LabCert) -> Iterator[_Lab]:
    world = _Lab(cert)  # conftest's: valid for mx.lab.test and 127.0.0.1, from `ca`
    yield world
    world.close()


def sweep_args(lab: _Lab, server: str, cafile: Path, *extra: str) -> list[str]:
    mode = "plain" if server == "echo_plain" else "starttls"
    return ["sweep", "127.0.0.1", "--ports", f"{lab.port(server)}:{mode}", "--user", USER,
            "--password-env", ENV, "--timeout", "5", "--helo", HELO, "--cafile", str(cafile),
            *(["--allow-plaintext-auth"] if server == "echo_plain" else []), *extra]


def relay_args(lab: _Lab, server: str, cafile: Path, *extra: str) -> list[str]:
    tls = "none" if server == "echo_plain" else "starttls"
    return ["relay", "--server", f"127.0.0.1:{lab.port(server)}", "--tls", tls, "--user", USER,
            "--password-env", ENV, "--from", USER, "--to", "alice@lab.test", "--timeout", "5",
            "--helo", HELO, "--cafile", str(cafile),
            *(["--allow-plaintext-auth"] if server == "echo_plain" else []), *extra]


def env() -> dict[str, str]:
    """What run_cli gives a child, with the password in $H5_SECRET: for the children that
    run_cli cannot start (one watched while it runs, one on a terminal)."""
    out = {k: v for k, v in os.environ.items() if not k.startswith("SMTPPROBE_")}
    out.update({ENV: PASSWORD, "COLUMNS": "200"})
    return out


async def _child(run_cli: RunCli, args: list[str], limit: asyncio.Semaphore) -> Run:
    async with limit:
        return await asyncio.to_thread(run_cli, *args, env={ENV: PASSWORD}, timeout=120)


SERVERS = ("accepting", "echo_tls", "echo_plain", "app_password", "failing")
MODES: dict[str, tuple[str, ...]] = {
    "text": (), "verbose": ("-v",), "json": ("--json",), "german": ("-v", "--lang", "de"),
}


@pytest.fixture(scope="module")
def runs(lab: _Lab, cafile: Path, tmp_path_factory: pytest.TempPathFactory, run_cli: RunCli
         ) -> dict[tuple[str, str, str], tuple[Run, str]]:
    """(command, server, mode) -> the run and its JUnit file's text (relay only)."""
    junit_dir = tmp_path_factory.mktemp("junit")
    plans: dict[tuple[str, str, str], list[str]] = {}
    for server in SERVERS:
        for mode, flags in MODES.items():
            plans[("sweep", server, mode)] = sweep_args(lab, server, cafile, *flags)
            junit = junit_dir / f"{server}-{mode}.xml"
            extra = ("--send", "--open-relay-check") if server == "accepting" else ()
            plans[("relay", server, mode)] = relay_args(lab, server, cafile, *flags, *extra,
                                                        "--junit", str(junit))

    async def run_all() -> dict[tuple[str, str, str], Run]:
        limit = asyncio.Semaphore(3)
        done = await asyncio.gather(*(_child(run_cli, args, limit)
                                      for args in plans.values()))
        return dict(zip(plans, done, strict=True))

    results = asyncio.run(run_all())
    out: dict[tuple[str, str, str], tuple[Run, str]] = {}
    for key, run in results.items():
        command, server, mode = key
        junit = junit_dir / f"{server}-{mode}.xml"
        out[key] = (run, junit.read_text(encoding="utf-8") if command == "relay" else "")
    return out


KEYS = [(c, s, m) for c in ("sweep", "relay") for s in SERVERS for m in MODES]


@pytest.mark.parametrize("key", KEYS, ids=["-".join(k) for k in KEYS])
def test_no_output_path_holds_the_password(
        key: tuple[str, str, str], runs: dict[tuple[str, str, str], tuple[Run, str]]) -> None:
    run, junit = runs[key]
    assert "Traceback" not in run.stderr, run.stderr
    assert run.returncode in (0, 1, 3), (run.returncode, run.stderr)
    assert_clean(run.stdout, "stdout")
    assert_clean(run.stderr, "stderr")
    assert_clean(junit, "the JUnit file")
    command, server, mode = key
    if command == "relay":
        assert junit.startswith("<?xml")


def test_the_runs_did_log_in(lab: _Lab,
                             runs: dict[tuple[str, str, str], tuple[Run, str]]) -> None:
    """The suite proves something only if the password really went to the servers: the
    accepting one let us in, and the echoing ones echoed (and smtpprobe masked the echo)."""
    relay_ok, _ = runs[("relay", "accepting", "json")]
    assert relay_ok.returncode == 0, relay_ok.stdout[-2000:]
    for server in ("echo_tls", "echo_plain"):
        run, _ = runs[("relay", server, "verbose")]
        text = run.stdout
        assert "535" in text and MASK in text, text[-3000:]
        auth_lines = [c for c in lab.servers[server].commands if c.startswith("AUTH")]
        assert auth_lines, server
    sweep_ok, _ = runs[("sweep", "accepting", "json")]
    assert '"result": "ok"' in sweep_ok.stdout


# --- error messages -------------------------------------------------------------------------------


@pytest.mark.parametrize("password,needle", [
    (PASSWORD + "\r\nQUIT", "CR or LF"),
    ("", "empty"),
])
def test_password_errors_never_quote_it(lab: _Lab, cafile: Path, password: str,
                                        needle: str, run_cli: RunCli) -> None:
    for args in (sweep_args(lab, "accepting", cafile), relay_args(lab, "accepting", cafile)):
        done = run_cli(*args, env={ENV: password})
        assert done.returncode == 2
        assert needle in done.stderr
        assert_clean(done.stdout + done.stderr, "a usage error")


def test_password_file_errors_never_quote_it(lab: _Lab, cafile: Path,
                                             tmp_path: Path, run_cli: RunCli) -> None:
    bad = tmp_path / "pw"
    bad.write_bytes(PASSWORD.encode("utf-8") + b"\xff\xfe")  # not UTF-8
    bad.chmod(0o600)
    args = sweep_args(lab, "accepting", cafile)
    at = args.index("--password-env")
    args[at:at + 2] = ["--password-file", str(bad)]
    done = run_cli(*args, env={ENV: PASSWORD})
    assert done.returncode == 2 and "not UTF-8" in done.stderr
    assert_clean(done.stdout + done.stderr, "a usage error")


# --- argv, while the process runs -----------------------------------------------------------------


def test_the_password_is_not_in_the_process_arguments(lab: _Lab, cafile: Path) -> None:
    args = relay_args(lab, "tarpit", cafile)
    args[args.index("--tls") + 1] = "none"
    proc = subprocess.Popen([sys.executable, "-m", "smtpprobe", *args], env=env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL)
    try:
        cmdline = b""
        for _ in range(100):  # until the interpreter has replaced its argv with ours
            cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes()
            if b"relay" in cmdline:
                break
            time.sleep(0.02)
        assert b"relay" in cmdline and ENV.encode() in cmdline
        assert_clean(cmdline.replace(b"\0", b" "), "/proc/PID/cmdline")
    finally:
        out, err = proc.communicate(timeout=60)
    assert_clean(out + err, "the output of the tarpit run")


# --- the prompt, on a real terminal ---------------------------------------------------------------


def test_the_prompt_does_not_echo_the_password(lab: _Lab, cafile: Path) -> None:
    args = sweep_args(lab, "accepting", cafile, "--json")
    at = args.index("--password-env")
    del args[at:at + 2]
    child_env = {k: v for k, v in env().items() if k != ENV}
    pid, fd = pty.fork()
    if pid == 0:  # the child: the pseudo-terminal is its controlling terminal
        os.execve(sys.executable, [sys.executable, "-m", "smtpprobe", *args], child_env)
    seen = b""
    sent = False
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.5)
            if not ready:
                continue
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # EIO: the child has closed the terminal
                break
            if not chunk:
                break
            seen += chunk
            if not sent and b"Password for" in seen:
                os.write(fd, PASSWORD.encode() + b"\n")
                sent = True
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    assert sent, seen.decode(errors="replace")
    assert os.waitstatus_to_exitcode(status) == 0, seen.decode(errors="replace")
    assert b'"result": "ok"' in seen  # the typed password worked
    assert_clean(seen, "the terminal")


# --- in-process, with every logger at DEBUG -------------------------------------------------------


class _Capture(logging.Handler):
    def __init__(self, skip_thread: int | None) -> None:
        super().__init__(level=logging.DEBUG)
        self.skip_thread = skip_thread
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self.skip_thread:
            return  # the lab servers' own logging (aiosmtpd runs in the lab's thread)
        self.lines.append(self.format(record))
        if record.exc_info:
            self.lines.append(logging.Formatter().formatException(record.exc_info))


@pytest.mark.parametrize("server", SERVERS)
@pytest.mark.parametrize("command", ["sweep", "relay"])
def test_in_process_with_debug_logging(lab: _Lab, cafile: Path, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch, command: str,
                                       server: str) -> None:
    from smtpprobe.cli.app import main

    monkeypatch.setenv(ENV, PASSWORD)
    capture = _Capture(lab.thread.ident)
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(capture)
    root.setLevel(logging.DEBUG)
    monkeypatch.setenv("PYTHONASYNCIODEBUG", "1")
    junit = tmp_path / "junit.xml"
    build = sweep_args if command == "sweep" else relay_args
    extra = ["-v", "--json"] if command == "sweep" else ["-v", "--junit", str(junit)]
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            with pytest.raises(SystemExit) as info:
                main(build(lab, server, cafile, *extra))
    finally:
        root.removeHandler(capture)
        root.setLevel(old_level)
    assert info.value.code in (0, 1, 3), err.getvalue()
    assert any("asyncio" in line or "Using selector" in line for line in capture.lines) or \
        capture.lines, "DEBUG logging captured nothing: the check would be empty"
    assert_clean("\n".join(capture.lines), "the DEBUG log")
    assert_clean(out.getvalue(), "stdout")
    assert_clean(err.getvalue(), "stderr")
    if command == "relay":
        assert_clean(junit.read_text(encoding="utf-8"), "the JUnit file")


def test_reprs_of_what_a_run_produces(lab: _Lab, cafile: Path) -> None:
    """The report objects, their steps and the credentials, as a traceback or a debugger
    would show them."""
    from smtpprobe.core.certs import load_trust_store
    from smtpprobe.core.knowledge import load as knowledge
    from smtpprobe.core.redact import Redactor
    from smtpprobe.models import Credentials, PortMode
    from smtpprobe.probe.relay import Relay, RelayOptions
    from smtpprobe.probe.sweep import Sweeper, SweepOptions

    kb = knowledge.load()
    trust = load_trust_store(str(cafile))
    creds = Credentials(USER, PASSWORD, f"${ENV}")
    shown: list[str] = [repr(creds), str(creds)]
    for server in SERVERS:
        port = lab.port(server)
        mode = PortMode.PLAIN if server == "echo_plain" else PortMode.STARTTLS
        sweeper = Sweeper(kb, SweepOptions(host="127.0.0.1", ports=((port, mode),), helo=HELO,
                                           timeout=5, allow_plaintext_auth=True),
                          trust=trust, redactor=Redactor(), credentials=creds)
        report = asyncio.run(sweeper.sweep())
        shown.append(repr(report))
        relay = Relay(kb, RelayOptions(host="127.0.0.1", port=port,
                                       tls="none" if server == "echo_plain" else "starttls",
                                       helo=HELO, mail_from=USER, recipients=("alice@lab.test",),
                                       timeout=5, allow_plaintext_auth=True),
                      trust=trust, redactor=Redactor(), credentials=creds)
        shown.append(repr(asyncio.run(relay.run())))
    text = "\n".join(shown)
    assert "535" in text  # the echoing servers were reached
    # No redactor was given on purpose: the Session masks what it sent by itself.
    assert_clean(text, "a repr")


# --- --password-file on a named pipe: bounded ------------------------------------------------


def test_a_pipe_without_a_writer_is_a_usage_error_in_bounded_time(tmp_path: Path) -> None:
    from smtpprobe.cli.secrets import read_password_file
    from smtpprobe.errors import UsageError

    pipe = tmp_path / "pw.fifo"
    os.mkfifo(pipe)
    with pytest.raises(UsageError, match="no complete password within 0.3 s"):
        read_password_file(str(pipe), warn=lambda _: None, wait=0.3)


@pytest.mark.parametrize("payload", [b"s3cret-pipe\n", b"s3cret-pipe", b"s3cret-pipe\r\nrest"])
def test_a_pipe_that_a_writer_fills_gives_its_first_line(tmp_path: Path,
                                                        payload: bytes) -> None:
    from smtpprobe.cli.secrets import read_password_file

    pipe = tmp_path / "pw.fifo"
    os.mkfifo(pipe)

    def writer() -> None:
        time.sleep(0.2)  # the reader is waiting before the writer comes
        with open(pipe, "wb") as handle:
            handle.write(payload[:4])
            handle.flush()
            time.sleep(0.1)
            handle.write(payload[4:])

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        assert read_password_file(str(pipe), warn=lambda _: None, wait=10) == "s3cret-pipe"
    finally:
        thread.join(5)
