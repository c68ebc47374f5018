"""WebSub through a real `feed-monitor run` subprocess: discovery,
subscription, a signed push alerted, a silent hub and the safety poll, and
the unsubscription of a feed removed from the config."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import redis.asyncio as aioredis

from monitor import keys
from tests.hub import Hub
from tests.servers import NewsSite, free_port, page, rss, stream_entries
from tests.test_reload import EXE, Daemon
from tests.test_websub import hub_feed

WORDS = ["The omega team met on Tuesday."]
RULES = """\
concepts:
  watch:
    terms: {en: [omega]}
rules:
  - id: watch
    title: Watch
    match: {all: [watch]}
"""


async def test_daemon_subscribes_pushes_safety_polls_and_unsubscribes(
    tmp_path: Path, site: tuple[NewsSite, str]
) -> None:
    news, base = site
    hub = Hub()
    await hub.start()
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "pack.yaml").write_text(RULES)
    port = free_port()
    cfg = tmp_path / "monitor.yaml"
    head = (
        "state_dir: st\nrules: [rules/*.yaml]\n"
        "http: {allow_private_addresses: true, "
        "per_host_spacing_s: 0, per_host_concurrency: 16, timeout_s: 5}\n"
        "extraction: {workers: 1}\n"
        f"websub: {{callback_url: 'http://127.0.0.1:{port}/push', listen: '127.0.0.1:{port}', "
        "safety_interval_s: 6}\n"
        f"feeds:\n  - {{name: other, url: '{base}/other.xml', interval_s: 60}}\n"
    )
    cfg.write_text(head + f"  - {{name: news, url: '{base}/feed.xml', interval_s: 1}}\n")
    news.put_feed("/other.xml", rss([]))
    for n in ("1", "2", "3"):
        news.put_page(f"/s{n}.html", page(f"Story {n}", WORDS))
    news.put_feed("/feed.xml", hub_feed(base, hub.url, [("s1", "Story 1", "/s1.html")]))
    proc = await asyncio.create_subprocess_exec(
        EXE, "run", "--config", str(cfg), stderr=asyncio.subprocess.PIPE
    )
    daemon = Daemon(proc)
    client = aioredis.Redis.from_url(f"unix://{tmp_path / 'st' / 'redis.sock'}")
    try:
        # New entries are queued by the poll and alerted on by the entry
        # worker: wait on the alert line each story prints.
        await daemon.wait_for('title="Story 1"')  # the first poll
        await daemon.wait_for("websub.subscribed feed=news")
        await hub.wait_until(lambda: len(hub.subs) == 1)

        # A fat ping: only the new item, which the site's feed does not list.
        pushed = hub_feed(base, hub.url, [("s2", "Story 2", "/s2.html")]).encode()
        assert await hub.publish(f"{base}/feed.xml", pushed) == [202]
        await daemon.wait_for("feed.pushed feed=news entries=1 new=1")
        await daemon.wait_for('title="Story 2"')

        # Pushed now: the next poll is set a safety interval away, not 1 s.
        mark = len(daemon.lines)
        await daemon.wait_for("feed.fetched feed=news", after=mark)
        ahead = 0.0
        for _ in range(50):  # the due time is written just after the log line
            due = await client.zscore(keys.SERVER.due, "news")
            ahead = (due or 0.0) - time.time()
            if ahead > 2.0:
                break
            await asyncio.sleep(0.1)
        assert ahead > 2.0, f"next poll in {ahead:.1f} s; a 1 s interval would say < 1.2"

        # The hub goes silent; the safety poll still finds the story.
        news.put_feed("/feed.xml", hub_feed(base, hub.url, [("s3", "Story 3", "/s3.html")]))
        await daemon.wait_for('title="Story 3"', after=mark)
        alerts = await stream_entries(f"unix://{tmp_path / 'st' / 'redis.sock'}")
        assert len(alerts) == 3
        for i, alert in enumerate(alerts, 1):
            assert f"Story {i}" in alert["alert"]

        # Removed from the config: unsubscribed at the hub, record gone.
        mark = len(daemon.lines)
        cfg.write_text(head)
        await daemon.wait_for("rules.reloaded", after=mark)
        await hub.wait_until(lambda: not hub.subs)
        await daemon.wait_for("websub.unsubscribed feed=news", after=mark)
        assert hub.requests[-1]["hub.mode"] == "unsubscribe"
        assert await client.exists(keys.SERVER.websub("news")) == 0
    finally:
        await client.aclose()
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), timeout=30)
        await daemon.reader
        await hub.close()
    assert proc.returncode == 0
