"""`--nagios` and its thresholds, shared by check, relay, sweep and domain
(docs/monitoring.md).

The ranges are parsed with nagiosplugin's Range (the plugin guidelines' syntax); the output is
report/nagios.py's; the state -> exit code table is cli/exits.py's. A usage error in this
mode is UNKNOWN (exit 3) with one status line on stdout (cli/app.py, `nagios_mode`).
nagiosplugin's own Check/Runtime is not used: it owns stdout, the exit and exception
handling, which here belong to typer and cli/exits.py (docs/architecture.md).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from smtpprobe.errors import UsageError

if TYPE_CHECKING:
    from nagiosplugin.range import Range

    from smtpprobe.models import CheckReport, DomainReport, RelayReport, SweepReport
    from smtpprobe.report.nagios import Thresholds

NAGIOS_FLAG = "--nagios"
CERT_WARNING = "30:"  # alert when fewer than 30 days are left
CERT_CRITICAL = "14:"

NagiosOpt = Annotated[bool, typer.Option(
    NAGIOS_FLAG, help="Print one monitoring-plugin status line with performance data and "
    "exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (Nagios, Icinga; docs/monitoring.md).")]
WarningOpt = Annotated[Optional[str], typer.Option(
    "--warning", "-w", help="With --nagios: WARNING when the response time in seconds is "
    "outside this range (plugin syntax: 2 means 0 to 2).", metavar="RANGE",
    show_default=False)]
CriticalOpt = Annotated[Optional[str], typer.Option(
    "--critical", "-c", help="With --nagios: CRITICAL when the response time in seconds is "
    "outside this range.", metavar="RANGE", show_default=False)]
CertWarningOpt = Annotated[Optional[str], typer.Option(
    "--cert-warning", help=f"With --nagios: WARNING when the certificate's days left are "
    f"outside this range (default {CERT_WARNING}, i.e. fewer than 30).", metavar="RANGE",
    show_default=False)]
CertCriticalOpt = Annotated[Optional[str], typer.Option(
    "--cert-critical", help=f"With --nagios: CRITICAL when the certificate's days left are "
    f"outside this range (default {CERT_CRITICAL}).", metavar="RANGE", show_default=False)]


def nagios_mode(argv: Sequence[str]) -> bool:
    """Whether the command line asks for plugin output (looked at before parsing, so that a
    usage error of the parser itself is UNKNOWN too)."""
    return NAGIOS_FLAG in argv


def _range(option: str, value: str | None) -> Range | None:
    if value is None:
        return None
    from nagiosplugin.range import Range

    try:
        return Range(value.strip())
    except ValueError as exc:
        raise UsageError(f"{option} {value!r}: not a range ({exc})") from None


def thresholds(nagios: bool, warning: str | None, critical: str | None,
                      cert_warning: str | None, cert_critical: str | None
                      ) -> Thresholds | None:
    """The thresholds with --nagios, None without it (then none may be given)."""
    if not nagios:
        given = [name for name, value in (("--warning", warning), ("--critical", critical),
                                          ("--cert-warning", cert_warning),
                                          ("--cert-critical", cert_critical)) if value]
        if given:
            raise UsageError(f"{given[0]} needs --nagios")
        return None
    from smtpprobe.report.nagios import Thresholds

    return Thresholds(_range("--warning", warning), _range("--critical", critical),
                      _range("--cert-warning", cert_warning or CERT_WARNING),
                      _range("--cert-critical", cert_critical or CERT_CRITICAL))


def out(report: CheckReport | RelayReport | SweepReport | DomainReport,
               thresholds: Thresholds, lang: str) -> int:
    """Write the plugin output of `report`; the exit code."""
    from smtpprobe.cli import exits
    from smtpprobe.models import CheckReport, DomainReport, RelayReport
    from smtpprobe.report import nagios

    state = exits.nagios_state(report)
    if isinstance(report, DomainReport):
        output = nagios.domain_output(report, state, thresholds, lang)
    elif isinstance(report, CheckReport):
        output = nagios.check_output(report, state, thresholds, lang)
    elif isinstance(report, RelayReport):
        output = nagios.relay_output(report, state, thresholds, lang)
    else:
        output = nagios.sweep_output(report, state, thresholds, lang)
    sys.stdout.write(output.render())
    sys.stdout.flush()
    return exits.NAGIOS_CODES[output.state]


def nagios_unknown(message: str) -> int:
    """A usage error (or another fault before any check) as the plugin's UNKNOWN."""
    from smtpprobe.cli import exits
    from smtpprobe.report.nagios import unknown_output

    sys.stdout.write(unknown_output(message).render())
    sys.stdout.flush()
    return exits.NAGIOS_CODES[exits.NAGIOS_STATES["usage"]]
