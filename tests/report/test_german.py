"""German a help desk would sign (issue 14): the German output of every command, run through
the real command line against lab servers, contains no English word of the interface's word
table, and every German remedy of the knowledge base addresses the reader in the polite "Sie"
form (or says in a full sentence who has to act) instead of a bare infinitive ("Zertifikat
erneuern.").

What counts as English: every word of the English side of smtpprobe/report/words.py, minus the
words its German side uses too ("Port", "TLS", "Relay", "Code" ...) and minus SHARED below:
protocol and technical terms German mail admins use as they are. What is not the tool's own
words is taken out of the output first: what the server said (transcript lines, the "Antwort
des Servers" row), quotations („...“, '...'), addresses, host names, option names and
identifiers (category names such as user_unknown), and whatever the same run's --json gives
as a server's reply or a lower layer's detail or evidence (those are English today:
test_details_are_german, a strict xfail, records that)."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
from collections.abc import Awaitable, Callable, Collection, Iterator
from pathlib import Path

import pytest

from smtpprobe.core.knowledge.load import KnowledgeBase
from smtpprobe.lab.smtp import LabServer
from smtpprobe.lab.tls import LabCert
from smtpprobe.lab.world import DEMO_DOMAINS, LabWorld, lab_world_in_thread
from smtpprobe.report import words

RunCli = Callable[..., subprocess.CompletedProcess[str]]
LabServerFactory = Callable[..., Awaitable[LabServer]]
USER = "alice@lab.test"
PASSWORD = "Lab-Pass-2718"
WIDE = {"COLUMNS": "400"}  # no wrapped rows: a server's reply stays on the line it starts on

# Words of the English side that German output uses as they are. Each is a protocol word, a
# unit, a product or standard name, or a term German mail admins do not translate
# ("Submission" as in RFC 6409 and "Submission-Port"; "Host" as in "MX-Host").
SHARED = frozenset({
    "auth", "ca", "cram", "dns", "ehlo", "ip", "json", "login", "md", "ms", "mx", "ok",
    "plain", "rfc", "smtp", "ssl", "starttls", "tls", "serverauth", "mail", "host", "hosts",
    "rdns", "submission",
})
# English words that are German words too, spelt alike ("so", "den Test", "er will", "Probe").
GERMAN_TOO = frozenset({"so", "test", "will", "fix", "info", "details", "probe", "mode"})
# The word table's own placeholders and example names, never shown as words.
PLACEHOLDER = re.compile(r"\{[^}]*\}|<[^>]*>")


def _words(text: str) -> set[str]:
    return {w.lower() for w in re.findall(r"[A-Za-z]{2,}", PLACEHOLDER.sub(" ", text))}


def english_words() -> frozenset[str]:
    english: set[str] = set()
    german: set[str] = set()
    for key in words._TEXTS:  # the table itself: every key, both sides
        en, de = words._TEXTS[key]
        english |= _words(en)
        german |= _words(de)
    return frozenset(english - german - SHARED - GERMAN_TOO)


ENGLISH = english_words()

_SERVER_ROWS = re.compile(r"^\s*[│|]?\s*(?:<-|->|==|\*\*|Antwort des Servers\b)")  # transcript
# A one-line step or check ("✓ RCPT TO (Empfänger) 250 2.1.5 4.0 ms Ok", "✗ Anmeldung FEHLER
# Anmeldung fehlgeschlagen  535 5.7.8 ..."): the tool's words end where the reply code or the
# time begins; what follows is the server's. A finding's line ("! title (category): evidence")
# ends its own words with the category: the evidence is the server's reply or a lower layer's
# diagnostic (see test_details_are_german).
_MARKED = re.compile(r"^\s*[✓✗·!]\s")
_SAID = re.compile(r"\s(?:[1-5]\d\d(?=[\s-]|$)|\d+(?:\.\d+)? ms\b|\([a-z_]+\):\s).*$")
_REFERENCE_ROWS = re.compile(r"^\s*[│|]?\s*(?:Regel|Quellen)\b")  # rule ids, sources
_DETAIL_ROWS = re.compile(r"^\s*[│|]?\s*Einzelheiten\b")
_NOT_WORDS = re.compile(
    r"„[^“]{0,400}“|'[^']{0,400}'|\"[^\"]{0,400}\""  # quotations: a server's own words
    r"|\S+@\S+|--[\w-]+|\b\w+_\w+\b|\b\w+:[\w.-]+"  # addresses, options, identifiers
    r"|\bsmtpprobe(?:\s+(?:check|sweep|relay|explain|demo))?\b"  # the command itself
    r"|\b[\w-]+(?:\.[\w-]+)+\b")  # host names, file names, dotted codes


_DIGITS = re.compile(r"\d+")
DOUBLED = re.compile(r"\b(\w{4,})\s+\1\b", re.IGNORECASE)


def tool_words(output: str, *, keep_details: bool = False,
               diagnostics: Collection[str] = ()) -> str:
    """The tool's own words in `output`: without what servers said and what is not a word.
    `diagnostics`: texts the same run's JSON gives as a server's reply or a lower layer's
    detail or evidence; they are taken out wherever they stand (unless `keep_details`).
    Panel borders are taken off, so that a quotation wrapped over two rows is still one."""
    lines = []
    # Numbers differ from run to run (ports, times): compared as "#".
    said = sorted({_DIGITS.sub("#", " ".join(d.split())) for d in diagnostics
                   if len(d.strip()) >= 6}, key=len, reverse=True)
    for line in output.splitlines():
        if _SERVER_ROWS.match(line) or _REFERENCE_ROWS.match(line):
            continue
        if not keep_details and _DETAIL_ROWS.match(line):
            continue  # lower layers' diagnostics: see test_details_are_german below
        if _MARKED.match(line):
            line = _SAID.sub("", line)
        if not keep_details:
            line = _DIGITS.sub("#", " ".join(line.split()))
            for text in said:
                line = line.replace(text, " ")
        lines.append(line.strip().strip("│╭╮╰╯─").strip())
    return _NOT_WORDS.sub(" ", "\n".join(lines))


def english_in(output: str, *, keep_details: bool = False,
               diagnostics: Collection[str] = ()) -> list[str]:
    found = []
    for line in tool_words(output, keep_details=keep_details,
                           diagnostics=diagnostics).splitlines():
        hits = sorted(_words(line) & ENGLISH)
        # A doubled word ("übersprungen übersprungen"); short ones are German grammar:
        # "..., die die Mail wollen", "Prüfen Sie sie".
        hits += [f"doubled {m.group(1)!r}" for m in DOUBLED.finditer(line)]
        if hits:
            found.append(f"{hits}: {line.strip()[:160]}")
    return found


# --- the word list itself -----------------------------------------------------------------------


def test_the_english_word_list_is_meaningful() -> None:
    # The list must catch what a half-translated German line would leak.
    for word in ("the", "not", "address", "accepted", "rejected", "deferred", "retry",
                 "checking", "skipped", "failed", "certificate", "what"):
        assert word in ENGLISH, word
    # ... and must not flag what German output rightly keeps.
    for word in ("port", "tls", "relay", "starttls", "ok", "smtp", "mx"):
        assert word not in ENGLISH, word
    assert english_in("prüfe Adressen: 3 von 7") == []
    assert english_in("checking 3 of 7 addresses") != []
    assert english_in("✗ RCPT TO 550 5.1.1 user unknown, not accepted") == []  # the server's
    assert english_in("✗ rcpt refused 0.3 ms connection refused") != []  # the tool's words
    assert english_in("Das „Relay access denied“ heißt: nicht zuständig") == []
    assert english_in("· Absender übersprungen übersprungen: kein Absender") != []
    assert english_in("Empfänger, die die Mail wollen: Prüfen Sie sie") == []


# Words a German entry of the table may share with its English one: names of protocols,
# standards and fields, spelt alike in both languages.
SAME_IN_BOTH = SHARED | {"code", "port", "relay", "postmaster", "ipv", "spf", "dmarc", "dkim",
                         "mta", "sts", "rpt", "dane"}


def test_every_entry_of_the_word_table_is_translated() -> None:
    untranslated = {key: en for key, (en, de) in words._TEXTS.items()
                    if en == de and _words(en) - SAME_IN_BOTH}
    assert not untranslated, untranslated
    assert _words("not used") - SAME_IN_BOTH  # what the check would catch


# --- every command's German output --------------------------------------------------------------


@pytest.fixture(scope="module")
def lab() -> Iterator[LabWorld]:
    with lab_world_in_thread(DEMO_DOMAINS) as world:
        yield world


def common(lab: LabWorld) -> list[str]:
    host, port = lab.resolver
    return ["--resolver", f"{host}:{port}", "--port", str(lab.port), "--cafile", lab.cafile,
            "--helo", "probe.smtpprobe.test", "--timeout", "3", "--lang", "de"]


def german(done: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in done.stderr, done.stderr
    return done.stdout + "\n" + done.stderr


# JSON fields that carry a server's words or a lower layer's diagnostic, not the tool's words
# ("text" only as a reply's: sweep's reasons have a "text" that is the tool's own).
DIAGNOSTIC_KEYS = frozenset({"lines", "banner", "detail", "evidence", "error", "reason"})


def diagnostics(run_cli: RunCli, *args: str, **options: object) -> list[str]:
    """What the JSON of the same run gives as server replies, details and evidence."""
    done = run_cli(*args, "--json", **options)
    assert "Traceback" not in done.stderr, done.stderr
    found: list[str] = []

    def walk(value: object, key: str = "", parent: str = "") -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, k, key)
        elif isinstance(value, list):
            for v in value:
                walk(v, key, parent)
        elif isinstance(value, str) and (key in DIAGNOSTIC_KEYS or
                                         (key == "text" and parent == "reply")):
            found.append(value)

    try:  # one indented document, or one document per line (check, demo)
        walk(json.loads(done.stdout))
    except json.JSONDecodeError:
        for line in done.stdout.splitlines():
            if line.strip():
                walk(json.loads(line))
    assert found or not done.stdout.strip(), done.stdout[:200]  # the keys still exist
    return found


def test_check_one_and_several_addresses(run_cli: RunCli, lab: LabWorld,
                                         tmp_path: Path) -> None:
    outputs: dict[str, tuple[str, list[str]]] = {}
    for address in ("alice@good.test", "nobody@good.test", "bob@full.test", "alice@grey.test",
                    "alice@blocked.test", "alice@nullmx.test", "alice@nosuch.test",
                    "alice@backup.test"):
        args = ("check", address, *common(lab))
        text = german(run_cli(*args, "-v", env=WIDE))  # first: greylisting defers it once
        outputs[address] = text, diagnostics(run_cli, *args, env=WIDE)
    assert "ABGELEHNT" in outputs["nobody@good.test"][0]
    assert "ZURÜCKGESTELLT" in outputs["alice@grey.test"][0]
    listing = tmp_path / "adressen.txt"
    listing.write_text("alice@good.test\nnobody@good.test\nbob@full.test\nalice@grey.test\n"
                       "alice@blocked.test\nalice@nosuch.test\n", encoding="utf-8")
    args = ("check", "--file", str(listing), *common(lab))
    said = diagnostics(run_cli, *args, env=WIDE)
    for fmt in ("text", "table"):
        outputs[f"--file {fmt}"] = german(run_cli(*args, "--format", fmt, env=WIDE)), said
        # the summary under the table, in German
        assert "abgelehnt: nobody@good.test, bob@full.test" in outputs[f"--file {fmt}"][0]
    found = {name: english_in(text, diagnostics=said)
             for name, (text, said) in outputs.items()}
    assert not any(found.values()), found


def test_demo(run_cli: RunCli) -> None:
    text = german(run_cli("demo", "--lang", "de", env=WIDE, timeout=120))
    assert "smtpprobe-Demo" in text
    # The summary line names every address with a German verdict.
    assert "alice@good.test: angenommen" in " ".join(text.split())
    said = diagnostics(run_cli, "demo", "--lang", "de", env=WIDE, timeout=120)
    assert english_in(text, diagnostics=said) == []


async def test_sweep_and_relay(run_cli: RunCli, lab_server: LabServerFactory, cert: LabCert,
                               cafile: Path) -> None:
    good = await lab_server("submission", cert=cert, users={USER: PASSWORD},
                            hostname="smtp.lab.test")
    failing = await lab_server("auth_failing", cert=cert, hostname="smtp.lab.test")
    plain = await lab_server("no_starttls", hostname="smtp.lab.test")
    env = {**WIDE, "PW": PASSWORD}
    base = ["--cafile", str(cafile), "--timeout", "3", "--helo", "probe.lab.test",
            "--lang", "de"]
    runs = {
        "sweep": ["sweep", "127.0.0.1", "--ports", f"{good.port}:starttls,{plain.port}:plain",
                  "-u", USER, "--password-env", "PW", *base],
        "sweep ohne Benutzer": ["sweep", "127.0.0.1", "--ports",
                                f"{good.port}:starttls,{failing.port}:starttls", *base],
        "sweep falsches Passwort": ["sweep", "127.0.0.1", "--ports",
                                    f"{failing.port}:starttls", "-u", USER,
                                    "--password-env", "PW", *base],
        "relay": ["relay", "-s", f"127.0.0.1:{good.port}", "--tls", "starttls", "-u", USER,
                  "--password-env", "PW", "--from", USER, "--to", "bob@example.org", *base],
        "relay ohne Benutzer": ["relay", "-s", f"127.0.0.1:{good.port}", "--tls",
                                "starttls", *base],
        "relay falsches Passwort": ["relay", "-s", f"127.0.0.1:{failing.port}", "--tls",
                                    "starttls", "-u", USER, "--password-env", "PW", *base],
    }
    outputs: dict[str, tuple[str, list[str]]] = {}
    for name, args in runs.items():
        text = german(await asyncio.to_thread(run_cli, *args, env=env))
        outputs[name] = text, await asyncio.to_thread(diagnostics, run_cli, *args, env=env)
    assert "Postausgangsserver" in outputs["sweep"][0]
    assert "BESTANDEN" in outputs["relay"][0]
    assert "FEHLER" in outputs["relay falsches Passwort"][0]
    found = {name: english_in(text, diagnostics=said)
             for name, (text, said) in outputs.items()}
    assert not any(found.values()), found


BOUNCE = """\
Delivery has failed to these recipients or groups:

