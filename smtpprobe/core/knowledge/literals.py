"""The literal prefilter: which words any match of a pattern must contain.

A rule's pattern runs only on a text that holds those words (model.Screen answers that for all
rules in one pass), which spares most regex searches on a typical reply.
"""

from __future__ import annotations

import re
import re._constants as _sre  # type: ignore[import-not-found]
import re._parser as _sre_parse  # type: ignore[import-not-found]


def required_literals(pattern: str) -> tuple[tuple[frozenset[str], ...], ...] | None:
    """What any match of `pattern` (case-insensitive) must contain, as alternatives of groups:
    a match satisfies at least one alternative, i.e. contains a string of each of its groups.

    Walks the parsed regular expression: each run of literal characters in a sequence is
    required; so is everything a group, or a repeat of at least one, requires; an alternation
    inside a sequence contributes one group made of each branch's strongest group. A pattern
    that is an alternation at the top gives one alternative per branch. None when nothing is
    certain (then the regex always runs). A verbose pattern ("(?x)") parses to the same tree
    as its one-line form, so it gives the same answer.
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
