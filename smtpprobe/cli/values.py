"""Checks of option values that need no CLI framework: the commands use them through
cli/options.py, and start-up (cli/startup.py) uses them before typer is imported. Each turns
one value into what the flow needs or a `UsageError` (one line, exit 2) before any traffic."""

from __future__ import annotations

import re

from smtpprobe.errors import UsageError

TYPE_CHECKING = False  # not typing's: start-up imports this module before its first packet
if TYPE_CHECKING:
    from pathlib import Path

_PEM_CERT = re.compile(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", re.S)


def default_helo() -> str:
    import socket

    from smtpprobe.core.address import check_host

    try:
        return check_host(socket.gethostname())
    except UsageError:
        return "localhost"


def parse_helo_option(helo: str | None) -> str:
    """--helo, or this machine's name."""
    from smtpprobe.core.address import parse_helo

    return parse_helo(helo) if helo else default_helo()


def check_cafile(cafile: Path | str | None) -> str | None:
    """--cafile must hold PEM certificates. Checked with the standard library only (base64,
    as ssl.PEM_cert_to_DER_cert does): the certificates themselves are parsed (with
    cryptography) after the first handshake."""
    if cafile is None:
        return None
    import binascii

    try:
        with open(cafile, "rb") as handle:
            text = handle.read().decode("ascii", "replace")
    except OSError as exc:
        raise UsageError(f"--cafile {cafile}: {exc.strerror or exc}") from None
    blocks = _PEM_CERT.findall(text)
    if not blocks:
        raise UsageError(f"--cafile {cafile}: no PEM certificates in it")
    for block in blocks:
        body = block.removeprefix("-----BEGIN CERTIFICATE-----").removesuffix(
            "-----END CERTIFICATE-----")
        try:
            der = binascii.a2b_base64(body.encode("ascii", "strict"))
        except (ValueError, UnicodeError):
            der = b""
        if der[:1] != b"\x30":  # an X.509 certificate is a DER SEQUENCE
            raise UsageError(f"--cafile {cafile}: a certificate in it is not valid PEM")
    return str(cafile)