bob@example.org
The email address you entered couldn't be found.

Diagnostic information for administrators:

Generating server: mx.example.org
bob@example.org
Remote Server returned '550 5.1.1 <bob@example.org>: Recipient address rejected: User unknown'
"""


@pytest.mark.parametrize("args, stdin", [
    (("550 5.1.1 <bob@example.org>: Recipient address rejected: User unknown",), None),
    (("--stage", "rcpt", "452 4.2.2 Mailbox full"), None),
    (("421 4.7.0 Try again later, closing connection",), None),
    (("554 5.7.1 Service unavailable; Client host [192.0.2.1] blocked using zen.spamhaus.org",),
     None),
    (("299 nothing anyone knows",), None),
    ((), BOUNCE.encode()),
])
def test_explain(run_cli: RunCli, args: tuple[str, ...], stdin: bytes | None) -> None:
    text = german(run_cli("explain", "--lang", "de", *args, stdin=stdin, env=WIDE))
    assert "Ursache" in text
    if stdin is not None:
        assert "Empfänger" in text and "bob@example.org" in text
    said = diagnostics(run_cli, "explain", "--lang", "de", *args, stdin=stdin, env=WIDE)
    assert english_in(text, diagnostics=said) == []


@pytest.mark.xfail(strict=True, reason="lower layers (net, core) write their diagnostics "
                   "in English: the 'Einzelheiten' row and an invalid line's reason; "
                   "translating them needs keyed texts there (see /tmp/notes/german.md)")
def test_details_are_german(run_cli: RunCli, lab: LabWorld) -> None:
    done = run_cli("check", "alice@nosuch.test", "alice@nullmx.test", "kaputt", *common(lab),
                   env=WIDE)
    assert english_in(german(done), keep_details=True) == []


# --- the knowledge base's German remedies ---------------------------------------------------------

# A finite verb or "Sie" in a sentence: it is not a bare-infinitive instruction.
FINITE = frozenset("""Sie muss müssen sollte sollten soll sollen kann können könnte könnten
darf dürfen müsste müssten wird werden würde würden ist sind hat haben war waren wurde wurden
konnte konnten lässt bleibt gibt geht hilft""".split())
INFINITIVE = re.compile(r"^(?:[a-zäöüß][a-zäöüß-]*(?:en|ern|eln)|tun|sein)$")
# Clauses that end a sentence with their verb but are not the sentence's instruction.
# Cut off before looking for "Sie": "Die Adresse verwenden, mit der Sie sich anmelden." is still
# an infinitive instruction.
SUBORDINATE = re.compile(r",\s+(?:(?:mit|bei|von|für|auf|in|an|über|unter|aus|nach|zu)\s+)?"
                         r"(?:wenn|dass|ob|weil|bis|sobald|damit|falls|bevor|nachdem|die|der|"
                         r"das|dem|den|denen|deren|dessen|wo|wie|was|um|einige|ohne)\b[^,]*$")
# Remedies allowed to break the rule, with the reason. None today; keep it that way.
EXCEPTIONS: dict[str, str] = {}


def remedy_sentences(text: str) -> Iterator[str]:
    """The sentences (and ';'/':'-separated parts) of a remedy, quotations and parentheses
    taken out."""
    cleaned = re.sub(r"\([^()]*\)", " ", text)
    cleaned = re.sub(r"„[^“]*“|'[^']*'|\"[^\"]*\"", " Zitat ", cleaned)
    for part in re.split(r"(?<=[.!?])\s+(?=[A-ZÄÖÜ0-9])|[;:]\s+|[.!?]$", cleaned):
        if part.strip():
            yield part.strip()


def bare_infinitives(text: str) -> list[str]:
    """Sentences of `text` that are instructions in the infinitive ("Später erneut
    versuchen."): they end in an infinitive, and neither "Sie" nor a finite verb that would
    name someone else as acting ("muss", "sollte" ...) is in them."""
    bad = []
    for sentence in remedy_sentences(text):
        main = sentence
        while SUBORDINATE.search(main):  # ", wenn ..., die ..." from the end
            main = SUBORDINATE.sub("", main)
        tokens = re.findall(r"[A-Za-zÄÖÜäöüß][\wÄÖÜäöüß-]*", main)
        if tokens and INFINITIVE.match(tokens[-1]) and not FINITE & set(tokens):
            bad.append(sentence)
    return bad


def test_the_infinitive_heuristic() -> None:
    assert bare_infinitives("Zertifikat erneuern und den Mailserver neu laden.") != []
    assert bare_infinitives("Nichts zu tun.") != []
    assert bare_infinitives("Aus dem Mailprogramm: die Authentifizierung einschalten.") != []
    assert bare_infinitives("Prüfen Sie den Port. Dann erneut versuchen.") == [
        "Dann erneut versuchen"]
    assert bare_infinitives("Erneuern Sie das Zertifikat und laden Sie den Server neu.") == []
    assert bare_infinitives("Der Betreiber des Servers muss das Zertifikat erneuern.") == []
    assert bare_infinitives("Der Eintrag verfällt, wenn keine Meldungen mehr kommen.") == []
    assert bare_infinitives("Die Adresse verwenden, mit der Sie sich anmelden.") != []
    assert bare_infinitives("Senden Sie nicht „Try again later“ erneut (siehe prüfen).") == []


def test_every_german_remedy_addresses_the_reader_properly(kb: KnowledgeBase) -> None:
    offenders = {}
    for rule in kb.rules:
        if rule.id in EXCEPTIONS:
            continue
        bad = bare_infinitives(rule.remedy.de)
        if bad:
            offenders[rule.id] = bad
    assert not offenders, offenders
    assert set(EXCEPTIONS) <= {rule.id for rule in kb.rules}  # no stale exceptions


def test_no_retired_terms_in_german(kb: KnowledgeBase) -> None:
    """Words a German admin would not write for these things (issue 14)."""
    retired = {"Speicherzuteilung": "Kontingent/Quota", "Rückläufer": "Unzustellbarkeitsmeldung",
               "Blockliste": "Sperrliste", "Submission-Server": "Einlieferungsserver",
               "Zwischenzertifikatskette": "Zertifikatskette (mit Zwischenzertifikat)"}
    found = []
    for rule in kb.rules:
        texts = [rule.title.de, rule.cause.de, rule.remedy.de]
        if rule.correction is not None:
            texts.append(rule.correction.de)
        for text in texts:
            found += [f"{rule.id}: {word} (besser: {better})"
                      for word, better in retired.items() if word.lower() in text.lower()]
    assert not found, found
