"""Where a feed's WebSub hub is: ``rel="hub"`` and ``rel="self"`` links in
the HTTP ``Link`` header or in the feed itself (pure; no I/O).

The header wins over the document (WebSub 4: a publisher may announce the
hub either way, and the header is what the server says about this very
response). The topic is the ``self`` URL; a feed that names a hub but no
``self`` is subscribed under the URL it was fetched from.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit


@dataclass(frozen=True)
class HubLinks:
    """The hubs and the ``self`` URL one source announced."""

    hubs: tuple[str, ...] = ()
    self_url: str | None = None


@dataclass(frozen=True)
class Discovery:
    """What to subscribe to: the first hub, and the topic to name to it."""

    hub: str
    topic: str


def parse_link_header(value: str) -> list[tuple[str, frozenset[str]]]:
    """RFC 8288 ``Link`` values as (target, rels), rels lower-cased.

    Commas and semicolons inside ``<...>`` or quoted strings do not split;
    ``rel="hub self"`` names two relations. Malformed parts are skipped.
    """
    links: list[tuple[str, frozenset[str]]] = []
    i, n = 0, len(value)
    while i < n:
        start = value.find("<", i)
        if start < 0:
            break
        end = value.find(">", start + 1)
        if end < 0:
            break
        target = value[start + 1 : end].strip()
        params, i = _params(value, end + 1)
        rels = frozenset(r.lower() for r in params.get("rel", "").split())
        if target:
            links.append((target, rels))
    return links


def _params(value: str, i: int) -> tuple[dict[str, str], int]:
    """The ``; key=value`` parameters after a target, up to the next comma."""
    params: dict[str, str] = {}
    n = len(value)
    while i < n:
        c = value[i]
        if c == ",":
            return params, i + 1
        if c != ";":
            i += 1
            continue
        i += 1
        eq_key = i
        while i < n and value[i] not in "=;,":
            i += 1
        key = value[eq_key:i].strip().lower()
        val = ""
        if i < n and value[i] == "=":
            i += 1
            while i < n and value[i] in " \t":
                i += 1
            if i < n and value[i] == '"':
                i += 1
                chars = []
                while i < n and value[i] != '"':
                    if value[i] == "\\" and i + 1 < n:
                        i += 1
                    chars.append(value[i])
                    i += 1
                i += 1  # the closing quote
                val = "".join(chars)
            else:
                start = i
                while i < n and value[i] not in ";,":
                    i += 1
                val = value[start:i].strip()
        if key and key not in params:  # RFC 8288: the first occurrence counts
            params[key] = val
    return params, i


def header_links(value: str | None, base: str) -> HubLinks:
    """Hubs and self from a ``Link`` header, resolved against the response URL."""
    if not value:
        return HubLinks()
    links = [(_absolute(t, base), rels) for t, rels in parse_link_header(value)]
    return _collect(links)


def feed_links(links: Iterable[Mapping[str, Any]], base: str) -> HubLinks:
    """Hubs and self from a parsed feed's links (feedparser's ``feed.links``:
    Atom ``<link>`` and RSS ``<atom:link>``)."""
    found = []
    for link in links:
        href = str(link.get("href") or "").strip()
        rels = frozenset(str(link.get("rel") or "").lower().split())
        if href:
            found.append((_absolute(href, base), rels))
    return _collect(found)


def _collect(links: Iterable[tuple[str | None, frozenset[str]]]) -> HubLinks:
    hubs: list[str] = []
    self_url = None
    for target, rels in links:
        if target is None:
            continue
        if "hub" in rels and target not in hubs:
            hubs.append(target)
        if "self" in rels and self_url is None:
            self_url = target
    return HubLinks(tuple(hubs), self_url)


def _absolute(target: str, base: str) -> str | None:
    """An http(s) URL, or None: a hub or topic elsewhere cannot be used."""
    url = urljoin(base, target)
    return url if urlsplit(url).scheme in ("http", "https") else None


def discover(header: HubLinks, document: HubLinks, fetched_url: str) -> Discovery | None:
    """The hub and topic to subscribe to, or None when the feed names no hub."""
    hubs = header.hubs or document.hubs
    if not hubs:
        return None
    return Discovery(hubs[0], header.self_url or document.self_url or fetched_url)
