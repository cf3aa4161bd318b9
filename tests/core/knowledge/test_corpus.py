"""The labelled corpus of real-world replies (tests/data/corpus.jsonl) and the rules' accuracy.

The corpus is labelled by what each reply means, never by what the rules say, so it measures
the knowledge base from outside. The rules are tuned against the "dev" split; "holdout" shows
whether they generalise. bench/accuracy.py prints the full breakdown.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import json
import re
import sys
from collections import Counter
from pathlib import Path
from types import ModuleType

import pytest

from smtpprobe.core.classify import explain
from smtpprobe.core.knowledge.model import KnowledgeBase
from smtpprobe.models import Category, Stage

ROOT = Path(__file__).resolve().parents[3]
CORPUS = ROOT / "tests" / "data" / "corpus.jsonl"


def _load_accuracy() -> ModuleType:
    spec = importlib.util.spec_from_file_location("smtpprobe_bench_accuracy",
                                                  ROOT / "bench" / "accuracy.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


accuracy = _load_accuracy()

# Categories a server reply (or a pasted bounce quoting one) can express. Left out: outcomes the
# probe observes itself without any reply (no connection, no DNS answer, an open relay, a
# catch-all domain, credentials it chose not to send) and the classifier's own "don't know".
FAILURE_ONLY = {
    Category.CONNECTION_FAILED, Category.DNS_FAILED, Category.OPEN_RELAY,
    Category.CREDENTIALS_WITHHELD, Category.CATCH_ALL, Category.UNCLASSIFIED,
}
REPLY_CATEGORIES = set(Category) - FAILURE_ONLY
COMMON = {
    Category.USER_UNKNOWN, Category.BLOCKLISTED, Category.RELAY_DENIED, Category.GREYLISTED,
    Category.MAILBOX_FULL, Category.AUTH_FAILED, Category.RATE_LIMITED,
    Category.SENDER_AUTH_FAILED,
}
MIN_PER_SOURCE = {
    "postfix": 15, "exim": 15, "microsoft365": 15, "gmail": 15,
    "sendmail": 8, "yahoo": 8, "icloud": 8, "tonline": 8,
}
DEV_THRESHOLD = 0.95
HOLDOUT_THRESHOLD = 0.85

# Dotted numbers in the corpus that are not addresses: a sendmail version, an RFC section,
# Yahoo's internal diagnostic code.
NOT_ADDRESSES = {"8.17.1.9", "4.1.1.1", "4.16.55.1"}
DOC_NETWORKS = tuple(ipaddress.ip_network(net) for net in (
    "192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32",
))
_IPV4 = re.compile(r"(?<![\d.])(\d{1,3}(?:\.\d{1,3}){3})(?![\d.])")
_IPV6 = re.compile(r"(?<![\w:])([0-9a-fA-F]{1,4}(?::[0-9a-fA-F]{0,4}){2,7})(?![\w:])")
_MAIL = re.compile(r"[\w.+-]+@([\w-]+(?:\.[\w-]+)+)")
_DOC_DOMAIN = re.compile(r"(?:^|\.)(?:example\.(?:org|net|com)|example|invalid)$")


@pytest.fixture(scope="module")
def entries() -> list:  # list[accuracy.Entry]
    return accuracy.load_corpus(CORPUS)


# --- the file itself -------------------------------------------------------------------------


def test_every_line_is_a_valid_entry_with_a_unique_id() -> None:
    lines = CORPUS.read_text(encoding="utf-8").splitlines()
    ids = []
    for number, line in enumerate(lines, start=1):
        entry = accuracy.parse_entry(line, f"line {number}")
        assert entry.stage is None or isinstance(entry.stage, Stage)
        ids.append(entry.id)
    duplicates = [name for name, count in Counter(ids).items() if count > 1]
    assert duplicates == []
    assert len(ids) >= 260


GOOD = {"id": "x", "source": "rfc", "stage": None, "reply": "250 ok", "category": "success",
        "retryable": False, "split": "dev"}


@pytest.mark.parametrize("bad, message", [
    ('{"id": "x"', "not valid JSON"),
    ('["a list"]', "not a JSON object"),
    (json.dumps(GOOD | {"stage": "helo"}), "unknown stage"),
    (json.dumps(GOOD | {"category": "fine"}), "unknown category"),
    (json.dumps(GOOD | {"retryable": "no"}), "retryable"),
    (json.dumps(GOOD | {"split": "train"}), "split"),
    (json.dumps(GOOD | {"reply": ""}), "reply"),
    (json.dumps({k: v for k, v in GOOD.items() if k != "split"}), "missing"),
    (json.dumps(GOOD | {"note": "extra"}), "unknown"),
])
def test_the_loader_rejects_broken_lines(bad: str, message: str) -> None:
    assert accuracy.parse_entry(json.dumps(GOOD), "line 1").category is Category.SUCCESS
    with pytest.raises(accuracy.CorpusError, match=message):
        accuracy.parse_entry(bad, "line 1")


def test_the_loader_rejects_a_repeated_id(tmp_path: Path) -> None:
    line = json.dumps({"id": "rfc-rcpt-001", "source": "rfc", "stage": "rcpt",
                       "reply": "250 ok", "category": "success", "retryable": False,
                       "split": "dev"})
    path = tmp_path / "corpus.jsonl"
    path.write_text(line + "\n" + line + "\n", encoding="utf-8")
    with pytest.raises(accuracy.CorpusError, match="used twice"):
        accuracy.load_corpus(path)


def test_every_reply_category_is_covered(entries: list) -> None:
    counts = Counter(e.category for e in entries)
    thin = {c.value: counts[c] for c in REPLY_CATEGORIES if counts[c] < 4}
    assert thin == {}, "categories with fewer than 4 entries"
    thin_common = {c.value: counts[c] for c in COMMON if counts[c] < 8}
    assert thin_common == {}, "common categories with fewer than 8 entries"


def test_sources_are_spread(entries: list) -> None:
    counts = Counter(e.source for e in entries)
    short = {s: counts[s] for s, least in MIN_PER_SOURCE.items() if counts[s] < least}
    assert short == {}
    assert counts["gmx"] + counts["webde"] >= 8
    assert counts["rfc"] >= 8 and counts["seed"] >= 8


def test_holdout_is_about_forty_percent_and_spread(entries: list) -> None:
    holdout = [e for e in entries if e.split == "holdout"]
    assert 0.35 <= len(holdout) / len(entries) <= 0.45
    in_holdout = {e.category for e in holdout}
    assert {e.category for e in entries} - in_holdout == set()
    sources = Counter(e.source for e in entries)
    held_sources = {e.source for e in holdout}
    assert {s for s, n in sources.items() if n >= 5} - held_sources == set()


def test_the_corpus_has_the_shapes_the_rules_must_handle(entries: list) -> None:
    replies = [e.reply for e in entries]
    assert sum(1 for r in replies if re.match(r"^\d{3}-", r) and "\n" in r) >= 10  # multi-line
    assert sum(1 for r in replies if "#5." in r or "#4." in r) >= 3  # "#5.1.1" form
    assert sum(1 for r in replies if re.match(r"^\d{3} [^\d]", r)) >= 30  # no enhanced code
    pasted = [e for e in entries if e.stage is None]
    assert len(pasted) >= 20
    assert any("Diagnostic-Code:" in e.reply for e in pasted)
    assert any("(in reply to RCPT TO command)" in e.reply for e in pasted)
    assert any("Remote Server returned" in e.reply for e in pasted)
    assert any("The response" in e.reply for e in pasted)
    german = ("Benutzer", "Postfach", "nicht", "Anmeldung", "Sperrliste")
    assert sum(1 for r in replies if any(word in r for word in german)) >= 8
    codes = {r[:3] for r in replies}
    assert {"220", "221", "235", "250", "251", "252", "334", "354"} <= codes


def test_only_documentation_addresses(entries: list) -> None:
    problems = []
    for e in entries:
        for text in _IPV4.findall(e.reply):
            if text in NOT_ADDRESSES:
                continue
            address = ipaddress.ip_address(text)
            if not any(address in net for net in DOC_NETWORKS):
                problems.append(f"{e.id}: {text}")
        for text in _IPV6.findall(e.reply):
            try:
                address6 = ipaddress.ip_address(text)
            except ValueError:
                continue  # a time of day or a hex id, not an address
            if not any(address6 in net for net in DOC_NETWORKS):
                problems.append(f"{e.id}: {text}")
        for domain in _MAIL.findall(e.reply):
            if not _DOC_DOMAIN.search(domain.lower()):
                problems.append(f"{e.id}: {domain}")
    assert problems == []


# --- the rules against the corpus --------------------------------------------------------------


def test_every_entry_classifies_without_an_exception(kb: KnowledgeBase, entries: list) -> None:
    stages: list[Stage | None] = [None, *Stage]
    for e in entries:
        for text in (e.reply, e.reply.replace("\n", "\r\n"), e.reply[: len(e.reply) // 2]):
            for stage in stages:
                finding, _ = explain(kb, text, stage)
                assert isinstance(finding.category, Category), e.id
                assert finding.rule, e.id


@pytest.mark.parametrize("split, threshold", [("dev", DEV_THRESHOLD),
                                              ("holdout", HOLDOUT_THRESHOLD)])
def test_category_accuracy(kb: KnowledgeBase, entries: list, split: str,
                           threshold: float) -> None:
    outcomes = accuracy.evaluate(kb, [e for e in entries if e.split == split])
    right = sum(o.category_ok for o in outcomes)
    share = right / len(outcomes)
    wrong = "\n".join(accuracy.misclassified_lines(outcomes))
    assert share >= threshold, (
        f"{split}: {right}/{len(outcomes)} = {share:.1%} < {threshold:.0%}; misclassified:\n{wrong}"
    )
