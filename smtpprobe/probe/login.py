"""The login a sweep and a relay check share: which mechanism, whether the password may go,
and what the server's answer means.

The password is only sent when the connection protects it: encrypted with TLS 1.2 or newer
(RFC 8996), with a certificate that verifies for the host (for a server given by its address,
an iPAddress entry of that address, RFC 6125), unless the user allows otherwise. Mechanisms
are tried best first; the next one only when the server objects to the mechanism itself.
"""

from __future__ import annotations

from smtpprobe.core.classify import Classifier
from smtpprobe.core.recommendation import mechanism_order
from smtpprobe.core.tlsproblems import is_outdated, name_problem
from smtpprobe.models import (
    AuthOutcome,
    AuthResult,
    Category,
    Credentials,
    FailureKind,
    Stage,
    Step,
)
from smtpprobe.net.session import Session

NOT_TRIED = AuthOutcome(AuthResult.NOT_TRIED)


def auth_result(step: Step) -> AuthResult:
    """What the last step of one login attempt means."""
    if step.failure is not None or step.reply is None:
        if step.failure is not None and step.failure.kind is FailureKind.NOT_OFFERED:
            return AuthResult.NOT_OFFERED
        return AuthResult.ERROR
    reply = step.reply
    if reply.klass == 2:
        return AuthResult.OK
    if reply.klass == 4:
        return AuthResult.TEMPORARY
    if step.replied(534):
        return AuthResult.APP_PASSWORD
    if step.replied(530, 538):
        return AuthResult.TLS_REQUIRED
    category = step.finding.category if step.finding is not None else None
    if step.replied(535) or category is Category.AUTH_FAILED:
        return AuthResult.FAILED
    if category is Category.TLS_REQUIRED:
        return AuthResult.TLS_REQUIRED
    return AuthResult.METHOD_REJECTED


def _next_mechanism_may_help(step: Step) -> bool:
    # RFC 4954 6: 504 names the mechanism as unknown, 534 as too weak, 432 asks for a
    # password transition with this mechanism; another mechanism may then work. A 535 says
    # the credentials are wrong: more attempts would only bring a lockout closer.
    return step.replied(504, 534, 432)


def oauth_explained(steps: list[Step], mechanism: str, here: str) -> tuple[FailureKind, str] | None:
    """The provider's error of a token login, decoded from its 334 challenge (RFC 7628
    3.2.2), as an observation; None when there was none."""
    from smtpprobe.core.wire import oauth_error

    for step in steps:
        if step.continues and step.reply is not None:
            error = oauth_error(step.reply.text)
            if error is None:
                continue
            facts = [f"status {error.status}"]
            if error.scope:
                facts.append(f"scope needed: {error.scope}")
            if error.schemes:
                facts.append(f"schemes: {error.schemes}")
            if error.configuration:
                facts.append(f"issuer: {error.configuration}")
            return (FailureKind.OAUTH_ERROR,
                    f"{here} refused the {mechanism} token; the provider's error says "
                    f"{'; '.join(facts)}")
    return None


