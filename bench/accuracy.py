"""How well does the knowledge base explain real SMTP replies? Measured on labelled corpora.

Two corpora, each labelled by what a reply means, independently of the rules:

* bench/corpus/replies.jsonl (the default): 1,691 replies from 99 sources (MTA sources,
  providers' pages, real bounces), labelled by a helper who never saw the rules, split once by
  vendor family into dev and holdout (bench/corpus/SOURCES.md, "Split").
* tests/data/corpus.jsonl: the project's own 439 replies, split by entry.

Every entry is classified exactly as `smtpprobe explain` would (`smtpprobe.core.classify.explain`),
and the script reports, per split, how often the category and the retry advice match the label,
per expected category, per vendor (families with at least 5 entries), the top confusions
(expected -> got), and how often the answer is `unclassified` (no rule knew more than the
reply class). Rules are tuned against "dev" only; for "holdout" the script prints aggregates and
confusion counts, never an entry, its text or the rule that decided, so that looking at the
output does not leak the holdout into the rules.

usage: python bench/accuracy.py [--corpus new|old|both|FILE] [--split dev|holdout] [--json]
                                [--knowledge DIR] [--top N]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from smtpprobe.core.classify import explain
from smtpprobe.core.knowledge import load as knowledge
from smtpprobe.core.knowledge.model import KnowledgeBase
from smtpprobe.errors import KnowledgeError
from smtpprobe.models import Category, Stage

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "tests" / "data" / "corpus.jsonl"  # the project's own (old) corpus
NEW_CORPUS = ROOT / "bench" / "corpus" / "replies.jsonl"
CORPORA = {"new": NEW_CORPUS, "old": CORPUS}
SPLITS = ("dev", "holdout")
_FIELDS = ("id", "source", "stage", "reply", "category", "retryable", "split")
# The independent corpus: its own field names (retry, vendor, ...), labeller_note optional.
_NEW_FIELDS = ("id", "reply", "stage", "source", "vendor", "url", "templated", "category",
               "retry", "split")
_NEW_OPTIONAL = ("labeller_note",)
MIN_VENDOR = 5
# Rules that know no more than the class of the code (or nothing at all): their answer is
# "unclassified" with the class's generic meaning.
UNCLASSIFIED = Category.UNCLASSIFIED


@dataclass(frozen=True, slots=True)
class Disagreement:
    """A kind of mistake where the label and the project's definitions (docs/knowledge.md)
    part ways: the label says `expected`, the rule (one of `rules`) says `got`, and the
    definitions side with the rule. Found on dev; counted (never listed) on holdout."""

    name: str
    expected: str
    got: str
    rules: frozenset[str]
    why: str
    words: str = ""  # optional regular expression the reply must contain

    def covers(self, outcome: Outcome) -> bool:
        if outcome.rule not in self.rules:
            return False
        if self.words and not re.search(self.words, outcome.entry.reply, re.IGNORECASE):
            return False
        if self.expected in ("retry:false", "retry:true"):
            return (outcome.category_ok and not outcome.retryable_ok
                    and outcome.entry.retryable is (self.expected == "retry:true"))
        return outcome.entry.category.value == self.expected and outcome.category.value == self.got


def _rules(*ids: str) -> frozenset[str]:
    return frozenset(ids)


DISAGREEMENTS: tuple[Disagreement, ...] = (
    Disagreement("extension-or-parameter", "syntax_error", "not_implemented",
                 _rules("extension.not_supported", "extension.command_unsupported", "code.555",
                        "code.504", "enh.x.6.7", "enh.x.6.8", "enh.x.6.9"),
                 "not_implemented: the server does not implement a command, parameter or "
                 "feature (RFC 5321 504/555, RFC 6531 X.6.7)"),
    Disagreement("221-outside-quit", "success", "server_unavailable",
                 _rules("code.221.unexpected"),
                 "221 labelled at MAIL/DATA (the enclosing function); a 221 there closes the "
                 "session before the mail is sent"),
    Disagreement("354-intermediate", "success", "intermediate", _rules("code.354"),
                 "intermediate: the server waits for more (354)"),
    Disagreement("provider-block-list", "reputation_block", "blocklisted",
                 _rules("provider.microsoft.banned_ip", "provider.gmx.blocklisted",
                        "provider.tonline.blocked", "blocklist.generic"),
                 "the reply names a block list the IP is on (\"our block list\", \"block "
                 "listed\", \"(BL)\"): blocklisted, whoever runs the list"),
    Disagreement("client-protocol-violation", "syntax_error", "protocol_error",
                 _rules("protocol.violation"),
                 "the project files a client that breaks SMTP (bare LF, \"protocol "
                 "violation\") as protocol_error"),
    Disagreement("auth-not-checked", "server_unavailable", "auth_failed",
                 _rules("code.454.auth"),
                 "auth_failed: the login was refused or could not be checked (RFC 4954 454)"),
    Disagreement("auth-needs-tls", "auth_method_rejected", "tls_required",
                 _rules("code.538", "enh.x.7.11", "tls.required"),
                 "X.7.11 / 538: encryption required for the mechanism, i.e. tls_required"),
    Disagreement("auth-in-transaction", "auth_method_rejected", "bad_sequence",
                 _rules("protocol.sequence", "code.503.order"),
                 "AUTH during a mail transaction is a command out of order (RFC 4954 4)",
                 r"transaction|during"),
    Disagreement("qmail-rcpthosts", "policy_rejected", "relay_denied",
                 _rules("relay.qmail_rcpthosts"),
                 "rcpthosts: the server does not relay for that domain (seed correction)"),
    Disagreement("mailbox-moved", "user_unknown", "mailbox_inactive", _rules("enh.x.1.6"),
                 "X.1.6 destination mailbox has moved: mailbox_inactive"),
    Disagreement("login-failures", "rate_limited", "auth_failed",
                 _rules("auth.too_many_attempts"),
                 "rate_limited counts connections, messages, recipients; failed logins are "
                 "auth_failed"),
    Disagreement("microsoft-ip-reputation", "rate_limited", "reputation_block",
                 _rules("provider.microsoft.ip_reputation"),
                 "the text says the IP's reputation is the cause (the labeller noted it)"),
    Disagreement("rcpt-domain-has-no-mx", "policy_rejected", "domain_not_found",
                 _rules("recipient.domain_not_found"),
                 "domain_not_found: the recipient domain accepts no mail", r"\bmx\b"),
    Disagreement("no-starttls", "not_implemented", "tls_unavailable",
                 _rules("code.502.starttls"),
                 "tls_unavailable: the server offers no (working) STARTTLS"),
    Disagreement("requiretls-not-supported", "tls_required", "not_implemented",
                 _rules("extension.not_supported", "code.555"),
                 "a server without REQUIRETLS lacks an extension; it does not demand TLS",
                 r"requiretls"),
    Disagreement("greeting-no-service", "server_unavailable", "policy_rejected",
                 _rules("policy.no_service"),
                 "a 554 greeting (\"not accepting connections\", \"no SMTP service\") is a "
                 "permanent refusal of this client (RFC 5321 3.1), a policy banner (issue 14)"),
    Disagreement("tls-handshake-failed", "tls_unavailable", "tls_failed",
                 _rules("tls.negotiation_failed"),
                 "tls_failed: the TLS handshake itself failed; tls_unavailable is a server that "
                 "offers no STARTTLS (docs/knowledge.md, extra categories)"),
    Disagreement("sender-domain-no-mx", "domain_not_found", "sender_rejected",
                 _rules("enh.x.7.27", "sender.rejected"),
                 "domain_not_found is about the recipient's domain; a sender domain without MX "
                 "or with a null MX is a refused sender (RFC 7505 X.7.27)", r"mail\s*from|sender"),
    Disagreement("starttls-first-retry", "retry:true", "retry:false", _rules("tls.required"),
                 "the same attempt without STARTTLS fails again, whatever the class"),
    Disagreement("full-mailbox-or-quota-retry", "retry:false", "retry:true",
                 _rules("mailbox.full", "enh.x.2.2", "code.552.rcpt", "code.552",
                        "rate.limited", "rate.sending_quota"),
                 "retryable: a full mailbox or a sending quota clears with time even after a "
                 "5xx (docs/knowledge.md, RFC 3463 X.2.2)"),
)


def disagreements(outcomes: Iterable[Outcome]) -> dict[str, int]:
    """How many mistakes fall into each documented disagreement (name -> count)."""
    counts: Counter[str] = Counter()
    for outcome in outcomes:
        if outcome.category_ok and outcome.retryable_ok:
            continue
        for kind in DISAGREEMENTS:
            if kind.covers(outcome):
                counts[kind.name] += 1
                break
    return dict(counts.most_common())


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
    vendor: str = ""  # the vendor family (new corpus); the source for the old one

    @property
    def group(self) -> str:
        return self.vendor or self.source


@dataclass(frozen=True, slots=True)
class Outcome:
    entry: Entry
    category: Category
    retryable: bool
    rule: str
    by_text: bool = False  # a text pattern decided (not a code, class or the fallback)

    @property
    def category_ok(self) -> bool:
        return self.category == self.entry.category

    @property
    def retryable_ok(self) -> bool:
        return self.retryable == self.entry.retryable


def _split_module() -> ModuleType:
    """bench/corpus/split.py, for its vendor normalisation (`family`)."""
    path = ROOT / "bench" / "corpus" / "split.py"
    spec = importlib.util.spec_from_file_location("smtpprobe_bench_corpus_split", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_family: Callable[[str], str] = _split_module().family


def _common(raw: dict[str, Any], where: str, retry_key: str) -> tuple[Category, Stage | None]:
    for name in ("id", "source", "reply", "category", "split"):
        if not isinstance(raw[name], str) or not raw[name]:
            raise CorpusError(f"{where}: {name!r} must be a non-empty string")
    if not isinstance(raw[retry_key], bool):
        raise CorpusError(f"{where}: {retry_key!r} must be true or false")
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
    return category, stage


def parse_entry(line: str, where: str) -> Entry:
    """One corpus line -> Entry; raises CorpusError naming `where` when anything is off.

    A line with a `vendor` field is read in the independent corpus's format
    (bench/corpus/replies.jsonl), any other in the project corpus's format."""
    try:
        raw = json.loads(line)
    except json.JSONDecodeError as exc:
        raise CorpusError(f"{where}: not valid JSON: {exc.msg}") from None
    if not isinstance(raw, dict):
        raise CorpusError(f"{where}: not a JSON object")
    new = "vendor" in raw
    fields = _NEW_FIELDS if new else _FIELDS
    optional = _NEW_OPTIONAL if new else ()
    missing = [name for name in fields if name not in raw]
    extra = sorted(set(raw) - set(fields) - set(optional))
    if missing or extra:
        raise CorpusError(f"{where}: missing {missing} / unknown {extra}")
    retry_key = "retry" if new else "retryable"
    category, stage = _common(raw, where, retry_key)
    vendor = ""
    if new:
        if not isinstance(raw["vendor"], str) or not raw["vendor"]:
            raise CorpusError(f"{where}: 'vendor' must be a non-empty string")
        vendor = _family(raw["vendor"])
    return Entry(id=raw["id"], source=raw["source"], stage=stage, reply=raw["reply"],
                 category=category, retryable=raw[retry_key], split=raw["split"],
                 vendor=vendor)


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
        rule = kb.fallback if finding.rule == kb.fallback.id else kb.by_id(finding.rule)
        outcomes.append(Outcome(entry, finding.category, finding.retryable, finding.rule,
                                by_text=rule.pattern is not None))
    return outcomes


