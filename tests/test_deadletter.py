"""Poison entries: an entry that keeps failing is moved to the dead-letter
stream after cluster.max_deliveries attempts, with its reason, instead of
being retried forever; `feed-monitor dead-letters --requeue` brings it back."""

from __future__ import annotations

import asyncio
import contextlib
import html
import inspect
import io
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from monitor import keys
from monitor.cli import main
from monitor.config import Config
from monitor.daemon import App, open_app
from monitor.entries import Entry, Feed, seen_keys
from monitor.entryworker import EntryWorker
from monitor.rules import load_rules
from monitor.workitem import WorkItem
from tests.conftest import ROOT, make_config
from tests.servers import NewsSite, page

SEED = (ROOT / "seeds" / "000_79a58b876351234c.txt").read_text(encoding="utf-8")
PARAS = [html.escape(p) for p in SEED.split("\n\n")[1:] if p.strip()]
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def one_feed(tmp_path: Path, redis_url: str, base: str) -> tuple[Feed, Config]:
    feed = Feed("news", f"{base}/feed.xml", 60)
    cfg = make_config(tmp_path, [{"name": "news", "url": feed.url}], redis={"url": redis_url})
    return feed, cfg


def story(news: NewsSite, base: str, feed: Feed, i: int) -> tuple[list[str], dict[str, str]]:
    title = f"Kina og Russland: øvelse {i}"
    news.put_page(f"/a/{i}.html", page(title, PARAS, lang="nb"))
    e = Entry("news", f"guid:{i}", title, f"{base}/a/{i}.html", "", "", NOW, "nb")
    return seen_keys(e), WorkItem(feed, e).to_fields()


async def until(check: Callable[[], Any], what: str, timeout_s: float = 30) -> None:
    """Wait for ``check()`` (a bool, or an awaitable of one) to be true."""
    for _ in range(int(timeout_s * 10)):  # bounded
        ok = check()
        if inspect.isawaitable(ok):
            ok = await ok
        if ok:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@asynccontextmanager
async def working(app: App, worker: EntryWorker) -> AsyncIterator[None]:
    stop = asyncio.Event()
    running = asyncio.ensure_future(worker.run(stop, drain_s=5))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(running, timeout=30)


