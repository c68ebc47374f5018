"""Redis Cluster: ``redis+cluster://`` URLs parsed purely, and daemons run
for real against a three-master cluster started by the fixtures. (The
Redis side of coordination, host limits and sightings runs on a cluster too:
their tests take ``any_redis_url``.)"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import cast

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

    async def alert_ids() -> list[str]:
        rows = cast(list[tuple[str, dict[str, str]]], await client.xrange(space.alert_stream))
        return [f["alert_id"] for _id, f in rows]

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


@pytest.mark.timeout(180)
async def test_a_daemon_rides_out_the_outage_of_its_clusters_shard(
    tmp_path: Path, site: tuple[NewsSite, str]
) -> None:
    """The master that holds feed-monitor's slot stops while polls are in
    flight, and starts again: the daemon keeps running, spools what it could
    not deliver, and in the end every story is alerted exactly once."""
    cluster = RedisClusterServers(tmp_path / "cluster", persist=True)
    cluster.start()
    news, base = site
    feeds = 10
    first = daemons.publish(news, base, rounds=1, feeds=feeds)
    cfg = daemons.write_config(tmp_path, "a", cluster.url, base, feeds=feeds)
    procs = await daemons.start_daemons({"a": "all"}, {"a": cfg}, logs=tmp_path)
    client = connect(cluster.url)
    space = keys.CLUSTER

    async def alert_ids() -> list[str]:
        rows = cast(list[tuple[str, dict[str, str]]], await client.xrange(space.alert_stream))
        return [f["alert_id"] for _id, f in rows]

    try:
        await daemons.until("first alerts", lambda: daemons.at_least(alert_ids, first), 60)
        # Second round behind slow feeds: polls are in flight when Redis goes.
        total = daemons.publish(news, base, rounds=2, delay_s=1.5, feeds=feeds)
        hits = sum(news.hits[f"/f/{i}.xml"] for i in range(feeds))
        await client.zadd(space.due, {f"f{i}": 0 for i in range(feeds)})

        async def polling() -> bool:
            return sum(news.hits[f"/f/{i}.xml"] for i in range(feeds)) > hits

        await daemons.until("second-round polls started", polling, 30)
        home = cluster.node_of(space.alert_stream)
        cluster.stop_node(home)
        await asyncio.sleep(6)  # polls end, pages are fetched, Redis is away
        assert procs["a"].returncode is None
        cluster.start_node(home)
        cluster.wait_ok()
        await daemons.until("every alert", lambda: daemons.at_least(alert_ids, total), 90)
        await asyncio.sleep(2)  # a duplicate would show up now
        ids = await alert_ids()
        assert len(ids) == len(set(ids)) == total
        log = (tmp_path / "a.log").read_text()
        assert "alert.spooled" in log  # the outage was felt, and bridged
    finally:
        await daemons.stop_daemons(procs)
        await disconnect(client)
        cluster.stop()
    assert procs["a"].returncode == 0


@pytest.mark.timeout(180)
async def test_a_daemon_follows_a_failover_to_the_replica_and_loses_nothing(
    tmp_path: Path, site: tuple[NewsSite, str]
) -> None:
    """The master that holds feed-monitor's slot crashes (SIGKILL) while polls
    are in flight, and is never restarted: its replica is promoted, the
    daemon finds the new master on its own, and every story is alerted
    exactly once. (Replication is asynchronous, so the replica may lack the
    master's last writes. It gets them in order, and an alert is written
    before its entry is acknowledged: a replica that lacks an alert lacks
    the acknowledgement too, and the entry is processed again.)"""
    cluster = RedisClusterServers(tmp_path / "cluster", replicas=1, node_timeout_ms=1000)
    cluster.start()
    news, base = site
    feeds = 10
    first = daemons.publish(news, base, rounds=1, feeds=feeds)
    cfg = daemons.write_config(tmp_path, "a", cluster.url, base, feeds=feeds)
    procs = await daemons.start_daemons({"a": "all"}, {"a": cfg}, logs=tmp_path)
    client = connect(cluster.url)
    space = keys.CLUSTER

    async def alert_ids() -> list[str]:
        rows = cast(list[tuple[str, dict[str, str]]], await client.xrange(space.alert_stream))
        return [f["alert_id"] for _id, f in rows]

    try:
        await daemons.until("first alerts", lambda: daemons.at_least(alert_ids, first), 60)
        total = daemons.publish(news, base, rounds=2, delay_s=1.0, feeds=feeds)
        hits = sum(news.hits[f"/f/{i}.xml"] for i in range(feeds))
        await client.zadd(space.due, {f"f{i}": 0 for i in range(feeds)})

        async def polling() -> bool:
            return sum(news.hits[f"/f/{i}.xml"] for i in range(feeds)) > hits

        await daemons.until("second-round polls started", polling, 30)
        home = cluster.node_of(space.alert_stream)
        cluster.kill_node(home)
        promoted = await asyncio.to_thread(cluster.node_of, space.alert_stream)
        assert promoted in cluster.replica_ports
        await daemons.until("every alert", lambda: daemons.at_least(alert_ids, total), 90)
        await asyncio.sleep(2)  # a duplicate would show up now
        ids = await alert_ids()
        assert len(ids) == len(set(ids)) == total
        assert procs["a"].returncode is None
        assert "unavailable" in (tmp_path / "a.log").read_text()  # it felt the crash
    finally:
        await daemons.stop_daemons(procs)
        await disconnect(client)
        cluster.stop()
    assert procs["a"].returncode == 0
