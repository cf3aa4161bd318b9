"""The real Postfix + postgrey + dnsmasq installation behaves as tests/realmta documents.

Uses dnspython and aiosmtplib directly, one explicit SMTP step at a time, against the
listeners started by `tests/realmta/realmta.sh start`. Expected values come from
tests/realmta/topology.json, which other tests load too; these tests keep that file honest.

Skipped unless SMTPPROBE_REALMTA is set; when it is set, a missing or broken installation
fails.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import socket
import ssl
import string
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import aiosmtplib
import dns.asyncquery
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.reversename
import pytest

TOPOLOGY_FILE = Path(__file__).parent / "topology.json"
TOPOLOGY: dict[str, Any] = json.loads(TOPOLOGY_FILE.read_text(encoding="utf-8"))
ENV = TOPOLOGY["env"]
LISTENERS: dict[str, dict[str, Any]] = TOPOLOGY["listeners"]
REPLIES: dict[str, dict[str, Any]] = TOPOLOGY["replies"]
DOMAINS: dict[str, dict[str, Any]] = TOPOLOGY["domains"]

pytestmark = [
    pytest.mark.realmta,
    pytest.mark.skipif(
        not os.environ.get(ENV["enabled"]),
        reason=(
            f"{ENV['enabled']} is not set: run tests/realmta/realmta.sh start and "
            'eval "$(tests/realmta/realmta.sh env)" to test the real Postfix set-up'
        ),
    ),
]

CLIENT_NAME = "probe.smtpprobe.test"
TIMEOUT = 10.0


@dataclass(frozen=True)
class RealMta:
    resolver: str
    ca_file: Path
    user: str
    password_file: Path

    def password(self) -> str:
        return self.password_file.read_text(encoding="utf-8").strip()

    def tls_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))


@pytest.fixture(scope="module")
def realmta() -> RealMta:
    """The installation's coordinates; a missing piece fails (the variable is set)."""
    missing = [ENV[key] for key in ("resolver", "ca_file", "user", "password_file")
               if not os.environ.get(ENV[key])]
    assert not missing, f"set {', '.join(missing)} (see: tests/realmta/realmta.sh env)"
    mta = RealMta(
        resolver=os.environ[ENV["resolver"]],
        ca_file=Path(os.environ[ENV["ca_file"]]),
        user=os.environ[ENV["user"]],
        password_file=Path(os.environ[ENV["password_file"]]),
    )
    assert mta.ca_file.is_file(), f"no CA file at {mta.ca_file}: was realmta.sh start run?"
    assert mta.password_file.is_file(), f"no password file at {mta.password_file}"
    assert mta.password_file.stat().st_mode & 0o077 == 0, "password file readable by others"
    assert mta.password(), "password file is empty"
    assert mta.resolver == TOPOLOGY["resolver"]["address"]
    assert mta.user == TOPOLOGY["submission_account"]["user"]
    # Fail fast (and once per module) when nothing listens, instead of a DNS timeout per test.
    for address, port in [
        (mta.resolver, TOPOLOGY["resolver"]["port"]),
        (LISTENERS["mx1"]["address"], LISTENERS["mx1"]["port"]),
    ]:
        try:
            socket.create_connection((address, port), timeout=3).close()
        except OSError as exc:
            pytest.fail(f"nothing answers on {address}:{port} ({exc}): run realmta.sh start")
    return mta


# ---------------------------------------------------------------------------- DNS


async def query(
    mta: RealMta, name: str, rdtype: str, *, tcp: bool = False
) -> dns.message.Message:
    request = dns.message.make_query(name, rdtype)
    # A stub query: dnsmasq is authoritative and must not be asked to recurse anywhere.
    request.flags &= ~dns.flags.RD
    port = TOPOLOGY["resolver"]["port"]
    if tcp:
        return await dns.asyncquery.tcp(request, mta.resolver, timeout=3, port=port)
    return await dns.asyncquery.udp(request, mta.resolver, timeout=3, port=port)


def answer_texts(response: dns.message.Message, name: str, rdtype: str) -> set[str]:
    rrset = response.get_rrset(
        response.answer, dns.name.from_text(name), dns.rdataclass.IN,
        dns.rdatatype.from_text(rdtype),
    )
    return set() if rrset is None else {rdata.to_text() for rdata in rrset}


