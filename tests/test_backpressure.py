"""Back-pressure: while the entry stream is full (extraction is behind),
pollers hand out no feeds; when workers catch up, polling resumes and every
entry is queued exactly once. A real daemon (poller role, in-process, real
scheduler), a real Redis and a real HTTP server."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

import pytest

from monitor import keys
from monitor.daemon import Daemon, open_app
from monitor.entries import Feed
from monitor.rules import load_rules
from monitor.workitem import WorkItem
from tests.conftest import UNTHROTTLED, make_config
from tests.servers import NewsSite, rss

FEEDS = 30
PER_FEED = 5
MAX_QUEUED = 10
CONCURRENCY = 4  # a tick hands out at most 2 x this many feeds


async def test_polling_pauses_while_the_entry_stream_is_full(
    tmp_path: Path, redis_url: str, site: tuple[NewsSite, str]
) -> None:
    news, base = site
    for i in range(FEEDS):
        items = [{"title": f"S{i}-{k}", "link": f"{base}/a/{i}-{k}.html", "guid": f"{i}-{k}"}
                 for k in range(PER_FEED)]  # fmt: skip
        news.put_feed(f"/f/{i}.xml", rss(items))
    feeds = [{"name": f"f{i}", "url": f"{base}/f/{i}.xml", "interval_s": 3600}
             for i in range(FEEDS)]  # fmt: skip
    http = {"allow_private_addresses": True, "timeout_s": 5, "concurrency": CONCURRENCY,
            **UNTHROTTLED}  # fmt: skip
    cfg = make_config(tmp_path, feeds, redis={"url": redis_url}, http=http,
                      cluster={"max_queued_entries": MAX_QUEUED})  # fmt: skip

    def polled() -> int:
        return sum(1 for i in range(FEEDS) if news.hits.get(f"/f/{i}.xml"))

    async with open_app(cfg, redis_url, load_rules(cfg.rule_files())) as app:
        daemon = Daemon(app, role="poller")  # nobody works on the entries yet
        run = asyncio.ensure_future(daemon.run())
        try:
            longest = 0
            for _ in range(100):  # 5 s: five ticks
                longest = max(longest, await app.store.queued_entries())
                await asyncio.sleep(0.05)
            # Full: the ticks since have handed out nothing. Without the
            # pause, five ticks of up to 8 feeds would have polled all 30.
            assert await app.store.queued_entries() >= MAX_QUEUED
            assert polled() <= 1 + 2 * (2 * CONCURRENCY)
            assert longest <= MAX_QUEUED + 2 * CONCURRENCY * PER_FEED

            # A worker catches up: polling resumes until every feed is polled.
            got: list[str] = []
            for _ in range(400):  # bounded: 20 s
                rows = await app.store.read_entries("w", 10, block_ms=50)
                for entry_id, fields in rows:
                    got.append(WorkItem.from_fields(fields).entry.identity)
                    await app.store.ack_entries([entry_id])
                if len(got) >= FEEDS * PER_FEED:
                    break
            assert polled() == FEEDS
            assert sorted(got) == sorted(f"guid:{i}-{k}" for i in range(FEEDS)
                                         for k in range(PER_FEED))  # fmt: skip
            assert await app.store.client.xlen(keys.SERVER.entries) == 0
        finally:
            daemon.stopping.set()
            await asyncio.wait_for(run, timeout=30)
    assert all(news.hits.get(f"/f/{i}.xml") == 1 for i in range(FEEDS))


async def test_a_poll_never_waits_behind_extraction(
    tmp_path: Path, redis_url: str, site: tuple[NewsSite, str]
) -> None:
    news, base = site
    items = [{"title": f"S{k}", "link": f"{base}/a/{k}.html", "guid": f"g{k}"} for k in range(5)]
    news.put_feed("/feed.xml", rss(items))
    cfg = make_config(tmp_path, [{"name": "news", "url": f"{base}/feed.xml"}],
                      redis={"url": redis_url})  # fmt: skip
    async with open_app(cfg, redis_url, load_rules(cfg.rule_files())) as app:
        await app.store.ensure_entry_group()
        app.pipeline.queue_entries = True
        # The one extraction process is busy for a long time (a stand-in for
        # a queue of slow pages)...
        busy = asyncio.ensure_future(app.pipeline.pool.run(time.sleep, 30.0, timeout_s=60))
        try:
            await asyncio.sleep(0.5)  # it has started (or is about to)
            started = time.monotonic()
            outcome = await asyncio.wait_for(
                app.pipeline.poll(Feed("news", f"{base}/feed.xml", 60)), timeout=25
            )
            took = time.monotonic() - started
        finally:
            busy.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await busy
        # ...and the poll went on: parsed in its own process, entries queued.
        assert outcome.status == "ok"
        assert outcome.new_entries == 5
        assert await app.store.queued_entries() == 5
        assert took < 20


async def test_ticks_start_no_polls_while_the_parsers_are_behind(
    tmp_path: Path, redis_url: str, site: tuple[NewsSite, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A poll that got a 200 holds its body until a parser takes it: while the
    parse backlog is at its limit, a tick hands out no feeds at all."""
    import monitor.daemon

    monkeypatch.setattr(monitor.daemon, "PARSE_BACKLOG_PER_WORKER", 2)
    news, base = site
    news.put_feed("/feed.xml", rss([]))
    cfg = make_config(tmp_path, [{"name": "news", "url": f"{base}/feed.xml"}],
                      redis={"url": redis_url})  # fmt: skip
    async with open_app(cfg, redis_url, load_rules(cfg.rule_files())) as app:
        daemon = Daemon(app, role="poller")
        await daemon.sync_schedule([Feed("news", f"{base}/feed.xml", 60)])
        parsers = app.pipeline.parse_pool
        limit = 2 * parsers.workers
        # Stand-ins for feed documents waiting to be parsed.
        busy = [asyncio.ensure_future(parsers.run(time.sleep, 30.0, timeout_s=60))
                for _ in range(limit)]  # fmt: skip
        try:
            await asyncio.sleep(0.2)  # the feed is due now
            assert parsers.pending == limit
            await daemon.tick()
            assert daemon.queue.qsize() == 0
            assert not daemon.running
        finally:
            for b in busy:
                b.cancel()
            await asyncio.gather(*busy, return_exceptions=True)
        assert parsers.pending == 0
        await daemon.tick()
        assert daemon.running == {"news"}


