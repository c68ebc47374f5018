"""Coalescing small Redis writes: calls that come in while one send is on
its way go out together in the next, in one round trip.

Under load the 304 poll path makes thousands of tiny writes a second (a
poll's end, a host slot's release); each round trip costs a connection
checkout, a send and a receive, more CPU than the write itself. Batching
them this way adds no delay when idle (the first call is sent at once) and
no timer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Coalescer(Generic[T]):
    def __init__(self, send: Callable[[list[T]], Awaitable[None]]) -> None:
        self._send = send
        self._queued: list[tuple[T, asyncio.Future[None]]] = []
        self._sender: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> None:
        """Returns once ``item`` was sent; raises what its batch's send raised."""
        done = asyncio.get_running_loop().create_future()
        self._queued.append((item, done))
        if self._sender is None:
            self._sender = asyncio.get_running_loop().create_task(self._run())
        await done

    async def _run(self) -> None:
        batch: list[tuple[T, asyncio.Future[None]]] = []
        try:
            while self._queued:
                batch, self._queued = self._queued, []
                try:
                    await self._send([item for item, _ in batch])
                except Exception as exc:  # each caller gets it, as if it sent alone
                    for _item, done in batch:
                        if not done.done():
                            done.set_exception(exc)
                else:
                    for _item, done in batch:
                        if not done.done():
                            done.set_result(None)
        finally:
            self._sender = None
            for _item, done in batch + self._queued:  # cancelled: shutting down
                if not done.done():
                    done.cancel()
