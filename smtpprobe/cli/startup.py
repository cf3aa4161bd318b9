"""Start-up: where every run of the command line begins (the console script and
`python -m smtpprobe`), and the head start of `check`.

Most of a single check's life is waiting for the network, and before its first packet the
command line has to import Python's asyncio, typer and its own modules. The head start puts
the waits first: before typer is imported, `scan` reads the arguments with smtpprobe's own
validators (cli/values.py, core/address.py). When the command line is `check` of one address
at a server given by its IP address, and every argument is one the scan knows and valid, the
TCP connect is started at once, and the very check the command would run (probe.check's
`Checker`, on that socket) starts in an event loop on a helper thread. Meanwhile the main
thread imports typer, parses and validates everything as always. When `run_checks` is ready
to run, it asks the head start to `adopt` what it would run: if the options (a CheckOptions,
compared field by field), the address and the knowledge source are the same and there is no
login, the loop moves to the main thread (`run`: the thread stops it, asyncio.Runner runs it
on) and the check's task simply goes on; its conversation, its stream and every reply it has
queued stay where they are. Otherwise the early check is cancelled (its session closed) and
the normal path runs.

Any argument or environment variable the scan does not know, a value it finds bad (the normal
path then reports it, exit 2, before any traffic), an EHLO name that would get a warning, a
server named by its host name (a DNS lookup) or several addresses: the normal path, with no
early traffic. `SMTPPROBE_STARTUP=off` turns the head start off; `SMTPPROBE_STARTUP=trace`
says on stderr, at the end, which path ran and why (both: `off,trace`; tests/cli/test_startup.py).
"""

from __future__ import annotations

import os
import sys

# typing is not imported at run time: everything before the first packet counts (mypy reads
# any constant named TYPE_CHECKING as true).
TYPE_CHECKING = False
if TYPE_CHECKING:
    import asyncio
    import socket
    import threading
    from collections.abc import Coroutine, Mapping, Sequence
    from typing import Any, NoReturn, TypeVar

    from smtpprobe.core.address import Address
    from smtpprobe.core.knowledge.load import KnowledgeBase
    from smtpprobe.models import CheckReport, Credentials
    from smtpprobe.probe.check import CheckOptions

    T = TypeVar("T")

STARTUP_ENV = "SMTPPROBE_STARTUP"  # "off": never a head start; "trace": tell which path ran

# check's options the scan knows, by every name they have (cli/check.py).
_VALUES = {"--server": "server", "-s": "server", "--port": "port", "-p": "port",
           "--helo": "helo", "--cafile": "cafile", "--timeout": "timeout",
           "--deadline": "deadline", "--from": "mail_from", "--mail-from": "mail_from",
           "-f": "mail_from", "--lang": "lang", "--tls": "tls"}
_FLAGS = {"--json": "as_json", "-v": "verbose", "--verbose": "verbose",
          "--no-pipelining": "no_pipelining", "--no-starttls": "no_starttls",
          "--catch-all": "catch_all"}
# Environment variables of those options (typer reads them when the option is absent).
_ENV_VALUES = {"SMTPPROBE_HELO": "helo", "SMTPPROBE_CAFILE": "cafile"}
# Read by nothing a head start could differ in: the knowledge cache's place, the password
# (used with --user only) and this switch.
_ENV_HARMLESS = ("SMTPPROBE_CACHE", "SMTPPROBE_PASSWORD", STARTUP_ENV)
# Read by the tool and not understood by the scan: any of them sends the run the normal way.
# (Other SMTPPROBE_* names, such as the test set-up's, are read by nothing; tests/cli/
# test_startup.py checks that every name the package reads is in one of these tables.)
_ENV_REFUSED = ("SMTPPROBE_KNOWLEDGE", "SMTPPROBE_RESOLVER", "SMTPPROBE_PROXY",
                "SMTPPROBE_PROXY_PASSWORD", "SMTPPROBE_SERVER", "SMTPPROBE_TLS",
                "SMTPPROBE_FROM", "SMTPPROBE_TO", "SMTPPROBE_USER", "_SMTPPROBE_COMPLETE")


class Plan:
    """A command line the head start can run: everything check needs, validated. (A plain
    class: dataclasses is not imported by commands that never get a head start.)"""

    __slots__ = ("address", "options", "output", "target")

    def __init__(self, address: Address, target: tuple[str, int], options: dict[str, Any],
                 output: str) -> None:
        self.address = address
        self.target = target  # the IP address and port the connection goes to
        self.options = options  # CheckOptions' fields, as cli/jobs.check_plan sets them
        self.output = output  # the output module the loader warms up (as cli/check.py does)


