"""Pure classification: (stage, reply or failure) -> Finding, against the knowledge base.

Every rule whose conditions all hold is a candidate; the most specific one wins. Text is the
strongest evidence (a 550 that says "blocked using zen.spamhaus.org" is about a blocklist, not a
mailbox), then the enhanced status code (RFC 3463: subject and detail say more than the basic
code), then the basic code, then the code class. A stage restriction adds a little, because the
same code means different things at different commands (RFC 5321 4.3.2: 552 at RCPT is a full
mailbox, at the end of DATA a message that is too large).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from smtpprobe.core.replies import extract_reply, parse_reply
from smtpprobe.core.tlsproblems import tls_problems
from smtpprobe.core.wire import shorten
from smtpprobe.models import Failure, FailureKind, Finding, Reply, Severity, Stage, Step, TlsInfo

if TYPE_CHECKING:
    from smtpprobe.core.knowledge.load import KnowledgeBase, Rule

PATTERN_WEIGHT = 1000
FAILURE_WEIGHT = 1000
CODE_WEIGHT = 10
CLASS_WEIGHT = 2
STAGE_WEIGHT = 5
# What the server said is the evidence; only a reply longer than this (a page of text) is
# shortened, with a mark. A typical reply, the decisive one included, is kept whole.
EVIDENCE_MAX = 2000

_SEVERITY_OF_CLASS = {2: Severity.OK, 3: Severity.INFO, 4: Severity.WARNING, 5: Severity.ERROR}


@dataclass(frozen=True, slots=True)
class Candidate:
    score: int
    rule: Rule


def _score_reply(rule: Rule, stage: Stage | None, reply: Reply, text: str,
                 passing: set[str]) -> int | None:
    """The rule's score for this reply, or None when one of its conditions does not hold."""
    if rule.failures:
        return None
    score = 0
    if rule.stages:
        if stage not in rule.stages:
            return None
        score += STAGE_WEIGHT
    if rule.codes:
        if reply.code not in rule.codes:
            return None
        score += CODE_WEIGHT
    if rule.classes:
        if reply.klass is None:
            # Beside a pattern the class is a guard, and text pasted without a code still
            # meets it; on its own it is the only evidence, and there is none.
            if rule.pattern is None:
                return None
        elif reply.klass not in rule.classes:
            return None
        else:
            score += CLASS_WEIGHT
    if rule.enhanced:
        if reply.enhanced is None:
            return None
        best = max((p.specificity for p in rule.enhanced if p.matches(reply.enhanced)), default=0)
        if not best:
            return None
        score += best
    if rule.pattern is not None:
        if rule.literals is not None and rule.id not in passing:
            return None  # words every match needs are missing: no need to run the regex
        if rule.pattern.search(text) is None:
            return None
        score += PATTERN_WEIGHT
    return score + rule.priority


def _score_failure(rule: Rule, stage: Stage | None, failure: Failure) -> int | None:
    if not rule.failures or failure.kind not in rule.failures:
        return None
    score = FAILURE_WEIGHT
    if rule.stages:
        if stage not in rule.stages:
            return None
        score += STAGE_WEIGHT
    if rule.pattern is not None:
        if rule.pattern.search(failure.detail) is None:
            return None
        score += PATTERN_WEIGHT
    return score + rule.priority


def candidates(kb: KnowledgeBase, reply: Reply) -> tuple[Rule, ...]:
    """The rules whose code and enhanced-code conditions this reply can meet, in knowledge
    order (ties are decided by it). Computed once per (code, enhanced subject)."""
    subject = int(reply.enhanced.split(".")[1]) if reply.enhanced else None
    key = (reply.code, subject)
    found = kb.candidates.get(key)
    if found is None:
        found = tuple(
            rule for rule in kb.rules
            if not rule.failures
            and (not rule.codes or reply.code in rule.codes)
            and (not rule.enhanced or any(p.subject == subject for p in rule.enhanced))
        )
        kb.candidates[key] = found
    return found


