"""One poll of one feed: fetch, parse, find new entries, build articles,
match, deliver alerts, remember what was processed.

In the daemon, new entries are queued on the entry stream for the workers
(``_hand_on``; monitor/entryworker.py), which run ``process_entry``; in
``once`` and while Redis is away they are processed in place.

An entry is marked seen only after its alerts are delivered (a queued one is
acknowledged only after that), and delivery is idempotent, so a crash
anywhere in between at worst repeats work, never an alert. Expected
per-feed failures become that feed's outcome; anything else is a bug and
propagates.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import aiohttp

from monitor.alerts import Alert, build_alert
from monitor.bodychoice import PageText, choose_text
from monitor.config import Config
from monitor.delivery import Deliverer
from monitor.entries import (
    Article,
    Entry,
    Feed,
    ParsedFeed,
    fingerprint,
    fix_shared_guids,
    is_within_backfill,
    seen_keys,
)
from monitor.errors import ExtractionError, FeedParseError, FetchError, RedisUnavailable
from monitor.fetch import FetchResult, HttpLimits, fetch, host_of
from monitor.hublinks import HubLinks
from monitor.logs import event
from monitor.matching import Story, match_story
from monitor.metrics import Metrics
from monitor.politeness import HostLimiter
from monitor.rules import RuleSet
from monitor.schedule import FeedHints, entry_interval_s
from monitor.sightings import Sightings
from monitor.store import FINGERPRINT, FeedState, Store
from monitor.textsig import TextSignature
from monitor.workers import Task, TaskTimeout, WorkerPool
from monitor.workitem import WorkItem

log = logging.getLogger("monitor.pipeline")

# Run in worker processes, named by path: the daemon never imports
# feedparser, numpy, lxml or trafilatura.
EXTRACT_PAGE = Task[PageText]("monitor.extract:extract_page")
PARSE_FEED = Task[ParsedFeed]("monitor.feedparse:parse_feed")
SIGNATURE = Task[TextSignature | None]("monitor.minhash:signature")

FEED_ACCEPT = (
    "application/rss+xml, application/atom+xml, application/xml;q=0.9, text/xml;q=0.8, */*;q=0.1"
)
PAGE_ACCEPT = "text/html, application/xhtml+xml;q=0.9, */*;q=0.1"
PARSE_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class PollOutcome:
    """One poll's result, with the facts the scheduler needs for the next one."""

    feed: str
    status: str  # ok | not_modified | failed | retired
    http_status: int | None = None
    entries: int = 0
    new_entries: int = 0
    alerts: int = 0
    error_kind: str | None = None
    error: str | None = None
    errors: int = 0  # consecutive failures, this one included
    headers: Mapping[str, str] = field(default_factory=dict)
    # The WebSub links the feed named, when it was fetched (a 200). Only
    # these, not the parsed feed: an outcome lives until its poll's end is
    # written, and a thousand parsed feeds in flight cost tens of MB.
    hub_links: HubLinks | None = None
    gap: bool = False
    hints: FeedHints = field(default_factory=FeedHints)
    entry_interval_s: float | None = None
    # The feed's state fields to store (caching validators, status); saved
    # by poll(), or by its caller together with the next due time.
    state: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _Taken:
    """What one feed document brought: its entries, the new ones, and alerts."""

    entries: list[Entry]
    fresh: list[Entry]
    gap: bool
    alerts: int
    backlog: bool


class RulesHolder:
    """The live RuleSet; reload swaps the reference in one assignment."""

    def __init__(self, ruleset: RuleSet) -> None:
        self.ruleset = ruleset


