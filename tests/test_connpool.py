"""monitor.connpool against real aiohttp servers on 127.0.0.1: the idle pool is capped.

Each "host" is a port of its own on 127.0.0.1 (aiohttp pools connections
per host and port). The servers count the connections they accept, so
reuse is seen from the other side of the socket.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from monitor.config import Config
from monitor.connpool import IdleCappedConnector
from monitor.fetch import HttpLimits, make_session


class Sites:
    """``n`` HTTP servers, one per port, answering 304 and counting connections."""

    def __init__(self) -> None:
        self.ports: list[int] = []
        self.peers: dict[int, set[object]] = {}
        self._runner: web.AppRunner | None = None

    async def start(self, n: int) -> None:
        app = web.Application()
        app.router.add_get("/feed", self._feed)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        for _ in range(n):
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            await site.start()
            port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            self.ports.append(port)
            self.peers[port] = set()

    async def _feed(self, request: web.Request) -> web.Response:
        port = request.transport.get_extra_info("sockname")[1]  # type: ignore[union-attr]
        self.peers[port].add(request.transport.get_extra_info("peername"))  # type: ignore[union-attr]
        return web.Response(status=304)

    def connections(self, port: int) -> int:
        return len(self.peers[port])

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@pytest.fixture
async def sites() -> AsyncIterator[Sites]:
    s = Sites()
    await s.start(8)
    yield s
    await s.close()


async def get(session: aiohttp.ClientSession, port: int) -> None:
    async with session.get(f"http://127.0.0.1:{port}/feed") as resp:
        assert resp.status == 304
        await resp.read()


async def test_only_the_most_recently_used_idle_connections_are_kept(sites: Sites) -> None:
    connector = IdleCappedConnector(max_idle=3, limit=10)
    async with aiohttp.ClientSession(connector=connector) as session:
        for port in sites.ports:
            await get(session, port)
        assert connector.idle_count() == 3
        # The last three hosts reuse their connections...
        for port in sites.ports[-3:]:
            await get(session, port)
            assert sites.connections(port) == 1
        # ...the first host's was closed: a new one.
        await get(session, sites.ports[0])
        assert sites.connections(sites.ports[0]) == 2
        assert connector.idle_count() == 3


async def test_a_cap_of_zero_opens_a_connection_for_every_request(sites: Sites) -> None:
    connector = IdleCappedConnector(max_idle=0, limit=10)
    async with aiohttp.ClientSession(connector=connector) as session:
        port = sites.ports[0]
        for _ in range(3):
            await get(session, port)
            assert connector.idle_count() == 0
        assert sites.connections(port) == 3


async def test_under_the_cap_every_host_keeps_its_connection(sites: Sites) -> None:
    connector = IdleCappedConnector(max_idle=100, limit=10)
    async with aiohttp.ClientSession(connector=connector) as session:
        for _ in range(3):
            for port in sites.ports:
                await get(session, port)
        assert connector.idle_count() == len(sites.ports)
        assert [sites.connections(p) for p in sites.ports] == [1] * len(sites.ports)


async def test_the_daemons_session_caps_its_idle_pool_as_configured(sites: Sites) -> None:
    http = Config.model_validate({"http": {"max_idle_connections": 2}}).http
    limits = HttpLimits.from_settings(http)
    async with make_session(limits, http.concurrency, http.max_idle_connections) as session:
        assert isinstance(session.connector, IdleCappedConnector)
        for port in sites.ports:
            await get(session, port)
        assert session.connector.idle_count() == 2