@pytest.mark.parametrize("domain", sorted(DOMAINS))
async def test_mx_records(realmta: RealMta, domain: str) -> None:
    response = await query(realmta, domain, "MX")
    assert response.rcode() == dns.rcode.NOERROR
    assert response.flags & dns.flags.AA, "dnsmasq must answer authoritatively for .test"
    expected = {
        f"{mx['preference']} {dns.name.from_text(mx['exchange']).to_text()}"
        for mx in DOMAINS[domain]["mx"]
    }
    assert answer_texts(response, domain, "MX") == expected
    if not expected:
        # NODATA (RFC 2308): the name exists, there is just no MX; the SOA says so.
        assert response.authority and response.authority[0].rdtype == dns.rdatatype.SOA


async def test_null_mx_wire_bytes(realmta: RealMta) -> None:
    response = await query(realmta, "nullmx.test", "MX")
    [rdata] = list(response.answer[0])
    # RFC 7505 3.1: preference 0 and the root name, i.e. the bytes 00 00 00.
    assert rdata.to_wire() == bytes.fromhex(DOMAINS["nullmx.test"]["mx_rdata_hex"])


@pytest.mark.parametrize(
    "name",
    sorted([*TOPOLOGY["hosts"], *(d for d, v in DOMAINS.items() if v.get("a"))]),
)
async def test_address_records(realmta: RealMta, name: str) -> None:
    expected = TOPOLOGY["hosts"].get(name) or DOMAINS[name]
    response = await query(realmta, name, "A")
    assert response.rcode() == dns.rcode.NOERROR
    if "cname" in expected:
        assert answer_texts(response, name, "CNAME") == {expected["cname"] + "."}
        assert answer_texts(response, expected["cname"], "A") == set(expected["a"])
    else:
        assert answer_texts(response, name, "A") == set(expected["a"])
    # IPv4 only: no AAAA anywhere, so nothing can try ::1 or a global v6 address.
    v6 = await query(realmta, name, "AAAA")
    assert v6.rcode() == dns.rcode.NOERROR
    assert not any(rrset.rdtype == dns.rdatatype.AAAA for rrset in v6.answer)


@pytest.mark.parametrize("address", sorted(TOPOLOGY["ptr"]))
async def test_reverse_records(realmta: RealMta, address: str) -> None:
    name = dns.reversename.from_address(address).to_text()
    response = await query(realmta, name, "PTR")
    assert answer_texts(response, name, "PTR") == {TOPOLOGY["ptr"][address] + "."}


@pytest.mark.parametrize("name", TOPOLOGY["nxdomain"])
async def test_undefined_names_are_nxdomain(realmta: RealMta, name: str) -> None:
    response = await query(realmta, name, "A")
    assert response.rcode() == dns.rcode.NXDOMAIN
    assert response.flags & dns.flags.AA


@pytest.mark.parametrize("name", TOPOLOGY["refused"])
async def test_names_outside_the_zone_are_refused(realmta: RealMta, name: str) -> None:
    # REFUSED proves nothing was forwarded: dnsmasq has no upstream to ask.
    response = await query(realmta, name, "A")
    assert response.rcode() == dns.rcode.REFUSED
    assert not response.answer


async def test_dns_over_tcp(realmta: RealMta) -> None:
    response = await query(realmta, "accept.test", "MX", tcp=True)
    assert answer_texts(response, "accept.test", "MX") == {"10 mx1.accept.test."}


async def test_dnsbl_zone(realmta: RealMta) -> None:
    zone = TOPOLOGY["dnsbl"]["zone"]
    for address, listing in TOPOLOGY["dnsbl"]["listed"].items():
        name = ".".join(reversed(address.split("."))) + "." + zone
        assert answer_texts(await query(realmta, name, "A"), name, "A") == {listing["a"]}
        assert answer_texts(await query(realmta, name, "TXT"), name, "TXT") == {
            f'"{listing["txt"]}"'
        }


# ---------------------------------------------------------------------------- SMTP


@dataclass(frozen=True)
class Expect:
    code: int
    message: str

    @classmethod
    def named(cls, name: str) -> Expect:
        reply = REPLIES[name]
        return cls(reply["code"], f"{reply['enhanced']} {reply['text']}")


def reply_of(response: aiosmtplib.SMTPResponse) -> Expect:
    return Expect(response.code, response.message)


