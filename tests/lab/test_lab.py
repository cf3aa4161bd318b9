"""The lab servers, driven with aiosmtplib (one explicit step at a time) and raw sockets.

Every server runs inside the test's own event loop on 127.0.0.x, port 0. TLS is trusted only
through the lab CA's PEM, as a user of `smtpprobe lab` would with --cafile.
"""

from __future__ import annotations

import asyncio
import re
import ssl
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest

from smtpprobe.lab.smtp import (
    SCENARIOS,
    LabServer,
    RawConnection,
    Scenario,
    ServerSpec,
    describe,
    run_forever,
    serve,
    serve_many,
)
from smtpprobe.lab.tls import LabCA, LabCert

# Any warning (a ResourceWarning from an unclosed transport, an exception that nobody
# retrieved) fails the test that caused it.
pytestmark = pytest.mark.filterwarnings("error")

USERS = {"alice@lab.test": "correct horse", "bob": "battery staple"}
ENHANCED = re.compile(r"^[245]\.\d{1,3}\.\d{1,3} ")


# `cert` (conftest) is valid for mx.lab.test and 127.0.0.1-3; the clients here are aiosmtplib
# and asyncio, so they trust the lab CA through an ssl.SSLContext rather than conftest's
# TrustStore (`trust`, which is what smtpprobe itself takes).
@pytest.fixture
def ssl_trust(ca: LabCA) -> ssl.SSLContext:
    return ssl.create_default_context(cadata=ca.pem)


async def connect(
    server: LabServer, *, trust: ssl.SSLContext | None = None, implicit: bool = False
) -> aiosmtplib.SMTP:
    client = aiosmtplib.SMTP(
        hostname=server.host, port=server.port, start_tls=False, use_tls=implicit,
        tls_context=trust, local_hostname="client.lab.test", timeout=10,
    )
    await client.connect()
    return client


async def reply(call: Awaitable[Any]) -> tuple[int, str]:
    """(code, message) of a command, whether aiosmtplib returned it or raised it."""
    try:
        response = await call
    except aiosmtplib.SMTPResponseException as exc:
        return exc.code, exc.message
    return response.code, response.message


def enhanced(message: str) -> str:
    match = ENHANCED.match(message)
    assert match, f"no enhanced status code in {message!r}"
    return match.group(0).strip()


def verbs(commands: list[str]) -> list[str]:
    return [c.split(" ", 1)[0] for c in commands]


@pytest.fixture
async def mailbox(lab_server: Callable[..., Awaitable[LabServer]]) -> LabServer:
    return await lab_server("mailbox")


# -- the certificate authority -------------------------------------------------------------


