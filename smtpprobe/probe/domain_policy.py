"""`smtpprobe domain`: the policy checks: SPF, DMARC, DKIM, DNS blocklists, MTA-STS, TLS-RPT
and DANE (docs/domain-policy.md).

Each check is `async def check_X(ctx) -> list[DomainCheck]` for probe/domain.py's table. They
look records up through `net.dns.lookup` with the resolver of `ctx` only, parse and match them
with `core.dnsrecords`, and turn what is wrong into findings of the knowledge base
(knowledge/domain/policy.toml) through `ctx.classifier`. A check that cannot find something
out says `unknown` and why; none raises.

SPF is evaluated by pyspf (RFC 7208, with its own test suite) rather than by code of ours.
pyspf is synchronous and asks DNS through a module-level function that uses the system
resolver; `_SpfQuery` overrides `query.dns`, the one method every lookup of pyspf passes
through, so that each question goes to `net.dns.lookup` with `ctx.nameservers` instead. The
evaluation runs in a worker thread and hands each lookup back to the event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from smtpprobe.core import dnsrecords as rec
from smtpprobe.models import (
    DomainCheck,
    Failure,
    FailureKind,
    HealthStatus,
    LocalText,
    MxHost,
    Stage,
)
from smtpprobe.net import dns

if TYPE_CHECKING:
    from smtpprobe.probe.domain import DomainContext

__all__ = [
    "DEFAULT_DNSBL_ZONES",
    "check_dane",
    "check_dkim",
    "check_dmarc",
    "check_dnsbl",
    "check_mta_sts",
    "check_spf",
    "check_tls_rpt",
    "spf_evaluate",
]

# Blocklists for real use when --dnsbl is not given (cli/domain.py passes them; tests never
# do). Widely used, free for low-volume queries through one's own resolver. Spamhaus answers
# 127.255.255.254 to queries through public resolvers: that is `unknown`, not a listing.
DEFAULT_DNSBL_ZONES: tuple[str, ...] = ("zen.spamhaus.org", "bl.spamcop.net",
                                        "b.barracudacentral.org")

_OK = HealthStatus.OK
_WARN = HealthStatus.WARN
_FAIL = HealthStatus.FAIL
_INFO = HealthStatus.INFO
_UNKNOWN = HealthStatus.UNKNOWN
# A documentation address (RFC 3849) that no record lists on purpose: evaluating the record
# for it walks every mechanism up to `all`, so limits and syntax errors show wherever they are.
_PROBE_ADDRESS = "2001:db8::5eed"
_MTA_STS_PATH = "/.well-known/mta-sts.txt"


# -- shared helpers --------------------------------------------------------------------------------


def _text(en: str, de: str) -> LocalText:
    return LocalText(en, de)


def _observed(ctx: DomainContext, check_id: str, subject: str, status: HealthStatus,
              summary: LocalText, kind: FailureKind, detail: str,
              details: Mapping[str, object] | None = None) -> DomainCheck:
    finding = ctx.classifier.observe(Stage.DNS, kind, detail)
    return DomainCheck(check_id, subject, status, summary, finding, dict(details or {}))


def _fine(check_id: str, subject: str, summary: LocalText,
          details: Mapping[str, object] | None = None, *,
          status: HealthStatus = _OK) -> DomainCheck:
    return DomainCheck(check_id, subject, status, summary, None, dict(details or {}))


def _unknown(ctx: DomainContext, check_id: str, subject: str, failure: Failure,
             what: LocalText) -> DomainCheck:
    finding = ctx.classifier.failure(Stage.DNS, failure)
    return DomainCheck(check_id, subject, _UNKNOWN,
                       _text(f"{what.en}: {failure.detail}", f"{what.de} (Einzelheiten unten)"),
                       finding, {"error": failure.kind.value, "detail": failure.detail})


def _starting(records: Iterable[str], prefix: str) -> list[str]:
    """The records that begin with `prefix` as a whole word (`v=spf1`, not `v=spf10`)."""
    low = prefix.lower()
    out = []
    for record in records:
        text = record.strip().lower()
        if text == low or text.startswith((low + " ", low + ";")):
            out.append(record.strip())
    return out


async def _tagged_record(ctx: DomainContext, check_id: str, name: str, tag: str, *,
                         unreadable: LocalText,
                         missing: tuple[HealthStatus, LocalText, FailureKind],
                         several: tuple[HealthStatus, LocalText, FailureKind]
                         ) -> str | list[DomainCheck]:
    """The one TXT record at `name` that begins with `tag`, or the check's answer when the
    lookup fails, there is none, or there are several (each standard says a receiver then
    acts as if there were none: RFC 7208 4.5, RFC 7489 6.6.3, RFC 8461 3.1, RFC 8460 3).
    `several`'s summary may say `{n}`."""
    domain = ctx.ascii_domain
    answer = await ctx.lookup(name, "TXT")
    if isinstance(answer, Failure):
        return [_unknown(ctx, check_id, domain, answer, unreadable)]
    found = _starting(answer.records, tag)
    if not found:
        status, summary, kind = missing
        return [_observed(ctx, check_id, domain, status, summary, kind,
                          f"{name} has no TXT record beginning with {tag}")]
    if len(found) > 1:
        status, summary, kind = several
        count = len(found)
        return [_observed(ctx, check_id, domain, status,
                          _text(summary.en.format(n=count), summary.de.format(n=count)), kind,
                          f"{name} has {count} {tag} records: " + " | ".join(found),
                          {"records": found})]
    return found[0]


