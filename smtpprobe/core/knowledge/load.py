"""Find, load and validate the knowledge base (`knowledge/*.toml`) into a `KnowledgeBase`.

The knowledge base is data: each rule says which replies it explains (stage, code, enhanced
code, text pattern, or a failure without reply), what they mean (category, retry) and what to
do (cause and remedy in English and German). Loading checks every field and names the file and
rule id of any mistake. docs/knowledge.md describes the format.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
import re._constants as _sre  # type: ignore[import-not-found]
import re._parser as _sre_parse  # type: ignore[import-not-found]
import sys
import tempfile
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from smtpprobe.core.knowledge.location import ENV_VAR, find_knowledge_dir  # noqa: F401
from smtpprobe.errors import KnowledgeError
from smtpprobe.models import Category, FailureKind, LocalText, Severity, Stage

LANGS = ("en", "de")
_ID = re.compile(r"^[a-z0-9_]+(\.[a-z0-9_-]+)+$")
_ENHANCED_PATTERN = re.compile(r"^([245*])\.(\d{1,3})(?:\.(\d{1,3}))?$")
_RULE_KEYS = {
    "id", "category", "stages", "codes", "classes", "enhanced", "pattern", "failures",
    "retryable", "severity", "priority", "title", "cause", "remedy", "references", "examples",
    "correction", "fallback",
}


@dataclass(frozen=True, slots=True)
class EnhancedPattern:
    """An enhanced-code condition: class ('*' for any), subject, and optionally detail."""

    klass: str
    subject: int
    detail: int | None

    def matches(self, enhanced: str) -> bool:
        parts = enhanced.split(".")
        if len(parts) != 3:
            return False
        # '*' stands for the failure classes 4 and 5 only: a success code such as 2.1.5 must
        # be named with its class, so "250 2.1.1" is never read as an unknown user.
        if self.klass == "*" and parts[0] not in ("4", "5"):
            return False
        if self.klass != "*" and parts[0] != self.klass:
            return False
        if int(parts[1]) != self.subject:
            return False
        return self.detail is None or int(parts[2]) == self.detail

    @property
    def specificity(self) -> int:
        return (30 if self.detail is not None else 15) + (1 if self.klass != "*" else 0)

    def __str__(self) -> str:
        tail = f".{self.detail}" if self.detail is not None else ""
        return f"{self.klass}.{self.subject}{tail}"


class Pattern:
    """A case-insensitive regular expression, compiled on first use. It pickles as its source,
    so a knowledge base read from the cache (see `load`) compiles only the patterns a run
    actually needs."""

    __slots__ = ("pattern", "_compiled")

    def __init__(self, source: str, compiled: re.Pattern[str] | None = None) -> None:
        self.pattern = source
        self._compiled = compiled

    def search(self, text: str) -> re.Match[str] | None:
        if self._compiled is None:
            self._compiled = re.compile(self.pattern, re.IGNORECASE)
        return self._compiled.search(text)

    def __reduce__(self) -> tuple[type[Pattern], tuple[str]]:
        return (Pattern, (self.pattern,))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Pattern) and other.pattern == self.pattern

    def __hash__(self) -> int:
        return hash(self.pattern)

    def __repr__(self) -> str:
        return f"Pattern({self.pattern!r})"


@dataclass(frozen=True, slots=True)
class Example:
    """A reply (or a failure without reply) that must classify to the rule holding it."""

    stage: Stage | None
    reply: str | None = None
    failure: FailureKind | None = None
    detail: str | None = None  # the failure's detail line, for rules that match on it


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    category: Category
    title: LocalText
    cause: LocalText
    remedy: LocalText
    references: tuple[str, ...]
    examples: tuple[Example, ...]
    source: str  # file the rule came from, for messages
    stages: frozenset[Stage] = frozenset()
    codes: frozenset[int] = frozenset()
    classes: frozenset[int] = frozenset()
    enhanced: tuple[EnhancedPattern, ...] = ()
    pattern: Pattern | None = None
    failures: frozenset[FailureKind] = frozenset()
    retryable: bool | None = None
    severity: Severity | None = None
    priority: int = 0
    correction: LocalText | None = None
    fallback: bool = False
    # Alternatives of groups of lower-case strings: every match of `pattern` contains one
    # string of each group of some alternative. A cheap substring test that spares most regex
    # searches (see required_literals).
    literals: tuple[tuple[frozenset[str], ...], ...] | None = None


@dataclass(frozen=True, slots=True)
class Screen:
    """The pattern rules' required words, arranged to answer in one pass over a text which
    rules may match (a necessary condition; the regex still decides)."""

    words: tuple[str, ...]  # every word any pattern requires
    word_groups: dict[str, tuple[int, ...]]  # word -> groups it satisfies
    group_alternatives: tuple[tuple[int, ...], ...]  # group -> alternatives it belongs to
    alternative_size: tuple[int, ...]  # alternative -> number of groups it needs
    alternative_rule: tuple[str, ...]  # alternative -> rule id

    @classmethod
    def of(cls, rules: tuple[Rule, ...]) -> Screen:
        groups: dict[frozenset[str], int] = {}
        group_alts: list[list[int]] = []
        sizes: list[int] = []
        owners: list[str] = []
        for rule in rules:
            for alternative in rule.literals or ():
                index = len(sizes)
                ids = {groups.setdefault(g, len(groups)) for g in alternative}
                while len(group_alts) < len(groups):
                    group_alts.append([])
                for gid in ids:
                    group_alts[gid].append(index)
                sizes.append(len(ids))
                owners.append(rule.id)
        word_groups: dict[str, list[int]] = {}
        for group, gid in groups.items():
            for word in group:
                word_groups.setdefault(word, []).append(gid)
        return cls(words=tuple(sorted(word_groups)),
                   word_groups={w: tuple(g) for w, g in word_groups.items()},
                   group_alternatives=tuple(tuple(a) for a in group_alts),
                   alternative_size=tuple(sizes), alternative_rule=tuple(owners))

    def passing(self, lowered: str) -> set[str]:
        """Ids of the rules with an alternative whose every group has a word in `lowered`."""
        satisfied: set[int] = set()
        groups = self.word_groups
        for word in [w for w in self.words if w in lowered]:
            satisfied.update(groups[word])
        counts: dict[int, int] = {}
        rules: set[str] = set()
        for gid in satisfied:
            for alt in self.group_alternatives[gid]:
                count = counts.get(alt, 0) + 1
                counts[alt] = count
                if count == self.alternative_size[alt]:
                    rules.add(self.alternative_rule[alt])
        return rules


@dataclass(frozen=True, slots=True)
class KnowledgeBase:
    rules: tuple[Rule, ...]
    fallback: Rule
    location: str
    # Which pattern rules can possibly match a text, from the words their patterns require.
    screen: Screen | None = None
    # Rules that can match a reply with a given (basic code, enhanced subject), filled on
    # first use by classify.candidates; belongs to this knowledge base, not to the module.
    candidates: dict[tuple[int | None, int | None], tuple[Rule, ...]] = field(
        default_factory=dict, compare=False, repr=False)

    def by_id(self, rule_id: str) -> Rule:
        for rule in self.rules:
            if rule.id == rule_id:
                return rule
        raise KeyError(rule_id)


# --- locating ------------------------------------------------------------------------------


CACHE_ENV = "SMTPPROBE_CACHE"  # a directory for the parsed knowledge base, or "off"
_CACHE_FORMAT = "1"


def load(explicit: str | os.PathLike[str] | None = None,
         *, environ: Mapping[str, str] | None = None) -> KnowledgeBase:
    """Find and load the knowledge base; raises KnowledgeError with a one-line reason.

    Parsing and validating some 300 rules costs more than the rest of a command's start-up,
    so the validated result is kept in a per-user cache, keyed by a hash of every file's name
    and bytes (and of smtpprobe's and Python's versions): any edit gives a new key, and a
    missing, foreign or broken cache entry is simply rebuilt.
    """
    env = os.environ if environ is None else environ
    directory = find_knowledge_dir(explicit, environ=env)
    files = sorted(directory.rglob("*.toml"))
    if not files:
        raise KnowledgeError(f"{directory}: no *.toml files in the knowledge directory")
    blobs: list[tuple[str, bytes]] = []
    for path in files:
        name = str(path.relative_to(directory))
        try:
            blobs.append((name, path.read_bytes()))
        except OSError as exc:
            raise KnowledgeError(f"{name}: cannot read: {exc.strerror or exc}") from None
    cache = _cache_file(env, blobs)
    cached = _read_cache(cache) if cache is not None else None
    if cached is not None:
        return replace(cached, location=str(directory))
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
        _write_cache(cache, kb)
    return kb


def _cache_file(env: Mapping[str, str], blobs: list[tuple[str, bytes]]) -> Path | None:
    setting = env.get(CACHE_ENV, "")
    if setting.lower() == "off":
        return None
    if setting:
        folder = Path(setting)
    else:
        base = env.get("XDG_CACHE_HOME") or (str(Path(env["HOME"]) / ".cache")
                                             if env.get("HOME") else "")
        if not base:
            return None
        folder = Path(base) / "smtpprobe"
    from smtpprobe import __version__

    digest = hashlib.sha256(
        f"{_CACHE_FORMAT}|{__version__}|{sys.version_info[:3]}".encode())
    for name, data in blobs:
        digest.update(f"\0{name}\0{len(data)}\0".encode())
        digest.update(data)
    return folder / f"knowledge-{digest.hexdigest()[:32]}.pickle"


def _read_cache(path: Path) -> KnowledgeBase | None:
    try:
        info = path.stat()
        # Unpickling runs code: only a file of our own, that nobody else may write, is read.
        if info.st_uid != os.getuid() or info.st_mode & 0o022:
            return None
        with path.open("rb") as handle:
            kb = pickle.load(handle)
    except Exception:  # noqa: BLE001 - any broken or stale entry just means a rebuild
        return None
    return kb if isinstance(kb, KnowledgeBase) else None


def _write_cache(path: Path, kb: KnowledgeBase) -> None:
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("wb", dir=path.parent, prefix=".knowledge-",
                                         delete=False) as handle:
            pickle.dump(replace(kb, candidates={}), handle, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(handle.name, path)
        for old in path.parent.glob("knowledge-*.pickle"):
            if old != path:
                old.unlink(missing_ok=True)
    except OSError:
        pass  # no cache today (read-only home, full disk): the next run parses again


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


def required_literals(pattern: str) -> tuple[tuple[frozenset[str], ...], ...] | None:
    """What any match of `pattern` (case-insensitive) must contain, as alternatives of groups:
    a match satisfies at least one alternative, i.e. contains a string of each of its groups.

    Walks the parsed regular expression: each run of literal characters in a sequence is
    required; so is everything a group, or a repeat of at least one, requires; an alternation
    inside a sequence contributes one group made of each branch's strongest group. A pattern
    that is an alternation at the top gives one alternative per branch. None when nothing is
    certain (then the regex always runs).
    """
    try:
        parsed = _sre_parse.parse(pattern, re.IGNORECASE)
    except (re.error, RecursionError, TypeError, ValueError):  # pragma: no cover - defensive
        return None
    items = list(parsed)
    while len(items) == 1 and items[0][0] is _sre.SUBPATTERN:
        items = list(items[0][1][-1])
    branches = items[0][1][1] if len(items) == 1 and items[0][0] is _sre.BRANCH else [items]
    alternatives = tuple(tuple(_required(branch)) for branch in branches)
    if not alternatives or any(not alt for alt in alternatives):
        return None
    return alternatives


def _strongest(groups: list[frozenset[str]]) -> frozenset[str] | None:
    if not groups:
        return None
    return max(groups, key=lambda g: (min(len(x) for x in g), -len(g)))


def _required(items: object) -> list[frozenset[str]]:
    groups: list[frozenset[str]] = []
    run: list[str] = []

    def flush() -> None:
        if run:
            groups.append(frozenset({"".join(run)}))
            run.clear()

    repeats = {_sre.MAX_REPEAT, _sre.MIN_REPEAT, getattr(_sre, "POSSESSIVE_REPEAT", None)}
    for op, av in items:  # type: ignore[attr-defined]
        if op is _sre.LITERAL:
            run.append(chr(av).lower())
            continue
        flush()
        if op is _sre.SUBPATTERN:
            groups += _required(av[-1])
        elif op is _sre.BRANCH:
            best = [_strongest(_required(alt)) for alt in av[1]]
            if all(b is not None for b in best):
                groups.append(frozenset().union(*(b for b in best if b is not None)))
        elif op in repeats and av[0] >= 1:
            groups += _required(av[2])
    flush()
    return groups


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
            pattern = Pattern(source, re.compile(source, re.IGNORECASE))
        except re.error as exc:
            raise fail(f"'pattern' is not a valid regular expression: {exc}") from None

    retryable = raw.get("retryable")
    if retryable is not None and not isinstance(retryable, bool):
        raise fail("'retryable' must be true or false")
    severity = None
    if "severity" in raw:
        try:
            severity = Severity(raw["severity"])
        except ValueError:
            raise fail(f"unknown severity {raw['severity']!r}") from None
    priority = raw.get("priority", 0)
    if not isinstance(priority, int) or isinstance(priority, bool) or not -100 <= priority <= 100:
        raise fail("'priority' must be an integer from -100 to 100")
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
        raise fail("'references' must name at least one source (RFC section or seed file)")

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
        priority=priority, correction=text("correction", required=False), fallback=fallback,
        literals=required_literals(pattern.pattern) if pattern is not None else None,
    )
