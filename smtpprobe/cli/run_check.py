"""Run `check` for one or many addresses once the CLI has validated everything: one
`asyncio.run`, results rendered in input order, one exit code.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from smtpprobe.cli import exits
from smtpprobe.core.address import Address
from smtpprobe.core.redact import Redactor
from smtpprobe.models import CheckReport, Verdict
from smtpprobe.probe.check import Checker, CheckOptions, KnowledgeLoader, check_all

if TYPE_CHECKING:
    from smtpprobe.core.knowledge.load import KnowledgeBase
    from smtpprobe.probe.batch import BatchOptions

class _InOrder:
    """Writes JSON lines in input order as soon as every earlier address is done."""

    def __init__(self, lang: str, redact: Redactor) -> None:
        self.lang = lang
        self.redact = redact
        self.ready: dict[int, CheckReport] = {}
        self.next = 0

    def __call__(self, index: int, report: CheckReport) -> None:
        from smtpprobe.report.json import check_dict, dumps

        self.ready[index] = report
        while self.next in self.ready:
            done = self.ready.pop(self.next)
            sys.stdout.write(dumps(check_dict(done, self.lang), self.redact, indent=None) + "\n")
            self.next += 1
        sys.stdout.flush()


def run_checks(kb: KnowledgeBase | KnowledgeLoader, options: CheckOptions,
               addresses: Sequence[Address], *,
               lang: str, as_json: bool, verbose: bool,
               redactor: Redactor | None = None, batch: BatchOptions | None = None) -> int:
    redact = redactor or Redactor()
    many = len(addresses) > 1
    show_progress = many and not as_json and sys.stderr.isatty()
    stream = _InOrder(lang, redact) if as_json and many else None

    async def go() -> list[CheckReport]:
        if not many:
            return [await Checker(kb, options, redactor=redact).check(addresses[0])]
        from smtpprobe.probe.batch import Pooled

        checker = Checker(kb, options, redactor=redact, strategy=Pooled(batch))
        if not show_progress:
            return await check_all(checker, addresses, on_done=stream)
        from rich.console import Console
        from rich.progress import Progress

        with Progress(console=Console(stderr=True), transient=True) as progress:
            task = progress.add_task("checking", total=len(addresses))
            return await check_all(checker, addresses,
                                    on_done=lambda _i, _r: progress.advance(task))

    reports = asyncio.run(go())
    if as_json:
        if stream is None:
            from smtpprobe.report.json import check_dict, dumps

            sys.stdout.write(dumps(check_dict(reports[0], lang), redact, indent=2) + "\n")
    else:
        from smtpprobe.report.text import console
        from smtpprobe.report.text_check import check_view

        out = console()
        for index, report in enumerate(reports):
            if index:
                out.print()
            out.print(check_view(report, lang, redact, verbose=verbose))
        if many:
            counts = {v: sum(1 for r in reports if r.verdict is v) for v in Verdict}
            out.print(", ".join(f"{n} {v.value}" for v, n in counts.items() if n))
    return exits.for_checks(reports)
