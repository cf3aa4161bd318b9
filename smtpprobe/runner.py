"""Run `check` for one or many addresses once the CLI has validated everything: one
`asyncio.run`, results rendered in input order, one exit code.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence

from .address import Address
from .knowledge import KnowledgeBase
from .models import CheckReport, Verdict
from .probe import EXIT_CODES, Checker, CheckOptions
from .redact import Redactor

MAX_CONCURRENT_CHECKS = 20


def exit_code(reports: Sequence[CheckReport]) -> int:
    """0 when every address was accepted, 1 when any was rejected, else 3."""
    codes = {EXIT_CODES[r.verdict] for r in reports}
    if 1 in codes:
        return 1
    if 3 in codes:
        return 3
    return 0


async def check_all(checker: Checker, addresses: Sequence[Address], *,
                    on_done: object = None) -> list[CheckReport]:
    """Check every address; `--deadline` bounds the whole command, not each address."""
    limit = asyncio.Semaphore(MAX_CONCURRENT_CHECKS)
    deadline = asyncio.get_running_loop().time() + checker.options.deadline

    async def one(address: Address) -> CheckReport:
        async with limit:
            report = await checker.check(address, deadline=deadline)
        if callable(on_done):
            on_done(report)
        return report

    return list(await asyncio.gather(*(one(a) for a in addresses)))


def run_checks(kb: KnowledgeBase, options: CheckOptions, addresses: Sequence[Address], *,
               lang: str, as_json: bool, verbose: bool,
               redactor: Redactor | None = None) -> int:
    redact = redactor or Redactor()
    checker = Checker(kb, options, redactor=redact)
    show_progress = len(addresses) > 1 and not as_json and sys.stderr.isatty()

    async def go() -> list[CheckReport]:
        if not show_progress:
            return await check_all(checker, addresses)
        from rich.progress import Progress

        with Progress(transient=True) as progress:
            task = progress.add_task("checking", total=len(addresses))
            return await check_all(checker, addresses,
                                   on_done=lambda _: progress.advance(task))

    reports = asyncio.run(go())
    if as_json:
        from .report import check_dict, dumps

        for report in reports:
            sys.stdout.write(dumps(check_dict(report, lang), redact,
                                   indent=2 if len(reports) == 1 else None) + "\n")
    else:
        from .render import check_view, console

        out = console()
        for index, report in enumerate(reports):
            if index:
                out.print()
            out.print(check_view(report, lang, redact, verbose=verbose))
        if len(reports) > 1:
            counts = {v: sum(1 for r in reports if r.verdict is v) for v in Verdict}
            out.print(", ".join(f"{n} {v.value}" for v, n in counts.items() if n))
    return exit_code(reports)
