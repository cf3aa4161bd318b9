from __future__ import annotations

import pytest

from smtpprobe import knowledge
from smtpprobe.knowledge import KnowledgeBase


@pytest.fixture(scope="session")
def kb() -> KnowledgeBase:
    return knowledge.load()