async def _mx_hosts(ctx: DomainContext) -> Sequence[MxHost] | Failure:
    """The MX hosts with their addresses: the runner's lookup when it ran, else our own."""
    found = ctx.mx
    if found is None:
        found = await dns.resolve_mx(ctx.ascii_domain, nameservers=ctx.nameservers,
                                     timeout=ctx.budget(), allow_private=ctx.allow_private)
    if found.failure is not None and not found.hosts:
        return found.failure
    return found.hosts


def _mx_addresses(hosts: Sequence[MxHost]) -> list[str]:
    seen: list[str] = []
    for host in hosts:
        for address in host.addresses:
            if address not in seen:
                seen.append(address)
    return seen


# -- SPF (RFC 7208) --------------------------------------------------------------------------------

SpfResult = tuple[str, str]  # (result, explanation): pass, fail, softfail, neutral, none, ...
_Resolve = Callable[[str, str], list[object]]


def _spf_query_class(spf: Any) -> Any:
    """pyspf's `query` with its DNS replaced (built when pyspf is imported, lazily)."""

    class _SpfQuery(spf.query):  # type: ignore[misc]
        resolve: _Resolve

        def dns(self, name: Any, qtype: str, cnames: Any = None,
                ignore_void: bool = False) -> list[object]:
            # The contract of pyspf's own `query.dns`: a list of values for (name, qtype),
            # CNAMEs followed (net.dns.lookup follows them), [] for no data; an empty answer
            # counts toward the void-lookup limit (RFC 7208 4.6.4) unless `ignore_void`.
            if not name:
                raise spf.PermError("empty domain name in a lookup")
            text = str(name).rstrip(".").lower()
            if not all(0 < len(label) < 64 for label in text.split(".")):
                return []  # not a name DNS can carry: no data, as pyspf has it
            key = (text, qtype)
            result = self.cache.get(key)
            if result is None:
                result = self.resolve(text, qtype)
                self.cache[key] = result
            if not result and not ignore_void:
                self.void_lookups += 1
                if self.void_lookups > spf.MAX_VOID_LOOKUPS:
                    raise spf.PermError(
                        f"Void lookup limit of {spf.MAX_VOID_LOOKUPS} exceeded")
            return list(result)

    return _SpfQuery


def _spf_values(records: dns.Records, qtype: str) -> list[object]:
    """What pyspf's dnspython driver returns for each rdata type."""
    values: list[object] = []
    for rdata in records.rdata:
        item: Any = rdata
        if qtype in ("A", "AAAA"):
            values.append(item.address)
        elif qtype == "MX":
            values.append((item.preference, item.exchange))
        elif qtype == "PTR":
            values.append(item.target.to_text(True))
        elif qtype in ("TXT", "SPF"):
            values.append(item.strings)
    return values


async def spf_evaluate(ctx: DomainContext, address: str, *, domain: str | None = None,
                       helo: str | None = None) -> tuple[str, str, str | None]:
    """SPF for mail from `postmaster@domain` sent by `address`: (result, explanation, the
    record pyspf used or None). Every DNS question goes to ctx's resolver (see module doc)."""
    import spf as pyspf  # type: ignore[import-untyped]  # lazily: 30 ms of imports

    domain = domain or ctx.ascii_domain
    loop = asyncio.get_running_loop()
    query_class = _spf_query_class(pyspf)

    def resolve(name: str, qtype: str) -> list[object]:
        if loop.time() >= ctx.deadline:
            raise pyspf.TempError("the run's deadline has passed")
        future = asyncio.run_coroutine_threadsafe(ctx.lookup(name, qtype), loop)
        try:
            answer = future.result(timeout=ctx.timeout + 1.0)
        except TimeoutError:
            future.cancel()
            raise pyspf.TempError(f"DNS {name} {qtype}: no answer in time") from None
        if isinstance(answer, Failure):
            raise pyspf.TempError(f"DNS {answer.detail}")
        return _spf_values(answer, qtype) if answer.exists else []

    def run() -> tuple[str, str, str | None]:
        record: str | None = None
        try:
            query = query_class(i=address, s=f"postmaster@{domain}", h=helo or ctx.helo,
                                timeout=ctx.timeout, querytime=0)
            query.resolve = resolve
            try:
                record = query.dns_spf(domain)
            except (pyspf.TempError, pyspf.PermError):
                pass  # check() below meets the same error and reports it
            query.void_lookups = 0
            result, _code, explanation = query.check()
        except Exception as exc:  # noqa: BLE001 - pyspf tripping over hostile data is data
            return "temperror", f"the SPF evaluation failed: {type(exc).__name__}: {exc}", record
        return str(result), str(explanation), record

    return await asyncio.to_thread(run)


