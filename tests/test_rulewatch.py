"""Which edits the daemon reacts to (the live test is in test_reload.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from monitor.config import load_config
from monitor.rulewatch import changes, is_relevant, watched_dirs


def _setup(tmp_path: Path) -> Path:
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "pack.yaml").write_text("rules: []\n")
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "news.yaml").write_text(
        "feeds:\n  - {name: a, url: 'http://127.0.0.1:9/a.xml'}\n"
    )
    (tmp_path / "other").mkdir()
    cfg = tmp_path / "monitor.yaml"
    cfg.write_text("rules: [rules/*.yaml]\nfeed_files: [lists/*.yaml]\nfeeds: []\n")
    return cfg


def test_rule_files_feed_files_and_the_config_are_watched(tmp_path: Path) -> None:
    cfg = load_config(_setup(tmp_path))
    dirs = set(watched_dirs(cfg))
    assert {tmp_path / "rules", tmp_path / "lists", tmp_path} <= {d.resolve() for d in dirs}
    assert is_relevant(cfg, tmp_path / "rules" / "pack.yaml")
    assert is_relevant(cfg, tmp_path / "rules" / "new.yaml")  # a new file matching a glob
    assert is_relevant(cfg, tmp_path / "lists" / "news.yaml")
    assert is_relevant(cfg, tmp_path / "monitor.yaml")
    assert not is_relevant(cfg, tmp_path / "lists" / "notes.txt")
    assert not is_relevant(cfg, tmp_path / "other" / "x.yaml")


async def test_an_edited_feed_list_is_reported(tmp_path: Path) -> None:
    cfg = load_config(_setup(tmp_path))
    stop = asyncio.Event()
    feed_list = tmp_path / "lists" / "news.yaml"

    async def edit() -> None:
        # Repeat until seen: the watcher may start after the first write.
        for i in range(100):
            feed_list.write_text(f"feeds:\n  - {{name: a, url: 'http://127.0.0.1:9/a{i}.xml'}}\n")
            await asyncio.sleep(0.3)

    editor = asyncio.ensure_future(edit())
    try:
        async with asyncio.timeout(20):
            async for paths in changes(cfg, stop):
                assert {p.resolve() for p in paths} == {feed_list.resolve()}
                break
    finally:
        stop.set()
        editor.cancel()
