"""JUnit XML for `relay --junit`: the structure GitLab, GitHub test reporters and Jenkins read
(testsuites/testsuite/testcase with failure or skipped), built from hand-made reports."""

from __future__ import annotations

import base64
import datetime as dt
import xml.etree.ElementTree as ET

import pytest

from smtpprobe.core.classify import classify_failure, classify_text
from smtpprobe.core.knowledge.load import KnowledgeBase
from smtpprobe.core.redact import Redactor
from smtpprobe.core.replies import parse_reply
from smtpprobe.core.verdict import relay_verdict as verdict
from smtpprobe.models import (
    CheckStatus,
    Failure,
    FailureKind,
    PortMode,
    Reason,
    RelayCheck,
    RelayReport,
    RelayVerdict,
    Stage,
    Step,
)
from smtpprobe.report.junit import CLASSNAME, relay_junit

PASSWORD = "Junit-Secret-55aa"


def _step(kb: KnowledgeBase, stage: Stage, command: str, reply: str) -> Step:
    return Step(stage, command, reply=parse_reply(reply),
                finding=classify_text(kb, stage, reply), elapsed_ms=3.0)


def _report(kb: KnowledgeBase, *, auth_reply: str) -> RelayReport:
    connect = _step(kb, Stage.CONNECT, "(connect to 192.0.2.1:587)", "220 relay.example ESMTP")
    auth = _step(kb, Stage.AUTH, "AUTH PLAIN ****", auth_reply)
    timeout = Step(Stage.RCPT, "RCPT TO:<b@example.org>",
                   failure=Failure(FailureKind.TIMEOUT, "no reply within 10 s"))
    timeout = Step(timeout.stage, timeout.command, failure=timeout.failure,
                   finding=classify_failure(kb, Stage.RCPT, timeout.failure))
    checks = (
        RelayCheck("connect", CheckStatus.PASS, connect.finding, steps=(connect,),
                   elapsed_ms=12.5),
        RelayCheck("tls", CheckStatus.SKIP, note=Reason("tls_none")),
        RelayCheck("auth", CheckStatus.FAIL, auth.finding, steps=(auth,), elapsed_ms=4.0),
        RelayCheck("rcpt", CheckStatus.FAIL, timeout.finding, subject="b@example.org",
                   temporary=True, steps=(timeout,), elapsed_ms=10000.0),
        RelayCheck("send", CheckStatus.SKIP, note=Reason("skip_after", (("check", "rcpt"),))),
    )
    return RelayReport(host="relay.example", address="192.0.2.1", port=587,
                       mode=PortMode.STARTTLS, verdict=verdict(checks), checks=checks,
                       elapsed_ms=10020.0)


def test_structure_gitlab_and_jenkins_expect(kb: KnowledgeBase) -> None:
    report = _report(kb, auth_reply="535 5.7.8 Error: authentication failed")
    xml = relay_junit(report, "en",
                      timestamp=dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC))
    assert xml.startswith('<?xml version="1.0" encoding="UTF-8"?>')
    root = ET.fromstring(xml)
    assert root.tag == "testsuites"
    [suite] = root.findall("testsuite")
    assert suite.get("name") == "smtpprobe relay relay.example:587"
    assert suite.get("timestamp") == "2026-01-02T03:04:05"
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == ["connect", "tls", "auth", "rcpt b@example.org",
                                              "send"]
    assert {c.get("classname") for c in cases} == {CLASSNAME}
    for element in (root, suite):
        assert (element.get("tests"), element.get("failures"), element.get("errors"),
                element.get("skipped")) == ("5", "2", "0", "2")
        assert float(element.get("time", "x")) == 10.02
    assert [float(c.get("time", "x")) for c in cases] == pytest.approx(
        [0.0125, 0.0, 0.004, 10.0, 0.0], abs=0.001)

    connect, tls, auth, rcpt, send = cases
    assert connect.find("failure") is None and connect.find("skipped") is None
    assert tls.find("skipped") is not None and send.find("skipped") is not None
    failure = auth.find("failure")
    assert failure is not None
    assert failure.get("message") == "Login failed"
    assert failure.get("type") == "auth_failed"
    body = failure.text or ""
    assert "Cause: " in body and "What to do: " in body
    assert "Server said: 535 5.7.8 Error: authentication failed" in body
    assert " -> AUTH PLAIN ****" in body and "<-  535 5.7.8" in body
    temporary = rcpt.find("failure")
    assert temporary is not None and temporary.get("type", "").endswith("(temporary)")
    assert "a later run may pass" in (temporary.text or "")
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props["verdict"] == "fail" and props["mode"] == "starttls"


def test_hostile_text_still_parses_and_secrets_are_masked(kb: KnowledgeBase) -> None:
    blob = base64.b64encode(f"\0probe\0{PASSWORD}".encode()).decode()
    nasty = (f"535 5.7.8 <![CDATA[ ]]> \x00\x1b[31m & </failure> {PASSWORD} {blob} "
             f"{PASSWORD.encode().hex()} \udcff")
    # The session masks what a server says after our AUTH (net/session.py); JUnit then keeps
    # what it is given, and hostile text still makes a well-formed file.
    report = _report(kb, auth_reply=Redactor([("probe", PASSWORD)])(nasty))
    xml = relay_junit(report, "de")
    root = ET.fromstring(xml)  # must not raise
    failure = root.find("testsuite/testcase[@name='auth']/failure")
    assert failure is not None
    body = failure.text or ""
    assert "</failure>" in body and "\x00" not in body and "\x1b" not in body
    assert "Ursache: " in body  # German labels with --lang de
    for form in (PASSWORD, blob, PASSWORD.encode().hex()):
        assert form not in xml


def test_all_passing_report_has_no_failures(kb: KnowledgeBase) -> None:
    connect = _step(kb, Stage.CONNECT, "(connect)", "220 ok")
    checks = (RelayCheck("connect", CheckStatus.PASS, connect.finding, steps=(connect,)),)
    report = RelayReport(host="r", address="192.0.2.1", port=25, mode=PortMode.STARTTLS,
                         verdict=RelayVerdict.PASS, checks=checks)
    root = ET.fromstring(relay_junit(report, "en"))
    assert root.get("failures") == "0" and root.find(".//failure") is None
    out = root.find(".//testcase/system-out")
    assert out is not None and "<-  220 ok" in (out.text or "")
