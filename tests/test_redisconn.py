"""The single-server client's pool: at most ``max_connections`` connections,
and a caller that finds them all busy waits for one instead of failing. A
real redis-server; BLPOP on an empty list holds a connection for a while."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from monitor.redisconn import _WaitingPool, connect


async def our_connections(url: str, name: str) -> int:
    watcher = aioredis.Redis.from_url(url, decode_responses=True)
    try:
        return sum(1 for c in await watcher.client_list() if c["name"] == name)
    finally:
        await watcher.aclose()


async def test_callers_wait_for_a_free_connection_and_all_get_through(redis_url: str) -> None:
    client = connect(f"{redis_url}?client_name=pool-under-test", max_connections=2)
    try:
        started = time.monotonic()
        # Six callers, each holding a connection 0.3 s: three waves of two.
        waits = asyncio.gather(*(client.blpop(["empty"], timeout=0.3) for _ in range(6)))
        await asyncio.sleep(0.15)
        assert await our_connections(redis_url, "pool-under-test") == 2
        assert await waits == [None] * 6
        assert time.monotonic() - started >= 0.8
        # Every connection went back: a full round of new callers gets through.
        assert await asyncio.gather(*(client.incr("n") for _ in range(20))) == list(range(1, 21))
    finally:
        await client.aclose()


async def test_a_caller_waits_at_most_wait_s_and_the_slot_is_not_lost(redis_url: str) -> None:
    pool = _WaitingPool.from_url(redis_url, max_connections=1, wait_s=0.2, decode_responses=True)
    client = aioredis.Redis.from_pool(pool)
    try:
        holder = asyncio.ensure_future(client.blpop(["empty"], timeout=1))
        await asyncio.sleep(0.1)  # the one connection is taken
        started = time.monotonic()
        with pytest.raises(RedisConnectionError, match="no connection free"):
            await client.ping()
        assert 0.15 <= time.monotonic() - started < 0.9
        assert await holder is None
        # A command that fails in Redis still gives its connection back.
        await client.set("s", "text")
        with pytest.raises(ResponseError):
            await client.lpush("s", "x")
        assert await asyncio.wait_for(client.ping(), timeout=0.5)
    finally:
        await client.aclose()