async def _seconds_to_poll(
    tmp_path: Path,
    redis_url: str,
    site: tuple[NewsSite, str],
    many: int,
    http: Mapping[str, object],
) -> float:
    """Seconds a poller takes to poll ``many`` due feeds once each (bounded: 20 s)."""
    news, base = site
    for i in range(many):
        news.put_feed(f"/m/{i}.xml", rss([]))
    feeds = [{"name": f"m{i}", "url": f"{base}/m/{i}.xml", "interval_s": 3600}
             for i in range(many)]  # fmt: skip
    http = {"allow_private_addresses": True, "timeout_s": 5, **http}
    cfg = make_config(tmp_path, feeds, redis={"url": redis_url}, http=http)

    def polled() -> int:
        return sum(1 for i in range(many) if news.hits.get(f"/m/{i}.xml"))

    async with open_app(cfg, redis_url, load_rules(cfg.rule_files())) as app:
        daemon = Daemon(app, role="poller")
        run = asyncio.ensure_future(daemon.run())
        try:
            started = time.monotonic()
            for _ in range(400):  # bounded: 20 s
                if polled() >= many:
                    break
                await asyncio.sleep(0.05)
            took = time.monotonic() - started
        finally:
            daemon.stopping.set()
            await asyncio.wait_for(run, timeout=30)
    assert polled() == many
    assert all(news.hits.get(f"/m/{i}.xml") == 1 for i in range(many))
    return took


async def test_a_drained_poll_queue_refills_before_the_next_tick(
    tmp_path: Path, redis_url: str, site: tuple[NewsSite, str]
) -> None:
    """With more feeds due than the poll queue holds, the queue is refilled as
    soon as it is half empty: the one-second tick alone would hand out only
    2 x http.concurrency feeds a second, with the workers idle in between."""
    took = await _seconds_to_poll(tmp_path, redis_url, site, 60,
                                  {"concurrency": 2, **UNTHROTTLED})  # fmt: skip
    # Ticks alone: 4 feeds a second, 15 s for all 60 (the first tick at 0 s).
    assert took < 7, f"60 feeds took {took:.1f} s at concurrency 2"


