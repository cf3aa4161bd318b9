"""The one rule for secrets in output: every output function of the report layer (the text
views, `json.dumps`, JUnit) takes the redactor as a required argument and passes its whole
input through `scrub` first; nothing else in the report layer calls the redactor.

The input is the report value (text and JUnit) or the JSON dict (`dumps`), so every string a
server, the DNS, a certificate or the user put into it is masked, whatever a renderer later
does with it: a field added to a report tomorrow is covered without anyone remembering it.
The interface's own words (report/words.py) are added afterwards and are not masked, so a
short password cannot blank out fixed text.

Pure and cheap to import (no rich): the JSON path uses it too.
"""

from __future__ import annotations

import dataclasses
from enum import Enum
from typing import Any, TypeVar

from smtpprobe.core.redact import Redactor
from smtpprobe.models import Reason

T = TypeVar("T")


def scrub(value: T, redactor: Redactor) -> T:
    """`value` with every secret the redactor knows masked in every string it holds (dataclass
    fields, tuples, lists, dict values; dict keys and enums are ours and stay)."""
    if not redactor:
        return value
    return _scrub(value, redactor)  # type: ignore[no-any-return]


def _scrub(value: Any, redactor: Redactor) -> Any:
    if isinstance(value, Enum):  # a StrEnum is a str, but its value is our own word
        return value
    if isinstance(value, str):
        return redactor(value)
    if isinstance(value, tuple):
        items = tuple(_scrub(item, redactor) for item in value)
        return value if all(a is b for a, b in zip(items, value, strict=True)) else items
    if isinstance(value, list):
        return [_scrub(item, redactor) for item in value]
    if isinstance(value, dict):
        return {key: _scrub(item, redactor) for key, item in value.items()}
    if isinstance(value, Reason):
        # The keys name the placeholders of a text in words.py; only the values are data.
        values = tuple((key, _scrub(item, redactor)) for key, item in value.values)
        return value if values == value.values else dataclasses.replace(value, values=values)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        changes = {}
        for field in dataclasses.fields(value):
            old = getattr(value, field.name)
            new = _scrub(old, redactor)
            if new is not old:
                changes[field.name] = new
        return dataclasses.replace(value, **changes) if changes else value
    return value
