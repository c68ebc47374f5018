"""Delivery that survives Redis outages: Redis first, else the local spool.

Every alert goes through ``Store.deliver`` (the idempotent Lua step), now or
later: while anything is spooled, new alerts queue behind it so the stream
keeps their order. Seen-marks that Redis cannot take are spooled too, so
polling goes on through an outage. ``replay`` drains the spool in order.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from monitor.alerts import Alert
from monitor.errors import RedisUnavailable
from monitor.logs import event
from monitor.metrics import Metrics
from monitor.outbox import Outbox
from monitor.store import Store

log = logging.getLogger("monitor.delivery")

REPLAY_BATCH = 100
RECENT_PER_FEED = 5000


@dataclass(frozen=True)
class Outcome:
    status: str  # "new" | "duplicate" | "spooled"
    stream_id: str | None = None


class Deliverer:
    def __init__(self, store: Store, outbox: Outbox, metrics: Metrics) -> None:
        self.store = store
        self.outbox = outbox
        self.metrics = metrics
        self.wake = asyncio.Event()
        self._pending_alerts, self._pending_seen = outbox.depth()
        # What this process marked seen, for polls while Redis is away.
        self.recent: dict[str, OrderedDict[str, None]] = {}
        self._replay_lock = asyncio.Lock()
        self._update_gauge()

    @property
    def pending(self) -> int:
        return self._pending_alerts

    def _update_gauge(self) -> None:
        self.metrics.spool_depth.labels("alerts").set(self._pending_alerts)
        self.metrics.spool_depth.labels("seen").set(self._pending_seen)

    async def deliver(self, alert: Alert) -> Outcome:
        if self._pending_alerts == 0:
            try:
                d = await self.store.deliver(alert)
                return Outcome("new" if d.new else "duplicate", d.stream_id)
            except RedisUnavailable as exc:
                self.metrics.redis_errors.inc()
                event(log, logging.WARNING, "alert.spooled", alert_id=alert.alert_id,
                      reason=exc.detail)  # fmt: skip
        if await asyncio.to_thread(self.outbox.add_alert, alert.alert_id, alert.to_json()):
            self._pending_alerts += 1
        self._update_gauge()
        self.wake.set()
        return Outcome("spooled")

    def remember_seen(self, feed: str, identities: Sequence[str]) -> None:
        """Seen by this process: ``unseen`` leaves them out while Redis is away."""
        recent = self.recent.setdefault(feed, OrderedDict())
        for i in identities:
            recent[i] = None
            recent.move_to_end(i)
        while len(recent) > RECENT_PER_FEED:
            recent.popitem(last=False)

    async def mark_seen(self, feed: str, identities: Sequence[str], now: datetime) -> None:
        self.remember_seen(feed, identities)
        try:
            await self.store.mark_seen(feed, identities, now)
        except RedisUnavailable:
            self.metrics.redis_errors.inc()
            await asyncio.to_thread(self.outbox.add_seen, feed, identities, now.timestamp())
            self._pending_seen += len(identities)
            self._update_gauge()
            self.wake.set()

    async def unseen(self, feed: str, identities: Sequence[str]) -> list[str]:
        """Not seen by Redis nor by this process (whose marks may still be spooled)."""
        recent: Mapping[str, None] = self.recent.get(feed, {})
        try:
            unseen = await self.store.unseen(feed, identities)
        except RedisUnavailable:
            self.metrics.redis_errors.inc()
            unseen = list(identities)
        return [i for i in unseen if i not in recent]

    async def replay(self) -> int:
        """Deliver spooled alerts and seen-marks in order; stop at the first failure."""
        async with self._replay_lock:
            delivered = 0
            while True:
                rows = await asyncio.to_thread(self.outbox.alerts, REPLAY_BATCH)
                if not rows:
                    break
                for seq, doc in rows:
                    d = await self.store.deliver(Alert.from_json(doc))  # may raise: retry later
                    await asyncio.to_thread(self.outbox.remove_alert, seq)
                    self._pending_alerts = max(0, self._pending_alerts - 1)
                    self._update_gauge()
                    delivered += d.new
                    event(log, logging.INFO, "alert.replayed", stream_id=d.stream_id,
                          new=d.new)  # fmt: skip
            while True:
                marks = await asyncio.to_thread(self.outbox.seen, 1000)
                if not marks:
                    break
                by_feed: dict[str, list[str]] = {}
                for feed, identity, _ts in marks:
                    by_feed.setdefault(feed, []).append(identity)
                for feed, ids in by_feed.items():
                    await self.store.mark_seen(feed, ids, datetime.fromtimestamp(marks[0][2], UTC))
                await asyncio.to_thread(self.outbox.remove_seen, [(f, i) for f, i, _ in marks])
                self._pending_seen = max(0, self._pending_seen - len(marks))
                self._update_gauge()
            self._pending_alerts, self._pending_seen = await asyncio.to_thread(self.outbox.depth)
            self._update_gauge()
            return delivered

    async def run_replayer(self, stop: asyncio.Event) -> None:
        """Drain the spool whenever it has rows, backing off while Redis is away."""
        backoff = 0.5
        while not stop.is_set():
            if self._pending_alerts or self._pending_seen:
                try:
                    n = await self.replay()
                    if n:
                        event(log, logging.INFO, "spool.drained", alerts=n)
                    backoff = 0.5
                    continue
                except RedisUnavailable:
                    backoff = min(backoff * 2, 30.0)
            self.wake.clear()
            waits = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self.wake.wait())]
            timeout = backoff if (self._pending_alerts or self._pending_seen) else None
            _, pending = await asyncio.wait(waits, timeout=timeout,
                                            return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
            for w in pending:
                w.cancel()
