"""The worker side of the entry stream: read new entries as one consumer of
the group, build each article, match, deliver, and only then acknowledge.

The bound on entries in progress (extraction processes × a small factor) is
the queue in front of the extraction pool: a worker reads no more than it
can work on, so pages wait in Redis, not in memory. It reads when half that
room is free, acknowledging in the same round trip what it has finished.
An entry that a dead worker left unacknowledged is taken over after
``claim_idle_s`` (XAUTOCLAIM); a restarted worker first re-reads its own
pending entries.
Delivery is idempotent by alert id, so an entry processed twice (taken over
from a worker that was only slow) never alerts twice.

A poison entry (one that makes its processing raise, or kills or hangs the
daemon that works on it) would otherwise be retried forever. Redis counts
how often each entry was handed out; at ``max_deliveries`` it moves to the
dead-letter stream, with the reason, in one transaction with its ack: out
of the way, and still not lost (`feed-monitor dead-letters --requeue`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

from monitor.entries import Feed
from monitor.errors import RedisUnavailable
from monitor.logs import event
from monitor.pipeline import Pipeline
from monitor.store import Store
from monitor.workitem import BadWorkItem, WorkItem

log = logging.getLogger("monitor.entryworker")

READ_BLOCK_MS = 1000


class EntryWorker:
    def __init__(
        self,
        store: Store,
        pipeline: Pipeline,
        consumer: str,
        *,
        max_inflight: int,
        claim_idle_s: float,
        max_deliveries: int = 5,
        feeds: Callable[[str], Feed | None],
        on_done: Callable[[int], None] = lambda _alerts: None,
    ) -> None:
        self.store = store
        self.pipeline = pipeline
        self.consumer = consumer
        self.max_inflight = max_inflight
        self.claim_idle_s = claim_idle_s
        self.max_deliveries = max_deliveries
        self.feeds = feeds  # the current config's feed of a name, if any
        self.on_done = on_done  # called with the alerts of each entry processed
        # task -> stream entry id; a task's result is its alerts, or None if
        # the entry was dead-lettered
        self.tasks: dict[asyncio.Task[int | None], str] = {}
        # Processed, not yet acknowledged: (entry id, its alerts). They go to
        # Redis with the next read, or alone before the worker waits.
        self.done: list[tuple[str, int]] = []
        # Read when this much room is free (or nothing is in progress): a
        # read per batch, not per entry, and the pool still has work queued.
        self.batch = max(1, max_inflight // 2)
        self.processed = 0
        self.alerts = 0
        self.dead_lettered = 0
        self._own_after: str | None = "0-0"  # re-read our pending entries first
        self._next_claim = time.monotonic() + min(claim_idle_s / 2, 30.0)

    @property
    def inflight(self) -> int:
        return len(self.tasks)

    async def run(self, stop: asyncio.Event, drain_s: float) -> None:
        """Work until ``stop``; then give entries in progress ``drain_s`` to finish
        (the rest stay pending and are taken over or re-read after a restart)."""
        backoff = 0.5
        group_ready = False
        try:
            while not stop.is_set():
                self._reap()
                try:
                    if self.tasks and self.max_inflight - len(self.tasks) < self.batch:
                        await self._flush()  # now: the wait may be long
                        await self._wait_some(stop)
                        continue
                    if not group_ready:  # also after the stream was deleted
                        await self.store.ensure_entry_group()
                        group_ready = True
                    for entry_id, fields in await self._next_batch():
                        self._start(entry_id, fields)
                    backoff = 0.5
                except RedisUnavailable as exc:
                    group_ready = group_ready and "NOGROUP" not in exc.detail
                    self.pipeline.metrics.redis_errors.inc()
                    event(log, logging.WARNING, "entries.unavailable", detail=exc.detail,
                          retry_s=backoff)  # fmt: skip
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), timeout=backoff)
                    backoff = min(backoff * 2, 10.0)
        finally:
            await self._drain(drain_s)

    async def _next_batch(self) -> list[tuple[str, dict[str, str]]]:
        room = self.max_inflight - len(self.tasks)
        if self._own_after is not None:
            await self._flush()
            rows = await self.store.read_entries(self.consumer, room, block_ms=None,
                                                 start=self._own_after)  # fmt: skip
            if rows:
                self._own_after = rows[-1][0]
                event(log, logging.INFO, "entries.resumed", entries=len(rows))
                return await self._screen(rows, "its daemon stopped or died while working on it")
            self._own_after = None
        if time.monotonic() >= self._next_claim:
            self._next_claim = time.monotonic() + min(self.claim_idle_s / 2, 30.0)
            await self._flush()  # none of ours finished and still pending: not taken back
            rows = await self.store.reclaim_entries(
                self.consumer, int(self.claim_idle_s * 1000), room
            )
            active = set(self.tasks.values())
            rows = [r for r in rows if r[0] not in active]  # slow, not dead: our own
            if rows:
                event(log, logging.WARNING, "entries.reclaimed", entries=len(rows),
                      idle_s=self.claim_idle_s)  # fmt: skip
                return await self._screen(rows, "its workers died or hung on it")
        # Block only while nothing is in progress, so finished work is seen promptly.
        block = READ_BLOCK_MS if not self.tasks else 50
        rows = await self.store.ack_and_read([i for i, _a in self.done], self.consumer, room,
                                             block_ms=block)  # fmt: skip
        self._acked()
        return rows

    async def _flush(self) -> None:
        """Acknowledge the entries processed so far."""
        if self.done:
            await self.store.ack_entries([i for i, _a in self.done])
            self._acked()

    def _acked(self) -> None:
        for _i, alerts in self.done:
            self.processed += 1
            self.alerts += alerts
            self.on_done(alerts)
        self.done.clear()

    async def _screen(
        self, rows: list[tuple[str, dict[str, str]]], why: str
    ) -> list[tuple[str, dict[str, str]]]:
        """Rows handed out again, minus those handed out too often (dead-lettered).

        Counted here too, not only when processing raises: an entry that kills
        or hangs its daemon never gets to raise.
        """
        counts = await self.store.deliveries([i for i, _f in rows])
        keep = []
        for entry_id, fields in rows:
            n = counts.get(entry_id, 0)
            if n > self.max_deliveries:  # this delivery would be one too many
                await self._dead_letter(entry_id, fields, f"{why} {n - 1} times", n - 1)
            else:
                keep.append((entry_id, fields))
        return keep

    async def _dead_letter(self, entry_id: str, fields: dict[str, str], reason: str,
                           deliveries: int) -> None:  # fmt: skip
        await self.store.dead_letter(entry_id, fields, reason, deliveries, datetime.now(UTC))
        self.dead_lettered += 1
        event(log, logging.ERROR, "entry.dead_lettered", id=entry_id, feed=fields.get("feed"),
              deliveries=deliveries, reason=reason)  # fmt: skip
        notice = {"event": "entry.dead_lettered", "entry_id": entry_id, "feed": fields.get("feed"),
                  "deliveries": deliveries, "reason": reason}  # fmt: skip
        with contextlib.suppress(RedisUnavailable):
            await self.store.publish_system(json.dumps(notice, ensure_ascii=False))

    def _start(self, entry_id: str, fields: dict[str, str]) -> None:
        task = asyncio.get_running_loop().create_task(self._handle(entry_id, fields))
        self.tasks[task] = entry_id

    async def _handle(self, entry_id: str, fields: dict[str, str]) -> int | None:
        try:
            item = WorkItem.from_fields(fields)
        except BadWorkItem as exc:
            # Written by a newer or broken poller: no worker here can use it.
            event(log, logging.ERROR, "entry.dropped", id=entry_id, reason=str(exc))
            return 0  # acknowledged with the processed ones
        feed = self.feeds(item.feed.name) or item.feed
        try:
            alerts = await self.pipeline.process_entry(feed, item.entry)
        except RedisUnavailable:
            raise  # not the entry's fault: it stays pending
        except Exception as exc:
            # A bug meets this entry. Below the limit it stays pending and is
            # retried after claim_idle_s (by any worker); at the limit, out.
            deliveries = (await self.store.deliveries([entry_id])).get(entry_id, 0)
            if deliveries < self.max_deliveries:
                raise
            reason = f"processing raised {type(exc).__name__}: {exc}"
            await self._dead_letter(entry_id, fields, reason, deliveries)
            return None
        # Its alerts are in Redis (or on disk in the spool): it may be acknowledged.
        return alerts

    async def _wait_some(self, stop: asyncio.Event) -> None:
        stopping = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait([stopping, *self.tasks], return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
        self._reap()

    def _reap(self) -> None:
        for task in [t for t in self.tasks if t.done()]:
            entry_id = self.tasks.pop(task)
            if task.cancelled():
                continue
            exc = task.exception()
            if exc is None:
                alerts = task.result()
                if alerts is None:  # dead-lettered (and said so)
                    continue
                self.done.append((entry_id, alerts))
            elif isinstance(exc, RedisUnavailable):
                # Not acknowledged: it stays pending and is processed again.
                event(log, logging.WARNING, "entry.unacked", id=entry_id, detail=exc.detail)
            else:
                # A bug: say so loudly; the entry stays pending, so it is
                # retried after claim_idle_s, and the other entries go on.
                event(log, logging.ERROR, "entry.crashed", id=entry_id,
                      error=f"{type(exc).__name__}: {exc}")  # fmt: skip

    async def _drain(self, drain_s: float) -> None:
        if self.tasks:
            _done, pending = await asyncio.wait(list(self.tasks), timeout=drain_s)
            for t in pending:
                t.cancel()
            if pending:
                await asyncio.wait(pending, timeout=5)
        self._reap()
        try:
            await self._flush()
        except RedisUnavailable as exc:  # pending: re-read after a restart, or taken over
            event(log, logging.WARNING, "entries.unacked", entries=len(self.done),
                  detail=exc.detail)  # fmt: skip
