"""Per-host limits hold across daemons: two limiters with their own local
gates (as two daemons would have) share one real Redis."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from monitor.hostlimits import SharedHostLimiter
from monitor.redisconn import connect
from monitor.store import Store


@pytest.fixture
async def stores(any_redis_url: str) -> AsyncIterator[list[Store]]:
    def store() -> Store:
        return Store(connect(any_redis_url), any_redis_url, stream_maxlen=1000,
                     delivered_ttl_s=3600,
                     seen_per_feed=100)  # fmt: skip

    made = [store(), store()]
    yield made
    for s in made:
        await s.close()


async def test_concurrency_and_spacing_hold_across_two_daemons(stores: list[Store]) -> None:
    spacing = 0.05
    daemons = [SharedHostLimiter(2, spacing, s, f"d{i}", hold_s=30) for i, s in enumerate(stores)]
    active = peak = 0
    starts: list[float] = []

    async def request(limiter: SharedHostLimiter) -> None:
        nonlocal active, peak
        async with limiter.slot("news.example"):
            starts.append(time.monotonic())
            active += 1
            peak = max(peak, active)
            await asyncio.sleep(3 * spacing)  # longer than the spacing: two overlap
            active -= 1

    # Each daemon alone would allow 2 at once: together they must too.
    began = time.monotonic()
    async with asyncio.timeout(30):
        await asyncio.gather(*(request(d) for d in daemons for _ in range(6)))
    assert len(starts) == 12
    assert peak == 2
    # Start k was reserved k spacings after the first: a busy machine can only
    # make a start late, never early.
    for k, at in enumerate(sorted(starts)):
        assert at - began >= k * spacing * 0.95, (k, at - began)
    assert await stores[0].client.zcard(stores[0].keys.host_inflight("news.example")) == 0


async def test_a_dead_daemons_requests_stop_counting_when_their_lease_ends(
    stores: list[Store],
) -> None:
    # A daemon died holding both slots of a host, with leases of 0.3 s.
    for token in ("dead#1", "dead#2"):
        assert await stores[0].host_acquire("h", token, 2, 0.0, 0.3) == 0.0
    assert await stores[1].host_acquire("h", "live#1", 2, 0.0, 30) is None
    live = SharedHostLimiter(2, 0.0, stores[1], "live", hold_s=30)
    started = time.monotonic()
    async with asyncio.timeout(10), live.slot("h"):
        waited = time.monotonic() - started
    assert 0.2 <= waited < 5


async def test_requests_ending_together_release_in_one_round_trip(
    stores: list[Store], monkeypatch: pytest.MonkeyPatch
) -> None:
    store = stores[0]
    limiter = SharedHostLimiter(2, 0.0, store, "d", hold_s=30)
    batches: list[int] = []
    send = store.host_release_many

    async def counted(releases: list[tuple[str, str]]) -> None:
        batches.append(len(releases))
        await send(releases)

    monkeypatch.setattr(store, "host_release_many", counted)
    hosts = [f"h{i}.example" for i in range(20)]
    inside = 0
    all_in, end = asyncio.Event(), asyncio.Event()

    async def request(host: str) -> None:
        nonlocal inside
        async with limiter.slot(host):
            inside += 1
            if inside == len(hosts):
                all_in.set()
            await end.wait()

    async with asyncio.timeout(10):
        tasks = [asyncio.create_task(request(h)) for h in hosts]
        await all_in.wait()
        end.set()
        await asyncio.gather(*tasks)
    assert sum(batches) == len(hosts)
    assert len(batches) <= 2, batches  # the first alone at most, then the rest
    for h in hosts:  # every release reached Redis before its slot was free
        assert await store.client.zcard(store.keys.host_inflight(h)) == 0


async def test_requests_starting_together_lease_in_one_round_trip(
    any_redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    batches: list[int] = []
    send = Store._host_acquire_many

    async def counted(self: Store, calls: list[tuple[list[str], list[str | int]]]) -> list[object]:
        batches.append(len(calls))
        return await send(self, calls)

    monkeypatch.setattr(Store, "_host_acquire_many", counted)
    store = Store(connect(any_redis_url), any_redis_url, stream_maxlen=1000,
                  delivered_ttl_s=3600, seen_per_feed=100)  # fmt: skip
    try:
        limiter = SharedHostLimiter(1, 0.0, store, "d", hold_s=30)
        hosts = [f"together{i}.example" for i in range(20)]

        async def request(host: str) -> int:
            async with limiter.slot(host):
                return int(await store.client.zcard(store.keys.host_inflight(host)))

        async with asyncio.timeout(10):
            held = await asyncio.gather(*(request(h) for h in hosts))
        assert held == [1] * len(hosts)  # each request held its host's one slot
        assert sum(batches) == len(hosts)
        assert len(batches) <= 2, batches  # the first alone at most, then the rest
    finally:
        await store.close()


async def test_a_server_that_lost_the_script_still_grants_leases(stores: list[Store]) -> None:
    """After a restart or a failover the server may lack the script (NOSCRIPT):
    the batch's calls are made again, loading it."""
    store = stores[0]
    assert await store.host_acquire("noscript.example", "a#1", 2, 0.0, 30) == 0.0
    await store.client.script_flush()
    async with asyncio.timeout(10):
        waits = await asyncio.gather(
            *(store.host_acquire("noscript.example", f"b#{i}", 2, 0.0, 30) for i in range(3))
        )
    assert sorted(waits, key=lambda w: w is None) == [0.0, None, None]  # one slot was left
    assert await store.client.zcard(store.keys.host_inflight("noscript.example")) == 2
