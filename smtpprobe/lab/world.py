"""A small mail world on loopback: a DNS zone whose MX records point at lab servers.

`smtpprobe demo`, the check tests and the benchmarks use it, so the whole pipeline (MX lookup,
staggered attempts, STARTTLS with certificate checks, classification) runs as it would against
the internet, without a single packet leaving 127.0.0.0/8. Every MX host gets its own loopback
address (127.0.0.x works on Linux without configuration) and all listen on one port number,
which the probe is told with `port=`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
import tempfile
import threading
from collections.abc import AsyncIterator, Collection, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path

from .dns import LabDns, Record
from .smtp import LabServer, Scenario, ServerSpec, serve_many
from .tls import LabCA, LabCert


@dataclass(frozen=True, slots=True)
class Domain:
    """A test domain: its MX hosts as (preference, host name, loopback address, scenario);
    the scenario is a name, a `Scenario` (a glitch of lab.hostile, a test's own script), or
    None: nothing listens there (connections are refused)."""

    name: str
    mx: tuple[tuple[int, str, str, str | Scenario | None], ...] = ()
    null_mx: bool = False
    summary: str = ""
    # For `smtpprobe domain` (DOMAIN_DOMAINS): further records (PTR, CNAME, TXT ...; an MX
    # host with the address "" gets no A/AAAA of its own), and how its MX servers behave:
    # the name they greet with (default: the host's), their certificate ("good", "expired",
    # "wrong_name", "self_signed"), the newest TLS version they speak ("TLSv1": an outdated
    # server; "TLSv1_3": a current one that still accepts 1.0 and 1.1), their mailboxes.
    records: tuple[Record, ...] = ()
    greeting_name: str | None = None
    cert: str = "good"
    max_tls: str | None = None
    local_parts: tuple[str, ...] | None = None


# The demo's world. Addresses 127.0.0.21-29 are reserved for it (the real-MTA test set-up
# uses 127.0.0.11-14 and 127.0.0.53).
DEMO_DOMAINS: tuple[Domain, ...] = (
    Domain("good.test", ((10, "mx.good.test", "127.0.0.21", "mailbox"),),
           summary="a mailbox server with STARTTLS: alice, bob and postmaster exist"),
    Domain("backup.test", ((10, "mx1.backup.test", "127.0.0.29", None),
                           (20, "mx.good.test", "127.0.0.21", "mailbox")),
           summary="the preferred MX is down, the backup answers"),
    Domain("full.test", ((10, "mx.full.test", "127.0.0.22", "mailbox_full"),),
           summary="every mailbox is over quota"),
    Domain("grey.test", ((10, "mx.grey.test", "127.0.0.23", "greylist"),),
           summary="greylisting: the first try is deferred"),
    Domain("blocked.test", ((10, "mx.blocked.test", "127.0.0.24", "blocklisted"),),
           summary="the server rejects the prober's IP (a DNS blocklist)"),
    Domain("catchall.test", ((10, "mx.catchall.test", "127.0.0.25", "catch_all"),),
           summary="accepts any address"),
    Domain("tls.test", ((10, "mx.tls.test", "127.0.0.26", "starttls_required"),),
           summary="refuses mail until STARTTLS"),
    Domain("nullmx.test", null_mx=True, summary="publishes a null MX (RFC 7505): no mail"),
)


@dataclass(frozen=True, slots=True)
class LabWorld:
    dns: LabDns
    servers: Mapping[str, LabServer]  # by host name
    port: int
    cafile: str
    domains: tuple[Domain, ...]

    @property
    def resolver(self) -> tuple[str, int]:
        return self.dns.address


def records_for(domains: Sequence[Domain]) -> list[Record]:
    records: list[Record] = []
    seen_hosts: set[str] = set()
    for domain in domains:
        if domain.null_mx:
            records.append(Record(domain.name, "MX", "0 ."))
        for preference, host, address, _ in domain.mx:
            records.append(Record(domain.name, "MX", f"{preference} {host}."))
            if host not in seen_hosts and address:
                seen_hosts.add(host)
                records.append(Record(host, "AAAA" if ":" in address else "A", address))
        records.extend(domain.records)
    return records


def ptr(address: str, name: str) -> Record:
    """The PTR record of `address` (`127.0.0.31` -> `31.0.0.127.in-addr.arpa`)."""
    return Record(ipaddress.ip_address(address).reverse_pointer, "PTR", f"{name}.")


def _txt(text: str) -> str:
    """A TXT value in zone-file syntax: strings of at most 255 bytes (RFC 1035 3.3.14)."""
    return " ".join('"' + text[i:i + 255] + '"' for i in range(0, len(text), 255))


# Public DKIM keys (RFC 6376 3.6.1) of the domain world: a 2048-bit and a 1024-bit RSA key.
# Only the public halves: nothing in the lab signs.
DKIM_KEY_2048 = (
    "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEApaezb4EF/wX7NK8DskF8"
    "Kvy0XvWgm7m9VFIPnsBaS8Z0SlWi/fV5NyRgnJwgF3yRwNDSerKb8pipPKvMAw6Z"
    "vCBCIJJ9JhLQOqjFPmMDBrNyLTZaJTYum0EI8ScNj1mqnCI4uz3jfylcT1CUdBJ+"
    "Ed8iIe2xu70C8ON1MgzO0B9Ff/lGkGE7AO6VjAi0kzvqiRlOIVP16I8gQShZl+9Z"
    "YjemoySCRWbeymuhuinfZH0f2Gd7Rm8AoIBRqfjsAIBJBpYtWAG406CJxzvaquF+"
    "YSdfLdNrGGOBCBtwUcRXp/tln3yyGasE9fOZCWfuZV+gLdd4nsy24vDVOFtYVE9j"
    "dQIDAQAB"
)
DKIM_KEY_1024 = (
    "MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQCyzukxVzTijslwqL++VNnpjp2n"
    "Zj0+5b4Cp28PfIH/wlRrV3Fqz75g7VFmNhKL37RVPNhKlMNWIkhXqgE/Fvjk/Fxu"
    "oq/Hh7yC67qtfAo9JFlaZwzlAFzuJujxDhG1bTtZhBPuyLaBy+7waUZcqQ1ksFf/"
    "UxiKX5oQjwLLtYJl7wIDAQAB"
)
# The lab's DNS blocklist zone (RFC 5782): 127.0.0.32 (mx.broken.test) is listed with a
# reason, 127.0.0.35 (mx.noptr.test) gets Spamhaus's "query refused" answer.
DNSBL_ZONE = "dnsbl.test"
# The records of the policy checks (probe/domain_policy.py): healthy.test has everything right,
# broken.test everything wrong.
HEALTHY_POLICY: tuple[Record, ...] = (
    Record("healthy.test", "TXT", _txt("v=spf1 mx -all")),
    Record("_dmarc.healthy.test", "TXT",
           _txt("v=DMARC1; p=reject; rua=mailto:dmarc@healthy.test; adkim=s")),
    Record("lab._domainkey.healthy.test", "TXT", _txt("v=DKIM1; k=rsa; p=" + DKIM_KEY_2048)),
    Record("_smtp._tls.healthy.test", "TXT", _txt("v=TLSRPTv1; rua=mailto:tlsrpt@healthy.test")),
)
BROKEN_POLICY: tuple[Record, ...] = (
    Record("broken.test", "TXT", _txt("v=spf1 a +all")),
    Record("_dmarc.broken.test", "TXT", _txt("v=DMARC1; p=none; pct=50")),
    Record("lab._domainkey.broken.test", "TXT", _txt("v=DKIM1; k=rsa; p=" + DKIM_KEY_1024)),
    Record("_smtp._tls.broken.test", "TXT", _txt("v=TLSRPTv1; rua=tlsrpt@broken.test")),
    Record(f"32.0.0.127.{DNSBL_ZONE}", "A", "127.0.0.2"),
    Record(f"32.0.0.127.{DNSBL_ZONE}", "TXT",
           _txt("Listed in the lab blocklist: https://dnsbl.test/lookup?ip=127.0.0.32")),
    Record(f"35.0.0.127.{DNSBL_ZONE}", "A", "127.255.255.254"),
)


# `smtpprobe domain`'s world: good and broken mail domains, one condition each, so every
# check has a lab case (tests/probe/test_domain.py, `smtpprobe demo`). Addresses 127.0.0.31-49
# and ::1 are reserved for it.
DOMAIN_DOMAINS: tuple[Domain, ...] = (
    Domain("healthy.test", ((10, "mx.healthy.test", "127.0.0.31", "mailbox"),
                            (20, "mx6.healthy.test", "::1", "mailbox")),
           records=(ptr("127.0.0.31", "mx.healthy.test"), ptr("::1", "mx6.healthy.test"),
                    *HEALTHY_POLICY),
           summary="every MX check passes: PTR, STARTTLS, TLS 1.2+, certificate, postmaster"),
    Domain("broken.test", ((10, "mx.broken.test", "127.0.0.32", "mailbox"),
                           (20, "mx.broken.test", "127.0.0.32", "mailbox")),
           records=(ptr("127.0.0.32", "mail.elsewhere.test"), *BROKEN_POLICY),
           greeting_name="localhost", cert="expired", max_tls="TLSv1_3",
           local_parts=("alice",),
           summary="the same MX twice, PTR not confirmed, greeting 'localhost', TLS 1.0 "
                   "accepted, expired certificate, postmaster refused"),
    Domain("nullmx.test", null_mx=True, summary="publishes a null MX (RFC 7505): no mail"),
    Domain("nullmixed.test", ((10, "mx.healthy.test", "127.0.0.31", "mailbox"),),
           null_mx=True, summary="a null MX beside a real one (RFC 7505 3)"),
    Domain("nomx.test", records=(Record("nomx.test", "A", "127.0.0.33"),),
           summary="no MX: the implicit MX on the domain's own address"),
    Domain("nomail.test", records=(Record("nomail.test", "TXT", '"v=spf1 -all"'),),
           summary="neither MX nor address"),
    Domain("cname.test", ((10, "alias.cname.test", "", None),),
           records=(Record("alias.cname.test", "CNAME", "mx.healthy.test."),),
           summary="the MX is an alias (CNAME)"),
    Domain("mxip.test", ((10, "192.0.2.1", "", None),), summary="the MX is an IP address"),
    Domain("pair.test", ((10, "mx1.pair.test", "127.0.0.42", "mailbox"),
                         (10, "mx2.pair.test", "127.0.0.43", "mailbox")),
           records=(ptr("127.0.0.42", "mx1.pair.test"), ptr("127.0.0.43", "mx2.pair.test")),
           summary="two MX hosts with the same preference"),
    Domain("nohost.test", ((10, "gone.nohost.test", "", None),),
           summary="the MX host does not exist"),
    Domain("private.test", ((10, "mx.private-lab.net", "10.1.2.3", None),),
           summary="a public MX name with a private address"),
    Domain("noptr.test", ((10, "mx.noptr.test", "127.0.0.35", "mailbox"),),
           summary="the MX address has no PTR"),
    Domain("plain.test", ((10, "mx.plain.test", "127.0.0.44", "no_starttls"),),
           records=(ptr("127.0.0.44", "mx.plain.test"),), summary="no STARTTLS"),
    Domain("oldtls.test", ((10, "mx.oldtls.test", "127.0.0.37", "mailbox"),),
           records=(ptr("127.0.0.37", "mx.oldtls.test"),), max_tls="TLSv1",
           summary="speaks only TLS 1.0"),
    Domain("wrongname.test", ((10, "mx.wrongname.test", "127.0.0.39", "mailbox"),),
           records=(ptr("127.0.0.39", "mx.wrongname.test"),), cert="wrong_name",
           summary="a certificate for another name"),
    Domain("relay.test", ((10, "mx.relay.test", "127.0.0.41", "open_relay"),),
           records=(ptr("127.0.0.41", "mx.relay.test"),), summary="an open relay"),
)


def _cert_for(ca: LabCA, shared: LabCert | None, host: str, domain: Domain) -> LabCert | None:
    """The certificate of one MX server: the world's shared one, or the domain's flavour."""
    if shared is None:
        return None
    flavours = {
        "good": lambda: shared,
        "expired": lambda: ca.issue(host, expired=True),
        "wrong_name": lambda: ca.issue(f"other.{host}"),
        "self_signed": lambda: ca.issue(host, self_signed=True),
    }
    if domain.cert not in flavours:
        raise ValueError(f"unknown certificate flavour {domain.cert!r}")
    cert = flavours[domain.cert]()
    if domain.max_tls is not None:
        cert = cert.with_max_tls(ssl.TLSVersion[domain.max_tls])
    return cert


@asynccontextmanager
async def lab_world(domains: Sequence[Domain] = DEMO_DOMAINS, *,
                    greylist_delay: float = 1.0,
                    dns_host: str = "127.0.0.1",
                    local_parts: Collection[str] | None = None) -> AsyncIterator[LabWorld]:
    """Start the DNS server and one lab server per MX host, all in the running loop.
    `local_parts`: the mailboxes of every server (default: alice, bob and postmaster)."""
    ca = LabCA.create()
    hosts: dict[str, tuple[str, str | Scenario, Domain]] = {}
    for domain in domains:
        for _, host, address, scenario in domain.mx:
            if scenario is not None:
                hosts.setdefault(host, (address, scenario, domain))
    cert = ca.issue(*hosts) if hosts else None
    mailboxes = ServerSpec.local_parts if local_parts is None else local_parts
    specs = [ServerSpec(scenario=scenario, host=address,
                        hostname=domain.greeting_name or host,
                        cert=_cert_for(ca, cert, host, domain),
                        greylist_delay=greylist_delay,
                        local_parts=mailboxes if domain.local_parts is None
                        else domain.local_parts)
             for host, (address, scenario, domain) in hosts.items()]
    records = records_for(domains)
    # Reverse names (in-addr.arpa) and public-looking ones are outside .test: serve them all.
    zone_name = "test" if all(r.name.rstrip(".").endswith(".test") or r.name == "test"
                              for r in records) else "."
    with tempfile.TemporaryDirectory(prefix="smtpprobe-world-") as tmp:
        cafile = str(ca.write_pem(Path(tmp) / "lab-ca.pem"))
        servers = await serve_many(specs, same_port=True)
        try:
            async with LabDns(records, host=dns_host, zone=zone_name) as zone:
                port = servers[0].port if servers else 25
                yield LabWorld(dns=zone, servers=dict(zip(hosts, servers, strict=True)), port=port,
                               cafile=cafile, domains=tuple(domains))
        finally:
            for server in servers:
                await server.close()


@contextmanager
def lab_world_in_thread(domains: Sequence[Domain] | None = None) -> Iterator[LabWorld]:
    """A lab world served from a thread of its own, for tests that run the real command line
    as a subprocess (the lab needs a running event loop while the test waits)."""
    ready: dict[str, LabWorld] = {}
    stop = threading.Event()

    def serve() -> None:
        async def main() -> None:
            async with lab_world(domains or DEMO_DOMAINS) as lab:
                ready["world"] = lab
                while not stop.is_set():
                    await asyncio.sleep(0.05)

        asyncio.run(main())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        for _ in range(200):
            if "world" in ready or not thread.is_alive():
                break
            stop.wait(0.05)
        assert "world" in ready, "the lab world did not start"
        yield ready["world"]
    finally:
        stop.set()
        thread.join(timeout=10)
