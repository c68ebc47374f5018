"""``redis+sentinel://`` URLs: parsed purely, and used for real against a
redis-server started in Sentinel mode that monitors the test Redis."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from monitor import keys
from monitor.config import SentinelUrl, parse_sentinel_url
from monitor.embedded_redis import find_redis_server
from monitor.errors import RedisUnavailable
from monitor.redisconn import connect
from monitor.store import Store
from tests.servers import RedisServer, free_port


def test_sentinel_urls_parse_and_bad_ones_say_why() -> None:
    assert parse_sentinel_url("redis+sentinel://10.0.0.5:26379,[::1]:26380/main/2") == (
        SentinelUrl((("10.0.0.5", 26379), ("::1", 26380)), "main", 2)
    )
    spec = parse_sentinel_url("redis+sentinel://app:s%40cret@h:26379/mymaster")
    assert (spec.username, spec.password, spec.db) == ("app", "s@cret", 0)
    assert parse_sentinel_url("redis+sentinel://:pw@h:1/m").password == "pw"
    for bad, why in [("redis+sentinel://h/m", "host:port"),
                     ("redis+sentinel://h:26379", "service"),
                     ("redis+sentinel://h:26379/m/x", "service")]:  # fmt: skip
        with pytest.raises(ValueError, match=why):
            parse_sentinel_url(bad)


@pytest.fixture
def sentinel(tmp_path: Path, redis_server: RedisServer) -> Iterator[int]:
    """A sentinel on a free port, monitoring the test server as ``main``."""
    port = free_port()
    conf = tmp_path / "sentinel.conf"
    conf.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {tmp_path}\n"
        f"sentinel monitor main 127.0.0.1 {redis_server.port} 1\n"
    )
    proc = subprocess.Popen(
        [find_redis_server(), str(conf), "--sentinel"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def test_the_daemons_store_finds_the_master_through_sentinel(
    sentinel: int, redis_url: str
) -> None:
    url = f"redis+sentinel://127.0.0.1:{sentinel}/main/0"
    store = Store(connect(url), url, stream_maxlen=1000, delivered_ttl_s=3600,
                  seen_per_feed=100)  # fmt: skip
    try:
        for _ in range(100):  # the sentinel takes a moment to start (bounded: 10 s)
            try:
                await store.ping()
                break
            except RedisUnavailable:
                await asyncio.sleep(0.1)
        await store.set_due({"f": 1.0})
        assert await store.claim(["f"], "me", 2.0, 60.0) == ["f"]
    finally:
        await store.close()
    direct = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        assert await direct.zscore(keys.SERVER.due, "f") == 60.0  # written on the master
        assert await direct.hget(keys.SERVER.leases, "f") == "me|60.0"
    finally:
        await direct.aclose()
