"""Polling like a good citizen, against a real HTTP server and Redis."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from email.utils import formatdate
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.test_utils import TestServer

from monitor import keys
from monitor.daemon import Daemon, open_app
from monitor.entries import Feed
from monitor.rules import load_rules
from tests.conftest import UNTHROTTLED, make_config
from tests.servers import first_message, rss

FEED = rss([{"title": "Weather", "link": "/w.html", "guid": "w1"}]).encode()


class Site:
    """A server whose routes tests set; counts requests and concurrency."""

    def __init__(self) -> None:
        self.routes: dict[str, Reply] = {}
        self.hits: dict[str, int] = {}
        self.agents: list[str] = []
        self.if_none_match: list[tuple[str, str | None]] = []
        self.active = 0
        self.max_active = 0
        self.delay_s = 0.0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.hits[request.path] = self.hits.get(request.path, 0) + 1
        self.agents.append(request.headers.get("User-Agent", ""))
        self.if_none_match.append((request.path, request.headers.get("If-None-Match")))
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            spec = self.routes.get(request.path)
            if spec is None:
                return web.Response(status=404)
            status, headers, body = spec
            return web.Response(status=status, headers=headers, body=body)
        finally:
            self.active -= 1


@pytest.fixture
async def server() -> AsyncIterator[tuple[Site, str]]:
    site = Site()
    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", site.handle)
    ts = TestServer(app, host="127.0.0.1")
    await ts.start_server()
    try:
        yield site, str(ts.make_url("")).rstrip("/")
    finally:
        await ts.close()


Reply = tuple[int, dict[str, str], bytes]


def ok(headers: dict[str, str] | None = None, body: bytes = FEED) -> Reply:
    return 200, {"Content-Type": "application/rss+xml", **(headers or {})}, body


def status(code: int, headers: dict[str, str] | None = None) -> Reply:
    return code, headers or {}, FEED


async def test_retry_after_cache_control_ttl_and_backoff_set_the_next_poll(
    tmp_path: Path, redis_url: str, server: tuple[Site, str]
) -> None:
    site, base = server
    http_date = formatdate(time.time() + 1800, usegmt=True)
    site.routes = {
        "/429s": status(429, {"Retry-After": "600"}),
        "/429d": status(429, {"Retry-After": http_date}),
        "/cached": ok({"Cache-Control": "max-age=7200"}),
        "/ttl": ok(
            body=FEED.replace(b"<title>Test feed</title>", b"<title>t</title><ttl>180</ttl>")
        ),
        "/down": status(500),
    }
    cfg = make_config(tmp_path, [], polling={"jitter": 0.0001})
    async with open_app(cfg, redis_url, load_rules(cfg.rule_files())) as app:
        daemon = Daemon(app)

        async def due_in(path: str, interval: float = 60) -> float:
            feed = Feed(path.strip("/"), base + path, interval)
            return daemon.next_due(feed, await app.pipeline.poll(feed)) - time.time()

        assert 590 < await due_in("/429s") < 610
        assert 1700 < await due_in("/429d") < 1810
        assert 7100 < await due_in("/cached") < 7300
        assert 10700 < await due_in("/ttl") < 10900  # <ttl> is in minutes
        waits = [await due_in("/down") for _ in range(4)]
        assert waits == sorted(waits)  # exponential backoff...
        assert waits[-1] > 4 * waits[0]
        state = await app.store.feed_state("down")
        assert state.errors == 4  # ...and the feed is still scheduled, never dropped


async def test_301_twice_moves_the_feed_302_never(
    tmp_path: Path, redis_url: str, server: tuple[Site, str]
) -> None:
    site, base = server
    site.routes = {
        "/old": status(301, {"Location": "/new"}),
        "/temp": status(302, {"Location": "/new"}),
        "/new": ok(),
    }
    cfg = make_config(tmp_path, [])
    async with open_app(cfg, redis_url, load_rules(cfg.rule_files())) as app:
        moved, temp = Feed("moved", base + "/old", 60), Feed("temp", base + "/temp", 60)
        for _ in range(2):
            await app.pipeline.poll(moved)
            await app.pipeline.poll(temp)
        before = site.hits.get("/old", 0)
        await app.pipeline.poll(moved)
        assert site.hits.get("/old", 0) == before  # now polled at its new address
        assert (await app.store.feed_state("moved")).poll_url(moved.url) == base + "/new"
        assert (await app.store.feed_state("temp")).poll_url(temp.url) == temp.url


async def test_410_retires_with_a_system_notice(
    tmp_path: Path, redis_url: str, server: tuple[Site, str]
) -> None:
    site, base = server
    site.routes = {"/gone": status(410)}
    cfg = make_config(tmp_path, [])
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    pubsub = client.pubsub()
    await pubsub.subscribe(keys.SYSTEM_CHANNEL)
    try:
        async with open_app(cfg, redis_url, load_rules(cfg.rule_files())) as app:
            feed = Feed("gone", base + "/gone", 60)
            first = await app.pipeline.poll(feed)
            second = await app.pipeline.poll(feed)
            revived = await app.pipeline.poll(Feed("gone", base + "/elsewhere", 60))
        assert first.status == "retired"
        assert second.status == "retired"
        assert site.hits["/gone"] == 1  # no more requests once retired
        assert revived.status == "failed"  # a changed URL is polled again (404 here)
        msg = await first_message(pubsub)
        assert json.loads(msg["data"])["event"] == "feed.retired"
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]
        await client.aclose()


async def test_403_bot_wall_retried_once_with_the_alternative_agent(
    tmp_path: Path, redis_url: str, server: tuple[Site, str]
) -> None:
    site, _base = server

    async def wall(request: web.Request) -> web.Response:
        if request.headers.get("User-Agent") == "Mozilla/5.0 (compatible; test)":
            return web.Response(body=FEED, content_type="application/rss+xml")
        return web.Response(status=403)

    site.routes = {}
    http = {"allow_private_addresses": True, "alt_user_agent": "Mozilla/5.0 (compatible; test)"}
    cfg = make_config(tmp_path, [], http={**http, **UNTHROTTLED})
    app_ = web.Application()
    app_.router.add_get("/wall", wall)
    ts = TestServer(app_, host="127.0.0.1")
    await ts.start_server()
    try:
        async with open_app(cfg, redis_url, load_rules(cfg.rule_files())) as app:
            outcome = await app.pipeline.poll(Feed("wall", str(ts.make_url("/wall")), 60))
    finally:
        await ts.close()
    assert outcome.status == "ok"
    assert site.hits == {}


async def test_per_host_limits_hold_under_the_real_scheduler(
    tmp_path: Path, redis_url: str, server: tuple[Site, str]
) -> None:
    site, base = server
    site.delay_s = 0.3
    site.routes = {f"/f{i}": ok() for i in range(12)}
    feeds = [{"name": f"f{i}", "url": f"{base}/f{i}", "interval_s": 1} for i in range(12)]
    polite = {"per_host_concurrency": 2, "per_host_spacing_s": 0.05}
    cfg = make_config(tmp_path, feeds, http={"allow_private_addresses": True, **polite})
    async with open_app(cfg, redis_url, load_rules(cfg.rule_files())) as app:
        daemon = Daemon(app)
        run = asyncio.ensure_future(daemon.run())
        await asyncio.sleep(4)
        daemon.stopping.set()
        await asyncio.wait_for(run, timeout=30)
    assert site.max_active <= 2
    assert sum(site.hits.values()) >= 12  # every feed was polled, none starved


async def test_the_daemon_stores_state_due_time_and_lease_release_together(
    tmp_path: Path, redis_url: str, server: tuple[Site, str]
) -> None:
    """One MULTI after each poll (monitor.store.finish_poll): the next poll is
    conditional, the feed is due again, and no lease is left behind."""
    site, base = server
    site.routes = {"/e": ok({"ETag": '"v1"'})}
    cfg = make_config(tmp_path, [{"name": "e", "url": f"{base}/e", "interval_s": 1}],
                      polling={"min_interval_s": 1, "jitter": 0.0001})  # fmt: skip
    async with open_app(cfg, redis_url, load_rules(cfg.rule_files())) as app:
        daemon = Daemon(app)
        run = asyncio.ensure_future(daemon.run())
        for _ in range(100):  # bounded: 10 s
            if site.hits.get("/e", 0) >= 2:
                break
            await asyncio.sleep(0.1)
        daemon.stopping.set()
        await asyncio.wait_for(run, timeout=30)
        state = await app.store.feed_hash("e")
        due = await app.store.due_times()
        leases = await app.store.leases()
    sent = [etag for path, etag in site.if_none_match if path == "/e"]
    assert sent[:2] == [None, '"v1"']  # the first poll's ETag was stored
    assert state["etag"] == '"v1"' and state["last_outcome"] in ("ok", "not_modified")
    assert due["e"] > time.time() - 5 and leases == {}


async def test_shared_and_changing_guids(
    tmp_path: Path, redis_url: str, server: tuple[Site, str]
) -> None:
    site, base = server
    same_guid = rss([{"title": f"Story {i}", "link": f"/s{i}", "guid": "same"} for i in range(3)])
    site.routes = {"/shared": ok(body=same_guid.encode())}
    cfg = make_config(tmp_path, [])
    async with open_app(cfg, redis_url, load_rules(cfg.rule_files())) as app:
        shared = await app.pipeline.poll(Feed("shared", base + "/shared", 60))
        assert shared.new_entries == 3  # not collapsed into one
        site.routes["/edit"] = ok(body=rss([{"title": "A", "link": "/a", "guid": "v1"}]).encode())
        await app.pipeline.poll(Feed("edit", base + "/edit", 60))
        site.routes["/edit"] = ok(
            body=rss([{"title": "A, edited", "link": "/a", "guid": "v2"}]).encode()
        )
        edited = await app.pipeline.poll(Feed("edit", base + "/edit", 60))
        assert edited.new_entries == 0  # same link, new guid: an update, not a new story


async def test_private_addresses_blocked_unless_their_network_is_listed(
    tmp_path: Path, redis_url: str, server: tuple[Site, str]
) -> None:
    site, base = server
    site.routes = {"/f": ok()}
    feed = Feed("f", base + "/f", 60)
    results = []
    for allowed in ([], ["127.0.0.0/8"]):
        cfg = make_config(tmp_path, [], http={"allow_private_addresses": False,
                                              "allowed_networks": allowed})  # fmt: skip
        async with open_app(cfg, redis_url, load_rules(cfg.rule_files())) as app:
            results.append(await app.pipeline.poll(feed))
    assert (results[0].status, results[0].error_kind) == ("failed", "blocked_address")
    assert results[1].status == "ok"
    assert site.hits["/f"] == 1  # the refused poll never reached the server