class Pipeline:
    def __init__(
        self,
        cfg: Config,
        store: Store,
        session: aiohttp.ClientSession,
        pool: WorkerPool,
        rules: RulesHolder,
        clock: Callable[[], datetime],
        metrics: Metrics,
        deliverer: Deliverer,
        hosts: HostLimiter,
        parse_pool: WorkerPool | None = None,
    ) -> None:
        self.cfg = cfg
        self.store = store
        self.session = session
        self.pool = pool  # extraction
        self.parse_pool = parse_pool or pool  # feed parsing: polls wait behind no page
        self.rules = rules
        self.clock = clock
        self.metrics = metrics
        self.deliverer = deliverer
        self.hosts = hosts
        self.limits = HttpLimits.from_settings(cfg.http)
        self._page_slots = asyncio.Semaphore(cfg.http.concurrency)
        self.sightings = Sightings(store, cfg.dedupe, self._signature)
        # True in the daemon: new entries go to the entry stream for the
        # workers (monitor/entryworker.py) instead of being processed here.
        self.queue_entries = False

    async def poll(
        self, feed: Feed, *, save_state: bool = True, state: FeedState | None = None
    ) -> PollOutcome:
        """Poll a feed; ``save_state=False`` leaves ``outcome.state`` to the
        caller (the daemon writes it with the due time, in one round trip).
        ``state``: the feed's stored state when the caller has just read it
        (the daemon's tick reads a batch), else it is read here."""
        try:
            outcome = await self._poll(feed, state)
        except (FetchError, FeedParseError) as exc:
            outcome = await self._failed(feed, exc)
        except RedisUnavailable as exc:
            self.metrics.redis_errors.inc()
            outcome = PollOutcome(feed.name, "failed", error_kind="redis", error=exc.detail)
        if save_state and outcome.state:
            await self._save_state(feed, dict(outcome.state))
        _log_outcome(outcome)
        return outcome

    async def _failed(self, feed: Feed, exc: FetchError | FeedParseError) -> PollOutcome:
        """Record a failure; a 410 retires the feed (until its URL is changed)."""
        headers = exc.headers if isinstance(exc, FetchError) else {}
        try:
            errors = await self.store.count_errors(feed.name)
        except RedisUnavailable:
            errors = 1
        fields = {"last_poll": self.clock().isoformat(), "last_error_kind": exc.kind,
                  "last_error": exc.detail, "last_outcome": "failed"}  # fmt: skip
        status = "failed"
        if exc.kind == "http_410":
            status = "retired"
            fields["retired_url"] = feed.url
            event(log, logging.WARNING, "feed.retired", feed=feed.name, url=exc.url)
            notice = {"event": "feed.retired", "feed": feed.name, "url": exc.url,
                      "reason": "410 Gone: no more polls until its URL is changed"}  # fmt: skip
            with contextlib.suppress(RedisUnavailable):
                await self.store.publish_system(json.dumps(notice))
        return PollOutcome(feed.name, status, error_kind=exc.kind, error=exc.detail,
                           errors=errors, headers=headers, state=fields)  # fmt: skip

    async def _save_state(self, feed: Feed, fields: dict[str, str]) -> None:
        # Caching and status fields only: losing them in an outage costs one
        # unconditional fetch, never a story.
        try:
            await self.store.save_feed_state(feed.name, fields)
        except RedisUnavailable:
            self.metrics.redis_errors.inc()

    async def _state(self, feed: Feed) -> FeedState:
        try:
            return await self.store.feed_state(feed.name)
        except RedisUnavailable:
            self.metrics.redis_errors.inc()
            # Poll on without caching state; new entries are judged by what
            # this process has seen, and delivery stays idempotent.
            return FeedState(known=True, etag=None, last_modified=None, url=None)

    async def _fetch_feed(self, feed: Feed, state: FeedState) -> FetchResult:
        url = state.poll_url(feed.url)
        kwargs: dict[str, Any] = {
            "max_bytes": self.cfg.http.max_feed_bytes, "accept": FEED_ACCEPT,
            "allow_file": True, "etag": state.etag, "last_modified": state.last_modified,
        }  # fmt: skip
        started = time.monotonic()
        try:
            async with self.hosts.slot(host_of(url)):
                return await fetch(self.session, url, self.limits, **kwargs)
        except FetchError as exc:
            alt = self.cfg.http.alt_user_agent
            if exc.kind != "http_403" or not alt:
                raise
            # A bot wall: one retry with the alternative User-Agent.
            event(log, logging.INFO, "feed.retry_user_agent", feed=feed.name)
            async with self.hosts.slot(host_of(url)):
                return await fetch(self.session, url, self.limits, user_agent=alt, **kwargs)
        finally:
            self.metrics.fetch_seconds.labels("feed").observe(time.monotonic() - started)

    def _moved(self, feed: Feed, state: FeedState, result: FetchResult) -> dict[str, str]:
        """A 301/308 seen on two polls in a row moves the feed; 302/307 never do."""
        if not result.moved_to:
            return {"moved_to": ""}
        if state.moved_to != result.moved_to:
            return {"moved_to": result.moved_to}
        event(log, logging.WARNING, "feed.moved", feed=feed.name, to=result.moved_to,
              configured=feed.url, hint="update the URL in the config")  # fmt: skip
        return {"moved_to": "", "url": result.moved_to, "url_from": feed.url}

    async def _poll(self, feed: Feed, state: FeedState | None) -> PollOutcome:
        if state is None:
            state = await self._state(feed)
        if state.retired(feed.url):
            why = "retired after 410 Gone; change its URL to revive it"
            return PollOutcome(feed.name, "retired", error_kind="http_410", error=why)
        result = await self._fetch_feed(feed, state)
        now = self.clock()
        fields = {"last_poll": now.isoformat(), "last_status": str(result.status),
                  "last_error_kind": "", "last_error": "", "errors": "0",
                  **self._moved(feed, state, result)}  # fmt: skip
        if result.not_modified:
            hints, rate = _load_hints(state.hints)
            return PollOutcome(feed.name, "not_modified", http_status=304, headers=result.headers,
                               hints=hints, entry_interval_s=rate,
                               state={**fields, "last_outcome": "not_modified"})  # fmt: skip
        parsed = await self._parse(result.body, result.url, feed.name, result.content_type)
        taken = await self._take(feed, state, parsed, now)
        entries, fresh, gap, alerts = taken.entries, taken.fresh, taken.gap, taken.alerts
        dated = [e.published.timestamp() for e in entries if e.published]
        caching = {"etag": result.etag or "", "last_modified": result.last_modified or ""}
        if taken.backlog:
            # Forget the validators, or a 304 would hide the backlog until
            # the feed changes.
            caching = {"etag": "", "last_modified": ""}
        newest = max([*dated, state.newest or 0.0])
        hints = FeedHints.from_parsed(parsed)
        rate = entry_interval_s((e.published for e in entries), now)
        saved = {**fields, **caching, "known": "1", "last_outcome": "ok",
                 "parse_warning": parsed.warning or "", "newest": str(newest) if newest else "",
                 "entries": str(len(entries)), "hints": _dump_hints(hints, rate)}  # fmt: skip
        return PollOutcome(feed.name, "ok", http_status=result.status, entries=len(entries),
                           new_entries=len(fresh), alerts=alerts, headers=result.headers,
                           hub_links=parsed.hub_links, gap=gap,
                           hints=hints, entry_interval_s=rate, state=saved)  # fmt: skip

    async def push(self, feed: Feed, body: bytes, content_type: str | None) -> PollOutcome:
        """A feed document a WebSub hub pushed: parsed, checked against the
        same seen set, processed and delivered exactly like a polled one, so
        a story that comes by push and again by poll is alerted once."""
        try:
            state = await self._state(feed)
            parsed = await self._parse(body, state.poll_url(feed.url), feed.name, content_type)
            taken = await self._take(feed, state, parsed, self.clock(), poll=False)
        except FeedParseError as exc:
            outcome = PollOutcome(feed.name, "failed", error_kind=exc.kind, error=exc.detail)
        except TaskTimeout as exc:
            outcome = PollOutcome(feed.name, "failed", error_kind="parse_timeout", error=str(exc))
        except RedisUnavailable as exc:
            self.metrics.redis_errors.inc()
            outcome = PollOutcome(feed.name, "failed", error_kind="redis", error=exc.detail)
        else:
            await self._save_state(feed, {"last_push": self.clock().isoformat()})
            outcome = PollOutcome(feed.name, "ok", entries=len(taken.entries),
                                  new_entries=len(taken.fresh), alerts=taken.alerts,
                                  hub_links=parsed.hub_links)  # fmt: skip
        event(log, logging.INFO if outcome.status == "ok" else logging.WARNING, "feed.pushed",
              feed=feed.name, entries=outcome.entries, new=outcome.new_entries,
              alerts=outcome.alerts, error=outcome.error or "")  # fmt: skip
        return outcome

    async def _parse(
        self, body: bytes, url: str, feed_name: str, content_type: str | None
    ) -> ParsedFeed:
        return await self.parse_pool.run(
            PARSE_FEED, body, url, feed_name, content_type, timeout_s=PARSE_TIMEOUT_S
        )

    async def _signature(
        self, text: str, shingle_words: int, min_words: int
    ) -> TextSignature | None:
        """The body's MinHash signature, from an extraction worker (numpy, CPU)."""
        timeout_s = self.cfg.extraction.timeout_s
        try:
            return await self.pool.run(
                SIGNATURE, text, shingle_words, min_words, timeout_s=timeout_s
            )
        except TaskTimeout as exc:  # the address test still applies
            event(log, logging.WARNING, "dedupe.no_signature", reason=str(exc))
            return None

    async def _take(
        self, feed: Feed, state: FeedState, parsed: ParsedFeed, now: datetime, *, poll: bool = True
    ) -> _Taken:
        """Parsed feed → unseen entries → processed, delivered, marked seen.

        A push holds only the newest items, so it says nothing about gaps."""
        # Oldest first, so alerts go out in publication order.
        entries = sorted(
            {e.identity: e for e in fix_shared_guids(parsed.entries)}.values(),
            key=lambda e: (e.published is None, e.published or now),
        )
        keys = [k for e in entries for k in seen_keys(e)]
        unseen = set(await self.deliverer.unseen(feed.name, keys))
        fresh = [e for e in entries if all(k in unseen for k in seen_keys(e))]
        unseen_ids = {e.identity for e in fresh}
        if not state.known:
            old = [e for e in fresh if not is_within_backfill(e, now, self.cfg.backfill_window_s)]
            await self.deliverer.mark_seen(feed.name, [k for e in old for k in seen_keys(e)], now)
            fresh = [e for e in fresh if is_within_backfill(e, now, self.cfg.backfill_window_s)]
        dated = [e.published.timestamp() for e in entries if e.published]
        gap = bool(state.known and state.newest and dated and fresh and min(dated) > state.newest)
        gap = gap and poll
        if gap:
            event(log, logging.WARNING, "feed.gap", feed=feed.name,
                  hint="items may have been missed between polls; polling more often")  # fmt: skip
        backlog = len(fresh) - self.cfg.max_new_entries_per_poll
        if backlog > 0:
            # Newest first now; the older rest stays unseen for the next polls.
            fresh = fresh[-self.cfg.max_new_entries_per_poll :]
            event(log, logging.WARNING, "feed.backlog", feed=feed.name, deferred=backlog)
        alerts = await self._hand_on(feed, fresh, now)
        alerts += await self._updates(feed, [e for e in entries if e.identity not in unseen_ids])
        return _Taken(entries, fresh, gap, alerts, backlog > 0)

    async def _hand_on(self, feed: Feed, fresh: list[Entry], now: datetime) -> int:
        """Queue new entries for the workers (marked seen in the same atomic step),
        or process them here: in ``once``, and while Redis cannot take them."""
        if self.queue_entries and fresh:
            items = [(seen_keys(e), WorkItem(feed, e).to_fields()) for e in fresh]
            try:
                await self.store.enqueue(feed.name, items, now)
                return 0  # the workers alert
            except RedisUnavailable:
                self.metrics.redis_errors.inc()  # alerts spool as before
        return await self._process_in_order(feed, fresh)

    async def process_entry(self, feed: Feed, entry: Entry) -> int:
        """One queued entry, start to end (a worker's unit of work).

        Queued entries were marked seen in Redis as they were queued
        (``Store.enqueue``, in the same atomic step): delivery does not write
        that again, it only tells this process's memory of them."""
        article = await self.build_article(feed, entry)
        return await self._deliver(feed, entry, article, queued=True)

    async def _process_in_order(self, feed: Feed, entries: list[Entry]) -> int:
        """Fetch and extract pages concurrently, but deliver in feed order."""
        builds = [asyncio.ensure_future(self.build_article(feed, e)) for e in entries]
        alerts = 0
        try:
            for entry, build in zip(entries, builds, strict=True):
                alerts += await self._deliver(feed, entry, await build)
        finally:
            for b in builds:
                b.cancel()  # only unfinished ones: after an error or cancellation
        return alerts

    async def _updates(self, feed: Feed, seen: list[Entry]) -> int:
        """Stories alerted on before whose headline or text changed since.

        Rules with ``on_update: realert`` raise a new alert naming the first;
        the others stay quiet. Checked only while some rule wants it.
        """
        if not seen or not any(r.on_update == "realert" for r in self.rules.ruleset.rules):
            return 0
        try:
            records = await self.store.alerted(feed.name, [e.identity for e in seen])
        except RedisUnavailable:
            return 0  # checked again on the next poll
        changed = [
            (e, records[e.identity]) for e in seen
            if e.identity in records and records[e.identity].get(FINGERPRINT) != fingerprint(e)
        ]  # fmt: skip
        alerts = 0
        for entry, record in changed:
            article = await self.build_article(feed, entry)
            story = story_of(article)
            fp = fingerprint(entry)
            now = self.clock()
            suppressed = 0
            for r in match_story(story, self.rules.ruleset, all_rules=False):
                if not r.matched:
                    continue
                if r.rule.on_update != "realert":
                    suppressed += 1
                    continue
                alert = build_alert(article, story, r, feed.tags, now,
                                    updates=record.get(r.rule.id), version=fp)  # fmt: skip
                alerts += await self._send(feed, alert)
            event(log, logging.INFO, "entry.updated", feed=feed.name, entry=entry.identity,
                  realerted=alerts, suppressed=suppressed)  # fmt: skip
            with contextlib.suppress(RedisUnavailable):
                await self.store.remember_alerted(feed.name, entry.identity, fp, {})
        return alerts

    async def _send(self, feed: Feed, alert: Alert) -> int:
        """Deliver one alert; 1 if it is out (or safely spooled), else 0."""
        delivery = await self.deliverer.deliver(alert)
        if delivery.status == "spooled":
            return 1  # on disk now; Redis gets it when it is back
        if delivery.status != "new":
            return 0
        if alert.kind == "alert":  # an also_seen update is not an alert
            self.metrics.alerts.labels(alert.rule).inc()
        event(log, logging.INFO, "alert.published", rule=alert.rule, feed=feed.name,
              alert_id=alert.alert_id, score=alert.score, title=alert.title,
              body_source=alert.body_source, updates=alert.updates or "",
              kind=alert.kind)  # fmt: skip
        return 1

    async def _deliver(
        self, feed: Feed, entry: Entry, article: Article, *, queued: bool = False
    ) -> int:
        alerts = 0
        ids: dict[str, str] = {}
        # One story, one alert: a story some rule alerted on before, met
        # again elsewhere, goes out as an "also_seen" update of that alert.
        found = await self.match_off_loop(article, feed)
        matched = await self.sightings.resolve(found, article, self.clock(),
                                               spooling=self.deliverer.pending > 0)  # fmt: skip
        for alert in matched:
            ids[alert.rule] = alert.updates or alert.alert_id  # the first alert, for updates
            sent = await self._send(feed, alert)
            alerts += sent if alert.kind == "alert" else 0
        if ids:
            # So a later edit of this story can be recognised (on_update).
            with contextlib.suppress(RedisUnavailable):
                await self.store.remember_alerted(
                    feed.name, entry.identity, fingerprint(entry), ids
                )
                await self.store.count_alerts(feed.name, alerts)
        if queued:
            self.deliverer.remember_seen(feed.name, seen_keys(entry))
        else:
            await self.deliverer.mark_seen(feed.name, seen_keys(entry), self.clock())
        self.metrics.entries.inc()
        return alerts

    async def match_off_loop(self, article: Article, feed: Feed) -> list[Alert]:
        """``match`` in a thread: cheap for a real article, but a long page full of
        watched terms held the loop for 0.5 s (tests/test_loop_blocking.py)."""
        return await asyncio.to_thread(self.match, article, feed)

    def match(self, article: Article, feed: Feed) -> list[Alert]:
        story = story_of(article)
        now = self.clock()
        return [
            build_alert(article, story, r, feed.tags, now)
            for r in match_story(story, self.rules.ruleset, all_rules=False)
            if r.matched
        ]

    async def build_article(self, feed: Feed, entry: Entry) -> Article:
        """The page body when it is usable, else the feed's own text, with the reason."""
        feed_text = entry.content if len(entry.content) > len(entry.summary) else entry.summary
        if not entry.link:
            return Article(entry, feed_text, "feed", "entry has no link", entry.lang)
        try:
            page = await self._page(feed, entry.link)
        except (FetchError, ExtractionError) as exc:
            kind = exc.kind if isinstance(exc, FetchError) else "extraction"
            self.metrics.extraction_failures.labels(kind).inc()
            note = f"page {kind} failed: {exc}"
            event(log, logging.WARNING, "page.failed", feed=feed.name, url=entry.link, reason=note)
            return Article(entry, feed_text, "feed", note, entry.lang)
        lang = page.lang or entry.lang
        body = choose_text(page, entry.title, feed_text)
        if body.source == "feed":
            self.metrics.extraction_failures.labels("page_not_used").inc()
        extra = {"canonical_url": page.canonical_url} if page.canonical_url else {}
        return Article(entry, body.text, body.source, body.note, lang, extra)

    async def _page(self, feed: Feed, url: str) -> PageText:
        async with self._page_slots, self.hosts.slot(host_of(url)):
            started = time.monotonic()
            result = await fetch(
                self.session,
                url,
                self.limits,
                max_bytes=self.cfg.http.max_page_bytes,
                accept=PAGE_ACCEPT,
                allow_file=feed.url.startswith("file:"),
            )
            self.metrics.fetch_seconds.labels("page").observe(time.monotonic() - started)
        try:
            page = await self.pool.run(
                EXTRACT_PAGE,
                result.body,
                result.url,
                self.cfg.extraction.max_html_bytes,
                False,  # no date search: alerts are dated by the feed, not the page
                timeout_s=self.cfg.extraction.timeout_s,
            )
        except TaskTimeout as exc:
            raise ExtractionError(url, str(exc)) from None
        return page


