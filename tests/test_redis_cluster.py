"""Redis Cluster: ``redis+cluster://`` URLs parsed purely, and daemons run
for real against a three-master cluster started by the fixtures. (The
Redis side of coordination, host limits and sightings runs on a cluster too:
their tests take ``any_redis_url``.)"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from pydantic import ValidationError

from monitor import keys
from monitor.config import ClusterUrl, RedisSettings, parse_cluster_url
from monitor.redisconn import connect, disconnect
from tests import daemons
from tests.servers import NewsSite, RedisClusterServers

FEEDS = 30


def test_cluster_urls_parse_and_bad_ones_say_why() -> None:
    assert parse_cluster_url("redis+cluster://10.0.0.5:7000,[::1]:7001") == ClusterUrl(
        (("10.0.0.5", 7000), ("::1", 7001))
    )
    spec = parse_cluster_url("rediss+cluster://app:s%40cret@h:7000/0")
    assert (spec.username, spec.password, spec.tls) == ("app", "s@cret", True)
    for bad, why in [("redis+cluster://h", "host:port"),
                     ("redis+cluster://h:7000/2", "only database 0"),
                     ("redis://h:7000", "expected redis\\+cluster")]:  # fmt: skip
        with pytest.raises(ValueError, match=why):
            parse_cluster_url(bad)
    with pytest.raises(ValidationError, match="cluster node 'h:x' is not host:port"):
        RedisSettings(url="redis+cluster://h:7000,h:x")


async def test_daemons_on_a_cluster_alert_each_story_once_on_every_node(
    tmp_path: Path, redis_cluster: RedisClusterServers, site: tuple[NewsSite, str]
) -> None:
    """Two daemons (all, worker) on a three-master cluster: each feed polled
    once, each matching story alerted once into ``{feed-monitor}:alerts``,
    every key in the one slot, and a live subscriber on a node that does not
    hold that slot still hears every alert."""
    redis_cluster.flush()
    news, base = site
    expected = daemons.publish(news, base, rounds=2, feeds=FEEDS)
    url = redis_cluster.url
    space = keys.CLUSTER
    home = redis_cluster.node_of(space.alert_stream)
    elsewhere = next(p for p in redis_cluster.ports if p != home)
    listener = aioredis.Redis(port=elsewhere, decode_responses=True)
    pubsub = listener.pubsub()
    await pubsub.subscribe(keys.ALERT_CHANNEL)
    client = connect(url)
    configs = {n: daemons.write_config(tmp_path, n, url, base, feeds=FEEDS) for n in ("a", "b")}
    procs = await daemons.start_daemons({"a": "all", "b": "worker"}, configs)
    heard: list[str] = []

    async def listen() -> None:
        async for msg in pubsub.listen():
            if msg["type"] == "message":
                heard.append(json.loads(msg["data"])["alert_id"])

    listening = asyncio.create_task(listen())

    def alert_ids() -> Awaitable[list[str]]:
        return daemons.alert_ids(client, space)

    async def drained() -> bool:
        return await client.xlen(space.entries) == 0 and len(heard) >= expected

    try:
        await daemons.until("alerts", lambda: daemons.at_least(alert_ids, expected), 120)
        await daemons.until("entries acknowledged, alerts heard", drained, 60)
        ids = await alert_ids()
        assert len(ids) == len(set(ids)) == expected
        assert sorted(heard) == sorted(ids)
        assert all(news.hits.get(f"/f/{i}.xml") == 1 for i in range(FEEDS))
        assert (await client.xpending(space.entries, keys.ENTRY_GROUP))["pending"] == 0
        rows = await daemons.status_daemons(configs["a"])
        assert sorted(str(r["role"]) for r in rows) == ["all", "worker"]

        # Every key carries the hash tag, so all of them are on one master.
        for port in redis_cluster.ports:
            node = aioredis.Redis(port=port, decode_responses=True)
            try:
                found = [k async for k in node.scan_iter(count=1000)]
            finally:
                await node.aclose()
            assert all(k.startswith("{feed-monitor}:") for k in found), found[:5]
            assert bool(found) == (port == home), (port, home, found[:5])

        # `feed-monitor subscribe` reads the tagged stream.
        proc = await asyncio.create_subprocess_exec(
            daemons.EXE, "subscribe", "--from-start", "--json", "--count", str(expected),
            "--config", str(configs["a"]),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        out, _ = await asyncio.wait_for(proc.communicate(), timeout=30)
        printed = [json.loads(line)["alert_id"] for line in out.decode().splitlines()]
        assert printed == ids
    finally:
        await daemons.stop_daemons(procs)
        listening.cancel()
        await pubsub.aclose()  # type: ignore[no-untyped-call]
        await listener.aclose()
        await disconnect(client)
    assert [p.returncode for p in procs.values()] == [0, 0]


async def shard_fault(
    tmp_path: Path,
    site: tuple[NewsSite, str],
    cluster: RedisClusterServers,
    fault: Callable[[int], Awaitable[None]],
) -> str:
    """One daemon on ``cluster``, ten feeds: the first stories alerted, then
    ``fault(port)`` strikes the master holding feed-monitor's slot while the
    next polls are in flight. The daemon keeps running and in the end every
    story is alerted exactly once. Returns the daemon's log."""
    cluster.start()
    news, base = site
    feeds = 10
    first = daemons.publish(news, base, rounds=1, feeds=feeds)
    cfg = daemons.write_config(tmp_path, "a", cluster.url, base, feeds=feeds)
    procs = await daemons.start_daemons({"a": "all"}, {"a": cfg}, logs=tmp_path)
    client = connect(cluster.url)
    space = keys.CLUSTER

    def ids() -> Awaitable[list[str]]:
        return daemons.alert_ids(client, space)

    try:
        await daemons.until("first alerts", lambda: daemons.at_least(ids, first), 60)
        total = await daemons.polls_in_flight(news, base, client, space, feeds, delay_s=1.5)
        await fault(cluster.node_of(space.alert_stream))
        assert procs["a"].returncode is None
        await daemons.each_alerted_once(ids, total)
    finally:
        await daemons.stop_daemons(procs)
        await disconnect(client)
        cluster.stop()
    assert procs["a"].returncode == 0
    return (tmp_path / "a.log").read_text()


