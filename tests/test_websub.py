"""WebSub end to end in one process: a real news site, a real hub (tests/hub.py)
and the real callback listener on 127.0.0.1, a real Redis, the real pipeline.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.test_utils import TestServer
from pydantic import ValidationError

from monitor import keys
from monitor.daemon import App, open_app
from monitor.entries import Feed
from monitor.rules import load_rules
from monitor.status import feed_statuses, render
from monitor.substore import SubscriptionStore
from monitor.websub import WebSub
from tests.conftest import make_config
from tests.hub import Hub
from tests.servers import NewsSite, first_message, free_port, page, stream_entries
from tests.test_pipeline import NEAR_MISS, SEED_TITLE, seed_page

log = logging.getLogger("tests.websub")


def hub_feed(base: str, hub: str, items: list[tuple[str, str, str]]) -> str:
    """RSS naming its hub and self; items are (guid, title, path)."""
    parts = "".join(
        f"<item><title>{t}</title><link>{base}{p}</link><guid>{g}</guid></item>"
        for g, t, p in items
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        '<rss version="2.0" xmlns:atom="http://www.w3.org/2005/Atom"><channel><title>T</title>'
        f'<link>{base}/</link><atom:link rel="hub" href="{hub}"/>'
        f'<atom:link rel="self" href="{base}/feed.xml"/>{parts}</channel></rss>'
    )


GAS = ("gas-1", "Russia and China agree gas prices", "/a/gas.html")
SEED = ("seed-1", SEED_TITLE, "/a/seed.html")


@dataclass
class World:
    app: App
    websub: WebSub
    hub: Hub
    site: NewsSite
    base: str
    feed: Feed
    redis_url: str

    @property
    def topic(self) -> str:
        return f"{self.base}/feed.xml"

    def publish(self, *items: tuple[str, str, str]) -> bytes:
        xml = hub_feed(self.base, self.hub.url, list(items))
        self.site.put_feed("/feed.xml", xml)
        return xml.encode()

    async def poll(self) -> int:
        outcome = await self.app.pipeline.poll(self.feed)
        assert outcome.status == "ok", outcome
        assert outcome.hub_links is not None
        self.websub.observe(self.feed, outcome.headers, outcome.hub_links)
        return outcome.alerts

    async def subscribed(self) -> None:
        await self.poll()
        await self.hub.wait_until(lambda: len(self.hub.subs) == 1)
        await wait_for(lambda: self.websub.pushing("news"))


async def wait_for(ready: object, timeout_s: float = 10.0) -> None:
    """Poll a cheap in-process predicate (bounded: timeout and step count)."""
    assert callable(ready)
    for _ in range(int(timeout_s / 0.02)):
        if ready():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not reached")


@asynccontextmanager
async def world(
    tmp_path: Path, redis_url: str, site: tuple[NewsSite, str], **websub: object
) -> AsyncIterator[World]:
    news, base = site
    news.put_page("/a/gas.html", page(GAS[1], NEAR_MISS))
    news.put_page("/a/seed.html", seed_page())
    port = free_port()
    settings = {"callback_url": f"http://127.0.0.1:{port}/websub", "listen": f"127.0.0.1:{port}",
                **websub}  # fmt: skip
    cfg = make_config(tmp_path, [{"name": "news", "url": f"{base}/feed.xml"}], websub=settings)
    hub = Hub()
    await hub.start()
    try:
        async with open_app(cfg, redis_url, load_rules(cfg.rule_files())) as app:
            ws = WebSub(cfg.websub, SubscriptionStore(app.store), app.pipeline.session,
                        app.pipeline.push, plan_every_s=0.05)  # fmt: skip
            feed = Feed("news", f"{base}/feed.xml", 60)
            ws.feeds = {"news": feed}
            await ws.start()
            stopping = asyncio.Event()
            upkeep = asyncio.get_running_loop().create_task(ws.run(stopping))
            w = World(app, ws, hub, news, base, feed, redis_url)
            w.publish(GAS)
            try:
                yield w
            finally:
                stopping.set()
                await upkeep
                await ws.close()
    finally:
        await hub.close()


async def test_subscribe_verify_and_signed_push_alerts_fast(
    tmp_path: Path, redis_url: str, site: tuple[NewsSite, str]
) -> None:
    sub = aioredis.Redis.from_url(redis_url, decode_responses=True)
    pubsub = sub.pubsub()
    await pubsub.subscribe(keys.ALERT_CHANNEL)
    try:
        async with world(tmp_path, redis_url, site) as w:
            assert await w.poll() == 0  # the near miss only
            await w.hub.wait_until(lambda: len(w.hub.subs) == 1)
            request = w.hub.requests[0]
            assert request["hub.mode"] == "subscribe"
            assert request["hub.topic"] == w.topic
            assert request["hub.callback"].startswith(w.websub.callback_url + "/news/")
            assert len(request["hub.secret"]) == 64
            assert request["hub.lease_seconds"] == "864000"
            await wait_for(lambda: w.websub.pushing("news"))
            record = await SubscriptionStore(w.app.store).get("news")
            assert record is not None
            assert (record.state, record.lease_s, record.secret) == (
                "active",
                864000.0,
                request["hub.secret"],
            )
            body = w.publish(GAS, SEED)
            started = time.monotonic()
            assert await w.hub.publish(w.topic, body) == [202]
            msg = await first_message(pubsub, tries=50)
            took = time.monotonic() - started
            log.info("push to alert: %.3f s", took)
            assert took < 5.0  # typically well under 1 s; generous for a loaded machine
            assert SEED_TITLE in msg["data"]
            assert w.site.hits.get("/feed.xml") == 1  # no poll was needed
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]
        await sub.aclose()


async def test_bad_or_missing_signature_is_refused_and_not_processed(
    tmp_path: Path, redis_url: str, site: tuple[NewsSite, str]
) -> None:
    async with world(tmp_path, redis_url, site) as w:
        await w.subscribed()
        body = w.publish(GAS, SEED)
        assert await w.hub.publish(w.topic, body, secret="not-the-secret") == [403]
        assert await w.hub.publish(w.topic, body, algorithm=None) == [403]
        assert await w.hub.publish(w.topic, body, algorithm="md5") == [403]
        assert await w.hub.publish(w.topic, body, algorithm="sha1") == [202]  # the 0.4 default
        metrics = w.websub.metrics.render().decode()
        assert 'feed_monitor_websub_deliveries_total{result="bad_signature"} 3.0' in metrics
        assert 'feed_monitor_websub_deliveries_total{result="accepted"} 1.0' in metrics
        await w.websub.settle(10)
        assert w.site.hits.get("/a/seed.html") == 1
        assert len(await stream_entries(redis_url)) == 1
        # A callback URL with the wrong token is not the subscription's.
        wrong = w.hub.requests[0]["hub.callback"].rsplit("/", 1)[0] + "/guessed"
        async with aiohttp.ClientSession() as s, s.post(wrong, data=body) as resp:
            assert resp.status == 410


async def test_refused_deliveries_leave_the_story_for_the_poll(
    tmp_path: Path, redis_url: str, site: tuple[NewsSite, str]
) -> None:
    async with world(tmp_path, redis_url, site) as w:
        await w.subscribed()
        body = w.publish(GAS, SEED)
        assert await w.hub.publish(w.topic, body, secret="forged") == [403]
        assert await stream_entries(redis_url) == []
        assert await w.poll() == 1  # not marked seen by the refused push


async def test_push_then_poll_of_the_same_story_alerts_once(
    tmp_path: Path, redis_url: str, site: tuple[NewsSite, str]
) -> None:
    async with world(tmp_path, redis_url, site) as w:
        await w.subscribed()
        body = w.publish(GAS, SEED)
        assert await w.hub.publish(w.topic, body) == [202]
        await w.websub.settle(10)
        assert len(await stream_entries(redis_url)) == 1
        assert await w.poll() == 0
        assert len(await stream_entries(redis_url)) == 1


async def test_hub_silent_the_safety_poll_still_finds_the_story(
    tmp_path: Path, redis_url: str, site: tuple[NewsSite, str]
) -> None:
    async with world(tmp_path, redis_url, site, safety_interval_s=7200) as w:
        await w.subscribed()
        from monitor.daemon import poll_policy

        policy = w.websub.policy("news", poll_policy(w.app.cfg, w.feed))
        assert (policy.interval_s, policy.adapt_weight) == (7200, 0.0)
        w.publish(GAS, SEED)  # on the site, but the hub says nothing
        assert await w.poll() == 1
        assert [a["rule"] for a in await stream_entries(redis_url)] == ["sino-russian-military"]


async def test_lease_is_renewed_before_it_expires(
    tmp_path: Path, redis_url: str, site: tuple[NewsSite, str]
) -> None:
    async with world(tmp_path, redis_url, site, renew_fraction=0.5) as w:
        w.hub.grant_lease_s = 4  # renewed after 2 s, 2 s before it would expire
        await w.subscribed()
        first = w.hub.subs[w.hub.requests[0]["hub.callback"]]
        await w.hub.wait_until(lambda: len(w.hub.requests) >= 2, timeout_s=10)
        renewal_at = time.monotonic()
        second = w.hub.requests[1]
        assert second["hub.mode"] == "subscribe"
        assert second["hub.secret"] == first.secret  # same secret and callback
        assert second["hub.callback"] == first.callback
        assert renewal_at < first.verified_at + first.lease_s
        await w.hub.wait_until(lambda: len(w.hub.verifications) >= 2)
        assert w.websub.pushing("news")


async def test_hub_errors_back_off_then_subscribe(
    tmp_path: Path, redis_url: str, site: tuple[NewsSite, str]
) -> None:
    async with world(tmp_path, redis_url, site, backoff_base_s=3) as w:
        w.hub.fail_next = 1
        await w.poll()
        await w.websub.settle(10)  # the first request, answered 500
        failed = w.websub.subs["news"]
        metrics = w.websub.metrics.render().decode()
        assert 'feed_monitor_websub_hub_errors_total{kind="http_500"} 1.0' in metrics
        assert failed.state == "failed"
        assert failed.reason.startswith("http_500")
        assert failed.retry_at is not None and failed.retry_at - failed.requested_at >= 2.9
        await w.hub.wait_until(lambda: len(w.hub.subs) == 1)
        assert len(w.hub.requests) == 2
        await wait_for(lambda: w.websub.pushing("news"))


async def test_removed_feed_is_unsubscribed(
    tmp_path: Path, redis_url: str, site: tuple[NewsSite, str]
) -> None:
    async with world(tmp_path, redis_url, site) as w:
        await w.subscribed()
        w.websub.feeds = {}
        await w.hub.wait_until(lambda: not w.hub.subs)
        assert w.hub.requests[-1]["hub.mode"] == "unsubscribe"
        await wait_for(lambda: "news" not in w.websub.subs)
        assert await SubscriptionStore(w.app.store).all() == {}


async def test_a_feed_that_moves_to_another_hub_leaves_the_old_one(
    tmp_path: Path, redis_url: str, site: tuple[NewsSite, str]
) -> None:
    async with world(tmp_path, redis_url, site) as w:
        await w.subscribed()
        old_callback = next(iter(w.hub.subs))
        moved = Hub()
        await moved.start()
        try:
            w.site.put_feed("/feed.xml", hub_feed(w.base, moved.url, [GAS]))
            await w.poll()
            await moved.wait_until(lambda: len(moved.subs) == 1)
            # The old hub asked us to confirm the unsubscription, and we did.
            await w.hub.wait_until(lambda: not w.hub.subs)
            assert ("unsubscribe", old_callback, 200) in [v[:3] for v in w.hub.verifications]
            await wait_for(lambda: w.websub.pushing("news"))
            new_callback = next(iter(moved.subs))
            assert new_callback != old_callback
            # A late push from the old hub is refused; the new hub's is taken.
            async with aiohttp.ClientSession() as s, s.post(old_callback, data=b"<rss/>") as r:
                assert r.status == 410  # Gone: a hub drops the subscription
            assert await moved.publish(w.topic, w.publish(GAS, SEED)) == [202]
            await wait_for(lambda: len(w.site.hits) > 0 and "/a/seed.html" in w.site.hits)
            raw = aioredis.Redis.from_url(redis_url, decode_responses=True)
            try:
                assert await raw.keys(keys.SERVER.websub_leaving("news", "*")) == []
            finally:
                await raw.aclose()
        finally:
            await moved.close()


async def test_verification_we_did_not_ask_for_is_refused(
    tmp_path: Path, redis_url: str, site: tuple[NewsSite, str]
) -> None:
    async with world(tmp_path, redis_url, site, max_body_bytes=2048) as w:
        await w.subscribed()
        callback = w.hub.requests[0]["hub.callback"]
        async with aiohttp.ClientSession() as s:
            query = {"hub.mode": "unsubscribe", "hub.topic": w.topic, "hub.challenge": "x"}
            async with s.get(callback, params=query) as resp:
                assert resp.status == 404  # an unsubscribe we never requested
            query = {"hub.mode": "subscribe", "hub.topic": "http://other/", "hub.challenge": "x"}
            async with s.get(callback, params=query) as resp:
                assert resp.status == 404
            async with s.post(callback, data=b"x" * 4096) as resp:
                assert resp.status == 413
        assert w.websub.pushing("news")


async def test_hub_announced_in_link_headers_is_subscribed(
    tmp_path: Path, redis_url: str, site: tuple[NewsSite, str]
) -> None:
    """Two Link headers, no links in the feed: the fetch keeps both, and the
    hub and the self URL of the header are used."""
    plain = (
        '<?xml version="1.0"?><rss version="2.0"><channel><title>T</title>'
        "<item><title>Quiet day</title><guid>q-1</guid></item></channel></rss>"
    )
    async with world(tmp_path, redis_url, site) as w:

        async def feed(_request: web.Request) -> web.Response:
            resp = web.Response(text=plain, content_type="application/rss+xml")
            resp.headers.add("Link", f'<{w.hub.url}>; rel="hub"')
            resp.headers.add("Link", '</canonical.xml>; rel="self", </x>; rel="alternate"')
            return resp

        app = web.Application()
        app.router.add_get("/feed.xml", feed)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        try:
            url = str(server.make_url("/feed.xml"))
            w.feed = Feed("news", url, 60)
            w.websub.feeds = {"news": w.feed}
            await w.poll()
            await w.hub.wait_until(lambda: len(w.hub.subs) == 1)
            assert w.hub.requests[0]["hub.topic"] == str(server.make_url("/canonical.xml"))
        finally:
            await server.close()


async def test_status_shows_the_push_state(
    tmp_path: Path, redis_url: str, site: tuple[NewsSite, str]
) -> None:
    async with world(tmp_path, redis_url, site) as w:
        rows = await feed_statuses(w.app.cfg, w.app.store)
        assert [r.push for r in rows] == [None]
        assert "PUSH" not in render(rows)
        await w.subscribed()
        rows = await feed_statuses(w.app.cfg, w.app.store)
        assert rows[0].push is not None and rows[0].push.startswith("active until 20")
        table = render(rows).splitlines()
        assert table[0].endswith("PUSH")
        assert "active until" in table[1]


async def test_subscription_and_secret_survive_a_restart(
    tmp_path: Path, redis_url: str, site: tuple[NewsSite, str]
) -> None:
    async with world(tmp_path, redis_url, site) as w:
        await w.subscribed()
        # A second WebSub on the same Redis stands for the restarted daemon.
        await w.websub.close()
        again = WebSub(w.app.cfg.websub, SubscriptionStore(w.app.store), w.app.pipeline.session,
                       w.app.pipeline.push)  # fmt: skip
        again.feeds = {"news": w.feed}
        await again.start()
        try:
            assert again.pushing("news")
            body = w.publish(GAS, SEED)
            assert await w.hub.publish(w.topic, body) == [202]  # signed with the old secret
            await again.settle(10)
            assert len(await stream_entries(redis_url)) == 1
            assert len(w.hub.requests) == 1  # nothing had to be requested again
        finally:
            await again.close()


async def test_a_hub_that_never_verifies_is_asked_again_with_backoff(
    tmp_path: Path, redis_url: str, site: tuple[NewsSite, str]
) -> None:
    async with world(tmp_path, redis_url, site, verify_timeout_s=1, backoff_base_s=1) as w:
        w.hub.verify = False
        await w.poll()
        await w.hub.wait_until(lambda: len(w.hub.requests) >= 2)
        await w.websub.settle(10)
        record = await SubscriptionStore(w.app.store).get("news")
        assert record is not None
        assert record.state == "subscribing"
        assert record.failures >= 1  # 1, or more if this machine stalled for a second
        assert record.retry_at is not None and record.retry_at >= record.requested_at + 1
        assert not w.websub.pushing("news")
        w.hub.verify = True  # the hub recovers: the next request is verified
        await w.hub.wait_until(lambda: len(w.hub.subs) == 1)
        await wait_for(lambda: w.websub.pushing("news"))
        assert w.websub.subs["news"].failures == 0


def test_websub_settings_are_validated(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="public http"):
        make_config(tmp_path, [], websub={"callback_url": "ftp://x/"})
    with pytest.raises(ValidationError, match="host:port"):
        make_config(tmp_path, [], websub={"listen": "8470"})
    cfg = make_config(tmp_path, [], websub={"callback_url": "https://m.example/websub/"})
    assert cfg.websub.callback_url == "https://m.example/websub"
    assert (cfg.websub.safety_interval_s, cfg.websub.lease_s) == (21600, 864000)


async def test_a_signed_push_that_is_not_a_feed_fails_alone(
    tmp_path: Path, redis_url: str, site: tuple[NewsSite, str], caplog: pytest.LogCaptureFixture
) -> None:
    async with world(tmp_path, redis_url, site) as w:
        await w.subscribed()
        assert await w.hub.publish(w.topic, b"<html><body>hi</body></html>", "text/html") == [202]
        await w.websub.settle(10)
        assert any("feed.pushed" in r.message and r.levelname == "WARNING" for r in caplog.records)
        assert await w.hub.publish(w.topic, w.publish(GAS, SEED)) == [202]
        await w.websub.settle(10)
        assert len(await stream_entries(redis_url)) == 1
