"""What a poller hands a worker through the entry stream: one new entry and
the feed it came from, as flat string fields (pure; no I/O).

The feed travels with the entry so a worker whose config lags behind a
reload still knows the feed's tags; a worker prefers its own config's feed
of that name when it has one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from monitor.entries import Entry, Feed

VERSION = "1"


class BadWorkItem(ValueError):
    """Stream fields that are not a work item of this version."""


@dataclass(frozen=True)
class WorkItem:
    feed: Feed
    entry: Entry

    def to_fields(self) -> dict[str, str]:
        e, f = self.entry, self.feed
        doc = {
            "feed": {"name": f.name, "url": f.url, "interval_s": f.interval_s,
                     "tags": list(f.tags)},
            "entry": {"feed": e.feed, "identity": e.identity, "title": e.title, "link": e.link,
                      "summary": e.summary, "content": e.content,
                      "published": e.published.isoformat() if e.published else None,
                      "lang": e.lang},
        }  # fmt: skip
        return {"v": VERSION, "feed": f.name, "item": json.dumps(doc, ensure_ascii=False)}

    @classmethod
    def from_fields(cls, fields: dict[str, str]) -> WorkItem:
        if fields.get("v") != VERSION:
            raise BadWorkItem(f"unknown work item version {fields.get('v')!r}")
        try:
            doc: dict[str, Any] = json.loads(fields["item"])
            f, e = doc["feed"], doc["entry"]
            feed = Feed(str(f["name"]), str(f["url"]), float(f["interval_s"]),
                        tuple(str(t) for t in f["tags"]))  # fmt: skip
            published = datetime.fromisoformat(e["published"]) if e["published"] else None
            entry = Entry(
                feed=str(e["feed"]), identity=str(e["identity"]), title=str(e["title"]),
                link=e["link"], summary=str(e["summary"]), content=str(e["content"]),
                published=published, lang=e["lang"],
            )  # fmt: skip
        except (KeyError, TypeError, ValueError) as exc:
            raise BadWorkItem(f"malformed work item: {type(exc).__name__}: {exc}") from None
        return cls(feed, entry)
