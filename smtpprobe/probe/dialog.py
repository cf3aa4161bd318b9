"""The one opening sequence: connect, EHLO (HELO), STARTTLS, EHLO again.

Every flow opens a conversation the same way; they differ only in what they make of it. A
check retries without TLS when the handshake breaks (as an opportunistic MTA does), a sweep
reports the port as it found it, a relay check fails its `connect` or `tls` check, and the
open-relay test gives up with "cannot tell". So `open_dialog` decides nothing: it returns
what happened as an `Opening` and each caller applies its own policy to it.

The steps come back unclassified, in order; callers classify them once, with the rest.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

from smtpprobe.models import Capabilities, Step

if TYPE_CHECKING:
    from smtpprobe.core.certs import TrustStore
    from smtpprobe.net.session import Session


class Tls(StrEnum):
    """How the conversation's encryption turned out."""

    NOT_WANTED = "not_wanted"  # plain on purpose (--no-starttls, PORT:plain, --tls none)
    IMPLICIT = "implicit"  # TLS from the first byte (port 465, RFC 8314 3.3)
    NOT_OFFERED = "not_offered"  # the EHLO reply has no STARTTLS
    REFUSED = "refused"  # STARTTLS got an error reply; the plain connection may go on
    BROKEN = "broken"  # the handshake failed: the connection is gone (RFC 3207 4.1)
    UP = "up"  # STARTTLS and the handshake worked


@dataclass(slots=True)
class Opening:
    """What the opening sequence established."""

    session: Session
    plain: list[Step] = field(default_factory=list)  # connect and the first EHLO (HELO)
    secured: list[Step] = field(default_factory=list)  # STARTTLS and the EHLO after it
    greeted: bool = False  # a 220 greeting came
    hello: bool = False  # the first EHLO (or HELO) got a 250
    tls: Tls = Tls.NOT_WANTED
    ready: bool = False  # the session may go on to AUTH or MAIL

    @property
    def steps(self) -> list[Step]:
        return [*self.plain, *self.secured]

    @property
    def capabilities_before_tls(self) -> Capabilities | None:
        return self.session.capabilities_before_tls

    @property
    def capabilities(self) -> Capabilities | None:
        """What the last EHLO offered (after TLS when TLS is up)."""
        return self.session.capabilities


async def open_dialog(session: Session, *, starttls: bool, implicit_tls: bool = False,
                      trust: Callable[[], Awaitable[TrustStore]] | None = None,
                      on_greeting: Callable[[], None] | None = None) -> Opening:
    """Bring `session` to the point of AUTH or MAIL, as far as the server lets it.

    `starttls`: ask for STARTTLS when it is offered. `implicit_tls`: TLS from the first byte.
    `trust` gives the trust store for the certificate inspection after a STARTTLS handshake
    (it may still be loading: it is awaited while the EHLO after TLS is answered);
    `on_greeting` is called as soon as the server has greeted.
    """
    opening = Opening(session, tls=Tls.IMPLICIT if implicit_tls else Tls.NOT_WANTED)
    banner = await session.connect(implicit_tls=implicit_tls)
    opening.plain.append(banner)
    if not banner.replied(220):
        return opening
    opening.greeted = True
    if on_greeting is not None:
        on_greeting()
    hello = await session.hello()
    opening.plain.extend(hello)
    if not hello[-1].replied(250):
        return opening
    opening.hello = True
    if implicit_tls or not starttls:
        opening.ready = True
        return opening
    caps = session.capabilities
    if caps is None or not caps.starttls:
        opening.tls = Tls.NOT_OFFERED
        opening.ready = True
        return opening
    start = await session.starttls(inspect=False)
    opening.secured.append(start)
    if not start.replied(220):
        # RFC 3207 4: a refused STARTTLS leaves the plain connection usable; a broken
        # handshake leaves nothing.
        opening.tls = Tls.REFUSED if start.reply is not None and session.connected \
            else Tls.BROKEN
        opening.ready = opening.tls is Tls.REFUSED
        return opening
    opening.tls = Tls.UP
    # The certificate is inspected while the server answers the EHLO after the handshake: the
    # trust store (it may still be loading) and the inspection are not in the handshake's way.
    inspecting = asyncio.ensure_future(_inspect(session, trust))
    try:
        again = await session.hello()
    except BaseException:
        inspecting.cancel()
        raise
    await inspecting
    opening.secured.extend(again)
    opening.ready = again[-1].replied(250)
    return opening


async def _inspect(session: Session, trust: Callable[[], Awaitable[TrustStore]] | None) -> None:
    if trust is not None:
        session.trust = await trust()
    session.inspect_tls()
