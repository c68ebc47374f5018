"""Per-host politeness: at most N requests at once to a host, and a minimum
spacing between request starts, fair across hosts.

Fairness comes from two places: the dispatcher only hands out feeds whose
host has room (``has_room``), so a slow host cannot tie up every worker;
and waiters for one host are served first come, first served.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field


@dataclass
class _Host:
    active: int = 0
    next_start: float = 0.0
    waiters: deque[asyncio.Future[None]] = field(default_factory=deque)


class HostLimiter:
    def __init__(
        self,
        per_host: int,
        spacing_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.per_host = per_host
        self.spacing_s = spacing_s
        self.clock = clock
        self._hosts: dict[str, _Host] = {}
        self.peak: dict[str, int] = {}  # most requests a host ever had at once

    def _host(self, host: str) -> _Host:
        h = self._hosts.get(host)
        if h is None:
            h = self._hosts[host] = _Host()
        return h

    def has_room(self, host: str) -> bool:
        """Could a request to ``host`` start now, without waiting?"""
        h = self._hosts.get(host)
        if h is None:
            return True
        return h.active < self.per_host and not h.waiters and self.clock() >= h.next_start

    @contextlib.asynccontextmanager
    async def slot(self, host: str) -> AsyncIterator[None]:
        await self.acquire(host)
        try:
            yield
        finally:
            self.release(host)

    async def acquire(self, host: str) -> None:
        h = self._host(host)
        if h.active >= self.per_host or h.waiters:
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            h.waiters.append(fut)
            try:
                await fut
            except asyncio.CancelledError:
                if fut in h.waiters:
                    h.waiters.remove(fut)
                elif fut.done() and not fut.cancelled():
                    self._release_slot(host, h)  # we were handed a slot we won't use
                raise
        else:
            h.active += 1
        wait = h.next_start - self.clock()
        h.next_start = max(h.next_start, self.clock()) + self.spacing_s
        if wait > 0:
            await asyncio.sleep(wait)
        self.peak[host] = max(self.peak.get(host, 0), h.active)

    def release(self, host: str) -> None:
        self._release_slot(host, self._host(host))

    def _release_slot(self, host: str, h: _Host) -> None:
        while h.waiters:
            fut = h.waiters.popleft()
            if not fut.done():
                fut.set_result(None)  # the slot passes straight to the next waiter
                return
        h.active -= 1
        if h.active == 0 and not h.waiters and self.clock() >= h.next_start:
            del self._hosts[host]  # keep memory bounded across many hosts
