"""`smtpprobe lab`: serve lab scenarios on loopback, to try smtpprobe (or any client) by hand."""

from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer

from smtpprobe.errors import UsageError

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@app.command()
def lab(
    scenarios: Annotated[Optional[list[str]], typer.Argument(
        help="Scenario names (see --list).", show_default=False)] = None,
    host: Annotated[str, typer.Option("--host",
                                      help="Loopback address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="First port (0: any free ports).")] = 0,
    list_them: Annotated[bool, typer.Option("--list", help="List the scenarios and exit.")] = False,
) -> None:
    """Serve lab scenarios on loopback until Ctrl-C, to try smtpprobe (or any client) against."""
    from smtpprobe.core.address import parse_ip, parse_port
    from smtpprobe.lab.smtp import SCENARIOS, describe, run_forever

    if list_them:
        for name, summary in describe():
            sys.stdout.write(f"{name:20} {summary}\n")
        return
    if not scenarios:
        raise UsageError("name at least one scenario (see smtpprobe lab --list)")
    unknown = [s for s in scenarios if s not in SCENARIOS]
    if unknown:
        raise UsageError(f"unknown scenario {unknown[0]!r} (see smtpprobe lab --list)")
    address = parse_ip(host, what="--host")
    import ipaddress

    if not ipaddress.ip_address(address).is_loopback:
        raise UsageError(f"--host {address} is not a loopback address; the lab serves only "
                         f"127.0.0.0/8 and ::1")
    first = parse_port(port) if port else 0
    import asyncio

    try:
        asyncio.run(run_forever(scenarios, address, first,
                                write=lambda line: print(line, flush=True)))
    except KeyboardInterrupt:
        return
    except OSError as exc:
        raise UsageError(f"cannot listen on {address}: {exc.strerror or exc}") from None
