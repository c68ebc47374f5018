"""Connecting to Redis: a single server (TCP, TLS, unix socket), the master
behind Sentinel, or a Cluster; and which key names each one needs."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import ExponentialWithJitterBackoff

from monitor import keys
from monitor.config import CLUSTER_SCHEMES, SENTINEL_SCHEME, parse_cluster_url, parse_sentinel_url


class _Cluster(RedisCluster):
    """redis-py (8.1) resolves a command's routing on a startup node before it
    initializes, and initializing closes those nodes: commands sent together
    on a new client then fail ("'NoneType' object has no attribute
    'writelines'"). Initialize first; the others wait on its lock."""

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        if self._initialize:
            await self.initialize()
        return await super().execute_command(*args, **kwargs)


# A single server (or Sentinel's master), or a Cluster: the same commands.
Client = aioredis.Redis | RedisCluster


def connect(url: str, max_connections: int = 64) -> Client:
    """A client whose pool makes callers wait for a connection when all are busy
    (redis-py's default pool fails the extra caller instead, which would look
    like an outage under load). ``redis+sentinel://`` asks the sentinels for
    the master, and again after a failover; ``redis+cluster://`` follows the
    cluster's slots from any of the listed nodes."""
    timeouts: dict[str, Any] = {"socket_timeout": 10, "socket_connect_timeout": 5}
    if url.startswith(SENTINEL_SCHEME):
        spec = parse_sentinel_url(url)
        sentinel = Sentinel(list(spec.sentinels), **timeouts)  # type: ignore[no-untyped-call]
        # redis-py's Sentinel pool cannot make callers wait: room to spare.
        client: aioredis.Redis = sentinel.master_for(
            spec.service, db=spec.db, username=spec.username, password=spec.password,
            decode_responses=True, max_connections=4 * max_connections, **timeouts,
        )  # fmt: skip
        return client
    if url.startswith(CLUSTER_SCHEMES):
        cspec = parse_cluster_url(url)
        # Per node; a cluster node's pool cannot make callers wait either.
        # Few, short retries (redis-py's default is ten, backing off to 0.5 s:
        # seconds per command): a failover settles within them, and a longer
        # outage should reach the spool at once, as with one server.
        return _Cluster(
            startup_nodes=[ClusterNode(host, port) for host, port in cspec.nodes],
            username=cspec.username, password=cspec.password, ssl=cspec.tls,
            decode_responses=True, max_connections=4 * max_connections,
            retry=Retry(ExponentialWithJitterBackoff(cap=0.25, base=0.02), retries=3),
            **timeouts,
        )  # fmt: skip
    pool = aioredis.BlockingConnectionPool.from_url(
        url, max_connections=max_connections, timeout=20, decode_responses=True, **timeouts
    )
    return aioredis.Redis.from_pool(pool)  # the client owns (and closes) its pool


def keyspace(client: Client) -> keys.KeySpace:
    """Cluster needs every key of a script or MULTI in one slot: a hash tag."""
    return keys.CLUSTER if isinstance(client, RedisCluster) else keys.SERVER


async def disconnect(client: Client) -> None:
    """Close a client from ``connect``, and its connections to the sentinels."""
    manager = getattr(getattr(client, "connection_pool", None), "sentinel_manager", None)
    await client.aclose()
    for node in getattr(manager, "sentinels", ()):
        await node.aclose()
