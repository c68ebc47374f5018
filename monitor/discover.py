"""Find the feed behind a web address (``feeds add URL``).

``feed_links`` is pure: the feeds an HTML page advertises, from its
``<link rel="alternate" type="application/rss+xml" ...>`` elements, or, when
it has none, from same-host anchors that look like feed addresses.

``discover`` fetches through ``monitor.fetch.fetch``, so the address guard,
the redirect limit and the size cap apply to every request. An address
that already serves a feed is the answer; otherwise the page's candidates
are fetched and parsed in order, at most ``_MAX_CHECKS`` of them, and the
first that parses is chosen. JSON Feed candidates are listed last: the
feed parser does not read JSON Feed, so one is never chosen today.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any
from urllib.parse import urldefrag, urljoin, urlsplit

import aiohttp
import lxml.html
from lxml.etree import ParserError, XMLSyntaxError

from monitor.entries import ParsedFeed
from monitor.errors import FeedParseError, FetchError, MonitorError
from monitor.feedparse import parse_feed
from monitor.fetch import FetchResult, HttpLimits, fetch

_JSON_FEED = "application/feed+json"
_FEED_TYPES = frozenset(
    {"application/rss+xml", "application/atom+xml", "application/rdf+xml", _JSON_FEED}
)
_ANCHOR_ENDINGS = ("/feed", "/rss", ".rss", ".xml", "/atom", "/feed.xml")
_MAX_CHECKS = 3
_PAGE_ACCEPT = (
    "text/html,application/xhtml+xml,application/rss+xml,application/atom+xml,"
    "application/xml;q=0.9,*/*;q=0.8"
)
_FEED_ACCEPT = (
    "application/rss+xml,application/atom+xml,application/rdf+xml,"
    "application/xml;q=0.9,text/xml;q=0.9,*/*;q=0.8"
)


class DiscoveryError(MonitorError):
    """No usable feed was found at or behind ``url``; ``reason`` says why."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(f"{url}: {reason}")

    def __reduce__(self) -> tuple[type[DiscoveryError], tuple[str, str]]:
        return (type(self), (self.url, self.reason))


@dataclass(frozen=True)
class DiscoveredFeed:
    """A feed a page points to; ``type`` is None when found through an anchor."""

    url: str
    title: str
    type: str | None


@dataclass(frozen=True)
class DiscoveryResult:
    """The chosen feed (``url`` after redirects), its title and the page's candidates."""

    url: str
    title: str
    candidates: tuple[DiscoveredFeed, ...]


def feed_links(html: bytes, base_url: str) -> list[DiscoveredFeed]:
    """Feeds advertised by an HTML page, RSS/Atom/RDF first, then JSON Feed, each in page order."""
    root = _parse_html(html)
    if root is None:
        return []
    base = base_url
    for el in root.iter("base"):
        href = _resolve(base_url, el.get("href"))
        if href:
            base = href
            break
    found: dict[str, DiscoveredFeed] = {}
    for el in root.iter("link"):
        rels = (el.get("rel") or "").lower().split()
        kind = (el.get("type") or "").split(";")[0].strip().lower()
        url = _resolve(base, el.get("href"))
        if "alternate" in rels and kind in _FEED_TYPES and url and url not in found:
            found[url] = DiscoveredFeed(url, _text(el.get("title") or ""), kind)
    if found:
        return sorted(found.values(), key=lambda f: f.type == _JSON_FEED)
    host = urlsplit(base_url).hostname
    for el in root.iter("a"):
        url = _resolve(base, el.get("href"))
        if not url or url in found:
            continue
        parts = urlsplit(url)
        if parts.hostname == host and parts.path.lower().rstrip("/").endswith(_ANCHOR_ENDINGS):
            found[url] = DiscoveredFeed(
                url, _text(el.text_content() or el.get("title") or ""), None
            )
    return list(found.values())


async def discover(
    session: aiohttp.ClientSession, url: str, limits: HttpLimits, *, max_bytes: int
) -> DiscoveryResult:
    """The feed at ``url``, or the first working feed its page links to.

    A failed fetch of ``url`` itself raises that ``FetchError``; no feed
    found raises ``DiscoveryError``.
    """
    page = await fetch(session, url, limits, max_bytes=max_bytes, accept=_PAGE_ACCEPT)
    feed = await _parse(page)
    if isinstance(feed, ParsedFeed):
        return DiscoveryResult(page.url, feed.title, ())
    candidates = await asyncio.to_thread(feed_links, page.body, page.url)
    if not candidates:
        raise DiscoveryError(url, f"no feed here ({feed.detail}) and the page links to none")
    failures = []
    for cand in candidates[:_MAX_CHECKS]:
        try:
            res = await fetch(session, cand.url, limits, max_bytes=max_bytes, accept=_FEED_ACCEPT)
        except FetchError as exc:
            failures.append(f"{cand.url}: {exc.kind}")
            continue
        parsed = await _parse(res)
        if isinstance(parsed, ParsedFeed):
            return DiscoveryResult(res.url, parsed.title or cand.title, tuple(candidates))
        failures.append(f"{cand.url}: {parsed.kind}")
    more = len(candidates) - _MAX_CHECKS
    tail = f" ({more} more not tried)" if more > 0 else ""
    raise DiscoveryError(url, f"no linked feed works: {'; '.join(failures)}{tail}")


async def _parse(res: FetchResult) -> ParsedFeed | FeedParseError:
    """The parsed feed, or why the body is not one.

    parse_feed is CPU-bound and holds the GIL for most of its run: the body
    is at most ``max_bytes`` (the caller's cap) and it runs in a thread, so
    the event loop is delayed by at most one such parse, never blocked on it.
    """
    try:
        return await asyncio.to_thread(parse_feed, res.body, res.url, "discover", res.content_type)
    except FeedParseError as exc:
        return exc


def _parse_html(data: bytes) -> Any:
    try:
        data.decode("utf-8")
        encoding: str | None = "utf-8"
    except UnicodeDecodeError:
        encoding = None  # libxml2 reads <meta charset>, else assumes latin-1
    try:
        return lxml.html.document_fromstring(data, parser=lxml.html.HTMLParser(encoding=encoding))
    except (ParserError, XMLSyntaxError, ValueError):
        return None  # empty or not HTML at all


def _resolve(base: str, href: str | None) -> str | None:
    """``href`` made absolute against ``base``, without fragment; None unless http(s)."""
    if not href or not href.strip():
        return None
    try:
        url = urldefrag(urljoin(base, href.strip())).url
        parts = urlsplit(url)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:
        return None
    return url if ok else None


def _text(value: str) -> str:
    return " ".join(value.split())
