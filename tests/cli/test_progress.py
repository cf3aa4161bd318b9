"""The progress bar of `check --file` on a terminal: counts, the domain it waits on, --lang."""

from __future__ import annotations

import asyncio
import os
import pty
import sys
from pathlib import Path

import pytest

from smtpprobe.lab.hostile import HOSTILE
from smtpprobe.lab.smtp import serve


async def run_on_a_terminal(args: list[str]) -> tuple[int, str]:
    """The real CLI with stderr on a pseudo-terminal (the bar only shows on one)."""
    main, follower = pty.openpty()
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "TERM")}
    env.update(COLUMNS="150", TERM="xterm", SMTPPROBE_HELO="probe.smtpprobe.test")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "smtpprobe", *args, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL, stderr=follower, env=env)
    os.close(follower)
    loop = asyncio.get_running_loop()
    seen = bytearray()

    def drain() -> None:
        try:
            seen.extend(os.read(main, 65536))
        except OSError:  # the child closed the terminal
            loop.remove_reader(main)

    loop.add_reader(main, drain)
    try:
        code = await asyncio.wait_for(proc.wait(), 60)
        await asyncio.sleep(0.1)
    finally:
        loop.remove_reader(main)
        os.close(main)
    return code, seen.decode("utf-8", "replace")


@pytest.mark.parametrize(("lang", "counting", "waiting"), [
    ("en", "checking 0 of 2 addresses", "waiting on lab.test"),
    ("de", "prüfe Adressen: 0 von 2", "warte auf lab.test"),
])
async def test_the_bar_counts_and_names_the_domain_it_waits_on(
        tmp_path: Path, lang: str, counting: str, waiting: str) -> None:
    listing = tmp_path / "list.txt"
    listing.write_text("alice@lab.test\nbob@lab.test\n", encoding="utf-8")
    # A server that never greets: the run waits on lab.test for the whole step timeout.
    async with await serve(HOSTILE["no_banner"]) as server:
        code, seen = await run_on_a_terminal([
            "check", "--file", str(listing), "--server", f"127.0.0.1:{server.port}",
            "--timeout", "1.5", "--lang", lang])
    assert code == 3, seen[-2000:]
    assert counting in seen and waiting in seen, seen[-2000:]
