"""Machine-readable output: plain dicts for JSON (versioned schemas, docs/json.md).

Pure: no rich, no I/O. Every string that could hold server text or user input passes through
the redactor on its way out, the last guard against a secret leaking.
"""

from __future__ import annotations

import json
from typing import Any

from smtpprobe.core.redact import Redactor
from smtpprobe.models import CheckReport, Finding, HostReport, MxResult, Reply, Step, TlsInfo

CHECK_SCHEMA = "smtpprobe.check/1"
EXPLAIN_SCHEMA = "smtpprobe.explain/1"


def finding_dict(finding: Finding, lang: str) -> dict[str, Any]:
    return {
        "category": str(finding.category),
        "retryable": finding.retryable,
        "severity": str(finding.severity),
        "code": finding.code,
        "enhanced_code": finding.enhanced_code,
        "stage": str(finding.stage) if finding.stage is not None else None,
        "title": finding.title.get(lang) if finding.title else None,
        "cause": finding.cause.get(lang),
        "remedy": finding.remedy.get(lang),
        "correction": finding.correction.get(lang) if finding.correction else None,
        "rule": finding.rule,
        "references": list(finding.references),
        "evidence": finding.evidence,
    }


def reply_dict(reply: Reply | None) -> dict[str, Any] | None:
    if reply is None:
        return None
    return {"code": reply.code, "enhanced_code": reply.enhanced, "text": reply.text}


def step_dict(step: Step, lang: str) -> dict[str, Any]:
    return {
        "stage": str(step.stage),
        "command": step.command,
        "reply": reply_dict(step.reply),
        "failure": ({"kind": str(step.failure.kind), "detail": step.failure.detail}
                    if step.failure else None),
        "elapsed_ms": round(step.elapsed_ms, 2),
        "finding": finding_dict(step.finding, lang) if step.finding else None,
    }


def tls_dict(tls: TlsInfo | None) -> dict[str, Any] | None:
    if tls is None:
        return None
    return {
        "version": tls.version, "cipher": tls.cipher, "bits": tls.bits,
        "subject": tls.subject, "names": list(tls.names), "issuer": tls.issuer,
        "not_after": tls.not_after, "days_left": tls.days_left, "verified": tls.verified,
        "verify_error": tls.verify_error, "expected_name": tls.expected_name,
        "name_matches": tls.name_matches,
    }


def host_dict(host: HostReport, lang: str) -> dict[str, Any]:
    return {
        "host": host.host, "address": host.address, "port": host.port,
        "tls": tls_dict(host.tls),
        "extensions": ([f"{k} {v}".strip() for k, v in host.capabilities.extensions]
                       if host.capabilities else None),
        "extensions_after_tls": ([f"{k} {v}".strip()
                                  for k, v in host.capabilities_after_tls.extensions]
                                 if host.capabilities_after_tls else None),
        "steps": [step_dict(s, lang) for s in host.steps],
    }


def mx_list(mx: MxResult) -> list[dict[str, Any]]:
    return [{"host": h.name, "preference": h.preference, "addresses": list(h.addresses),
             "implicit": h.implicit,
             "failure": {"kind": str(h.failure.kind), "detail": h.failure.detail}
             if h.failure else None} for h in mx.hosts]


def check_dict(report: CheckReport, lang: str) -> dict[str, Any]:
    return {
        "schema": CHECK_SCHEMA,
        "address": report.address,
        "domain": report.domain,
        "verdict": str(report.verdict),
        "address_status": str(report.address_status),
        "about_prober": report.finding.about_prober,
        "finding": finding_dict(report.finding, lang),
        "findings": [finding_dict(f, lang) for f in report.findings],
        "mx": mx_list(report.mx),
        "dns": {"elapsed_ms": round(report.mx.elapsed_ms, 2),
                "failure": ({"kind": str(report.mx.failure.kind),
                             "detail": report.mx.failure.detail} if report.mx.failure else None)},
        "hosts": [host_dict(h, lang) for h in report.hosts],
        "catch_all": report.catch_all,
        "mail_from": report.mail_from,
        "elapsed_ms": round(report.elapsed_ms, 2),
    }


def explain_dict(finding: Finding, reply: Reply, lang: str) -> dict[str, Any]:
    data = finding_dict(finding, lang)
    data["schema"] = EXPLAIN_SCHEMA
    data["reply"] = reply_dict(reply)
    return data


def _scrub(value: Any, redact: Redactor) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: _scrub(v, redact) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v, redact) for v in value]
    return value


def dumps(data: Any, redact: Redactor | None = None, *, indent: int | None = 2) -> str:
    if redact:
        data = _scrub(data, redact)
    return json.dumps(data, ensure_ascii=False, indent=indent)
