from __future__ import annotations

from collections.abc import Iterator

import pytest

from smtpprobe.core.knowledge import load as knowledge
from smtpprobe.core.knowledge.load import KnowledgeBase


@pytest.fixture(scope="session")
def kb() -> KnowledgeBase:
    return knowledge.load()


@pytest.fixture
def filtered_port() -> Iterator[int]:
    """A port whose SYNs are dropped, as behind a firewall (smtpprobe.lab.hostile)."""
    from smtpprobe.lab.hostile import FilteredPort

    with FilteredPort() as port:
        yield port.port


# --- a throw-away CA for lab servers (test_lab.py keeps its own cert and ssl trust) ---------


@pytest.fixture(scope="module")
def ca():  # type: ignore[no-untyped-def]
    from smtpprobe.lab.tls import LabCA

    return LabCA.create()


@pytest.fixture(scope="module")
def cert(ca):  # type: ignore[no-untyped-def]
    """A submission server's certificate, for smtp.lab.test and 127.0.0.1."""
    return ca.issue("smtp.lab.test", "127.0.0.1")


@pytest.fixture(scope="module")
def trust(ca):  # type: ignore[no-untyped-def]
    """The trust store a client needs to verify `cert`."""
    from smtpprobe.core.certs import TrustStore

    return TrustStore((ca.cert,), "lab CA")
