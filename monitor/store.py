"""Redis: feed state, seen entries, and idempotent alert delivery.

With ``monitor.redisconn`` (which connects), the only module that calls
redis-py; its errors become ``RedisUnavailable``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from redis.exceptions import NoScriptError, RedisError

from monitor import keys
from monitor.alerts import Alert
from monitor.coalesce import Coalescer
from monitor.errors import RedisUnavailable
from monitor.redisconn import Client, disconnect, keyspace

# One atomic step: skip an alert_id already delivered (or, with KEYS[3], an
# entry of a feed already alerted on for the rule), else append it to the
# stream, remember it, and publish it. A retry after any failure is harmless.
_DELIVER = """
local existing = redis.call('GET', KEYS[1])
if existing then return {0, existing} end
if KEYS[3] then
  existing = redis.call('GET', KEYS[3])
  if existing then return {0, existing} end
end
local id = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*',
                      'alert', ARGV[1], 'alert_id', ARGV[4], 'rule', ARGV[5])
redis.call('SET', KEYS[1], id, 'EX', ARGV[3])
if KEYS[3] then redis.call('SET', KEYS[3], id, 'EX', ARGV[3]) end
for i = 6, #ARGV do redis.call('PUBLISH', ARGV[i], ARGV[1]) end
return {1, id}
"""


# Atomic lease: of the named feeds, take those still due (score <= now) and
# move their due time to the lease's end, so no other daemon's tick sees them
# until the poll is done or the lease runs out (its daemon died). The lease
# hash says who holds each, for a restarted daemon to free its own.
_CLAIM = """
local got = {}
for i = 4, #ARGV do
  local s = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if s and tonumber(s) <= tonumber(ARGV[1]) then
    redis.call('ZADD', KEYS[1], 'XX', ARGV[2], ARGV[i])
    redis.call('HSET', KEYS[2], ARGV[i], ARGV[3])
    got[#got + 1] = ARGV[i]
  end
end
return got
"""

# A restarted daemon frees the leases its dead run held: due again now.
_RELEASE_OWNER = """
local h = redis.call('HGETALL', KEYS[2])
local n = 0
local prefix = ARGV[1] .. '|'
for i = 1, #h, 2 do
  if string.sub(h[i + 1], 1, #prefix) == prefix then
    redis.call('HDEL', KEYS[2], h[i])
    redis.call('ZADD', KEYS[1], 'XX', ARGV[2], h[i])
    n = n + 1
  end
end
return n
"""

# Hand new entries to the workers and mark them seen in one step, so each is
# queued exactly once: ARGV[1] now, ARGV[2] seen_per_feed, then per entry its
# number of seen keys, the keys, and its stream fields (version, feed, item).
_ENQUEUE = """
local i = 3
local n = 0
while i <= #ARGV do
  local k = tonumber(ARGV[i])
  for j = 1, k do redis.call('ZADD', KEYS[1], 'NX', ARGV[1], ARGV[i + j]) end
  i = i + k + 1
  redis.call('XADD', KEYS[2], '*', 'v', ARGV[i], 'feed', ARGV[i + 1], 'item', ARGV[i + 2])
  i = i + 3
  n = n + 1
end
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -tonumber(ARGV[2]) - 1)
return n
"""

# Done with entries: out of the pending list and out of the stream, at once.
# One command: as a MULTI of XACK and XDEL it took the daemon about 40% more
# CPU per acknowledgement (four replies to read, not one).
_ACK = """
redis.call('XACK', KEYS[1], ARGV[1], unpack(ARGV, 2))
return redis.call('XDEL', KEYS[1], unpack(ARGV, 2))
"""

# Per-host politeness across daemons, on Redis's clock: drop expired leases
# (their daemon died), refuse (-1) while per_host requests are in flight,
# else lease a slot and reserve the next start time; returns the wait before
# this request may start, as a string (Lua numbers come back as integers).
_HOST_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return -1 end
local start = math.max(now, tonumber(redis.call('GET', KEYS[2]) or '0'))
local spacing, hold = tonumber(ARGV[3]), tonumber(ARGV[4])
redis.call('ZADD', KEYS[1], start + hold, ARGV[1])
redis.call('PEXPIRE', KEYS[1], math.ceil((start - now + hold) * 1000))
if spacing > 0 then
  redis.call('SET', KEYS[2], string.format('%.6f', start + spacing),
             'PX', math.ceil((start - now + spacing) * 1000) + 1000)
end
return string.format('%.6f', start - now)
"""

ACK_BATCH = 1000

# Field of an alerted story's hash; rule ids cannot start with "_".
FINGERPRINT = "_fp"


@dataclass(frozen=True)
class FeedState:
    """What Redis remembers of a feed between polls."""

    known: bool  # polled successfully before (so not subject to backfill)
    etag: str | None
    last_modified: str | None
    url: str | None  # where the feed moved (301/308 twice), for config URL url_from
    url_from: str | None = None
    moved_to: str | None = None  # a permanent redirect seen once so far
    errors: int = 0  # consecutive failed polls
    retired_url: str | None = None  # 410 Gone for this configured URL
    newest: float | None = None  # newest entry time seen, for gap detection
    hints: str | None = None  # JSON: the feed's own scheduling hints, kept for 304s

    @classmethod
    def from_hash(cls, h: dict[str, str]) -> FeedState:
        def num(key: str) -> float | None:
            try:
                return float(h[key])
            except (KeyError, ValueError):
                return None

        return cls(
            known=h.get("known") == "1",
            etag=h.get("etag") or None,
            last_modified=h.get("last_modified") or None,
            url=h.get("url") or None,
            url_from=h.get("url_from") or None,
            moved_to=h.get("moved_to") or None,
            errors=int(num("errors") or 0),
            retired_url=h.get("retired_url") or None,
            newest=num("newest"),
            hints=h.get("hints") or None,
        )

    def poll_url(self, configured: str) -> str:
        """The URL to poll: where the feed moved, unless the config changed since."""
        return self.url if self.url and self.url_from == configured else configured

    def retired(self, configured: str) -> bool:
        return self.retired_url == configured


@dataclass(frozen=True)
class Delivery:
    new: bool
    stream_id: str


def _queue_state(p: Any, key: str, fields: Mapping[str, str]) -> None:
    """Queue a feed-state update (``key``: its hash) on a pipeline; an empty
    value deletes its field (e.g. an etag the server stopped sending)."""
    keep = {k: v for k, v in fields.items() if v != ""}
    drop = [k for k, v in fields.items() if v == ""]
    if keep:
        p.hset(key, mapping=keep)
    if drop:
        p.hdel(key, *drop)


class Store:
    def __init__(
        self,
        client: Client,
        where: str,
        *,
        stream_maxlen: int,
        delivered_ttl_s: int,
        seen_per_feed: int,
    ) -> None:
        self.client = client
        self.where = where
        self.keys = keyspace(client)
        self.stream_maxlen = stream_maxlen
        self.delivered_ttl_s = delivered_ttl_s
        self.seen_per_feed = seen_per_feed
        self._deliver = client.register_script(_DELIVER)
        self._claim = client.register_script(_CLAIM)
        self._release_owner = client.register_script(_RELEASE_OWNER)
        self._enqueue = client.register_script(_ENQUEUE)
        self._host_acquire = client.register_script(_HOST_ACQUIRE)
        self._ack = client.register_script(_ACK)
        # Calls made while the previous one is on its way go out together.
        self._finishes = Coalescer(self._finish_polls)
        # Two batches out at once: a poll waits on its lease, so a short wait matters.
        self._acquires = Coalescer(self._host_acquire_many, senders=2)

    async def _call(self, coro: Any) -> Any:
        try:
            return await coro
        except (RedisError, OSError) as exc:
            raise RedisUnavailable(self.where, f"{type(exc).__name__}: {exc}") from exc

    async def ping(self) -> None:
        await self._call(self.client.ping())

    async def close(self) -> None:
        await disconnect(self.client)

    async def feed_hash(self, feed: str) -> dict[str, str]:
        h: dict[str, str] = await self._call(self.client.hgetall(self.keys.feed_state(feed)))
        return h

    async def feed_state(self, feed: str) -> FeedState:
        h = await self._call(self.client.hgetall(self.keys.feed_state(feed)))
        return FeedState.from_hash(h)

    async def feed_states(self, feeds: Sequence[str]) -> dict[str, FeedState]:
        """The states of many feeds in one round trip (the tick's batch)."""
        hashes = await self._hashes([self.keys.feed_state(n) for n in feeds])
        return {n: FeedState.from_hash(h) for n, h in zip(feeds, hashes, strict=True)}

    async def _hashes(self, names: Sequence[str]) -> list[dict[str, str]]:
        """HGETALL of many keys in one round trip."""
        if not names:
            return []
        async with self.client.pipeline(transaction=False) as p:
            for name in names:
                p.hgetall(name)
            return list(await self._call(p.execute()))

    async def save_feed_state(self, feed: str, fields: Mapping[str, str]) -> None:
        async with self.client.pipeline(transaction=True) as p:
            _queue_state(p, self.keys.feed_state(feed), fields)
            await self._call(p.execute())

    async def unseen(self, feed: str, identities: Sequence[str]) -> list[str]:
        if not identities:
            return []
        scores = await self._call(self.client.zmscore(self.keys.seen(feed), list(identities)))
        return [i for i, s in zip(identities, scores, strict=True) if s is None]

    async def mark_seen(self, feed: str, identities: Sequence[str], now: datetime) -> None:
        if not identities:
            return
        key = self.keys.seen(feed)
        ts = now.timestamp()
        async with self.client.pipeline(transaction=True) as p:
            p.zadd(key, dict.fromkeys(identities, ts), nx=True)
            # Keep the newest N; a feed never holds that many live items.
            p.zremrangebyrank(key, 0, -self.seen_per_feed - 1)
            await self._call(p.execute())

    async def deliver(self, alert: Alert) -> Delivery:
        """Append and publish ``alert`` unless it went out already.

        Its alert_id says whether it did; so does, for a story's first alert
        or an also_seen update, whether its entry (rule, entry, feed) did.
        The same entry can go out as either: as an alert when the sameness
        check could not ask Redis (an outage), as an update when it could.
        Re-alerts of an edited story (``updates`` set on an alert) are
        alerts of their own.
        """
        channels = [keys.ALERT_CHANNEL, keys.rule_channel(alert.rule)]
        channels += [c for c in alert.channels if c not in channels]
        once = [self.keys.delivered(alert.alert_id), self.keys.alert_stream]
        if alert.kind == "also_seen" or alert.updates is None:
            once.append(self.keys.delivered_entry(alert.rule, alert.entry_id, alert.feed))
        new, stream_id = await self._call(
            self._deliver(
                keys=once,
                args=[
                    alert.to_json(),
                    self.stream_maxlen,
                    self.delivered_ttl_s,
                    alert.alert_id,
                    alert.rule,
                    *channels,
                ],
            )
        )
        return Delivery(bool(new), str(stream_id))

    async def remember_alerted(
        self, feed: str, identity: str, fp: str, alert_ids: dict[str, str]
    ) -> None:
        key = self.keys.alerted(feed, identity)
        async with self.client.pipeline(transaction=True) as p:
            fields = {FINGERPRINT: fp, **alert_ids}
            p.hset(key, mapping=fields)  # type: ignore[arg-type]
            p.expire(key, self.delivered_ttl_s)
            await self._call(p.execute())

    async def alerted(self, feed: str, identities: Sequence[str]) -> dict[str, dict[str, str]]:
        """For each identity alerted on before: its fingerprint and alert ids per rule."""
        if not identities:
            return {}
        async with self.client.pipeline(transaction=False) as p:
            for i in identities:
                p.hgetall(self.keys.alerted(feed, i))
            found = await self._call(p.execute())
        return {i: h for i, h in zip(identities, found, strict=True) if h}

    async def due(self, now: float, limit: int) -> list[str]:
        """Feeds whose next poll time has come, most overdue first."""
        names = await self._call(
            self.client.zrangebyscore(self.keys.due, "-inf", now, start=0, num=limit)
        )
        return [str(n) for n in names]

    async def set_due(self, due: dict[str, float], *, only_new: bool = False) -> None:
        if due:
            await self._call(self.client.zadd(self.keys.due, due, nx=only_new))

    async def unschedule(self, names: Sequence[str]) -> None:
        if names:
            await self._call(self.client.zrem(self.keys.due, *names))

    async def due_times(self) -> dict[str, float]:
        pairs = await self._call(self.client.zrange(self.keys.due, 0, -1, withscores=True))
        return {str(n): float(s) for n, s in pairs}

    async def claim(self, names: Sequence[str], owner: str, now: float, until: float) -> list[str]:
        """Lease those of ``names`` still due, atomically; returns the ones leased."""
        if not names:
            return []
        got = await self._call(
            self._claim(keys=[self.keys.due, self.keys.leases],
                        args=[repr(now), repr(until), f"{owner}|{until!r}", *names])
        )  # fmt: skip
        return [str(n) for n in got]

    async def release(self, names: Sequence[str]) -> None:
        if names:
            await self._call(self.client.hdel(self.keys.leases, *names))

    async def finish_poll(self, name: str, due: float | None, state: Mapping[str, str]) -> None:
        """A poll is over: the feed's state fields (as in save_feed_state), its
        next due time (if any) and its lease's release, atomically. Polls that
        end together share one MULTI: one round trip (a 304 poll once made
        six, and Redis commands were half of its CPU)."""
        await self._finishes.submit((name, due, state))

    async def _finish_polls(
        self, polls: list[tuple[str, float | None, Mapping[str, str]]]
    ) -> list[None]:
        async with self.client.pipeline(transaction=True) as p:
            for name, _due, state in polls:
                _queue_state(p, self.keys.feed_state(name), state)
            dues = {name: due for name, due, _state in polls if due is not None}
            if dues:
                p.zadd(self.keys.due, dues)
            p.hdel(self.keys.leases, *(name for name, _due, _state in polls))
            await self._call(p.execute())
        return [None] * len(polls)

    async def leases(self) -> dict[str, str]:
        """Feed -> ``owner|until`` of every poll in progress."""
        h: dict[str, str] = await self._call(self.client.hgetall(self.keys.leases))
        return h

    async def release_owner(self, owner: str, now: float) -> int:
        """Free the leases an earlier run of this daemon left when it died."""
        n = await self._call(
            self._release_owner(keys=[self.keys.due, self.keys.leases], args=[owner, repr(now)])
        )
        return int(n)

    # --- the entry stream: pollers add, a consumer group of workers reads ---

    async def ensure_entry_group(self) -> None:
        try:
            await self._call(
                self.client.xgroup_create(
                    self.keys.entries, keys.ENTRY_GROUP, id="0", mkstream=True
                )
            )
        except RedisUnavailable as exc:
            if "BUSYGROUP" not in exc.detail:
                raise

    async def enqueue(self, feed: str, items: Sequence[tuple[Sequence[str], dict[str, str]]],
                      now: datetime) -> int:  # fmt: skip
        """Queue entries (seen keys, stream fields) and mark them seen, atomically."""
        if not items:
            return 0
        args: list[str] = [repr(now.timestamp()), str(self.seen_per_feed)]
        for seen_keys, fields in items:
            args += [str(len(seen_keys)), *seen_keys, fields["v"], fields["feed"], fields["item"]]
        n = await self._call(
            self._enqueue(keys=[self.keys.seen(feed), self.keys.entries], args=args)
        )
        return int(n)

    async def read_entries(self, consumer: str, count: int, *, block_ms: int | None,
                           start: str = ">") -> list[tuple[str, dict[str, str]]]:  # fmt: skip
        """New entries for this consumer (``start=">"``), or its own pending ones
        after ``start`` (an earlier run's, read again after a restart)."""
        reply = await self._call(
            self.client.xreadgroup(keys.ENTRY_GROUP, consumer, {self.keys.entries: start},
                                   count=count, block=block_ms)
        )  # fmt: skip
        return self._rows(reply)

    def _rows(self, reply: Any) -> list[tuple[str, dict[str, str]]]:
        if not reply:
            return []
        rows = reply[0][1] if isinstance(reply, list) else reply.get(self.keys.entries, [[]])[0]
        return [(str(i), dict(f or {})) for i, f in rows]

    async def ack_and_read(self, done: Sequence[str], consumer: str, count: int, *,
                           block_ms: int | None) -> list[tuple[str, dict[str, str]]]:  # fmt: skip
        """Acknowledge ``done``, then read new entries, in one round trip.

        A worker reads when entries finish, so the two go out together: a
        round trip less per batch. The acknowledgement is sent first and Redis
        runs it at once, even when the read then blocks.
        """
        if not done or len(done) > ACK_BATCH:
            await self.ack_entries(done)
            return await self.read_entries(consumer, count, block_ms=block_ms)
        async with self.client.pipeline(transaction=False) as p:
            # By SHA, as in _host_acquire_many: no SCRIPT EXISTS round trip.
            p.execute_command("EVALSHA", self._ack.sha, 1, self.keys.entries, keys.ENTRY_GROUP,
                              *done)  # fmt: skip
            p.xreadgroup(keys.ENTRY_GROUP, consumer, {self.keys.entries: ">"}, count=count,
                         block=block_ms)  # fmt: skip
            acked, reply = await self._call(p.execute(raise_on_error=False))
        if isinstance(acked, NoScriptError):  # a restarted server: the script object loads it
            await self.ack_entries(done)
        for r in (acked, reply):
            if isinstance(r, Exception) and not isinstance(r, NoScriptError):
                raise RedisUnavailable(self.where, f"{type(r).__name__}: {r}")
        return self._rows(reply)

    async def reclaim_entries(self, consumer: str, min_idle_ms: int,
                              count: int) -> list[tuple[str, dict[str, str]]]:  # fmt: skip
        """Entries pending on any consumer for longer than ``min_idle_ms``, now ours."""
        got: list[tuple[str, dict[str, str]]] = []
        start = "0-0"
        for _ in range(100):  # bounded: XAUTOCLAIM scans the pending list in pages
            reply = await self._call(
                self.client.xautoclaim(self.keys.entries, keys.ENTRY_GROUP, consumer, min_idle_ms,
                                       start_id=start, count=count - len(got))
            )  # fmt: skip
            start, rows = str(reply[0]), reply[1]
            got += [(str(i), dict(f or {})) for i, f in rows]
            if start == "0-0" or len(got) >= count:
                break
        return got

    async def ack_entries(self, entry_ids: Sequence[str]) -> None:
        """Done: out of the pending list and out of the stream, in as few
        calls as Lua allows."""
        for i in range(0, len(entry_ids), ACK_BATCH):  # within Lua's unpack() limit
            batch = entry_ids[i : i + ACK_BATCH]
            await self._call(self._ack(keys=[self.keys.entries], args=[keys.ENTRY_GROUP, *batch]))

    async def deliveries(self, entry_ids: Sequence[str]) -> dict[str, int]:
        """How many times each pending entry was handed to a worker (Redis counts)."""
        if not entry_ids:
            return {}
        async with self.client.pipeline(transaction=False) as p:
            for i in entry_ids:
                p.xpending_range(self.keys.entries, keys.ENTRY_GROUP, min=i, max=i, count=1)
            replies = await self._call(p.execute())
        return {i: int(r[0]["times_delivered"]) for i, r in zip(entry_ids, replies, strict=True)
                if r}  # fmt: skip

    async def dead_letter(self, entry_id: str, fields: dict[str, str], reason: str,
                          deliveries: int, now: datetime) -> None:  # fmt: skip
        """Move an entry from the entry stream to the dead-letter stream, atomically."""
        dead = {**fields, "entry_id": entry_id, "reason": reason,
                "deliveries": str(deliveries), "at": now.isoformat()}  # fmt: skip
        async with self.client.pipeline(transaction=True) as p:
            p.xadd(self.keys.dead_entries, dead, maxlen=self.stream_maxlen,  # type: ignore[arg-type]
                   approximate=True)  # fmt: skip
            p.xack(self.keys.entries, keys.ENTRY_GROUP, entry_id)
            p.xdel(self.keys.entries, entry_id)
            await self._call(p.execute())

    async def dead_entries(self, count: int) -> list[tuple[str, dict[str, str]]]:
        """The oldest ``count`` dead-lettered entries."""
        rows = await self._call(self.client.xrange(self.keys.dead_entries, count=count))
        return [(str(i), dict(f)) for i, f in rows]

    async def requeue_dead(self, dead_id: str, fields: dict[str, str]) -> None:
        """Put a dead-lettered entry back into the entry stream, atomically."""
        entry = {k: fields[k] for k in ("v", "feed", "item") if k in fields}
        async with self.client.pipeline(transaction=True) as p:
            p.xadd(self.keys.entries, entry)  # type: ignore[arg-type]
            p.xdel(self.keys.dead_entries, dead_id)
            await self._call(p.execute())

    async def dead_count(self) -> int:
        return int(await self._call(self.client.xlen(self.keys.dead_entries)))

    async def queued_entries(self) -> int:
        """Entries not yet acknowledged (waiting or in progress): the back-pressure gauge."""
        return int(await self._call(self.client.xlen(self.keys.entries)))

    # --- per-host limits shared by every daemon ---

    async def host_acquire(
        self, host: str, token: str, per_host: int, spacing_s: float, hold_s: float
    ) -> float | None:
        """Seconds to wait before this request to ``host`` may start, or None if
        the host has no free slot now (try again)."""
        reply = await self._acquires.submit(
            ([self.keys.host_inflight(host), self.keys.host_next(host)],
             [token, per_host, repr(spacing_s), repr(hold_s)])
        )  # fmt: skip
        return None if reply == -1 else float(reply)

    async def _host_acquire_many(self, calls: list[tuple[list[str], list[str | int]]]) -> list[Any]:
        """The acquire script once per call, pipelined: one round trip for all.

        By its SHA: a pipeline of registered scripts would ask SCRIPT EXISTS
        first, a second round trip. A server that lacks the script (restarted,
        failed over) answers NOSCRIPT; those calls go again one by one, through
        redis-py's script object, which loads it.
        """
        sha = self._host_acquire.sha
        async with self.client.pipeline(transaction=False) as p:
            for ks, args in calls:
                # (ClusterPipeline blocks its evalsha method, not the command)
                p.execute_command("EVALSHA", sha, len(ks), *ks, *args)
            replies = list(await self._call(p.execute(raise_on_error=False)))
        for i, reply in enumerate(replies):
            if isinstance(reply, NoScriptError):
                ks, args = calls[i]
                replies[i] = await self._call(self._host_acquire(keys=ks, args=args))
            elif isinstance(reply, Exception):
                raise RedisUnavailable(self.where, f"{type(reply).__name__}: {reply}")
        return replies

    async def host_release_many(self, releases: Sequence[tuple[str, str]]) -> None:
        """End requests, given as (host, token), in one round trip."""
        async with self.client.pipeline(transaction=False) as p:
            for host, token in releases:
                p.zrem(self.keys.host_inflight(host), token)
            await self._call(p.execute())

    # --- live daemons ---

    async def heartbeat(self, daemon_id: str, fields: dict[str, str], ttl_s: float) -> None:
        key = self.keys.daemon(daemon_id)
        async with self.client.pipeline(transaction=True) as p:
            p.sadd(self.keys.daemons, daemon_id)
            p.hset(key, mapping=dict(fields))  # type: ignore[arg-type]
            p.pexpire(key, max(1, int(ttl_s * 1000)))
            await self._call(p.execute())

    async def unregister(self, daemon_id: str) -> None:
        async with self.client.pipeline(transaction=True) as p:
            p.srem(self.keys.daemons, daemon_id)
            p.delete(self.keys.daemon(daemon_id))
            await self._call(p.execute())

    async def daemons(self) -> dict[str, dict[str, str]]:
        """Every daemon whose heartbeat has not expired (the others are forgotten)."""
        ids = sorted(str(i) for i in await self._call(self.client.smembers(self.keys.daemons)))
        found = await self._hashes([self.keys.daemon(i) for i in ids])
        gone = [i for i, h in zip(ids, found, strict=True) if not h]
        if gone:
            await self._call(self.client.srem(self.keys.daemons, *gone))
        return {i: h for i, h in zip(ids, found, strict=True) if h}

    async def count_alerts(self, feed: str, n: int) -> None:
        if n:
            await self._call(self.client.hincrby(self.keys.feed_state(feed), "alerts", n))

    async def count_errors(self, feed: str) -> int:
        """One more consecutive failure; returns the new count."""
        return int(await self._call(self.client.hincrby(self.keys.feed_state(feed), "errors", 1)))

    async def seen_count(self, feed: str) -> int:
        return int(await self._call(self.client.zcard(self.keys.seen(feed))))

    async def group_lags(self) -> dict[str, int | None]:
        """Unread entries per consumer group of the alert stream (None: unknown)."""
        try:
            groups = await self._call(self.client.xinfo_groups(self.keys.alert_stream))
        except RedisUnavailable as exc:
            if "no such key" in exc.detail:
                return {}
            raise
        return {str(g["name"]): g.get("lag") for g in groups}

    async def publish_system(self, message: str) -> None:
        await self._call(self.client.publish(keys.SYSTEM_CHANNEL, message))
