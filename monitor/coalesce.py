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
    """``send`` takes a batch of items and returns one result per item, in order.

    ``senders``: batches on their way at once. More than one shortens the
    wait of a call that arrives while a batch is out (when callers wait on
    the answer), at the price of smaller batches.
    """

    def __init__(
        self, send: Callable[[list[T]], Awaitable[Sequence[R]]], *, senders: int = 1
    ) -> None:
        self._send = send
        self._queued: list[tuple[T, asyncio.Future[R]]] = []
        self._senders: set[asyncio.Task[None]] = set()
        self._max_senders = senders

    async def submit(self, item: T) -> R:
        """``item``'s result, once its batch is sent; raises what the batch's send raised."""
        done: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queued.append((item, done))
        if len(self._senders) < self._max_senders:
            self._senders.add(asyncio.get_running_loop().create_task(self._run()))
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
            # Out of the set at once: a call made from now on starts a sender.
            self._senders.discard(asyncio.current_task())
            # Cancelled (shutting down): our batch, and the queue if no sender is left.
            for _item, done in batch if self._senders else batch + self._queued:
                if not done.done():
                    done.cancel()
