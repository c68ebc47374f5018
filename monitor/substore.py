"""Redis state of WebSub subscriptions: one hash per feed and a set naming
them, so the state (and each subscription's secret) survives restarts and
is shared by every daemon on the same Redis.

Its own small wrapper over the Store's client: redis-py errors become
``RedisUnavailable`` here, as in ``store``.
"""

from __future__ import annotations

from typing import Any

from redis.exceptions import RedisError

from monitor.errors import RedisUnavailable
from monitor.store import Store
from monitor.subscriptions import SubscriptionState


class SubscriptionStore:
    def __init__(self, store: Store) -> None:
        self.client = store.client
        self.keys = store.keys
        self.where = store.where

    async def _call(self, coro: Any) -> Any:
        try:
            return await coro
        except (RedisError, OSError) as exc:
            raise RedisUnavailable(self.where, f"{type(exc).__name__}: {exc}") from exc

    async def get(self, feed: str) -> SubscriptionState | None:
        raw: dict[str, str] = await self._call(self.client.hgetall(self.keys.websub(feed)))
        return SubscriptionState.from_hash(raw)

    async def all(self) -> dict[str, SubscriptionState]:
        names = sorted(await self._call(self.client.smembers(self.keys.websub_feeds)))
        if not names:
            return {}
        pipe = self.client.pipeline(transaction=False)
        for name in names:
            pipe.hgetall(self.keys.websub(name))
        rows: list[dict[str, str]] = await self._call(pipe.execute())
        found = {}
        for name, raw in zip(names, rows, strict=True):
            sub = SubscriptionState.from_hash(raw)
            if sub is not None:
                found[name] = sub
        return found

    async def put(self, sub: SubscriptionState) -> None:
        pipe = self.client.pipeline(transaction=True)
        pipe.delete(self.keys.websub(sub.feed))
        pipe.hset(self.keys.websub(sub.feed), mapping=sub.to_hash())  # type: ignore[arg-type]
        pipe.sadd(self.keys.websub_feeds, sub.feed)
        await self._call(pipe.execute())

    async def delete(self, feed: str) -> None:
        pipe = self.client.pipeline(transaction=True)
        pipe.delete(self.keys.websub(feed))
        pipe.srem(self.keys.websub_feeds, feed)
        await self._call(pipe.execute())

    async def put_leaving(self, sub: SubscriptionState, ttl_s: float) -> None:
        """Remember a subscription we are leaving at its old hub, for as long
        as that hub may take to verify the unsubscription."""
        key = self.keys.websub_leaving(sub.feed, sub.token)
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(key, mapping=sub.to_hash())  # type: ignore[arg-type]
        pipe.expire(key, max(1, int(ttl_s)))
        await self._call(pipe.execute())

    async def get_leaving(self, feed: str, token: str) -> SubscriptionState | None:
        raw = await self._call(self.client.hgetall(self.keys.websub_leaving(feed, token)))
        return SubscriptionState.from_hash(raw)

    async def forget_leaving(self, feed: str, token: str) -> None:
        await self._call(self.client.delete(self.keys.websub_leaving(feed, token)))
