"""XOAUTH2 and OAUTHBEARER messages (core/wire.py), byte for byte, and the redaction of a token
in every form it takes on the wire (core/redact.py)."""

from __future__ import annotations

import base64

import pytest

from smtpprobe.core import wire
from smtpprobe.core.redact import Redactor

TOKEN = "ya29.a0AfH6SMBx-token_value-0123456789"


def _raw(blob: str) -> bytes:
    return base64.b64decode(blob, validate=True)


def test_xoauth2_message() -> None:
    assert _raw(wire.sasl_xoauth2("alice@example.org", TOKEN)) == (
        b"user=alice@example.org\x01auth=Bearer " + TOKEN.encode() + b"\x01\x01")


def test_oauthbearer_message_with_host_and_port() -> None:
    # RFC 7628 4.1's example, with our own values.
    assert _raw(wire.sasl_oauthbearer("alice@example.org", TOKEN, host="smtp.example.org",
                                      port=587)) == (
        b"n,a=alice@example.org,\x01host=smtp.example.org\x01port=587\x01auth=Bearer "
        + TOKEN.encode() + b"\x01\x01")


def test_oauthbearer_escapes_the_authzid() -> None:
    # RFC 5801 4 / RFC 7628 3.1: "," and "=" in the saslname are =2C and =3D.
    raw = _raw(wire.sasl_oauthbearer("a,b=c", "t"))
    assert raw == b"n,a=a=2Cb=3Dc,\x01auth=Bearer t\x01\x01"


def test_the_dummy_responses() -> None:
    assert _raw(wire.oauth_abort("OAUTHBEARER")) == b"\x01"  # RFC 7628 3.2.3
    assert wire.oauth_abort("xoauth2") == ""
    assert wire.auth_line(wire.oauth_abort("XOAUTH2"), "(empty)").line() == b"\r\n"
    assert wire.auth_line(wire.oauth_abort("OAUTHBEARER"), "(dummy)").line() == b"AQ==\r\n"


def test_the_auth_command_masks_the_message() -> None:
    command = wire.auth("XOAUTH2", wire.sasl_xoauth2("alice@example.org", TOKEN))
    assert command.shown == "AUTH XOAUTH2 ****"
    assert command.line().startswith(b"AUTH XOAUTH2 dXNlcj1")


def test_the_providers_error_is_decoded() -> None:
    # What Gmail sends for an expired token (the shape RFC 7628 3.2.2 describes).
    challenge = ("eyJzdGF0dXMiOiI0MDAiLCJzY2hlbWVzIjoiQmVhcmVyIiwic2NvcGUiOiJodHRwczovL21h"
                 "aWwuZ29vZ2xlLmNvbS8ifQ==")
    error = wire.oauth_error(challenge)
    assert error == wire.OAuthError(status="400", scope="https://mail.google.com/",
                                    schemes="Bearer")
    configured = base64.b64encode(
        b'{"status":"invalid_token","openid-configuration":"https://issuer.example/.well-known"}'
    ).decode()
    found = wire.oauth_error(configured)
    assert found is not None and found.status == "invalid_token"
    assert found.configuration == "https://issuer.example/.well-known"


@pytest.mark.parametrize("challenge", ["", "not base64!", base64.b64encode(b"[1, 2]").decode(),
                                       base64.b64encode(b'{"scope": "x"}').decode(),
                                       base64.b64encode(b"\xff\xfe").decode(),
                                       "VXNlcm5hbWU6"])  # "Username:" (a LOGIN prompt)
def test_other_challenges_are_no_error(challenge: str) -> None:
    assert wire.oauth_error(challenge) is None


def test_an_error_with_terminal_escapes_is_cleaned() -> None:
    nasty = base64.b64encode(b'{"status":"401\\u001b[2J","scope":"' + b"s" * 500 + b'"}')
    error = wire.oauth_error(nasty.decode())
    assert error is not None and "\x1b" not in error.status
    assert error.scope is not None and len(error.scope) <= 200


@pytest.mark.parametrize("form", [
    TOKEN,
    TOKEN.upper(),
    base64.b64encode(TOKEN.encode()).decode(),
    wire.sasl_xoauth2("alice@example.org", TOKEN),
])
def test_redaction_masks_the_token_in_every_form(form: str) -> None:
    redact = Redactor([("alice@example.org", TOKEN)])
    shown = redact(f"535 5.7.8 you sent {form} and that is wrong")
    assert TOKEN not in shown and form not in shown
    assert shown == "535 5.7.8 you sent **** and that is wrong"


def test_inside_a_longer_blob_the_token_itself_is_masked() -> None:
    # The OAUTHBEARER message has host and port around the token: the offset forms mask the
    # token's bytes inside it (the session also masks the exact message it sent).
    blob = wire.sasl_oauthbearer("alice@example.org", TOKEN, host="smtp.example.org", port=587)
    shown = Redactor([("alice@example.org", TOKEN)])(blob)
    assert "****" in shown and blob not in shown
    assert Redactor([(None, blob)])(f"echo {blob}") == "echo ****"
