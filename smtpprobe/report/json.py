"""Machine-readable output: plain dicts for JSON, every command's schema in one place
(versioned: check and explain in docs/json.md, sweep in docs/sweep.md, relay in docs/relay.md),
and `dumps`, the only way out for them.

Pure: no rich, no I/O (the JSON path must not pay for rich's import).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from smtpprobe.models import (
    AuthOutcome,
    Capabilities,
    CheckReport,
    DomainCheck,
    DomainReport,
    Finding,
    HostReport,
    Lookup,
    MxResult,
    PortMode,
    PortReport,
    Recommendation,
    RelayCheck,
    RelayReport,
    Reply,
    Step,
    SweepReport,
    TlsInfo,
)
from smtpprobe.report.words import note_text, reason_text

if TYPE_CHECKING:
    from smtpprobe.core.selfcheck import SelfCheck

CHECK_SCHEMA = "smtpprobe.check/1"
EXPLAIN_SCHEMA = "smtpprobe.explain/1"
SWEEP_SCHEMA = "smtpprobe.sweep/1"
RELAY_SCHEMA = "smtpprobe.relay/1"
DOMAIN_SCHEMA = "smtpprobe.domain/1"
WHOAMI_SCHEMA = "smtpprobe.whoami/1"


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


def _extensions(caps: Capabilities | None) -> list[str] | None:
    if caps is None:
        return None
    return [f"{k} {v}".strip() for k, v in caps.extensions]


def host_dict(host: HostReport, lang: str) -> dict[str, Any]:
    return {
        "host": host.host, "address": host.address, "port": host.port,
        "tls": tls_dict(host.tls),
        "extensions": _extensions(host.capabilities),
        "extensions_after_tls": _extensions(host.capabilities_after_tls),
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
        "lookups": [lookup_dict(item, lang) for item in report.lookups],
        "elapsed_ms": round(report.elapsed_ms, 2),
    }


def lookup_dict(item: Lookup, lang: str) -> dict[str, Any]:
    """A lookup that carried out a finding's remedy (docs/json.md, "lookups")."""
    return {"kind": item.kind, "subject": item.subject, "status": str(item.status),
            "summary": item.summary.get(lang), "details": dict(item.details)}


def explain_dict(finding: Finding, reply: Reply, lang: str, *, recipient: str | None = None,
                 reporting_host: str | None = None,
                 lookups: Sequence[Lookup] | None = None) -> dict[str, Any]:
    """explain's document: the finding, the decisive reply, and from a pasted bounce the
    address that bounced and the server that wrote the bounce (null when it names none)."""
    data = finding_dict(finding, lang)
    data["schema"] = EXPLAIN_SCHEMA
    data["reply"] = reply_dict(reply)
    data["recipient"] = recipient
    data["reporting_host"] = reporting_host
    if lookups is not None:  # explain --lookup only: offline explain has no such key
        data["lookups"] = [lookup_dict(item, lang) for item in lookups]
    return data


# --- sweep (docs/sweep.md) and relay (docs/relay.md) ---------------------------------------


def _mechanisms(caps: Capabilities | None) -> list[str] | None:
    return list(caps.auth_mechanisms) if caps is not None else None


def auth_dict(auth: AuthOutcome, lang: str) -> dict[str, Any]:
    return {
        "result": str(auth.result),
        "mechanism": auth.mechanism,
        "tried": list(auth.tried),
        "finding": finding_dict(auth.finding, lang) if auth.finding else None,
    }


def port_dict(report: PortReport, lang: str) -> dict[str, Any]:
    return {
        "port": report.port,
        "mode": str(report.mode),
        "address": report.address,
        "reachable": report.reachable,
        "state": str(report.state),
        "failure": finding_dict(report.failure, lang) if report.failure else None,
        "banner": report.banner,
        "tls": tls_dict(report.tls),
        "extensions": {"before_tls": _extensions(report.capabilities_before_tls),
                       "after_tls": _extensions(report.capabilities_after_tls)},
        "auth_mechanisms": {"before_tls": _mechanisms(report.capabilities_before_tls),
                            "after_tls": _mechanisms(report.capabilities_after_tls)},
        "auth": auth_dict(report.auth, lang),
        "findings": [finding_dict(f, lang) for f in report.findings],
        "steps": [step_dict(s, lang) for s in report.steps],
        "elapsed_ms": round(report.elapsed_ms, 2),
    }


_SECURITY_JSON = {PortMode.TLS: "ssl/tls", PortMode.STARTTLS: "starttls", PortMode.PLAIN: "none"}


