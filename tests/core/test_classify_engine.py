"""The classifier's machinery: scoring order, the literal screen, the candidate index."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smtpprobe.core.classify import classify_text, rank_reply
from smtpprobe.core.knowledge import load as knowledge
from smtpprobe.core.knowledge.literals import required_literals
from smtpprobe.core.knowledge.model import KnowledgeBase
from smtpprobe.core.replies import parse_reply
from smtpprobe.models import Category, Stage

CORPUS = [json.loads(line)["reply"]
          for line in (Path(__file__).parents[1] / "data" / "corpus.jsonl").open(encoding="utf-8")]


def screen_passes(literals: tuple[tuple[frozenset[str], ...], ...] | None, text: str,
                  kb: KnowledgeBase | None = None, rule_id: str = "") -> bool:
    if kb is not None and kb.screen is not None and literals is not None:
        return rule_id in kb.screen.passing(text.lower())
    if literals is None:
        return True
    lowered = text.lower()
    return any(all(any(word in lowered for word in group) for group in alternative)
               for alternative in literals)


def test_required_literals_shapes() -> None:
    assert required_literals("relay access denied") == ((frozenset({"relay access denied"}),),)
    assert required_literals("ab|cd") == ((frozenset({"ab"}),), (frozenset({"cd"}),))
    both = required_literals(r"spamhaus.{0,120}\bpbl\b")
    assert both == ((frozenset({"spamhaus"}), frozenset({"pbl"})),)
    assert required_literals(r"(?:over|exceeded)\s+quota") == (
        (frozenset({"over", "exceeded"}), frozenset({"quota"})),)
    assert required_literals(r"\d+") is None
    assert required_literals(r"x?y*") is None


def test_screen_never_rejects_a_match_in_the_corpus_or_the_examples(kb: KnowledgeBase) -> None:
    texts = CORPUS + [e.reply for r in kb.rules for e in r.examples if e.reply]
    for rule in kb.rules:
        if rule.pattern is None:
            continue
        for text in texts:
            body = parse_reply(text).text
            if rule.pattern.search(body):
                assert screen_passes(rule.literals, body), (rule.id, text)
                assert screen_passes(rule.literals, body, kb, rule.id), (rule.id, text)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_screen_never_rejects_a_match_on_mutated_text(kb: KnowledgeBase, data: st.DataObject
                                                     ) -> None:
    base = data.draw(st.sampled_from(CORPUS))
    cut = data.draw(st.integers(0, len(base)))
    noise = data.draw(st.text(max_size=30))
    text = data.draw(st.sampled_from([base[:cut] + noise + base[cut:], base.upper(),
                                      noise + base.swapcase()]))
    for rule in kb.rules:
        if rule.pattern is not None and rule.pattern.search(text):
            assert screen_passes(rule.literals, text), (rule.id, text)
            assert screen_passes(rule.literals, text, kb, rule.id), (rule.id, text)


def test_candidate_index_gives_the_same_ranking_as_scoring_every_rule(kb: KnowledgeBase) -> None:
    # No screen, no index: every rule is scored and every pattern runs.
    bare = tuple(replace(rule, literals=None) for rule in kb.rules)
    full = knowledge.KnowledgeBase(rules=bare, fallback=kb.fallback, location="x", screen=None)
    for text in CORPUS[:200]:
        reply = parse_reply(text)
        for stage in (None, Stage.RCPT, Stage.MAIL, Stage.DATA, Stage.CONNECT):
            fast = [(c.score, c.rule.id) for c in rank_reply(kb, stage, reply)]
            slow = [(c.score, c.rule.id) for c in rank_reply(full, stage, reply)]
            assert fast == slow, text


def test_text_beats_code_and_stage_matters(kb: KnowledgeBase) -> None:
    blocked = ("550 5.7.1 Service unavailable; Client host [192.0.2.1] blocked using "
               "zen.spamhaus.org")
    assert classify_text(kb, Stage.RCPT, blocked).category is Category.BLOCKLISTED
    assert classify_text(kb, Stage.RCPT, "552 5.2.2 over quota").category is Category.MAILBOX_FULL
    assert classify_text(kb, Stage.DATA, "552 5.3.4 Message size exceeds fixed limit").category \
        is Category.MESSAGE_TOO_LARGE


@pytest.mark.parametrize("text", ["", " ", "\x00", "999", "5.1.1", "abc\ndef", "550-x\n451 y"])
def test_odd_inputs_still_classify(kb: KnowledgeBase, text: str) -> None:
    finding = classify_text(kb, None, text)
    assert finding.rule