def _spf_kind(explanation: str) -> FailureKind:
    low = explanation.lower()
    if "too many dns lookups" in low or "more than" in low and "lookups" in low:
        return FailureKind.DOMAIN_SPF_TOO_MANY_LOOKUPS
    if "void lookup" in low:
        return FailureKind.DOMAIN_SPF_VOID_LOOKUPS
    if "two or more" in low:
        return FailureKind.DOMAIN_SPF_MULTIPLE
    return FailureKind.DOMAIN_SPF_INVALID


def _all_term(record: str) -> str | None:
    for term in reversed(record.split()[1:]):
        if term.lower().lstrip("+-~?") == "all":
            return term if term[0] in "+-~?" else "+" + term
    return None


async def check_spf(ctx: DomainContext) -> list[DomainCheck]:
    """One record, its syntax, the 10 DNS-lookup and 2 void-lookup limits, +all/?all, and
    whether the MX addresses and --ip pass (RFC 7208)."""
    domain = ctx.ascii_domain
    found = await _tagged_record(
        ctx, "spf", domain, "v=spf1",
        unreadable=_text("SPF record not readable", "SPF-Eintrag nicht lesbar"),
        missing=(_WARN, _text("no SPF record", "kein SPF-Eintrag"),
                 FailureKind.DOMAIN_SPF_MISSING),
        several=(_FAIL, _text("{n} SPF records (one allowed)", "{n} SPF-Einträge (einer erlaubt)"),
                 FailureKind.DOMAIN_SPF_MULTIPLE))
    if not isinstance(found, str):
        return found
    record = found
    details: dict[str, object] = {"record": record}
    checks: list[DomainCheck] = []
    result, explanation, _ = await spf_evaluate(ctx, _PROBE_ADDRESS)
    details["unlisted_address_result"] = result
    if result == "temperror":
        return [_observed(ctx, "spf", domain, _UNKNOWN,
                          _text("SPF could not be evaluated", "SPF nicht auswertbar"),
                          FailureKind.DOMAIN_SPF_TEMPERROR, f"{domain}: {explanation}", details)]
    if result == "permerror":
        kind = _spf_kind(explanation)
        short = explanation.removeprefix("SPF Permanent Error: ")
        return [_observed(ctx, "spf", domain, _FAIL,
                          _text(f"SPF permerror: {short}",
                                "SPF-Eintrag fehlerhaft (permerror, Einzelheiten unten)"),
                          kind, f"{domain} SPF '{record}': {short}", details)]
    all_term = _all_term(record)
    details["all"] = all_term
    if result == "pass":
        checks.append(_observed(ctx, "spf", domain, _FAIL,
                                _text(f"SPF lets every server send ({all_term or '+all'})",
                                      f"SPF erlaubt jedem Server das Senden "
                                      f"({all_term or '+all'})"),
                                FailureKind.DOMAIN_SPF_PERMISSIVE,
                                f"{domain} SPF '{record}' passes any address", details))
    elif result == "neutral":
        term = all_term or "no all term (the default is ?all)"
        checks.append(_observed(ctx, "spf", domain, _WARN,
                                _text(f"SPF says nothing about unlisted servers ({term})",
                                      f"SPF trifft keine Aussage über andere Server "
                                      f"({all_term or 'kein all, also ?all'})"),
                                FailureKind.DOMAIN_SPF_PERMISSIVE,
                                f"{domain} SPF '{record}' is neutral for any address", details))
    checks.extend(await _spf_senders(ctx, record, details))
    if not any(c.status in (_FAIL, _WARN) for c in checks):
        checks.insert(0, _fine("spf", domain, _text(f"SPF record valid: {record}",
                                                    f"SPF-Eintrag gültig: {record}"), details))
    return checks


async def _spf_senders(ctx: DomainContext, record: str,
                       details: dict[str, object]) -> list[DomainCheck]:
    domain = ctx.ascii_domain
    checks: list[DomainCheck] = []
    for address in ctx.ips:
        result, explanation, _ = await spf_evaluate(ctx, address)
        if result != "pass":
            checks.append(_observed(ctx, "spf", address, _FAIL,
                                    _text(f"{address} does not pass SPF ({result})",
                                          f"{address} besteht SPF nicht ({result})"),
                                    FailureKind.DOMAIN_SPF_IP_FAILS,
                                    f"{domain} SPF '{record}' gives {result} for {address}",
                                    {"address": address, "result": result,
                                     "explanation": explanation}))
        else:
            checks.append(_fine("spf", address, _text(f"{address} passes SPF",
                                                      f"{address} besteht SPF"),
                                {"address": address, "result": result}))
    hosts = await _mx_hosts(ctx)
    addresses = _mx_addresses(hosts) if not isinstance(hosts, Failure) else []
    results: dict[str, str] = {}
    for address in addresses:
        results[address], _, _ = await spf_evaluate(ctx, address)
    details["mx_results"] = results
    failing = [a for a, r in results.items() if r != "pass"]
    if failing:
        shown = ", ".join(f"{a} ({results[a]})" for a in failing)
        checks.append(_observed(ctx, "spf", domain, _INFO,
                                _text(f"MX addresses not authorised: {shown}",
                                      f"MX-Adressen nicht erlaubt: {shown}"),
                                FailureKind.DOMAIN_SPF_MX_NOT_LISTED,
                                f"{domain} SPF '{record}' does not pass {shown}",
                                {"mx_results": results}))
    return checks