def rank_reply(kb: KnowledgeBase, stage: Stage | None, reply: Reply) -> list[Candidate]:
    """All matching rules, best first (ties keep knowledge-base order)."""
    # Patterns see the reply with its enhanced code, so a rule may also key on it. Real
    # replies stay far below 16 KiB; the cap bounds the work on hostile or pasted input.
    text = reply.text[:16384]
    passing = kb.screen.passing(text.lower()) if kb.screen is not None else set()
    found = []
    for rule in candidates(kb, reply):
        if rule.literals is not None and rule.id not in passing:
            continue  # the cheapest refusal first, before the call
        score = _score_reply(rule, stage, reply, text, passing)
        if score is not None:
            found.append(Candidate(score, rule))
    found.sort(key=lambda c: -c.score)
    return found


def rank_failure(kb: KnowledgeBase, stage: Stage | None, failure: Failure) -> list[Candidate]:
    found = []
    for rule in kb.rules:
        score = _score_failure(rule, stage, failure)
        if score is not None:
            found.append(Candidate(score, rule))
    found.sort(key=lambda c: -c.score)
    return found


def _evidence(text: str) -> str:
    text = " | ".join(line.strip() for line in text.splitlines() if line.strip())
    text = "".join(ch if ch.isprintable() else "\ufffd" for ch in text)
    return shorten(text, EVIDENCE_MAX)


def classify_reply(kb: KnowledgeBase, stage: Stage | None, reply: Reply) -> Finding:
    """What this reply means at this stage. Never raises; unknown replies are 'unclassified'."""
    ranked = rank_reply(kb, stage, reply)
    rule = ranked[0].rule if ranked else kb.fallback
    klass = reply.klass
    if klass is None and reply.enhanced:
        klass = int(reply.enhanced[0])  # pasted "dsn=4.7.5": the enhanced class decides
    retryable = rule.retryable if rule.retryable is not None else klass == 4
    severity = rule.severity or _SEVERITY_OF_CLASS.get(klass or 0, Severity.WARNING)
    return Finding(
        category=rule.category, retryable=retryable, severity=severity, stage=stage,
        code=reply.code, enhanced_code=reply.enhanced, rule=rule.id, cause=rule.cause,
        remedy=rule.remedy, references=rule.references, evidence=_evidence(reply.render()),
        title=rule.title, correction=rule.correction,
    )


def classify_failure(kb: KnowledgeBase, stage: Stage | None, failure: Failure) -> Finding:
    """What a step that got no reply means (refused, timed out, TLS broke ...)."""
    ranked = rank_failure(kb, stage, failure)
    rule = ranked[0].rule if ranked else kb.fallback
    return Finding(
        category=rule.category,
        retryable=rule.retryable if rule.retryable is not None else False,
        severity=rule.severity or Severity.ERROR, stage=stage, code=None, enhanced_code=None,
        rule=rule.id, cause=rule.cause, remedy=rule.remedy, references=rule.references,
        evidence=_evidence(failure.detail), title=rule.title, correction=rule.correction,
    )


def classify_text(kb: KnowledgeBase, stage: Stage | None, text: str) -> Finding:
    """Classify a reply given as text (one or more lines)."""
    return classify_reply(kb, stage, parse_reply(text))


@dataclass(frozen=True, slots=True)
class Explained:
    """What `explain_pasted` found: the finding, the decisive reply (its evidence, not the
    whole bounce), and the recipient and reporting host when the bounce names them."""

    finding: Finding
    reply: Reply
    recipient: str | None = None
    reporting_host: str | None = None


def explain_pasted(kb: KnowledgeBase, text: str, stage: Stage | None = None) -> Explained:
    """Classify whatever a user pasted: a reply, or a bounce that quotes one.

    A stage given by the user wins over one the bounce names ("in reply to RCPT TO command").
    """
    extracted = extract_reply(text)
    reply = parse_reply(extracted.reply_text)
    finding = classify_reply(kb, stage or extracted.stage, reply)
    return Explained(finding, reply, extracted.recipient, extracted.reporting_host)