async def handshake(cert: LabCert, client: ssl.SSLContext, name: str) -> None:
    """A real TLS handshake on loopback with `cert` on the server side."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=cert.server_context())
    port = server.sockets[0].getsockname()[1]
    try:
        _, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=client, server_hostname=name
        )
        writer.close()
        try:
            await writer.wait_closed()
        except (ConnectionError, ssl.SSLError):
            pass
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize("name", ["mx.lab.test", "127.0.0.1", "MX.Lab.Test"])
async def test_issued_certificate_verifies_for_its_names(
    cert: LabCert, ssl_trust: ssl.SSLContext, name: str
) -> None:
    await handshake(cert, ssl_trust, name)


async def test_wrong_name_fails_verification(cert: LabCert, ssl_trust: ssl.SSLContext) -> None:
    with pytest.raises(ssl.SSLCertVerificationError) as info:
        await handshake(cert, ssl_trust, "other.lab.test")
    assert info.value.verify_code == 62  # X509_V_ERR_HOSTNAME_MISMATCH


async def test_expired_certificate_fails_verification(ca: LabCA,
                                                      ssl_trust: ssl.SSLContext) -> None:
    expired = ca.issue("mx.lab.test", expired=True)
    assert expired.not_after < expired.not_before.replace(year=expired.not_before.year + 1)
    with pytest.raises(ssl.SSLCertVerificationError) as info:
        await handshake(expired, ssl_trust, "mx.lab.test")
    assert info.value.verify_code == 10  # X509_V_ERR_CERT_HAS_EXPIRED


async def test_self_signed_certificate_fails_verification(
    ca: LabCA, ssl_trust: ssl.SSLContext
) -> None:
    alone = ca.issue("mx.lab.test", self_signed=True)
    assert alone.issuer is None
    assert alone.cert.issuer == alone.cert.subject
    with pytest.raises(ssl.SSLCertVerificationError) as info:
        await handshake(alone, ssl_trust, "mx.lab.test")
    assert info.value.verify_code == 18  # X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT


async def test_another_ca_is_not_trusted(cert: LabCert, other_ca: LabCA) -> None:
    stranger = ssl.create_default_context(cadata=other_ca.pem)
    with pytest.raises(ssl.SSLCertVerificationError):
        await handshake(cert, stranger, "mx.lab.test")


def test_files_written_for_a_real_mta(ca: LabCA, cert: LabCert, tmp_path: Path) -> None:
    cert_path, key_path = cert.write(tmp_path, stem="mx")
    cafile = ca.write_pem(tmp_path / "ca.pem")
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert "PRIVATE KEY" not in cert_path.read_text()
    context = ssl.create_default_context(cafile=str(cafile))
    assert context.cert_store_stats()["x509_ca"] == 1
    server_side = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_side.load_cert_chain(cert_path, key_path)  # the pair belongs together


def test_issue_needs_a_name(ca: LabCA) -> None:
    with pytest.raises(ValueError):
        ca.issue()
    with pytest.raises(ValueError):
        ca.issue("two words")


# -- the catalogue ---------------------------------------------------------------------------


def test_describe_lists_every_named_scenario() -> None:
    listed = dict(describe())
    assert list(listed) == list(SCENARIOS)
    for name in ("mailbox", "catch_all", "mailbox_full", "relay_denied", "greylist",
                 "starttls_required", "auth_required", "auth_failing", "app_password",
                 "submission", "open_relay", "blocklisted", "banner_reject", "slow_banner",
                 "disconnect_mid", "rate_limited", "helo_reject", "no_esmtp", "no_starttls"):
        assert listed[name].strip(), name


async def test_serve_refuses_bad_settings(cert: LabCert) -> None:
    with pytest.raises(ValueError, match="loopback"):
        await serve("mailbox", host="192.0.2.1")
    with pytest.raises(ValueError, match="loopback"):
        await serve("mailbox", host="localhost")
    with pytest.raises(ValueError, match="certificate"):
        await serve("submission")
    with pytest.raises(ValueError, match="certificate"):
        await serve("mailbox", implicit_tls=True)
    with pytest.raises(ValueError, match="unknown lab scenario 'nope'"):
        await serve("nope")


# -- MX scenarios ----------------------------------------------------------------------------


async def test_mailbox_greets_and_advertises_like_postfix(mailbox: LabServer) -> None:
    client = await connect(mailbox)
    assert client.last_ehlo_response is None
    code, message = await reply(client.ehlo())
    assert code == 250
    lines = message.splitlines()
    assert lines[0] == "mx.lab.test"
    assert set(lines[1:]) == {"PIPELINING", "SIZE 10240000", "ENHANCEDSTATUSCODES", "8BITMIME"}
    assert not client.supports_extension("starttls")
    assert not client.supports_extension("auth")
    await client.quit()


async def test_mailbox_knows_its_users(mailbox: LabServer) -> None:
    client = await connect(mailbox)
    await client.ehlo()
    assert await reply(client.mail("")) == (250, "2.1.0 Ok")  # the null sender, as probes use
    assert await reply(client.rcpt("alice@lab.test")) == (250, "2.1.5 Ok")
    assert await reply(client.rcpt("Postmaster@other.test")) == (250, "2.1.5 Ok")
    code, message = await reply(client.rcpt("zed@lab.test"))
    assert code == 550
    assert enhanced(message) == "5.1.1"
    assert message == (
        "5.1.1 <zed@lab.test>: Recipient address rejected: User unknown in virtual alias table"
    )
    await client.quit()
    assert mailbox.connections == 1
    assert mailbox.commands == [
        "EHLO client.lab.test", "MAIL FROM:<>", "RCPT TO:<alice@lab.test>",
        "RCPT TO:<Postmaster@other.test>", "RCPT TO:<zed@lab.test>", "QUIT",
    ]
    assert mailbox.errors == []


async def test_mailbox_takes_its_local_parts_from_the_caller() -> None:
    async with await serve("mailbox", local_parts=["Carol"]) as server:
        client = await connect(server)
        await client.ehlo()
        await client.mail("probe@client.lab.test")
        assert (await reply(client.rcpt("carol@lab.test")))[0] == 250
        assert (await reply(client.rcpt("alice@lab.test")))[0] == 550
        await client.quit()


async def test_stock_replies_carry_enhanced_codes(mailbox: LabServer) -> None:
    client = await connect(mailbox)
    # execute_command: aiosmtplib's mail() would send EHLO on its own first.
    assert await reply(client.execute_command(b"MAIL", b"FROM:<a@client.lab.test>")) == (
        503, "5.5.1 Error: send HELO/EHLO first")
    await client.ehlo()
    assert await reply(client.rcpt("alice@lab.test")) == (503, "5.5.1 Error: need MAIL command")
    await client.mail("a@client.lab.test")
    assert await reply(client.mail("a@client.lab.test")) == (
        503, "5.5.1 Error: nested MAIL command")
    assert await reply(client.execute_command(b"DATA")) == (
        554, "5.5.1 Error: no valid recipients")
    assert await reply(client.vrfy("alice@lab.test")) == (
        502, "5.5.1 VRFY command is disabled")
    assert await reply(client.rset()) == (250, "2.0.0 Ok")
    assert await reply(client.noop()) == (250, "2.0.0 Ok")
    assert await reply(client.mail("a@client.lab.test", options=["SIZE=99999999"])) == (
        552, "5.3.4 Message size exceeds fixed limit")
    assert await reply(client.execute_command(b"XYZZY")) == (
        502, "5.5.2 Error: command not recognized")
    assert await reply(client.execute_command(b"STARTTLS")) == (
        502, "5.5.1 Error: command not implemented")
    assert await reply(client.execute_command(b"AUTH", b"PLAIN")) == (
        503, "5.5.1 Error: authentication not enabled")
    assert await reply(client.quit()) == (221, "2.0.0 Bye")
    assert "XYZZY" in mailbox.commands
    assert mailbox.errors == []


async def test_pipelined_commands_are_answered_in_order(mailbox: LabServer) -> None:
    reader, writer = await asyncio.open_connection(mailbox.host, mailbox.port)
    assert (await reader.readline()).startswith(b"220 mx.lab.test ")
    writer.write(b"EHLO client.lab.test\r\nMAIL FROM:<a@client.lab.test>\r\n"
                 b"RCPT TO:<alice@lab.test>\r\nRCPT TO:<nobody@lab.test>\r\n"
                 b"RCPT TO:<bob@lab.test>\r\nDATA\r\n")
    await writer.drain()
    replies = []
    while not (line := await reader.readline()).startswith(b"354"):
        replies.append(line.decode())
    writer.write(b"Subject: lab\r\n\r\n..a dot\r\n.\r\nQUIT\r\n")
    await writer.drain()
    replies += [line.decode() for line in (await reader.read()).splitlines(keepends=True)]
    writer.close()
    await writer.wait_closed()
    finals = [r for r in replies if r[3] == " "]
    assert [r[:3] for r in finals] == ["250", "250", "250", "550", "250", "250", "221"]
    for r in finals[1:]:
        assert ENHANCED.match(r[4:]), r
    assert finals[-2].startswith("250 2.0.0 Ok: queued as ")
    assert finals[-2].split()[-1] == mailbox.queued[0]
    assert verbs(mailbox.commands) == ["EHLO", "MAIL", "RCPT", "RCPT", "RCPT", "DATA", "QUIT"]


async def test_pipelining_can_be_left_out() -> None:
    async with await serve("mailbox", pipelining=False, size_limit=1000) as server:
        client = await connect(server)
        await client.ehlo()
        assert not client.supports_extension("pipelining")
        assert client.esmtp_extensions["size"] == "1000"
        await client.quit()


async def test_catch_all_accepts_any_local_part() -> None:
    async with await serve("catch_all") as server:
        client = await connect(server)
        await client.ehlo()
        await client.mail("probe@client.lab.test")
        assert await reply(client.rcpt("x7f3q9z2@lab.test")) == (250, "2.1.5 Ok")
        assert await reply(client.rcpt("alice@lab.test")) == (250, "2.1.5 Ok")
        await client.quit()


async def test_mailbox_full() -> None:
    async with await serve("mailbox_full") as server:
        client = await connect(server)
        await client.ehlo()
        await client.mail("probe@client.lab.test")
        code, message = await reply(client.rcpt("alice@lab.test"))
        assert code == 552
        assert enhanced(message) == "5.2.2"
        assert "<alice@lab.test>" in message
        assert "Mailbox full" in message and "quota exceeded" in message
        await client.quit()


async def test_relay_denied() -> None:
    async with await serve("relay_denied") as server:
        client = await connect(server)
        await client.ehlo()
        await client.mail("probe@client.lab.test")
        assert await reply(client.rcpt("someone@elsewhere.test")) == (
            554, "5.7.1 <someone@elsewhere.test>: Relay access denied")
        await client.quit()


async def test_blocklisted_names_the_client_address() -> None:
    async with await serve("blocklisted") as server:
        client = await connect(server)
        await client.ehlo()
        await client.mail("probe@client.lab.test")
        code, message = await reply(client.rcpt("alice@lab.test"))
        assert code == 554
        assert message == (
            "5.7.1 Service unavailable; Client host [127.0.0.1] blocked using "
            "zen.spamhaus.org; https://www.spamhaus.org/query/ip/127.0.0.1"
        )
        await client.quit()


async def test_open_relay_relays_for_anyone() -> None:
    async with await serve("open_relay") as server:
        client = await connect(server)
        await client.ehlo()
        assert not client.supports_extension("auth")
        await client.mail("spammer@client.lab.test")
        assert (await reply(client.rcpt("victim@foreign.example")))[0] == 250
        code, message = await reply(client.data(b"Subject: relay test\r\n\r\nbody\r\n"))
        assert code == 250 and message.startswith("2.0.0 Ok: queued as ")
        await client.quit()
        assert len(server.queued) == 1


async def test_greylist_defers_a_new_triple() -> None:
    async with await serve("greylist", greylist_delay=3600) as server:
        client = await connect(server)
        await client.ehlo()
        await client.mail("probe@client.lab.test")
        code, message = await reply(client.rcpt("alice@lab.test"))
        assert code == 450
        assert message == (
            "4.2.0 <alice@lab.test>: Recipient address rejected: Greylisted, see "
            "https://postgrey.lab.test/help/lab.test.html"
        )
        # Still too early for the same triple, and a new triple starts its own wait.
        assert (await reply(client.rcpt("alice@lab.test")))[0] == 450
        assert (await reply(client.rcpt("bob@lab.test")))[0] == 450
        await client.quit()


async def test_greylist_passes_after_the_delay() -> None:
    async with await serve("greylist", greylist_delay=0.2) as server:
        client = await connect(server)
        await client.ehlo()
        await client.mail("probe@client.lab.test")
        assert (await reply(client.rcpt("alice@lab.test")))[0] == 450
        assert (await reply(client.rcpt("zed@lab.test")))[0] == 450
        await client.quit()
        await asyncio.sleep(0.3)
        client = await connect(server)  # a retry, as a real MTA makes it: new connection
        await client.ehlo()
        await client.mail("probe@client.lab.test")
        assert await reply(client.rcpt("alice@lab.test")) == (250, "2.1.5 Ok")
        assert (await reply(client.rcpt("zed@lab.test")))[0] == 550  # then mailbox rules
        # Another sender is a new triple.
        await client.rset()
        await client.mail("other@client.lab.test")
        assert (await reply(client.rcpt("alice@lab.test")))[0] == 450
        await client.quit()
        assert server.connections == 2
        assert [verbs(s) for s in server.sessions] == [
            ["EHLO", "MAIL", "RCPT", "RCPT", "QUIT"],
            ["EHLO", "MAIL", "RCPT", "RCPT", "RSET", "MAIL", "RCPT", "QUIT"],
        ]


async def test_disconnect_mid_drops_the_line_at_rcpt() -> None:
    async with await serve("disconnect_mid") as server:
        client = await connect(server)
        await client.ehlo()
        assert await reply(client.mail("probe@client.lab.test")) == (250, "2.1.0 Ok")
        with pytest.raises(aiosmtplib.SMTPServerDisconnected):
            await client.rcpt("alice@lab.test")
        assert verbs(server.commands) == ["EHLO", "MAIL", "RCPT"]
        assert "DATA" not in verbs(server.commands)


async def test_helo_reject() -> None:
    async with await serve("helo_reject") as server:
        client = await connect(server)
        code, message = await reply(client.ehlo())
        assert code == 504
        assert message == (
            "5.5.2 <client.lab.test>: Helo command rejected: need fully-qualified hostname")
        assert (await reply(client.helo()))[0] == 504
        assert await reply(client.execute_command(b"MAIL", b"FROM:<probe@client.lab.test>")) == (
            503, "5.5.1 Error: send HELO/EHLO first")
        await client.quit()


async def test_no_esmtp_speaks_helo_only() -> None:
    async with await serve("no_esmtp") as server:
        client = await connect(server)
        assert await reply(client.ehlo()) == (502, "5.5.2 Error: command not recognized")
        assert await reply(client.helo()) == (250, "mx.lab.test")
        assert (await reply(client.mail("probe@client.lab.test")))[0] == 250
        assert (await reply(client.rcpt("alice@lab.test")))[0] == 250
        await client.quit()
        assert verbs(server.commands) == ["EHLO", "HELO", "MAIL", "RCPT", "QUIT"]


async def test_no_esmtp_banner_does_not_claim_esmtp() -> None:
    async with await serve("no_esmtp") as server:
        reader, writer = await asyncio.open_connection(server.host, server.port)
        banner = await reader.readline()
        assert banner.startswith(b"220 mx.lab.test ") and b"ESMTP" not in banner
        writer.close()
        await writer.wait_closed()


# -- raw-socket scenarios --------------------------------------------------------------------


async def test_banner_reject_waits_for_quit() -> None:
    async with await serve("banner_reject") as server:
        reader, writer = await asyncio.open_connection(server.host, server.port)
        assert await reader.readline() == b"554 5.7.1 <mx.lab.test>: No SMTP service here\r\n"
        writer.write(b"EHLO client.lab.test\r\n")
        assert (await reader.readline()).startswith(b"503 5.5.1 ")
        writer.write(b"QUIT\r\n")
        assert (await reader.readline()).startswith(b"221 2.0.0")
        assert await reader.read() == b""
        writer.close()
        await writer.wait_closed()
        assert server.commands == ["EHLO client.lab.test", "QUIT"]


async def test_banner_reject_through_aiosmtplib() -> None:
    async with await serve("banner_reject") as server:
        client = aiosmtplib.SMTP(hostname=server.host, port=server.port, timeout=10)
        with pytest.raises(aiosmtplib.SMTPConnectResponseError) as info:
            await client.connect()
        assert info.value.code == 554
        assert "No SMTP service here" in info.value.message


async def test_rate_limited_greets_with_421_and_hangs_up() -> None:
    async with await serve("rate_limited") as server:
        reader, writer = await asyncio.open_connection(server.host, server.port)
        assert await reader.readline() == (
            b"421 4.7.0 mx.lab.test Error: too many connections from 127.0.0.1\r\n")
        assert await reader.read() == b""
        writer.close()
        await writer.wait_closed()
        assert server.connections == 1


async def test_slow_banner_keeps_quiet_first() -> None:
    async with await serve("slow_banner") as server:
        assert server.banner_delay == 5.0
        reader, writer = await asyncio.open_connection(server.host, server.port)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(reader.readline(), 0.3)
        writer.close()
        await writer.wait_closed()


async def test_slow_banner_then_behaves_like_mailbox() -> None:
    async with await serve("slow_banner", banner_delay=0.05) as server:
        client = await connect(server)
        await client.ehlo()
        await client.mail("probe@client.lab.test")
        assert (await reply(client.rcpt("zed@lab.test")))[0] == 550
        await client.quit()


async def test_raw_scripts_are_a_base_for_other_servers() -> None:
    async def shout(conn: RawConnection) -> None:
        await conn.send("220-mx.lab.test first line", "220 mx.lab.test ready")
        while (line := await conn.read_command()) is not None:
            if line.upper() == "QUIT":
                await conn.send_bytes(b"221 bye\r\n")
                break
            await conn.send(f"250 {line.upper()}")
        conn.close()

    async with await serve(Scenario("shout", "answers in capitals", raw=shout)) as server:
        reader, writer = await asyncio.open_connection(server.host, server.port)
        await reader.readline()
        await reader.readline()
        writer.write(b"ehlo x\r\n" + b"A" * 10_000 + b"\r\nquit\r\n")
        assert await reader.readline() == b"250 EHLO X\r\n"
        assert (await reader.readline()).startswith(b"250 AAAA")
        assert await reader.readline() == b"221 bye\r\n"
        writer.close()
        await writer.wait_closed()
        assert server.commands[0] == "ehlo x"
        assert server.commands[-1] == "quit"
        assert server.errors == []


async def test_raw_scripts_can_switch_to_tls(cert: LabCert, ssl_trust: ssl.SSLContext) -> None:
    async def upgrade(conn: RawConnection) -> None:
        await conn.send("220 mx.lab.test ESMTP")
        while (line := await conn.read_command()) is not None:
            verb = line.split(" ", 1)[0].upper()
            if verb == "EHLO":
                await conn.send("250-mx.lab.test", "250 STARTTLS")
            elif verb == "STARTTLS":
                await conn.send("220 2.0.0 Ready to start TLS")
                await conn.start_tls()
            else:
                await conn.send(f"250 2.0.0 {verb} seen")
        conn.close()

    async with await serve(Scenario("upgrade", "TLS by hand", raw=upgrade), cert=cert) as server:
        client = await connect(server, trust=ssl_trust)
        await client.ehlo()
        await client.starttls(server_hostname="mx.lab.test")
        assert client.get_transport_info("sslcontext") is not None
        assert await reply(client.noop()) == (250, "2.0.0 NOOP seen")
        client.close()
        assert verbs(server.commands) == ["EHLO", "STARTTLS", "EHLO", "NOOP"]


async def test_too_many_errors_end_the_conversation(mailbox: LabServer) -> None:
    reader, writer = await asyncio.open_connection(mailbox.host, mailbox.port)
    await reader.readline()
    writer.write(b"BOGUS\r\n" * 25)
    replies = (await reader.read()).decode().splitlines()
    writer.close()
    await writer.wait_closed()
    assert replies[:19] == ["502 5.5.2 Error: command not recognized"] * 19
    assert replies[19] == "421 4.7.0 mx.lab.test Error: too many errors"
    assert len(replies) == 20


# -- TLS -------------------------------------------------------------------------------------


async def test_starttls_offered_with_a_cert_and_not_after_tls(
    cert: LabCert, ssl_trust: ssl.SSLContext
) -> None:
    async with await serve("mailbox", cert=cert) as server:
        client = await connect(server, trust=ssl_trust)
        await client.ehlo()
        assert client.supports_extension("starttls")
        code, message = await reply(client.starttls(server_hostname="mx.lab.test"))
        assert (code, message) == (220, "2.0.0 Ready to start TLS")
        await client.ehlo()  # RFC 3207 4.2: the client forgets what it learned
        assert not client.supports_extension("starttls")
        assert await reply(client.execute_command(b"STARTTLS")) == (
            554, "5.5.1 Error: TLS already active")
        await client.mail("probe@client.lab.test")
        assert (await reply(client.rcpt("alice@lab.test")))[0] == 250
        await client.quit()
        assert server.errors == []


async def test_no_starttls_even_with_a_cert(cert: LabCert) -> None:
    async with await serve("no_starttls", cert=cert) as server:
        client = await connect(server)
        await client.ehlo()
        assert not client.supports_extension("starttls")
        assert await reply(client.execute_command(b"STARTTLS")) == (
            502, "5.5.1 Error: command not implemented")
        await client.quit()


async def test_starttls_required(cert: LabCert, ssl_trust: ssl.SSLContext) -> None:
    async with await serve("starttls_required", cert=cert) as server:
        client = await connect(server, trust=ssl_trust)
        await client.ehlo()
        assert await reply(client.mail("probe@client.lab.test")) == (
            530, "5.7.0 Must issue a STARTTLS command first")
        assert (await reply(client.rcpt("alice@lab.test")))[0] == 530
        assert (await reply(client.noop()))[0] == 250
        await client.starttls()
        await client.ehlo()
        assert (await reply(client.mail("probe@client.lab.test")))[0] == 250
        assert (await reply(client.rcpt("zed@lab.test")))[0] == 550
        await client.quit()


async def test_a_client_that_rejects_the_cert_is_no_lab_error(cert: LabCert,
                                                            other_ca: LabCA) -> None:
    async with await serve("mailbox", cert=cert) as server:
        stranger = ssl.create_default_context(cadata=other_ca.pem)
        client = await connect(server, trust=stranger)
        await client.ehlo()
        with pytest.raises(ssl.SSLCertVerificationError):
            await client.starttls()
        client.close()
        # The server lives on for the next client.
        client = await connect(server)
        assert (await reply(client.ehlo()))[0] == 250
        await client.quit()
        assert server.connections == 2
        assert server.errors == []


# -- AUTH ------------------------------------------------------------------------------------


async def test_auth_required(ca: LabCA) -> None:
    async with await serve("auth_required", users=USERS) as server:
        client = await connect(server)
        await client.ehlo()
        assert client.supports_extension("auth")
        assert set(client.server_auth_methods) == {"plain", "login"}
        assert await reply(client.mail("bob@client.lab.test")) == (
            530, "5.7.0 Authentication required")
        assert await reply(client.auth_plain("bob", "wrong")) == (
            535, "5.7.8 Error: authentication failed")
        assert await reply(client.auth_login("bob", "battery staple")) == (
            235, "2.7.0 Authentication successful")
        assert (await reply(client.mail("bob@client.lab.test")))[0] == 250
        assert (await reply(client.rcpt("anyone@elsewhere.example")))[0] == 250
        await client.quit()
        text = "\n".join(server.commands)
        assert "wrong" not in text and "battery" not in text
        assert server.commands[2] == "AUTH PLAIN ****"
        assert server.commands[3] == "AUTH LOGIN ****"


async def test_auth_failing_rejects_even_good_logins() -> None:
    async with await serve("auth_failing", users=USERS) as server:
        client = await connect(server)
        await client.ehlo()
        assert await reply(client.auth_plain("bob", "battery staple")) == (
            535, "5.7.8 Error: authentication failed")
        assert await reply(client.auth_login("bob", "battery staple")) == (
            535, "5.7.8 Error: authentication failed")
        assert (await reply(client.mail("bob@client.lab.test")))[0] == 530
        await client.quit()


async def test_app_password_reply_has_two_lines() -> None:
    async with await serve("app_password", users=USERS) as server:
        reader, writer = await asyncio.open_connection(server.host, server.port)
        await reader.readline()
        writer.write(b"EHLO client.lab.test\r\n")
        while not (await reader.readline()).startswith(b"250 "):
            pass
        writer.write(b"AUTH PLAIN AGJvYgBiYXR0ZXJ5IHN0YXBsZQ==\r\n")
        first, second = await reader.readline(), await reader.readline()
        assert first == b"534-5.7.9 Application-specific password required. Learn more at\r\n"
        assert second.startswith(b"534 5.7.9 ")
        writer.write(b"QUIT\r\n")
        await reader.read()
        writer.close()
        await writer.wait_closed()

        client = await connect(server)
        await client.ehlo()
        code, message = await reply(client.auth_login("bob", "battery staple"))
        assert code == 534
        assert enhanced(message) == "5.7.9"
        assert "Application-specific password required" in message
        await client.quit()


async def test_submission_over_starttls(cert: LabCert, ssl_trust: ssl.SSLContext) -> None:
    async with await serve("submission", cert=cert, users=USERS) as server:
        client = await connect(server, trust=ssl_trust)
        await client.ehlo()
        assert client.supports_extension("starttls")
        assert not client.supports_extension("auth")  # RFC 4954 4: not in the clear
        assert await reply(client.auth_plain("alice@lab.test", "correct horse")) == (
            530, "5.7.0 Must issue a STARTTLS command first")
        assert (await reply(client.mail("alice@lab.test")))[0] == 530
        await client.starttls(server_hostname="mx.lab.test")
        await client.ehlo()
        assert set(client.server_auth_methods) == {"plain", "login"}
        assert (await reply(client.mail("alice@lab.test"))) == (
            530, "5.7.0 Authentication required")
        assert (await reply(client.auth_plain("alice@lab.test", "wrong")))[0] == 535
        assert (await reply(client.auth_plain("alice@lab.test", "correct horse")))[0] == 235
        assert await reply(client.mail("bob@lab.test")) == (
            553,
            "5.7.1 <bob@lab.test>: Sender address rejected: not owned by user alice@lab.test",
        )
        assert await reply(client.mail("Alice@Lab.Test")) == (250, "2.1.0 Ok")
        assert (await reply(client.rcpt("friend@elsewhere.example")))[0] == 250
        code, message = await reply(client.data(b"Subject: hello\r\n\r\nhi\r\n"))
        assert code == 250
        assert re.fullmatch(r"2\.0\.0 Ok: queued as [0-9A-F]{10}", message)
        await client.quit()
        assert "correct horse" not in "\n".join(server.commands)
        assert verbs(server.commands) == [
            "EHLO", "AUTH", "MAIL", "STARTTLS", "EHLO", "MAIL", "AUTH", "AUTH", "MAIL",
            "MAIL", "RCPT", "DATA", "QUIT",
        ]


async def test_submission_bare_login_owns_its_local_part(
    cert: LabCert, ssl_trust: ssl.SSLContext
) -> None:
    async with await serve("submission", cert=cert, users=USERS) as server:
        client = await connect(server, trust=ssl_trust)
        await client.ehlo()
        await client.starttls()
        await client.ehlo()
        await client.auth_login("bob", "battery staple")
        assert (await reply(client.mail("alice@lab.test")))[0] == 553
        assert (await reply(client.mail("bob@any.test")))[0] == 250
        await client.quit()


async def test_submission_with_implicit_tls(cert: LabCert, ssl_trust: ssl.SSLContext) -> None:
    async with await serve("submission", cert=cert, users=USERS, implicit_tls=True) as server:
        client = await connect(server, trust=ssl_trust, implicit=True)
        await client.ehlo()
        assert not client.supports_extension("starttls")
        assert client.supports_extension("auth")
        assert (await reply(client.auth_plain("alice@lab.test", "correct horse")))[0] == 235
        assert (await reply(client.mail("alice@lab.test")))[0] == 250
        await client.quit()
        assert server.connections == 1


# -- several servers, closing, the CLI loop -------------------------------------------------


async def test_several_hosts_share_one_port(cert: LabCert) -> None:
    specs = [
        ServerSpec("mailbox", host="127.0.0.2", hostname="mx1.lab.test"),
        ServerSpec("relay_denied", host="127.0.0.3", hostname="mx2.lab.test"),
        ServerSpec("no_starttls", host="127.0.0.1", hostname="mx3.lab.test", cert=cert),
    ]
    servers = await serve_many(specs, same_port=True)
    try:
        assert len({s.port for s in servers}) == 1
        results = []
        for server in servers:
            client = await connect(server)
            _, message = await reply(client.ehlo())
            assert message.splitlines()[0] == server.hostname
            await client.mail("probe@client.lab.test")
            results.append((await reply(client.rcpt("alice@lab.test")))[0])
            await client.quit()
        assert results == [250, 554, 250]
        assert [s.connections for s in servers] == [1, 1, 1]
    finally:
        for server in servers:
            await server.close()


async def test_serve_many_cleans_up_when_one_fails() -> None:
    async with await serve("mailbox", host="127.0.0.3") as taken:
        specs = [
            ServerSpec("mailbox", host="127.0.0.2", port=taken.port),
            ServerSpec("mailbox", host="127.0.0.3", port=taken.port),
        ]
        with pytest.raises(OSError):
            await serve_many(specs, same_port=True)
        # The first server was closed again: its port is free on 127.0.0.2.
        async with await serve("mailbox", host="127.0.0.2", port=taken.port):
            pass


async def test_close_ends_open_conversations(cert: LabCert, ssl_trust: ssl.SSLContext) -> None:
    server = await serve("mailbox", cert=cert)
    plain = await connect(server)
    await plain.ehlo()
    secure = await connect(server, trust=ssl_trust)
    await secure.ehlo()
    await secure.starttls()
    await secure.ehlo()
    reader, writer = await asyncio.open_connection(server.host, server.port)
    await reader.readline()
    await server.close()
    assert asyncio.all_tasks() == {asyncio.current_task()}
    assert await reader.read() == b""
    with pytest.raises(aiosmtplib.SMTPServerDisconnected):
        await plain.noop()
    with pytest.raises(aiosmtplib.SMTPServerDisconnected):
        await secure.noop()
    writer.close()
    await writer.wait_closed()
    with pytest.raises(OSError):
        await asyncio.open_connection(server.host, server.port)
    assert server.connections == 3


async def test_close_while_the_banner_is_pending() -> None:
    server = await serve("slow_banner")
    reader, writer = await asyncio.open_connection(server.host, server.port)
    await asyncio.sleep(0.05)
    await server.close()
    assert asyncio.all_tasks() == {asyncio.current_task()}
    assert await reader.read() == b""
    writer.close()
    await writer.wait_closed()


async def test_run_forever_serves_until_cancelled(tmp_path: Path) -> None:
    lines: list[str] = []
    task = asyncio.create_task(
        run_forever(["mailbox", "submission"], "127.0.0.1", 0, cert_dir=tmp_path,
                    users={"alice@lab.test": "never printed"}, write=lines.append)
    )
    while len(lines) < 4:
        await asyncio.sleep(0.01)
        assert not task.done()
    assert lines[0].startswith(f"lab CA certificate: {tmp_path / 'lab-ca.pem'}")
    assert lines[1] == "logins: alice@lab.test"
    assert "never printed" not in "\n".join(lines)
    ports = {}
    for line in lines[2:]:
        name, where = line.split()[:2]
        ports[name] = int(where.rsplit(":", 1)[1])
    assert set(ports) == {"mailbox", "submission"}
    trust = ssl.create_default_context(cafile=str(tmp_path / "lab-ca.pem"))
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=ports["submission"], start_tls=False,
                             tls_context=trust, timeout=10)
    await client.connect()
    await client.ehlo()
    await client.starttls(server_hostname="mx.lab.test")  # verified against the written CA
    await client.ehlo()
    assert (await reply(client.auth_plain("alice@lab.test", "never printed")))[0] == 235
    await client.quit()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", ports["mailbox"])
