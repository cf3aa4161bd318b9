"""The layer contracts of docs/architecture.md, checked on every test run."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "smtpprobe"


def test_import_contracts_hold() -> None:
    # import-linter reads the contracts from pyproject.toml ([tool.importlinter]).
    linter = Path(sys.executable).parent / "lint-imports"
    done = subprocess.run([str(linter), "--config", str(ROOT / "pyproject.toml"),
                           "--no-cache"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


def test_subpackages_have_empty_init_files() -> None:
    # Importing a package must cost nothing beyond the module the caller asked for: at most
    # a docstring, no statement.
    inits = [p for p in PACKAGE.rglob("__init__.py") if p.parent != PACKAGE]
    assert len(inits) >= 6
    for init in inits:
        body = ast.parse(init.read_text(encoding="utf-8")).body
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
            body = body[1:]
        assert body == [], init.relative_to(ROOT)


def test_top_level_init_imports_nothing() -> None:
    code = ("import sys; before = set(sys.modules); import smtpprobe; "
            "print(sorted(m for m in set(sys.modules) - before if m.startswith('smtpprobe')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT).stdout.strip()
    assert out == "['smtpprobe']"
