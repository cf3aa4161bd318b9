"""The independent corpus (bench/corpus/replies.jsonl), its split, and what bench/accuracy.py
may show of it.

The split is by vendor family and written once; these tests check that every line carries the
split the documented rule gives (bench/corpus/split.py, SOURCES.md "Split"), that no family is
in both halves, and that the report never shows a holdout entry. No test here prints a reply.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from collections import Counter
from pathlib import Path
from types import ModuleType

import pytest

from smtpprobe.core.knowledge.model import KnowledgeBase
from smtpprobe.models import Stage

ROOT = Path(__file__).resolve().parents[3]


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


accuracy = _load("smtpprobe_bench_accuracy_new", ROOT / "bench" / "accuracy.py")
split = _load("smtpprobe_bench_corpus_split_test", ROOT / "bench" / "corpus" / "split.py")

GOOD = {"id": "x-0001", "reply": "250 ok", "stage": "rcpt", "source": "x", "vendor": "X Mail",
        "url": "https://example.org/x", "templated": False, "category": "success",
        "retry": False, "split": "dev"}


@pytest.fixture(scope="module")
def rows() -> list[dict[str, object]]:
    lines = accuracy.NEW_CORPUS.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def test_every_line_is_a_valid_entry(rows: list[dict[str, object]]) -> None:
    entries = accuracy.load_corpus(accuracy.NEW_CORPUS)
    assert len(entries) == len(rows) >= 1500
    assert {e.split for e in entries} == set(accuracy.SPLITS)
    assert len({e.source for e in entries}) >= 40


def test_every_line_carries_the_split_the_documented_rule_gives(
        rows: list[dict[str, object]]) -> None:
    counts = Counter(split.family(str(row["vendor"])) for row in rows)
    wanted = split.assign(counts, split.SALT)
    wrong = [row["id"] for row in rows if row["split"] != wanted[split.family(str(row["vendor"]))]]
    assert wrong == []


def test_no_family_is_in_both_halves_and_the_holdout_is_spread(
        rows: list[dict[str, object]]) -> None:
    halves: dict[str, set[object]] = {}
    for row in rows:
        halves.setdefault(split.family(str(row["vendor"])), set()).add(row["split"])
    assert [name for name, seen in halves.items() if len(seen) > 1] == []
    held = [name for name, seen in halves.items() if seen == {"holdout"}]
    share = sum(1 for row in rows if row["split"] == "holdout") / len(rows)
    assert 0.30 <= share <= 0.40
    assert sum(1 for name in held if name in split.MTA_FAMILIES) >= 3
    assert sum(1 for name in held if name not in split.MTA_FAMILIES) >= 3


def test_vendor_names_of_one_provider_fall_together() -> None:
    assert split.family("Google (Gmail / Workspace)") == split.family("Gmail") == "google"
    assert split.family("Postfix (postscreen)") == split.family("Postfix") == "postfix"
    assert split.family("qmail + chkuser patch (vpopmail)") == "qmail"
    assert split.family("Postgrey (Postfix policy server)") == "postgrey"
    assert split.family("Some Hoster (FAQ)") == "some-hoster-faq"


@pytest.mark.parametrize("bad, message", [
    (GOOD | {"retry": "no"}, "retry"),
    (GOOD | {"vendor": ""}, "vendor"),
    (GOOD | {"split": "train"}, "split"),
    (GOOD | {"note": "x"}, "unknown"),
    ({k: v for k, v in GOOD.items() if k != "split"}, "missing"),
])
def test_the_loader_rejects_broken_lines_of_the_new_format(bad: dict[str, object],
                                                            message: str) -> None:
    entry = accuracy.parse_entry(json.dumps(GOOD | {"labeller_note": "why"}), "line 1")
    assert entry.vendor == "x-mail" and entry.retryable is False
    with pytest.raises(accuracy.CorpusError, match=message):
        accuracy.parse_entry(json.dumps(bad), "line 1")


def _entry(ident: str, reply: str, category: str, where: str) -> object:
    return accuracy.parse_entry(json.dumps(GOOD | {"id": ident, "reply": reply,
                                                   "category": category, "split": where}), "t")


def test_the_report_never_shows_a_holdout_entry(kb: KnowledgeBase) -> None:
    entries = [
        _entry("dev-0001", "550 5.1.1 zebra-dev-words", "mailbox_full", "dev"),
        _entry("held-0001", "550 5.1.1 quokka-held-words", "mailbox_full", "holdout"),
    ]
    outcomes = accuracy.evaluate(kb, entries)
    assert not any(o.category_ok for o in outcomes)  # both are mistakes
    text = accuracy.render(outcomes)
    data = json.dumps(accuracy.summarize(outcomes))
    for shown in (text, data):
        assert "dev-0001" in shown
        assert "held-0001" not in shown and "quokka" not in shown
    assert "zebra-dev-words" in text
    assert "mailbox_full -> user_unknown: 1" in text  # holdout keeps its confusion count


def test_documented_disagreements_are_counted(kb: KnowledgeBase) -> None:
    entries = [_entry("d-1", "504 5.5.4 NOTIFY is not implemented", "syntax_error", "dev"),
               _entry("d-2", "552 5.2.2 Mailbox full", "mailbox_full", "dev")]
    outcomes = accuracy.evaluate(kb, entries)
    assert outcomes[0].category.value == "not_implemented"
    assert outcomes[1].category_ok and outcomes[1].retryable is True
    assert accuracy.disagreements(outcomes) == {"extension-or-parameter": 1,
                                                "full-mailbox-or-quota-retry": 1}
    figures = accuracy.summarize(outcomes)["overall"]
    assert figures["category_accuracy"] == 0.5 and figures["category_accuracy_by_definitions"] == 1
    assert Stage.RCPT is outcomes[1].entry.stage
