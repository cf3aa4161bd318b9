"""The per-user cache of the parsed and validated knowledge base (a pickle per content hash).

Parsing and validating some 300 rules costs more than the rest of a command's start-up. The
key hashes every file's path below the knowledge directory ("patterns/relay.toml") and bytes,
the tier and seed tables the rules were resolved against, and smtpprobe's and Python's
versions: any edit, move or rename gives a new key, and a missing, foreign or broken entry is
simply rebuilt.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import sys
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

from smtpprobe.core.knowledge.model import SEEDS, TIERS, KnowledgeBase

CACHE_ENV = "SMTPPROBE_CACHE"  # a directory for the parsed knowledge base, or "off"
CACHE_FORMAT = "2"  # 2: files in subfolders, named tiers, seed short names


def cache_file(env: Mapping[str, str], blobs: Sequence[tuple[str, bytes]]) -> Path | None:
    """Where the entry for these files (relative POSIX path, bytes) lives; None when off."""
    setting = env.get(CACHE_ENV, "")
    if setting.lower() == "off":
        return None
    if setting:
        folder = Path(setting)
    else:
        base = env.get("XDG_CACHE_HOME") or (str(Path(env["HOME"]) / ".cache")
                                             if env.get("HOME") else "")
        if not base:
            return None
        folder = Path(base) / "smtpprobe"
    from smtpprobe import __version__

    digest = hashlib.sha256(
        f"{CACHE_FORMAT}|{__version__}|{sys.version_info[:3]}".encode())
    digest.update(repr(sorted(TIERS.items())).encode())
    digest.update(repr(sorted((name, seed.file) for name, seed in SEEDS.items())).encode())
    for name, data in blobs:
        digest.update(f"\0{name}\0{len(data)}\0".encode())
        digest.update(data)
    return folder / f"knowledge-{digest.hexdigest()[:32]}.pickle"


def read_cache(path: Path) -> KnowledgeBase | None:
    try:
        info = path.stat()
        # Unpickling runs code: only a file of our own, that nobody else may write, is read.
        if info.st_uid != os.getuid() or info.st_mode & 0o022:
            return None
        with path.open("rb") as handle:
            kb = pickle.load(handle)
    except Exception:  # noqa: BLE001 - any broken or stale entry just means a rebuild
        return None
    return kb if isinstance(kb, KnowledgeBase) else None


def write_cache(path: Path, kb: KnowledgeBase) -> None:
    import tempfile  # only on a cache miss: not worth its import on every start

    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("wb", dir=path.parent, prefix=".knowledge-",
                                         delete=False) as handle:
            pickle.dump(replace(kb, candidates={}), handle, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(handle.name, path)
        for old in path.parent.glob("knowledge-*.pickle"):
            if old != path:
                old.unlink(missing_ok=True)
    except OSError:
        pass  # no cache today (read-only home, full disk): the next run parses again
