"""Keep secrets out of everything smtpprobe prints, logs or stores, by masking them where
they can occur, and only there.

The password goes on the wire only inside AUTH: in base64 for PLAIN and LOGIN (RFC 4616 and the
LOGIN convention), as an HMAC for CRAM-MD5; an OAuth token inside the base64 XOAUTH2 or
OAUTHBEARER message (RFC 7628), found at any offset of it like any base64 form. The commands
we show are masked when they are built (core/wire.py). What remains is the server's side: a
hostile or broken server may echo what it received, in any case and in any of those
encodings. So the session passes the server's text through a `Redactor` from the moment it
sent the secret (net/session.py), and nothing else is masked: host names, banners from
before the login and the knowledge base's own sentences are never touched, because masking a
password's text in fixed words ("mx1.****.test", "the password is ****") would tell the
password.

Every form of the secret is found: as typed and with its case changed (an echo in upper
case), in hex, URL-quoted, in base64 on its own and at any offset inside a longer base64 blob,
and in the PLAIN message. A secret of fewer than four characters is masked only as a whole
word: masking every "a" in a reply would spell the password out.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable
from urllib.parse import quote

MASK = "****"


SHORT = 4  # secrets (and forms) shorter than this are masked only as whole words


def _forms(user: str | None, secret: str) -> tuple[set[str], set[str]]:
    """(forms matched in any case, forms matched exactly)."""
    raw = secret.encode("utf-8")
    any_case = {secret, raw.hex(), quote(secret, safe="")}
    exact = {base64.b64encode(raw).decode("ascii")}
    if user is not None:
        for authzid in ("", user):
            blob = f"{authzid}\0{user}\0{secret}".encode()
            exact.add(base64.b64encode(blob).decode("ascii"))
            any_case.add(binascii.hexlify(blob).decode("ascii"))
        # An OAuth token (XOAUTH2, OAUTHBEARER): the whole messages as they went out.
        for message in (f"user={user}\x01auth=Bearer {secret}\x01\x01",
                        f"auth=Bearer {secret}"):
            exact.add(base64.b64encode(message.encode()).decode("ascii"))
    # Inside a longer base64 blob the secret starts at an offset of 0, 1 or 2 modulo 3; the
    # 4-character groups made only of its own bytes are the same whatever surrounds it.
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + raw).decode("ascii")
        core = encoded[(4 if shift else 0):len(encoded) - 4]
        if len(core) >= 8:
            exact.add(core)
    # Encoded forms of a short secret are short too, and would hit any base64 or hex text.
    return ({f for f in any_case if f == secret or len(f) >= SHORT},
            {f for f in exact if len(f) >= SHORT})


# Around a short secret: the start or end of the text, white space, quotes, brackets or a
# separator; a dot only at the end of a sentence ("5.7.8" holds no "7").
_BEFORE = r"""(?<![^\s"'<>()\[\]{}:;,=])"""
_AFTER = r"""(?=$|[\s"'<>()\[\]{}:;,=]|\.(?!\w))"""


def _pattern(form: str) -> str:
    text = re.escape(form)
    return f"{_BEFORE}{text}{_AFTER}" if len(form) < SHORT else text


class Redactor:
    """Replaces every known form of the secrets it was given. Empty when there are none."""

    __slots__ = ("_pattern",)

    def __init__(self, secrets: Iterable[tuple[str | None, str]] = ()) -> None:
        any_case: set[str] = set()
        exact: set[str] = set()
        for user, secret in secrets:
            if secret:
                loose, strict = _forms(user, secret)
                any_case |= loose
                exact |= strict
        # Longest first, so a longer form is masked before a shorter one inside it.
        parts = [(form, True) for form in any_case] + [(form, False) for form in exact
                                                          if form not in any_case]
        parts.sort(key=lambda part: len(part[0]), reverse=True)
        alternatives = [f"(?i:{_pattern(form)})" if loose else _pattern(form)
                        for form, loose in parts]
        self._pattern = re.compile("|".join(alternatives)) if alternatives else None

    def __bool__(self) -> bool:
        return self._pattern is not None

    def __call__(self, text: str) -> str:
        if self._pattern is None:
            return text
        return self._pattern.sub(MASK, text)

    def __repr__(self) -> str:
        return "Redactor(empty)" if self._pattern is None else "Redactor(secrets)"
