"""A submission server that checks OAuth 2.0 access tokens (XOAUTH2 and OAUTHBEARER, RFC 7628).

`OAUTH` is a `Scenario` for `smtpprobe.lab.smtp.serve(OAUTH, users={"alice@lab.test": TOKEN})`:
the `users` mapping holds each account's valid token. It behaves as Gmail and Microsoft 365 do
(in our own words and with Postfix-style replies):

- EHLO offers AUTH PLAIN XOAUTH2 OAUTHBEARER; PLAIN is always refused (535: these providers
  switched passwords off), MAIL needs a login.
- A valid token for the account: 235 2.7.0.
- Any other token: a 334 challenge with the error as base64 JSON (RFC 7628 3.2.2: status,
  schemes, scope). The client must answer it with the dummy response (OAUTHBEARER: a single
  ^A, RFC 7628 3.2.3; XOAUTH2: an empty line); then 535 5.7.8. A client that answers anything
  else gets 501 5.5.2 and learns it broke the exchange.
- OAUTHBEARER's message must start with the GS2 header "n,a=USER," (RFC 7628 3.1).

TLS is not offered: tests that use it send the token in the clear on purpose (PORT:plain,
--allow-plaintext-auth) and say so.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json

from .hostile import _EXTENSIONS, _Mta
from .smtp import RawConnection, Scenario

SCOPE = "https://mail.lab.test/"
ERROR = {"status": "401", "schemes": "bearer", "scope": SCOPE}
AUTH_FAILED = "535 5.7.8 Username and token not accepted"


def _decode(blob: str) -> str | None:
    try:
        return base64.b64decode(blob.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None


def _fields(message: str, mechanism: str) -> tuple[str | None, str | None]:
    """(user, token) of an XOAUTH2 or OAUTHBEARER message, None where missing or malformed."""
    if mechanism == "OAUTHBEARER":
        header, sep, rest = message.partition("\x01")
        if not sep or not header.startswith("n,") or not header.endswith(","):
            return None, None
        user = next((part[2:] for part in header.split(",") if part.startswith("a=")), None)
        if user is not None:
            user = user.replace("=2C", ",").replace("=3D", "=")
        message = rest
    else:
        user = None
    pairs = [part for part in message.split("\x01") if part]
    values = dict(part.split("=", 1) for part in pairs if "=" in part)
    user = values.get("user", user)
    auth = values.get("auth", "")
    token = auth[len("Bearer "):] if auth.startswith("Bearer ") else None
    return user, token


async def _oauth(conn: RawConnection) -> None:
    async def auth(mta: _Mta, line: str) -> bool:
        parts = line.split()
        mechanism = parts[1].upper() if len(parts) > 1 else ""
        if mta.authenticated:
            await conn.send("503 5.5.1 Error: already authenticated")
            return False
        if mechanism == "PLAIN":
            await conn.send(AUTH_FAILED)
            return False
        if mechanism not in ("XOAUTH2", "OAUTHBEARER") or len(parts) != 3:
            await conn.send("504 5.5.4 Unsupported authentication mechanism or no initial "
                            "response")
            return False
        message = _decode(parts[2])
        user, token = _fields(message, mechanism) if message is not None else (None, None)
        if user is None or token is None:
            await conn.send("501 5.5.2 Malformed authentication message")
            return False
        expected = conn.server.users.get(user)
        if expected is not None and hmac.compare_digest(expected.encode(), token.encode()):
            mta.authenticated = True
            await conn.send("235 2.7.0 Accepted")
            return False
        challenge = base64.b64encode(json.dumps(ERROR).encode()).decode("ascii")
        await conn.send(f"334 {challenge}")
        answer = await conn.read_command()
        if answer is None:
            return True
        dummy = "AQ==" if mechanism == "OAUTHBEARER" else ""
        if answer.strip() != dummy:
            await conn.send("501 5.5.2 The error challenge needs the dummy response "
                            "(RFC 7628 3.2.3)")
            return False
        await conn.send(AUTH_FAILED)
        return False

    mta = _Mta(conn, extensions=[*_EXTENSIONS, "AUTH PLAIN XOAUTH2 OAUTHBEARER"],
               hooks={"AUTH": auth}, auth_required=True)
    await mta.greet()
    await mta.run()


OAUTH = Scenario("oauth", "a submission server for OAuth 2.0 tokens: AUTH XOAUTH2 and "
                 "OAUTHBEARER (RFC 7628) with the tokens of `users`; a wrong token gets the "
                 "error as base64 JSON in a 334, then 535 after the dummy response",
                 raw=_oauth)

__all__ = ["AUTH_FAILED", "ERROR", "OAUTH", "SCOPE"]
