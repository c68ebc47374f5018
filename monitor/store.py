"""Redis: feed state, seen entries, and idempotent alert delivery.

The only module that calls redis-py; its errors become ``RedisUnavailable``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from monitor import keys
from monitor.alerts import Alert
from monitor.errors import RedisUnavailable

# One atomic step: skip an alert_id already delivered, else append it to the
# stream, remember it, and publish it. A retry after any failure is harmless.
_DELIVER = """
local existing = redis.call('GET', KEYS[1])
if existing then return {0, existing} end
local id = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*',
                      'alert', ARGV[1], 'alert_id', ARGV[4], 'rule', ARGV[5])
redis.call('SET', KEYS[1], id, 'EX', ARGV[3])
for i = 6, #ARGV do redis.call('PUBLISH', ARGV[i], ARGV[1]) end
return {1, id}
"""


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


def connect(url: str, max_connections: int = 64) -> aioredis.Redis:
    """A client whose pool makes callers wait for a connection when all are busy
    (redis-py's default pool fails the extra caller instead, which would look
    like an outage under load)."""
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=20,
        decode_responses=True,
        socket_timeout=10,
        socket_connect_timeout=5,
    )
    return aioredis.Redis.from_pool(pool)  # the client owns (and closes) its pool


class Store:
    def __init__(
        self,
        client: aioredis.Redis,
        where: str,
        *,
        stream_maxlen: int,
        delivered_ttl_s: int,
        seen_per_feed: int,
    ) -> None:
        self.client = client
        self.where = where
        self.stream_maxlen = stream_maxlen
        self.delivered_ttl_s = delivered_ttl_s
        self.seen_per_feed = seen_per_feed
        self._deliver = client.register_script(_DELIVER)

    async def _call(self, coro: Any) -> Any:
        try:
            return await coro
        except (RedisError, OSError) as exc:
            raise RedisUnavailable(self.where, f"{type(exc).__name__}: {exc}") from exc

    async def ping(self) -> None:
        await self._call(self.client.ping())

    async def close(self) -> None:
        await self.client.aclose()

    async def feed_hash(self, feed: str) -> dict[str, str]:
        h: dict[str, str] = await self._call(self.client.hgetall(keys.feed_state(feed)))
        return h

    async def feed_state(self, feed: str) -> FeedState:
        h = await self._call(self.client.hgetall(keys.feed_state(feed)))
        return FeedState.from_hash(h)

    async def save_feed_state(self, feed: str, fields: dict[str, str]) -> None:
        # Empty values delete a field (e.g. an etag the server stopped sending).
        key = keys.feed_state(feed)
        keep = {k: v for k, v in fields.items() if v != ""}
        drop = [k for k, v in fields.items() if v == ""]
        async with self.client.pipeline(transaction=True) as p:
            if keep:
                p.hset(key, mapping=dict(keep))  # type: ignore[arg-type]
            if drop:
                p.hdel(key, *drop)
            await self._call(p.execute())

    async def unseen(self, feed: str, identities: Sequence[str]) -> list[str]:
        if not identities:
            return []
        scores = await self._call(self.client.zmscore(keys.seen(feed), list(identities)))
        return [i for i, s in zip(identities, scores, strict=True) if s is None]

    async def mark_seen(self, feed: str, identities: Sequence[str], now: datetime) -> None:
        if not identities:
            return
        key = keys.seen(feed)
        ts = now.timestamp()
        async with self.client.pipeline(transaction=True) as p:
            p.zadd(key, dict.fromkeys(identities, ts), nx=True)
            # Keep the newest N; a feed never holds that many live items.
            p.zremrangebyrank(key, 0, -self.seen_per_feed - 1)
            await self._call(p.execute())

    async def deliver(self, alert: Alert) -> Delivery:
        channels = [keys.ALERT_CHANNEL, keys.rule_channel(alert.rule)]
        channels += [c for c in alert.channels if c not in channels]
        new, stream_id = await self._call(
            self._deliver(
                keys=[keys.delivered(alert.alert_id), keys.ALERT_STREAM],
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
        key = keys.alerted(feed, identity)
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
                p.hgetall(keys.alerted(feed, i))
            found = await self._call(p.execute())
        return {i: h for i, h in zip(identities, found, strict=True) if h}

    async def due(self, now: float, limit: int) -> list[str]:
        """Feeds whose next poll time has come, most overdue first."""
        names = await self._call(
            self.client.zrangebyscore(keys.DUE, "-inf", now, start=0, num=limit)
        )
        return [str(n) for n in names]

    async def set_due(self, due: dict[str, float], *, only_new: bool = False) -> None:
        if due:
            await self._call(self.client.zadd(keys.DUE, due, nx=only_new))

    async def unschedule(self, names: Sequence[str]) -> None:
        if names:
            await self._call(self.client.zrem(keys.DUE, *names))

    async def due_times(self) -> dict[str, float]:
        pairs = await self._call(self.client.zrange(keys.DUE, 0, -1, withscores=True))
        return {str(n): float(s) for n, s in pairs}

    async def claim(self, names: Sequence[str], owner: str, until: float) -> None:
        if names:
            await self._call(
                self.client.hset(keys.LEASES, mapping=dict.fromkeys(names, f"{owner}|{until}"))
            )

    async def release(self, names: Sequence[str]) -> None:
        if names:
            await self._call(self.client.hdel(keys.LEASES, *names))

    async def leased(self, names: Sequence[str], now: float) -> set[str]:
        """Which of ``names`` someone is polling now (an unexpired lease)."""
        if not names:
            return set()
        values = await self._call(self.client.hmget(keys.LEASES, list(names)))
        held = set()
        for name, v in zip(names, values, strict=True):
            if v and float(str(v).rpartition("|")[2] or 0) > now:
                held.add(name)
        return held

    async def release_owner(self, owner: str) -> int:
        """Drop the leases an earlier run of this daemon left when it died."""
        leases = await self._call(self.client.hgetall(keys.LEASES))
        mine = [n for n, v in leases.items() if str(v).rpartition("|")[0] == owner]
        await self.release(mine)
        return len(mine)

    async def count_alerts(self, feed: str, n: int) -> None:
        if n:
            await self._call(self.client.hincrby(keys.feed_state(feed), "alerts", n))

    async def count_errors(self, feed: str) -> int:
        """One more consecutive failure; returns the new count."""
        return int(await self._call(self.client.hincrby(keys.feed_state(feed), "errors", 1)))

    async def seen_count(self, feed: str) -> int:
        return int(await self._call(self.client.zcard(keys.seen(feed))))

    async def group_lags(self) -> dict[str, int | None]:
        """Unread entries per consumer group of the alert stream (None: unknown)."""
        try:
            groups = await self._call(self.client.xinfo_groups(keys.ALERT_STREAM))
        except RedisUnavailable as exc:
            if "no such key" in exc.detail:
                return {}
            raise
        return {str(g["name"]): g.get("lag") for g in groups}

    async def publish_system(self, message: str) -> None:
        await self._call(self.client.publish(keys.SYSTEM_CHANNEL, message))
