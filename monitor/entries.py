"""Domain objects for feeds and their entries, and entry normalisation.

Pure: turns a feedparser entry (a plain dict by the time it gets here) into
an ``Entry`` with a stable identity, without any I/O.
"""

from __future__ import annotations

import calendar
import contextlib
import hashlib
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

from monitor.hublinks import HubLinks

_TRACKING_PARAMS = ("utm_", "fbclid", "gclid", "mc_cid", "mc_eid", "ocid", "cmpid")


@dataclass(frozen=True)
class Feed:
    """A feed the daemon polls (from the config)."""

    name: str
    url: str
    interval_s: float
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class Entry:
    """One item of a feed, normalised."""

    feed: str
    identity: str
    title: str
    link: str | None
    summary: str
    content: str
    published: datetime | None
    lang: str | None = None


@dataclass(frozen=True)
class ParsedFeed:
    """What a feed document yielded; ``warning`` is feedparser's bozo note."""

    title: str
    lang: str | None
    entries: tuple[Entry, ...]
    warning: str | None = None
    # The feed's own scheduling hints (RSS <ttl>, sy:update*, <skipHours>, <skipDays>).
    ttl_s: float | None = None
    update_period_s: float | None = None
    skip_hours: tuple[int, ...] = ()  # GMT hours 0-23
    skip_days: tuple[str, ...] = ()  # "Monday" ... "Sunday"
    # WebSub: the hubs and the self URL the feed names (rel="hub", rel="self").
    hub_links: HubLinks = field(default_factory=HubLinks)


@dataclass(frozen=True)
class Article:
    """The text the rules are matched against: an entry plus its page body."""

    entry: Entry
    body: str
    body_source: str  # "page" or "feed"
    body_note: str | None = None  # why the page body was not used
    lang: str | None = None
    extra: Mapping[str, str] = field(default_factory=dict)

    @property
    def title(self) -> str:
        return self.entry.title


def normalise_link(link: str) -> str:
    """A canonical form of a URL for identity: no fragment, no tracking params."""
    try:
        parts = urlsplit(link.strip())
        port = parts.port
    except ValueError:  # bad port or IPv6 literal: a stranger's typo, not our crash
        return link.strip()
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"  # IPv6 literal
    default = {"http": 80, "https": 443}.get(scheme)
    netloc = host if port in (None, default) else f"{host}:{port}"
    query = urlencode(
        [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if not _tracking(k)]
    )
    path = parts.path or "/"
    return urlunsplit((scheme, netloc, path, query, ""))


def _tracking(key: str) -> bool:
    k = key.lower()
    return any(k.startswith(p) for p in _TRACKING_PARAMS)


def entry_identity(guid: str | None, link: str | None, title: str, summary: str) -> str:
    """guid, else the normalised link, else a hash of the content."""
    if guid and guid.strip():
        return "guid:" + guid.strip()
    if link and link.strip():
        return "link:" + normalise_link(link)
    data = f"{title}\x00{summary}".encode("utf-8", "surrogatepass")
    digest = hashlib.sha256(data).hexdigest()[:32]
    return "hash:" + digest


def _text(value: Any) -> str:
    if not isinstance(value, str):
        return ""
    # Lone surrogates (from broken bytes) cannot be encoded for Redis or JSON.
    return value.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


def _published(raw: Mapping[str, Any]) -> datetime | None:
    for key in ("published_parsed", "updated_parsed", "created_parsed"):
        st = raw.get(key)
        if isinstance(st, time.struct_time | tuple) and len(st) >= 6:
            try:
                return datetime.fromtimestamp(calendar.timegm(tuple(st)), tz=UTC)
            except (OverflowError, ValueError, OSError):
                continue
    return None


def entry_from_raw(raw: Mapping[str, Any], feed_name: str, feed_url: str) -> Entry:
    """Normalise one feedparser entry; relative links resolve against the feed URL."""
    title = _text(raw.get("title")).strip()
    link_raw = _text(raw.get("link")).strip()
    try:
        link = urljoin(feed_url, link_raw) if link_raw else None
    except ValueError:  # e.g. "http://[::1/": keep it; fetching it fails cleanly
        link = link_raw
    summary = _text(raw.get("summary"))
    contents = raw.get("content") or []
    content = "\n\n".join(
        _text(c.get("value")) for c in contents if isinstance(c, Mapping) and c.get("value")
    )
    guid = _text(raw.get("id")) or None
    lang = None
    for c in contents:
        if isinstance(c, Mapping) and c.get("language"):
            lang = str(c["language"])
            break
    return Entry(
        feed=feed_name,
        identity=entry_identity(guid, link, title, summary),
        title=title,
        link=link,
        summary=summary,
        content=content,
        published=_published(raw),
        lang=lang,
    )


def fix_shared_guids(entries: Sequence[Entry]) -> list[Entry]:
    """Some feeds give every item the same guid: those items fall back to
    their links, or each would hide the others."""
    links: dict[str, set[str | None]] = {}
    for e in entries:
        links.setdefault(e.identity, set()).add(e.link)
    return [
        replace(e, identity="link:" + normalise_link(e.link))
        if e.identity.startswith("guid:") and len(links[e.identity]) > 1 and e.link
        else e
        for e in entries
    ]


def seen_keys(entry: Entry) -> list[str]:
    """What marks an entry as seen: its identity and, for a guid, its link too,
    so a guid that changes when a headline is edited does not make a new story."""
    keys = [entry.identity]
    if entry.identity.startswith("guid:") and entry.link:
        with contextlib.suppress(ValueError):
            keys.append("link:" + normalise_link(entry.link))
    return keys


def fingerprint(entry: Entry) -> str:
    """Changes when the feed changes a story's headline or text."""
    data = f"{entry.title}\x00{entry.summary}\x00{entry.content}"
    return hashlib.sha256(data.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def is_within_backfill(entry: Entry, now: datetime, window_s: float) -> bool:
    """Undated entries count as recent: we cannot tell, and must not drop them."""
    if entry.published is None:
        return True
    return (now - entry.published).total_seconds() <= window_s
