"""Many addresses at a glance: one row per address (address, verdict, code, category, status,
the mail host that answered) for the compact table, CSV and the summary that names the
rejected and deferred ones. Pure: values in, rows and words out; no rich.

An input line that is no address has a row too (`invalid`, with its line number), as has an
address that an interrupted run did not finish (`interrupted`).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence

from smtpprobe.models import CheckReport, InvalidInput
from smtpprobe.report.words import text as t

COLUMNS = ("address", "verdict", "code", "enhanced_code", "category", "address_status",
           "mx_host", "line", "detail")
INVALID = "invalid"
INTERRUPTED = "interrupted"

Item = CheckReport | InvalidInput | str  # a str: an address the run did not finish


def answering_host(report: CheckReport) -> str:
    """The mail host whose conversation gave the verdict; else the last one that replied."""
    replied = ""
    for host in report.hosts:
        if any(step.finding is report.finding for step in host.steps):
            return host.host
        if any(step.reply is not None for step in host.steps):
            replied = host.host
    return replied


def row(item: Item, line: int | None = None) -> dict[str, str]:
    if isinstance(item, InvalidInput):
        return {"address": item.text, "verdict": INVALID, "code": "", "enhanced_code": "",
                "category": "", "address_status": "", "mx_host": "",
                "line": str(item.line or ""), "detail": item.error}
    if isinstance(item, str):
        return {"address": item, "verdict": INTERRUPTED, "code": "", "enhanced_code": "",
                "category": "", "address_status": "", "mx_host": "",
                "line": str(line or ""), "detail": ""}
    finding = item.finding
    return {"address": item.address, "verdict": str(item.verdict),
            "code": str(finding.code) if finding.code is not None else "",
            "enhanced_code": finding.enhanced_code or "", "category": str(finding.category),
            "address_status": str(item.address_status), "mx_host": answering_host(item),
            "line": str(line or ""), "detail": finding.evidence}


def csv_header() -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(COLUMNS)
    return out.getvalue()


def csv_row(item: Item, line: int | None = None) -> str:
    out = io.StringIO()
    values = row(item, line)
    csv.writer(out, lineterminator="\n").writerow(_cell(values[c]) for c in COLUMNS)
    return out.getvalue()


def _cell(value: str) -> str:
    # A cell that starts like a formula would run as one when a spreadsheet opens the file
    # (server text is untrusted): prefix it with a quote, as OWASP advises for CSV export.
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def summary(items: Sequence[Item], lang: str, *, names: int = 10) -> list[str]:
    """The counts per verdict, then the rejected and deferred addresses by name (the first
    `names` of each)."""
    rows = [row(item) for item in items]
    verdicts = [r["verdict"] for r in rows]
    order = ("accepted", "rejected", "deferred", "unreachable", INVALID, INTERRUPTED)
    counts = [(v, verdicts.count(v)) for v in order if v in verdicts]
    lines = [", ".join(f"{n} {t(f'list.{v}', lang)}" for v, n in counts)]
    for verdict in ("rejected", "deferred", "unreachable", INVALID):
        listed = [r["address"] for r in rows if r["verdict"] == verdict]
        if listed:
            shown = ", ".join(listed[:names])
            more = len(listed) - names
            if more > 0:
                shown += " " + t("list.more", lang, n=more)
            lines.append(f"{t(f'list.{verdict}', lang)}: {shown}")
    return lines