async def login(session: Session, creds: Credentials, classifier: Classifier,
                steps: list[Step], *, allow_plaintext: bool, tls_expected: bool = False,
                verify: bool = True, allow_old_tls: bool = False,
                mechanism: str | None = None) -> AuthOutcome:
    """AUTH with the best mechanism offered; the classified steps are added to `steps`.

    The password is withheld on an unencrypted connection unless `allow_plaintext`, and even
    then when TLS was expected here (a STARTTLS port that did not offer it looks exactly like
    a man in the middle stripping it); over TLS whose certificate does not verify for the
    host (its name, or for an address its iPAddress entry) unless `verify` is off (anyone
    could present such a one); and over TLS 1.1 or older unless `allow_old_tls` (RFC 8996:
    those versions no longer protect what they carry).

    `mechanism` (--auth-mech): only that one; XOAUTH2 and OAUTHBEARER carry the credentials'
    password as an OAuth 2.0 access token, and are never chosen without it."""
    ep = session.endpoint
    here = ep.where
    caps = session.capabilities
    offered = caps.auth_mechanisms if caps is not None else ()
    encrypted = session.encrypted
    observe = classifier.observe
    if not offered:
        detail = f"{here} offers no AUTH" + (" after TLS" if encrypted else "")
        return AuthOutcome(AuthResult.NOT_OFFERED, finding=observe(
            Stage.AUTH, FailureKind.NOT_OFFERED, detail))
    order = mechanism_order(offered, encrypted=encrypted)
    if mechanism is not None:
        wanted = mechanism.upper()
        if wanted not in offered:
            return AuthOutcome(AuthResult.NOT_OFFERED, finding=observe(
                Stage.AUTH, FailureKind.NOT_OFFERED,
                f"{here} offers AUTH {' '.join(offered)}, not {wanted} (--auth-mech)"))
        order = [wanted]
    if not order:
        return AuthOutcome(AuthResult.NOT_OFFERED, finding=observe(
            Stage.AUTH, FailureKind.NOT_OFFERED,
            f"{here} offers only AUTH {' '.join(offered)}, which smtpprobe cannot use"))
    if not encrypted and tls_expected:
        return AuthOutcome(AuthResult.WITHHELD, finding=observe(
            Stage.AUTH, FailureKind.WITHHELD,
            f"{here} was expected to offer STARTTLS and did not (a downgrade would look "
            f"the same); the password was not sent (to test a login without TLS on "
            f"purpose, name the port as PORT:plain and add --allow-plaintext-auth)"))
    if not encrypted and not allow_plaintext:
        return AuthOutcome(AuthResult.WITHHELD, finding=observe(
            Stage.AUTH, FailureKind.WITHHELD,
            f"the connection to {here} is not encrypted; the password was not sent "
            f"(--allow-plaintext-auth would send it)"))
    tls = session.tls
    target = ep.name or ep.address
    if encrypted and verify and tls is not None and not tls.verified:
        return AuthOutcome(AuthResult.UNTRUSTED, finding=observe(
            Stage.AUTH, FailureKind.WITHHELD,
            f"the certificate of {here} does not verify ({tls.verify_error}); the password "
            f"was not sent (--cafile for a private CA, --no-verify to send it anyway)"))
    if encrypted and verify and tls is not None and tls.name_matches is False:
        advice = ("connect by a name the certificate covers, or --no-verify to send it "
                  "anyway") if tls.names else "--no-verify to send it anyway"
        return AuthOutcome(AuthResult.UNTRUSTED, finding=observe(
            Stage.AUTH, FailureKind.WITHHELD,
            f"the certificate of {here} does not verify for {target}: "
            f"{name_problem(tls, target)}; the password was not sent ({advice})"))
    if encrypted and tls is not None and is_outdated(tls) and not allow_old_tls:
        return AuthOutcome(AuthResult.WITHHELD, finding=observe(
            Stage.AUTH, FailureKind.WITHHELD,
            f"the connection to {here} uses {tls.version}, older than TLS 1.2 (RFC 8996); "
            f"the password was not sent (--allow-old-tls would send it)"))
    tried: list[str] = []
    outcome = NOT_TRIED
    for index, mech in enumerate(order):
        tried.append(mech)
        new = classifier.steps(await session.auth(creds.user, creds.password, mech))
        steps.extend(new)
        last = new[-1]
        finding = last.finding
        explained = oauth_explained(new, mech, here) if mech in ("XOAUTH2", "OAUTHBEARER") \
            else None
        if explained is not None and not last.ok:
            finding = observe(Stage.AUTH, *explained)
        outcome = AuthOutcome(auth_result(last), mech, tuple(tried), finding)
        if outcome.result is AuthResult.OK:
            return outcome
        more = index + 1 < len(order)
        if not (more and session.connected and _next_mechanism_may_help(last)):
            return outcome
    return outcome