def _figures(outcomes: Sequence[Outcome]) -> dict[str, float | int]:
    n = len(outcomes)
    cat = sum(o.category_ok for o in outcomes)
    retry = sum(o.retryable_ok for o in outcomes)
    unclassified = sum(o.category is UNCLASSIFIED for o in outcomes)
    cat_def = cat + sum(1 for o in outcomes if not o.category_ok
                        and any(k.covers(o) for k in DISAGREEMENTS))
    retry_def = retry + sum(1 for o in outcomes if not o.retryable_ok
                            and any(k.covers(o) for k in DISAGREEMENTS
                                    if k.expected.startswith("retry:")))
    return {
        "n": n,
        "category_correct": cat,
        "category_accuracy": round(cat / n, 4) if n else 0.0,
        "retryable_correct": retry,
        "retryable_accuracy": round(retry / n, 4) if n else 0.0,
        "unclassified": unclassified,
        "unclassified_rate": round(unclassified / n, 4) if n else 0.0,
        "category_accuracy_by_definitions": round(cat_def / n, 4) if n else 0.0,
        "retryable_accuracy_by_definitions": round(retry_def / n, 4) if n else 0.0,
    }


def _grouped(outcomes: Sequence[Outcome], key: Callable[[Outcome], str],
             least: int = 1) -> dict[str, dict[str, float | int]]:
    groups: dict[str, list[Outcome]] = {}
    for outcome in outcomes:
        groups.setdefault(key(outcome), []).append(outcome)
    return {name: _figures(groups[name]) for name in sorted(groups)
            if len(groups[name]) >= least}


