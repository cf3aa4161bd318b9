from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import pytest

from smtpprobe.core.knowledge import load as knowledge
from smtpprobe.core.knowledge.load import KnowledgeBase


@pytest.fixture(scope="session")
def kb() -> KnowledgeBase:
    return knowledge.load()


def free_port() -> int:
    """A port nothing listens on (it was free a moment ago): connecting is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def filtered_port() -> Iterator[int]:
    """A port whose SYNs are dropped, as behind a firewall (smtpprobe.lab.hostile)."""
    from smtpprobe.lab.hostile import FilteredPort

    with FilteredPort() as port:
        yield port.port


@contextmanager
def lab_world_in_thread(domains: Sequence[object] | None = None) -> Iterator[object]:
    """A lab world served from a thread of its own, for tests that run the real command line
    as a subprocess (the lab needs a running event loop while the test waits)."""
    from smtpprobe.lab.world import DEMO_DOMAINS, lab_world

    ready: dict[str, object] = {}
    stop = threading.Event()

    def serve() -> None:
        async def main() -> None:
            async with lab_world(domains or DEMO_DOMAINS) as lab:  # type: ignore[arg-type]
                ready["world"] = lab
                while not stop.is_set():
                    await asyncio.sleep(0.05)

        asyncio.run(main())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        for _ in range(200):
            if "world" in ready or not thread.is_alive():
                break
            stop.wait(0.05)
        assert "world" in ready, "the lab world did not start"
        yield ready["world"]
    finally:
        stop.set()
        thread.join(timeout=10)


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
