"""The worker role in-process: it creates the consumer group it needs, and
creates it again when the stream is gone (a flushed or replaced Redis)."""

from __future__ import annotations

import asyncio
import html
from datetime import UTC, datetime
from pathlib import Path

import pytest

from monitor.daemon import open_app
from monitor.entries import Entry, Feed, seen_keys
from monitor.entryworker import EntryWorker
from monitor.rules import load_rules
from monitor.workitem import WorkItem
from tests.conftest import ROOT, make_config
from tests.servers import NewsSite, page

SEED = (ROOT / "seeds" / "000_79a58b876351234c.txt").read_text(encoding="utf-8")
PARAS = [html.escape(p) for p in SEED.split("\n\n")[1:] if p.strip()]
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


async def test_worker_makes_its_group_and_remakes_it_after_a_flush(
    tmp_path: Path, redis_url: str, site: tuple[NewsSite, str]
) -> None:
    news, base = site
    feed = Feed("news", f"{base}/feed.xml", 60)
    cfg = make_config(tmp_path, [{"name": "news", "url": feed.url}], redis={"url": redis_url})

    def story(i: int) -> tuple[list[str], dict[str, str]]:
        title = f"Kina og Russland: øvelse {i}"
        news.put_page(f"/a/{i}.html", page(title, PARAS, lang="nb"))
        e = Entry("news", f"guid:{i}", title, f"{base}/a/{i}.html", "", "", NOW, "nb")
        return seen_keys(e), WorkItem(feed, e).to_fields()

    async def processed(n: int) -> None:
        for _ in range(300):  # bounded: 30 s
            if worker.processed >= n:
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"{worker.processed} entries processed, expected {n}")

    async with open_app(cfg, redis_url, load_rules(cfg.rule_files())) as app:
        worker = EntryWorker(app.store, app.pipeline, "w", max_inflight=4, claim_idle_s=60,
                             feeds=lambda _name: None)  # fmt: skip
        stop = asyncio.Event()
        running = asyncio.ensure_future(worker.run(stop, drain_s=5))
        try:
            await app.store.enqueue("news", [story(0), story(1)], NOW)
            await processed(2)
            assert await app.store.queued_entries() == 0  # counted once acknowledged
            await app.store.client.flushall()  # stream and group gone
            await app.store.enqueue("news", [story(2), story(3)], NOW)
            await processed(4)
        finally:
            stop.set()
            await asyncio.wait_for(running, timeout=30)
        assert worker.alerts == 4
        assert await app.store.queued_entries() == 0


async def test_a_finished_entry_is_acknowledged_while_the_others_take_long(
    tmp_path: Path, redis_url: str, site: tuple[NewsSite, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Acks ride on the next read, but do not wait for it behind long work:
    three entries hang (as a long extraction would), one is done at once."""
    _news, base = site
    feed = Feed("news", f"{base}/feed.xml", 60)
    cfg = make_config(tmp_path, [{"name": "news", "url": feed.url}], redis={"url": redis_url})
    release = asyncio.Event()

    async with open_app(cfg, redis_url, load_rules(cfg.rule_files())) as app:

        async def process_entry(_feed: Feed, entry: Entry) -> int:
            if entry.identity != "guid:quick":
                await asyncio.wait_for(release.wait(), timeout=20)
            return 0

        monkeypatch.setattr(app.pipeline, "process_entry", process_entry)
        worker = EntryWorker(app.store, app.pipeline, "w", max_inflight=4, claim_idle_s=60,
                             feeds=lambda _name: None)  # fmt: skip
        names = ["slow1", "slow2", "quick", "slow3"]
        items = []
        for name in names:
            e = Entry("news", f"guid:{name}", name, f"{base}/a/{name}.html", "", "", NOW, "nb")
            items.append((seen_keys(e), WorkItem(feed, e).to_fields()))
        await app.store.enqueue("news", items, NOW)
        stop = asyncio.Event()
        running = asyncio.ensure_future(worker.run(stop, drain_s=5))
        try:
            for _ in range(50):  # bounded: 5 s; the ack is sent before the worker waits
                if await app.store.queued_entries() == 3:
                    break
                await asyncio.sleep(0.1)
            assert await app.store.queued_entries() == 3
            assert (worker.processed, worker.inflight) == (1, 3)
        finally:
            release.set()
            stop.set()
            await asyncio.wait_for(running, timeout=30)
        assert worker.processed == 4
        assert await app.store.queued_entries() == 0