def scan(argv: Sequence[str], environ: Mapping[str, str]) -> Plan | str:
    """The head start's plan for this command line, or why it takes the normal path."""
    if not argv or argv[0] != "check":
        return "not a check"
    given: dict[str, str] = {}
    positional: list[str] = []
    args = list(argv[1:])
    index = 0
    while index < len(args):
        arg = args[index]
        index += 1
        name, eq, value = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        if name in _FLAGS and not eq:
            key, value = _FLAGS[name], "1"
        elif name in _VALUES:
            key = _VALUES[name]
            if not eq:
                if index == len(args):
                    return f"{arg} without a value"
                value = args[index]
                index += 1
            if value.startswith("-"):
                return f"{name} {value}: a value like an option"
        elif arg.startswith("-"):
            return f"{name} is not an option the head start knows"
        else:
            positional.append(arg)
            continue
        if key in given:
            return f"{name} given twice"
        given[key] = value
    if len(positional) != 1:
        return "not exactly one address"
    for variable in environ:
        if variable in _ENV_VALUES:
            given.setdefault(_ENV_VALUES[variable], environ[variable])
        elif variable in _ENV_REFUSED:
            return f"${variable} is set"
    from smtpprobe.errors import UsageError

    try:
        return _plan(positional[0], given)
    except (UsageError, ValueError) as exc:
        return f"{exc} (the normal path reports it)"


def _plan(text: str, given: dict[str, str]) -> Plan | str:
    """`given` checked as check (cli/check.py) and check_plan (cli/jobs.py) check it."""
    from smtpprobe.cli.values import check_cafile, parse_helo_option
    from smtpprobe.core import address as addr

    if given.get("lang", "en").lower() not in ("de", "en"):
        return "unknown language"
    # As core/addresslist.py reads an argument: invisible characters are taken out (with a
    # warning, so: the normal path), the display name taken off.
    cleaned, removed = addr.strip_invisible(text)
    if removed:
        return "invisible characters in the address"
    addr.check_text(text.strip())
    address = addr.parse_address(addr.address_part(cleaned))
    assert address is not None
    sender = addr.parse_address(given.get("mail_from", ""), allow_empty=True)
    helo = parse_helo_option(given.get("helo") or None)
    if "." not in helo and not helo.startswith("["):
        return "the EHLO name is not fully qualified (a warning first)"
    timeout = float(given.get("timeout", "10"))
    if not 0 < timeout <= 3600:
        return "--timeout out of range"
    deadline = float(given["deadline"]) if "deadline" in given else 60.0
    if not 0 < deadline <= 7 * 86400:
        return "--deadline out of range"
    port = addr.parse_port(int(given.get("port", "25")))
    if "server" not in given:
        return "no --server (the mail hosts come from DNS)"
    host, target_port = addr.parse_server(given["server"], default_port=port)
    if not addr.is_ip(host):
        return "--server names a host (a DNS lookup)"
    # Checked as given; the path as typer passes it (a Path) is made after the connect.
    cafile = check_cafile(given["cafile"]) if "cafile" in given else None
    mode = given.get("tls", "auto").lower()
    if mode not in ("auto", "starttls", "implicit", "none"):
        return "unknown --tls mode"
    no_starttls = "no_starttls" in given
    if no_starttls and mode not in ("auto", "none"):
        return "--no-starttls contradicts --tls"
    implicit = mode == "implicit" or (mode == "auto" and target_port == 465)
    options = {
        "helo": helo, "mail_from": sender.smtp if sender else "", "port": port,
        "timeout": timeout, "deadline": deadline, "cafile": cafile,
        "starttls": not no_starttls and mode in ("auto", "starttls") and not implicit,
        "implicit_tls": implicit, "pipelining": "no_pipelining" not in given,
        "catch_all": "catch_all" in given, "server": (host, target_port),
    }
    output = "smtpprobe.report.json" if "as_json" in given else "smtpprobe.report.text_check"
    return Plan(address, (host, target_port), options, output)


# Imported by the check after its last reply (probe/check.py, `confirm`): loaded beforehand
# with the knowledge base, while the network waits.
_AFTER_THE_REPLIES = ("smtpprobe.probe.lookups",)


def _load_knowledge(output: str) -> KnowledgeBase:
    # What cli/check.py's loader does, in the check's loading thread: the output module
    # (rich is slow to import) and the packaged knowledge base.
    import importlib

    from smtpprobe.core.knowledge.load import load

    for module in (output, *_AFTER_THE_REPLIES):
        importlib.import_module(module)
    return load(None)


