"""Find, load and validate the knowledge base (`knowledge/**/*.toml`) into a `KnowledgeBase`.

The knowledge base is data: each rule says which replies it explains (stage, code, enhanced
code, text pattern, or a failure without reply), what they mean (category, retry) and what to
do (cause and remedy in English and German). Loading checks every field and names the file and
rule id of any mistake. docs/knowledge.md describes the format; model.py holds what is built,
literals.py the pattern prefilter and cache.py the per-user cache.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path

from smtpprobe.core.knowledge.cache import CACHE_ENV, cache_file, read_cache, write_cache
from smtpprobe.core.knowledge.literals import required_literals
from smtpprobe.core.knowledge.location import ENV_VAR, find_knowledge_dir
from smtpprobe.core.knowledge.model import (
    DEFAULT_TIER,
    LANGS,
    SEED_PREFIX,
    SEEDS,
    TIERS,
    EnhancedPattern,
    Example,
    KnowledgeBase,
    Pattern,
    Rule,
    Screen,
)
from smtpprobe.errors import KnowledgeError
from smtpprobe.models import Category, FailureKind, LocalText, Severity, Stage

# Names other modules import from here, as they did before model.py, literals.py and cache.py
# took their parts over.
__all__ = [
    "CACHE_ENV", "ENV_VAR", "LANGS", "EnhancedPattern", "Example", "KnowledgeBase",
    "KnowledgeError", "Pattern", "Rule", "Screen", "build", "find_knowledge_dir",
    "knowledge_files", "load", "required_literals",
]

_ID = re.compile(r"^[a-z0-9_]+(\.[a-z0-9_-]+)+$")
_ENHANCED_PATTERN = re.compile(r"^([245*])\.(\d{1,3})(?:\.(\d{1,3}))?$")
_RULE_KEYS = {
    "id", "category", "stages", "codes", "classes", "enhanced", "pattern", "failures",
    "retryable", "severity", "tier", "title", "cause", "remedy", "references", "examples",
    "correction", "fallback",
}


def knowledge_files(directory: Path) -> list[tuple[str, Path]]:
    """Every `*.toml` file below `directory` (the kind folders codes/, patterns/, probe/ and
    any other), as (path relative to it with '/' separators, path), in the order of those
    relative paths' parts: the same on every system and Python version."""
    found = [(path.relative_to(directory), path) for path in directory.rglob("*.toml")]
    found.sort(key=lambda item: item[0].parts)
    return [(relative.as_posix(), path) for relative, path in found]


def load(explicit: str | os.PathLike[str] | None = None,
         *, environ: Mapping[str, str] | None = None) -> KnowledgeBase:
    """Find and load the knowledge base; raises KnowledgeError with a one-line reason.

    The validated result is kept in a per-user cache (cache.py) keyed by a hash of every
    file's relative path and bytes: a warm start reads one pickle instead of parsing.
    """
    env = os.environ if environ is None else environ
    directory = find_knowledge_dir(explicit, environ=env)
    files = knowledge_files(directory)
    if not files:
        raise KnowledgeError(f"{directory}: no *.toml files in the knowledge directory")
    blobs: list[tuple[str, bytes]] = []
    for name, path in files:
        try:
            blobs.append((name, path.read_bytes()))
        except OSError as exc:
            raise KnowledgeError(f"{name}: cannot read: {exc.strerror or exc}") from None
    cache = cache_file(env, blobs)
    cached = read_cache(cache) if cache is not None else None
    if cached is not None:
        return replace(cached, location=str(directory))
    import tomllib  # only on a cache miss: a warm start never parses TOML

    documents: list[tuple[str, Mapping[str, object]]] = []
    for name, data in blobs:
        try:
            documents.append((name, tomllib.loads(data.decode("utf-8"))))
        except tomllib.TOMLDecodeError as exc:
            raise KnowledgeError(f"{name}: not valid TOML: {exc}") from None
        except UnicodeDecodeError:
            raise KnowledgeError(f"{name}: not valid UTF-8") from None
    kb = build(documents, location=str(directory))
    if cache is not None:
        write_cache(cache, kb)
    return kb


