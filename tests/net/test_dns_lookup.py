"""`net.dns.lookup`: any record type, NXDOMAIN and NODATA as answers, TXT strings joined."""

from __future__ import annotations

from smtpprobe.lab.dns import LabDns, Record
from smtpprobe.models import Failure, FailureKind
from smtpprobe.net.dns import Records, lookup

RECORDS = [
    Record("example.test", "TXT", '"v=spf1 ip4:127.0.0.1" " -all"'),
    Record("_dmarc.example.test", "TXT", '"v=DMARC1; p=reject"'),
    Record("_25._tcp.mx.example.test", "TLSA", "3 1 1 " + "ab" * 32),
    Record("mx.example.test", "A", "127.0.0.1"),
    Record("1.0.0.127.in-addr.arpa", "PTR", "mx.example.test."),
]


async def ask(name: str, rdtype: str) -> Records | Failure:
    async with LabDns(RECORDS, zone=".") as server:
        return await lookup(name, rdtype, nameservers=[server.address], timeout=2)


async def test_txt_strings_of_one_record_join_without_spaces() -> None:
    got = await ask("example.test", "txt")
    assert isinstance(got, Records)
    assert got.exists and got.records == ("v=spf1 ip4:127.0.0.1 -all",)
    assert got.rdtype == "TXT" and not got.authenticated


async def test_service_labels_and_tlsa_fields() -> None:
    dmarc = await ask("_dmarc.example.test", "TXT")
    assert isinstance(dmarc, Records) and dmarc.records == ("v=DMARC1; p=reject",)
    tlsa = await ask("_25._tcp.mx.example.test", "TLSA")
    assert isinstance(tlsa, Records)
    [rdata] = tlsa.rdata
    assert (rdata.usage, rdata.selector, rdata.mtype) == (3, 1, 1)  # type: ignore[attr-defined]


async def test_nxdomain_and_nodata_are_answers() -> None:
    missing = await ask("nothing.example.test", "TXT")
    assert isinstance(missing, Records) and not missing.exists and missing.records == ()
    nodata = await ask("mx.example.test", "TXT")
    assert isinstance(nodata, Records) and nodata.exists and nodata.records == ()


async def test_ptr_of_an_address() -> None:
    got = await ask("127.0.0.1", "PTR")
    assert isinstance(got, Records)
    assert got.name == "1.0.0.127.in-addr.arpa" and got.records == ("mx.example.test.",)


async def test_unknown_type_and_silent_server_are_failures() -> None:
    got = await ask("example.test", "NOTATYPE")
    assert isinstance(got, Failure)
    async with LabDns(RECORDS, zone=".", behaviour={"example.test": "timeout"}) as server:
        silent = await lookup("example.test", "TXT", nameservers=[server.address], timeout=0.3)
    assert isinstance(silent, Failure) and silent.kind is FailureKind.DNS_TIMEOUT
