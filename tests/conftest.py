from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestServer

from monitor.config import Config
from tests.servers import NewsSite, RedisClusterServers, RedisServer

ROOT = Path(__file__).resolve().parent.parent
UNTHROTTLED = {"per_host_concurrency": 16, "per_host_spacing_s": 0}


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def redis_url(redis_server: RedisServer) -> AsyncIterator[str]:
    """A clean database on the shared test server (flushed per test)."""
    client = aioredis.Redis.from_url(redis_server.url)
    await client.flushall()
    await client.aclose()
    yield redis_server.url


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterServers]:
    cluster = RedisClusterServers(tmp_path_factory.mktemp("redis-cluster"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(params=["server", "cluster"])
async def any_redis_url(request: pytest.FixtureRequest, redis_url: str) -> str:
    """A clean single server, then a clean three-node Redis Cluster: tests of
    the Redis side run on both."""
    if request.param == "server":
        return redis_url
    cluster: RedisClusterServers = request.getfixturevalue("redis_cluster")
    cluster.flush()
    return cluster.url


@pytest.fixture
async def site() -> AsyncIterator[tuple[NewsSite, str]]:
    """A news site on 127.0.0.1; yields it and its base URL."""
    news = NewsSite()
    server = TestServer(news.app(), host="127.0.0.1")
    await server.start_server()
    try:
        yield news, str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


def make_config(tmp_path: Path, feeds: list[dict[str, object]], **overrides: object) -> Config:
    """A config for tests: private addresses allowed, one extraction worker.

    Dedupe is off unless a test asks for it: many tests publish one text
    under several titles to get several alerts cheaply."""
    data: dict[str, object] = {
        "state_dir": str(tmp_path / "state"),
        "dedupe": {"enabled": False},
        # One test server stands for many sites: no politeness spacing.
        "http": {"allow_private_addresses": True, "timeout_s": 5, **UNTHROTTLED},
        "extraction": {"workers": 1, "timeout_s": 20},
        "rules": [str(ROOT / "config" / "rules" / "*.yaml")],
        "feeds": feeds,
        **overrides,
    }
    return Config.model_validate(data)