# -- DMARC (RFC 7489) ------------------------------------------------------------------------------

_STRENGTH = {"none": 0, "quarantine": 1, "reject": 2}


async def check_dmarc(ctx: DomainContext) -> list[DomainCheck]:
    """The `_dmarc` record: present, valid, policy strength, pct, rua/ruf, sp, adkim/aspf."""
    domain = ctx.ascii_domain
    # RFC 7489 6.6.3: records that do not start with "v=DMARC1" are discarded.
    name = f"_dmarc.{domain}"
    found = await _tagged_record(
        ctx, "dmarc", name, "v=DMARC1",
        unreadable=_text("DMARC record not readable", "DMARC-Eintrag nicht lesbar"),
        missing=(_WARN, _text("no DMARC record", "kein DMARC-Eintrag"),
                 FailureKind.DOMAIN_DMARC_MISSING),
        several=(_FAIL, _text("{n} DMARC records: receivers ignore them all",
                              "{n} DMARC-Einträge: Empfänger übergehen alle"),
                 FailureKind.DOMAIN_DMARC_INVALID))
    if not isinstance(found, str):
        return found
    record = found
    parsed = rec.parse_dmarc(record)
    details: dict[str, object] = {
        "record": record, "p": parsed.policy, "sp": parsed.subdomain_policy,
        "pct": parsed.pct, "rua": list(parsed.rua), "ruf": list(parsed.ruf),
        "adkim": parsed.adkim, "aspf": parsed.aspf,
        "errors": list(parsed.errors), "warnings": list(parsed.warnings)}
    if parsed.errors:
        first = parsed.errors[0]
        return [_observed(ctx, "dmarc", domain, _FAIL,
                          _text(f"DMARC record invalid: {first}",
                                "DMARC-Eintrag ungültig (Einzelheiten unten)"),
                          FailureKind.DOMAIN_DMARC_INVALID,
                          f"{name} '{record}': " + "; ".join(parsed.errors), details)]
    checks: list[DomainCheck] = []
    policy = parsed.policy or "none"
    if policy == "none":
        checks.append(_observed(ctx, "dmarc", domain, _WARN,
                                _text("DMARC p=none: monitoring only, nothing is enforced",
                                      "DMARC p=none: nur Beobachtung, nichts wird durchgesetzt"),
                                FailureKind.DOMAIN_DMARC_MONITORING, f"{name} '{record}'",
                                details))
    partial: list[str] = []
    partial_de: list[str] = []
    if parsed.pct < 100 and policy != "none":
        partial.append(f"pct={parsed.pct}")
        partial_de.append(f"pct={parsed.pct}")
    sub = parsed.effective_subdomain_policy or "none"
    if _STRENGTH[sub] < _STRENGTH[policy]:
        partial.append(f"sp={sub} is weaker than p={policy}")
        partial_de.append(f"sp={sub} ist schwächer als p={policy}")
    if partial:
        shown = ", ".join(partial)
        checks.append(_observed(ctx, "dmarc", domain, _INFO,
                                _text(f"DMARC applies only in part: {shown}",
                                      f"DMARC gilt nur teilweise: {', '.join(partial_de)}"),
                                FailureKind.DOMAIN_DMARC_PARTIAL, f"{name} '{record}': {shown}",
                                details))
    if not parsed.rua:
        checks.append(_observed(ctx, "dmarc", domain, _INFO,
                                _text("DMARC asks for no aggregate reports (no rua=)",
                                      "DMARC fordert keine Sammelberichte an (kein rua=)"),
                                FailureKind.DOMAIN_DMARC_NO_REPORTS, f"{name} '{record}'",
                                details))
    if not any(c.status in (_FAIL, _WARN) for c in checks):
        alignment = f"adkim={parsed.adkim}, aspf={parsed.aspf}"
        checks.insert(0, _fine("dmarc", domain,
                               _text(f"DMARC p={policy}, pct={parsed.pct}, {alignment}",
                                     f"DMARC p={policy}, pct={parsed.pct}, {alignment}"),
                               details))
    return checks


# -- DKIM (RFC 6376, RFC 8301, RFC 8463) -----------------------------------------------------------