class OpenListener(Protocol):
    async def __call__(
        self, name: str, *, source_address: tuple[str, int] | None = None
    ) -> tuple[aiosmtplib.SMTP, Expect]: ...


@pytest.fixture
async def smtp_to() -> AsyncIterator[OpenListener]:
    """Open plain connections (start_tls=False: every step is explicit); closed at the end."""
    opened: list[aiosmtplib.SMTP] = []

    async def open_listener(
        name: str, *, source_address: tuple[str, int] | None = None
    ) -> tuple[aiosmtplib.SMTP, Expect]:
        listener = LISTENERS[name]
        client = aiosmtplib.SMTP(
            hostname=listener["address"], port=listener["port"], start_tls=False,
            local_hostname=CLIENT_NAME, timeout=TIMEOUT, source_address=source_address,
        )
        banner = await client.connect()
        opened.append(client)
        return client, reply_of(banner)

    yield open_listener
    for client in opened:
        if client.is_connected:
            try:
                await client.quit()
            except aiosmtplib.SMTPException:
                client.close()


async def command(client: aiosmtplib.SMTP, line: str) -> Expect:
    verb, _, rest = line.partition(" ")
    args = [verb.encode()] + ([rest.encode()] if rest else [])
    return reply_of(await client.execute_command(*args))


def banner_ok(banner: Expect, listener: str) -> None:
    assert banner.code == 220
    assert banner.message.startswith(LISTENERS[listener]["hostname"] + " ESMTP")


async def test_mx1_banner_and_capabilities(realmta: RealMta, smtp_to: OpenListener) -> None:
    client, banner = await smtp_to("mx1")
    banner_ok(banner, "mx1")
    ehlo = await client.ehlo()
    assert ehlo.code == 250
    assert client.supports_extension("starttls")
    assert client.supports_extension("pipelining")
    assert not client.supports_extension("auth"), "port 25 must not offer AUTH"


async def test_mx1_requires_helo(realmta: RealMta, smtp_to: OpenListener) -> None:
    client, _ = await smtp_to("mx1")
    reply = await command(client, "MAIL FROM:<probe@sender.test>")
    assert reply == Expect(503, "5.5.1 Error: send HELO/EHLO first")


@pytest.mark.parametrize("domain", [d for d, v in DOMAINS.items() if v["served_by"] == "mx1"])
async def test_mx1_accepts_every_mailbox(
    realmta: RealMta, smtp_to: OpenListener, domain: str
) -> None:
    client, _ = await smtp_to("mx1")
    await client.ehlo()
    assert await command(client, "MAIL FROM:<probe@sender.test>") == Expect(250, "2.1.0 Ok")
    for mailbox in DOMAINS[domain]["mailboxes"]:
        reply = await command(client, f"RCPT TO:<{mailbox}@{domain}>")
        assert reply == Expect.named("accepted_rcpt"), f"{mailbox}@{domain}"


@pytest.mark.parametrize(
    "name", ["unknown_user", "mailbox_full", "mailbox_disabled", "user_moved", "relay_denied"]
)
async def test_mx1_recipient_refusals(realmta: RealMta, smtp_to: OpenListener, name: str) -> None:
    expected = REPLIES[name]
    client, _ = await smtp_to(expected["listener"])
    await client.ehlo()
    assert (await command(client, f"MAIL FROM:<{expected['mail_from']}>")).code == 250
    assert await command(client, f"RCPT TO:<{expected['rcpt']}>") == Expect.named(name)
    # A refused recipient ends nothing: the transaction still takes a good one.
    assert await command(client, "RCPT TO:<bob@accept.test>") == Expect.named("accepted_rcpt")


async def test_mx1_serves_only_its_domains(realmta: RealMta, smtp_to: OpenListener) -> None:
    client, _ = await smtp_to("mx1")
    await client.ehlo()
    await command(client, "MAIL FROM:<probe@sender.test>")
    for domain, spec in DOMAINS.items():
        if spec["served_by"] not in (None, "mx1"):
            reply = await command(client, f"RCPT TO:<alice@{domain}>")
            assert reply == Expect(554, f"5.7.1 <alice@{domain}>: Relay access denied")


