"""The per-user cache of the parsed knowledge base: same answers, rebuilt on any change."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from smtpprobe.core.classify import check_examples, classify_text
from smtpprobe.core.knowledge import load as knowledge
from smtpprobe.models import Stage

SOURCE = Path(__file__).resolve().parents[3] / "knowledge"


def env_for(cache: Path, kdir: Path) -> dict[str, str]:
    return {knowledge.CACHE_ENV: str(cache), knowledge.ENV_VAR: str(kdir)}


@pytest.fixture
def kdir(tmp_path: Path) -> Path:
    target = tmp_path / "kb"
    shutil.copytree(SOURCE, target)
    return target


def test_cached_knowledge_answers_like_the_parsed_one(tmp_path: Path, kdir: Path) -> None:
    env = env_for(tmp_path / "cache", kdir)
    fresh = knowledge.load(environ=env)
    entries = list((tmp_path / "cache").glob("knowledge-*.pickle"))
    assert len(entries) == 1
    assert entries[0].stat().st_mode & 0o077 == 0
    cached = knowledge.load(environ=env)
    assert cached is not fresh
    assert [r.id for r in cached.rules] == [r.id for r in fresh.rules]
    assert [(r.source, r.tier, r.priority, r.references) for r in cached.rules] == \
        [(r.source, r.tier, r.priority, r.references) for r in fresh.rules]
    assert cached.location == str(kdir)
    assert check_examples(cached) == []
    text = "550 5.7.1 Service unavailable; Client host [192.0.2.1] blocked using zen.spamhaus.org"
    assert classify_text(cached, Stage.RCPT, text) == classify_text(fresh, Stage.RCPT, text)


def test_any_edit_rebuilds(tmp_path: Path, kdir: Path) -> None:
    env = env_for(tmp_path / "cache", kdir)
    knowledge.load(environ=env)
    target = kdir / "codes" / "fallback.toml"
    text = target.read_text(encoding="utf-8")
    target.write_text(text.replace('title.en = "Reply not recognised"',
                                   'title.en = "Reply not known"'), encoding="utf-8")
    again = knowledge.load(environ=env)
    assert again.fallback.title.en == "Reply not known"
    assert len(list((tmp_path / "cache").glob("knowledge-*.pickle"))) == 1  # old one removed


def test_moving_a_file_to_another_folder_rebuilds(tmp_path: Path, kdir: Path) -> None:
    # Same bytes, another place: the key covers the relative path, so the rules' sources
    # (which messages name) are not served stale from the cache.
    env = env_for(tmp_path / "cache", kdir)
    assert knowledge.load(environ=env).fallback.source == "codes/fallback.toml"
    (kdir / "codes" / "fallback.toml").rename(kdir / "probe" / "fallback.toml")
    again = knowledge.load(environ=env)
    assert again.fallback.source == "probe/fallback.toml"
    assert len(list((tmp_path / "cache").glob("knowledge-*.pickle"))) == 1


def test_broken_or_foreign_cache_is_ignored(tmp_path: Path, kdir: Path) -> None:
    env = env_for(tmp_path / "cache", kdir)
    knowledge.load(environ=env)
    entry = next((tmp_path / "cache").glob("knowledge-*.pickle"))
    entry.write_bytes(b"not a pickle")
    assert len(knowledge.load(environ=env).rules) > 200
    entry = next((tmp_path / "cache").glob("knowledge-*.pickle"))
    os.chmod(entry, 0o666)  # writable by others: never unpickled
    assert len(knowledge.load(environ=env).rules) > 200


def test_cache_off_or_unwritable(tmp_path: Path, kdir: Path) -> None:
    off = {knowledge.CACHE_ENV: "off", knowledge.ENV_VAR: str(kdir)}
    assert len(knowledge.load(environ=off).rules) > 200
    blocker = tmp_path / "file"
    blocker.write_text("x")
    unwritable = env_for(blocker / "sub", kdir)  # a file in the way: mkdir fails
    assert len(knowledge.load(environ=unwritable).rules) > 200


def test_a_broken_file_is_still_an_error_with_a_warm_cache(tmp_path: Path, kdir: Path) -> None:
    env = env_for(tmp_path / "cache", kdir)
    knowledge.load(environ=env)
    (kdir / "broken.toml").write_text("[[rule]]\nid = 'x.y'\ncategory = 'nope'\n")
    with pytest.raises(knowledge.KnowledgeError, match="broken.toml"):
        knowledge.load(environ=env)