@pytest.mark.timeout(180)
async def test_a_daemon_rides_out_the_outage_of_its_clusters_shard(
    tmp_path: Path, site: tuple[NewsSite, str]
) -> None:
    """The master stops, and starts again six seconds later: the daemon
    spools what it could not deliver meanwhile, then replays it."""
    cluster = RedisClusterServers(tmp_path / "cluster", persist=True)

    async def outage(home: int) -> None:
        cluster.stop_node(home)
        await asyncio.sleep(6)  # polls end, pages are fetched, Redis is away
        cluster.start_node(home)
        await asyncio.to_thread(cluster.wait_ok)

    log = await shard_fault(tmp_path, site, cluster, outage)
    assert "alert.spooled" in log  # the outage was felt, and bridged


@pytest.mark.timeout(180)
async def test_a_daemon_follows_a_failover_to_the_replica_and_loses_nothing(
    tmp_path: Path, site: tuple[NewsSite, str]
) -> None:
    """The master crashes (SIGKILL) and never comes back: its replica is
    promoted and the daemon finds the new master on its own. (Replication
    is asynchronous, so the replica may lack the master's last writes. It
    gets them in order, and an alert is written before its entry is
    acknowledged: a replica that lacks an alert lacks the acknowledgement
    too, and the entry is processed again.)"""
    cluster = RedisClusterServers(tmp_path / "cluster", replicas=1, node_timeout_ms=1000)

    async def crash(home: int) -> None:
        cluster.kill_node(home)
        promoted = await asyncio.to_thread(cluster.node_of, keys.CLUSTER.alert_stream)
        assert promoted in cluster.replica_ports

    log = await shard_fault(tmp_path, site, cluster, crash)
    assert "unavailable" in log  # it felt the crash
