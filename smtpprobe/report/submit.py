"""JSON dicts for `sweep` and `relay` (schemas in docs/sweep.md and docs/relay.md), and the
interface words both commands use in English and German (i18n.py's pattern, kept here so that
these two commands do not edit the shared table).

Pure: no rich, no I/O. The caller passes the result through `report.dumps(data, redactor)`.
"""

from __future__ import annotations

from typing import Any

from smtpprobe.models import (
    AuthOutcome,
    Capabilities,
    PortMode,
    PortReport,
    Reason,
    Recommendation,
    RelayCheck,
    RelayReport,
    SweepReport,
)
from smtpprobe.report.json import finding_dict, step_dict, tls_dict

SWEEP_SCHEMA = "smtpprobe.sweep/1"
RELAY_SCHEMA = "smtpprobe.relay/1"

_TEXTS: dict[str, tuple[str, str]] = {
    # key: (English, German)
    # -- sweep table
    "col.port": ("Port", "Port"),
    "col.mode": ("Mode", "Modus"),
    "col.reachable": ("Reachable", "Erreichbar"),
    "col.tls": ("TLS", "TLS"),
    "col.cert": ("Certificate", "Zertifikat"),
    "col.auth_before": ("AUTH (plain)", "AUTH (unverschl.)"),
    "col.auth_after": ("AUTH (TLS)", "AUTH (TLS)"),
    "col.login": ("Login", "Anmeldung"),
    "mode.starttls": ("STARTTLS", "STARTTLS"),
    "mode.tls": ("SSL/TLS", "SSL/TLS"),
    "mode.plain": ("plain", "unverschlüsselt"),
    "security.tls": ("SSL/TLS", "SSL/TLS"),
    "security.starttls": ("STARTTLS", "STARTTLS"),
    "security.plain": ("None (unencrypted)", "Keine (unverschlüsselt)"),
    "state.open": ("yes", "ja"),
    "state.refused": ("refused", "abgewiesen"),
    "state.filtered": ("filtered (timed out)", "gefiltert (Zeitüberschreitung)"),
    "state.unreachable": ("no route", "keine Route"),
    "state.silent": ("no greeting", "keine Begrüßung"),
    "state.rejected": ("rejected", "abgelehnt"),
    "state.failed": ("failed", "gescheitert"),
    "auth.ok": ("ok ({mechanism})", "ok ({mechanism})"),
    "auth.failed": ("wrong credentials", "Zugangsdaten falsch"),
    "auth.app_password": ("app password needed", "App-Passwort nötig"),
    "auth.method_rejected": ("method refused", "Verfahren abgelehnt"),
    "auth.tls_required": ("TLS required first", "erst TLS nötig"),
    "auth.not_offered": ("not offered", "nicht angeboten"),
    "auth.withheld": ("withheld (no TLS)", "zurückgehalten (kein TLS)"),
    "auth.untrusted": ("withheld (certificate)", "zurückgehalten (Zertifikat)"),
    "auth.temporary": ("temporary error", "vorübergehender Fehler"),
    "auth.error": ("no answer", "keine Antwort"),
    "auth.not_tried": ("not tried", "nicht versucht"),
    "none": ("none", "keins"),
    "dash": ("-", "-"),
    "cert.ok": ("ok, {days} days", "ok, {days} Tage"),
    "cert.untrusted": ("not trusted", "nicht vertrauenswürdig"),
    "cert.expired": ("expired", "abgelaufen"),
    "cert.name": ("wrong name", "falscher Name"),
    "sweep.title": ("Mail server ports of {host}", "Mailserver-Ports von {host}"),
    "sweep.address": ("address {address}", "Adresse {address}"),
    "sweep.findings": ("Findings", "Befunde"),
    "sweep.elapsed": ("took {ms} ms", "Dauer {ms} ms"),
    "rec.title": ("Settings for your mail program", "Einstellungen für Ihr Mailprogramm"),
    "rec.none": ("No working settings found", "Keine funktionierenden Einstellungen gefunden"),
    "rec.server": ("Outgoing server (SMTP)", "Postausgangsserver (SMTP)"),
    "rec.port": ("Port", "Port"),
    "rec.security": ("Connection security", "Verbindungssicherheit"),
    "rec.auth": ("Authentication", "Authentifizierung"),
    "rec.user": ("User name", "Benutzername"),
    "rec.why": ("Why", "Warum"),
    "rec.cause": ("Likely cause", "Wahrscheinliche Ursache"),
    "rec.remedy": ("What to do", "Was tun"),
    "mech.PLAIN": ("Normal password (PLAIN)", "Passwort, normal (PLAIN)"),
    "mech.LOGIN": ("Normal password (LOGIN)", "Passwort, normal (LOGIN)"),
    "mech.CRAM-MD5": ("Encrypted password (CRAM-MD5)", "Verschlüsseltes Passwort (CRAM-MD5)"),
    "mech.other": ("{mechanism}", "{mechanism}"),
    # -- recommendation reasons (sweep.Reason keys)
    "reason.login_ok": ("The login with {mechanism} worked on port {port}.",
                        "Die Anmeldung mit {mechanism} hat auf Port {port} funktioniert."),
    "reason.login_offered": ("The server offers a login over an encrypted connection "
                             "({mechanisms}).",
                             "Der Server bietet eine Anmeldung über eine verschlüsselte "
                             "Verbindung an ({mechanisms})."),
    "reason.untested": ("The login itself was not tried: give --user (and a password) to "
                        "test it.",
                        "Die Anmeldung selbst wurde nicht versucht: mit --user (und Passwort) "
                        "lässt sie sich testen."),
    "reason.why_tls": ("SSL/TLS encrypts from the first byte; RFC 8314 prefers it for "
                       "sending mail.",
                       "SSL/TLS verschlüsselt ab dem ersten Byte; RFC 8314 zieht es für den "
                       "Mailversand vor."),
    "reason.why_starttls": ("STARTTLS switches the connection to encryption before the "
                            "password is sent.",
                            "STARTTLS schaltet die Verbindung auf Verschlüsselung um, bevor "
                            "das Passwort gesendet wird."),
    "reason.why_plain": ("This connection is not encrypted: the password crosses the network "
                         "readable.",
                         "Diese Verbindung ist unverschlüsselt: Das Passwort geht lesbar über "
                         "das Netz."),
    "reason.cert_warning": ("The certificate does not check out ({error}): the mail program "
                            "will warn or refuse.",
                            "Das Zertifikat besteht die Prüfung nicht ({error}): Das "
                            "Mailprogramm wird warnen oder ablehnen."),
    "reason.port25_filtered": ("Port 25 did not answer at all (filtered): your network "
                               "probably blocks it. That does not matter for sending: use port "
                               "{chosen}.",
                               "Port 25 hat gar nicht geantwortet (gefiltert): Ihr Netz sperrt "
                               "ihn vermutlich. Für den Versand ist das egal: Port {chosen} "
                               "verwenden."),
    "reason.port_filtered": ("Port {port} did not answer (filtered).",
                             "Port {port} hat nicht geantwortet (gefiltert)."),
    "reason.port_refused": ("Port {port} refused the connection.",
                            "Port {port} hat die Verbindung abgewiesen."),
    "reason.no_address": ("The server name has no address in DNS.",
                          "Der Servername hat keine Adresse im DNS."),
    "reason.auth_failed": ("Port {port} refused the user name or password.",
                           "Port {port} hat Benutzername oder Passwort abgelehnt."),
    "reason.auth_app_password": ("Port {port} wants an app password (or another login "
                                 "method) instead of this password.",
                                 "Port {port} verlangt ein App-Passwort (oder ein anderes "
                                 "Anmeldeverfahren) statt dieses Passworts."),
    "reason.auth_tls_required": ("Port {port} wants encryption before the login.",
                                 "Port {port} verlangt Verschlüsselung vor der Anmeldung."),
    "reason.auth_method_rejected": ("Port {port} accepted none of the login methods "
                                    "smtpprobe tried.",
                                    "Port {port} hat keines der versuchten "
                                    "Anmeldeverfahren angenommen."),
    "reason.auth_temporary": ("Port {port} could not check the login just now.",
                              "Port {port} konnte die Anmeldung gerade nicht prüfen."),
    "reason.auth_error": ("Port {port} stopped answering during the login.",
                          "Port {port} hat während der Anmeldung nicht mehr geantwortet."),
    "reason.auth_untrusted": ("Port {port} offers a login, but its certificate does not "
                              "verify: the password was not sent. Trust the server's CA with "
                              "--cafile, or use --no-verify if you know the certificate.",
                              "Port {port} bietet eine Anmeldung an, aber sein Zertifikat "
                              "ist nicht gültig: Das Passwort wurde nicht gesendet. Die CA "
                              "des Servers mit --cafile angeben oder --no-verify nutzen, "
                              "wenn Sie dem Zertifikat trauen."),
    "reason.auth_withheld": ("Only port {port} offers a login, and only without encryption: "
                             "the password was not sent.",
                             "Nur Port {port} bietet eine Anmeldung an, und nur "
                             "unverschlüsselt: Das Passwort wurde nicht gesendet."),
    "reason.auth_not_offered": ("No port offers a login smtpprobe can use (first: port "
                                "{port}).",
                                "Kein Port bietet eine Anmeldung an, die smtpprobe nutzen kann "
                                "(zuerst: Port {port})."),
    "reason.port_failed": ("Port {port} answered but could not be used.",
                           "Port {port} hat geantwortet, war aber nicht nutzbar."),
    "reason.no_tls_anywhere": ("No port offered an encrypted connection.",
                               "Kein Port hat eine verschlüsselte Verbindung angeboten."),
    "reason.no_auth_anywhere": ("No port offers a login over an encrypted connection.",
                                "Kein Port bietet eine Anmeldung über eine verschlüsselte "
                                "Verbindung an."),
    "reason.all_filtered": ("No port answered at all: the server is down, or a firewall "
                            "(perhaps your own network's) drops the connections.",
                            "Kein Port hat überhaupt geantwortet: Der Server ist aus, oder "
                            "eine Firewall (vielleicht die des eigenen Netzes) verwirft die "
                            "Verbindungen."),
    "reason.all_refused": ("Every port refused the connection: the mail service is not "
                           "running there, or the server name is wrong.",
                           "Jeder Port hat die Verbindung abgewiesen: Dort läuft kein "
                           "Maildienst, oder der Servername ist falsch."),
    "reason.none_reachable": ("No port could be used.", "Kein Port war nutzbar."),
    # -- relay
    "check.connect": ("connect", "Verbindung"),
    "check.tls": ("tls", "TLS"),
    "check.auth": ("auth", "Anmeldung"),
    "check.mail": ("mail", "Absender"),
    "check.rcpt": ("rcpt", "Empfänger"),
    "check.send": ("send", "Senden"),
    "check.open_relay": ("open relay", "offenes Relay"),
    "status.pass": ("pass", "bestanden"),
    "status.fail": ("FAIL", "FEHLER"),
    "status.skip": ("skip", "übersprungen"),
    "status.temporary": ("TEMP", "VORÜBERGEHEND"),
    "verdict.pass": ("PASS: the relay works", "BESTANDEN: das Relay funktioniert"),
    "verdict.fail": ("FAIL: a check failed", "FEHLER: eine Prüfung ist gescheitert"),
    "verdict.temporary": ("TEMPORARY: a check failed for now (4xx or timeout); retry later",
                          "VORÜBERGEHEND: eine Prüfung scheiterte vorerst (4xx oder "
                          "Zeitüberschreitung); später wiederholen"),
    "relay.title": ("Relay {server}", "Relay {server}"),
    "relay.verdict": ("Verdict", "Ergebnis"),
    "relay.failures": ("What went wrong", "Was schiefging"),
    "note.skip_after": ("skipped: the {check} check did not pass",
                        "übersprungen: die Prüfung {check} ist nicht bestanden"),
    "note.tls_optional": ("STARTTLS not offered; not required on this port (--tls starttls "
                          "requires it)",
                          "STARTTLS nicht angeboten; auf diesem Port nicht verlangt "
                          "(--tls starttls verlangt es)"),
    "note.tls_none": ("skipped: --tls none", "übersprungen: --tls none"),
    "note.tls_with": ("{version}, {cipher}", "{version}, {cipher}"),
    "note.no_user": ("skipped: no --user given", "übersprungen: kein --user angegeben"),
    "note.auth_with": ("logged in with {mechanism}", "angemeldet mit {mechanism}"),
    "note.no_from": ("skipped: no --from given", "übersprungen: kein --from angegeben"),
    "note.queued": ("queued as {queue_id}, {message_id}",
                    "eingereiht als {queue_id}, {message_id}"),
    "note.open_relay_unknown": ("the open-relay check could not finish",
                                "die Prüfung auf offenes Relay konnte nicht abschließen"),
    "label.cause": ("Cause", "Ursache"),
    "label.remedy": ("What to do", "Was tun"),
    "label.server_said": ("Server said", "Antwort des Servers"),
    "label.transcript": ("Transcript", "Protokoll"),
    "label.rule": ("Rule", "Regel"),
}