async def test_an_entry_that_always_raises_is_dead_lettered_and_can_be_requeued(
    tmp_path: Path, redis_url: str, site: tuple[NewsSite, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    news, base = site
    feed, cfg = one_feed(tmp_path, redis_url, base)
    poison, good = story(news, base, feed, 0), story(news, base, feed, 1)
    async with open_app(cfg, redis_url, load_rules(cfg.rule_files())) as app:
        real = app.pipeline.process_entry
        calls: list[str] = []

        async def buggy(f: Feed, e: Entry) -> int:  # a bug that only this entry meets
            calls.append(e.link or "")
            if e.identity == "guid:0":
                raise ValueError("cannot handle this entry")
            return await real(f, e)

        monkeypatch.setattr(app.pipeline, "process_entry", buggy)
        system = app.store.client.pubsub()
        await system.subscribe(keys.SYSTEM_CHANNEL)
        worker = EntryWorker(app.store, app.pipeline, "w", max_inflight=4, claim_idle_s=1,
                             max_deliveries=2, feeds=lambda _name: None)  # fmt: skip
        async with working(app, worker):
            await app.store.enqueue("news", [poison, good], NOW)
            await until(lambda: worker.dead_lettered == 1, "the dead letter")
        # Tried exactly max_deliveries times (once, then once more when taken over).
        assert calls.count(f"{base}/a/0.html") == 2
        assert worker.processed == 1 and worker.alerts == 1  # the good entry went through
        assert await app.store.queued_entries() == 0  # out of the entry stream ...
        pending = await app.store.client.xpending(keys.SERVER.entries, keys.ENTRY_GROUP)
        assert pending["pending"] == 0
        [(_dead_id, fields)] = await app.store.dead_entries(10)  # ... and into the dead one
        assert fields["entry_id"] and fields["feed"] == "news" and fields["deliveries"] == "2"
        assert "ValueError: cannot handle this entry" in fields["reason"]
        notices = []
        for _ in range(50):
            m = await system.get_message(ignore_subscribe_messages=True, timeout=0.1)
            if m:
                notices.append(json.loads(m["data"]))
        assert [n["event"] for n in notices] == ["entry.dead_lettered"]
        assert notices[0]["entry_id"] == fields["entry_id"]
        await system.aclose()  # type: ignore[no-untyped-call]

        # The operator lists it, fixes the bug, and requeues it.
        cfg_file = tmp_path / "monitor.yaml"
        cfg_file.write_text(json.dumps({"state_dir": str(tmp_path / "state"),
                                        "redis": {"url": redis_url}, "feeds": []}))  # fmt: skip

        def cli(*args: str) -> list[str]:
            buf = io.StringIO()
            with contextlib.redirect_stdout(buf):
                assert main(["dead-letters", "--config", str(cfg_file), *args]) == 0
            return buf.getvalue().splitlines()

        listed = await asyncio.to_thread(cli, "--json")
        assert [json.loads(x)["link"] for x in listed] == [f"{base}/a/0.html"]
        assert await app.store.dead_count() == 1  # listing moves nothing
        monkeypatch.setattr(app.pipeline, "process_entry", real)
        assert (await asyncio.to_thread(cli, "--requeue"))[-1] == "1 entries requeued"
        assert await app.store.dead_count() == 0
        async with working(app, worker):
            await until(lambda: worker.processed == 2, "the requeued entry")
        assert worker.alerts == 2 and worker.dead_lettered == 1


async def test_an_entry_whose_workers_keep_dying_is_dead_lettered_unprocessed(
    tmp_path: Path, redis_url: str, site: tuple[NewsSite, str]
) -> None:
    """Daemons killed while working on it never get to raise: the count Redis
    keeps of the entry's deliveries catches it when it is taken over again."""
    news, base = site
    feed, cfg = one_feed(tmp_path, redis_url, base)
    async with open_app(cfg, redis_url, load_rules(cfg.rule_files())) as app:
        await app.store.ensure_entry_group()
        await app.store.enqueue("news", [story(news, base, feed, 7)], NOW)
        raw = aioredis.Redis.from_url(redis_url, decode_responses=True)
        # Handed to three consumers in turn, each "killed" before it acked.
        [(entry_id, _fields)] = await app.store.read_entries("dead-1", 1, block_ms=None)
        for dead in ("dead-2", "dead-3"):
            await raw.xclaim(keys.SERVER.entries, keys.ENTRY_GROUP, dead, 0, [entry_id])
        await raw.aclose()
        assert (await app.store.deliveries([entry_id]))[entry_id] == 3
        worker = EntryWorker(app.store, app.pipeline, "w", max_inflight=4, claim_idle_s=1,
                             max_deliveries=3, feeds=lambda _name: None)  # fmt: skip
        async with working(app, worker):
            await until(lambda: worker.dead_lettered == 1, "the dead letter")
        [(_dead_id, fields)] = await app.store.dead_entries(10)
        assert fields["entry_id"] == entry_id and fields["deliveries"] == "3"
        assert fields["reason"] == "its workers died or hung on it 3 times"
        assert worker.processed == 0
        assert news.hits.get("/a/7.html", 0) == 0  # never fetched: not tried a fourth time
        assert await app.store.queued_entries() == 0


async def test_a_failing_entry_below_the_limit_stays_pending(
    tmp_path: Path, redis_url: str, site: tuple[NewsSite, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    news, base = site
    feed, cfg = one_feed(tmp_path, redis_url, base)
    async with open_app(cfg, redis_url, load_rules(cfg.rule_files())) as app:

        async def broken(f: Feed, e: Entry) -> int:
            raise KeyError("bug")

        monkeypatch.setattr(app.pipeline, "process_entry", broken)
        worker = EntryWorker(app.store, app.pipeline, "w", max_inflight=4, claim_idle_s=300,
                             max_deliveries=5, feeds=lambda _name: None)  # fmt: skip
        await app.store.ensure_entry_group()  # before the worker does: XPENDING below needs it
        async with working(app, worker):
            await app.store.enqueue("news", [story(news, base, feed, 3)], NOW)

            async def pending() -> bool:
                p = await app.store.client.xpending(keys.SERVER.entries, keys.ENTRY_GROUP)
                return int(p["pending"]) == 1 and not worker.tasks

            await until(pending, "the failed attempt")
        assert worker.dead_lettered == 0 and await app.store.dead_count() == 0
        assert await app.store.queued_entries() == 1  # still there, retried later
