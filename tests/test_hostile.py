"""Hostile and broken feeds: each is marked with a clear error kind, and
the pipeline goes on serving every other feed. Served for real by an aiohttp
server on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import gzip
import html
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from monitor.daemon import open_app
from monitor.entries import Feed
from monitor.rules import load_rules
from tests.conftest import ROOT, UNTHROTTLED, make_config
from tests.servers import page, rss, stream_entries

SEED = (ROOT / "seeds" / "000_79a58b876351234c.txt").read_text(encoding="utf-8")
GOOD_TITLE = "Kina og Russland med ny fellesøvelse"

LAUGHS = (
    '<?xml version="1.0"?><!DOCTYPE rss ['
    + '<!ENTITY a0 "lol">'
    + "".join(f'<!ENTITY a{i} "{f"&a{i - 1};" * 10}">' for i in range(1, 10))
    + ']><rss version="2.0"><channel><title>t</title>'
    + "<item><title>&a9;</title><guid>x</guid></item></channel></rss>"
)
QUADRATIC = (
    '<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY x "' + "y" * 50_000 + '">]>'
    '<rss version="2.0"><channel><title>t</title><item><title>'
    + "&x;" * 15_000
    + "</title><guid>q</guid></item></channel></rss>"
)
EXTERNAL = (
    '<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
    '<rss version="2.0"><channel><title>t</title><item><title>a &xxe; b</title>'
    "<guid>e</guid></item></channel></rss>"
)


async def endless(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "application/rss+xml"})
    await resp.prepare(request)
    chunk = b"<item>" + b"x" * 65_530
    for _ in range(100_000):  # ~6.5 GB if nobody stopped reading; bounded anyway
        await resp.write(chunk)
    return resp


async def trickle(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "application/rss+xml"})
    await resp.prepare(request)
    for _ in range(60):  # one byte every 0.2 s: never idle, never finished
        await resp.write(b"<")
        await asyncio.sleep(0.2)
    return resp


async def reset(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "application/rss+xml",
                                       "Content-Length": "100000"})  # fmt: skip
    await resp.prepare(request)
    await resp.write(b'<?xml version="1.0"?><rss version="2.0"><channel><title>t')
    assert request.transport is not None
    request.transport.abort()
    return resp


async def bomb(_request: web.Request) -> web.Response:
    body = gzip.compress(b"<" * 50_000_000, compresslevel=9)  # ~50 KB on the wire
    return web.Response(body=body, headers={"Content-Encoding": "gzip",
                                            "Content-Type": "application/rss+xml"})  # fmt: skip


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def static(body: bytes, content_type: str) -> Handler:
    async def handler(_request: web.Request) -> web.StreamResponse:
        return web.Response(body=body, headers={"Content-Type": content_type})

    return handler


def redirect(to: str) -> Handler:
    async def handler(_request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(to)

    return handler


def build_app() -> web.Application:
    paras = [html.escape(p) for p in SEED.split("\n\n")[1:] if p.strip()]
    good_feed = rss([{"title": GOOD_TITLE, "link": "/good.html", "guid": "good"}])
    big_feed = (
        '<?xml version="1.0"?><rss version="2.0"><channel><title>big</title>'
        + "".join(f"<item><title>n{i}</title><guid>g{i}</guid></item>" for i in range(100_000))
        + "</channel></rss>"
    )
    slow_page = (
        "<html><body>"
        + "".join(f"<div><p>Paragraph {i} " + "word " * 40 + "</p></div>" for i in range(20_000))
        + "</body></html>"
    )
    summary = html.escape(SEED.split("\n\n")[2])
    slow_feed = rss(
        [{"title": GOOD_TITLE, "link": "/slow.html", "guid": "slow", "description": summary}]
    )
    routes = {
        "/good.xml": static(good_feed.encode(), "application/rss+xml"),
        "/good.html": static(page(GOOD_TITLE, paras, "nb").encode(), "text/html"),
        "/laughs.xml": static(LAUGHS.encode(), "application/rss+xml"),
        "/quadratic.xml": static(QUADRATIC.encode(), "application/rss+xml"),
        "/external.xml": static(EXTERNAL.encode(), "application/rss+xml"),
        "/html.xml": static(b"<!DOCTYPE html><html><body><p>Hi</p></body></html>", "text/html"),
        "/empty.xml": static(b"", "application/rss+xml"),
        "/bad-utf8.xml": static(
            rss([{"title": "caf\udcff", "guid": "u"}]).encode("utf-8", "surrogateescape"),
            "application/rss+xml; charset=utf-8",
        ),
        "/wrong-charset.xml": static(
            rss([{"title": "Москва", "guid": "w"}])
            .replace('encoding="utf-8"', "")
            .encode("cp1251"),
            "application/rss+xml; charset=windows-1251",
        ),
        "/big.xml": static(big_feed.encode(), "application/rss+xml"),
        "/slow-page.xml": static(slow_feed.encode(), "application/rss+xml"),
        "/slow.html": static(slow_page.encode(), "text/html"),
        "/fat-entry.xml": static(
            rss([{"title": "fat", "guid": "f", "description": "x" * 50_000_000}]).encode(),
            "application/rss+xml",
        ),
    }
    app = web.Application()
    for path, handler in routes.items():
        app.router.add_get(path, handler)
    app.router.add_get("/endless.xml", endless)
    app.router.add_get("/trickle.xml", trickle)
    app.router.add_get("/reset.xml", reset)
    app.router.add_get("/bomb.xml", bomb)
    app.router.add_get("/loop.xml", redirect("/loop2.xml"))
    app.router.add_get("/loop2.xml", redirect("/loop.xml"))
    return app


@pytest.fixture
async def hostile() -> AsyncIterator[str]:
    server = TestServer(build_app(), host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


CASES = [
    # (path, expected status, expected error kind)
    ("/laughs.xml", "ok", None),
    ("/quadratic.xml", "ok", None),
    ("/external.xml", "ok", None),
    ("/endless.xml", "failed", "too_large"),
    ("/bomb.xml", "failed", "too_large"),
    ("/trickle.xml", "failed", "timeout"),
    ("/reset.xml", "failed", "connect"),
    ("/loop.xml", "failed", "redirect_loop"),
    ("/html.xml", "failed", "not_a_feed"),
    ("/empty.xml", "failed", "not_a_feed"),
    ("/bad-utf8.xml", "ok", None),
    ("/wrong-charset.xml", "ok", None),
    ("/big.xml", "ok", None),
    ("/fat-entry.xml", "failed", "too_large"),
]


async def test_every_hostile_feed_is_contained(
    tmp_path: Path, redis_url: str, hostile: str
) -> None:
    feeds = [Feed(p.strip("/").removesuffix(".xml"), hostile + p, 60) for p, _, _ in CASES]
    good = Feed("good", hostile + "/good.xml", 60)
    cfg = make_config(
        tmp_path, [], http={"allow_private_addresses": True, "timeout_s": 3,
                            "max_feed_bytes": 6_000_000, **UNTHROTTLED},
        max_new_entries_per_poll=50,
    )  # fmt: skip
    async with open_app(cfg, redis_url, load_rules(cfg.rule_files())) as app:
        outcomes = await asyncio.gather(*(app.pipeline.poll(f) for f in [*feeds, good]))
        state = {f.name: await app.store.feed_state(f.name) for f in feeds}
        titles = await app.store.client.hgetall("feed-monitor:feed:external")
    *hostile_outcomes, good_outcome = outcomes
    for (path, status, kind), outcome in zip(CASES, hostile_outcomes, strict=True):
        assert (outcome.status, outcome.error_kind) == (status, kind), (path, outcome)
    assert good_outcome.alerts == 1  # every other feed unaffected
    assert state["big"].known
    assert titles["last_outcome"] == "ok"
    big = next(o for o in hostile_outcomes if o.feed == "big")
    assert big.entries == 100_000
    assert big.new_entries == 50  # the rest are deferred to later polls, not dropped


async def test_entity_tricks_never_expand(tmp_path: Path, redis_url: str, hostile: str) -> None:
    cfg = make_config(tmp_path, [])
    from monitor.feedparse import parse_feed

    for doc in (LAUGHS, QUADRATIC, EXTERNAL):
        parsed = parse_feed(doc.encode(), hostile + "/x.xml", "x", "application/rss+xml")
        for e in parsed.entries:
            assert len(e.title) <= len(doc)  # nothing grew: no entity was expanded
            assert "root:" not in e.title
    assert cfg.http.max_feed_bytes > 0


async def test_stuck_extraction_is_killed_and_the_feed_text_used(
    tmp_path: Path, redis_url: str, hostile: str
) -> None:
    cfg = make_config(tmp_path, [], extraction={"workers": 1, "timeout_s": 0.05})
    async with open_app(cfg, redis_url, load_rules(cfg.rule_files())) as app:
        outcome = await app.pipeline.poll(Feed("slow", hostile + "/slow-page.xml", 60))
        # The pool still works after its worker was killed.
        again = await app.pipeline.poll(Feed("good", hostile + "/good.xml", 60))
    assert outcome.status == "ok"
    assert outcome.new_entries == 1
    assert again.status == "ok"
    notes = [f["alert"] for f in await stream_entries(redis_url)]
    assert any('"body_source":"feed"' in n and "extraction" in n for n in notes)
