"""The knowledge base covers every reply code, enhanced status code and failure kind it must,
and means different things at different stages where SMTP does.

Replies here are bare codes ("552", "550 5.7.1"): text-pattern rules (knowledge/patterns/*.toml)
outrank code rules by design, so a bare code tests the code knowledge on its own.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from smtpprobe.core.classify import classify_failure, classify_reply, classify_text
from smtpprobe.core.knowledge import load as knowledge
from smtpprobe.core.knowledge.model import KnowledgeBase, Rule
from smtpprobe.errors import KnowledgeError
from smtpprobe.models import Category, Failure, FailureKind, Reply, Stage

# Codes named in the seed documents, defined by RFC 5321 4.2.2/4.2.3, RFC 7504 (521, 556),
# RFC 3207 (STARTTLS) and RFC 4954 (AUTH).
SEED_CODES = [101, 211, 214, 220, 221, 250, 251, 252, 354, 420, 421, 422, 432, 449, 450, 451,
              452, 455, 500, 501, 502, 503, 504, 535, 550, 551, 552, 553, 554, 555]
RFC5321_CODES = [211, 214, 220, 221, 250, 251, 252, 354, 421, 450, 451, 452, 455, 500, 501, 502,
                 503, 504, 550, 551, 552, 553, 554, 555]
RFC7504_CODES = [521, 556]
RFC3207_CODES = [220, 454, 501, 530]
RFC4954_CODES = [235, 334, 432, 454, 500, 530, 534, 535, 538]
REQUIRED_CODES = sorted(set(SEED_CODES + RFC5321_CODES + RFC7504_CODES + RFC3207_CODES
                            + RFC4954_CODES))

# The IANA "SMTP Enhanced Status Codes" registry (RFC 5248), subject.detail -> short summary.
# Sources: RFC 3463 (most), RFC 3886 (1.9), RFC 7505 (1.10, 7.27), RFC 6710 (3.6, 7.15, 7.16),
# RFC 4954 (5.6, 7.8, 7.9, 7.11, 7.12), RFC 4468 (6.6), RFC 6531 (6.7-6.10), RFC 5248 (7.10,
# 7.13, 7.14), RFC 7293 (7.17-7.19), RFC 7372 (7.20-7.26), the registry itself (7.28),
# RFC 8617 (7.29), RFC 8689 (7.30).
REGISTRY = {
    "0.0": "other or undefined status",
    "1.0": "other address status", "1.1": "bad destination mailbox address",
    "1.2": "bad destination system address", "1.3": "bad destination address syntax",
    "1.4": "destination mailbox address ambiguous", "1.5": "destination address valid",
    "1.6": "destination mailbox has moved", "1.7": "bad sender's mailbox address syntax",
    "1.8": "bad sender's system address", "1.9": "relayed to non-compliant mailer",
    "1.10": "recipient address has null MX",
    "2.0": "other mailbox status", "2.1": "mailbox disabled", "2.2": "mailbox full",
    "2.3": "message length exceeds administrative limit", "2.4": "mailing list expansion problem",
    "3.0": "other mail system status", "3.1": "mail system full",
    "3.2": "system not accepting network messages", "3.3": "system not capable of features",
    "3.4": "message too big for system", "3.5": "system incorrectly configured",
    "3.6": "requested priority was changed",
    "4.0": "other network or routing status", "4.1": "no answer from host",
    "4.2": "bad connection", "4.3": "directory server failure", "4.4": "unable to route",
    "4.5": "mail system congestion", "4.6": "routing loop detected",
    "4.7": "delivery time expired",
    "5.0": "other protocol status", "5.1": "invalid command", "5.2": "syntax error",
    "5.3": "too many recipients", "5.4": "invalid command arguments",
    "5.5": "wrong protocol version", "5.6": "authentication exchange line too long",
    "6.0": "other media error", "6.1": "media not supported",
    "6.2": "conversion required and prohibited", "6.3": "conversion required but not supported",
    "6.4": "conversion with loss performed", "6.5": "conversion failed",
    "6.6": "message content not available", "6.7": "non-ASCII addresses not permitted",
    "6.8": "UTF-8 reply required but not permitted", "6.9": "UTF-8 header cannot be transferred",
    "6.10": "duplicate of 6.8 (deprecated)",
    "7.0": "other security or policy status", "7.1": "delivery not authorized",
    "7.2": "mailing list expansion prohibited", "7.3": "security conversion not possible",
    "7.4": "security features not supported", "7.5": "cryptographic failure",
    "7.6": "cryptographic algorithm not supported", "7.7": "message integrity failure",
    "7.8": "authentication credentials invalid", "7.9": "authentication mechanism too weak",
    "7.10": "encryption needed", "7.11": "encryption required for mechanism",
    "7.12": "password transition needed", "7.13": "user account disabled",
    "7.14": "trust relationship required", "7.15": "priority level too low",
    "7.16": "message too big for priority", "7.17": "mailbox owner has changed",
    "7.18": "domain owner has changed", "7.19": "RRVS test cannot be completed",
    "7.20": "no passing DKIM signature", "7.21": "no acceptable DKIM signature",
    "7.22": "no author-matched DKIM signature", "7.23": "SPF validation failed",
    "7.24": "SPF validation error", "7.25": "reverse DNS validation failed",
    "7.26": "multiple authentication checks failed", "7.27": "sender address has null MX",
    "7.28": "mail flood detected", "7.29": "ARC validation failure",
    "7.30": "REQUIRETLS support required",
}
SUCCESS_FORMS = ["2.0.0", "2.1.0", "2.1.5", "2.3.6", "2.6.0", "2.7.0"]


def winner(kb: KnowledgeBase, rule_id: str) -> Rule:
    return kb.by_id(rule_id)


def assert_explained(kb: KnowledgeBase, rule_id: str) -> Rule:
    assert rule_id != kb.fallback.id
    rule = winner(kb, rule_id)
    for text in (rule.title, rule.cause, rule.remedy):
        assert text.en.strip() and text.de.strip()
        assert text.en != text.de
    return rule


@pytest.mark.parametrize("code", REQUIRED_CODES)
def test_every_required_code_has_a_stage_free_rule(kb: KnowledgeBase, code: int) -> None:
    finding = classify_text(kb, None, str(code))
    rule = assert_explained(kb, finding.rule)
    assert code in rule.codes, f"{code} fell through to {rule.id}"
    assert not rule.stages


def test_every_code_a_rule_names_also_has_a_stage_free_rule(kb: KnowledgeBase) -> None:
    # A stage-only rule would never match in `explain` without --stage.
    named = {code for rule in kb.rules if rule.pattern is None for code in rule.codes}
    missing = []
    for code in sorted(named):
        rule = winner(kb, classify_text(kb, None, str(code)).rule)
        if code not in rule.codes or rule.stages:
            missing.append(code)
    assert missing == []


@pytest.mark.parametrize("klass", ["4", "5"])
@pytest.mark.parametrize("subject_detail", sorted(REGISTRY))
def test_every_registered_enhanced_code_has_an_enhanced_rule(
        kb: KnowledgeBase, klass: str, subject_detail: str) -> None:
    code = f"{klass}.{subject_detail}"
    # No basic code and no text: only enhanced-code rules can match.
    finding = classify_reply(kb, None, Reply(code=None, enhanced=code, lines=()))
    rule = assert_explained(kb, finding.rule)
    matching = [p for p in rule.enhanced if p.matches(code)]
    assert matching, f"{code} classified by {rule.id}, which names no enhanced code for it"
    detail = int(subject_detail.split(".")[1])
    if detail != 0:
        # Registered details are named explicitly; X.S.0 ("other") falls to the subject rule.
        assert any(p.detail == detail for p in matching), f"{code} only matched {rule.id}"


@pytest.mark.parametrize("code", SUCCESS_FORMS)
def test_success_forms_are_success(kb: KnowledgeBase, code: str) -> None:
    finding = classify_reply(kb, None, Reply(code=None, enhanced=code, lines=()))
    assert_explained(kb, finding.rule)
    assert finding.category is Category.SUCCESS


def test_success_codes_are_never_read_as_failures(kb: KnowledgeBase) -> None:
    # '*.1.1' stands for classes 4 and 5 only: "250 2.1.1" is not an unknown user.
    assert classify_text(kb, Stage.RCPT, "250 2.1.1").category is Category.SUCCESS


@pytest.mark.parametrize(("stage", "reply", "category", "retryable"), [
    # RFC 5321 4.5.3.1.10: 552 at RCPT is a full mailbox, to be treated as temporary.
    (Stage.RCPT, "552", Category.MAILBOX_FULL, True),
    (Stage.DATA, "552", Category.MESSAGE_TOO_LARGE, False),
    (Stage.MAIL, "552", Category.MESSAGE_TOO_LARGE, False),
    (Stage.MAIL, "550", Category.SENDER_REJECTED, False),
    (Stage.RCPT, "550", Category.USER_UNKNOWN, False),
    (Stage.EHLO, "550", Category.CLIENT_IDENTITY_REJECTED, False),
    (Stage.MAIL, "553", Category.SENDER_REJECTED, False),
    (Stage.RCPT, "553", Category.SYNTAX_ERROR, False),
    (Stage.CONNECT, "554", Category.BLOCKLISTED, False),
    (Stage.RCPT, "554", Category.POLICY_REJECTED, False),
    (Stage.DATA, "554", Category.CONTENT_REJECTED, False),
    (Stage.CONNECT, "421", Category.SERVER_UNAVAILABLE, True),
    (Stage.DATA, "421", Category.SERVER_UNAVAILABLE, True),
    (Stage.RCPT, "452", Category.TOO_MANY_RECIPIENTS, True),
    (Stage.MAIL, "452", Category.SERVER_UNAVAILABLE, True),
    (Stage.MAIL, "503", Category.AUTH_REQUIRED, False),
    (Stage.DATA, "503", Category.BAD_SEQUENCE, False),
    (Stage.RCPT, "503 5.5.1", Category.BAD_SEQUENCE, False),
    (Stage.MAIL, "530", Category.AUTH_REQUIRED, False),
    (Stage.MAIL, "530 5.7.0", Category.AUTH_REQUIRED, False),
    (Stage.AUTH, "530", Category.TLS_REQUIRED, False),
    (Stage.STARTTLS, "454", Category.TLS_UNAVAILABLE, True),
    (Stage.AUTH, "454", Category.AUTH_FAILED, True),
    (Stage.STARTTLS, "502", Category.TLS_UNAVAILABLE, False),
    (Stage.AUTH, "502", Category.AUTH_METHOD_REJECTED, False),
    (Stage.AUTH, "504", Category.AUTH_METHOD_REJECTED, False),
    (Stage.AUTH, "334", Category.INTERMEDIATE, False),
    (Stage.AUTH, "235", Category.SUCCESS, False),
    (Stage.CONNECT, "220", Category.SUCCESS, False),
    (Stage.STARTTLS, "220 2.0.0", Category.SUCCESS, False),
    (Stage.RCPT, "221", Category.SERVER_UNAVAILABLE, False),
    (Stage.QUIT, "221", Category.SUCCESS, False),
    (Stage.RCPT, "450", Category.SERVER_UNAVAILABLE, True),
    (Stage.MAIL, "450", Category.SENDER_REJECTED, True),
    # Enhanced codes outrank the basic code, and some change meaning with the stage too.
    (Stage.DATA, "552 5.2.2", Category.MAILBOX_FULL, True),
    (Stage.RCPT, "552 5.3.4", Category.MESSAGE_TOO_LARGE, False),
    (Stage.CONNECT, "554 5.7.1", Category.BLOCKLISTED, False),
    (Stage.EHLO, "550 5.7.1", Category.CLIENT_IDENTITY_REJECTED, False),
    (Stage.MAIL, "550 5.7.1", Category.SENDER_REJECTED, False),
    (Stage.RCPT, "550 5.7.1", Category.POLICY_REJECTED, False),
    (Stage.DATA, "550 5.7.1", Category.CONTENT_REJECTED, False),
    (Stage.AUTH, "535 5.7.13", Category.AUTH_FAILED, False),
    (Stage.RCPT, "550 5.7.13", Category.MAILBOX_INACTIVE, False),
    (Stage.RCPT, "450 4.1.1", Category.SERVER_UNAVAILABLE, True),
    (Stage.RCPT, "550 5.1.1", Category.USER_UNKNOWN, False),
    (Stage.RCPT, "550 5.4.1", Category.USER_UNKNOWN, False),
    (Stage.DATA, "451 4.4.1", Category.SERVER_UNAVAILABLE, True),
    # Details that only repeat the basic code leave the decision to it.
    (None, "500 5.5.1", Category.SYNTAX_ERROR, False),
    (None, "502 5.5.1", Category.NOT_IMPLEMENTED, False),
    (Stage.MAIL, "555 5.5.4", Category.NOT_IMPLEMENTED, False),
    (Stage.MAIL, "501 5.5.4", Category.SYNTAX_ERROR, False),
    (None, "500 5.3.3", Category.SYNTAX_ERROR, False),
    (Stage.AUTH, "504 5.3.3", Category.AUTH_METHOD_REJECTED, False),
    # RFC 4954: a password transition needs another login first, not a plain retry.
    (Stage.AUTH, "432 4.7.12", Category.AUTH_METHOD_REJECTED, False),
    (Stage.AUTH, "432", Category.AUTH_METHOD_REJECTED, False),
    # A policy subject (5.7.x) with a detail we do not know is not an unknown mailbox.
    (Stage.RCPT, "550 5.7.999", Category.POLICY_REJECTED, False),
    # "Other" enhanced codes say less than the basic code.
    (Stage.RCPT, "550 5.1.0", Category.USER_UNKNOWN, False),
    (Stage.AUTH, "535 5.7.0", Category.AUTH_FAILED, False),
    (None, "421 4.7.0", Category.SERVER_UNAVAILABLE, True),
    (Stage.RCPT, "556 5.1.10", Category.DOMAIN_NOT_FOUND, False),
    (Stage.MAIL, "550 5.7.27", Category.SENDER_REJECTED, False),
    # Unknown codes keep the meaning of their class.
    (None, "471", Category.UNCLASSIFIED, True),
    (None, "599", Category.UNCLASSIFIED, False),
])
def test_meaning_depends_on_stage_and_codes(kb: KnowledgeBase, stage: Stage | None, reply: str,
                                            category: Category, retryable: bool) -> None:
    finding = classify_text(kb, stage, reply)
    assert_explained(kb, finding.rule)
    assert (finding.category, finding.retryable) == (category, retryable), finding.rule


def test_stage_variants_are_distinct_rules(kb: KnowledgeBase) -> None:
    connect = classify_text(kb, Stage.CONNECT, "220").rule
    starttls = classify_text(kb, Stage.STARTTLS, "220").rule
    assert connect != starttls
    assert {classify_text(kb, None, "552").rule, classify_text(kb, Stage.RCPT, "552").rule,
            classify_text(kb, Stage.DATA, "552").rule} == {
        "code.552", "code.552.rcpt", "code.552.mail-data"}


@pytest.mark.parametrize("kind", list(FailureKind))
def test_every_failure_kind_has_a_stage_free_rule(kb: KnowledgeBase, kind: FailureKind) -> None:
    finding = classify_failure(kb, None, Failure(kind, "detail"))
    rule = assert_explained(kb, finding.rule)
    assert kind in rule.failures and not rule.stages


@pytest.mark.parametrize(("stage", "kind", "category", "retryable"), [
    (Stage.CONNECT, FailureKind.REFUSED, Category.CONNECTION_FAILED, False),
    (Stage.CONNECT, FailureKind.TIMEOUT, Category.CONNECTION_FAILED, True),
    (Stage.RCPT, FailureKind.TIMEOUT, Category.SERVER_UNAVAILABLE, True),
    (Stage.DATA, FailureKind.TIMEOUT, Category.SERVER_UNAVAILABLE, True),
    (Stage.CONNECT, FailureKind.CLOSED, Category.REPUTATION_BLOCK, False),
    (Stage.RCPT, FailureKind.CLOSED, Category.CONNECTION_FAILED, True),
    (Stage.QUIT, FailureKind.CLOSED, Category.SUCCESS, False),
    (Stage.STARTTLS, FailureKind.TLS_HANDSHAKE, Category.TLS_FAILED, False),
    (Stage.CONNECT, FailureKind.TLS_HANDSHAKE, Category.TLS_FAILED, False),
    (Stage.STARTTLS, FailureKind.NOT_OFFERED, Category.TLS_UNAVAILABLE, False),
    (Stage.AUTH, FailureKind.NOT_OFFERED, Category.AUTH_METHOD_REJECTED, False),
    (Stage.AUTH, FailureKind.WITHHELD, Category.CREDENTIALS_WITHHELD, False),
    (Stage.DNS, FailureKind.NULL_MX, Category.DOMAIN_NOT_FOUND, False),
    (Stage.DNS, FailureKind.DNS_NXDOMAIN, Category.DOMAIN_NOT_FOUND, False),
    (Stage.DNS, FailureKind.DNS_SERVFAIL, Category.DNS_FAILED, True),
    (Stage.DNS, FailureKind.DNS_TIMEOUT, Category.DNS_FAILED, True),
    (Stage.DNS, FailureKind.MX_IS_IP, Category.ROUTING_ERROR, False),
    (Stage.DNS, FailureKind.MX_IS_CNAME, Category.ROUTING_ERROR, False),
    (Stage.DNS, FailureKind.DNS_NO_ADDRESS, Category.ROUTING_ERROR, False),
    (Stage.RCPT, FailureKind.LOCAL, Category.SYNTAX_ERROR, False),
])
def test_failures_by_stage(kb: KnowledgeBase, stage: Stage, kind: FailureKind,
                           category: Category, retryable: bool) -> None:
    finding = classify_failure(kb, stage, Failure(kind, "detail"))
    assert_explained(kb, finding.rule)
    assert (finding.category, finding.retryable) == (category, retryable), finding.rule


def test_failure_stage_variants_differ_from_the_general_rule(kb: KnowledgeBase) -> None:
    def rule_at(stage: Stage | None, kind: FailureKind) -> str:
        return classify_failure(kb, stage, Failure(kind, "detail")).rule

    for kind, stages in [(FailureKind.TIMEOUT, [Stage.CONNECT, Stage.RCPT, Stage.DATA]),
                         (FailureKind.TLS_HANDSHAKE, [Stage.CONNECT, Stage.STARTTLS]),
                         (FailureKind.CLOSED, [Stage.CONNECT, Stage.MAIL, Stage.QUIT])]:
        ids = [rule_at(None, kind)] + [rule_at(stage, kind) for stage in stages]
        assert len(set(ids)) == len(ids), ids


# Rules that carry a correction of a seed document (docs/knowledge.md, "Seed corrections").
CORRECTED = ["code.101", "code.250", "code.421", "code.450", "code.451", "code.452", "code.455",
             "code.504", "code.550", "code.551", "code.552", "code.553", "code.554", "code.555",
             "enh.x.3.2"]


@pytest.mark.parametrize("rule_id", CORRECTED)
def test_seed_corrections_are_kept(kb: KnowledgeBase, rule_id: str) -> None:
    rule = kb.by_id(rule_id)
    assert rule.correction is not None
    assert rule.correction.en.strip() and rule.correction.de.strip()
    assert any(ref.startswith("seed:") for ref in rule.references)


def test_ovh_sending_limit_is_in_the_555_remedy(kb: KnowledgeBase) -> None:
    remedy = kb.by_id("code.555").remedy
    for text in (remedy.en, remedy.de):
        assert "OVH" in text and "200" in text and "300" in text


# --- the loader rejects broken files and says where --------------------------------------------

GOOD_FALLBACK = '''
[[rule]]
id = "fallback.unclassified"
fallback = true
category = "unclassified"
title.en = "t"
title.de = "t"
cause.en = "c"
cause.de = "c"
remedy.en = "r"
remedy.de = "r"
references = ["RFC 5321 4.2.1"]
'''

RULE = '''
[[rule]]
id = "{id}"
category = "{category}"
codes = [550]
enhanced = ["{enhanced}"]
title.en = "t"
title.de = "t"
cause.en = "c"
cause.de = "c"
remedy.en = "r"
remedy.de = "r"
references = ["RFC 5321 4.2.3"]
{examples}
'''
EXAMPLE = 'examples = [{ reply = "550 5.1.1 x" }]'


def rule_text(*, rule_id: str = "code.x550", category: str = "user_unknown",
              enhanced: str = "*.1.1", examples: str = EXAMPLE) -> str:
    return RULE.format(id=rule_id, category=category, enhanced=enhanced, examples=examples)


def write(directory: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (directory / name).write_text(text, encoding="utf-8")
    return directory


def test_loader_accepts_the_good_form(tmp_path: Path) -> None:
    kb = knowledge.load(write(tmp_path, {"a.toml": GOOD_FALLBACK, "b.toml": rule_text()}))
    assert [r.id for r in kb.rules] == ["code.x550"]


@pytest.mark.parametrize(("text", "says"), [
    (rule_text(category="mailbox_gone"), "unknown category 'mailbox_gone'"),
    (rule_text(enhanced="5.1.1.1"), "enhanced code '5.1.1.1'"),
    (rule_text(enhanced="x.1.1"), "enhanced code 'x.1.1'"),
    (rule_text(examples=""), "needs at least one example"),
    (rule_text(examples='examples = [{ stage = "helo", reply = "550" }]'), "unknown stage"),
    (rule_text().replace('cause.de = "c"\n', ""), "'cause' must have exactly the languages"),
    (rule_text().replace("codes = [550]", "codes = [650]"), "'codes' must be a list"),
    (rule_text().replace("codes = [550]", 'codes = [550]\ntier = "loud"'),
     "unknown tier 'loud': use one of success-echo, code-echo,"),
    (rule_text().replace("codes = [550]", "codes = [550]\ntier = 60"), "unknown tier 60"),
    (rule_text().replace("codes = [550]", "codes = [550]\npriority = 60"),
     "'priority' is now 'tier', a name: one of success-echo,"),
    (rule_text().replace('"RFC 5321 4.2.3"', '"seed:000_f9d6b197398d87d4.txt"'),
     "unknown seed in reference 'seed:000_f9d6b197398d87d4.txt': use one of "
     "seed:ovh-mail-problems,"),
    (rule_text().replace("enhanced = [", "pattern = \"\"\"user\n| unknown\"\"\"\nenhanced = ["),
     "a 'pattern' over several lines must start with the verbose flag '(?x)'"),
])
def test_loader_names_file_and_rule(tmp_path: Path, text: str, says: str) -> None:
    write(tmp_path, {"a.toml": GOOD_FALLBACK, "broken.toml": text})
    with pytest.raises(KnowledgeError) as info:
        knowledge.load(tmp_path)
    message = str(info.value)
    assert message.startswith("broken.toml: rule 'code.x550': "), message
    assert says in message


def test_loader_names_file_of_invalid_toml(tmp_path: Path) -> None:
    write(tmp_path, {"a.toml": GOOD_FALLBACK, "broken.toml": "[[rule]]\nid = \"code.x\n"})
    with pytest.raises(KnowledgeError, match=r"^broken\.toml: not valid TOML"):
        knowledge.load(tmp_path)


def test_loader_names_both_files_of_a_duplicate_id(tmp_path: Path) -> None:
    write(tmp_path, {"a.toml": GOOD_FALLBACK, "b.toml": rule_text(), "c.toml": rule_text()})
    with pytest.raises(KnowledgeError,
                       match=r"^c\.toml: rule 'code\.x550': id already used in b\.toml"):
        knowledge.load(tmp_path)