def confusions(outcomes: Iterable[Outcome], top: int | None = None) -> list[tuple[str, str, int]]:
    """(expected, got, count) for the wrong categories, most frequent first."""
    counts = Counter((o.entry.category.value, o.category.value)
                     for o in outcomes if not o.category_ok)
    return [(want, got, n) for (want, got), n in counts.most_common(top)]


def _unclassified_detail(outcomes: Sequence[Outcome]) -> dict[str, object]:
    """How often the answer was `unclassified`, by deciding rule, and what the label said."""
    answered = [o for o in outcomes if o.category is UNCLASSIFIED]
    by_code = [o for o in outcomes if not o.by_text and o.category is not UNCLASSIFIED]
    by_text = [o for o in outcomes if o.by_text]
    return {
        "decided_by_text": len(by_text),
        "decided_by_text_accuracy": round(sum(o.category_ok for o in by_text) / len(by_text), 4)
        if by_text else 0.0,
        "decided_by_code": len(by_code),
        "decided_by_code_accuracy": round(sum(o.category_ok for o in by_code) / len(by_code), 4)
        if by_code else 0.0,
        "answered": len(answered),
        "rate": round(len(answered) / len(outcomes), 4) if outcomes else 0.0,
        "by_rule": dict(Counter(o.rule for o in answered).most_common()),
        "labels": dict(Counter(o.entry.category.value for o in answered).most_common()),
        "labelled_unclassified": sum(o.entry.category is UNCLASSIFIED for o in outcomes),
    }


