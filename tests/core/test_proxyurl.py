"""--proxy URLs (core/proxyurl.py): schemes, users, IPv6, and no password in the URL."""

from __future__ import annotations

import pytest

from smtpprobe.core.proxyurl import DEFAULT_PORT, parse_proxy_url
from smtpprobe.errors import UsageError


def test_plain_socks5() -> None:
    proxy = parse_proxy_url("socks5://127.0.0.1:1080")
    assert (proxy.host, proxy.port, proxy.remote_dns, proxy.user) == ("127.0.0.1", 1080,
                                                                     False, None)
    assert proxy.url == "socks5://127.0.0.1:1080"


def test_socks5h_with_user_and_name() -> None:
    proxy = parse_proxy_url("SOCKS5H://alice@Proxy.Example.org:9050", password="pw",
                            source="$P")
    assert proxy.remote_dns and proxy.user == "alice" and proxy.password == "pw"
    assert proxy.host == "proxy.example.org"
    assert proxy.url == "socks5h://alice@proxy.example.org:9050"
    assert "pw" not in repr(proxy) and "pw" not in str(proxy)


def test_ipv6_and_default_port() -> None:
    proxy = parse_proxy_url("socks5://[::1]")
    assert (proxy.host, proxy.port) == ("::1", DEFAULT_PORT)
    assert proxy.url == "socks5://[::1]:1080"


def test_a_password_in_the_url_is_refused_and_not_repeated() -> None:
    with pytest.raises(UsageError) as caught:
        parse_proxy_url("socks5://alice:s3cr3t-Pw@127.0.0.1:1080")
    assert "s3cr3t-Pw" not in str(caught.value)
    assert "--proxy-password-env" in str(caught.value)


@pytest.mark.parametrize("url", ["http://127.0.0.1:3128", "socks4://127.0.0.1:1080",
                                 "127.0.0.1:1080", "socks5://127.0.0.1:notaport",
                                 "socks5://127.0.0.1:70000", "socks5://[127.0.0.1]:1080",
                                 "socks5://127.0.0.1:1080/path", "socks5://:1080",
                                 "socks5://@127.0.0.1:1080"])
def test_bad_urls(url: str) -> None:
    with pytest.raises(UsageError):
        parse_proxy_url(url)


def test_a_password_needs_a_user() -> None:
    with pytest.raises(UsageError, match="names no user"):
        parse_proxy_url("socks5://127.0.0.1:1080", password="pw", source="$P")


def test_rfc1929_length_limit() -> None:
    with pytest.raises(UsageError, match="255"):
        parse_proxy_url("socks5://u@127.0.0.1:1080", password="x" * 256, source="$P")