async def check_dkim(ctx: DomainContext) -> list[DomainCheck]:
    """With --selector: the key record of each selector parses and its key is big enough.
    Without one: `info`, because selectors cannot be listed (RFC 6376 3.1)."""
    domain = ctx.ascii_domain
    if not ctx.selectors:
        return [_observed(ctx, "dkim", domain, _INFO,
                          _text("DKIM not checked: give the selector with --selector",
                                "DKIM nicht geprüft: Selektor mit --selector angeben"),
                          FailureKind.DOMAIN_DKIM_NO_SELECTOR,
                          f"{domain}: no DKIM selector given")]
    checks: list[DomainCheck] = []
    for selector in ctx.selectors:
        checks.append(await _dkim_selector(ctx, selector))
    return checks


async def _dkim_selector(ctx: DomainContext, selector: str) -> DomainCheck:
    name = f"{selector}._domainkey.{ctx.ascii_domain}"
    answer = await ctx.lookup(name, "TXT")
    if isinstance(answer, Failure):
        return _unknown(ctx, "dkim", name, answer,
                        _text("DKIM key not readable", "DKIM-Schlüssel nicht lesbar"))
    # RFC 6376 3.6.2.2: one TXT record per selector; several give undefined results.
    records = [r for r in answer.records if r.strip()]
    if not answer.exists or not records:
        return _observed(ctx, "dkim", name, _FAIL,
                         _text(f"no DKIM key at selector {selector}",
                               f"kein DKIM-Schlüssel unter dem Selektor {selector}"),
                         FailureKind.DOMAIN_DKIM_MISSING, f"{name} has no TXT record",
                         {"selector": selector})
    if len(records) > 1:
        return _observed(ctx, "dkim", name, _FAIL,
                         _text(f"{len(records)} key records at selector {selector}",
                               f"{len(records)} Schlüsseleinträge unter dem Selektor {selector}"),
                         FailureKind.DOMAIN_DKIM_INVALID,
                         f"{name} has {len(records)} TXT records (RFC 6376 3.6.2.2: one)",
                         {"selector": selector, "records": records})
    parsed = rec.parse_dkim(records[0])
    details: dict[str, object] = {"selector": selector, "key_type": parsed.key_type,
                                  "bits": parsed.bits, "testing": parsed.testing,
                                  "errors": list(parsed.errors),
                                  "warnings": list(parsed.warnings)}
    if parsed.errors:
        first = parsed.errors[0]
        return _observed(ctx, "dkim", name, _FAIL,
                         _text(f"DKIM key record invalid: {first}",
                               "DKIM-Schlüsseleintrag ungültig (Einzelheiten unten)"),
                         FailureKind.DOMAIN_DKIM_INVALID, f"{name}: " + "; ".join(parsed.errors),
                         details)
    if parsed.revoked:
        return _observed(ctx, "dkim", name, _WARN,
                         _text(f"DKIM key of selector {selector} is revoked (empty p=)",
                               f"DKIM-Schlüssel des Selektors {selector} ist widerrufen "
                               f"(leeres p=)"),
                         FailureKind.DOMAIN_DKIM_REVOKED, f"{name}: p= is empty", details)
    if parsed.key_type == "rsa" and parsed.bits is not None \
            and parsed.bits < rec.DKIM_RSA_RECOMMENDED:
        return _observed(ctx, "dkim", name, _WARN,
                         _text(f"DKIM RSA key of {parsed.bits} bits (2048 recommended)",
                               f"DKIM-RSA-Schlüssel mit {parsed.bits} Bit (2048 empfohlen)"),
                         FailureKind.DOMAIN_DKIM_WEAK_KEY,
                         f"{name}: RSA key of {parsed.bits} bits", details)
    key = f"{parsed.key_type.upper() if parsed.key_type == 'rsa' else 'Ed25519'}"
    return _fine("dkim", name, _text(f"DKIM key {key}, {parsed.bits} bits",
                                     f"DKIM-Schlüssel {key}, {parsed.bits} Bit"), details)


# -- DNS blocklists (RFC 5782) ---------------------------------------------------------------------


async def check_dnsbl(ctx: DomainContext) -> list[DomainCheck]:
    """Each MX address and --ip against each zone of `ctx.dnsbl_zones`."""
    domain = ctx.ascii_domain
    if not ctx.dnsbl_zones:
        return [_fine("dnsbl", domain, _text("no blocklist zones to ask",
                                             "keine Sperrlisten zum Abfragen"),
                      status=_INFO)]
    hosts = await _mx_hosts(ctx)
    addresses = list(ctx.ips)
    if not isinstance(hosts, Failure):
        addresses += [a for a in _mx_addresses(hosts) if a not in addresses]
    if not addresses:
        return [_fine("dnsbl", domain, _text("no addresses to look up",
                                             "keine Adressen zum Nachschlagen"),
                      status=_INFO)]
    results = await asyncio.gather(*(dnsbl_lookup(ctx, address, zone)
                                     for address in addresses for zone in ctx.dnsbl_zones))
    checks: list[DomainCheck] = []
    per_address = len(ctx.dnsbl_zones)
    for index, address in enumerate(addresses):
        checks.extend(_dnsbl_checks(ctx, address,
                                    results[index * per_address:(index + 1) * per_address]))
    return checks


