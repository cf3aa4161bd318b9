"""The knowledge base ships inside the wheel, and both install forms find it."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

from smtpprobe.core.knowledge import load as knowledge

ROOT = Path(__file__).resolve().parent.parent


def test_editable_install_uses_the_source_tree() -> None:
    found = knowledge.find_knowledge_dir(environ={})
    assert found == ROOT / "knowledge"


def test_wheel_contains_the_knowledge_and_uses_it(tmp_path: Path) -> None:
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation",
         "--quiet", "--wheel-dir", str(tmp_path / "dist")],
        capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    wheel = next((tmp_path / "dist").glob("smtpprobe-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        archive.extractall(tmp_path / "site")
    # The same files at the same places: relative paths, subfolders included (codes/ ...).
    prefix = "smtpprobe/_knowledge/"
    shipped = {n[len(prefix):] for n in names if n.startswith(prefix) and not n.endswith("/")}
    source = {p.relative_to(ROOT / "knowledge").as_posix()
              for p in (ROOT / "knowledge").rglob("*") if p.is_file()}
    assert shipped == source
    assert {name.split("/")[0] for name in source} == {"codes", "patterns", "probe", "domain"}
    assert "smtpprobe/py.typed" in names
    # Run from the unpacked wheel, away from the source tree: it must find _knowledge.
    env = {k: v for k, v in os.environ.items() if k != "SMTPPROBE_KNOWLEDGE"}
    env["PYTHONPATH"] = str(tmp_path / "site")
    probe = subprocess.run(
        [sys.executable, "-c",
         "import smtpprobe.core.knowledge.load as k, smtpprobe; print(smtpprobe.__file__); "
         "print(k.find_knowledge_dir()); print(len(k.load().rules))"],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=60)
    assert probe.returncode == 0, probe.stderr
    module_file, location, count = probe.stdout.split("\n")[:3]
    assert module_file.startswith(str(tmp_path / "site"))
    assert location == str(tmp_path / "site" / "smtpprobe" / "_knowledge")
    assert int(count) == len(knowledge.load().rules)
    explained = subprocess.run(
        [sys.executable, "-m", "smtpprobe", "explain", "552 5.2.2 Mailbox full", "--stage",
         "rcpt", "--json"], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=60)
    assert explained.returncode == 0, explained.stderr
    assert '"mailbox_full"' in explained.stdout


def test_knowledge_override_by_environment(tmp_path: Path) -> None:
    assert knowledge.find_knowledge_dir(environ={"SMTPPROBE_KNOWLEDGE": str(tmp_path)}) == tmp_path
