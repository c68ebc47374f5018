"""Connecting to Redis: a single server (TCP, TLS, unix socket), the master
behind Sentinel, or a Cluster; and which key names each one needs."""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

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


class _WaitingPool(aioredis.ConnectionPool):
    """redis-py's pool, but a caller waits (up to ``wait_s``) for a free
    connection when all ``max_connections`` are in use; redis-py's fails it.

    redis-py's BlockingConnectionPool waits too, but enters a condition, a
    timeout and a context manager on every command: about 10% more CPU per
    command than this here (a PING: 208 against 188 us, medians of five
    rounds on uvloop), and a daemon sends several commands per article and
    per poll. A free connection costs this one a semaphore's counter; only
    a caller that has to wait sets a timer."""

    def __init__(self, *, wait_s: float = 20.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.wait_s = wait_s
        self._free = asyncio.Semaphore(self.max_connections)

    async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        if self._free.locked():
            try:
                async with asyncio.timeout(self.wait_s):
                    await self._free.acquire()
            except TimeoutError:
                raise RedisConnectionError("no connection free in the pool") from None
        else:
            await self._free.acquire()  # returns at once
        try:
            return await super().get_connection(*args, **kwargs)  # type: ignore[no-untyped-call]
        except BaseException:
            self._free.release()
            raise

    async def release(self, connection: Any) -> None:
        held = connection in self._in_use_connections  # released once, counted once
        try:
            await super().release(connection)
        finally:
            if held:
                self._free.release()


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
    pool = _WaitingPool.from_url(
        url, max_connections=max_connections, decode_responses=True, **timeouts
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
