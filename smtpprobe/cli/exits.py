"""Every exit code of the command line, in one table (docs/check.md, docs/relay.md).

0 accepted / passed, 1 rejected / failed, 2 usage error (one line on stderr, before any
traffic), 3 deferred, unreachable or temporary, 130 interrupted. Imports nothing heavy: the
verdict enums are looked up by value.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from smtpprobe.models import CheckReport, DomainReport, RelayReport, SweepReport

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


def for_domain(report: DomainReport) -> int:
    """`domain`: 0 when every check is ok or info, 1 when any failed, 3 when the rest are
    warnings or could not be checked."""
    counts = report.counts()
    if counts["fail"]:
        return FAILED
    if counts["warn"] or counts["unknown"]:
        return TEMPORARY
    return OK


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
    "domain": f"Exit codes: {OK} every check ok (or a note), {FAILED} a check failed, "
              f"{USAGE} usage error, {TEMPORARY} only warnings or checks that could not be "
              f"done, {INTERRUPTED} interrupted.",
}


# --- --nagios (docs/monitoring.md) -------------------------------------------------------
# The monitoring-plugins guidelines' states and their exit codes, and which state each
# outcome is: the one table of the plugin mode. A deferred address or a temporary relay
# failure may pass by itself (WARNING); a refusal, a failed check or a server that cannot be
# reached is CRITICAL; anything that kept smtpprobe from checking (a usage error, an
# interruption) is UNKNOWN. Thresholds can only make a state worse (report/nagios.py).
NAGIOS_CODES = {"OK": 0, "WARNING": 1, "CRITICAL": 2, "UNKNOWN": 3}
NAGIOS_STATES = {
    # check: the verdict
    "accepted": "OK", "rejected": "CRITICAL", "deferred": "WARNING", "unreachable": "CRITICAL",
    # relay: the verdict
    "pass": "OK", "fail": "CRITICAL", "temporary": "WARNING",
    # sweep: working settings found, none, none for now
    "usable": "OK", "unusable": "CRITICAL", "unusable_for_now": "WARNING",
    # domain: the worst check status (fail, then unknown, then warn; ok and info are OK)
    "domain_ok": "OK", "domain_warn": "WARNING", "domain_fail": "CRITICAL",
    "domain_unknown": "UNKNOWN",
    # no check at all
    "usage": "UNKNOWN", "interrupted": "UNKNOWN",
}


def nagios_state(report: CheckReport | RelayReport | SweepReport | DomainReport) -> str:
    """The plugin state of a report's outcome, before thresholds."""
    from smtpprobe.models import DomainReport, SweepReport

    if isinstance(report, DomainReport):
        counts = report.counts()
        worst = next((s for s in ("fail", "unknown", "warn") if counts[s]), "ok")
        outcome = f"domain_{worst}"
    elif isinstance(report, SweepReport):
        code = for_sweep(report)
        outcome = {OK: "usable", FAILED: "unusable"}.get(code, "unusable_for_now")
    else:
        outcome = report.verdict.value
    return NAGIOS_STATES[outcome]
