"""Secrets are masked where they can occur (what a server says after our AUTH, in every
encoding and case), and nowhere else: a banner, a host name or the knowledge base's own words
that happen to contain the password's text stay as they are, because masking them would tell
the password (issue 10)."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
from collections.abc import Awaitable, Callable

import pytest

from smtpprobe.core.redact import MASK, Redactor
from smtpprobe.lab.smtp import LabServer, RawConnection
from smtpprobe.net.session import Endpoint, Session

LabServerFactory = Callable[..., Awaitable[LabServer]]
USER = "carol"


def echo_server(password: str) -> Callable[[RawConnection], Awaitable[None]]:
    """Names itself with the password's text, and echoes the AUTH it got in every form."""
    async def script(conn: RawConnection) -> None:
        await conn.send(f"220 mx1.{password}.test ESMTP")
        while (line := await conn.read_command()) is not None:
            verb = line.split(" ", 1)[0].upper()
            if verb == "EHLO":
                await conn.send(f"250-mx1.{password}.test", "250 AUTH PLAIN LOGIN")
            elif verb == "AUTH":
                blob = line.split(" ")[-1]
                raw = base64.b64decode(blob).split(b"\0")[-1].decode()
                await conn.send(f"535-5.7.8 bad: {raw} {raw.upper()} {raw.encode().hex()}",
                                f"535 5.7.8 you sent {blob} to mx1.{password}.test")
            elif verb == "QUIT":
                await conn.send("221 2.0.0 Bye")
                break
            else:
                await conn.send("250 2.0.0 Ok")
        conn.close()
    return script


@pytest.mark.parametrize("password", ["Tr0ub4dor", "abc"])
async def test_only_what_follows_auth_is_masked(lab_server: LabServerFactory,
                                                password: str) -> None:
    server = await lab_server(echo_server(password))
    session = Session(Endpoint(server.host, server.port), helo="probe.lab.test", timeout=2.0)
    steps = [await session.connect(), *await session.hello()]
    steps += await session.auth(USER, password, "PLAIN")
    await session.quit()
    banner, ehlo, auth = steps[0], steps[1], steps[-1]
    assert banner.reply is not None and f"mx1.{password}.test" in banner.reply.text
    assert ehlo.reply is not None and f"mx1.{password}.test" in ehlo.reply.text
    assert auth.reply is not None and auth.command == f"AUTH PLAIN {MASK}"
    echo, sent = auth.reply.lines
    for form in (password, password.upper(), password.encode().hex()):
        assert form not in echo.split(), form
    assert echo == f"5.7.8 bad: {MASK} {MASK} {MASK}"
    assert base64.b64encode(f"\0{USER}\0{password}".encode()).decode() not in sent
    # A short secret inside a longer name is not the secret: the host name stays.
    assert sent.endswith(f"to mx1.{MASK if len(password) >= 4 else password}.test")


def test_case_changed_and_short_secrets() -> None:
    redact = Redactor([("u", "S3cret-Pass")])
    assert redact("echo s3cret-pass and S3CRET-PASS") == f"echo {MASK} and {MASK}"
    short = Redactor([("u", "abc")])
    # A short secret only as a whole word: masking every "abc" inside words would spell it.
    assert short("535 bad password ABC; abcdef xabc abc.") == \
        f"535 bad password {MASK}; abcdef xabc {MASK}."
    one = Redactor([("u", "7")])
    assert one("535 5.7.8 you sent 7 (not 17)") == f"535 5.7.8 you sent {MASK} (not 17)"


async def test_sweep_output_keeps_fixed_words_that_contain_the_password(
        run_cli: Callable[..., subprocess.CompletedProcess[str]],
        lab_server: LabServerFactory) -> None:
    password = "password"  # a word the knowledge base uses all the time
    server = await lab_server(echo_server(password))
    done = await asyncio.to_thread(
        run_cli, "sweep", "127.0.0.1", "--ports", f"{server.port}:plain", "--user", USER,
        "--password-env", "SWEEP_PW", "--allow-plaintext-auth", "--json", "--timeout", "3",
        "--helo", "probe.lab.test", env={"SWEEP_PW": password})
    data = json.loads(done.stdout)
    [port] = data["ports"]
    text = json.dumps(data, ensure_ascii=False)
    assert port["banner"] == f"mx1.{password}.test ESMTP"
    # Fixed words keep the password's text: nothing in them was masked.
    finding = port["auth"]["finding"]
    assert "password" in (finding["cause"] + finding["remedy"]).lower()
    assert MASK not in finding["cause"] + finding["remedy"] + (finding["title"] or "")
    # What the server said after AUTH is masked in every form.
    auth_steps = [s for s in port["steps"] if s["stage"] == "auth"]
    said = auth_steps[-1]["reply"]["text"]
    assert "PASSWORD" not in said and password.encode().hex() not in said and MASK in said
    assert base64.b64encode(f"\0{USER}\0{password}".encode()).decode() not in text
