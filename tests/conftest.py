"""Fixtures shared by the whole suite. Test modules never import this file (nor each other):
they name a fixture as a parameter and annotate it with the type given in its docstring.

- `kb`: the knowledge base.
- `ca`, `cert`, `trust`, `cafile`: one lab CA for the session, a certificate for lab servers,
  the `TrustStore` that verifies it, and the CA as a PEM file (for --cafile).
- `other_ca`, `other_trust`: a second CA that trusts none of the above.
- `lab_server`, `lab_dns`: start lab SMTP and DNS servers in the test's loop; stopped at the end.
- `filtered_port`: a port that drops SYNs.
- `check_options`, `check_address`: the options of a lab check, and one check of one address.
- `run_cli`: `python -m smtpprobe ...` in a subprocess.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from smtpprobe.core.certs import TrustStore
from smtpprobe.core.knowledge import load as knowledge
from smtpprobe.core.knowledge.load import KnowledgeBase
from smtpprobe.lab.dns import LabDns, Record
from smtpprobe.lab.smtp import LabServer, RawScript, Scenario, serve
from smtpprobe.lab.tls import LabCA, LabCert

if TYPE_CHECKING:  # imported where used: the probe is being reworked, the lab is stable
    from smtpprobe.lab.world import LabWorld
    from smtpprobe.models import CheckReport
    from smtpprobe.probe.check import CheckOptions


@pytest.fixture(scope="session")
def kb() -> KnowledgeBase:
    return knowledge.load()


@pytest.fixture
def filtered_port() -> Iterator[int]:
    """A port whose SYNs are dropped, as behind a firewall (smtpprobe.lab.hostile)."""
    from smtpprobe.lab.hostile import FilteredPort

    with FilteredPort() as port:
        yield port.port


# --- certificates ------------------------------------------------------------------------------
# (tests/net/test_session.py and tests/probe/test_hostile.py keep CAs of their own.)

# Every name a lab server is given in these tests: mx.lab.test is the lab's default host name,
# smtp.lab.test the submission servers'; 127.0.0.2 and .3 serve beside 127.0.0.1 in test_lab.
CERT_NAMES = ("mx.lab.test", "smtp.lab.test", "127.0.0.1", "127.0.0.2", "127.0.0.3")


@pytest.fixture(scope="session")
def ca() -> LabCA:
    """The lab CA (`LabCA`) of the session: it issues `cert`, and `trust`/`cafile` trust it."""
    return LabCA.create()


@pytest.fixture(scope="session")
def cert(ca: LabCA) -> LabCert:
    """A lab server's certificate (`LabCert`) from `ca`, valid for CERT_NAMES."""
    return ca.issue(*CERT_NAMES)


@pytest.fixture(scope="session")
def trust(ca: LabCA) -> TrustStore:
    """The `TrustStore` that verifies `cert`: `ca` alone."""
    return TrustStore((ca.cert,), "lab CA")