def text(key: str, lang: str, **values: object) -> str:
    en, de = _TEXTS[key]
    chosen = de if lang == "de" else en
    return chosen.format(**values) if values else chosen


def has_text(key: str) -> bool:
    return key in _TEXTS


def reason_text(reason: Reason, lang: str) -> str:
    return text(f"reason.{reason.key}", lang, **dict(reason.values))


def note_text(note: Reason, lang: str) -> str:
    return text(f"note.{note.key}", lang, **dict(note.values))


def mechanism_label(mechanism: str | None, lang: str) -> str:
    if not mechanism:
        return text("none", lang)
    key = f"mech.{mechanism}"
    return text(key, lang) if has_text(key) else text("mech.other", lang, mechanism=mechanism)


def _extensions(caps: Capabilities | None) -> list[str] | None:
    if caps is None:
        return None
    return [f"{k} {v}".strip() for k, v in caps.extensions]


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
        "elapsed_ms": round(report.elapsed_ms, 2),
    }


def check_dict(check: RelayCheck, lang: str) -> dict[str, Any]:
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
        "checks": [check_dict(c, lang) for c in report.checks],
        "tls": tls_dict(report.tls),
        "user": report.user,
        "message_id": report.message_id,
        "queue_id": report.queue_id,
        "elapsed_ms": round(report.elapsed_ms, 2),
    }
