"""monitor.discover: feed links in HTML pages (all written here), and discovery
against a real aiohttp server on 127.0.0.1 (nothing else is contacted).
"""

from __future__ import annotations

import pickle
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from monitor.discover import (
    DiscoveredFeed,
    DiscoveryError,
    DiscoveryResult,
    discover,
    feed_links,
)
from monitor.errors import FetchError, MonitorError
from monitor.fetch import HttpLimits, make_session

PAGE_URL = "https://news.example/world/index.html"
RSS = "application/rss+xml"
ATOM = "application/atom+xml"
JSON = "application/feed+json"


def html(head: str, body: str = "") -> bytes:
    page = f"<!DOCTYPE html><html><head><title>T</title>{head}</head><body>{body}</body></html>"
    return page.encode()


def links(head: str, body: str = "", url: str = PAGE_URL) -> list[tuple[str, str, str | None]]:
    return [(f.url, f.title, f.type) for f in feed_links(html(head, body), url)]


# -------------------------------------------------------------- feed_links


def test_link_elements_in_page_order_json_feed_last() -> None:
    head = (
        '<link rel="stylesheet" href="/s.css">'
        '<link rel="alternate" type="application/feed+json" href="/feed.json" title="JSON">'
        '<link rel="alternate" type="application/rss+xml" href="/rss.xml" title=" Main \n feed ">'
        '<link rel="alternate" type="text/html" hreflang="fr" href="/fr/">'
        '<link rel="alternate" type="application/atom+xml" href="atom.xml" title="Atom">'
        '<link rel="alternate" type="application/rdf+xml" href="https://other.example/rdf">'
    )
    assert links(head) == [
        ("https://news.example/rss.xml", "Main feed", RSS),
        ("https://news.example/world/atom.xml", "Atom", ATOM),
        ("https://other.example/rdf", "", "application/rdf+xml"),
        ("https://news.example/feed.json", "JSON", JSON),
    ]


def test_rel_and_type_in_any_case_with_several_tokens() -> None:
    head = (
        '<LINK REL="Alternate Feed" TYPE="Application/RSS+XML" HREF="/a.rss">'
        "<link rel='home alternate' type='application/atom+xml; charset=utf-8' href='/b.atom'>"
        '<link rel="alternative" type="application/rss+xml" href="/not-alternate.rss">'
        '<link rel="alternate" href="/no-type.rss">'
        '<link rel="alternate" type="application/rss+xml">'
        '<link rel="alternate" type="application/rss+xml" href="  ">'
    )
    assert links(head) == [
        ("https://news.example/a.rss", "", RSS),
        ("https://news.example/b.atom", "", ATOM),
    ]


def test_base_href_protocol_relative_fragments_and_duplicates() -> None:
    head = (
        '<base href="https://cdn.example/site/">'
        '<link rel="alternate" type="application/rss+xml" href="feeds/main.xml#top">'
        '<link rel="alternate" type="application/rss+xml" href="feeds/main.xml">'
        '<link rel="alternate" type="application/atom+xml" href="//mirror.example/atom">'
        '<link rel="alternate" type="application/atom+xml" href="javascript:alert(1)">'
        '<link rel="alternate" type="application/atom+xml" href="http://[::1/">'
    )
    assert links(head) == [
        ("https://cdn.example/site/feeds/main.xml", "", RSS),
        ("https://mirror.example/atom", "", ATOM),
    ]


def test_relative_base_href_resolves_against_the_page() -> None:
    head = '<base href="../feeds/"><link rel="alternate" type="application/rss+xml" href="x.rss">'
    assert links(head) == [("https://news.example/feeds/x.rss", "", RSS)]


def test_link_elements_outside_head_count_too() -> None:
    body = '<link rel="alternate" type="application/rss+xml" href="/late.rss">'
    assert links("", body) == [("https://news.example/late.rss", "", RSS)]


def test_anchor_fallback_same_host_only() -> None:
    body = (
        '<a href="/feed/">Subscribe  via RSS</a>'
        '<a href="https://news.example/world/rss">World</a>'
        '<a href="/podcast.rss" title="Podcast"></a>'
        '<a href="/sitemap.XML">Sitemap</a>'
        '<a href="/atom">Atom</a>'
        '<a href="https://other.example/feed">Elsewhere</a>'
        '<a href="/article/123">An article</a>'
        '<a href="/feed/">Duplicate</a>'
        '<a href="mailto:x@news.example">Mail</a>'
    )
    assert links("", body) == [
        ("https://news.example/feed/", "Subscribe via RSS", None),
        ("https://news.example/world/rss", "World", None),
        ("https://news.example/podcast.rss", "Podcast", None),
        ("https://news.example/sitemap.XML", "Sitemap", None),
        ("https://news.example/atom", "Atom", None),
    ]


