"""Address lists as people have them: one address per line, `Name <addr>` lines, `#` comments,
a spreadsheet's CSV export with the addresses in one column, a byte-order mark and invisible
characters pasted from a web page. Pure: text in, entries out; the CLI reads the file.

Every line that is not blank or a comment becomes an `Entry` with its line number, so a bad
line can be reported as `invalid` where it stands instead of ending the run.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

from smtpprobe.core.address import (
    Address,
    address_part,
    check_text,
    parse_address,
    strip_invisible,
)
from smtpprobe.errors import UsageError
from smtpprobe.models import InvalidInput

MAX_FILE = 256 << 20  # bytes of --file read; a longer file is refused (exit 2), never cut


@dataclass(frozen=True, slots=True)
class Entry:
    line: int | None  # None for an address given as an argument
    text: str  # as found (before invisible characters were removed)
    address: str  # what remains to be parsed
    removed: tuple[str, ...] = ()  # invisible characters taken out, for a warning


def _entry(line: int | None, raw: str) -> Entry:
    cleaned, removed = strip_invisible(raw)
    return Entry(line, raw.strip(), address_part(cleaned), removed)


def from_arguments(values: list[str]) -> list[Entry]:
    return [_entry(None, value) for value in values]


def from_text(text: str, *, column: str | None = None) -> list[Entry]:
    """The entries of a list. `column` (a 1-based number or a header name) reads CSV."""
    text = text.removeprefix("\ufeff")
    if column is None:
        entries = []
        for number, line in enumerate(text.splitlines(), 1):
            stripped = line.strip()
            if stripped and not stripped.startswith("#"):
                entries.append(_entry(number, line))
        return entries
    return _from_csv(text, column)


def _from_csv(text: str, column: str) -> list[Entry]:
    sample = text[:8192]
    try:
        dialect: type[csv.Dialect] | csv.Dialect = csv.Sniffer().sniff(sample, ",;\t|")
    except csv.Error:
        dialect = csv.excel
    rows = csv.reader(io.StringIO(text), dialect)
    index: int | None = int(column) - 1 if column.isdigit() else None
    if index is not None and index < 0:
        raise UsageError("--column counts from 1")
    entries: list[Entry] = []
    for number, row in enumerate(rows, 1):
        if not any(cell.strip() for cell in row):
            continue
        if index is None:
            names = [cell.strip().removeprefix("\ufeff").lower() for cell in row]
            if column.strip().lower() not in names:
                raise UsageError(f"--column {column!r}: the first row has no such column "
                                 f"(it has {', '.join(repr(c) for c in row[:8])})")
            index = names.index(column.strip().lower())
            continue  # the header row
        cell = row[index] if index < len(row) else ""
        if number == 1 and "@" not in cell:
            continue  # a header row above numbered columns
        if cell.strip().startswith("#"):
            continue
        entries.append(_entry(number, cell))
    return entries


def parse_entry(entry: Entry) -> Address | InvalidInput:
    """The entry's address, or why it is not one."""
    try:
        check_text(entry.text)  # before the display name is taken off: CR LF hides there too
        parsed = parse_address(entry.address)
    except UsageError as exc:
        # The text as a Python literal would show it: control characters escaped, so that
        # writing it back to a terminal or a CSV file cannot do harm.
        shown = entry.text if entry.text.isprintable() else repr(entry.text)[1:-1]
        return InvalidInput(line=entry.line, text=shown, error=str(exc))
    assert parsed is not None
    return parsed
