"""Where the knowledge base is, and the error for when it is missing or broken.

Kept apart from load.py (parsing, validation, the cache) so that a command can check the
location up front, before any traffic, without paying for the rest at start-up.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from smtpprobe.errors import KnowledgeError

ENV_VAR = "SMTPPROBE_KNOWLEDGE"


def find_knowledge_dir(explicit: str | os.PathLike[str] | None = None,
                       *, environ: Mapping[str, str] | None = None) -> Path:
    """Where the knowledge base lives: --knowledge, $SMTPPROBE_KNOWLEDGE, the copy packaged in
    the wheel (`smtpprobe/_knowledge`), then `<repo>/knowledge` (editable installs)."""
    env = os.environ if environ is None else environ
    candidates: list[Path] = []
    if explicit is not None:
        candidates.append(Path(explicit))
    elif env.get(ENV_VAR):
        candidates.append(Path(env[ENV_VAR]))
    else:
        here = Path(__file__).resolve().parents[2]  # the smtpprobe package
        candidates += [here / "_knowledge", here.parent / "knowledge"]
        for path in candidates:
            if path.is_dir():
                return path
        raise KnowledgeError(
            f"no knowledge base found (looked in {', '.join(str(c) for c in candidates)})"
        )
    path = candidates[0]
    if not path.is_dir():
        raise KnowledgeError(f"knowledge directory {path} does not exist")
    return path