def test_anchors_are_ignored_when_link_elements_exist() -> None:
    head = '<link rel="alternate" type="application/atom+xml" href="/atom.xml">'
    assert links(head, '<a href="/feed">Feed</a>') == [("https://news.example/atom.xml", "", ATOM)]


def test_encodings() -> None:
    latin1 = (
        b'<html><head><meta charset="iso-8859-1">'
        b'<link rel="alternate" type="application/rss+xml" href="/r" title="Caf\xe9"></head></html>'
    )
    utf8 = latin1.replace(b"iso-8859-1", b"utf-8").replace(b"\xe9", "é".encode())
    assert feed_links(latin1, PAGE_URL)[0].title == "Café"
    assert feed_links(utf8, PAGE_URL)[0].title == "Café"


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"   ",
        b"\x00\x01\x02",
        html("", "<p>No feeds here. <a href='/about'>About</a></p>"),
        b'{"json": "document"}',
    ],
)
def test_nothing_found(data: bytes) -> None:
    assert feed_links(data, PAGE_URL) == []


# ---------------------------------------------------------------- discover


def rss(title: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
        f"<title>{title}</title><link>http://site.example/</link>"
        "<item><title>One</title><link>http://site.example/1</link><guid>1</guid></item>"
        "</channel></rss>"
    ).encode()


ATOM_DOC = (
    b'<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom">'
    b"<title>Atom Wire</title><id>urn:x</id><updated>2025-03-04T08:00:00Z</updated></feed>"
)


@dataclass
class Site:
    """Serves ``routes`` (path -> status, content type, body, headers), counting hits."""

    routes: dict[str, tuple[int, str, bytes, dict[str, str]]] = field(default_factory=dict)
    hits: dict[str, int] = field(default_factory=dict)
    base: str = ""

    def page(self, path: str, body: bytes) -> None:
        self.routes[path] = (200, "text/html", body, {})

    def feed(self, path: str, body: bytes, content_type: str = RSS) -> None:
        self.routes[path] = (200, content_type, body, {})

    def redirect(self, path: str, to: str, status: int = 301) -> None:
        self.routes[path] = (status, "text/plain", b"", {"Location": to})

    async def handle(self, request: web.Request) -> web.Response:
        self.hits[request.path] = self.hits.get(request.path, 0) + 1
        if request.path not in self.routes:
            return web.Response(status=404, text="not found")
        status, ctype, body, headers = self.routes[request.path]
        return web.Response(status=status, body=body, content_type=ctype, headers=headers)

    def url(self, path: str) -> str:
        return self.base + path


def limits(*, allow_private: bool = True) -> HttpLimits:
    return HttpLimits(
        user_agent="feed-monitor-test",
        timeout_s=5,
        connect_timeout_s=5,
        max_redirects=3,
        allow_private_addresses=allow_private,
    )


@pytest.fixture
async def site() -> AsyncIterator[Site]:
    s = Site()
    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", s.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    s.base = str(server.make_url("")).rstrip("/")
    try:
        yield s
    finally:
        await server.close()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with make_session(limits(), concurrency=4) as s:
        yield s


async def run(
    session: aiohttp.ClientSession, url: str, max_bytes: int = 100_000
) -> DiscoveryResult:
    return await discover(session, url, limits(), max_bytes=max_bytes)


async def failure(session: aiohttp.ClientSession, url: str) -> DiscoveryError:
    with pytest.raises(DiscoveryError) as info:
        await run(session, url)
    assert info.value.url == url
    assert isinstance(info.value, MonitorError)
    return info.value


def link(path: str, kind: str = RSS, title: str = "") -> str:
    return f'<link rel="alternate" type="{kind}" href="{path}" title="{title}">'


async def test_home_page_linking_to_its_feed(site: Site, session: aiohttp.ClientSession) -> None:
    site.page("/", html(link("/feeds/world.xml", title="World (link title)")))
    site.feed("/feeds/world.xml", rss("World Wire"))
    result = await run(session, site.url("/"))
    assert result == DiscoveryResult(
        url=site.url("/feeds/world.xml"),
        title="World Wire",
        candidates=(DiscoveredFeed(site.url("/feeds/world.xml"), "World (link title)", RSS),),
    )


async def test_url_that_is_already_a_feed(site: Site, session: aiohttp.ClientSession) -> None:
    site.feed("/atom", ATOM_DOC, content_type=ATOM)
    result = await run(session, site.url("/atom"))
    assert result == DiscoveryResult(site.url("/atom"), "Atom Wire", ())
    assert site.hits == {"/atom": 1}


async def test_empty_feed_is_still_a_feed(site: Site, session: aiohttp.ClientSession) -> None:
    empty = b'<?xml version="1.0"?><rss version="2.0"><channel><title>Quiet</title></channel></rss>'
    site.feed("/quiet.rss", empty)
    assert (await run(session, site.url("/quiet.rss"))).title == "Quiet"


