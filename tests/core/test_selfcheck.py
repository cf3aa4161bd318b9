"""The self-check's pure rules (core/selfcheck.py): blocklist names out of replies, DNSBL
query names, what counts as listed, and what the facts amount to."""

from __future__ import annotations

import pytest

from smtpprobe.core.selfcheck import (
    Listing,
    SelfCheck,
    blocklist_zones,
    dnsbl_query,
    listed,
    observations,
)
from smtpprobe.models import FailureKind


@pytest.mark.parametrize("text,zones", [
    ("554 5.7.1 Service unavailable; Client host [192.0.2.1] blocked using zen.spamhaus.org; "
     "https://www.spamhaus.org/query/ip/192.0.2.1", ["zen.spamhaus.org"]),
    ("550 5.7.1 Mail from 192.0.2.1 refused, listed in bl.spamcop.net and listed on "
     "b.barracudacentral.org", ["bl.spamcop.net", "b.barracudacentral.org"]),
    ("554 RBL: dnsbl.example.net says no", ["dnsbl.example.net"]),
    ("550 5.1.1 User unknown in virtual mailbox table", []),
    ("550 Listed in the smtpprobe test blocklist", []),  # no zone after the words
])
def test_blocklist_zones(text: str, zones: list[str]) -> None:
    assert blocklist_zones([text]) == zones


def test_blocklist_zones_once_each() -> None:
    text = "blocked using zen.dnsbl.test"
    assert blocklist_zones([text, text.upper()]) == ["zen.dnsbl.test"]


def test_dnsbl_query_names() -> None:
    assert dnsbl_query("192.0.2.99", "zen.example") == "99.2.0.192.zen.example"
    # RFC 5782 2.4: IPv6 nibbles in reverse order.
    assert dnsbl_query("2001:db8::1", "v6.example") == (
        "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.v6.example")


def test_listed_means_an_a_record_in_127() -> None:
    assert listed(("127.0.0.2",))
    assert not listed(())
    assert not listed(("192.0.2.1",))  # an error answer some zones give, not a listing


def test_observations() -> None:
    bare = SelfCheck("192.0.2.1", helo="mail.example.org")
    kinds = [kind for kind, _ in observations(bare)]
    assert kinds == [FailureKind.SELF_NO_PTR, FailureKind.SELF_HELO_MISMATCH]
    unconfirmed = SelfCheck("192.0.2.1", ptr=("host.example.net",), helo="[192.0.2.1]")
    assert [k for k, _ in observations(unconfirmed)] == [FailureKind.SELF_PTR_MISMATCH]
    on_list = SelfCheck("192.0.2.1", ptr=("mail.example.org",), confirmed="mail.example.org",
                        helo="mail.example.org", helo_addresses=("192.0.2.1",),
                        listings=(Listing("zen.example", True, "127.0.0.4", "because"),))
    [(kind, detail)] = observations(on_list)
    assert kind is FailureKind.SELF_LISTED and "zen.example (127.0.0.4): because" in detail
    fine = SelfCheck("192.0.2.1", ptr=("mail.example.org",), confirmed="mail.example.org",
                     helo="mail.example.org", helo_addresses=("192.0.2.1",),
                     listings=(Listing("zen.example", False, "not listed"),))
    [(kind, detail)] = observations(fine)
    assert kind is FailureKind.SELF_OK and "not listed on zen.example" in detail