def summarize(outcomes: Sequence[Outcome], top: int = 15) -> dict[str, object]:
    """All figures as plain data (what --json prints). Entries are listed for dev only."""
    by_split: dict[str, object] = {}
    for split in SPLITS:
        part = [o for o in outcomes if o.entry.split == split]
        if not part:
            continue
        section: dict[str, object] = {
            "overall": _figures(part),
            "by_category": _grouped(part, lambda o: o.entry.category.value),
            "by_vendor": _grouped(part, lambda o: o.entry.group, MIN_VENDOR),
            "confusions": [{"expected": w, "got": g, "count": n}
                           for w, g, n in confusions(part, top)],
            "unclassified": _unclassified_detail(part),
            "disagreements": disagreements(part),
        }
        if split == "dev":
            section["misclassified"] = [
                {"id": o.entry.id, "expected": o.entry.category.value,
                 "got": o.category.value, "rule": o.rule}
                for o in part if not o.category_ok
            ]
            section["retryable_wrong"] = [
                {"id": o.entry.id, "expected": o.entry.retryable, "got": o.retryable,
                 "rule": o.rule}
                for o in part if not o.retryable_ok
            ]
        by_split[split] = section
    return {"overall": _figures(outcomes), "by_split": by_split}


def misclassified_lines(outcomes: Iterable[Outcome]) -> list[str]:
    """One line per wrong category: id, expected -> got, and the rule that decided."""
    return [
        f"{o.entry.id} [{o.entry.split}]: {o.entry.category.value} -> {o.category.value}"
        f" (rule {o.rule})"
        for o in outcomes if not o.category_ok
    ]


def _table(title: str, groups: dict[str, dict[str, float | int]]) -> list[str]:
    lines = [title]
    width = min(max((len(name) for name in groups), default=0), 40)
    for name, fig in groups.items():
        lines.append(
            f"  {name[:width]:<{width}}  n={fig['n']:>4}  category {fig['category_accuracy']:6.1%}"
            f"  retry {fig['retryable_accuracy']:6.1%}  unclassified {fig['unclassified']:>3}"
        )
    return lines


def _headline(name: str, fig: dict[str, float | int]) -> str:
    return (f"{name}: n={fig['n']}  category {fig['category_accuracy']:.1%}"
            f" ({fig['category_correct']}/{fig['n']})  retry {fig['retryable_accuracy']:.1%}"
            f" ({fig['retryable_correct']}/{fig['n']})  unclassified"
            f" {fig['unclassified_rate']:.1%} ({fig['unclassified']})"
            f"  | by the definitions: category {fig['category_accuracy_by_definitions']:.1%}"
            f"  retry {fig['retryable_accuracy_by_definitions']:.1%}")