async def test_broken_first_candidate_good_second(
    site: Site, session: aiohttp.ClientSession
) -> None:
    site.page("/", html(link("/gone.xml") + link("/atom.xml", ATOM, "Atom (link)")))
    site.feed("/atom.xml", ATOM_DOC, content_type=ATOM)
    result = await run(session, site.url("/"))
    assert result.url == site.url("/atom.xml")
    assert result.title == "Atom Wire"
    assert [c.url for c in result.candidates] == [site.url("/gone.xml"), site.url("/atom.xml")]
    assert site.hits == {"/": 1, "/gone.xml": 1, "/atom.xml": 1}


async def test_candidate_that_is_not_a_feed_is_skipped(
    site: Site, session: aiohttp.ClientSession
) -> None:
    site.page("/", html(link("/fake.rss") + link("/real.rss", title="Real (link)")))
    site.page("/fake.rss", html("", "<p>An HTML page behind a feed link</p>"))
    site.feed("/real.rss", rss(""))
    result = await run(session, site.url("/"))
    # The feed has no title of its own: the link's title is used.
    assert (result.url, result.title) == (site.url("/real.rss"), "Real (link)")


async def test_page_without_feed(site: Site, session: aiohttp.ClientSession) -> None:
    site.page("/", html("", "<p>Nothing to subscribe to. <a href='/about'>About</a></p>"))
    err = await failure(session, site.url("/"))
    assert err.reason == "no feed here (got an HTML page, not a feed) and the page links to none"
    assert str(err) == f"{site.url('/')}: {err.reason}"
    assert site.hits == {"/": 1}
    copy = pickle.loads(pickle.dumps(err))
    assert (copy.url, copy.reason) == (err.url, err.reason)


async def test_at_most_three_candidates_are_fetched(
    site: Site, session: aiohttp.ClientSession
) -> None:
    site.page("/", html("".join(link(f"/f{i}.xml") for i in range(5))))
    site.page("/f1.xml", b"<html><body>not a feed</body></html>")
    site.feed("/f2.xml", b"\x00garbage that is not xml")
    site.feed("/f3.xml", rss("Never reached"))
    err = await failure(session, site.url("/"))
    assert err.reason == (
        f"no linked feed works: {site.url('/f0.xml')}: http_404; "
        f"{site.url('/f1.xml')}: not_a_feed; {site.url('/f2.xml')}: parse_error (2 more not tried)"
    )
    assert site.hits == {"/": 1, "/f0.xml": 1, "/f1.xml": 1, "/f2.xml": 1}


async def test_redirect_to_the_feed(site: Site, session: aiohttp.ClientSession) -> None:
    site.redirect("/old-feed", "/feeds/new.xml")
    site.feed("/feeds/new.xml", rss("Moved Wire"))
    result = await run(session, site.url("/old-feed"))
    assert (result.url, result.title) == (site.url("/feeds/new.xml"), "Moved Wire")


async def test_redirected_page_and_candidate(site: Site, session: aiohttp.ClientSession) -> None:
    site.redirect("/", "/en/", status=302)
    site.page("/en/", html(link("rss")))  # relative to the page after the redirect
    site.redirect("/en/rss", "/en/rss.xml", status=308)
    site.feed("/en/rss.xml", rss("English"))
    result = await run(session, site.url("/"))
    assert result.url == site.url("/en/rss.xml")
    assert result.candidates == (DiscoveredFeed(site.url("/en/rss"), "", RSS),)


async def test_anchor_fallback(site: Site, session: aiohttp.ClientSession) -> None:
    site.page("/blog/", html("", "<a href='/blog/post-1'>Post</a> <a href='/blog/feed/'>RSS</a>"))
    site.feed("/blog/feed/", rss("Blog"))
    result = await run(session, site.url("/blog/"))
    assert (result.url, result.title) == (site.url("/blog/feed/"), "Blog")


async def test_failed_page_fetch_is_a_fetch_error(
    site: Site, session: aiohttp.ClientSession
) -> None:
    with pytest.raises(FetchError) as info:
        await run(session, site.url("/missing"))
    assert info.value.kind == "http_404"


async def test_size_cap_applies(site: Site, session: aiohttp.ClientSession) -> None:
    site.feed("/big.xml", rss("x" * 5000))
    with pytest.raises(FetchError) as info:
        await run(session, site.url("/big.xml"), max_bytes=1024)
    assert info.value.kind == "too_large"


async def test_address_guard_applies(site: Site) -> None:
    site.feed("/feed.xml", rss("Private"))
    strict = limits(allow_private=False)
    async with make_session(strict, concurrency=4) as guarded:
        with pytest.raises(FetchError) as info:
            await discover(guarded, site.url("/feed.xml"), strict, max_bytes=100_000)
    assert info.value.kind == "blocked_address"
    assert site.hits == {}
