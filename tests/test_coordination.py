"""The Redis side of several daemons sharing work: atomic poll leases, the
entry stream (enqueue-and-mark-seen, consumer group, ack, reclaim) and the
live-daemon registry. Real redis-server; the pure work-item codec too."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from monitor import keys
from monitor.entries import Entry, Feed
from monitor.errors import RedisUnavailable
from monitor.redisconn import connect
from monitor.status import daemon_statuses, render_daemons
from monitor.store import Store
from monitor.workitem import BadWorkItem, WorkItem

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


@pytest.fixture
async def store(any_redis_url: str) -> AsyncIterator[Store]:
    s = Store(connect(any_redis_url), any_redis_url, stream_maxlen=1000, delivered_ttl_s=3600,
              seen_per_feed=100)  # fmt: skip
    yield s
    await s.close()


def item(i: int) -> WorkItem:
    entry = Entry("f", f"guid:{i}", f"Story {i}", f"http://127.0.0.1/{i}", "sum", "", NOW, "en")
    return WorkItem(Feed("f", "http://127.0.0.1/feed.xml", 60, ("news",)), entry)


def test_work_item_round_trips_and_refuses_garbage() -> None:
    it = item(1)
    assert WorkItem.from_fields(it.to_fields()) == it
    undated = WorkItem(it.feed, Entry("f", "hash:x", "T", None, "", "", None))
    assert WorkItem.from_fields(undated.to_fields()) == undated
    with pytest.raises(BadWorkItem):
        WorkItem.from_fields({"v": "1", "feed": "f", "item": "{"})
    with pytest.raises(BadWorkItem):
        WorkItem.from_fields({"v": "99", "feed": "f", "item": "{}"})


async def test_claim_is_atomic_and_a_dead_owners_lease_runs_out(store: Store) -> None:
    await store.set_due({f"f{i}": 100.0 for i in range(20)})
    names = [f"f{i}" for i in range(20)]
    # Two daemons race for the same due feeds: each feed goes to exactly one.
    a, b = await asyncio.gather(
        store.claim(names, "a", 100.0, 130.0), store.claim(names, "b", 100.0, 130.0)
    )
    assert sorted(a + b) == sorted(names)
    assert not set(a) & set(b)
    # Leased feeds are not due for anyone until the lease ends...
    assert await store.due(129.0, limit=100) == []
    assert await store.claim(names, "c", 129.0, 159.0) == []
    # ...and then they are (their daemon died without finishing).
    assert sorted(await store.due(130.0, limit=100)) == sorted(names)
    assert sorted(await store.claim(names, "c", 130.0, 160.0)) == sorted(names)
    assert set((await store.leases()).values()) == {"c|160.0"}


async def test_restarted_owner_frees_its_own_leases_only(store: Store) -> None:
    await store.set_due({"mine": 10.0, "theirs": 10.0})
    await store.claim(["mine"], "host:/st1", 10.0, 500.0)
    await store.claim(["theirs"], "host:/st", 10.0, 500.0)  # a prefix of the other owner
    assert await store.release_owner("host:/st1", 20.0) == 1
    assert await store.due(20.0, limit=10) == ["mine"]
    assert list(await store.leases()) == ["theirs"]


async def test_enqueue_marks_seen_and_workers_share_ack_and_reclaim(store: Store) -> None:
    await store.ensure_entry_group()
    await store.ensure_entry_group()  # idempotent
    items = [item(i) for i in range(6)]
    n = await store.enqueue("f", [([i.entry.identity, i.entry.link or ""], i.to_fields())
                                  for i in items], NOW)  # fmt: skip
    assert n == 6
    assert await store.unseen("f", ["guid:0", "http://127.0.0.1/5", "guid:new"]) == ["guid:new"]
    assert await store.queued_entries() == 6

    first = await store.read_entries("w1", 4, block_ms=None)
    second = await store.read_entries("w2", 4, block_ms=None)
    assert len(first) == 4
    assert len(second) == 2
    got = [WorkItem.from_fields(f).entry.identity for _id, f in first + second]
    assert got == [f"guid:{i}" for i in range(6)]  # each once, in order
    for entry_id, _f in second:
        await store.ack_entries([entry_id])
    assert await store.queued_entries() == 4

    # w1 "dies": a restart of w1 re-reads its own pending entries...
    again = await store.read_entries("w1", 10, block_ms=None, start="0-0")
    assert [i for i, _ in again] == [i for i, _ in first]
    # ...and another worker takes them over once they have been idle long enough.
    assert await store.reclaim_entries("w2", 60_000, 10) == []
    taken = await store.reclaim_entries("w2", 0, 10)
    assert [i for i, _ in taken] == [i for i, _ in first]
    for entry_id, _f in taken:
        await store.ack_entries([entry_id])
    assert await store.queued_entries() == 0
    pending = await store.client.xpending(store.keys.entries, keys.ENTRY_GROUP)
    assert pending["pending"] == 0


async def test_acks_arriving_together_leave_nothing_behind(store: Store) -> None:
    """More acks than one script call takes (Lua's unpack() limit) go out in
    batches: each entry is acknowledged and deleted once."""
    await store.ensure_entry_group()
    many = 9000
    async with store.client.pipeline(transaction=False) as p:
        for i in range(many):
            p.xadd(store.keys.entries, {k: v for k, v in item(i).to_fields().items()})
        await p.execute()
    rows = await store.read_entries("w", many, block_ms=None)
    assert len(rows) == many
    await store.ack_entries([entry_id for entry_id, _f in rows])
    assert await store.queued_entries() == 0
    pending = await store.client.xpending(store.keys.entries, keys.ENTRY_GROUP)
    assert pending["pending"] == 0


async def test_ack_and_read_acknowledges_then_reads_in_one_call(store: Store) -> None:
    """The worker's round trip: the finished entries leave, the next ones come;
    a server that lost the ack script (restarted) still gets the ack; a lost
    group is an error that names NOGROUP (the worker makes the group again)."""
    await store.ensure_entry_group()
    await store.enqueue("f", [([f"guid:{i}"], item(i).to_fields()) for i in range(6)], NOW)
    first = await store.read_entries("w", 3, block_ms=None)
    second = await store.ack_and_read([i for i, _f in first], "w", 10, block_ms=None)
    got = [WorkItem.from_fields(f).entry.identity for _i, f in second]
    assert got == ["guid:3", "guid:4", "guid:5"]
    assert await store.queued_entries() == 3
    await store.client.script_flush()
    assert await store.ack_and_read([i for i, _f in second], "w", 10, block_ms=None) == []
    assert await store.queued_entries() == 0
    pending = await store.client.xpending(store.keys.entries, keys.ENTRY_GROUP)
    assert pending["pending"] == 0
    await store.client.xgroup_destroy(store.keys.entries, keys.ENTRY_GROUP)
    with pytest.raises(RedisUnavailable, match="NOGROUP"):
        await store.ack_and_read(["1-0"], "w", 10, block_ms=None)


async def test_registry_lists_live_daemons_and_forgets_dead_ones(store: Store) -> None:
    beat = {"role": "worker", "host": "h", "pid": "42", "started": "2026-11-23T12:00:00+00:00",
            "heartbeat": "1000.0", "polls": "0", "entries": "7", "alerts": "2",
            "polls_inflight": "0", "entries_inflight": "3"}  # fmt: skip
    await store.heartbeat("h:/a", beat, ttl_s=60)
    await store.heartbeat("h:/b", {**beat, "role": "poller"}, ttl_s=2)
    rows = await daemon_statuses(store, now=1002.0)
    assert [(r.daemon, r.role) for r in rows] == [("h:/a", "worker"), ("h:/b", "poller")]
    assert rows[0].entries == 7
    assert rows[0].heartbeat_age_s == 2.0
    table = render_daemons(rows)
    assert table.splitlines()[0].split()[:3] == ["DAEMON", "ROLE", "HOST"]
    for _ in range(100):  # the short-lived one expires (bounded: 10 s)
        if len(await daemon_statuses(store)) == 1:
            break
        await asyncio.sleep(0.1)
    assert [r.daemon for r in await daemon_statuses(store)] == ["h:/a"]
    assert await store.client.smembers(store.keys.daemons) == {"h:/a"}
    await store.unregister("h:/a")
    assert render_daemons(await daemon_statuses(store)) == "no live daemon"


async def test_polls_ending_together_are_finished_in_one_transaction(store: Store) -> None:
    names = [f"f{i}" for i in range(20)]
    await store.set_due(dict.fromkeys(names, 10.0))
    assert sorted(await store.claim(names, "me", 10.0, 500.0)) == sorted(names)
    await asyncio.gather(*(
        store.finish_poll(n, 100.0 + i if i % 2 else None, {"last_outcome": "ok", "etag": f"e{i}"})
        for i, n in enumerate(names)
    ))  # fmt: skip
    assert await store.leases() == {}
    times = await store.due_times()
    for i, n in enumerate(names):
        # A poll without a next due time keeps the lease's (500).
        assert times[n] == (100.0 + i if i % 2 else 500.0)
        assert (await store.feed_state(n)).etag == f"e{i}"
