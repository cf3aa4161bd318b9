"""Every exit code of the command line, in one table (docs/check.md, docs/relay.md).

0 accepted / passed, 1 rejected / failed, 2 usage error (one line on stderr, before any
traffic), 3 deferred, unreachable or temporary, 130 interrupted. Imports nothing heavy: the
verdict enums are looked up by value.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from smtpprobe.models import CheckReport, RelayReport, SweepReport

OK = 0
FAILED = 1
USAGE = 2
TEMPORARY = 3
INTERRUPTED = 130  # Ctrl-C (128 + SIGINT)
TERMINATED = 143  # SIGTERM (128 + 15)

# Verdict and RelayVerdict values -> exit code.
_BY_VERDICT = {
    "accepted": OK, "rejected": FAILED, "deferred": TEMPORARY, "unreachable": TEMPORARY,
    "pass": OK, "fail": FAILED, "temporary": TEMPORARY,
}


def worst(codes: Iterable[int]) -> int:
    """One code for many results: any failure, else anything temporary, else success."""
    found = set(codes)
    for code in (FAILED, TEMPORARY):
        if code in found:
            return code
    return OK


def for_checks(reports: Iterable[CheckReport]) -> int:
    """`check`: 0 when every address was accepted, 1 when any was rejected, else 3."""
    return worst(_BY_VERDICT[r.verdict.value] for r in reports)


def for_relay(report: RelayReport) -> int:
    return _BY_VERDICT[report.verdict.value]


def for_sweep(report: SweepReport) -> int:
    """0: working settings found; 1: none; 3: none, and the likely cause may pass (timeouts,
    4xx)."""
    rec = report.recommendation
    if rec.usable:
        return OK
    return TEMPORARY if rec.finding is not None and rec.finding.retryable else FAILED


# The exit codes as each command's help shows them (one place, like the codes themselves).
HELP = {
    "check": f"Exit codes: {OK} every address accepted, {FAILED} an address rejected or an "
             f"input line invalid, {USAGE} usage error, {TEMPORARY} deferred or unreachable "
             f"(and none rejected), {INTERRUPTED} interrupted, {TERMINATED} terminated.",
    "sweep": f"Exit codes: {OK} working settings found, {FAILED} none, {USAGE} usage error, "
             f"{TEMPORARY} none for now (the cause may pass), {INTERRUPTED} interrupted.",
    "relay": f"Exit codes: {OK} every check passed, {FAILED} a check failed, {USAGE} usage "
             f"error, {TEMPORARY} only temporary failures, {INTERRUPTED} interrupted.",
    "explain": f"Exit codes: {OK} explained, {USAGE} usage error.",
}
