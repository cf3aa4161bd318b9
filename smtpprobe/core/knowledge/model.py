"""What a loaded knowledge base is made of: rules, their patterns and examples, the pattern
screen, and the two tables a rule names things from: the priority tiers and the seed
documents. load.py builds these from `knowledge/**/*.toml`; classify.py reads them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from smtpprobe.models import Category, FailureKind, LocalText, Severity, Stage

LANGS = ("en", "de")

# --- priority tiers --------------------------------------------------------------------------
# A rule's `tier` is added to its score (classify.py: a text pattern 1000, an enhanced code
# 15-31, a basic code 10, a stage 5, a code class 2), so it only ever decides between rules
# with the same kind of evidence, and it never lifts a code rule over a pattern rule. This
# table is the one place that turns names into numbers; a name that is not here is an error.
# Lowest first. The comments name what each tier is for; docs/knowledge.md lists the rules.
TIERS: dict[str, int] = {
    "success-echo": -25,  # enhanced success code that says nothing the basic code did not
    "code-echo": -21,  # enhanced detail that repeats the basic code (X.5.1 beside 500/502)
    "retry-later": -20,  # pattern: "try again later", which many other refusals also say
    "maintenance": -10,  # pattern: the server is going down or being serviced
    "enhanced-subject": -7,  # '*.S' rule: a subject without a known detail, below basic codes
    "standard": 0,  # the default: code rules, failure rules, plain pattern rules
    "hint": 5,  # pattern: words that only hint at a reason ("no SMTP service here")
    "unreachable": 8,  # pattern: the next hop could not be reached
    "syntax": 10,  # pattern: a syntax complaint, beaten by anything more telling
    "mailbox-off": 15,  # pattern: mailbox switched off; loses to login and quota words
    "topic": 20,  # pattern: the usual words of a topic (unknown user, message too large)
    "local-policy": 22,  # pattern: "rejected by policy" and no more
    "topic-sharp": 25,  # pattern: a sharper phrase than `topic` or `local-policy` on its subject
    "content-format": 28,  # pattern: the message breaks RFC 5322 format
    "specific": 30,  # pattern: one precise fact (mailbox full, malware, mail loop)
    "specific-sharp": 32,  # pattern: beats `specific` and `topic` words it quotes
    "protocol-violation": 35,  # pattern: bare LF, pipelining before the greeting
    "access": 40,  # pattern: who may send (login required, host identity, rate limit)
    "relay": 41,  # pattern: relaying refused; beats `access` when a reply says both
    "strong": 42,  # pattern: a clear refusal (login failed, listed, quota per period)
    "strong-sharp": 44,  # pattern: the account or track record behind a `strong` refusal
    "named-check": 45,  # pattern: a named check failed (SPF, DKIM, TLS, sender ownership)
    "named-list": 46,  # pattern: a named blocklist or a blocked sending account
    "dynamic-ip": 48,  # pattern: the sending address is in a home or dynamic range
    "decisive": 50,  # pattern: words that settle the case (greylisted, lockout, auth method)
    "decisive-sharp": 52,  # pattern: DMARC, and a domain named on a blocklist
    "end-user-range": 55,  # pattern: Spamhaus PBL, an end-user range by policy
    "provider": 60,  # pattern: one provider's own wording, over the generic words it uses
    "provider-sharp": 61,  # pattern: a provider's wording that beats another of its own
}
DEFAULT_TIER = "standard"


# --- seed documents --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Seed:
    """A help document the knowledge base draws facts from (and corrects): its file in
    ../shared/seeds and what it is."""

    file: str
    about: str


# A rule cites a seed as "seed:<short name>"; loading rejects a name that is not here.
SEEDS: dict[str, Seed] = {
    "ovh-mail-problems": Seed("000_f9d6b197398d87d4.txt",
                              "OVHcloud guide: mail cannot be sent or received"),
    "ovh-status-codes": Seed("001_8f426e80e08b6e9d.txt",
                             "OVHcloud guide: the status codes of SMTP servers"),
    "fifteen-codes": Seed("002_10bc5c247f68a667.txt",
                          "article on fifteen frequent SMTP error codes and their fixes"),
    "client-help": Seed("003_2f7cfed5589937c1.txt",
                        "a mail program's help page on SMTP error messages"),
    "it-service-codes": Seed("004_5585359a8e266103.txt",
                             "an IT service's list of the error codes its customers ask about"),
}
SEED_PREFIX = "seed:"


# --- rules -----------------------------------------------------------------------------------


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
    actually needs. A long pattern is verbose, with its flag in the source ("(?x)")."""

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
    source: str  # file the rule came from, relative to the knowledge directory, for messages
    stages: frozenset[Stage] = frozenset()
    codes: frozenset[int] = frozenset()
    classes: frozenset[int] = frozenset()
    enhanced: tuple[EnhancedPattern, ...] = ()
    pattern: Pattern | None = None
    failures: frozenset[FailureKind] = frozenset()
    retryable: bool | None = None
    severity: Severity | None = None
    tier: str = DEFAULT_TIER
    priority: int = 0  # TIERS[tier], kept beside it for the classifier's inner loop
    correction: LocalText | None = None
    fallback: bool = False
    # Alternatives of groups of lower-case strings: every match of `pattern` contains one
    # string of each group of some alternative. A cheap substring test that spares most regex
    # searches (see literals.required_literals).
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