def explain(kb: KnowledgeBase, text: str, stage: Stage | None = None) -> tuple[Finding, Reply]:
    """`explain_pasted` without what the bounce says besides the reply."""
    explained = explain_pasted(kb, text, stage)
    return explained.finding, explained.reply


# Distinct (stage, reply, failure) triples remembered by one Classifier.
_MEMO_MAX = 50_000


@dataclass(slots=True)
class Classifier:
    """Classification as check, sweep and relay use it: one knowledge base, one memo.

    Steps come from the session with secrets already masked where they can occur; our own
    observations quote only those steps. The same reply classifies to the same finding, so a
    batch of a thousand "250 2.1.5 Ok" costs one classification.
    """

    kb: KnowledgeBase
    _memo: dict[tuple[Stage, Reply | None, Failure | None], Finding] = field(
        default_factory=dict)

    def step(self, step: Step) -> Step:
        """The step with its finding (a step without reply or failure stays as it is)."""
        if step.reply is None and step.failure is None:
            return step
        key = (step.stage, step.reply, step.failure)
        finding = self._memo.get(key)
        if finding is None:
            finding = classify_reply(self.kb, step.stage, step.reply) if step.reply is not None \
                else classify_failure(self.kb, step.stage, step.failure)  # type: ignore[arg-type]
            if len(self._memo) < _MEMO_MAX:
                self._memo[key] = finding
        return replace(step, finding=finding)

    def steps(self, steps: Iterable[Step]) -> list[Step]:
        return [self.step(step) for step in steps]

    def failure(self, stage: Stage, failure: Failure) -> Finding:
        return classify_failure(self.kb, stage, failure)

    def observe(self, stage: Stage, kind: FailureKind, detail: str) -> Finding:
        """A fact we found on the way (no STARTTLS, a catch-all, an open relay)."""
        return classify_failure(self.kb, stage, Failure(kind, detail))

    def tls(self, tls: TlsInfo | None, name: str, *, submission: bool = False) -> list[Finding]:
        """What is wrong with a TLS connection that worked (`submission`: a server users log
        in to, whose name problems are about their settings, not an MX record)."""
        if tls is None:
            return []
        return [self.observe(Stage.STARTTLS, kind, detail)
                for kind, detail in tls_problems(tls, name, submission=submission)]


def unique_findings(findings: Iterable[Finding]) -> list[Finding]:
    """Findings in order, each (rule, evidence) once: the same refusal seen twice is one."""
    seen: set[tuple[str, str]] = set()
    out: list[Finding] = []
    for finding in findings:
        key = (finding.rule, finding.evidence)
        if key not in seen:
            seen.add(key)
            out.append(finding)
    return out


def check_examples(kb: KnowledgeBase) -> list[str]:
    """Every rule's examples must classify to that rule, and not by a tie. Returns problems."""
    problems: list[str] = []
    for rule in kb.rules:
        for example in rule.examples:
            if example.failure is not None:
                detail = example.detail or "example"
                ranked = rank_failure(kb, example.stage, Failure(example.failure, detail))
                shown = f"failure {example.failure}"
            else:
                ranked = rank_reply(kb, example.stage, parse_reply(example.reply or ""))
                shown = repr(example.reply)
            where = f"{rule.source}: rule {rule.id!r}: example {shown} at {example.stage}"
            if not ranked:
                problems.append(f"{where}: matches no rule")
            elif ranked[0].rule is not rule:
                problems.append(f"{where}: classified as {ranked[0].rule.id!r} instead")
            elif len(ranked) > 1 and ranked[1].score == ranked[0].score:
                problems.append(f"{where}: ties with {ranked[1].rule.id!r}")
    return problems
