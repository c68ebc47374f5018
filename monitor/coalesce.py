"""Coalescing small Redis calls: calls that come in while one send is on
its way go out together in the next, in one round trip.

Under load the 304 poll path makes thousands of tiny calls a second (a
poll's end, a host slot's lease and its release); each round trip costs a
connection checkout, a send and a receive, more CPU than the call itself.
Batching them this way adds no delay when idle (the first call is sent at
once) and no timer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Coalescer(Generic[T, R]):
    """``send`` takes a batch of items and returns one result per item, in order."""

    def __init__(self, send: Callable[[list[T]], Awaitable[Sequence[R]]]) -> None:
        self._send = send
        self._queued: list[tuple[T, asyncio.Future[R]]] = []
        self._sender: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> R:
        """``item``'s result, once its batch is sent; raises what the batch's send raised."""
        done: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queued.append((item, done))
        if self._sender is None:
            self._sender = asyncio.get_running_loop().create_task(self._run())
        return await done

    async def _run(self) -> None:
        batch: list[tuple[T, asyncio.Future[R]]] = []
        try:
            while self._queued:
                batch, self._queued = self._queued, []
                try:
                    results = await self._send([item for item, _ in batch])
                    if len(results) != len(batch):
                        raise RuntimeError(f"{len(results)} results for {len(batch)} items")
                except Exception as exc:  # each caller gets it, as if it sent alone
                    for _item, done in batch:
                        if not done.done():
                            done.set_exception(exc)
                else:
                    for (_item, done), result in zip(batch, results, strict=True):
                        if not done.done():
                            done.set_result(result)
        finally:
            self._sender = None
            for _item, done in batch + self._queued:  # cancelled: shutting down
                if not done.done():
                    done.cancel()