class HeadStart:
    """A check started before the command line was parsed, in an event loop on a thread."""

    def __init__(self, plan: Plan) -> None:
        import errno
        import socket

        self.plan = plan
        self.adopted: bool | None = None  # None until run_checks asked
        host, port = plan.target
        # The first packet goes out before anything heavy is imported.
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET,
                             socket.SOCK_STREAM)
        sock.setblocking(False)
        self.sockets: dict[tuple[str, int], socket.socket] = {}
        if sock.connect_ex(plan.target) in (0, errno.EINPROGRESS):
            self.sockets[plan.target] = sock
        else:  # refused at once: the check's own connect meets (and reports) the same
            sock.close()
        import asyncio
        import threading
        from functools import partial
        from pathlib import Path

        from smtpprobe.probe.check import Checker, CheckOptions

        cafile = plan.options["cafile"]
        self.options: CheckOptions = CheckOptions(**{
            **plan.options, "cafile": None if cafile is None else str(Path(cafile))})
        self.loop: asyncio.AbstractEventLoop = asyncio.new_event_loop()

        async def check() -> CheckReport:
            checker = Checker(partial(_load_knowledge, plan.output), self.options,
                              connecting=self.sockets)
            return await checker.check(plan.address)

        self.task: asyncio.Task[CheckReport] = self.loop.create_task(check())
        self.thread: threading.Thread = threading.Thread(
            target=self.loop.run_forever, name="smtpprobe-head-start", daemon=True)
        self.thread.start()

    def adopt(self, options: CheckOptions, addresses: Sequence[Address], *,
              credentials: Credentials | None, packaged_knowledge: bool
              ) -> asyncio.Task[CheckReport] | None:
        """The early check's task when it is the check the command line asks for; else None,
        and the early check is cancelled. Called in the running loop (`run`)."""
        self.adopted = (options == self.options and list(addresses) == [self.plan.address]
                        and credentials is None and packaged_knowledge)
        if self.adopted:
            return self.task
        self.task.cancel()
        return None

    def run(self, main: Coroutine[Any, Any, T]) -> T:
        """Run `main` in the head start's loop, now on this (the main) thread."""
        import asyncio

        self._stop_thread()
        loop = self.loop
        try:
            with asyncio.Runner(loop_factory=lambda: loop) as runner:
                return runner.run(main)
        finally:
            self._close_sockets()

    def close(self) -> None:
        """For a run that never came to `run` (an error, an interruption)."""
        if self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.task.cancel)
            self._stop_thread()
        self._close_sockets()

    def _stop_thread(self) -> None:
        if self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join()

    def _close_sockets(self) -> None:
        for sock in self.sockets.values():  # not taken over by a session
            sock.close()
        self.sockets.clear()


def _switches(environ: Mapping[str, str]) -> set[str]:
    return {word.strip() for word in environ.get(STARTUP_ENV, "").lower().split(",")}


def begin(argv: Sequence[str], environ: Mapping[str, str]) -> tuple[HeadStart | None, str]:
    """The head start for this command line, when it gets one, and why it does not."""
    if "off" in _switches(environ):
        return None, f"${STARTUP_ENV}=off"
    plan = scan(argv, environ)
    if isinstance(plan, str):
        return None, plan
    try:
        return HeadStart(plan), ""
    except OSError as exc:  # no socket to be had (EMFILE ...): the normal path reports it
        return None, f"no head start: {exc}"


def main(argv: list[str] | None = None) -> None:
    """The command line: a head start when it gets one, then cli/app.py's `main`."""
    args = sys.argv[1:] if argv is None else argv
    trace = "trace" in _switches(os.environ)
    head: HeadStart | None = None
    why = "interrupted"
    try:
        head, why = begin(args, os.environ)
        from smtpprobe.cli.app import main as run
    except KeyboardInterrupt:  # Ctrl-C before the command line could take it
        _interrupted()
    try:
        run(args, head=head)
    finally:
        if head is not None:
            head.close()
        if trace:
            said = (f"normal ({why})" if head is None else "head start, adopted" if head.adopted
                    else "head start, not adopted")
            sys.stderr.write(f"smtpprobe: startup: {said}\n")


def _interrupted() -> NoReturn:
    from smtpprobe.cli import exits

    sys.stderr.write("smtpprobe: interrupted\n")
    sys.exit(exits.INTERRUPTED)


def entry() -> None:
    """The console script and `python -m smtpprobe`: `main`, then a quick exit.

    Once the output is flushed nothing is left to do, and Python's own teardown (collecting
    hundreds of modules) would add tens of milliseconds to every command: the process ends
    with os._exit instead. Library callers and tests use `main`, which exits normally.
    """
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if isinstance(exc.code, str):
            sys.stderr.write(exc.code + "\n")
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            code = code or 1  # a closed pipe: the output did not arrive
    os._exit(code)
