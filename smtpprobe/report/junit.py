"""JUnit XML for `smtpprobe relay --junit FILE`, in the shape GitLab, GitHub (test-reporter
actions) and Jenkins read: <testsuites><testsuite><testcase> with <failure> or <skipped>.

Pure: builds a string. Every text is redacted, and characters XML 1.0 cannot carry (most
control characters, which a hostile server can send) are replaced, so the file always parses.
"""

from __future__ import annotations

import datetime as dt
import re
import xml.etree.ElementTree as ET

from smtpprobe.core.redact import Redactor
from smtpprobe.models import CheckStatus, RelayCheck, RelayReport, Step
from smtpprobe.report.submit import note_text
from smtpprobe.report.submit import text as t

CLASSNAME = "smtpprobe.probe.relay"

# XML 1.0 section 2.2: Char ::= #x9 | #xA | #xD | [#x20-#xD7FF] | [#xE000-#xFFFD] | ...
_NOT_XML = re.compile("[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _clean(value: str, redact: Redactor) -> str:
    return _NOT_XML.sub("\ufffd", redact(value))


def case_name(check: RelayCheck) -> str:
    return f"{check.name} {check.subject}" if check.subject else check.name


def _transcript(steps: tuple[Step, ...]) -> list[str]:
    lines: list[str] = []
    for step in steps:
        if step.command:
            lines.append((" == " if step.command.startswith("(") else " -> ") + step.command)
        if step.reply is not None:
            lines += [f"<-  {line}" for line in step.reply.render().split("\n")]
        elif step.failure is not None:
            lines.append(f" ** {step.failure.kind}: {step.failure.detail}")
    return lines


def _failure_text(check: RelayCheck, lang: str) -> str:
    finding = check.finding
    lines: list[str] = []
    if finding is not None:
        title = finding.title.get(lang) if finding.title else str(finding.category)
        lines.append(f"{title} ({finding.category}"
                     + (", temporary: a later run may pass)" if check.temporary else ")"))
        lines.append(f"{t('label.cause', lang)}: {finding.cause.get(lang)}")
        lines.append(f"{t('label.remedy', lang)}: {finding.remedy.get(lang)}")
        if finding.evidence:
            lines.append(f"{t('label.server_said', lang)}: {finding.evidence}")
        lines.append(f"{t('label.rule', lang)}: {' '.join([finding.rule, *finding.references])}")
    if check.note is not None:
        lines.append(note_text(check.note, lang))
    if check.steps:
        lines.append(f"{t('label.transcript', lang)}:")
        lines += _transcript(check.steps)
    return "\n".join(lines)


def relay_junit(report: RelayReport, lang: str, redact: Redactor, *,
                timestamp: dt.datetime | None = None) -> str:
    """The report as a JUnit XML document (one test case per check)."""
    when = (timestamp or dt.datetime.now(dt.UTC)).replace(microsecond=0)
    failures = sum(1 for c in report.checks if c.status is CheckStatus.FAIL)
    skipped = sum(1 for c in report.checks if c.status is CheckStatus.SKIP)
    seconds = f"{report.elapsed_ms / 1000:.3f}"
    counts = {"tests": str(len(report.checks)), "failures": str(failures), "errors": "0",
              "skipped": str(skipped), "time": seconds}
    root = ET.Element("testsuites", {"name": "smtpprobe", **counts})
    suite = ET.SubElement(root, "testsuite", {
        "name": _clean(f"smtpprobe relay {report.host}:{report.port}", redact), **counts,
        "timestamp": when.strftime("%Y-%m-%dT%H:%M:%S"),
        "hostname": _clean(report.address or report.host, redact),
    })
    props = ET.SubElement(suite, "properties")
    for name, value in (("verdict", str(report.verdict)), ("mode", str(report.mode)),
                        ("address", report.address), ("queue_id", report.queue_id or ""),
                        ("message_id", report.message_id or "")):
        ET.SubElement(props, "property", {"name": name, "value": _clean(value, redact)})
    for check in report.checks:
        case = ET.SubElement(suite, "testcase", {
            "classname": CLASSNAME, "name": _clean(case_name(check), redact),
            "time": f"{check.elapsed_ms / 1000:.3f}",
        })
        if check.status is CheckStatus.FAIL:
            finding = check.finding
            title = (finding.title.get(lang) if finding is not None and finding.title
                     else str(finding.category) if finding is not None else check.name)
            kind = str(finding.category) if finding is not None else "unknown"
            if check.temporary:
                kind += " (temporary)"
            failure = ET.SubElement(case, "failure", {"message": _clean(title, redact),
                                                      "type": _clean(kind, redact)})
            failure.text = _clean(_failure_text(check, lang), redact)
        elif check.status is CheckStatus.SKIP:
            message = note_text(check.note, lang) if check.note else "skipped"
            ET.SubElement(case, "skipped", {"message": _clean(message, redact)})
        else:
            out = ET.SubElement(case, "system-out")
            out.text = _clean("\n".join(_transcript(check.steps)), redact)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") \
        + "\n"