async def test_mx1_starttls_certificate(realmta: RealMta, smtp_to: OpenListener) -> None:
    client, _ = await smtp_to("mx1")
    await client.ehlo()
    upgraded = await client.starttls(
        server_hostname="mx1.accept.test", tls_context=realmta.tls_context()
    )
    assert upgraded.code == 220
    cert = client.get_transport_info("peercert")
    names = {value for kind, value in cert["subjectAltName"] if kind == "DNS"}
    assert names == set(LISTENERS["mx1"]["certificate_names"])
    # RFC 3207 4.2: the client must forget what it learnt before TLS and ask again.
    await client.ehlo()
    assert not client.supports_extension("starttls")
    assert not client.supports_extension("auth"), "port 25 must not offer AUTH even with TLS"
    assert await command(client, "MAIL FROM:<probe@sender.test>") == Expect(250, "2.1.0 Ok")
    reply = await command(client, "RCPT TO:<alice@accept.test>")
    assert reply == Expect.named("accepted_rcpt")


async def test_mx1_certificate_is_checked_for_the_name(
    realmta: RealMta, smtp_to: OpenListener
) -> None:
    client, _ = await smtp_to("mx1")
    await client.ehlo()
    # The chain is fine; only the name is wrong. The check must still fail.
    with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
        await client.starttls(
            server_hostname="mx-grey.greylist.test", tls_context=realmta.tls_context()
        )


async def test_submission_refuses_auth_and_mail_before_tls(
    realmta: RealMta, smtp_to: OpenListener
) -> None:
    client, banner = await smtp_to("submission")
    banner_ok(banner, "submission")
    await client.ehlo()
    assert client.supports_extension("starttls")
    assert not client.supports_extension("auth"), "AUTH must wait for TLS"
    # smtpd_tls_security_level=encrypt: every mail command waits for STARTTLS, AUTH too.
    assert await command(client, "AUTH PLAIN") == Expect.named("starttls_required")
    expected = REPLIES["starttls_required"]
    reply = await command(client, f"MAIL FROM:<{expected['mail_from']}>")
    assert reply == Expect.named("starttls_required")


async def submission_after_starttls(
    realmta: RealMta, smtp_to: OpenListener
) -> aiosmtplib.SMTP:
    client, _ = await smtp_to("submission")
    await client.ehlo()
    await client.starttls(server_hostname="smtp.accept.test", tls_context=realmta.tls_context())
    await client.ehlo()
    return client


async def test_submission_auth_plain_and_sender_ownership(
    realmta: RealMta, smtp_to: OpenListener
) -> None:
    client = await submission_after_starttls(realmta, smtp_to)
    advertised = client.esmtp_extensions["auth"].upper().split()
    assert sorted(advertised) == sorted(LISTENERS["submission"]["auth"])
    reply = reply_of(await client.auth_plain(realmta.user, realmta.password()))
    assert reply == Expect.named("auth_success")
    own = TOPOLOGY["submission_account"]["owned_senders"][0]
    assert await command(client, f"MAIL FROM:<{own}>") == Expect(250, "2.1.0 Ok")
    # Authenticated clients relay anywhere (it is all discarded).
    reply = await command(client, "RCPT TO:<someone@elsewhere.test>")
    assert reply == Expect(250, "2.1.5 Ok")
    assert await command(client, "RSET") == Expect(250, "2.0.0 Ok")
    foreign = REPLIES["sender_not_owned"]["mail_from"]
    assert await command(client, f"MAIL FROM:<{foreign}>") == Expect.named("sender_not_owned")


async def test_submission_wrong_password(realmta: RealMta, smtp_to: OpenListener) -> None:
    client = await submission_after_starttls(realmta, smtp_to)
    wrong = "not-" + secrets.token_hex(8)
    with pytest.raises(aiosmtplib.SMTPAuthenticationError) as failure:
        await client.auth_plain(realmta.user, wrong)
    assert Expect(failure.value.code, failure.value.message) == Expect.named("auth_failed")


