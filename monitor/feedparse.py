"""Turn fetched feed bytes into a ``ParsedFeed`` (runs in a worker process).

feedparser is CPU-bound and holds the GIL, so the daemon calls ``parse_feed``
through a process pool. Before feedparser sees the bytes, DOCTYPE and ENTITY
declarations are removed: nested internal entities make feedparser expand a
110 KB document into a billion characters.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from typing import Any

import feedparser
import lxml.html
from lxml.etree import ParserError

from monitor.entries import ParsedFeed, entry_from_raw
from monitor.errors import FeedParseError
from monitor.hublinks import feed_links
from monitor.schedule import skip_days_of, skip_hours_of, ttl_seconds, update_period_seconds

# Every pattern here runs on hostile bytes, so none may backtrack more than
# linearly: each alternative starts with a different character, and the
# DOCTYPE pattern is tried only where the first "<!DOCTYPE" is.
_DOCTYPE_AT = re.compile(rb"<!DOCTYPE", re.IGNORECASE)
_DOCTYPE = re.compile(
    rb"""<!DOCTYPE[^\[>]*(?:\[(?:[^\]"']|"[^"]*"|'[^']*')*\]\s*)?>""", re.IGNORECASE
)
# An unterminated declaration is cut to the end of the document.
_ENTITY = re.compile(rb"<!ENTITY[^>]*>?", re.IGNORECASE)
_HTML_START = re.compile(
    rb"^(?:\xef\xbb\xbf)?\s*(?:<\?xml[^>]*>\s*)?(?:<!--(?:[^-]|-(?!->))*-->\s*)*"
    rb"<(?:!doctype\s+html|html)\b",
    re.IGNORECASE,
)
_TAG_HINT = re.compile(r"<[a-zA-Z/!]")
_SPACES = re.compile(r"[ \t\r\f\v]+")
_BLANK_LINES = re.compile(r"\n\s*\n\s*")
# feedparser keeps only the last <hour>/<day> of <skipHours>/<skipDays>, so
# the first such block is read from the bytes. Tags stop at "<" or ">" and
# the closing tag is searched once, so these stay linear on hostile bytes.
_PREFIX = rb"<(?:[A-Za-z_][\w.-]*:)?"


def _skip_patterns(block: bytes, item: bytes) -> tuple[re.Pattern[bytes], ...]:
    return (
        re.compile(_PREFIX + block + rb"\b[^<>]*>", re.IGNORECASE),
        re.compile(rb"</(?:[A-Za-z_][\w.-]*:)?" + block + rb"\s*>", re.IGNORECASE),
        re.compile(_PREFIX + item + rb"\b[^<>]*>([^<]*)<", re.IGNORECASE),
    )


_SKIP_HOURS = _skip_patterns(b"skipHours", b"hour")
_SKIP_DAYS = _skip_patterns(b"skipDays", b"day")


def strip_declarations(data: bytes) -> bytes:
    """Remove DOCTYPE (with any internal subset) and ENTITY declarations."""
    start = _DOCTYPE_AT.search(data)
    if start:
        m = _DOCTYPE.match(data, start.start())
        if m:
            data = data[: m.start()] + data[m.end() :]
    return _ENTITY.sub(b"", data)


def html_to_text(fragment: str) -> str:
    """Plain text of an HTML fragment, paragraphs kept as blank-line breaks."""
    if not fragment or not _TAG_HINT.search(fragment):
        return html.unescape(fragment).strip()
    try:
        root = lxml.html.fragment_fromstring(fragment, create_parent="div")
    except (ParserError, ValueError):
        return fragment.strip()
    for el in root.iter("p", "br", "div", "li", "h1", "h2", "h3", "h4", "tr", "blockquote"):
        el.tail = "\n\n" + (el.tail or "")
    text = root.text_content()
    text = _SPACES.sub(" ", text)
    return _BLANK_LINES.sub("\n\n", text).strip()


def parse_feed(data: bytes, url: str, feed_name: str, content_type: str | None) -> ParsedFeed:
    """Parse a feed document; raise FeedParseError when it is not a usable feed."""
    if not data.strip():
        raise FeedParseError("not_a_feed", url, "empty response")
    clean = strip_declarations(data)
    # No content-location: feedparser mangles file: bases; entry_from_raw
    # resolves relative links against the feed URL itself.
    headers: dict[str, str] = {}
    if content_type:
        headers["content-type"] = content_type
    parsed = feedparser.parse(clean, response_headers=headers, sanitize_html=True)
    version = parsed.get("version") or ""
    entries_raw = parsed.get("entries") or []
    warning = None
    if parsed.get("bozo"):
        warning = f"{type(parsed.get('bozo_exception')).__name__}: {parsed.get('bozo_exception')}"
    if not version and not entries_raw:
        if _HTML_START.match(clean[:4096]):
            raise FeedParseError("not_a_feed", url, "got an HTML page, not a feed")
        raise FeedParseError("parse_error", url, warning or "no feed found in the document")
    feed_meta: Mapping[str, Any] = parsed.get("feed") or {}
    entries = []
    for raw in entries_raw:
        plain = dict(raw)
        plain["title"] = _plain_text(raw.get("title"), raw.get("title_detail"))
        plain["summary"] = _plain_text(raw.get("summary"), raw.get("summary_detail"))
        plain["content"] = [
            {"value": _plain_text(c.get("value"), c), "language": c.get("language")}
            for c in raw.get("content") or []
        ]
        entries.append(entry_from_raw(plain, feed_name, url))
    links = feed_links(feed_meta.get("links") or (), url)
    return ParsedFeed(
        title=str(feed_meta.get("title") or ""),
        lang=str(feed_meta.get("language")) if feed_meta.get("language") else None,
        entries=tuple(entries),
        warning=warning,
        ttl_s=ttl_seconds(feed_meta.get("ttl")),
        update_period_s=update_period_seconds(
            feed_meta.get("sy_updateperiod"), feed_meta.get("sy_updatefrequency")
        ),
        skip_hours=skip_hours_of(_skip_values(clean, _SKIP_HOURS)),
        skip_days=skip_days_of(_skip_values(clean, _SKIP_DAYS)),
        hub_links=links,
    )


_WARM_FEED = (
    b'<?xml version="1.0"?><rss version="2.0"><channel><title>Warm-up</title>'
    b"<item><title>One</title><link>http://warm-up.invalid/1</link>"
    b"<description>&lt;p&gt;Loads what the first real feed would.&lt;/p&gt;</description>"
    b"</item></channel></rss>"
)


def warm_up() -> None:
    """Import and exercise what the first real parse would, in a new worker
    (monitor.workers.WorkerPool.warm), so the first poll does not wait."""
    parse_feed(_WARM_FEED, "http://warm-up.invalid/rss", "warm-up", "application/rss+xml")


def _skip_values(data: bytes, patterns: tuple[re.Pattern[bytes], ...]) -> list[str]:
    """The item texts of the first <skipHours> or <skipDays> block."""
    opening, closing, item = patterns
    start = opening.search(data)
    if not start:
        return []
    end = closing.search(data, start.end())
    if not end:
        return []
    values = item.findall(data, start.end(), end.start())
    return [v.decode("ascii", "replace") for v in values[:64]]


def _plain_text(value: Any, detail: Any) -> str:
    """A feed field as plain text; only HTML-typed values are parsed as HTML."""
    text = str(value or "")
    if isinstance(detail, Mapping) and detail.get("type") == "text/plain":
        return text.strip()  # feedparser has already decoded it: "<" is a literal "<"
    return html_to_text(text)