@pytest.fixture(scope="session")
def cafile(ca: LabCA, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`ca` in a PEM file (`Path`), for --cafile, SMTPPROBE_CAFILE and CheckOptions.cafile."""
    return ca.write_pem(tmp_path_factory.mktemp("ca") / "lab-ca.pem")


@pytest.fixture(scope="session")
def other_ca() -> LabCA:
    """A second CA (`LabCA`) under the same name as `ca` but with a key of its own, so that
    trusting it means nothing for `cert`: a verifier has to check signatures, not names."""
    return LabCA.create()


@pytest.fixture(scope="session")
def other_trust(other_ca: LabCA) -> TrustStore:
    """A `TrustStore` that holds only `other_ca`: `cert` does not verify against it."""
    return TrustStore((other_ca.cert,), "another CA")


# --- lab servers -------------------------------------------------------------------------------


@pytest.fixture
async def lab_server() -> AsyncIterator[Callable[..., Awaitable[LabServer]]]:
    """`await lab_server(scenario, **options)` starts a lab SMTP server in the test's loop
    and returns the `LabServer`; every server started so is stopped when the test ends, pass
    or fail. `scenario` is a scenario name, a `Scenario`, or a raw script (an async function
    of a `RawConnection`); `options` are `smtpprobe.lab.smtp.serve`'s (cert=, users=,
    hostname=, host=, implicit_tls=, ...).

    Annotate it as `Callable[..., Awaitable[LabServer]]`."""
    started: list[LabServer] = []

    async def start(scenario: str | Scenario | RawScript, **options: Any) -> LabServer:
        if not isinstance(scenario, str | Scenario):
            name = getattr(scenario, "__name__", "script").strip("_") or "script"
            scenario = Scenario(name, "a test's own script", raw=scenario)
        server = await serve(scenario, **options)
        started.append(server)
        return server

    try:
        yield start
    finally:
        for server in reversed(started):
            await server.close()


@pytest.fixture
async def lab_dns() -> AsyncIterator[Callable[..., Awaitable[LabDns]]]:
    """`await lab_dns(records, **options)` starts a lab DNS server (`LabDns`, options such as
    behaviour= and host=) in the test's loop; it is stopped when the test ends.

    Annotate it as `Callable[..., Awaitable[LabDns]]`."""
    started: list[LabDns] = []

    async def start(records: Iterable[Record], **options: Any) -> LabDns:
        server = LabDns(records, **options)
        await server.start()
        started.append(server)
        return server

    try:
        yield start
    finally:
        for server in reversed(started):
            await server.close()


# --- checks ------------------------------------------------------------------------------------

# What a check in the lab says in EHLO and how long it waits: 3 s a step, 15 s an address.
LAB_CHECK: dict[str, Any] = {"helo": "probe.smtpprobe.test", "timeout": 3.0, "deadline": 15.0}


@pytest.fixture(scope="session")
def check_options() -> Callable[..., CheckOptions]:
    """`check_options(world=None, **fields)` gives the `CheckOptions` of a check in the lab:
    LAB_CHECK, then the port, resolver and CA file of `world` (a `LabWorld`) if one is given,
    then `fields`, which may set any field (and override the others).

    Annotate it as `Callable[..., CheckOptions]`."""
    from smtpprobe.probe.check import CheckOptions

    def build(world: LabWorld | None = None, **fields: Any) -> CheckOptions:
        settings = dict(LAB_CHECK)
        if world is not None:
            settings.update(port=world.port, nameservers=(world.resolver,), cafile=world.cafile)
        settings.update(fields)
        return CheckOptions(**settings)

    return build


@pytest.fixture(scope="session")
def check_address(kb: KnowledgeBase) -> Callable[[CheckOptions, str], Awaitable[CheckReport]]:
    """`await check_address(options, "alice@good.test")` parses the address (it must be
    valid) and checks it with `Checker(kb, options)`: the `CheckReport`.

    Annotate it as `Callable[[CheckOptions, str], Awaitable[CheckReport]]`."""
    from smtpprobe.core.address import parse_address
    from smtpprobe.probe.check import Checker

    async def check(options: CheckOptions, address: str) -> CheckReport:
        parsed = parse_address(address)
        assert parsed is not None, address
        return await Checker(kb, options).check(parsed)

    return check


# --- the command line --------------------------------------------------------------------------


def _smtpprobe(*args: str, env: Mapping[str, str] | None = None, stdin: bytes | None = None,
               timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "smtpprobe", *args]
    # No SMTPPROBE_* setting of the caller's shell reaches the child unless the test gives it.
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("SMTPPROBE_")}
    child_env["COLUMNS"] = "200"
    # A fully qualified EHLO name, as a user who read the warning would give: this machine's
    # own name (the default) is often bare, and the warning about it is tested on its own
    # (tests/cli/test_cli_surface.py). An `env` of the test may set or clear it.
    child_env["SMTPPROBE_HELO"] = "probe.smtpprobe.test"
    child_env.update(env or {})
    if not child_env["SMTPPROBE_HELO"]:
        del child_env["SMTPPROBE_HELO"]
    try:
        done = subprocess.run(
            command, env=child_env, capture_output=True, timeout=timeout,
            input=stdin, stdin=subprocess.DEVNULL if stdin is None else None, check=False)
    except subprocess.TimeoutExpired:  # run() has killed the child already
        raise AssertionError(f"smtpprobe {args!r}: no end within {timeout:g} s") from None
    try:
        out, err = done.stdout.decode("utf-8"), done.stderr.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise AssertionError(f"smtpprobe {args!r} wrote something that is not UTF-8: "
                             f"{exc}") from None
    return subprocess.CompletedProcess(command, done.returncode, out, err)


@pytest.fixture(scope="session")
def run_cli() -> Callable[..., subprocess.CompletedProcess[str]]:
    """`run_cli(*args, env=None, stdin=None, timeout=60.0)` runs `python -m smtpprobe *args`
    in a subprocess and returns its `subprocess.CompletedProcess[str]` (returncode, stdout,
    stderr; the output is decoded as UTF-8, strictly: anything else fails the test).

    The child gets this process's environment without any SMTPPROBE_* variable, with
    COLUMNS=200 and SMTPPROBE_HELO=probe.smtpprobe.test (`env={"SMTPPROBE_HELO": ""}` drops
    it), and then `env` on top. `stdin` is fed to it (default: /dev/null). A child that
    has not ended after `timeout` seconds is killed and fails the test.

    Annotate it as `Callable[..., subprocess.CompletedProcess[str]]`. From a coroutine (a lab
    server in the test's loop must keep answering meanwhile) call it in a thread:
    `await asyncio.to_thread(run_cli, "relay", ...)`. Session-scoped, so module-scoped
    fixtures may use it."""
    return _smtpprobe


@contextmanager
def _exporter(config: Path, log: Path, *args: str, env: Mapping[str, str] | None = None
              ) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    import signal
    import time

    child_env = {k: v for k, v in os.environ.items() if not k.startswith("SMTPPROBE_")}
    child_env.update(env or {})
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "smtpprobe", "exporter", "--listen", "127.0.0.1:0",
             "--config", str(config), *args], stdout=out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, env=child_env)
    try:
        for _ in range(300):
            text = log.read_text(errors="replace")
            if "listening on http://" in text:
                break
            if process.poll() is not None:
                raise AssertionError(f"the exporter ended: {text}")
            time.sleep(0.05)
        else:
            raise AssertionError("the exporter did not start within 15 s")
        yield "http://" + text.split("listening on http://", 1)[1].split("/ ", 1)[0], process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            raise AssertionError("the exporter did not stop on SIGTERM") from None


@pytest.fixture(scope="session")
def smtpprobe_exporter() -> Callable[..., AbstractContextManager[
        tuple[str, subprocess.Popen[bytes]]]]:
    """`with smtpprobe_exporter(config, log, *args, env=None) as (url, process):` runs
    `python -m smtpprobe exporter --listen 127.0.0.1:0 --config CONFIG *args`, its output in
    `log`, until the block ends (SIGTERM; a child that does not stop fails the test). `url` is
    `http://127.0.0.1:PORT` as the exporter's first line says. The child gets this process's
    environment without any SMTPPROBE_* variable, then `env`. Session-scoped."""
    return _exporter
