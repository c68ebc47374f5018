"""No alert lost, none sent twice: Redis outages and daemon crashes, for real.

A real redis-server is stopped and started under the pipeline; a real
daemon subprocess is killed with SIGKILL mid-delivery and restarted.
"""

from __future__ import annotations

import asyncio
import html
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from monitor.daemon import open_app
from monitor.entries import Feed
from monitor.rules import load_rules
from monitor.workitem import WorkItem
from tests.conftest import ROOT, make_config
from tests.servers import NewsSite, RedisServer, page, rss, stream_entries

EXE = str(Path(sys.executable).parent / "feed-monitor")
SEED = (ROOT / "seeds" / "000_79a58b876351234c.txt").read_text(encoding="utf-8")
PARAS = [html.escape(p) for p in SEED.split("\n\n")[1:] if p.strip()]


def publish(news: NewsSite, base: str, n: int, delay_s: float = 0.0) -> list[str]:
    """n matching stories (the seed's text under n titles); returns their guids."""
    items = []
    for i in range(n):
        title = f"Kina og Russland: fellesøvelse nummer {i}"
        news.put_page(f"/a/{i}.html", page(title, PARAS, lang="nb"))
        news.resources[f"/a/{i}.html"].delay_s = delay_s
        items.append({"title": title, "link": f"{base}/a/{i}.html", "guid": f"story-{i}"})
    news.put_feed("/feed.xml", rss(items))
    return [it["guid"] for it in items]


async def stream_entry_ids(url: str) -> list[str]:
    return [f["alert_id"] for f in await stream_entries(url)]


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis", persist=True)
    server.start()
    yield server
    server.stop()


async def test_outage_spools_and_replays_in_order_exactly_once(
    tmp_path: Path, private_redis: RedisServer, site: tuple[NewsSite, str]
) -> None:
    news, base = site
    url = private_redis.url
    cfg = make_config(tmp_path, [{"name": "news", "url": f"{base}/feed.xml"}],
                      redis={"url": url})  # fmt: skip
    ruleset = load_rules(cfg.rule_files())
    feed = Feed("news", f"{base}/feed.xml", 60)
    publish(news, base, 2)
    async with open_app(cfg, url, ruleset) as app:
        first = await app.pipeline.poll(feed)
        assert first.alerts == 2

        private_redis.stop()
        publish(news, base, 4)
        during = await app.pipeline.poll(feed)  # polling goes on
        assert during.status == "ok"
        assert during.new_entries == 2
        assert during.alerts == 2  # spooled, on disk
        # Two alerts; four seen-marks (each entry by its guid and by its link).
        assert app.deliverer.outbox.depth() == (2, 4)
        again = await app.pipeline.poll(feed)
        assert again.new_entries == 0  # what this process saw is not redone

        publish(news, base, 5)
        await app.pipeline.poll(feed)  # a third spooled alert...
    # ...and the daemon stops before Redis is back: the spool survives.
    private_redis.start()
    async with open_app(cfg, url, ruleset) as app:
        assert app.deliverer.pending == 3
        assert await app.deliverer.replay() == 3
        assert app.deliverer.outbox.depth() == (0, 0)
        after = await app.pipeline.poll(feed)
        assert after.new_entries == 0  # the spooled seen-marks reached Redis
        assert await app.deliverer.replay() == 0  # nothing left, nothing added
    ids = await stream_entry_ids(url)
    assert len(ids) == 5
    assert len(set(ids)) == 5


async def test_entries_a_worker_here_alerted_are_not_redone_in_an_outage(
    tmp_path: Path, private_redis: RedisServer, site: tuple[NewsSite, str]
) -> None:
    """Queued entries are marked seen in Redis as they are queued. While Redis
    is away a poll cannot ask it, so the worker's memory of what it processed
    is what keeps them from being alerted a second time."""
    news, base = site
    url = private_redis.url
    cfg = make_config(tmp_path, [{"name": "news", "url": f"{base}/feed.xml"}],
                      redis={"url": url})  # fmt: skip
    feed = Feed("news", f"{base}/feed.xml", 60)
    publish(news, base, 2)
    async with open_app(cfg, url, load_rules(cfg.rule_files())) as app:
        await app.store.ensure_entry_group()
        app.pipeline.queue_entries = True
        queued = await app.pipeline.poll(feed)
        assert (queued.new_entries, queued.alerts) == (2, 0)  # for the workers
        rows = await app.store.read_entries("w", 10, block_ms=None)
        alerts = 0
        for entry_id, fields in rows:
            alerts += await app.pipeline.process_entry(feed, WorkItem.from_fields(fields).entry)
            await app.store.ack_entries([entry_id])
        assert (len(rows), alerts) == (2, 2)

        private_redis.stop()
        during = await app.pipeline.poll(feed)
        assert during.status == "ok"
        assert (during.new_entries, during.alerts) == (0, 0)
        assert app.deliverer.outbox.depth() == (0, 0)
    private_redis.start()
    ids = await stream_entry_ids(url)
    assert len(ids) == len(set(ids)) == 2


