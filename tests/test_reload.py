"""Live rule and config editing against a running daemon (a real subprocess, and
in-process for what a reload keeps)."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from monitor import daemon as daemon_mod
from monitor import keys
from monitor.config import load_config
from monitor.rules import load_rules
from tests.servers import NewsSite, page, rss, stream_entries

EXE = str(Path(sys.executable).parent / "feed-monitor")

RULES_V1 = """\
concepts:
  watch:
    terms: {en: [omega]}
rules:
  - id: watch
    title: Watch
    match: {all: [watch]}
"""
RULES_V2 = RULES_V1.replace("omega", "alpha")
RULES_BROKEN = RULES_V2.replace("match: {all: [watch]}", "match: {all: [watch, nope]}")


class Daemon:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self.reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        assert self.proc.stderr is not None
        async for raw in self.proc.stderr:
            self.lines.append(raw.decode(errors="replace"))

    async def wait_for(self, fragment: str, after: int = 0) -> str:
        try:
            async with asyncio.timeout(20):
                while True:
                    for line in self.lines[after:]:
                        if fragment in line:
                            return line
                    await asyncio.sleep(0.05)
        except TimeoutError:
            pass
        raise AssertionError(f"no {fragment!r} in log:\n{''.join(self.lines[-30:])}")


def publish(news: NewsSite, base: str, n: int) -> None:
    items = [
        {"title": f"Story {i}", "link": f"{base}/s{i}.html", "guid": f"s{i}"}
        for i in range(1, n + 1)
    ]
    for it in items:
        news.put_page(it["link"].removeprefix(base), page(it["title"], ["The alpha team met."]))
    news.put_feed("/feed.xml", rss(items))


async def alert_titles(sock: Path) -> list[str]:
    return [f["alert_id"] for f in await stream_entries(f"unix://{sock}")]


async def until_processed(sock: Path) -> None:
    """Until the workers have acknowledged every queued entry (bounded: 20 s)."""
    client = aioredis.Redis.from_url(f"unix://{sock}")
    try:
        for _ in range(400):
            if await client.xlen(keys.SERVER.entries) == 0:
                return
            await asyncio.sleep(0.05)
    finally:
        await client.aclose()
    raise AssertionError("queued entries were not processed within 20 s")


async def test_edits_apply_live_and_broken_edits_keep_old_rules(
    tmp_path: Path, site: tuple[NewsSite, str]
) -> None:
    news, base = site
    rules = tmp_path / "rules"
    rules.mkdir()
    pack = rules / "pack.yaml"
    pack.write_text(RULES_V1)
    cfg = tmp_path / "monitor.yaml"
    cfg.write_text(
        "state_dir: st\nrules: [rules/*.yaml]\n"
        "http: {allow_private_addresses: true, "
        "per_host_spacing_s: 0, per_host_concurrency: 16, timeout_s: 5}\n"
        "extraction: {workers: 1}\n"
        f"feeds:\n  - {{name: f, url: '{base}/feed.xml', interval_s: 0.5}}\n"
    )
    publish(news, base, 1)
    proc = await asyncio.create_subprocess_exec(
        EXE, "run", "--config", str(cfg), stderr=asyncio.subprocess.PIPE
    )
    daemon = Daemon(proc)
    sock = tmp_path / "st" / "redis.sock"
    try:
        # New entries are queued by the poll and alerted on by the worker.
        await daemon.wait_for("feed.fetched feed=f status=200 entries=1 new=1")
        await until_processed(sock)
        assert await alert_titles(sock) == []

        mark = len(daemon.lines)
        pack.write_text(RULES_V2)
        await daemon.wait_for("rules.reloaded", after=mark)
        publish(news, base, 2)
        # Wait on lines only this story can print: a line from before may
        # still arrive after `mark` and would satisfy a looser fragment.
        await daemon.wait_for('title="Story 2"', after=mark)
        assert len(await alert_titles(sock)) == 1

        mark = len(daemon.lines)
        pack.write_text(RULES_BROKEN)
        rejected = await daemon.wait_for("rules.rejected", after=mark)
        assert f"{pack}:7:" in rejected
        assert "unknown concept 'nope'" in rejected
        await daemon.wait_for("rules.kept", after=mark)
        publish(news, base, 3)  # the old (v2) rules still run
        await daemon.wait_for('title="Story 3"', after=mark)
        assert len(await alert_titles(sock)) == 2

        mark = len(daemon.lines)
        reload = await asyncio.create_subprocess_exec(
            EXE, "reload", "--config", str(cfg), stdout=asyncio.subprocess.PIPE
        )  # sends SIGHUP to the pid in the state dir
        out, _ = await reload.communicate()
        assert reload.returncode == 0
        assert f"pid {proc.pid}" in out.decode()
        line = await daemon.wait_for("reason=SIGHUP", after=mark)
        assert "rules.kept" in line  # the file is still broken: old rules stay
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), timeout=30)
        await daemon.reader
    assert proc.returncode == 0


async def test_a_reload_names_the_settings_that_need_a_restart(
    tmp_path: Path, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Live settings reach the pipeline; restart-only ones keep their running
    values, and the log says which."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES_V1, encoding="utf-8")
    config = tmp_path / "monitor.yaml"
    base = {"state_dir": str(tmp_path / "state"), "rules": [str(rules)], "feeds": [],
            "redis": {"url": redis_url}}  # fmt: skip
    config.write_text(json.dumps({**base, "http": {"timeout_s": 20}}), encoding="utf-8")
    cfg = load_config(config)
    async with daemon_mod.open_app(cfg, redis_url, load_rules(cfg.rule_files())) as app:
        daemon = daemon_mod.Daemon(app)
        edit = {**base, "http": {"timeout_s": 5}, "max_new_entries_per_poll": 7}
        config.write_text(json.dumps(edit), encoding="utf-8")
        with caplog.at_level(logging.WARNING, logger="monitor.daemon"):
            assert await daemon.reload("test")
        assert app.pipeline.cfg.max_new_entries_per_poll == 7  # live
        assert app.cfg.http.timeout_s == app.pipeline.cfg.http.timeout_s == 20  # kept
        [warning] = [r for r in caplog.records if r.getMessage() == "config.restart_needed"]
        assert getattr(warning, "fields", {}).get("settings") == "http.timeout_s"
