"""The shape of the knowledge base itself: folders by kind, named tiers, seed short names and
the verbose form of long patterns (docs/knowledge.md)."""

from __future__ import annotations

import re
import re._parser as sre_parse  # type: ignore[import-not-found]
from pathlib import Path

import pytest

from smtpprobe.core.classify import CODE_WEIGHT, PATTERN_WEIGHT
from smtpprobe.core.knowledge import load as knowledge
from smtpprobe.core.knowledge.cache import cache_file
from smtpprobe.core.knowledge.literals import required_literals
from smtpprobe.core.knowledge.model import DEFAULT_TIER, SEED_PREFIX, SEEDS, TIERS, KnowledgeBase
from smtpprobe.errors import KnowledgeError

ROOT = Path(__file__).resolve().parents[3]
SOURCE = ROOT / "knowledge"
SEED_DIR = ROOT.parent / "shared" / "seeds"  # where the seed documents are kept, if present
LONG = 120  # a pattern longer than this is written verbose, one alternative per line

FALLBACK = '''
[[rule]]
id = "fallback.unclassified"
fallback = true
category = "unclassified"
title = { en = "t", de = "t" }
cause = { en = "c", de = "c" }
remedy = { en = "r", de = "r" }
references = ["RFC 5321 4.2.1"]
'''


def code_rule(rule_id: str, extra: str = "") -> str:
    return f'''
[[rule]]
id = "{rule_id}"
category = "user_unknown"
codes = [550]
{extra}
title = {{ en = "t", de = "t" }}
cause = {{ en = "c", de = "c" }}
remedy = {{ en = "r", de = "r" }}
references = ["RFC 5321 4.2.3"]
examples = [{{ reply = "550 x" }}]
'''


def write_tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


# --- folders by kind ---------------------------------------------------------------------------


def test_every_file_is_in_a_kind_folder() -> None:
    files = [p.relative_to(SOURCE).as_posix() for p in SOURCE.rglob("*") if p.is_file()]
    assert files
    assert {name.split("/")[0] for name in files} == {"codes", "patterns", "probe",
                                                   "domain"}
    assert all(name.count("/") == 1 and name.endswith(".toml") for name in files), files
    assert not [name for name in files if name.startswith("patterns/patterns-")]


def test_each_folder_holds_its_kind_of_rule(kb: KnowledgeBase) -> None:
    assert {rule.source.split("/")[0] for rule in kb.rules} == {"codes", "patterns", "probe",
                                                               "domain"}
    assert kb.fallback.source == "codes/fallback.toml"
    for rule in kb.rules:
        kind = rule.source.split("/")[0]
        if kind == "codes":
            assert rule.pattern is None and not rule.failures, rule.id
            assert rule.codes or rule.classes or rule.enhanced, rule.id
        elif kind == "patterns":
            assert rule.pattern is not None and not rule.failures, rule.id
        else:  # our own observations and failures (probe/, domain/), the STARTTLS/AUTH replies
            assert rule.failures or rule.source == "probe/auth-tls.toml", rule.id


def test_subfolders_load_in_the_order_of_their_path_parts(tmp_path: Path) -> None:
    write_tree(tmp_path, {
        "b/x.toml": code_rule("t.b_x"),
        "a.toml": code_rule("t.a"),
        "a/z.toml": code_rule("t.a_z") + FALLBACK,
        "a-b.toml": code_rule("t.a_b"),
        "a/y/deep.toml": code_rule("t.a_y_deep"),
    })
    kb = knowledge.load(tmp_path, environ={"SMTPPROBE_CACHE": "off"})
    # ('a', ...) < ('a-b.toml',) < ('a.toml',) < ('b', ...), whatever the platform.
    assert [r.id for r in kb.rules] == ["t.a_y_deep", "t.a_z", "t.a_b", "t.a", "t.b_x"]
    assert [r.source for r in kb.rules] == ["a/y/deep.toml", "a/z.toml", "a-b.toml", "a.toml",
                                            "b/x.toml"]
    names = [name for name, _ in knowledge.knowledge_files(tmp_path)]
    assert names == ["a/y/deep.toml", "a/z.toml", "a-b.toml", "a.toml", "b/x.toml"]


def test_a_mistake_in_a_subfolder_names_its_path(tmp_path: Path) -> None:
    write_tree(tmp_path, {"codes/fallback.toml": FALLBACK,
                          "patterns/broken.toml": code_rule("t.x", 'tier = "nope"')})
    with pytest.raises(KnowledgeError, match=r"^patterns/broken\.toml: rule 't\.x': unknown tier"):
        knowledge.load(tmp_path, environ={"SMTPPROBE_CACHE": "off"})


def test_the_cache_key_covers_the_paths_and_the_tables(monkeypatch: pytest.MonkeyPatch,
                                                       tmp_path: Path) -> None:
    env = {"SMTPPROBE_CACHE": str(tmp_path)}
    data = b"[[rule]]\n"
    here = cache_file(env, [("codes/x.toml", data)])
    assert here is not None and here == cache_file(env, [("codes/x.toml", data)])
    assert here != cache_file(env, [("probe/x.toml", data)])
    assert here != cache_file(env, [("codes-x.toml", data)])
    monkeypatch.setitem(TIERS, "standard", 1)
    assert here != cache_file(env, [("codes/x.toml", data)])
    monkeypatch.undo()
    monkeypatch.setitem(SEEDS, "another", SEEDS["client-help"])
    assert here != cache_file(env, [("codes/x.toml", data)])


# --- tiers -------------------------------------------------------------------------------------