async def test_deliveries_wait_behind_the_spool_to_keep_order(
    tmp_path: Path, private_redis: RedisServer, site: tuple[NewsSite, str]
) -> None:
    news, base = site
    url = private_redis.url
    cfg = make_config(tmp_path, [{"name": "news", "url": f"{base}/feed.xml"}],
                      redis={"url": url})  # fmt: skip
    feed = Feed("news", f"{base}/feed.xml", 60)
    async with open_app(cfg, url, load_rules(cfg.rule_files())) as app:
        private_redis.stop()
        publish(news, base, 1)
        await app.pipeline.poll(feed)
        private_redis.start()
        publish(news, base, 2)
        await app.pipeline.poll(feed)  # Redis is back, but story-0 is still spooled
        assert app.deliverer.pending == 2
        await app.deliverer.replay()
    titles = [f["alert"] for f in await stream_entries(url)]
    assert len(titles) == 2
    assert "nummer 0" in titles[0]
    assert "nummer 1" in titles[1]


async def test_sigkill_mid_delivery_then_restart_gives_every_alert_once(
    tmp_path: Path, redis_url: str, site: tuple[NewsSite, str]
) -> None:
    news, base = site
    n = 8
    publish(news, base, n, delay_s=0.4)
    cfg = tmp_path / "monitor.yaml"
    cfg.write_text(
        f"state_dir: st\nrules: ['{ROOT}/config/rules/*.yaml']\nredis: {{url: '{redis_url}'}}\n"
        "http: {allow_private_addresses: true, "
        "per_host_spacing_s: 0, per_host_concurrency: 16, timeout_s: 10, concurrency: 2}\n"
        "extraction: {workers: 1}\n"
        f"feeds:\n  - {{name: news, url: '{base}/feed.xml', interval_s: 1}}\n"
    )

    async def start() -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            EXE, "run", "--config", str(cfg), stderr=asyncio.subprocess.DEVNULL
        )

    proc = await start()
    try:
        for _ in range(600):  # kill as soon as some, not all, alerts are out
            if len(await stream_entry_ids(redis_url)) >= 2:
                break
            await asyncio.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
        killed_at = len(await stream_entry_ids(redis_url))
        assert 0 < killed_at < n
        proc = await start()
        for _ in range(600):
            if len(await stream_entry_ids(redis_url)) >= n:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(2.5)  # more polls: nothing may be added twice
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), timeout=30)
    ids = await stream_entry_ids(redis_url)
    assert len(ids) == n
    assert len(set(ids)) == n


async def test_a_poll_ending_in_an_outage_is_rescheduled_once_redis_is_back(
    tmp_path: Path, private_redis: RedisServer, site: tuple[NewsSite, str]
) -> None:
    """The claim moved the feed's due time to the lease's end; the poll's own
    due time, lost to the outage, is written by the first tick after it (else
    the feed would sleep out the whole lease, minutes)."""
    import redis.asyncio as aioredis

    from monitor import keys
    from monitor.daemon import Daemon

    news, base = site
    url = private_redis.url
    cfg = make_config(tmp_path, [{"name": "news", "url": f"{base}/feed.xml"}],
                      redis={"url": url})  # fmt: skip
    publish(news, base, 1)
    feed = Feed("news", f"{base}/feed.xml", 60)
    client = aioredis.Redis.from_url(url)
    async with open_app(cfg, url, load_rules(cfg.rule_files())) as app:
        daemon = Daemon(app)
        await daemon.sync_schedule([feed])
        await asyncio.sleep(0.1)  # the first due time is spread a little
        await daemon.tick()
        assert daemon.running == {"news"}
        leased_until = await client.zscore(keys.SERVER.due, "news")
        assert leased_until is not None
        assert await client.hexists(keys.SERVER.leases, "news")
        await client.aclose()

        private_redis.stop()
        worker = asyncio.ensure_future(daemon._worker())
        async with asyncio.timeout(30):
            await daemon.queue.join()  # the poll ran (and failed: no Redis)
        assert daemon.unsynced.keys() == {"news"}
        assert daemon.unreleased == {"news"}

        private_redis.start()
        client = aioredis.Redis.from_url(url)
        await daemon.tick()
        due = await client.zscore(keys.SERVER.due, "news")
        assert due == daemon.due_local["news"]
        assert due < leased_until - 60  # the poll's own backoff, not the lease's end
        assert not await client.hexists(keys.SERVER.leases, "news")
        assert not daemon.unsynced
        assert not daemon.unreleased
        daemon.queue.put_nowait(None)
        await worker
    await client.aclose()