async def dnsbl_lookup(ctx: DomainContext, address: str, zone: str) -> dict[str, object]:
    """One address in one zone: {"zone", "state": listed | clear | refused | invalid | error,
    "codes", "reason"}. Also used by `check`'s lookups (probe/check.py)."""
    name = rec.dnsbl_name(address, zone)
    answer = await ctx.lookup(name, "A")
    if isinstance(answer, Failure):
        return {"zone": zone, "state": "error", "codes": [], "reason": answer.detail}
    if not answer.exists or not answer.records:
        return {"zone": zone, "state": "clear", "codes": [], "reason": ""}
    meaning = rec.classify_dnsbl(answer.records)
    reason = meaning.why
    if meaning.state == "listed":
        txt = await ctx.lookup(name, "TXT")
        reason = " ".join(txt.records) if isinstance(txt, dns.Records) else ""
    return {"zone": zone, "state": meaning.state, "codes": list(meaning.codes),
            "reason": reason}


def _dnsbl_checks(ctx: DomainContext, address: str,
                  results: Sequence[dict[str, object]]) -> list[DomainCheck]:
    details: dict[str, object] = {"address": address, "zones": list(results)}
    listed = [r for r in results if r["state"] == "listed"]
    unanswered = [r for r in results if r["state"] in ("refused", "invalid", "error")]
    checks: list[DomainCheck] = []
    if listed:
        zones = ", ".join(str(r["zone"]) for r in listed)
        detail = "; ".join(
            f"{address} is listed in {r['zone']} ({', '.join(map(str, r['codes']))})"  # type: ignore[call-overload]
            + (f": {r['reason']}" if r["reason"] else "") for r in listed)
        checks.append(_observed(ctx, "dnsbl", address, _FAIL,
                                _text(f"listed in {zones}", f"eingetragen in {zones}"),
                                FailureKind.DOMAIN_DNSBL_LISTED, detail, details))
    if unanswered:
        zones = ", ".join(str(r["zone"]) for r in unanswered)
        detail = "; ".join(f"{r['zone']} for {address}: {r['reason']}" for r in unanswered)
        checks.append(_observed(ctx, "dnsbl", address, _UNKNOWN,
                                _text(f"no usable answer from {zones}",
                                      f"keine verwertbare Antwort von {zones}"),
                                FailureKind.DOMAIN_DNSBL_UNANSWERED, detail, details))
    if not checks:
        count = len(results)
        checks.append(_fine("dnsbl", address,
                            _text(f"not listed ({count} zone{'s' if count != 1 else ''})",
                                  f"nicht eingetragen ({count} "
                                  f"{'Listen' if count != 1 else 'Liste'})"), details))
    return checks


# -- MTA-STS (RFC 8461) ----------------------------------------------------------------------------