def test_the_tier_table_is_ordered_and_every_tier_is_used(kb: KnowledgeBase) -> None:
    numbers = list(TIERS.values())
    assert numbers == sorted(set(numbers)), "one number per tier, lowest first"
    assert TIERS[DEFAULT_TIER] == 0
    used = {rule.tier for rule in (*kb.rules, kb.fallback)}
    assert used == set(TIERS)
    for rule in (*kb.rules, kb.fallback):
        assert rule.priority == TIERS[rule.tier], rule.id


def test_tiers_keep_their_place_among_the_weights(kb: KnowledgeBase) -> None:
    # The enhanced-code rules in the tiers that say less than a basic code score below any
    # basic code rule; and no tier lifts a code rule to a pattern rule's score.
    below_codes = {"success-echo", "code-echo", "enhanced-subject"}
    for rule in kb.rules:
        if rule.tier in below_codes:
            assert not rule.codes and not rule.stages and rule.enhanced, rule.id
            best = max(p.specificity for p in rule.enhanced)
            assert best + rule.priority + (2 if rule.classes else 0) < CODE_WEIGHT, rule.id
    assert {rule.tier for rule in kb.rules if rule.tier in below_codes} == below_codes
    code_max = max(rule.priority for rule in kb.rules if rule.pattern is None)
    pattern_min = min(rule.priority for rule in kb.rules if rule.pattern is not None)
    assert 10 + 5 + 2 + 31 + code_max < PATTERN_WEIGHT + pattern_min


def test_tier_names_are_readable() -> None:
    for name in TIERS:
        assert re.fullmatch(r"[a-z]+(?:-[a-z0-9]+)*", name), name


# --- seed references ---------------------------------------------------------------------------


def test_seed_references_use_short_names_and_every_seed_is_cited(kb: KnowledgeBase) -> None:
    cited = set()
    for rule in (*kb.rules, kb.fallback):
        for reference in rule.references:
            if reference.startswith(SEED_PREFIX):
                cited.add(reference[len(SEED_PREFIX):])
            assert not re.search(r"[0-9a-f]{12}", reference), (rule.id, reference)
    assert cited == set(SEEDS)


def test_the_seed_table_names_five_distinct_files() -> None:
    files = [seed.file for seed in SEEDS.values()]
    assert len(files) == len(set(files)) == 5
    for short, seed in SEEDS.items():
        assert re.fullmatch(r"[a-z0-9]+(?:-[a-z0-9]+)*", short), short
        assert re.fullmatch(r"\d{3}_[0-9a-f]{16}\.txt", seed.file), seed.file
        assert seed.about.strip()
    if SEED_DIR.is_dir():
        assert sorted(p.name for p in SEED_DIR.glob("*.txt")) == sorted(files)


# --- long patterns -----------------------------------------------------------------------------

_FLAGS = re.compile(r"\(\?([aiLmsux]+)\)")


def one_line_form(source: str) -> str:
    """A verbose pattern laid out on one line the way it was written before: its alternatives
    (one a line, after '| ') joined by '|', its flags without the x."""
    first, *lines = source.split("\n")
    flags = _FLAGS.fullmatch(first)
    assert flags is not None and "x" in flags.group(1), first
    rest = flags.group(1).replace("x", "")
    alternatives = []
    for number, line in enumerate(line.strip() for line in lines if line.strip()):
        if number:
            assert line.startswith("| "), line
            line = line[2:]
        alternatives.append(line)
    return (f"(?{rest})" if rest else "") + "|".join(alternatives)


def verbose_rules(kb: KnowledgeBase) -> list[tuple[str, str]]:
    return [(rule.id, rule.pattern.pattern) for rule in kb.rules
            if rule.pattern is not None and "\n" in rule.pattern.pattern]


def test_long_patterns_are_verbose_with_one_alternative_a_line(kb: KnowledgeBase) -> None:
    for rule in kb.rules:
        if rule.pattern is None:
            continue
        source = rule.pattern.pattern
        if "\n" not in source:
            assert len(source) <= LONG, (rule.id, len(source))
            continue
        assert source.startswith("(?") and re.compile(source).flags & re.VERBOSE, rule.id
        for line in source.split("\n")[1:]:
            body = line.strip().removeprefix("| ")
            if body:
                re.compile("(?x)" + body)  # a line is a whole alternative: it compiles alone
    assert len(verbose_rules(kb)) >= 27


def test_verbose_layout_changes_nothing(kb: KnowledgeBase) -> None:
    # The layout (line breaks, indentation, '| ') is all that verbose mode may drop: the one-line
    # form parses to the same tree, so a space or '#' left unescaped would show here.
    rules = verbose_rules(kb)
    assert rules
    for rule_id, source in rules:
        flat = one_line_form(source)
        assert "\n" not in flat
        verbose_tree = sre_parse.parse(source, re.IGNORECASE)
        flat_tree = sre_parse.parse(flat, re.IGNORECASE)
        assert repr(verbose_tree) == repr(flat_tree), rule_id
        assert verbose_tree.state.flags & ~re.VERBOSE == flat_tree.state.flags, rule_id
        assert required_literals(source) == required_literals(flat), rule_id
        assert kb.by_id(rule_id).literals == required_literals(flat), rule_id


def test_an_unescaped_space_in_a_verbose_pattern_would_be_caught() -> None:
    source = "(?x)\n    user\\ unknown\n  | no such user\n"
    assert repr(sre_parse.parse(source, re.I)) != repr(sre_parse.parse(one_line_form(source),
                                                                       re.I))
    fixed = source.replace("no such user", "no\\ such\\ user")
    assert repr(sre_parse.parse(fixed, re.I)) == repr(sre_parse.parse(one_line_form(fixed), re.I))
    assert re.search(fixed, "550 No such user here", re.I)
