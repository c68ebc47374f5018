"""``redis+sentinel://`` URLs: parsed purely, and used for real against a
redis-server started in Sentinel mode that monitors the test Redis."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from asyncio.subprocess import Process
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from monitor import keys
from monitor.config import SentinelUrl, parse_sentinel_url
from monitor.embedded_redis import find_redis_server
from monitor.errors import RedisUnavailable
from monitor.redisconn import connect, disconnect
from monitor.store import Store
from tests import daemons
from tests.servers import NewsSite, RedisServer, free_port


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


def start_sentinel(
    workdir: Path, master_port: int, down_after_ms: int = 30_000
) -> tuple[int, subprocess.Popen[bytes]]:
    """A sentinel on a free port, monitoring the master as ``main`` (quorum
    1: it alone decides a failover, ``down_after_ms`` after losing it)."""
    port = free_port()
    conf = workdir / "sentinel.conf"
    conf.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {workdir}\n"
        f"sentinel monitor main 127.0.0.1 {master_port} 1\n"
        f"sentinel down-after-milliseconds main {down_after_ms}\n"
        "sentinel failover-timeout main 10000\n"
    )
    proc = subprocess.Popen(
        [find_redis_server(), str(conf), "--sentinel"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    return port, proc


@pytest.fixture
def sentinel(tmp_path: Path, redis_server: RedisServer) -> Iterator[int]:
    """A sentinel on a free port, monitoring the test server as ``main``."""
    port, proc = start_sentinel(tmp_path, redis_server.port)
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


@pytest.mark.timeout(180)
async def test_a_daemon_follows_a_sentinel_failover_and_loses_nothing(
    tmp_path: Path, site: tuple[NewsSite, str]
) -> None:
    """The master crashes (SIGKILL) under a daemon with polls in flight and
    never comes back: the sentinel promotes the replica, the daemon asks the
    sentinel again and goes on with the new master, and every story is
    alerted exactly once (docs/design.md: why a replica that lacks the last
    writes loses no story)."""
    master = RedisServer(tmp_path / "master")
    master.start()
    replica = RedisServer(tmp_path / "replica", replica_of=master.port)
    replica.start()
    near_replica = aioredis.Redis(port=replica.port, decode_responses=True)

    async def linked() -> bool:
        info = await near_replica.info("replication")
        return bool(info.get("master_link_status") == "up")

    async def known() -> bool:  # the sentinel has seen the replica (it can fail over)
        with contextlib.suppress(RedisError):
            replicas = await watcher.execute_command("SENTINEL", "REPLICAS", "main")  # type: ignore[no-untyped-call]
            return len(replicas) == 1
        return False

    await daemons.until("replica in sync", linked, 20)
    # Started after the replica is linked: the sentinel learns of replicas
    # from the master, and must know one to fail over to.
    port, proc = await asyncio.to_thread(start_sentinel, tmp_path, master.port, 1000)
    watcher = aioredis.Redis(port=port, decode_responses=True)
    news, base = site
    feeds = 10
    url = f"redis+sentinel://127.0.0.1:{port}/main/0"
    client = connect(url)
    space = keys.SERVER
    procs: dict[str, Process] = {}

    async def alert_ids() -> list[str]:  # none while the sentinel has no master
        with contextlib.suppress(RedisError):
            return await daemons.alert_ids(client, space)
        return []

    try:
        await daemons.until("sentinel knows the replica", known, 20)
        first = daemons.publish(news, base, rounds=1, feeds=feeds)
        cfg = daemons.write_config(tmp_path, "a", url, base, feeds=feeds)
        procs = await daemons.start_daemons({"a": "all"}, {"a": cfg}, logs=tmp_path)
        await daemons.until("first alerts", lambda: daemons.at_least(alert_ids, first), 60)
        total = await daemons.polls_in_flight(news, base, client, space, feeds, delay_s=1.5)
        master.kill()

        async def promoted() -> bool:
            with contextlib.suppress(RedisError):
                addr = await watcher.execute_command(  # type: ignore[no-untyped-call]
                    "SENTINEL", "GET-MASTER-ADDR-BY-NAME", "main"
                )
                return int(addr[1]) == replica.port
            return False

        await daemons.until("the replica promoted", promoted, 30)
        await daemons.each_alerted_once(alert_ids, total)
        assert procs["a"].returncode is None
        assert "unavailable" in (tmp_path / "a.log").read_text()  # it felt the crash
    finally:
        await daemons.stop_daemons(procs)
        await disconnect(client)
        await watcher.aclose()
        await near_replica.aclose()
        proc.terminate()
        proc.wait(timeout=10)
        replica.stop()
        master.stop()
    assert procs["a"].returncode == 0
