"""How well does the knowledge base explain real SMTP replies? Measured on a labelled corpus.

Every entry of tests/data/corpus.jsonl is a reply (or a pasted bounce) seen in the wild, labelled
by what it means, independently of the rules. This script classifies each one exactly as
`smtpprobe explain` would (`smtpprobe.core.classify.explain`) and reports how often the category and
the retry advice match the label: overall, per split, per source, per expected category, and
the entries it got wrong with the rule that decided.

The split matters: rules are tuned against "dev"; "holdout" shows whether they generalise.

usage: python bench/accuracy.py [--split dev|holdout] [--json] [--corpus FILE] [--knowledge DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from smtpprobe.core.classify import explain
from smtpprobe.core.knowledge import load as knowledge
from smtpprobe.core.knowledge.model import KnowledgeBase
from smtpprobe.errors import KnowledgeError
from smtpprobe.models import Category, Stage

CORPUS = Path(__file__).resolve().parent.parent / "tests" / "data" / "corpus.jsonl"
SPLITS = ("dev", "holdout")
_FIELDS = ("id", "source", "stage", "reply", "category", "retryable", "split")


class CorpusError(Exception):
    """A corpus line that is not a valid entry; the message names the line."""


@dataclass(frozen=True, slots=True)
class Entry:
    id: str
    source: str
    stage: Stage | None
    reply: str
    category: Category
    retryable: bool
    split: str


@dataclass(frozen=True, slots=True)
class Outcome:
    entry: Entry
    category: Category
    retryable: bool
    rule: str

    @property
    def category_ok(self) -> bool:
        return self.category == self.entry.category

    @property
    def retryable_ok(self) -> bool:
        return self.retryable == self.entry.retryable


def parse_entry(line: str, where: str) -> Entry:
    """One corpus line -> Entry; raises CorpusError naming `where` when anything is off."""
    try:
        raw = json.loads(line)
    except json.JSONDecodeError as exc:
        raise CorpusError(f"{where}: not valid JSON: {exc.msg}") from None
    if not isinstance(raw, dict):
        raise CorpusError(f"{where}: not a JSON object")
    missing = [name for name in _FIELDS if name not in raw]
    extra = sorted(set(raw) - set(_FIELDS))
    if missing or extra:
        raise CorpusError(f"{where}: missing {missing} / unknown {extra}")
    for name in ("id", "source", "reply", "category", "split"):
        if not isinstance(raw[name], str) or not raw[name]:
            raise CorpusError(f"{where}: {name!r} must be a non-empty string")
    if not isinstance(raw["retryable"], bool):
        raise CorpusError(f"{where}: 'retryable' must be true or false")
    if raw["split"] not in SPLITS:
        raise CorpusError(f"{where}: split {raw['split']!r} is not one of {SPLITS}")
    try:
        category = Category(raw["category"])
    except ValueError:
        raise CorpusError(f"{where}: unknown category {raw['category']!r}") from None
    stage: Stage | None = None
    if raw["stage"] is not None:
        try:
            stage = Stage(raw["stage"])
        except ValueError:
            raise CorpusError(f"{where}: unknown stage {raw['stage']!r}") from None
    return Entry(id=raw["id"], source=raw["source"], stage=stage, reply=raw["reply"],
                 category=category, retryable=raw["retryable"], split=raw["split"])


def load_corpus(path: Path = CORPUS) -> list[Entry]:
    entries: list[Entry] = []
    seen: set[str] = set()
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            entry = parse_entry(line, f"{path.name}:{number}")
            if entry.id in seen:
                raise CorpusError(f"{path.name}:{number}: id {entry.id!r} used twice")
            seen.add(entry.id)
            entries.append(entry)
    return entries


def evaluate(kb: KnowledgeBase, entries: Iterable[Entry]) -> list[Outcome]:
    """Classify every entry the way `smtpprobe explain` does (a pasted text, maybe a bounce)."""
    outcomes = []
    for entry in entries:
        finding, _ = explain(kb, entry.reply, entry.stage)
        outcomes.append(Outcome(entry, finding.category, finding.retryable, finding.rule))
    return outcomes


def _figures(outcomes: Sequence[Outcome]) -> dict[str, float | int]:
    n = len(outcomes)
    cat = sum(o.category_ok for o in outcomes)
    retry = sum(o.retryable_ok for o in outcomes)
    return {
        "n": n,
        "category_correct": cat,
        "category_accuracy": round(cat / n, 4) if n else 0.0,
        "retryable_correct": retry,
        "retryable_accuracy": round(retry / n, 4) if n else 0.0,
    }


def _grouped(outcomes: Sequence[Outcome],
             key: Callable[[Outcome], str]) -> dict[str, dict[str, float | int]]:
    groups: dict[str, list[Outcome]] = {}
    for outcome in outcomes:
        groups.setdefault(key(outcome), []).append(outcome)
    return {name: _figures(groups[name]) for name in sorted(groups)}


def summarize(outcomes: Sequence[Outcome]) -> dict[str, object]:
    """All figures as plain data (what --json prints)."""
    return {
        "overall": _figures(outcomes),
        "by_split": _grouped(outcomes, lambda o: o.entry.split),
        "by_source": _grouped(outcomes, lambda o: o.entry.source),
        "by_category": _grouped(outcomes, lambda o: o.entry.category.value),
        "misclassified": [
            {"id": o.entry.id, "split": o.entry.split, "expected": o.entry.category.value,
             "got": o.category.value, "rule": o.rule}
            for o in outcomes if not o.category_ok
        ],
        "retryable_wrong": [
            {"id": o.entry.id, "split": o.entry.split, "expected": o.entry.retryable,
             "got": o.retryable, "rule": o.rule}
            for o in outcomes if o.category_ok and not o.retryable_ok
        ],
    }


def misclassified_lines(outcomes: Iterable[Outcome]) -> list[str]:
    """One line per wrong category: id, expected -> got, and the rule that decided."""
    return [
        f"{o.entry.id} [{o.entry.split}]: {o.entry.category.value} -> {o.category.value}"
        f" (rule {o.rule})"
        for o in outcomes if not o.category_ok
    ]


def _table(title: str, groups: dict[str, dict[str, float | int]]) -> list[str]:
    lines = [title]
    width = max((len(name) for name in groups), default=0)
    for name, fig in groups.items():
        lines.append(
            f"  {name:<{width}}  n={fig['n']:>3}  category {fig['category_accuracy']:6.1%}"
            f"  retryable {fig['retryable_accuracy']:6.1%}"
        )
    return lines


def render(outcomes: Sequence[Outcome]) -> str:
    summary = summarize(outcomes)
    overall = _figures(outcomes)
    lines = [
        f"entries: {overall['n']}",
        (f"category accuracy:  {overall['category_accuracy']:.1%}"
         f" ({overall['category_correct']}/{overall['n']})"),
        (f"retryable accuracy: {overall['retryable_accuracy']:.1%}"
         f" ({overall['retryable_correct']}/{overall['n']})"),
        "",
    ]
    for title, key in (("per split", "by_split"), ("per source", "by_source"),
                       ("per expected category", "by_category")):
        groups = summary[key]
        assert isinstance(groups, dict)
        lines += _table(title, groups) + [""]
    wrong = misclassified_lines(outcomes)
    lines.append(f"misclassified ({len(wrong)}):")
    lines += [f"  {line}" for line in wrong]
    retry_wrong = [o for o in outcomes if o.category_ok and not o.retryable_ok]
    lines.append("")
    lines.append(f"right category, wrong retry advice ({len(retry_wrong)}):")
    lines += [
        f"  {o.entry.id} [{o.entry.split}]: retryable {o.entry.retryable} -> {o.retryable}"
        f" (rule {o.rule})"
        for o in retry_wrong
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--split", choices=SPLITS, help="measure one split only")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--corpus", type=Path, default=CORPUS, help="corpus file (JSON lines)")
    parser.add_argument("--knowledge", help="knowledge directory (default: as smtpprobe finds it)")
    opts = parser.parse_args(argv)
    try:
        kb = knowledge.load(opts.knowledge)
        entries = load_corpus(opts.corpus)
    except (KnowledgeError, CorpusError, OSError) as exc:
        print(f"accuracy: {exc}", file=sys.stderr)
        return 2
    if opts.split:
        entries = [e for e in entries if e.split == opts.split]
    outcomes = evaluate(kb, entries)
    if opts.json:
        print(json.dumps(summarize(outcomes), indent=2))
    else:
        print(render(outcomes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