def _dump_hints(hints: FeedHints, rate: float | None) -> str:
    return json.dumps({**asdict(hints), "entry_interval_s": rate})


def _load_hints(raw: str | None) -> tuple[FeedHints, float | None]:
    try:
        d = json.loads(raw or "{}")
        hints = FeedHints(
            d.get("ttl_s"),
            d.get("update_period_s"),
            tuple(d.get("skip_hours") or ()),
            tuple(d.get("skip_days") or ()),
        )
        return hints, d.get("entry_interval_s")
    except (ValueError, TypeError, AttributeError):
        return FeedHints(), None


def story_of(article: Article) -> Story:
    """What the matcher sees. When the body is the feed's own text, it already
    holds the summary (or the fuller content): the summary is not counted twice."""
    summary = "" if article.body_source == "feed" else article.entry.summary
    return Story(article.entry.title, summary, article.body)


def _log_outcome(o: PollOutcome) -> None:
    if o.status == "failed":
        event(log, logging.WARNING, "feed.failed", feed=o.feed, kind=o.error_kind, error=o.error)
    else:
        event(
            log,
            logging.INFO,
            "feed.fetched",
            feed=o.feed,
            status=o.http_status,
            entries=o.entries,
            new=o.new_entries,
            alerts=o.alerts,
        )
