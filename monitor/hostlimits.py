"""Per-host politeness across every daemon on one Redis.

The in-process ``HostLimiter`` stays the first gate (no round trip while
this daemon alone would exceed the limit); then a request takes a lease in
Redis: a sorted set per host of requests in flight, each scored by when its
lease runs out (so a dead daemon's requests stop counting), and the time the
next request to that host may start. One Lua script decides, on Redis's own
clock, so daemons on machines with skewed clocks agree. While Redis is away
the local gate alone applies.

Releases that finish together go to Redis together: one pipelined round
trip for all the requests that ended while the previous one was on its
way (a round trip per release was a sixth of a 304 poll's CPU).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import AsyncIterator

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
        self._releases: list[tuple[str, str, asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None

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
                    await self._release_shared(host, token)

    async def _release_shared(self, host: str, token: str) -> None:
        """Queue the release, and wait until it is sent: the local slot is
        freed only then, so our next request to the host does not find its
        Redis slots still taken."""
        done = asyncio.get_running_loop().create_future()
        self._releases.append((host, token, done))
        if self._flusher is None:
            self._flusher = asyncio.get_running_loop().create_task(self._flush_releases())
        await done

    async def _flush_releases(self) -> None:
        try:
            while self._releases:
                batch, self._releases = self._releases, []
                try:
                    with contextlib.suppress(RedisUnavailable):  # the lease runs out
                        await self.store.host_release_many([(h, t) for h, t, _ in batch])
                finally:
                    for _h, _t, done in batch:
                        if not done.done():
                            done.set_result(None)
        finally:
            self._flusher = None
            for _h, _t, done in self._releases:  # cancelled (shutdown): nobody waits
                if not done.done():
                    done.set_result(None)

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
