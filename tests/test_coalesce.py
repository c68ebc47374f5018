"""Coalescer: calls made while a send is on its way go out together next."""

from __future__ import annotations

import asyncio

import pytest

from monitor.coalesce import Coalescer


async def test_calls_during_a_send_share_the_next_one() -> None:
    sent: list[list[int]] = []
    release = asyncio.Event()

    async def send(items: list[int]) -> list[None]:
        sent.append(items)
        await release.wait()
        return [None] * len(items)

    c: Coalescer[int, None] = Coalescer(send)
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
    async def send(items: list[str]) -> list[None]:
        if "bad" in items:
            raise ConnectionError("down")
        return [None] * len(items)

    c: Coalescer[str, None] = Coalescer(send)
    async with asyncio.timeout(5):
        results = await asyncio.gather(c.submit("bad"), return_exceptions=True)
        assert isinstance(results[0], ConnectionError)
        await c.submit("good")  # the next batch is sent as usual


async def test_a_caller_that_gives_up_does_not_stop_the_others() -> None:
    sent: list[list[int]] = []
    gate = asyncio.Event()

    async def send(items: list[int]) -> list[None]:
        sent.append(items)
        await gate.wait()
        return [None] * len(items)

    c: Coalescer[int, None] = Coalescer(send)
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


async def test_each_caller_gets_its_own_result() -> None:
    gate = asyncio.Event()
    sent: list[list[int]] = []

    async def send(items: list[int]) -> list[int]:
        sent.append(items)
        await gate.wait()
        return [10 * i for i in items]

    c: Coalescer[int, int] = Coalescer(send)
    async with asyncio.timeout(5):
        calls = [asyncio.create_task(c.submit(i)) for i in range(1, 5)]
        await asyncio.sleep(0)
        gate.set()
        assert await asyncio.gather(*calls) == [10, 20, 30, 40]
    assert sent == [[1, 2, 3, 4]]


async def test_a_send_that_returns_too_few_results_fails_its_batch() -> None:
    async def send(items: list[int]) -> list[int]:
        return items[:-1]

    c: Coalescer[int, int] = Coalescer(send)
    async with asyncio.timeout(5):
        results = await asyncio.gather(c.submit(1), c.submit(2), return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results)


async def test_two_senders_keep_two_batches_on_their_way() -> None:
    gates = [asyncio.Event(), asyncio.Event(), asyncio.Event()]
    sent: list[list[int]] = []

    async def send(items: list[int]) -> list[None]:
        sent.append(items)
        await gates[len(sent) - 1].wait()
        return [None] * len(items)

    c: Coalescer[int, None] = Coalescer(send, senders=2)
    async with asyncio.timeout(5):
        a = asyncio.create_task(c.submit(1))
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        b = asyncio.create_task(c.submit(2))  # the first is out: a second sender takes it
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert sent == [[1], [2]]
        rest = [asyncio.create_task(c.submit(i)) for i in (3, 4)]
        await asyncio.sleep(0)
        gates[1].set()  # the second batch returns first
        await b
        assert not a.done()
        gates[0].set()
        gates[2].set()
        await asyncio.gather(a, *rest)
    assert sorted(map(sorted, sent)) == [[1], [2], [3, 4]]
    # Idle again: the next call is sent at once, by a new sender.
    sent.clear()
    gates[0].set()
    async with asyncio.timeout(5):
        await c.submit(5)
    assert sent == [[5]]