def build(documents: Iterable[tuple[str, Mapping[str, object]]],
          *, location: str = "<memory>") -> KnowledgeBase:
    """Validate parsed TOML documents into a KnowledgeBase (also used by tests)."""
    rules: list[Rule] = []
    seen: dict[str, str] = {}
    for name, document in documents:
        unknown = set(document) - {"rule"}
        if unknown:
            raise KnowledgeError(f"{name}: unknown top-level key(s): {', '.join(sorted(unknown))}")
        raw_rules = document.get("rule", [])
        if not isinstance(raw_rules, list):
            raise KnowledgeError(f"{name}: 'rule' must be an array of tables ([[rule]])")
        for index, raw in enumerate(raw_rules):
            rule = _parse_rule(name, index, raw)
            if rule.id in seen:
                raise KnowledgeError(
                    f"{name}: rule {rule.id!r}: id already used in {seen[rule.id]}"
                )
            seen[rule.id] = name
            rules.append(rule)
    fallbacks = [r for r in rules if r.fallback]
    if len(fallbacks) != 1:
        raise KnowledgeError(
            f"{location}: exactly one rule must have fallback = true (found {len(fallbacks)})"
        )
    ordered = tuple(r for r in rules if not r.fallback)
    return KnowledgeBase(rules=ordered, fallback=fallbacks[0], location=location,
                         screen=Screen.of(ordered))


# --- validation ------------------------------------------------------------------------------


