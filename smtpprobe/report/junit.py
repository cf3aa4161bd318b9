"""JUnit XML for `smtpprobe relay --junit FILE`, in the shape GitLab, GitHub (test-reporter
actions) and Jenkins read: <testsuites><testsuite><testcase> with <failure> or <skipped>.

Pure: builds a string. Characters XML 1.0 cannot carry (most control characters, which a
hostile server can send) are replaced in every text and attribute of the finished tree, so the
file always parses.
"""

from __future__ import annotations

import datetime as dt
import re
import xml.etree.ElementTree as ET

from smtpprobe.models import CheckStatus, RelayCheck, RelayReport
from smtpprobe.report.transcript import plain, transcript_lines
from smtpprobe.report.words import note_text
from smtpprobe.report.words import text as t

CLASSNAME = "smtpprobe.probe.relay"

# XML 1.0 section 2.2: Char ::= #x9 | #xA | #xD | [#x20-#xD7FF] | [#xE000-#xFFFD] | ...
_NOT_XML = re.compile("[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml_safe(root: ET.Element) -> None:
    """Replace what XML 1.0 cannot carry, in every text, tail and attribute of the tree."""
    for element in root.iter():
        if element.text:
            element.text = _NOT_XML.sub("\ufffd", element.text)
        if element.tail:
            element.tail = _NOT_XML.sub("\ufffd", element.tail)
        for name, value in list(element.attrib.items()):
            element.set(name, _NOT_XML.sub("\ufffd", value))


def case_name(check: RelayCheck) -> str:
    return f"{check.name} {check.subject}" if check.subject else check.name


def _failure_text(check: RelayCheck, lang: str) -> str:
    finding = check.finding
    lines: list[str] = []
    if finding is not None:
        title = finding.title.get(lang) if finding.title else str(finding.category)
        lines.append(f"{title} ({finding.category}"
                     + (", temporary: a later run may pass)" if check.temporary else ")"))
        lines.append(f"{t('cause', lang)}: {finding.cause.get(lang)}")
        lines.append(f"{t('remedy', lang)}: {finding.remedy.get(lang)}")
        if finding.evidence:
            lines.append(f"{t('server_said', lang)}: {finding.evidence}")
        lines.append(f"{t('rule', lang)}: {' '.join([finding.rule, *finding.references])}")
    if check.note is not None:
        lines.append(note_text(check.note, lang))
    if check.steps:
        lines.append(f"{t('transcript', lang)}:")
        lines += [plain(line) for line in transcript_lines(check.steps)]
    return "\n".join(lines)


def relay_junit(report: RelayReport, lang: str, *,
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
        "name": f"smtpprobe relay {report.host}:{report.port}", **counts,
        "timestamp": when.strftime("%Y-%m-%dT%H:%M:%S"),
        "hostname": report.address or report.host,
    })
    props = ET.SubElement(suite, "properties")
    from smtpprobe import __version__

    for name, value in (("smtpprobe_version", __version__),
                        ("verdict", str(report.verdict)), ("mode", str(report.mode)),
                        ("address", report.address), ("queue_id", report.queue_id or ""),
                        ("message_id", report.message_id or "")):
        ET.SubElement(props, "property", {"name": name, "value": value})
    for check in report.checks:
        case = ET.SubElement(suite, "testcase", {
            "classname": CLASSNAME, "name": case_name(check),
            "time": f"{check.elapsed_ms / 1000:.3f}",
        })
        if check.status is CheckStatus.FAIL:
            finding = check.finding
            title = (finding.title.get(lang) if finding is not None and finding.title
                     else str(finding.category) if finding is not None else check.name)
            kind = str(finding.category) if finding is not None else "unknown"
            if check.temporary:
                kind += " (temporary)"
            failure = ET.SubElement(case, "failure", {"message": title, "type": kind})
            failure.text = _failure_text(check, lang)
        elif check.status is CheckStatus.SKIP:
            message = note_text(check.note, lang) if check.note else "skipped"
            ET.SubElement(case, "skipped", {"message": message})
        else:
            out = ET.SubElement(case, "system-out")
            out.text = "\n".join(plain(line) for line in transcript_lines(check.steps))
    _xml_safe(root)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") \
        + "\n"