async def check_mta_sts(ctx: DomainContext) -> list[DomainCheck]:
    """The `_mta-sts` TXT record, the policy over HTTPS, its mode and max_age, and whether
    every MX host matches an `mx` pattern (RFC 8461 3 and 4.1)."""
    domain = ctx.ascii_domain
    name = f"_mta-sts.{domain}"
    found = await _tagged_record(
        ctx, "mta_sts", name, "v=STSv1",
        unreadable=_text("MTA-STS record not readable", "MTA-STS-Eintrag nicht lesbar"),
        missing=(_INFO, _text("no MTA-STS", "kein MTA-STS"), FailureKind.DOMAIN_MTA_STS_MISSING),
        several=(_FAIL, _text("{n} MTA-STS records: senders ignore them",
                              "{n} MTA-STS-Einträge: Absender übergehen sie"),
                 FailureKind.DOMAIN_MTA_STS_INVALID))
    if not isinstance(found, str):
        return found
    txt = rec.parse_mta_sts_record(found)
    if txt.errors:
        return [_observed(ctx, "mta_sts", domain, _FAIL,
                          _text(f"MTA-STS record invalid: {txt.errors[0]}",
                                "MTA-STS-Eintrag ungültig (Einzelheiten unten)"),
                          FailureKind.DOMAIN_MTA_STS_INVALID,
                          f"{name} '{found}': " + "; ".join(txt.errors),
                          {"record": found})]
    fetched = await _fetch_policy(ctx)
    details: dict[str, object] = {"record": found, "id": txt.id,
                                  "url": f"https://mta-sts.{domain}{_MTA_STS_PATH}"}
    if isinstance(fetched, Failure):
        details["error"] = fetched.detail
        return [_observed(ctx, "mta_sts", domain, _FAIL,
                          _text("MTA-STS policy cannot be fetched",
                                "MTA-STS-Richtlinie nicht abrufbar"),
                          FailureKind.DOMAIN_MTA_STS_FETCH, fetched.detail, details)]
    policy = rec.parse_mta_sts_policy(fetched)
    details.update({"mode": policy.mode, "max_age": policy.max_age, "mx": list(policy.mx),
                    "errors": list(policy.errors), "warnings": list(policy.warnings)})
    if policy.errors:
        return [_observed(ctx, "mta_sts", domain, _FAIL,
                          _text(f"MTA-STS policy invalid: {policy.errors[0]}",
                                "MTA-STS-Richtlinie ungültig (Einzelheiten unten)"),
                          FailureKind.DOMAIN_MTA_STS_INVALID,
                          f"{details['url']}: " + "; ".join(policy.errors), details)]
    checks: list[DomainCheck] = []
    hosts = await _mx_hosts(ctx)
    names = [h.name for h in hosts] if not isinstance(hosts, Failure) else []
    if policy.mode != "none":
        for host in names:
            if not any(rec.mx_pattern_matches(p, host) for p in policy.mx):
                status = _FAIL if policy.mode == "enforce" else _WARN
                checks.append(_observed(
                    ctx, "mta_sts", host, status,
                    _text(f"MX {host} matches no mx: pattern of the policy",
                          f"MX {host} passt zu keinem mx:-Muster der Richtlinie"),
                    FailureKind.DOMAIN_MTA_STS_MX_UNCOVERED,
                    f"{host} is not covered by mx: {', '.join(policy.mx)} (mode "
                    f"{policy.mode})", details))
    if policy.mode in ("testing", "none"):
        checks.append(_observed(ctx, "mta_sts", domain, _INFO,
                                _text(f"MTA-STS mode {policy.mode}: not enforced",
                                      f"MTA-STS-Modus {policy.mode}: nicht durchgesetzt"),
                                FailureKind.DOMAIN_MTA_STS_TESTING,
                                f"{details['url']}: mode {policy.mode}", details))
    if not any(c.status in (_FAIL, _WARN) for c in checks):
        short = " (under a day)" if policy.max_age is not None \
            and policy.max_age < rec.STS_MAX_AGE_SHORT else ""
        covered = ("every MX covered", "jeder MX abgedeckt") if names else (
            "no MX host to compare", "kein MX-Server zum Vergleich")
        checks.insert(0, _fine("mta_sts", domain,
                               _text(f"MTA-STS mode {policy.mode}, max_age {policy.max_age}"
                                     f"{short}, {covered[0]}",
                                     f"MTA-STS-Modus {policy.mode}, max_age {policy.max_age}"
                                     f"{' (unter einem Tag)' if short else ''}, "
                                     f"{covered[1]}"), details))
    return checks


async def _fetch_policy(ctx: DomainContext) -> bytes | Failure:
    from smtpprobe.net import https

    host = f"mta-sts.{ctx.ascii_domain}"
    found = await dns.resolve_host(host, nameservers=ctx.nameservers, timeout=ctx.budget(),
                                   allow_private=ctx.allow_private)
    if found.failure is not None or not found.addresses:
        failure = found.failure or Failure(FailureKind.DNS_NO_ADDRESS, f"{host}: no address")
        return Failure(failure.kind, f"{host} has no usable address: {failure.detail}")
    response = await https.get(host, _MTA_STS_PATH, address=found.addresses[0],
                               roots=ctx.trust.roots, timeout=ctx.budget())
    if isinstance(response, Failure):
        return response
    url = f"https://{host}{_MTA_STS_PATH}"
    if 300 <= response.status < 400:
        # RFC 8461 3.3: "HTTP 3xx redirects MUST NOT be followed".
        return Failure(FailureKind.PROTOCOL, f"{url} answered {response.status} (a redirect to "
                       f"{response.header('location') or 'nowhere'}); senders do not follow it")
    if response.status != 200:
        return Failure(FailureKind.PROTOCOL,
                       f"{url} answered {response.status} {response.reason}".rstrip())
    media = (response.header("content-type") or "").split(";")[0].strip().lower()
    if media != "text/plain":
        # RFC 8461 3.2: the policy is served as text/plain.
        return Failure(FailureKind.PROTOCOL,
                       f"{url} is served as {media or 'no content type'}, not text/plain")
    return response.body


# -- TLS-RPT (RFC 8460) ----------------------------------------------------------------------------


async def check_tls_rpt(ctx: DomainContext) -> list[DomainCheck]:
    """The `_smtp._tls` TXT record: syntax and rua (RFC 8460 3)."""
    domain = ctx.ascii_domain
    name = f"_smtp._tls.{domain}"
    found = await _tagged_record(
        ctx, "tls_rpt", name, "v=TLSRPTv1",
        unreadable=_text("TLS-RPT record not readable", "TLS-RPT-Eintrag nicht lesbar"),
        missing=(_INFO, _text("no TLS reporting (TLS-RPT)", "keine TLS-Berichte (TLS-RPT)"),
                 FailureKind.DOMAIN_TLS_RPT_MISSING),
        several=(_WARN, _text("{n} TLS-RPT records: senders ignore them",
                              "{n} TLS-RPT-Einträge: Absender übergehen sie"),
                 FailureKind.DOMAIN_TLS_RPT_INVALID))
    if not isinstance(found, str):
        return found
    parsed = rec.parse_tls_rpt(found)
    details: dict[str, object] = {"record": found, "rua": list(parsed.rua),
                                  "errors": list(parsed.errors)}
    if parsed.errors:
        return [_observed(ctx, "tls_rpt", domain, _WARN,
                          _text(f"TLS-RPT record invalid: {parsed.errors[0]}",
                                "TLS-RPT-Eintrag ungültig (Einzelheiten unten)"),
                          FailureKind.DOMAIN_TLS_RPT_INVALID,
                          f"{name} '{found}': " + "; ".join(parsed.errors), details)]
    shown = ", ".join(parsed.rua)
    return [_fine("tls_rpt", domain, _text(f"TLS reports go to {shown}",
                                           f"TLS-Berichte gehen an {shown}"), details)]


