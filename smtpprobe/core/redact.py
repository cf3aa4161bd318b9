"""Keep secrets out of everything smtpprobe prints, logs or stores.

A password can leak in more forms than its own: AUTH PLAIN and AUTH LOGIN send it in base64
(RFC 4616, and the LOGIN convention), and a hostile server may echo what it received. The
redactor knows every form and replaces each with "****" wherever text leaves the program.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from urllib.parse import quote

MASK = "****"


def _forms(user: str | None, secret: str) -> set[str]:
    raw = secret.encode("utf-8")
    forms = {secret, raw.hex(), raw.hex().upper(), quote(secret, safe=""),
             base64.b64encode(raw).decode("ascii")}
    if user is not None:
        for authzid in ("", user):
            blob = f"{authzid}\0{user}\0{secret}".encode()
            forms.add(base64.b64encode(blob).decode("ascii"))
            forms.add(binascii.hexlify(blob).decode("ascii"))
    # Inside a longer base64 blob the secret starts at an offset of 0, 1 or 2 modulo 3; the
    # 4-character groups made only of its own bytes are the same whatever surrounds it.
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + raw).decode("ascii")
        core = encoded[(4 if shift else 0):len(encoded) - 4]
        if len(core) >= 8:
            forms.add(core)
    return {form for form in forms if len(form) >= 4}


class Redactor:
    """Replaces every known form of the secrets it was given. Empty when there are none."""

    __slots__ = ("_forms",)

    def __init__(self, secrets: Iterable[tuple[str | None, str]] = ()) -> None:
        forms: set[str] = set()
        for user, secret in secrets:
            if secret:
                forms |= _forms(user, secret)
        # Longest first, so a longer form is masked before a shorter one inside it.
        self._forms = tuple(sorted(forms, key=len, reverse=True))

    def __bool__(self) -> bool:
        return bool(self._forms)

    def __call__(self, text: str) -> str:
        for form in self._forms:
            if form in text:
                text = text.replace(form, MASK)
        return text

    def __repr__(self) -> str:
        return f"Redactor({len(self._forms)} forms)"
