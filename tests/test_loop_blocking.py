"""Nothing CPU-bound runs on the event loop: the daemon's poll and worker
paths run under a guard (tests/loopguard.py) that times every callback the
loop runs, and the test fails on any that used more CPU than the threshold."""

from __future__ import annotations

import asyncio
import html
import time
from pathlib import Path
from typing import Any

from monitor.daemon import open_app
from monitor.entries import Feed
from monitor.entryworker import EntryWorker
from monitor.rules import load_rules
from monitor.store import Store
from tests.conftest import ROOT, make_config
from tests.loopguard import LoopGuard
from tests.servers import NewsSite, page, rss

# CPU seconds. The inputs below would use more than this on the loop if
# parsed or matched there (a 900 KB page: 0.5 s to match), and no callback of
# ours comes near it. One page is that large: its matching thread takes turns
# with the loop on the GIL, which costs the loop time but not CPU.
THRESHOLD_S = 0.15
SEED = (ROOT / "seeds" / "000_79a58b876351234c.txt").read_text(encoding="utf-8")
PARAS = [html.escape(p) for p in SEED.split("\n\n")[1:] if p.strip()]


def spin(seconds: float) -> None:
    """CPU-bound work, as a callback hogging the loop would do."""
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


async def test_the_guard_catches_a_blocked_loop() -> None:
    with LoopGuard(THRESHOLD_S) as guard:
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        loop.call_soon(spin, THRESHOLD_S * 1.5)  # over the CPU threshold
        loop.call_soon(time.sleep, guard.wall_s * 1.2)  # no CPU, but the loop stands still
        loop.call_soon(time.sleep, THRESHOLD_S / 2)  # short: let through
        loop.call_soon(spin, THRESHOLD_S / 2)  # cheap enough: let through
        loop.call_later(0.01, done.set_result, None)
        await done
    assert len(guard.slow) == 2
    assert "spin" in guard.slow[0] and "sleep" in guard.slow[1]


async def until_drained(store: Store, within_s: float = 60) -> None:
    for _ in range(int(within_s * 10)):
        if await store.queued_entries() == 0:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"entries not processed within {within_s} s")


async def test_polling_and_processing_never_block_the_loop(
    tmp_path: Path, redis_url: str, site: tuple[NewsSite, str]
) -> None:
    news, base = site
    items = []
    for i in range(400):
        title = f"Kina og Russland: fellesøvelse nummer {i}"
        news.put_page(f"/a/{i}.html", page(title, PARAS * (400 if i == 399 else 3), lang="nb"))
        items.append({"title": title, "link": f"{base}/a/{i}.html", "guid": f"g{i}",
                      "description": html.escape(" ".join(PARAS))})  # fmt: skip
    news.put_feed("/feed.xml", rss(items))
    cfg = make_config(tmp_path, [{"name": "news", "url": f"{base}/feed.xml"}],
                      redis={"url": redis_url}, max_new_entries_per_poll=40)  # fmt: skip
    ruleset = load_rules(cfg.rule_files())
    async with open_app(cfg, redis_url, ruleset) as app:
        await app.store.ensure_entry_group()
        # Warm up outside the guard: the worker processes start, modules load.
        await app.pipeline.build_article(Feed("news", f"{base}/feed.xml", 60), _entry(base))
        app.pipeline.queue_entries = True
        worker = EntryWorker(app.store, app.pipeline, "w", max_inflight=4, claim_idle_s=60,
                             feeds=lambda _name: None)  # fmt: skip
        stop = asyncio.Event()
        with LoopGuard(THRESHOLD_S) as guard:
            outcome = await app.pipeline.poll(Feed("news", f"{base}/feed.xml", 60))
            running = asyncio.ensure_future(worker.run(stop, drain_s=5))
            await until_drained(app.store)
            stop.set()
            await running
    assert outcome.new_entries == 40  # the newest; the rest wait for later polls
    assert worker.processed == 40
    assert worker.alerts == 40
    assert guard.slow == []


def _entry(base: str) -> Any:
    from monitor.entries import Entry

    return Entry("news", "guid:warm", "warm", f"{base}/a/0.html", "", "", None)
