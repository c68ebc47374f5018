"""Coalescer: calls made while a send is on its way go out together next."""

from __future__ import annotations

import asyncio

import pytest

from monitor.coalesce import Coalescer


async def test_calls_during_a_send_share_the_next_one() -> None:
    sent: list[list[int]] = []
    release = asyncio.Event()

    async def send(items: list[int]) -> None:
        sent.append(items)
        await release.wait()

    c: Coalescer[int] = Coalescer(send)
    async with asyncio.timeout(5):
        first = asyncio.create_task(c.submit(0))
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert sent == [[0]]  # the first goes out at once, alone
        rest = [asyncio.create_task(c.submit(i)) for i in range(1, 6)]
        await asyncio.sleep(0)
        assert not any(t.done() for t in [first, *rest])  # nobody returns before its send
        release.set()
        await asyncio.gather(first, *rest)
    assert sent == [[0], [1, 2, 3, 4, 5]]


async def test_a_failed_send_fails_its_callers_only() -> None:
    async def send(items: list[str]) -> None:
        if "bad" in items:
            raise ConnectionError("down")

    c: Coalescer[str] = Coalescer(send)
    async with asyncio.timeout(5):
        results = await asyncio.gather(c.submit("bad"), return_exceptions=True)
        assert isinstance(results[0], ConnectionError)
        await c.submit("good")  # the next batch is sent as usual


async def test_a_caller_that_gives_up_does_not_stop_the_others() -> None:
    sent: list[list[int]] = []
    gate = asyncio.Event()

    async def send(items: list[int]) -> None:
        sent.append(items)
        await gate.wait()

    c: Coalescer[int] = Coalescer(send)
    async with asyncio.timeout(5):
        a = asyncio.create_task(c.submit(1))
        b = asyncio.create_task(c.submit(2))
        await asyncio.sleep(0)
        a.cancel()
        gate.set()
        with pytest.raises(asyncio.CancelledError):
            await a
        await b
    assert sent == [[1, 2]]
