"""Check addresses one by one, each on its own connections: the reference the batch engine must
agree with, as a command for bench/many.py. Same options as `smtpprobe check`'s network ones;
prints one JSON object per line, in input order.

usage: python bench/one_by_one.py FILE --resolver HOST:PORT --port N --cafile PEM --helo NAME
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from smtpprobe.cli.exits import for_checks as exit_code
from smtpprobe.core.address import parse_address
from smtpprobe.core.knowledge import load as knowledge
from smtpprobe.net.dns import parse_resolver
from smtpprobe.probe.check import Checker, CheckOptions, check_all
from smtpprobe.report.json import check_dict, dumps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("file")
    parser.add_argument("--resolver", required=True)
    parser.add_argument("--port", type=int, default=25)
    parser.add_argument("--cafile")
    parser.add_argument("--helo", required=True)
    parser.add_argument("--timeout", type=float, default=10.0)
    args = parser.parse_args()
    with open(args.file, encoding="utf-8") as handle:
        lines = [line.strip() for line in handle if line.strip() and not line.startswith("#")]
    addresses = []
    for line in lines:
        address = parse_address(line)
        assert address is not None
        addresses.append(address)
    options = CheckOptions(helo=args.helo, port=args.port, cafile=args.cafile,
                           timeout=args.timeout, deadline=60.0 + 2.0 * len(addresses),
                           nameservers=(parse_resolver(args.resolver),))
    checker = Checker(knowledge.load(), options)
    reports = asyncio.run(check_all(checker, addresses))
    for report in reports:
        sys.stdout.write(dumps(check_dict(report, "en"), indent=None) + "\n")
    sys.exit(exit_code(reports))


if __name__ == "__main__":
    main()
