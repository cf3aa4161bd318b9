"""The user interface's own words in English and German (the knowledge base has its own)."""

from __future__ import annotations

import locale
import os
from collections.abc import Mapping

LANGS = ("en", "de")

_TEXTS: dict[str, tuple[str, str]] = {
    # key: (English, German)
    "category": ("Category", "Kategorie"),
    "retry": ("Retry", "Erneut versuchen"),
    "retry.yes": ("yes, a later attempt can succeed", "ja, ein späterer Versuch kann gelingen"),
    "retry.no": ("no, not without a change", "nein, nicht ohne eine Änderung"),
    "cause": ("Cause", "Ursache"),
    "remedy": ("What to do", "Was tun"),
    "server_said": ("Server said", "Antwort des Servers"),
    "detail": ("Details", "Einzelheiten"),
    "stage": ("Stage", "Schritt"),
    "stage.none": ("not given", "nicht angegeben"),
    "rule": ("Rule", "Regel"),
    "references": ("References", "Quellen"),
    "correction": ("Note", "Hinweis"),
    "severity": ("Severity", "Schweregrad"),
    "verdict": ("Verdict", "Ergebnis"),
    "verdict.accepted": ("ACCEPTED: the server would take mail for this address",
                         "ANGENOMMEN: der Server würde Mail für diese Adresse annehmen"),
    "verdict.rejected": ("REJECTED: mail to this address would not be delivered",
                         "ABGELEHNT: Mail an diese Adresse würde nicht zugestellt"),
    "verdict.deferred": ("DEFERRED: the server said not now, try later",
                         "ZURÜCKGESTELLT: der Server will es später noch einmal versucht haben"),
    "verdict.unreachable": ("UNREACHABLE: no mail server could be asked",
                            "NICHT ERREICHBAR: kein Mailserver konnte gefragt werden"),
    "status": ("Address", "Adresse"),
    "status.exists": ("exists", "existiert"),
    "status.does_not_exist": ("does not exist", "existiert nicht"),
    "status.catch_all": ("unknown: the domain accepts any address (catch-all)",
                         "unbekannt: die Domain nimmt jede Adresse an (Catch-all)"),
    "status.inactive": ("exists, but is disabled or has moved",
                        "existiert, ist aber gesperrt oder umgezogen"),
    "status.unknown": ("unknown", "unbekannt"),
    "status.prober": ("unknown: the server rejected this probe, not the address",
                      "unbekannt: der Server hat diese Prüfung abgelehnt, nicht die Adresse"),
    "mx": ("Mail hosts", "Mailserver"),
    "mx.implicit": ("no MX records: the domain's own address is used (RFC 5321 5.1)",
                    "keine MX-Einträge: die Adresse der Domain selbst wird genutzt "
                    "(RFC 5321 5.1)"),
    "mx.none": ("none", "keine"),
    "findings": ("Findings", "Befunde"),
    "tls": ("TLS", "TLS"),
    "tls.none": ("not used", "nicht genutzt"),
    "tls.verified": ("certificate verifies", "Zertifikat gültig"),
    "tls.unverified": ("certificate does not verify", "Zertifikat nicht gültig"),
    "tls.names_ok": ("names match", "Namen passen"),
    "tls.names_bad": ("names do not match", "Namen passen nicht"),
    "tls.days": ("{days} days left", "noch {days} Tage gültig"),
    "transcript": ("Transcript", "Protokoll"),
    "elapsed": ("took {ms} ms", "Dauer {ms} ms"),
    "no_reply_awaited": ("(reply not awaited)", "(Antwort nicht abgewartet)"),
    "summary": ("{n} addresses: {counts}", "{n} Adressen: {counts}"),
}


def text(key: str, lang: str, **values: object) -> str:
    en, de = _TEXTS[key]
    chosen = de if lang == "de" else en
    return chosen.format(**values) if values else chosen


def default_lang(environ: Mapping[str, str] | None = None) -> str:
    """German when the locale says so (LC_ALL, LC_MESSAGES, LANG, LANGUAGE), else English."""
    env = os.environ if environ is None else environ
    for var in ("LC_ALL", "LC_MESSAGES", "LANG", "LANGUAGE"):
        value = env.get(var, "")
        if value:
            return "de" if value.lower().startswith("de") else "en"
    try:
        current = locale.getlocale(locale.LC_MESSAGES)[0] or ""
    except (AttributeError, ValueError):
        current = ""
    return "de" if current.lower().startswith("de") else "en"