# -- DANE (RFC 6698, RFC 7671, RFC 7672) -----------------------------------------------------------


async def check_dane(ctx: DomainContext) -> list[DomainCheck]:
    """TLSA records at `_25._tcp.<mx>` against the chain each MX presented; only a
    DNSSEC-validated answer (AD bit) counts (RFC 7672 2.2)."""
    hosts = await _mx_hosts(ctx)
    if isinstance(hosts, Failure):
        return [_unknown(ctx, "dane", ctx.ascii_domain, hosts,
                         _text("no MX hosts to look up", "keine MX-Server zum Nachschlagen"))]
    names = [h.name for h in hosts if h.failure is None or h.addresses]
    found = await asyncio.gather(*(_dane_host(ctx, name) for name in names))
    return list(found)


def _tlsa_of(rdata: Sequence[object]) -> list[rec.Tlsa]:
    out = []
    for item in rdata:
        value: Any = item
        out.append(rec.Tlsa(int(value.usage), int(value.selector), int(value.mtype),
                            bytes(value.cert)))
    return out


async def _dane_host(ctx: DomainContext, host: str) -> DomainCheck:
    name = f"_25._tcp.{host}"
    answer = await ctx.lookup(name, "TLSA", dnssec=True)
    if isinstance(answer, Failure):
        # A validating resolver answers SERVFAIL when the signatures do not verify (bogus).
        return _unknown(ctx, "dane", host, answer,
                        _text("TLSA lookup failed (a bogus DNSSEC signature looks like this)",
                              "TLSA-Abfrage fehlgeschlagen (so wirkt auch eine ungültige "
                              "DNSSEC-Signatur)"))
    records = _tlsa_of(answer.rdata)
    details: dict[str, object] = {"name": name, "records": [r.text() for r in records],
                                  "authenticated": answer.authenticated}
    if not records:
        return _observed(ctx, "dane", host, _INFO, _text("no TLSA records", "keine TLSA-Einträge"),
                         FailureKind.DOMAIN_DANE_MISSING, f"{name} has no TLSA records", details)
    if not answer.authenticated:
        return _observed(ctx, "dane", host, _WARN,
                         _text("TLSA present but unvalidated (no DNSSEC AD bit)",
                               "TLSA vorhanden, aber nicht bestätigt (kein DNSSEC-AD-Bit)"),
                         FailureKind.DOMAIN_DANE_UNVALIDATED,
                         f"{name}: {len(records)} TLSA record(s) without the AD bit from "
                         f"the resolver", details)
    usable = [r for r in records if rec.tlsa_usable(r) is None]
    if not usable:
        why = "; ".join(f"{r.text()[:40]}: {rec.tlsa_usable(r)}" for r in records)
        return _observed(ctx, "dane", host, _WARN,
                         _text("no TLSA record is usable for SMTP",
                               "kein TLSA-Eintrag ist für SMTP brauchbar"),
                         FailureKind.DOMAIN_DANE_UNUSABLE, f"{name}: {why}", details)
    chain = ctx.presented.get(host) or ctx.presented.get(host.rstrip(".").lower())
    if not chain:
        return _observed(ctx, "dane", host, _WARN,
                         _text("TLSA validated, but the MX presented no certificate",
                               "TLSA bestätigt, aber der MX hat kein Zertifikat vorgelegt"),
                         FailureKind.DOMAIN_DANE_NO_CERTIFICATE,
                         f"{host}: no certificate chain from STARTTLS to compare with {name}",
                         details)
    matched = [r for r in usable if rec.tlsa_match(r, chain)]
    if not matched:
        return _observed(ctx, "dane", host, _FAIL,
                         _text("validated TLSA records do not match the certificate",
                               "bestätigte TLSA-Einträge passen nicht zum Zertifikat"),
                         FailureKind.DOMAIN_DANE_MISMATCH,
                         f"{name}: none of {len(usable)} usable TLSA record(s) matches the "
                         f"chain {host} presented", details)
    details["matched"] = [r.text() for r in matched]
    first = matched[0]
    return _fine("dane", host,
                 _text(f"DANE valid: TLSA {first.usage} {first.selector} {first.mtype} matches",
                       f"DANE gültig: TLSA {first.usage} {first.selector} {first.mtype} passt"),
                 details)