async def test_submissions_implicit_tls_and_auth_login(realmta: RealMta) -> None:
    listener = LISTENERS["submissions"]
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    await loop.sock_connect(sock, (listener["address"], listener["port"]))
    # Connected by address, verified by name: aiosmtplib uses hostname for SNI and the
    # certificate check when it is handed a socket.
    client = aiosmtplib.SMTP(
        hostname=listener["hostname"], sock=sock, use_tls=True, start_tls=False,
        tls_context=realmta.tls_context(), local_hostname=CLIENT_NAME, timeout=TIMEOUT,
    )
    try:
        banner = reply_of(await client.connect())
        banner_ok(banner, "submissions")
        cert = client.get_transport_info("peercert")
        assert ("DNS", "smtp.accept.test") in cert["subjectAltName"]
        await client.ehlo()
        assert not client.supports_extension("starttls"), "already TLS; nothing to upgrade"
        reply = reply_of(await client.auth_login(realmta.user, realmta.password()))
        assert reply == Expect.named("auth_success")
        foreign = REPLIES["sender_not_owned"]["mail_from"]
        reply = await command(client, f"MAIL FROM:<{foreign}>")
        assert reply == Expect.named("sender_not_owned")
    finally:
        if client.is_connected:
            await client.quit()


async def test_dead_mx_refuses_connections(realmta: RealMta) -> None:
    listener = LISTENERS["dead"]
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection(listener["address"], listener["port"])


def unique_sender() -> str:
    # postgrey folds digits in the local part, so only letters make a new triplet.
    letters = "".join(secrets.choice(string.ascii_lowercase) for _ in range(16))
    return f"grey-{letters}@sender.test"


async def test_greylisting_then_acceptance(realmta: RealMta, smtp_to: OpenListener) -> None:
    expected = REPLIES["greylisted"]
    sender = unique_sender()

    async def attempt() -> Expect:
        client, banner = await smtp_to("grey")
        banner_ok(banner, "grey")
        await client.ehlo()
        assert (await command(client, f"MAIL FROM:<{sender}>")).code == 250
        reply = await command(client, f"RCPT TO:<{expected['rcpt']}>")
        await client.quit()
        return reply

    assert await attempt() == Expect.named("greylisted")
    # Wait out the delay; then retry a bounded number of times (the machine may be busy).
    await asyncio.sleep(LISTENERS["grey"]["greylist_delay_seconds"] + 0.5)
    replies = []
    for _ in range(5):
        replies.append(await attempt())
        if replies[-1].code == 250:
            break
        await asyncio.sleep(1)
    assert replies[-1] == Expect(250, "2.1.5 Ok"), replies


async def test_greylist_mx_refuses_unknown_and_foreign(
    realmta: RealMta, smtp_to: OpenListener
) -> None:
    client, _ = await smtp_to("grey")
    await client.ehlo()
    await command(client, f"MAIL FROM:<{unique_sender()}>")
    # main.cf checks the mailbox before asking postgrey: an unknown user is refused at once.
    reply = await command(client, "RCPT TO:<nosuchuser@greylist.test>")
    assert reply == Expect(
        550,
        "5.1.1 <nosuchuser@greylist.test>: Recipient address rejected: "
        "User unknown in virtual mailbox table",
    )
    reply = await command(client, "RCPT TO:<alice@accept.test>")
    assert reply == Expect(554, "5.7.1 <alice@accept.test>: Relay access denied")


@pytest.mark.parametrize("name", ["dnsbl_listed", "client_rejected"])
async def test_blocked_mx_refuses_the_client(
    realmta: RealMta, smtp_to: OpenListener, name: str
) -> None:
    expected = REPLIES[name]
    source = None if expected["client"] == TOPOLOGY["client_address"] else (expected["client"], 0)
    client, banner = await smtp_to(expected["listener"], source_address=source)
    banner_ok(banner, "block")
    await client.ehlo()
    assert (await command(client, "MAIL FROM:<probe@sender.test>")).code == 250
    assert await command(client, f"RCPT TO:<{expected['rcpt']}>") == Expect.named(name)


def test_env_prints_no_password(realmta: RealMta) -> None:
    script = Path(__file__).parent / "realmta.sh"
    out = subprocess.run(
        [str(script), "env"], check=True, capture_output=True, text=True, timeout=10
    )
    exports = dict(
        line.removeprefix("export ").split("=", 1) for line in out.stdout.splitlines()
    )
    assert exports[ENV["enabled"]] == "1"
    assert exports[ENV["ca_file"]] == str(realmta.ca_file)
    assert exports[ENV["password_file"]] == str(realmta.password_file)
    assert realmta.password() not in out.stdout + out.stderr
