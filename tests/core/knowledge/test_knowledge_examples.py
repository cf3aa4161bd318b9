from smtpprobe.core.classify import check_examples
from smtpprobe.core.knowledge.model import KnowledgeBase


def test_every_example_classifies_to_its_rule_without_tie(kb: KnowledgeBase) -> None:
    problems = check_examples(kb)
    assert problems == [], "\n".join(problems)
