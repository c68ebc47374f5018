"""Alerts: what the daemon publishes when a story matches a rule.

The JSON form is a public, versioned contract (docs/alerts.md). Add fields,
never rename or remove them; bump ``SCHEMA_VERSION`` on incompatible change.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from monitor.entries import Article
from monitor.matching import Hit, RuleResult, Story, snippet

SCHEMA_VERSION = 1
MAX_TERMS = 30  # enough to explain; a 50 MB body must not make a 50 MB alert


@dataclass(frozen=True)
class MatchedTerm:
    concept: str
    term: str
    field: str
    start: int
    end: int
    text: str
    snippet: str
    contribution: float


@dataclass(frozen=True)
class Sighting:
    """Another place the same story turned up (an ``also_seen`` update)."""

    feed: str
    url: str | None
    time: str  # when the daemon saw it, ISO 8601 UTC
    entry_id: str
    by: str  # how the sameness was found: "entry", "url" or "text"
    similarity: float  # estimated Jaccard of the bodies; 1.0 for "entry" and "url"


@dataclass(frozen=True)
class Alert:
    schema: int
    alert_id: str
    rule: str
    rule_title: str
    score: float
    threshold: float
    title: str
    url: str | None
    feed: str
    feed_tags: tuple[str, ...]
    entry_id: str
    published: str | None
    detected_at: str
    lang: str | None
    terms: tuple[MatchedTerm, ...]
    body_source: str
    body_note: str | None
    channels: tuple[str, ...]
    # Set when this alert re-reports an updated story (rule option
    # on_update: realert): the alert_id of the alert it updates.
    updates: str | None = None
    # The page's own canonical URL (rel=canonical / og:url), when it gives one.
    canonical_url: str | None = None
    # "alert" (a new alert) or "also_seen" (the story of alert ``updates``
    # turned up again elsewhere; ``also_seen`` says where).
    kind: str = "alert"
    also_seen: Sighting | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> Alert:
        data: dict[str, Any] = json.loads(text)
        data["terms"] = tuple(MatchedTerm(**t) for t in data["terms"])
        data["feed_tags"] = tuple(data["feed_tags"])
        data["channels"] = tuple(data["channels"])
        if data.get("also_seen"):
            seen = data["also_seen"]
            data["also_seen"] = Sighting(**{k: seen[k] for k in Sighting.__dataclass_fields__})
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


def alert_id(rule_id: str, entry_identity: str, version: str | None = None) -> str:
    """Deterministic: the same story (and version of it) and rule give the same id."""
    key = f"{rule_id}\x00{entry_identity}" + (f"\x00{version}" if version else "")
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _term(story: Story, h: Hit) -> MatchedTerm:
    return MatchedTerm(
        h.concept, h.term, h.field, h.start, h.end, h.text, snippet(story, h), h.contribution
    )


def build_alert(
    article: Article,
    story: Story,
    result: RuleResult,
    feed_tags: tuple[str, ...],
    now: datetime,
    *,
    updates: str | None = None,
    version: str | None = None,
) -> Alert:
    """The alert for one matching rule; ``now`` is passed in, never read here."""
    entry = article.entry
    strongest = sorted(result.hits, key=lambda h: -h.contribution)[:MAX_TERMS]
    terms = tuple(_term(story, h) for h in sorted(strongest, key=lambda h: (h.field, h.start)))
    return Alert(
        schema=SCHEMA_VERSION,
        alert_id=alert_id(result.rule.id, entry.identity, version),
        rule=result.rule.id,
        rule_title=result.rule.title,
        score=result.score,
        threshold=result.rule.threshold,
        title=entry.title,
        url=entry.link,
        feed=entry.feed,
        feed_tags=feed_tags,
        entry_id=entry.identity,
        published=iso(entry.published) if entry.published else None,
        detected_at=iso(now),
        lang=article.lang or entry.lang,
        terms=terms,
        body_source=article.body_source,
        body_note=article.body_note,
        channels=result.rule.channels,
        updates=updates,
        canonical_url=article.extra.get("canonical_url"),
    )
