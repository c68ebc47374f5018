"""The composition root: wires config, Redis, HTTP, workers and rules into
a running daemon (``run``) or a single pass (``once``).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
import random
import resource
import signal
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from monitor.config import Config, load_config, reloaded
from monitor.delivery import Deliverer
from monitor.entries import Feed
from monitor.entryworker import EntryWorker
from monitor.errors import ConfigError, Problem, RedisUnavailable
from monitor.fetch import HttpLimits, host_of, make_session
from monitor.hostlimits import SharedHostLimiter
from monitor.logs import event
from monitor.metrics import Metrics, metrics_app
from monitor.outbox import Outbox
from monitor.pipeline import Pipeline, PollOutcome, RulesHolder
from monitor.redisconn import connect
from monitor.rules import RuleSet, load_rules
from monitor.rulewatch import changes
from monitor.schedule import PollFacts, PollPolicy, next_poll
from monitor.sdnotify import Notifier
from monitor.store import FeedState, Store
from monitor.substore import SubscriptionStore
from monitor.websub import WebSub
from monitor.workers import Task, WorkerPool

# Run once in each worker before READY: what the first page or feed would load.
WARM_EXTRACTION = Task[None]("monitor.extract:warm_up")
WARM_PARSING = Task[None]("monitor.feedparse:warm_up")
WARM_LIMIT_S = 30.0
log = logging.getLogger("monitor.daemon")

# A poll that runs longer than this is cancelled; its entries stay unseen
# and are retried on the next poll (delivery is idempotent).
MIN_POLL_DEADLINE_S = 300.0
LAG_CHECK_S = 30.0
TICK_S = 1.0
# While due feeds wait for room, a tick also runs as soon as the poll queue is
# half empty, but no sooner than this after the last one: the one-second tick
# alone would cap polling at 2 x http.concurrency feeds a second.
REFILL_MIN_S = 0.05
RETIRED_RECHECK_S = 3600.0
# Feed documents waiting per parser process before the tick starts no more polls.
PARSE_BACKLOG_PER_WORKER = 64
ROLES = ("all", "poller", "worker")
# Fault injection, for systemd/boot-check.sh: this many seconds after READY
# the event loop blocks for good, while the process, its threads and its
# workers live on. The watchdog pings come from the loop, so they stop, and
# systemd must kill and restart the daemon. Never set in production.
WEDGE_ENV = "FEED_MONITOR_TEST_WEDGE_S"


def utcnow() -> datetime:
    return datetime.now(UTC)


def _wedge() -> None:
    """A callback that never returns: the event loop is stuck from now on."""
    event(log, logging.WARNING, "test.wedged", hint=f"{WEDGE_ENV} is set")
    threading.Event().wait()


def _arm_wedge(loop: asyncio.AbstractEventLoop, environ: Mapping[str, str]) -> None:
    """Schedule the wedge if ``WEDGE_ENV`` asks for it."""
    raw = environ.get(WEDGE_ENV)
    if not raw:
        return
    try:
        delay = float(raw)
    except ValueError:
        event(log, logging.ERROR, "test.wedge_ignored", value=raw, hint="seconds expected")
        return
    event(log, logging.WARNING, "test.wedge_armed", in_s=delay,
          hint="the event loop will block for good, on purpose")  # fmt: skip
    loop.call_later(delay, _wedge)


def _read_error(task: asyncio.Task[None]) -> None:
    """A warm-up that outlived the wait: its error, if any, is not worth a traceback."""
    if not task.cancelled():
        task.exception()


def feeds_of(cfg: Config) -> list[Feed]:
    return [Feed(f.name, f.url, f.interval_s, f.tags) for f in cfg.feeds]


def poll_policy(cfg: Config, feed: Feed) -> PollPolicy:
    """The feed's interval within the configured bounds (a fast test feed
    lowers the floor for itself rather than being refused)."""
    p = cfg.polling
    low = min(p.min_interval_s, feed.interval_s)
    base = max(low, min(p.backoff_base_s, feed.interval_s))
    ceiling = max(base, p.backoff_ceiling_s)
    high = max(p.max_interval_s, feed.interval_s)
    cap = max(low, min(p.retry_after_cap_s, max(ceiling, high)))
    return PollPolicy(interval_s=feed.interval_s, min_interval_s=low, max_interval_s=high,
                      backoff_base_s=base, backoff_ceiling_s=ceiling, jitter=p.jitter,
                      retry_after_cap_s=cap, adapt_weight=p.adapt_weight)  # fmt: skip


def _status_of(kind: str | None) -> int | None:
    if kind and kind.startswith("http_") and kind[5:].isdigit():
        return int(kind[5:])
    return None


def daemon_id(cfg: Config) -> str:
    """Stable across restarts of one daemon (host and state directory), so a
    restart frees its leases and re-reads the entries it left pending."""
    return f"{socket.gethostname()}:{cfg.state_dir.resolve()}"


def raise_open_files_limit() -> int:
    """Raise the soft limit on open files to the hard one, and return it.

    A shell's soft limit is often 1,024, and the daemon holds up to
    ``http.concurrency`` fetches, ``http.max_idle_connections`` idle
    connections and twice the concurrency in Redis connections; running
    out shows up as failed polls. Go's runtime does the same at start."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def loop_factory(cfg: Config) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The event loop ``feed-monitor run`` runs on; None for asyncio's own."""
    if cfg.event_loop == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        where = str(cfg.source) if cfg.source else "<embedded defaults>"
        raise ConfigError([Problem(where, None, None, "event_loop",
                                   "uvloop is not installed here: install it (pip install "
                                   "uvloop) or set event_loop: asyncio")]) from None  # fmt: skip
    return uvloop.new_event_loop


def worker_count(cfg: Config) -> int:
    return cfg.extraction.workers or max(1, os.cpu_count() or 1)


@dataclass
class App:
    cfg: Config
    store: Store
    pipeline: Pipeline
    rules: RulesHolder
    metrics: Metrics
    deliverer: Deliverer


@contextlib.asynccontextmanager
async def open_app(
    cfg: Config,
    redis_url: str,
    ruleset: RuleSet,
    clock: Callable[[], datetime] = utcnow,
    metrics: Metrics | None = None,
    role: str = "all",
) -> AsyncIterator[App]:
    """Open every resource the pipeline needs, and close them all on exit.

    Feeds get parsing processes of their own only where pages are extracted
    too (role ``all``): a poller's pool parses and nothing else, so nothing
    waits there, and the spare processes would only cost memory and CPU."""
    store = Store(
        connect(redis_url, max_connections=2 * cfg.http.concurrency + 16),
        redis_url,
        stream_maxlen=cfg.redis.stream_maxlen,
        delivered_ttl_s=cfg.redis.delivered_ttl_s,
        seen_per_feed=cfg.redis.seen_per_feed,
    )
    max_tasks = cfg.extraction.max_tasks_per_worker
    pool = WorkerPool(worker_count(cfg), max_tasks)
    parsers = cfg.extraction.parse_workers if role == "all" else 0
    parse_pool = WorkerPool(parsers, max_tasks) if parsers else None
    limits = HttpLimits.from_settings(cfg.http)
    session = make_session(limits, cfg.http.concurrency, cfg.http.max_idle_connections)
    outbox = await asyncio.to_thread(Outbox, cfg.state_dir / "spool.db")
    try:
        holder = RulesHolder(ruleset)
        m = metrics or Metrics()
        deliverer = Deliverer(store, outbox, m)
        # Per-host limits count every daemon on this Redis (a request's lease
        # outlives its time limit; a dead daemon's lapse after that).
        http = cfg.http
        hosts = SharedHostLimiter(http.per_host_concurrency, http.per_host_spacing_s, store,
                                  daemon_id(cfg), hold_s=http.timeout_s + 10)  # fmt: skip
        pipeline = Pipeline(cfg, store, session, pool, holder, clock, m, deliverer, hosts,
                            parse_pool)  # fmt: skip
        yield App(cfg, store, pipeline, holder, m, deliverer)
    finally:
        await session.close()
        await asyncio.to_thread(pool.close)
        if parse_pool is not None:
            await asyncio.to_thread(parse_pool.close)
        await store.close()
        await asyncio.to_thread(outbox.close)


async def run_once(cfg: Config, redis_url: str, ruleset: RuleSet) -> list[PollOutcome]:
    """Poll every feed once, process what is new, and return each outcome."""
    async with open_app(cfg, redis_url, ruleset) as app:
        try:
            await app.store.ping()
        except RedisUnavailable as exc:
            event(log, logging.WARNING, "redis.unavailable", detail=exc.detail,
                  action="alerts go to the local spool")  # fmt: skip
        outcomes = list(await asyncio.gather(*(app.pipeline.poll(f) for f in feeds_of(cfg))))
        with contextlib.suppress(RedisUnavailable):
            await app.deliverer.replay()
        if app.deliverer.pending:
            event(log, logging.WARNING, "spool.pending", alerts=app.deliverer.pending,
                  spool=str(cfg.state_dir / "spool.db"))  # fmt: skip
        return outcomes


class Daemon:
    """Polls on a schedule until SIGTERM/SIGINT; SIGHUP or an edit reloads.

    Speaks the systemd notify protocol: READY once Redis, rules and the
    scheduler are up; STATUS after every poll; WATCHDOG from the event loop
    only while polls make progress; RELOADING around a reload; STOPPING.
    """

    def __init__(self, app: App, notifier: Notifier | None = None, role: str = "all") -> None:
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
        self.app = app
        self.role = role
        self.notifier = notifier or Notifier()
        self.stopping = asyncio.Event()
        self.inflight: dict[asyncio.Task[PollOutcome], float] = {}  # task -> start
        self.scheduler = AsyncIOScheduler(timezone=UTC)
        self.outcomes: dict[str, str] = {}  # feed -> last outcome
        self.alerts_today = 0
        self._today = utcnow().date()
        cfg = app.cfg
        # The lease on a feed: its poll is cancelled when it runs out, so no
        # two daemons ever poll one feed at once.
        self.poll_deadline_s = cfg.cluster.lease_s or max(
            MIN_POLL_DEADLINE_S, 4 * cfg.http.timeout_s + 2 * cfg.extraction.timeout_s
        )
        self.feeds: dict[str, Feed] = {}
        self.due_local: dict[str, float] = {}
        self._warming: set[asyncio.Task[None]] = set()  # warm-ups READY did not wait for
        # What an outage kept from Redis: due times, and leases to release.
        self.unsynced: dict[str, float] = {}
        self.unreleased: set[str] = set()
        self.running: set[str] = set()
        # Leased feeds, with their state as read in the same tick (None: read
        # it when polling); None alone tells a worker to leave.
        self.queue: asyncio.Queue[tuple[Feed, FeedState | None] | None] = asyncio.Queue(
            maxsize=2 * cfg.http.concurrency
        )
        # Ticks never overlap (the scheduler's and the early ones); the last
        # one left due feeds behind for want of room; when it started.
        self._tick_lock = asyncio.Lock()
        self._more_due = False
        self._ticked_at = 0.0
        self._refill = asyncio.Event()
        self.workers: list[asyncio.Task[None]] = []
        self.rng = random.Random()
        self._status_at = 0.0
        self.owner = daemon_id(cfg)
        self.started = utcnow()
        self.polls_done = 0
        self.entry_worker: EntryWorker | None = None
        self.entry_task: asyncio.Task[None] | None = None
        self.websub: WebSub | None = None  # when websub.callback_url is set

    async def poll_job(self, feed: Feed, state: FeedState | None = None) -> PollOutcome | None:
        if self.stopping.is_set():
            return None
        # A task of our own, so shutdown can wait for it to finish.
        task = asyncio.ensure_future(self._poll(feed, state))
        self.inflight[task] = time.monotonic()
        self.app.metrics.inflight.set(len(self.inflight))
        try:
            return await asyncio.shield(task)
        finally:
            self.inflight.pop(task, None)
            self.app.metrics.inflight.set(len(self.inflight))

    async def _poll(self, feed: Feed, state: FeedState | None) -> PollOutcome:
        try:
            async with asyncio.timeout(self.poll_deadline_s):
                # The feed's state is written with its due time (_finish).
                outcome = await self.app.pipeline.poll(feed, save_state=False, state=state)
        except TimeoutError:
            outcome = PollOutcome(
                feed.name,
                "failed",
                error_kind="timeout",
                error=f"poll took longer than {self.poll_deadline_s:g} s",
            )
            event(
                log,
                logging.WARNING,
                "feed.failed",
                feed=feed.name,
                kind="timeout",
                error=outcome.error,
            )
        self._account(outcome)
        return outcome

    def _account(self, o: PollOutcome) -> None:
        self.polls_done += 1
        m = self.app.metrics
        m.polls.labels(o.status).inc()
        if o.status in ("failed", "retired"):
            m.poll_errors.labels(o.error_kind or "unknown").inc()
        else:
            m.last_success.set(time.time())
        self.outcomes[o.feed] = {"failed": "failing", "retired": "retired"}.get(o.status, "ok")
        self.count_alerts(o.alerts)

    def count_alerts(self, n: int) -> None:
        """Alerts raised by a poll or a queued entry; refreshes systemd's STATUS."""
        today = utcnow().date()
        if today != self._today:
            self._today, self.alerts_today = today, 0
        self.alerts_today += n
        # At most once a second: with thousands of feeds, a line per poll
        # would cost more than the polls.
        now = time.monotonic()
        if now - self._status_at >= 1.0:
            self._status_at = now
            self.notifier.status(self.status_line())

    def status_line(self) -> str:
        failing = sum(v == "failing" for v in self.outcomes.values())
        ok = sum(v == "ok" for v in self.outcomes.values())
        feeds = len(self.app.cfg.feeds)
        self.app.metrics.feeds.labels("ok").set(ok)
        self.app.metrics.feeds.labels("failing").set(failing)
        retired = sum(v == "retired" for v in self.outcomes.values())
        self.app.metrics.feeds.labels("retired").set(retired)
        gone = f", {retired} retired" if retired else ""
        line = (
            f"{ok}/{feeds} feeds ok, {failing} failing{gone}; {self.alerts_today} alerts today; "
            f"{len(self.app.rules.ruleset.rules)} rules"
        )
        spooled = self.app.deliverer.pending
        return line + (f"; {spooled} alerts spooled, waiting for Redis" if spooled else "")

    def healthy(self) -> tuple[bool, str]:
        """Is the poll pipeline making progress? (Feeds the watchdog and /healthz.)"""
        if self.stopping.is_set():
            return False, "stopping"
        if not self.scheduler.running:
            return False, "scheduler not running"
        now = time.monotonic()
        stuck = [
            t for t, started in self.inflight.items() if now - started > self.poll_deadline_s + 30
        ]
        if stuck:
            return False, f"{len(stuck)} polls stuck past their deadline"
        return True, "ok: " + self.status_line()

    # --- scheduling: due times live in Redis (mirrored here for outages) ---

    async def _schedule_new(self, due: dict[str, float]) -> None:
        """Due times for feeds that have none yet (in Redis or here)."""
        for name, t in due.items():
            self.due_local.setdefault(name, t)
        try:
            await self.app.store.set_due(due, only_new=True)
        except RedisUnavailable:
            self.app.metrics.redis_errors.inc()

    async def _finish(self, name: str, due: float | None, state: Mapping[str, str]) -> None:
        """Store a polled feed's state and next due time and release its lease,
        together. (The state is caching and status: losing it in an outage
        costs one unconditional fetch, never a story.)"""
        if due is not None:
            self.due_local[name] = due
        try:
            await self.app.store.finish_poll(name, due, state)
        except RedisUnavailable:
            self.app.metrics.redis_errors.inc()
            if due is not None:
                self.unsynced[name] = due  # written by the next tick that reaches Redis
            self.unreleased.add(name)
        else:
            if due is not None:
                self.unsynced.pop(name, None)

    async def _resync(self) -> None:
        """Write the due times and lease releases an outage kept from Redis.

        Claiming a feed moves its due time in Redis to the lease's end; until
        the poll's own due time is written, the feed would wait out the whole
        lease (``poll_deadline_s``, minutes) after Redis came back."""
        if self.unsynced:
            due = {n: t for n, t in self.unsynced.items() if n in self.feeds}
            await self.app.store.set_due(due)
            for name, t in due.items():
                if self.unsynced.get(name) == t:  # not replaced meanwhile
                    del self.unsynced[name]
            self.unsynced = {n: t for n, t in self.unsynced.items() if n in self.feeds}
        done = {n for n in self.unreleased if n not in self.running}
        if done:
            await self.app.store.release(sorted(done))
            self.unreleased -= done

    async def sync_schedule(self, feeds: list[Feed]) -> None:
        """New feeds become due now (spread a little); removed ones leave."""
        self.feeds = {f.name: f for f in feeds}
        if self.websub is not None:
            self.websub.feeds = self.feeds  # removed feeds get unsubscribed
        now = time.time()
        first = {f.name: now + min(5.0, 0.01 * i) for i, f in enumerate(feeds)}
        await self._schedule_new(first)
        with contextlib.suppress(RedisUnavailable):
            stale = [n for n in await self.app.store.due_times() if n not in self.feeds]
            await self.app.store.unschedule(stale)
        self.due_local = {n: t for n, t in self.due_local.items() if n in self.feeds}

    async def tick(self) -> None:
        """Lease due feeds and hand them to the poll workers, while their hosts
        have room and the workers keep up with the entries already queued."""
        async with self._tick_lock:
            self._ticked_at = time.monotonic()
            self._more_due = False
            await self._tick()

    async def _refiller(self) -> None:
        """Run a tick early whenever a worker asks for more (see ``_worker``)."""
        while True:
            await self._refill.wait()
            await asyncio.sleep(max(0.0, self._ticked_at + REFILL_MIN_S - time.monotonic()))
            self._refill.clear()
            if self.stopping.is_set():
                return
            await self.tick()

    async def _tick(self) -> None:
        if self.stopping.is_set():
            return
        room = self.queue.maxsize - self.queue.qsize()
        if room <= 0:
            return
        # Back-pressure from feed parsing: a poll that got a 200 holds its
        # body until a parser takes it. While the parsers are this far
        # behind, start no polls (304s, which need no parser, go on as soon
        # as the backlog is below the mark).
        parsers = self.app.pipeline.parse_pool
        if parsers.pending >= PARSE_BACKLOG_PER_WORKER * parsers.workers:
            return
        now = time.time()
        try:
            await self._resync()
            if await self.app.store.queued_entries() >= self.app.cfg.cluster.max_queued_entries:
                event(log, logging.DEBUG, "schedule.backpressure",
                      hint="extraction is behind; polls wait")  # fmt: skip
                return
            names = await self.app.store.due(now, limit=room * 4)
            remote = True
        except RedisUnavailable:
            due = sorted((t, n) for n, t in self.due_local.items() if t <= now)
            names, remote = [n for _t, n in due[: room * 4]], False
        # Due feeds left behind (beyond what this tick read, for want of room,
        # their host busy) make the next tick come early (see ``_refiller``).
        if len(names) >= room * 4:
            self._more_due = True
        if remote and len(names) > room:
            # More are due than this daemon has room for, and other daemons
            # may be reading the same most-overdue feeds right now: each takes
            # a random share of them, so their claims seldom collide (taking
            # the head, one won it all and the others looked again later).
            # What is read is the most overdue, so none waits for long.
            self.rng.shuffle(names)
        hosts = self.app.pipeline.hosts
        per_host: dict[str, int] = {}
        chosen: list[Feed] = []
        for name in names:
            feed = self.feeds.get(name)
            if feed is None or name in self.running:
                continue
            host = host_of(feed.url)
            if not hosts.has_room(host) or per_host.get(host, 0) >= hosts.per_host:
                self._more_due = True
                continue  # this host is busy: its feeds wait, others go on
            per_host[host] = per_host.get(host, 0) + 1
            chosen.append(feed)
            if len(chosen) >= room:
                self._more_due = True
                break
        if remote and chosen:
            # The lease, atomic in Redis: of two daemons that chose the same
            # feed, one gets it. Nobody starts it again until this poll is
            # done, or its lease runs out if this daemon dies meanwhile.
            try:
                got = set(await self.app.store.claim(
                    [f.name for f in chosen], self.owner, now, now + self.poll_deadline_s
                ))  # fmt: skip
            except RedisUnavailable:
                got = {f.name for f in chosen}
            if len(got) < len(chosen):
                # Another daemon read the same due feeds and leased them
                # first. The next ones are still due: look again right away,
                # or this daemon idles until the next tick (a second).
                self._more_due = True
                self._refill.set()
            chosen = [f for f in chosen if f.name in got]
        # Their states in one round trip, not one each. Nobody else writes
        # them before the poll: the feed is leased to us, and ours is done.
        states: dict[str, FeedState] = {}
        if remote and chosen:
            with contextlib.suppress(RedisUnavailable):
                states = await self.app.store.feed_states([f.name for f in chosen])
        for feed in chosen:
            self.running.add(feed.name)
            self.queue.put_nowait((feed, states.get(feed.name)))

    async def _worker(self) -> None:
        while True:
            job = await self.queue.get()
            if job is None:  # shutdown
                self.queue.task_done()
                return
            feed, state = job
            try:
                outcome = await self.poll_job(feed, state)
                due = None
                if outcome is not None and feed.name in self.feeds:
                    if self.websub is not None and outcome.hub_links is not None:
                        self.websub.observe(feed, outcome.headers, outcome.hub_links)
                    due = self.next_due(feed, outcome)
                await self._finish(feed.name, due, outcome.state if outcome else {})
            finally:
                self.running.discard(feed.name)
                self.queue.task_done()
                if self._more_due and self.queue.qsize() <= self.queue.maxsize // 2:
                    self._refill.set()

    def next_due(self, feed: Feed, o: PollOutcome) -> float:
        """Unix time of the feed's next poll (the rules are in monitor/schedule.py)."""
        now = utcnow()
        if o.status == "retired":
            return now.timestamp() + RETIRED_RECHECK_S  # only to notice a changed URL
        facts = PollFacts(
            outcome="failed" if o.status == "failed" else o.status,  # type: ignore[arg-type]
            consecutive_errors=o.errors,
            error_kind=o.error_kind,
            http_status=o.http_status or _status_of(o.error_kind),
            headers=o.headers,
            hints=o.hints,
            entry_interval_s=o.entry_interval_s,
            gap=o.gap,
        )
        policy = poll_policy(self.app.cfg, feed)
        if self.websub is not None:
            policy = self.websub.policy(feed.name, policy)  # pushed: the safety interval
        decision = next_poll(policy, facts, now, self.rng)
        if o.status == "failed" or decision.reason not in ("interval", "adaptive"):
            event(log, logging.DEBUG, "feed.scheduled", feed=feed.name, reason=decision.reason,
                  in_s=round(decision.interval_s))  # fmt: skip
        return decision.due.timestamp()

    async def reload(self, reason: str) -> bool:
        """Validate config and rules off to the side; swap them in only if valid."""
        self.notifier.reloading()
        try:
            return await self._reload(reason)
        finally:
            self.notifier.ready(self.status_line())

    async def _reload(self, reason: str) -> bool:
        source = self.app.cfg.source
        try:
            cfg = await asyncio.to_thread(load_config, source) if source else self.app.cfg
            files = cfg.rule_files()
            if not files:
                raise ConfigError([Problem(str(source), None, None, "rules", "no rule files")])
            ruleset = await asyncio.to_thread(load_rules, files)
        except ConfigError as exc:
            for p in exc.problems:
                event(log, logging.ERROR, "rules.rejected", problem=str(p))
            event(
                log,
                logging.WARNING,
                "rules.kept",
                rules=len(self.app.rules.ruleset.rules),
                reason=reason,
            )
            return False
        cfg, kept = reloaded(self.app.cfg, cfg)
        if kept:
            event(log, logging.WARNING, "config.restart_needed", settings=",".join(kept),
                  hint="these keep their running values until a restart")  # fmt: skip
        self.app.rules.ruleset = ruleset
        self.app.metrics.rules_loaded.set(len(ruleset.rules))
        await self._reschedule(feeds_of(cfg))
        self.app.cfg = cfg
        self.app.pipeline.cfg = cfg
        event(
            log,
            logging.INFO,
            "rules.reloaded",
            rules=len(ruleset.rules),
            files=len(files),
            feeds=len(cfg.feeds),
            reason=reason,
        )
        return True

    async def _reschedule(self, feeds: list[Feed]) -> None:
        """Feeds added or removed in the config take effect without a restart."""
        await self.sync_schedule(feeds)
        self.outcomes = {k: v for k, v in self.outcomes.items() if k in self.feeds}

    async def _watch(self) -> None:
        async for paths in changes(self.app.cfg, self.stopping):
            await self.reload("edited: " + ", ".join(sorted(p.name for p in paths)))

    def registration(self) -> dict[str, str]:
        """What ``feed-monitor status`` shows of this daemon."""
        w = self.entry_worker
        return {
            "role": self.role, "host": socket.gethostname(), "pid": str(os.getpid()),
            "started": self.started.isoformat(timespec="seconds"),
            "heartbeat": repr(time.time()), "polls": str(self.polls_done),
            "polls_inflight": str(len(self.inflight)),
            "entries": str(w.processed if w else 0), "alerts": str(w.alerts if w else 0),
            "entries_inflight": str(w.inflight if w else 0),
        }  # fmt: skip

    async def _heartbeat(self) -> None:
        """Keep this daemon's entry in Redis alive; it expires 3 beats after a death."""
        every = self.app.cfg.cluster.heartbeat_s
        while not self.stopping.is_set():
            try:
                await self.app.store.heartbeat(self.owner, self.registration(), 3 * every)
            except RedisUnavailable:
                self.app.metrics.redis_errors.inc()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), timeout=every)

    async def _watchdog(self) -> None:
        """Ping systemd from the event loop, at half its interval, while healthy."""
        interval = self.notifier.watchdog_s
        if not interval:
            return
        while not self.stopping.is_set():
            ok, why = self.healthy()
            if ok:
                self.notifier.watchdog()
            else:
                event(log, logging.ERROR, "daemon.unhealthy", reason=why)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), timeout=interval / 2)

    async def check_lag(self) -> list[str]:
        """Warn about configured consumer groups that trimming could overtake."""
        cfg = self.app.cfg.redis
        if not cfg.consumer_groups:
            return []
        lags = await self.app.store.group_lags()
        limit = int(cfg.lag_warn_ratio * cfg.stream_maxlen)
        warnings = []
        for group in cfg.consumer_groups:
            lag = lags.get(group)
            if group not in lags:
                warnings.append(f"consumer group {group!r} does not exist on the alert stream")
            elif lag is None:
                warnings.append(f"consumer group {group!r}: Redis cannot tell its lag")
            else:
                self.app.metrics.group_lag.labels(group).set(lag)
                if lag >= limit:
                    warnings.append(
                        f"consumer group {group!r} has {lag} unread alerts; the stream keeps "
                        f"about {cfg.stream_maxlen}: older unread alerts will be trimmed"
                    )
        for w in warnings:
            event(log, logging.WARNING, "stream.lag", problem=w)
            await self.app.store.publish_system(
                json.dumps({"event": "stream.lag", "problem": w}, ensure_ascii=False)
            )
        return warnings

    async def _watch_lag(self) -> None:
        while not self.stopping.is_set():
            with contextlib.suppress(RedisUnavailable):
                await self.check_lag()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), timeout=LAG_CHECK_S)

    async def _wait_for_redis(self) -> None:
        """READY waits for Redis; a daemon started before its Redis just waits."""
        delay = 0.5
        while not self.stopping.is_set():
            try:
                await self.app.store.ping()
                return
            except RedisUnavailable as exc:
                event(log, logging.WARNING, "redis.waiting", detail=exc.detail, retry_s=delay)
                self.notifier.status(f"waiting for Redis: {exc.detail}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), timeout=delay)
            delay = min(delay * 2, 10.0)

    async def _serve_metrics(self) -> web.AppRunner | None:
        listen = self.app.cfg.metrics.listen
        if not listen:
            return None
        host, _, port = listen.rpartition(":")
        runner = web.AppRunner(metrics_app(self.app.metrics, self.healthy), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, host.strip("[]"), int(port)).start()
        event(log, logging.INFO, "metrics.listening", address=listen)
        return runner

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        background: set[asyncio.Task[object]] = set()

        def spawn(coro: Coroutine[object, object, object]) -> None:
            t = loop.create_task(coro)
            background.add(t)
            t.add_done_callback(background.discard)

        def on_stop(sig: signal.Signals) -> None:
            if self.stopping.is_set():
                event(log, logging.WARNING, "daemon.killed", signal=sig.name)
                os._exit(1)  # second signal: exit at once
            event(log, logging.INFO, "daemon.stopping", signal=sig.name)
            self.notifier.stopping()
            self.stopping.set()

        loop.add_signal_handler(signal.SIGHUP, lambda: spawn(self.reload("SIGHUP")))
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_stop, sig)
        runner = await self._serve_metrics()
        try:
            await self._wait_for_redis()
            if not self.stopping.is_set():
                await self._start(spawn)
                await self.stopping.wait()
        finally:
            if self.scheduler.running:
                self.scheduler.shutdown(wait=False)
            for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
            # Pushed documents in progress finish alongside in-flight polls.
            closing = [self._drain()]
            if self.websub is not None:
                closing.append(self.websub.close(self.app.cfg.shutdown_deadline_s))
            await asyncio.gather(*closing)
            if self.entry_task is not None:
                # It drains its entries in progress itself; a crash of it is
                # a bug, reported here rather than cutting the shutdown short.
                (crash,) = await asyncio.gather(self.entry_task, return_exceptions=True)
                if isinstance(crash, Exception):
                    event(log, logging.ERROR, "entries.crashed",
                          error=f"{type(crash).__name__}: {crash}")  # fmt: skip
            with contextlib.suppress(RedisUnavailable):
                await self.app.store.unregister(self.owner)
            for t in list(background):
                t.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            await self._stop_workers()
            if runner is not None:
                await runner.cleanup()
            self.notifier.close()

    async def _start(self, spawn: Callable[[Coroutine[object, object, object]], None]) -> None:
        feeds = feeds_of(self.app.cfg)
        await self._warm_workers()
        with contextlib.suppress(RedisUnavailable):
            freed = await self.app.store.release_owner(self.owner, time.time())
            if freed:
                event(log, logging.INFO, "schedule.leases_freed", feeds=freed,
                      reason="left by an earlier run that died")  # fmt: skip
        await self.sync_schedule(feeds)
        self.app.pipeline.queue_entries = True
        with contextlib.suppress(RedisUnavailable):
            await self.app.store.ensure_entry_group()
        if self.role in ("all", "poller"):
            await self._start_websub(spawn)
        loop = asyncio.get_running_loop()
        if self.role in ("all", "poller"):
            # One tick a second selects due feeds; never skipped however late
            # the loop runs (misfire_grace_time=None), a backlog merged (coalesce).
            self.scheduler.add_job(
                self.tick, IntervalTrigger(seconds=TICK_S), id="tick", name="select due feeds",
                next_run_time=utcnow(), misfire_grace_time=None, coalesce=True, max_instances=1,
            )  # fmt: skip
            self.workers = [
                loop.create_task(self._worker()) for _ in range(self.app.cfg.http.concurrency)
            ]
            spawn(self._refiller())
        self.scheduler.start()
        if self.role in ("all", "worker"):
            c = self.app.cfg.cluster
            self.entry_worker = EntryWorker(
                self.app.store, self.app.pipeline, self.owner,
                max_inflight=worker_count(self.app.cfg) * c.inflight_per_process,
                claim_idle_s=c.claim_idle_s, max_deliveries=c.max_deliveries,
                feeds=self.feeds.get, on_done=self.count_alerts,
            )  # fmt: skip
            self.entry_task = loop.create_task(
                self.entry_worker.run(self.stopping, self.app.cfg.shutdown_deadline_s)
            )
        spawn(self._heartbeat())
        self.app.metrics.rules_loaded.set(len(self.app.rules.ruleset.rules))
        spawn(self._watch())
        spawn(self._watchdog())
        spawn(self.app.deliverer.run_replayer(self.stopping))
        spawn(self._watch_lag())
        rules = len(self.app.rules.ruleset.rules)
        files = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        event(log, logging.INFO, "daemon.started", role=self.role, feeds=len(feeds),
              rules=rules, redis=self.app.store.where, id=self.owner,
              open_files=files, loop=type(loop).__module__.split(".")[0])  # fmt: skip
        # What exists now lives as long as the daemon: keep it out of the
        # collector's way, and collect young objects less often (thousands of
        # polls in flight otherwise force a full collection every few seconds).
        gc.freeze()
        gc.set_threshold(20_000, 20, 20)
        self.notifier.ready(self.status_line())
        _arm_wedge(loop, os.environ)

    async def _warm_workers(self) -> None:
        """Worker processes start before READY, not with the first story."""
        pipeline = self.app.pipeline
        parsing_here = pipeline.parse_pool is pipeline.pool
        tasks = [WARM_EXTRACTION] if self.role != "poller" else []
        tasks += [WARM_PARSING] if parsing_here and self.role != "worker" else []
        warming = [pipeline.pool.warm(*tasks)]
        if not parsing_here:
            warming.append(pipeline.parse_pool.warm(WARM_PARSING))
        started = time.monotonic()
        # Bounded well inside systemd's TimeoutStartSec (60 s): on a slow start
        # the warm-ups go on in the background and READY does not wait.
        pending = {asyncio.create_task(w) for w in warming}
        done, self._warming = await asyncio.wait(pending, timeout=WARM_LIMIT_S)
        for task in self._warming:  # still starting: they finish on their own
            task.add_done_callback(_read_error)
        errors = [exc for exc in (t.exception() for t in done) if exc is not None]
        if errors:  # the first real tasks will fail too, and say why
            error = f"{type(errors[0]).__name__}: {errors[0]}"
            event(log, logging.WARNING, "workers.not_warmed", error=error)
        elif self._warming:
            event(log, logging.WARNING, "workers.slow_start", waited_s=WARM_LIMIT_S)
        else:
            seconds = round(time.monotonic() - started, 2)
            event(log, logging.INFO, "workers.started", seconds=seconds)

    async def _start_websub(
        self, spawn: Callable[[Coroutine[object, object, object]], None]
    ) -> None:
        """The WebSub callback listener and subscription upkeep (monitor/websub.py)."""
        settings = self.app.cfg.websub
        if not settings.callback_url:
            return
        pipeline = self.app.pipeline
        subs = SubscriptionStore(self.app.store)
        self.websub = WebSub(
            settings, subs, pipeline.session, pipeline.push, metrics=self.app.metrics
        )
        self.websub.feeds = self.feeds
        await self.websub.start()
        spawn(self.websub.run(self.stopping))

    async def _stop_workers(self) -> None:
        """Idle workers leave on a sentinel; queued, unstarted polls are dropped
        (their feeds stay due in Redis and are polled after a restart)."""
        while not self.queue.empty():
            self.queue.get_nowait()
            self.queue.task_done()
        for _ in self.workers:
            self.queue.put_nowait(None)
        if self.workers:
            _done, pending = await asyncio.wait(self.workers, timeout=5)
            for t in pending:
                t.cancel()

    async def _drain(self) -> None:
        """Let in-flight polls finish (deliveries included) up to a deadline."""
        if not self.inflight:
            return
        deadline = self.app.cfg.shutdown_deadline_s
        done, pending = await asyncio.wait(set(self.inflight), timeout=deadline)
        for t in pending:
            t.cancel()
        if pending:
            await asyncio.wait(pending, timeout=5)
        event(log, logging.INFO, "daemon.drained", finished=len(done), cancelled=len(pending))