def recommendation_dict(rec: Recommendation, lang: str, user: str | None) -> dict[str, Any]:
    return {
        "usable": rec.usable,
        "tested": rec.tested,
        "server": rec.host,
        "port": rec.port,
        "security": _SECURITY_JSON[rec.mode] if rec.mode is not None else None,
        "authentication": rec.mechanism,
        "user": user if rec.usable else None,
        "reasons": [{"key": r.key, "values": dict(r.values), "text": reason_text(r, lang)}
                    for r in rec.reasons],
        "finding": finding_dict(rec.finding, lang) if rec.finding else None,
    }


def sweep_dict(report: SweepReport, lang: str) -> dict[str, Any]:
    return {
        "schema": SWEEP_SCHEMA,
        "host": report.host,
        "addresses": list(report.addresses),
        "user": report.user,
        "dns_failure": finding_dict(report.dns_failure, lang) if report.dns_failure else None,
        "ports": [port_dict(p, lang) for p in report.ports],
        "recommendation": recommendation_dict(report.recommendation, lang, report.user),
        "address_findings": [finding_dict(f, lang) for f in report.address_findings],
        "elapsed_ms": round(report.elapsed_ms, 2),
    }


def relay_check_dict(check: RelayCheck, lang: str) -> dict[str, Any]:
    return {
        "name": check.name,
        "subject": check.subject,
        "status": str(check.status),
        "temporary": check.temporary,
        "finding": finding_dict(check.finding, lang) if check.finding else None,
        "note": note_text(check.note, lang) if check.note else None,
        "elapsed_ms": round(check.elapsed_ms, 2),
        "steps": [step_dict(s, lang) for s in check.steps],
    }


def relay_dict(report: RelayReport, lang: str) -> dict[str, Any]:
    return {
        "schema": RELAY_SCHEMA,
        "server": report.host,
        "address": report.address,
        "port": report.port,
        "mode": str(report.mode),
        "verdict": str(report.verdict),
        "checks": [relay_check_dict(c, lang) for c in report.checks],
        "tls": tls_dict(report.tls),
        "user": report.user,
        "message_id": report.message_id,
        "queue_id": report.queue_id,
        "address_findings": [finding_dict(f, lang) for f in report.address_findings],
        "notes": [finding_dict(f, lang) for f in report.notes],
        "elapsed_ms": round(report.elapsed_ms, 2),
    }


def selfcheck_dict(check: SelfCheck, findings: Sequence[Finding],
                   lang: str) -> dict[str, Any]:
    """`smtpprobe whoami` (docs/json.md, "whoami")."""
    return {
        "schema": WHOAMI_SCHEMA,
        "address": check.address, "note": check.note,
        "ptr": list(check.ptr), "ptr_problem": check.ptr_problem,
        "forward_confirmed": check.confirmed is not None, "confirmed_name": check.confirmed,
        "helo": check.helo, "helo_addresses": list(check.helo_addresses),
        "helo_matches": check.helo_matches,
        "blocklists": [{"zone": item.zone, "listed": item.listed, "answer": item.answer,
                        "reason": item.reason} for item in check.listings],
        "findings": [finding_dict(f, lang) for f in findings],
    }


def domain_check_dict(check: DomainCheck, lang: str) -> dict[str, Any]:
    return {
        "id": check.id,
        "subject": check.subject,
        "status": str(check.status),
        "finding": finding_dict(check.finding, lang) if check.finding else None,
        "details": dict(check.details),
    }


def domain_dict(report: DomainReport, lang: str) -> dict[str, Any]:
    """docs/json.md, "domain": the checks in report order and the count of each status."""
    return {
        "schema": DOMAIN_SCHEMA,
        "domain": report.domain,
        "checks": [domain_check_dict(c, lang) for c in report.checks],
        "summary": report.counts(),
    }


def stamped(data: dict[str, Any], *, now: dt.datetime | None = None) -> dict[str, Any]:
    """The document with the version that wrote it and when, right after its schema."""
    from smtpprobe import __version__

    when = (now or dt.datetime.now(dt.UTC)).replace(microsecond=0)
    out: dict[str, Any] = {}
    for key, value in data.items():
        out[key] = value
        if key == "schema":
            out["smtpprobe_version"] = __version__
            out["generated_at"] = when.strftime("%Y-%m-%dT%H:%M:%SZ")
    return out


def dumps(data: Any, *, indent: int | None = 2) -> str:
    """The one way JSON leaves the program: a document stamped (`stamped`), then serialised.
    Secrets were masked where they can occur, in what the server said after our AUTH
    (net/session.py, core/redact.py)."""
    if isinstance(data, dict) and "schema" in data:
        data = stamped(data)
    return json.dumps(data, ensure_ascii=False, indent=indent)