def _shown(text: str, width: int = 160) -> str:
    flat = " | ".join(line.strip() for line in text.splitlines() if line.strip())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def render(outcomes: Sequence[Outcome], title: str = "corpus", top: int = 15) -> str:
    lines = [f"== {title} ==", _headline("all", _figures(outcomes))]
    for split in SPLITS:
        part = [o for o in outcomes if o.entry.split == split]
        if part:
            lines.append(_headline(split, _figures(part)))
    lines.append("")
    for split in SPLITS:
        part = [o for o in outcomes if o.entry.split == split]
        if not part:
            continue
        lines.append(f"--- {split} ---")
        lines += _table(f"{split}: per expected category",
                        _grouped(part, lambda o: o.entry.category.value)) + [""]
        lines += _table(f"{split}: per vendor (n >= {MIN_VENDOR})",
                        _grouped(part, lambda o: o.entry.group, MIN_VENDOR)) + [""]
        lines.append(f"{split}: top confusions (expected -> got: count)")
        lines += [f"  {w} -> {g}: {n}" for w, g, n in confusions(part, top)]
        detail = _unclassified_detail(part)
        lines.append(f"{split}: answered unclassified {detail['answered']}/{len(part)}"
                     f" ({detail['rate']:.1%}); labelled unclassified"
                     f" {detail['labelled_unclassified']}")
        lines.append(f"  by rule: {detail['by_rule']}")
        lines.append(f"  decided by a text pattern: {detail['decided_by_text']}"
                     f" (category right {detail['decided_by_text_accuracy']:.1%}); by codes"
                     f" alone: {detail['decided_by_code']}"
                     f" (category right {detail['decided_by_code_accuracy']:.1%})")
        lines.append(f"  their labels: {detail['labels']}")
        found = disagreements(part)
        lines.append(f"{split}: mistakes that are documented disagreements of label and"
                     f" definitions: {sum(found.values())} {found}")
        lines.append("")
        if split != "dev":
            lines.append(f"({split}: entries are not shown)")
            lines.append("")
            continue
        wrong = [o for o in part if not o.category_ok]
        lines.append(f"dev: misclassified ({len(wrong)}):")
        lines += [
            f"  {o.entry.id} @{o.entry.stage.value if o.entry.stage else '-'}:"
            f" {o.entry.category.value} -> {o.category.value} (rule {o.rule})"
            f"\n      {_shown(o.entry.reply)}"
            for o in wrong
        ]
        retry_wrong = [o for o in part if o.category_ok and not o.retryable_ok]
        lines.append(f"dev: right category, wrong retry advice ({len(retry_wrong)}):")
        lines += [
            f"  {o.entry.id}: retry {o.entry.retryable} -> {o.retryable} (rule {o.rule})"
            f"\n      {_shown(o.entry.reply)}"
            for o in retry_wrong
        ]
        lines.append("")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--corpus", default="both",
                        help="new (bench/corpus/replies.jsonl), old (tests/data/corpus.jsonl),"
                             " both (the default) or a JSON-lines file")
    parser.add_argument("--split", choices=SPLITS, help="measure one split only")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--top", type=int, default=15, help="confusions to list (default 15)")
    parser.add_argument("--knowledge", help="knowledge directory (default: as smtpprobe finds it)")
    opts = parser.parse_args(argv)
    if opts.corpus == "both":
        paths = {"new": NEW_CORPUS, "old": CORPUS}
    elif opts.corpus in CORPORA:
        paths = {opts.corpus: CORPORA[opts.corpus]}
    else:
        paths = {opts.corpus: Path(opts.corpus)}
    try:
        kb = knowledge.load(opts.knowledge)
        corpora = {name: load_corpus(path) for name, path in paths.items()}
    except (KnowledgeError, CorpusError, OSError) as exc:
        print(f"accuracy: {exc}", file=sys.stderr)
        return 2
    results = {}
    for name, entries in corpora.items():
        if opts.split:
            entries = [e for e in entries if e.split == opts.split]
        results[name] = evaluate(kb, entries)
    if opts.json:
        print(json.dumps({name: summarize(out, opts.top) for name, out in results.items()},
                         indent=2))
    else:
        print("\n".join(render(out, f"{name}: {paths[name].relative_to(ROOT)}"
                                     if paths[name].is_relative_to(ROOT) else name, opts.top)
                        for name, out in results.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