async def test_feeds_waiting_for_a_busy_host_do_not_stop_the_refills(
    tmp_path: Path, redis_url: str, site: tuple[NewsSite, str]
) -> None:
    """All on one host that takes one request at a time: a tick hands out one
    feed and leaves the others due. It must still count as a tick that left
    work behind, or the next comes only a second later (60 s for 60 feeds)."""
    http = {"concurrency": 4, "per_host_concurrency": 1, "per_host_spacing_s": 0}
    took = await _seconds_to_poll(tmp_path, redis_url, site, 60, http)
    assert took < 15, f"60 feeds took {took:.1f} s on one host"


async def test_a_tick_that_lost_its_feeds_to_another_daemon_looks_again_at_once(
    tmp_path: Path, redis_url: str, site: tuple[NewsSite, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Daemons that read the same due feeds race for their leases; the loser
    gets none of them. Other feeds are still due: it must look again at once,
    not idle until the next tick. Here a rival wins every race."""
    news, base = site
    many = 40
    for i in range(many):
        news.put_feed(f"/r/{i}.xml", rss([]))
    feeds = [{"name": f"r{i}", "url": f"{base}/r/{i}.xml", "interval_s": 3600}
             for i in range(many)]  # fmt: skip
    http = {"allow_private_addresses": True, "timeout_s": 5, "concurrency": 2, **UNTHROTTLED}
    cfg = make_config(tmp_path, feeds, redis={"url": redis_url}, http=http)
    stolen: list[float] = []
    async with open_app(cfg, redis_url, load_rules(cfg.rule_files())) as app:
        read_due = app.store.due

        async def due_then_rival(now: float, limit: int) -> list[str]:
            names = await read_due(now, limit)
            got = await app.store.claim(names, "rival", now, now + 3600)
            stolen.extend(time.monotonic() for _ in got)
            return names

        monkeypatch.setattr(app.store, "due", due_then_rival)
        daemon = Daemon(app, role="poller")
        run = asyncio.ensure_future(daemon.run())
        try:
            for _ in range(200):  # bounded: 10 s
                if len(stolen) >= many:
                    break
                await asyncio.sleep(0.05)
        finally:
            daemon.stopping.set()
            await asyncio.wait_for(run, timeout=30)
    assert len(stolen) == many
    assert not news.hits, "the rival held every lease"
    # A tick reads 4 x the poll queue (8 feeds): five ticks for 40. At one
    # tick a second that is 4 s; looking again at once, a fraction of that.
    assert stolen[-1] - stolen[0] < 2.0, f"{stolen[-1] - stolen[0]:.1f} s"


async def test_daemons_reading_the_same_due_feeds_claim_different_ones(
    tmp_path: Path, redis_url: str, site: tuple[NewsSite, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two pollers tick at the same moment and read the same due feeds (a
    burst: a start, the end of an outage). Taking the head of that list,
    both claimed the same feeds and one of them got none; taking a random
    share each, both get work from this one tick."""
    _news, base = site
    many, concurrency = 60, 5  # a tick takes 2 x 5 of the 4 x 10 it reads
    feeds = [Feed(f"s{i}", f"{base}/s/{i}.xml", 3600) for i in range(many)]
    cfg_feeds = [{"name": f.name, "url": f.url, "interval_s": 3600} for f in feeds]
    http = {"allow_private_addresses": True, "concurrency": concurrency, **UNTHROTTLED}
    both_read = asyncio.Barrier(2)
    async with contextlib.AsyncExitStack() as stack:
        daemons = []
        for name in ("a", "b"):
            cfg = make_config(tmp_path / name, cfg_feeds, redis={"url": redis_url}, http=http)
            app = await stack.enter_async_context(
                open_app(cfg, redis_url, load_rules(cfg.rule_files()))
            )
            read_due = app.store.due

            async def due_together(
                now: float,
                limit: int,
                read: Callable[[float, int], Awaitable[list[str]]] = read_due,
            ) -> list[str]:
                names = await read(now, limit)
                await both_read.wait()  # neither claims before both have read
                return names

            monkeypatch.setattr(app.store, "due", due_together)
            daemon = Daemon(app, role="poller")
            await daemon.sync_schedule(feeds)
            daemons.append(daemon)
        await daemons[0].app.store.set_due({f.name: 0.0 for f in feeds})
        await asyncio.wait_for(asyncio.gather(*(d.tick() for d in daemons)), timeout=10)
        taken = [set(d.running) for d in daemons]  # leased, queued for a poll
    assert all(taken), f"feeds taken by each daemon: {[len(t) for t in taken]}"
    assert not taken[0] & taken[1], "a feed leased to both"
