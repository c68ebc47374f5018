"""Per-host politeness across every daemon on one Redis.

The in-process ``HostLimiter`` stays the first gate (no round trip while
this daemon alone would exceed the limit); then a request takes a lease in
Redis: a sorted set per host of requests in flight, each scored by when its
lease runs out (so a dead daemon's requests stop counting), and the time the
next request to that host may start. One Lua script decides, on Redis's own
clock, so daemons on machines with skewed clocks agree. While Redis is away
the local gate alone applies.

Releases that finish together go to Redis together (``Coalescer``): one
pipelined round trip for all the requests that ended while the previous
one was on its way (a round trip per release was a sixth of a 304 poll's CPU).
Leases are taken the same way (``Store.host_acquire``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import AsyncIterator

from monitor.coalesce import Coalescer
from monitor.errors import RedisUnavailable
from monitor.logs import event
from monitor.politeness import HostLimiter
from monitor.store import Store

log = logging.getLogger("monitor.hostlimits")

# Waits between tries when the host is full everywhere (bounded backoff).
RETRY_MIN_S = 0.02
RETRY_MAX_S = 0.5


class SharedHostLimiter(HostLimiter):
    def __init__(
        self, per_host: int, spacing_s: float, store: Store, owner: str, hold_s: float
    ) -> None:
        super().__init__(per_host, spacing_s)
        self.store = store
        self.owner = owner
        self.hold_s = hold_s  # a lease outlives any one request (its time limit)
        self._ids = itertools.count()
        self._releases = Coalescer(self._release)

    @contextlib.asynccontextmanager
    async def slot(self, host: str) -> AsyncIterator[None]:
        async with super().slot(host):
            token, wait_s = await self._acquire_shared(host)
            try:
                if wait_s > 0:  # our slot, starting after the spacing
                    await asyncio.sleep(wait_s)
                yield
            finally:
                if token is not None:
                    # Freeing the local slot only once this is sent keeps our
                    # next request to the host from finding its Redis slots taken.
                    await self._releases.submit((host, token))

    async def _release(self, releases: list[tuple[str, str]]) -> list[None]:
        with contextlib.suppress(RedisUnavailable):  # their leases run out
            await self.store.host_release_many(releases)
        return [None] * len(releases)

    async def _acquire_shared(self, host: str) -> tuple[str | None, float]:
        token = f"{self.owner}#{next(self._ids)}"
        delay = RETRY_MIN_S
        while True:
            try:
                wait_s = await self.store.host_acquire(
                    host, token, self.per_host, self.spacing_s, self.hold_s
                )
            except RedisUnavailable as exc:
                event(log, logging.DEBUG, "host.limit_local", host=host, reason=exc.detail)
                return None, 0.0  # the local gate still holds
            if wait_s is not None:
                return token, wait_s
            # Full: every slot is someone's, here or on another daemon.
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_S)
