import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smtpprobe.core.address import parse_address, parse_helo, parse_ip, parse_port, parse_server
from smtpprobe.errors import UsageError


@pytest.mark.parametrize("text", [
    "alice@example.org", " alice@example.org ", "<alice@example.org>",
    "first.last+tag@sub.example.co.uk", '"john doe"@example.org', '"a\\"b"@example.org',
    "user@[192.0.2.1]", "user@[IPv6:2001:db8::1]", "jörg@bücher.example", "x@xn--bcher-kva.example",
])
def test_valid_addresses(text: str) -> None:
    assert parse_address(text) is not None


@pytest.mark.parametrize("text,needle", [
    ("alice", "no '@'"),
    ("a@b@example.org", "more than one '@'"),
    ("al ice@example.org", "white space"),
    ("alice@example.org\r\nRCPT TO:<x@y.z>", "control character"),
    ("alice@exa\x00mple.org", "control character"),
    ("alice@example.org.", "end with a dot"),
    (".alice@example.org", "misplaced dot"),
    ("al..ice@example.org", "misplaced dot"),
    ("a" * 300 + "@example.org", "longer than"),
    ("a" * 65 + "@example.org", "longer than 64"),
    ("alice@", "empty"),
    ("@example.org", "empty local part"),
    ('"unterminated@example.org', "unterminated"),
    ("alice@[999.1.1.1]", "literal"),
    ("alice@192.0.2.1", "literal"),
    ("alice@localhost", "two labels"),
    ("ali(ce@example.org", "needs quoting"),
    ("alice@exa_mple.org", "invalid label"),
    ("", "empty"),
])
def test_invalid_addresses(text: str, needle: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_address(text)
    message = str(info.value)
    assert needle in message
    assert "\n" not in message and "\r" not in message


def test_null_sender() -> None:
    assert parse_address("", allow_empty=True) is None
    assert parse_address("<>", allow_empty=True) is None


def test_smtp_form_uses_ascii_domain_and_literal_tags() -> None:
    one = parse_address("jörg@bücher.example")
    assert one is not None and one.smtp == "jörg@xn--bcher-kva.example"
    assert one.needs_smtputf8
    six = parse_address("u@[IPv6:2001:DB8::1]")
    assert six is not None and six.smtp == "u@[IPv6:2001:db8::1]" and six.literal == "2001:db8::1"


@pytest.mark.parametrize("spec,expected", [
    ("mx.example.org", ("mx.example.org", 25)),
    ("mx.example.org:587", ("mx.example.org", 587)),
    ("127.0.0.1:2525", ("127.0.0.1", 2525)),
    ("[::1]:465", ("::1", 465)),
    ("::1", ("::1", 25)),
    ("localhost", ("localhost", 25)),
])
def test_parse_server(spec: str, expected: tuple[str, int]) -> None:
    assert parse_server(spec, default_port=25) == expected


@pytest.mark.parametrize("spec", ["", "mx:0", "mx:70000", "mx:abc", "[::1", "a b", "[x]:25",
                                  "mx\r\n.example"])
def test_parse_server_errors(spec: str) -> None:
    with pytest.raises(UsageError):
        parse_server(spec, default_port=25)


def test_ports_ips_helo() -> None:
    assert parse_port("587") == 587
    for bad in ("0", "65536", "-1", "x"):
        with pytest.raises(UsageError):
            parse_port(bad)
    assert parse_ip("127.0.0.2") == "127.0.0.2"
    with pytest.raises(UsageError):
        parse_ip("300.1.1.1")
    assert parse_helo("probe.example.org") == "probe.example.org"
    assert parse_helo("[192.0.2.1]") == "[192.0.2.1]"
    for bad in ("", "a b", "x\r\nMAIL FROM:<>"):
        with pytest.raises(UsageError):
            parse_helo(bad)


@settings(max_examples=500)
@given(st.text(max_size=300))
def test_any_input_gives_address_or_usage_error(text: str) -> None:
    try:
        result = parse_address(text)
    except UsageError as exc:
        assert "\n" not in str(exc)
        return
    assert result is not None
    for forbidden in ("\r", "\n", "\x00"):
        assert forbidden not in result.smtp
