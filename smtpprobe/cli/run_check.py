"""Run `check` for one or many addresses once the CLI has validated everything: one
`asyncio.run`, results written in input order as they become ready, one exit code.

Formats (docs/check.md): `text` (one address in detail; many as a compact table and a summary;
`-v` details for each), `table`, `csv`, `jsonl` (one JSON object per line and per address,
whatever the count: what `--json` gives) and `json` (one JSON array). Lines of the input that
are no address are reported as `invalid` where they stand.

Ctrl-C and SIGTERM end the run without losing finished work: every finished result is
written (JSON marks those out of input order), the rest as `interrupted`, one line on stderr,
exit 130 or 143.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from smtpprobe.cli import exits
from smtpprobe.core.address import Address
from smtpprobe.core.redact import Redactor
from smtpprobe.models import CheckReport, Credentials, InvalidInput
from smtpprobe.probe.check import Checker, CheckOptions, KnowledgeLoader, check_all

if TYPE_CHECKING:
    from smtpprobe.cli.startup import HeadStart
    from smtpprobe.core.knowledge.load import KnowledgeBase
    from smtpprobe.probe.batch import BatchOptions

FORMATS = ("text", "table", "csv", "jsonl", "json")
Item = Address | InvalidInput
Done = CheckReport | InvalidInput


class _Writer:
    """Writes results in input order as soon as every earlier one is done (streaming
    formats), or keeps them for the end (text, table)."""

    def __init__(self, fmt: str, lang: str, items: Sequence[Item],
                 lines: Sequence[int | None], *, verbose: bool) -> None:
        self.fmt = fmt
        self.verbose = verbose
        self.lang = lang
        self.items = items
        self.lines = lines
        self.done: dict[int, Done] = {}
        self.next = 0  # the first index not yet written
        self.first_json = True
        self.streaming = fmt in ("csv", "jsonl", "json")
        if fmt == "csv":
            from smtpprobe.report.checklist import csv_header

            sys.stdout.write(csv_header())
        elif fmt == "json":
            sys.stdout.write("[")

    def add(self, index: int, result: Done) -> None:
        self.done[index] = result
        if not self.streaming:
            return
        while self.next in self.done:
            self._write(self.next, self.done[self.next])
            self.next += 1
        sys.stdout.flush()

    def _doc(self, result: Done | str, line: int | None, **extra: Any) -> dict[str, Any]:
        from smtpprobe.report.json import CHECK_SCHEMA, check_dict

        if isinstance(result, CheckReport):
            doc = check_dict(result, self.lang)
        elif isinstance(result, InvalidInput):
            doc = {"schema": CHECK_SCHEMA, "address": result.text, "verdict": "invalid",
                   "line": result.line, "error": result.error}
        else:
            doc = {"schema": CHECK_SCHEMA, "address": result, "verdict": "interrupted"}
        if line is not None and "line" not in doc:
            doc["line"] = line
        doc.update(extra)
        return doc

    def _write(self, index: int, result: Done | str, **extra: Any) -> None:
        line = self.lines[index]
        if self.fmt == "csv":
            from smtpprobe.report.checklist import csv_row

            sys.stdout.write(csv_row(result, line))
            return
        from smtpprobe.report.json import dumps

        text = dumps(self._doc(result, line, **extra), indent=None)
        if self.fmt == "json":
            sys.stdout.write(("\n" if self.first_json else ",\n") + text)
            self.first_json = False
        else:
            sys.stdout.write(text + "\n")

    def finish(self, *, interrupted: bool) -> list[Done | str]:
        """Write what is left; returns every result in input order (a str: unfinished)."""
        results: list[Done | str] = [self.done.get(i, _name(item))
                                     for i, item in enumerate(self.items)]
        if self.streaming:
            for index in range(self.next, len(self.items)):
                if index in self.done:
                    # Finished, but after an earlier one that never did: out of input order.
                    self._write(index, self.done[index], out_of_order=True)
            for index in range(self.next, len(self.items)):
                if index not in self.done:
                    self._write(index, results[index])
            if self.fmt == "json":
                sys.stdout.write("\n]\n")
        else:
            self._text(results, interrupted=interrupted)
        sys.stdout.flush()
        return results

    def _text(self, results: list[Done | str], *, interrupted: bool) -> None:
        from smtpprobe.report.text import console
        from smtpprobe.report.text_check import check_view, list_table

        out = console()
        one = len(results) == 1
        if self.fmt == "text" and (one or self.verbose):
            for index, result in enumerate(results):
                if index:
                    out.print()
                if isinstance(result, CheckReport):
                    out.print(check_view(result, self.lang, verbose=self.verbose))
                else:
                    from smtpprobe.report.checklist import row

                    values = row(result, self.lines[index])
                    out.print(f"{values['address']}: {values['verdict']} {values['detail']}")
        else:
            out.print(list_table(results, self.lines, self.lang))
        if not one or interrupted:
            from smtpprobe.report.checklist import summary

            for line in summary(results, self.lang):
                out.print(line, highlight=False, markup=False)


def _name(item: Item) -> str:
    return item.smtp if isinstance(item, Address) else item.text


def run_checks(kb: KnowledgeBase | KnowledgeLoader, options: CheckOptions,
               items: Sequence[Item], *, lang: str, fmt: str, verbose: bool,
               lines: Sequence[int | None] | None = None,
               redactor: Redactor | None = None, batch: BatchOptions | None = None,
               credentials: Credentials | None = None, head: HeadStart | None = None) -> int:
    """Check `items` and write the results; the exit code. `head`: the head start of
    cli/startup.py, whose early check is taken over when it is this run's one check."""
    redact = redactor or Redactor()
    addresses = [(i, item) for i, item in enumerate(items) if isinstance(item, Address)]
    writer = _Writer(fmt, lang, items, lines or [None] * len(items), verbose=verbose)
    for index, item in enumerate(items):
        if isinstance(item, InvalidInput):
            writer.add(index, item)
    many = len(addresses) > 1
    show_progress = many and fmt in ("text", "table") and sys.stderr.isatty()
    stopped_by: list[int] = []

    def on_done(position: int, report: CheckReport) -> None:
        writer.add(addresses[position][0], report)

    async def checks() -> None:
        early = None if head is None else head.adopt(
            options, [address for _, address in addresses], credentials=credentials,
            packaged_knowledge=callable(kb))
        if early is not None:
            writer.add(addresses[0][0], await early)
            return
        if not addresses:
            return
        if not many:
            writer.add(addresses[0][0], await Checker(
                kb, options, redactor=redact, credentials=credentials).check(addresses[0][1]))
            return
        from smtpprobe.probe.batch import Pooled

        # With a login (a submission server) each address gets its own session: the pooled
        # sessions of the batch carry no login.
        checker = Checker(kb, options, redactor=redact, credentials=credentials,
                          strategy=None if credentials is not None else Pooled(batch))
        targets = [address for _, address in addresses]
        if not show_progress:
            await check_all(checker, targets, on_done=on_done)
            return
        from rich.console import Console
        from rich.progress import Progress

        from smtpprobe.report.words import text

        total = len(targets)
        # Addresses in flight, oldest first (dicts keep insertion order): the bar names the
        # mail domain of the one the run has waited on longest.
        pending: dict[int, str] = {}

        def describe(done: int) -> str:
            line = text("progress.checking", lang, done=done, total=total)
            oldest = next(iter(pending.values()), None)
            return line if oldest is None else line + " · " + text(
                "progress.waiting", lang, domain=oldest)

        with Progress(console=Console(stderr=True), transient=True) as progress:
            task = progress.add_task(describe(0), total=total)

            def started(position: int, address: Address) -> None:
                pending[position] = address.domain
                if len(pending) == 1:
                    progress.update(task, description=describe(0))

            def advance(position: int, report: CheckReport) -> None:
                on_done(position, report)
                pending.pop(position, None)
                done = len(writer.done) - (len(items) - total)
                progress.update(task, advance=1, description=describe(done))

            await check_all(checker, targets, on_done=advance, on_start=started)

    async def go() -> None:
        loop = asyncio.get_running_loop()
        main = asyncio.current_task()
        assert main is not None
        for signum in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(signum, _stop, main, signum, stopped_by)
            except (NotImplementedError, RuntimeError, ValueError):  # not the main thread
                pass
        try:
            await checks()
        except asyncio.CancelledError:
            if not stopped_by:
                raise

    try:
        if head is not None:
            head.run(go())
        else:
            asyncio.run(go())
    except KeyboardInterrupt:
        stopped_by.append(signal.SIGINT)
    interrupted = bool(stopped_by)
    results = writer.finish(interrupted=interrupted)
    if interrupted:
        from smtpprobe.report.words import text

        finished = sum(1 for r in results if isinstance(r, CheckReport))
        said = text("interrupted", lang, done=finished, total=len(addresses))
        sys.stderr.write(f"smtpprobe: {said}\n")
        return exits.TERMINATED if stopped_by[0] == signal.SIGTERM else exits.INTERRUPTED
    reports = [r for r in results if isinstance(r, CheckReport)]
    invalid = any(isinstance(r, InvalidInput) for r in results)
    return exits.worst([exits.for_checks(reports), exits.FAILED if invalid else exits.OK])


def _stop(task: asyncio.Task[Any], signum: int, stopped_by: list[int]) -> None:
    if not stopped_by:
        stopped_by.append(signum)
        task.cancel()