def _parse_rule(name: str, index: int, raw: object) -> Rule:
    if not isinstance(raw, dict):
        raise KnowledgeError(f"{name}: rule #{index + 1} is not a table")
    rule_id = raw.get("id")
    where = (f"{name}: rule {rule_id!r}" if isinstance(rule_id, str)
             else f"{name}: rule #{index + 1}")

    def fail(message: str) -> KnowledgeError:
        return KnowledgeError(f"{where}: {message}")

    if not isinstance(rule_id, str) or not _ID.match(rule_id):
        raise fail("'id' must be a dotted lower-case name like 'relay.denied'")
    unknown = set(raw) - _RULE_KEYS
    if "priority" in unknown:
        raise fail(f"'priority' is now 'tier', a name: one of {', '.join(TIERS)}")
    if unknown:
        raise fail(f"unknown key(s): {', '.join(sorted(unknown))}")

    try:
        category = Category(str(raw.get("category")))
    except ValueError:
        raise fail(f"unknown category {raw.get('category')!r}") from None

    def text(key: str, required: bool = True) -> LocalText | None:
        value = raw.get(key)
        if value is None and not required:
            return None
        if not isinstance(value, dict) or set(value) != set(LANGS):
            raise fail(f"'{key}' must have exactly the languages {', '.join(LANGS)}")
        for lang in LANGS:
            if not isinstance(value[lang], str) or not value[lang].strip():
                raise fail(f"'{key}.{lang}' must be a non-empty string")
        return LocalText(en=value["en"].strip(), de=value["de"].strip())

    def str_list(key: str) -> list[str]:
        value = raw.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise fail(f"'{key}' must be a list of strings")
        return value

    def int_list(key: str, low: int, high: int) -> frozenset[int]:
        value = raw.get(key, [])
        if not isinstance(value, list) or not all(
            isinstance(v, int) and not isinstance(v, bool) and low <= v <= high for v in value
        ):
            raise fail(f"'{key}' must be a list of integers from {low} to {high}")
        return frozenset(value)

    stages: set[Stage] = set()
    for stage in str_list("stages"):
        try:
            stages.add(Stage(stage))
        except ValueError:
            raise fail(f"unknown stage {stage!r}") from None

    failures: set[FailureKind] = set()
    for kind in str_list("failures"):
        try:
            failures.add(FailureKind(kind))
        except ValueError:
            raise fail(f"unknown failure kind {kind!r}") from None

    enhanced: list[EnhancedPattern] = []
    for item in str_list("enhanced"):
        match = _ENHANCED_PATTERN.match(item)
        if match is None:
            raise fail(f"enhanced code {item!r} must look like '5.1.1', '*.1.1' or '*.7'")
        detail = match.group(3)
        enhanced.append(EnhancedPattern(match.group(1), int(match.group(2)),
                                        int(detail) if detail is not None else None))

    pattern = None
    if "pattern" in raw:
        source = raw["pattern"]
        if not isinstance(source, str) or not source:
            raise fail("'pattern' must be a non-empty string")
        try:
            compiled = re.compile(source, re.IGNORECASE)
        except re.error as exc:
            raise fail(f"'pattern' is not a valid regular expression: {exc}") from None
        if "\n" in source and not compiled.flags & re.VERBOSE:
            # Outside verbose mode the line breaks and indentation would be matched literally.
            raise fail("a 'pattern' over several lines must start with the verbose flag "
                       "'(?x)' (docs/knowledge.md, 'Long patterns')")
        pattern = Pattern(source, compiled)

    retryable = raw.get("retryable")
    if retryable is not None and not isinstance(retryable, bool):
        raise fail("'retryable' must be true or false")
    severity = None
    if "severity" in raw:
        try:
            severity = Severity(raw["severity"])
        except ValueError:
            raise fail(f"unknown severity {raw['severity']!r}") from None
    tier = raw.get("tier", DEFAULT_TIER)
    if not isinstance(tier, str) or tier not in TIERS:
        raise fail(f"unknown tier {tier!r}: use one of {', '.join(TIERS)}")
    fallback = raw.get("fallback", False)
    if not isinstance(fallback, bool):
        raise fail("'fallback' must be true or false")

    codes = int_list("codes", 100, 599)
    classes = int_list("classes", 1, 5)
    if not fallback and not (codes or classes or enhanced or pattern or failures):
        raise fail("needs at least one of codes, classes, enhanced, pattern, failures")
    if failures and (codes or classes or enhanced):
        raise fail("a failure rule cannot also ask for codes or enhanced codes")

    references = tuple(str_list("references"))
    if not references:
        raise fail("'references' must name at least one source (RFC section or seed)")
    for reference in references:
        if reference.startswith(SEED_PREFIX) and reference[len(SEED_PREFIX):] not in SEEDS:
            raise fail(f"unknown seed in reference {reference!r}: use one of "
                       f"{', '.join(SEED_PREFIX + short for short in SEEDS)}")

    raw_examples = raw.get("examples", [])
    if not isinstance(raw_examples, list):
        raise fail("'examples' must be a list")
    examples: list[Example] = []
    for item in raw_examples:
        if not isinstance(item, dict) or set(item) - {"stage", "reply", "failure", "detail"}:
            raise fail("an example is a table with 'stage' and either 'reply' or 'failure' "
                       "(and its 'detail')")
        if "detail" in item and ("failure" not in item or not isinstance(item["detail"], str)):
            raise fail("an example's 'detail' is a string and belongs to a 'failure'")
        if isinstance(item.get("reply"), str) == isinstance(item.get("failure"), str):
            raise fail("each example needs exactly one of 'reply' (text) or 'failure' (kind)")
        ex_stage = item.get("stage")
        try:
            examples.append(Example(
                Stage(ex_stage) if ex_stage else None,
                reply=item.get("reply"),
                failure=FailureKind(item["failure"]) if "failure" in item else None,
                detail=item.get("detail"),
            ))
        except ValueError:
            raise fail(f"example has unknown stage or failure kind: {item!r}") from None
    if not examples and not fallback:
        raise fail("needs at least one example that classifies to it")

    title = text("title")
    cause = text("cause")
    remedy = text("remedy")
    assert title is not None and cause is not None and remedy is not None
    return Rule(
        id=rule_id, category=category, title=title, cause=cause, remedy=remedy,
        references=references, examples=tuple(examples), source=name,
        stages=frozenset(stages), codes=codes, classes=classes, enhanced=tuple(enhanced),
        pattern=pattern, failures=frozenset(failures), retryable=retryable, severity=severity,
        tier=tier, priority=TIERS[tier], correction=text("correction", required=False),
        fallback=fallback,
        literals=required_literals(pattern.pattern) if pattern is not None else None,
    )
