"""The user interface's own words in English and German, one table for every command (the
knowledge base has its own).

Keys are namespaced by where they appear: bare keys are shared labels (`cause`, `remedy`,
`transcript`, `verdict` ...); `verdict.*` and `status.*` are check's verdicts and address
statuses; `relay.*` are relay's (its check names, statuses and verdicts live under `relay.`
so that they never meet check's); `reason.*` and `note.*` are the texts of sweep's and relay's
`Reason` values, whose placeholders the probe fills. Pure: no rich, no I/O.
"""

from __future__ import annotations

import locale
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the locale lookup (cli/options.py) must not load the models
    from smtpprobe.models import Reason

LANGS = ("en", "de")

_TEXTS: dict[str, tuple[str, str]] = {
    # key: (English, German)
    # -- every command: labels of a finding, check's verdicts, address statuses, TLS, MX
    "category": ("Category", "Kategorie"),
    "retry": ("Retry", "Neuer Versuch"),
    "retry.yes": ("yes, a later attempt can succeed", "ja, ein späterer Versuch kann gelingen"),
    "retry.no": ("no, not without a change", "nein, nicht ohne eine Änderung"),
    "cause": ("Cause", "Ursache"),
    "remedy": ("What to do", "Abhilfe"),
    "server_said": ("Server said", "Antwort des Servers"),
    "detail": ("Details", "Einzelheiten"),
    "stage": ("Stage", "Schritt"),
    "stage.none": ("not given", "nicht angegeben"),
    # the stage of a finding as German admins name it (English: the stage's own name)
    "stage.dns": ("dns", "DNS-Abfrage"),
    "stage.connect": ("connect", "Verbindungsaufbau"),
    "stage.ehlo": ("ehlo", "EHLO"),
    "stage.starttls": ("starttls", "STARTTLS"),
    "stage.auth": ("auth", "AUTH (Anmeldung)"),
    "stage.mail": ("mail", "MAIL FROM (Absender)"),
    "stage.rcpt": ("rcpt", "RCPT TO (Empfänger)"),
    "stage.data": ("data", "DATA (Nachricht)"),
    "stage.quit": ("quit", "QUIT"),
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
                         "ZURÜCKGESTELLT: der Server nimmt jetzt nicht an, ein späterer Versuch "
                         "kann gelingen"),
    "verdict.unreachable": ("UNREACHABLE: no mail server could be asked",
                            "NICHT ERREICHBAR: kein Mailserver war erreichbar"),
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
    # lookups that carry out a finding's remedy (check, explain --lookup; probe/lookups.py)
    "lookups": ("Looked up", "Nachgeschlagen"),
    "lookup.dnsbl": ("blocklist", "Sperrliste"),
    "lookup.spf": ("SPF", "SPF"),
    "lookup.dmarc": ("DMARC", "DMARC"),
    "lookup.ptr": ("reverse DNS", "Reverse-DNS"),
    # -- check with many addresses: the compact table, the summary, the progress bar
    "list.address": ("Address", "Adresse"),
    "list.verdict": ("Verdict", "Ergebnis"),
    "list.code": ("Code", "Code"),
    "list.category": ("Category", "Kategorie"),
    "list.mx_host": ("Mail host", "Mailserver"),
    "list.accepted": ("accepted", "angenommen"),
    "list.rejected": ("rejected", "abgelehnt"),
    "list.deferred": ("deferred", "zurückgestellt"),
    "list.unreachable": ("unreachable", "nicht erreichbar"),
    "list.invalid": ("invalid input", "ungültige Eingabe"),
    "list.interrupted": ("not finished", "nicht abgeschlossen"),
    "list.more": ("and {n} more", "und {n} weitere"),
    "list.line": ("line {line}", "Zeile {line}"),
    "progress.checking": ("checking {done} of {total} addresses",
                          "prüfe Adressen: {done} von {total}"),
    "progress.waiting": ("waiting on {domain}", "warte auf {domain}"),
    "warn.invisible": ("removed invisible characters from {where}: {chars}",
                       "unsichtbare Zeichen entfernt ({where}): {chars}"),
    "warn.invalid": ("{where}: not checked: {error}", "{where}: nicht geprüft: {error}"),
    "warn.argument": ("the argument {text}", "Argument {text}"),
    "warn.helo_default": ("this machine's name {name!r} is not fully qualified, and many "
                          "servers refuse such an EHLO: give --helo with a name that "
                          "resolves to the address you probe from",
                          "der Name dieses Rechners {name!r} ist nicht vollständig, und viele "
                          "Server lehnen ein solches EHLO ab: Geben Sie mit --helo einen "
                          "Namen an, der auf die Adresse zeigt, von der Sie prüfen"),
    "warn.helo_given": ("--helo {name!r} is not fully qualified; many servers refuse such "
                        "an EHLO",
                        "--helo {name!r} ist kein vollständiger Name; viele Server lehnen ein "
                        "solches EHLO ab"),
    "interrupted": ("interrupted: {done} of {total} addresses checked",
                    "abgebrochen: {done} von {total} Adressen geprüft"),
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
    # -- explain: what a pasted bounce says besides the reply, its notes, --batch's errors
    "explain.recipient": ("Recipient", "Empfänger"),
    "explain.reporting_host": ("Reported by", "Gemeldet von"),
    "explain.paste": ("Paste the reply or bounce, then Ctrl-D:",
                      "Fügen Sie die Antwort oder die Unzustellbarkeitsmeldung ein und drücken "
                      "Sie dann Strg+D:"),
    "explain.cut": ("note: the input is longer than {limit}; only the first {limit} was read",
                    "Hinweis: Die Eingabe ist länger als {limit}; ausgewertet wurden nur die "
                    "ersten {limit}"),
    "batch.not_json": ("not valid JSON: {detail}",
                       "kein gültiges JSON (Spalte {column})"),
    "batch.too_deep": ("the JSON is nested too deeply", "das JSON ist zu tief verschachtelt"),
    "batch.too_long": ("the line is longer than {limit} and was skipped",
                       "die Zeile ist länger als {limit} und wurde übersprungen"),
    "batch.not_object": ('each line must be an object with a "reply" string',
                         'jede Zeile muss ein Objekt mit einer Zeichenkette "reply" sein'),
    "batch.empty": ("the reply is empty", "die Antwort ist leer"),
    "batch.stage": ("unknown stage {stage} (use one of: {names})",
                    "unbekannter Schritt {stage} (möglich sind: {names})"),
    # -- sweep: the port table
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
    "mech.none": ("none", "keins"),
    "dash": ("-", "-"),
    "cert.ok": ("ok, {days} days", "ok, {days} Tage"),
    "cert.untrusted": ("not trusted", "nicht vertrauenswürdig"),
    "cert.expired": ("expired", "abgelaufen"),
    "cert.name": ("wrong name", "falscher Name"),
    "sweep.title": ("Mail server ports of {host}", "Mailserver-Ports von {host}"),
    "sweep.address": ("address {address}", "Adresse {address}"),
    "rec.title": ("Settings for your mail program", "Einstellungen für Ihr Mailprogramm"),
    "rec.none": ("No working settings found", "Keine funktionierenden Einstellungen gefunden"),
    "rec.server": ("Outgoing server (SMTP)", "Postausgangsserver (SMTP)"),
    "rec.port": ("Port", "Port"),
    "rec.security": ("Connection security", "Verbindungssicherheit"),
    "rec.auth": ("Authentication", "Authentifizierung"),
    "rec.user": ("User name", "Benutzername"),
    "rec.why": ("Why", "Warum"),
    "rec.cause": ("Likely cause", "Wahrscheinliche Ursache"),
    "rec.remedy": ("What to do", "Abhilfe"),
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
                        "Die Anmeldung selbst wurde nicht versucht: Geben Sie zum Testen --user "
                        "(und ein Passwort) an."),
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
                               "ihn vermutlich. Für den Versand spielt das keine Rolle: Verwenden "
                               "Sie Port {chosen}."),
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
                              "ist nicht gültig: Das Passwort wurde nicht gesendet. Geben Sie "
                              "die Zertifizierungsstelle (CA) des Servers mit --cafile an, "
                              "oder verwenden Sie --no-verify, wenn Sie dem Zertifikat "
                              "vertrauen."),
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
    "reason.ip_not_covered": ("The certificate on port {port} does not cover the address "
                              "{host} (it names {names}): a mail program would refuse the "
                              "connection. Enter a name the certificate covers as the server "
                              "instead of the address.",
                              "Das Zertifikat auf Port {port} gilt nicht für die Adresse "
                              "{host} (es nennt {names}): Ein Mailprogramm würde die "
                              "Verbindung ablehnen. Tragen Sie statt der Adresse einen Namen, "
                              "den das Zertifikat abdeckt, als Server ein."),
    "reason.ip_as_dns_name": ("The certificate on port {port} lists {host} only as a DNS "
                              "name, which does not count for an address (RFC 6125: it needs an "
                              "IP address entry): a mail program would refuse the connection. "
                              "Enter a name the certificate covers ({names}) as the server "
                              "instead of the address.",
                              "Das Zertifikat auf Port {port} führt {host} nur als DNS-Namen, "
                              "und der zählt für eine Adresse nicht (RFC 6125: nötig ist ein "
                              "IP-Adress-Eintrag): Ein Mailprogramm würde die Verbindung "
                              "ablehnen. Tragen Sie statt der Adresse einen Namen, den das "
                              "Zertifikat abdeckt ({names}), als Server ein."),
    "reason.ip_not_covered_unnamed": ("The certificate on port {port} names nothing that can "
                                      "be checked, so it does not cover the address {host}: a "
                                      "mail program would refuse the connection.",
                                      "Das Zertifikat auf Port {port} nennt nichts Prüfbares "
                                      "und gilt daher nicht für die Adresse {host}: Ein "
                                      "Mailprogramm würde die Verbindung ablehnen."),
    # -- relay: check names (`relay.check.<name>`), statuses, verdicts, notes (relay.Reason keys)
    "relay.check.connect": ("connect", "Verbindung"),
    "relay.check.tls": ("tls", "TLS"),
    "relay.check.auth": ("auth", "Anmeldung"),
    "relay.check.mail": ("mail", "Absender"),
    "relay.check.rcpt": ("rcpt", "Empfänger"),
    "relay.check.send": ("send", "Senden"),
    "relay.check.open_relay": ("open relay", "offenes Relay"),
    "relay.status.pass": ("pass", "bestanden"),
    "relay.status.fail": ("FAIL", "FEHLER"),
    "relay.status.skip": ("skip", "übersprungen"),
    "relay.status.temporary": ("TEMP", "VORÜBERGEHEND"),
    "relay.verdict.pass": ("PASS: the relay works", "BESTANDEN: das Relay funktioniert"),
    "reason.inbound_only": ("{host} answers on port {open} without offering a login, and ports "
                            "{closed} are closed: it is a server that receives mail (an MX), "
                            "not a submission server for mail programs. Use your provider's "
                            "submission server (often named smtp.<domain> or mail.<domain>; "
                            "the provider's help pages name it) on port 587 or 465.",
                            "{host} antwortet auf Port {open}, ohne eine Anmeldung anzubieten, "
                            "und die "
                            "Ports {closed} sind geschlossen: Das ist ein Server, der Mail "
                            "empfängt (ein MX), kein Einlieferungsserver für Mailprogramme. "
                            "Verwenden Sie den Einlieferungsserver Ihres Anbieters (oft "
                            "smtp.<domain> oder mail.<domain>; die Hilfeseiten des Anbieters "
                            "nennen ihn) auf Port 587 oder 465."),
    "relay.rcpt_accepted": ("accepted for delivery (a relay does not vouch that the mailbox "
                            "exists)",
                            "zur Zustellung angenommen (ein Relay sagt nicht, ob das Postfach "
                            "existiert)"),
    # A pass that tested only part of the path says which part (no --user, --from, --to).
    "relay.verdict.pass_partial": ("PASS for what was tested: {tested}; not tested: "
                                   "{untested}",
                                   "BESTANDEN, soweit geprüft: {tested}; nicht geprüft: "
                                   "{untested}"),
    "relay.verdict.fail": ("FAIL: a check failed", "FEHLER: eine Prüfung ist gescheitert"),
    "relay.verdict.temporary": ("TEMPORARY: a check failed for now (4xx or timeout); "
                                "retry later",
                                "VORÜBERGEHEND: eine Prüfung scheiterte vorerst (4xx oder "
                                "Zeitüberschreitung); wiederholen Sie sie später"),
    "relay.title": ("Relay {server}", "Relay {server}"),
    "relay.failures": ("What went wrong", "Was schiefging"),
    # -- domain (report/text_domain.py): its columns, statuses and check names
    "domain.title": ("Mail domain {domain}", "Maildomain {domain}"),
    "domain.col.check": ("check", "Prüfung"),
    "domain.col.subject": ("subject", "Gegenstand"),
    "domain.col.status": ("status", "Status"),
    "domain.col.summary": ("result", "Ergebnis"),
    "domain.status.ok": ("ok", "in Ordnung"),
    "domain.status.warn": ("WARN", "WARNUNG"),
    "domain.status.fail": ("FAIL", "FEHLER"),
    "domain.status.info": ("info", "Hinweis"),
    "domain.status.unknown": ("unknown", "unbekannt"),
    "domain.check.mx": ("MX records", "MX-Einträge"),
    "domain.check.mx_address": ("MX address", "MX-Adresse"),
    "domain.check.ipv6": ("IPv6", "IPv6"),
    "domain.check.ptr": ("reverse DNS", "Reverse-DNS"),
    "domain.check.fcrdns": ("forward-confirmed rDNS", "bestätigtes Reverse-DNS"),
    "domain.check.banner_name": ("greeting name", "Begrüßungsname"),
    "domain.check.starttls": ("STARTTLS", "STARTTLS"),
    "domain.check.tls_version": ("TLS versions", "TLS-Versionen"),
    "domain.check.certificate": ("certificate", "Zertifikat"),
    "domain.check.postmaster": ("postmaster", "postmaster"),
    "domain.check.open_relay": ("open relay", "offenes Relay"),
    "domain.check.spf": ("SPF", "SPF"),
    "domain.check.dmarc": ("DMARC", "DMARC"),
    "domain.check.dkim": ("DKIM", "DKIM"),
    "domain.check.dnsbl": ("blocklists", "Sperrlisten"),
    "domain.check.mta_sts": ("MTA-STS", "MTA-STS"),
    "domain.check.tls_rpt": ("TLS-RPT", "TLS-RPT"),
    "domain.check.dane": ("DANE", "DANE"),
    # Labels before the numbers: no "1 notes", no "1 Warnungen".
    "domain.counts": ("ok: {ok}, warnings: {warn}, failed: {fail}, notes: {info}, "
                      "unknown: {unknown} ({seconds:.2f} s)",
                      "in Ordnung: {ok}, Warnungen: {warn}, Fehler: {fail}, Hinweise: {info}, "
                      "unbekannt: {unknown} ({seconds:.2f} s)"),
    "domain.findings": ("What to fix", "Was zu tun ist"),
    "note.skip_after": ("skipped: the {check} check did not pass",
                        "die Prüfung „{check}“ wurde nicht bestanden"),
    "note.tls_optional": ("STARTTLS not offered; not required on this port (--tls starttls "
                          "requires it)",
                          "STARTTLS nicht angeboten; auf diesem Port nicht verlangt "
                          "(--tls starttls verlangt es)"),
    "note.tls_none": ("skipped: --tls none", "--tls none angegeben"),
    "note.tls_with": ("{version}, {cipher}", "{version}, {cipher}"),
    "note.cert_names": ("the certificate names {names}, not {name}",
                        "das Zertifikat nennt {names}, nicht {name}"),
    "note.cert_expired": ("expired on {date}", "abgelaufen am {date}"),
    "note.cert_not_yet_valid": ("not valid before {date}", "erst ab {date} gültig"),
    "note.cert_wrong_purpose": ("not issued for TLS servers (its extended key usage lacks "
                                "serverAuth)",
                                "nicht für TLS-Server ausgestellt (der erweiterten "
                                "Schlüsselverwendung fehlt serverAuth)"),
    "note.cert_unreadable": ("the certificate cannot be read",
                             "das Zertifikat ist nicht lesbar"),
    "note.tls_outdated": ("{version} is older than TLS 1.2", "{version} ist älter als TLS 1.2"),
    "note.cert_self_signed": ("self-signed", "selbst signiert"),
    "note.cert_unknown_issuer": ("issued by a certificate authority that is not trusted",
                                 "von einer nicht vertrauenswürdigen Zertifizierungsstelle "
                                 "ausgestellt"),
    "note.cert_missing_intermediate": ("the server does not send its intermediate "
                                       "certificate",
                                       "der Server sendet sein Zwischenzertifikat nicht mit"),
    "note.cert_untrusted": ("the certificate chain does not pass the check",
                            "die Zertifikatskette besteht die Prüfung nicht"),
    "note.cert_no_trust_store": ("no trusted root certificates loaded",
                                 "keine vertrauenswürdigen Stammzertifikate geladen"),
    "note.cert_none": ("the server sent no certificate",
                       "der Server hat kein Zertifikat gesendet"),
    "note.no_user": ("skipped: no --user given", "kein --user angegeben"),
    "note.auth_with": ("logged in with {mechanism}", "angemeldet mit {mechanism}"),
    "note.no_from": ("skipped: no --from given", "kein --from angegeben"),
    "note.queued": ("queued as {queue_id}, {message_id}",
                    "eingereiht als {queue_id}, {message_id}"),
    "note.open_relay_unknown": ("the open-relay check could not finish",
                                "die Prüfung auf offenes Relay ließ sich nicht abschließen"),
    # -- --nagios: the summary of the plugin's status line (report/nagios.py)
    "nagios.check.accepted": ("{address} accepted by {host} in {seconds}s",
                              "{address} von {host} angenommen in {seconds} s"),
    "nagios.check.rejected": ("{address} rejected by {host}",
                              "{address} von {host} abgelehnt"),
    "nagios.check.deferred": ("{address} deferred by {host}",
                              "{address} von {host} zurückgestellt"),
    "nagios.check.unreachable": ("{address}: no mail server of {host} could be asked",
                                 "{address}: kein Mailserver von {host} war erreichbar"),
    "nagios.relay.pass": ("relay {server} passed {passed} checks in {seconds}s",
                          "Relay {server} hat {passed} Prüfungen in {seconds} s bestanden"),
    "nagios.relay.fail": ("relay {server}: {check} failed: {what}",
                          "Relay {server}: Prüfung {check} gescheitert: {what}"),
    "nagios.sweep.ok": ("{host}: port {port} ({mode}) works, {seconds}s",
                        "{host}: Port {port} ({mode}) funktioniert, {seconds} s"),
    "nagios.sweep.none": ("{host}: no port works for sending",
                          "{host}: kein Port funktioniert für die Einlieferung"),
    "nagios.port": ("port {port} ({mode}): {state}", "Port {port} ({mode}): {state}"),
    "nagios.port_open": ("open", "offen"),
    "nagios.login": ("login: {result}", "Anmeldung: {result}"),
    "nagios.domain": ("{domain}: {checks} checks, {counts}",
                      "{domain}: {checks} Prüfungen, {counts}"),
    "nagios.slow": ("response time {seconds}s outside the threshold",
                    "Antwortzeit {seconds} s außerhalb des Schwellwerts"),
    "nagios.cert_days": ("certificate expires in {days} days",
                         "Zertifikat läuft in {days} Tagen ab"),
    # -- whoami: the self-check of the probing host
    "whoami.address": ("Source address", "Absenderadresse"),
    "whoami.ptr": ("Reverse DNS (PTR)", "Reverse-DNS (PTR)"),
    "whoami.confirmed": ("confirmed: {name} points back", "bestätigt: {name} zeigt zurück"),
    "whoami.unconfirmed": ("not confirmed", "nicht bestätigt"),
    "whoami.helo": ("EHLO name", "EHLO-Name"),
    "whoami.resolves": ("resolves to {addresses}", "löst auf zu {addresses}"),
    "whoami.lists": ("Blocklists", "Sperrlisten"),
    "whoami.listed": ("listed", "gelistet"),
    "whoami.not_listed": ("not listed", "nicht gelistet"),
    "whoami.unknown": ("could not be asked", "nicht abfragbar"),
    "whoami.none": ("none", "keine"),
}


def text(key: str, lang: str, **values: object) -> str:
    en, de = _TEXTS[key]
    chosen = de if lang == "de" else en
    return chosen.format(**values) if values else chosen


def has_text(key: str) -> bool:
    return key in _TEXTS


def reason_text(reason: Reason, lang: str) -> str:
    """A recommendation reason of sweep (`reason.<key>`), its values filled in."""
    return text(f"reason.{reason.key}", lang, **dict(reason.values))


def note_text(note: Reason, lang: str) -> str:
    """A note of a relay check (`note.<key>`), its values filled in."""
    values = dict(note.values)
    check = values.get("check")
    if isinstance(check, str) and has_text(f"relay.check.{check}"):  # skip_after names a check
        values["check"] = text(f"relay.check.{check}", lang)
    return text(f"note.{note.key}", lang, **values)


def mechanism_label(mechanism: str | None, lang: str) -> str:
    """A SASL mechanism as a mail program's settings call it."""
    if not mechanism:
        return text("mech.none", lang)
    key = f"mech.{mechanism}"
    return text(key, lang) if has_text(key) else text("mech.other", lang, mechanism=mechanism)


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
