"""Three daemons (all, poller, worker) as real subprocesses on one Redis and
one local news site with a few hundred feeds: each feed is polled once per
due time, each matching story alerted once; after a SIGKILL of one daemon
mid-run its leased feeds and pending entries are taken over, and still
nothing is lost or duplicated."""

from __future__ import annotations

import asyncio
import html
import json
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from monitor import keys
from tests.conftest import ROOT
from tests.servers import NewsSite, page, rss, stream_entries

EXE = str(Path(sys.executable).parent / "feed-monitor")
SEED = (ROOT / "seeds" / "000_79a58b876351234c.txt").read_text(encoding="utf-8")
PARAS = [html.escape(p) for p in SEED.split("\n\n")[1:] if p.strip()]
FEEDS = 200
LEASE_S = 6
CLAIM_IDLE_S = 4


def publish(news: NewsSite, base: str, rounds: int, delay_s: float = 0.0) -> int:
    """Every feed gets ``rounds`` stories; 3 in 4 of them match. Returns the
    number of matching stories in all."""
    matching = 0
    for i in range(FEEDS):
        items = []
        for r in range(rounds):
            path = f"/a/{i}-{r}.html"
            if (i + r) % 4:
                title = f"Kina og Russland: øvelse {i}-{r}"
                news.put_page(path, page(title, PARAS, lang="nb"))
                matching += 1
            else:
                title = f"Local weather {i}-{r}"
                news.put_page(path, page(title, ["Rain tomorrow, sun on Sunday."] * 5))
            news.resources[path].delay_s = delay_s
            items.append({"title": title, "link": base + path, "guid": f"s-{i}-{r}"})
        news.put_feed(f"/f/{i}.xml", rss(items))
        news.resources[f"/f/{i}.xml"].delay_s = delay_s
    return matching


def write_config(tmp_path: Path, name: str, redis_url: str, base: str) -> Path:
    feeds = "".join(
        f"  - {{name: f{i}, url: '{base}/f/{i}.xml', interval_s: 3600}}\n" for i in range(FEEDS)
    )
    cfg = tmp_path / f"{name}.yaml"
    cfg.write_text(
        f"state_dir: {name}\nrules: ['{ROOT}/config/rules/*.yaml']\nredis: {{url: '{redis_url}'}}\n"
        "http: {allow_private_addresses: true, per_host_spacing_s: 0, per_host_concurrency: 64,"
        " timeout_s: 10, concurrency: 8}\n"
        "extraction: {workers: 1}\n"
        f"cluster: {{lease_s: {LEASE_S}, claim_idle_s: {CLAIM_IDLE_S}, heartbeat_s: 1}}\n"
        f"feeds:\n{feeds}"
    )
    return cfg


async def until(what: str, check: Callable[[], Awaitable[bool]], within_s: float) -> None:
    """Bounded wait for a condition: at most within_s, in 0.1 s steps."""
    for _ in range(int(within_s * 10)):
        if await check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"not within {within_s} s: {what}")


@pytest.mark.timeout(240)
async def test_three_daemons_share_polls_and_entries_and_survive_a_sigkill(
    tmp_path: Path, redis_url: str, site: tuple[NewsSite, str]
) -> None:
    news, base = site
    expected = publish(news, base, rounds=1)
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    roles = {"a": "all", "b": "poller", "c": "worker"}
    configs = {n: write_config(tmp_path, n, redis_url, base) for n in roles}
    procs: dict[str, asyncio.subprocess.Process] = {}
    for n, role in roles.items():
        procs[n] = await asyncio.create_subprocess_exec(
            EXE, "run", "--role", role, "--config", str(configs[n]),
            stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip

    async def alert_ids() -> list[str]:
        return [f["alert_id"] for f in await stream_entries(redis_url)]

    async def drained() -> bool:
        return await client.xlen(keys.ENTRIES) == 0

    try:
        # Round 1: every feed due once, three daemons.
        await until("round-1 alerts", lambda: _at_least(alert_ids, expected), 120)
        await until("round-1 entries acknowledged", drained, 60)
        assert all(news.hits.get(f"/f/{i}.xml") == 1 for i in range(FEEDS))
        ids = await alert_ids()
        assert len(ids) == len(set(ids)) == expected

        rows: list[dict[str, object]] = []

        async def daemons_report_work() -> bool:
            rows[:] = await _status_daemons(configs["a"])
            done = sum(int(str(r["entries"])) for r in rows)
            polls = sum(int(str(r["polls"])) for r in rows)
            return len(rows) == 3 and done == FEEDS and polls == FEEDS

        await until("status shows 3 daemons, all polls and entries", daemons_report_work, 20)
        assert sorted(str(r["role"]) for r in rows) == ["all", "poller", "worker"]
        assert {r["pid"] for r in rows} == {p.pid for p in procs.values()}
        assert next(r for r in rows if r["role"] == "poller")["entries"] == 0

        # Round 2: new stories behind slow feeds and pages, every feed due
        # again; daemon a (polls and works) is killed in the middle.
        hits_before = {i: news.hits[f"/f/{i}.xml"] for i in range(FEEDS)}
        total = publish(news, base, rounds=2, delay_s=0.5)
        await client.zadd(keys.DUE, {f"f{i}": 0 for i in range(FEEDS)})
        await until("some round-2 alerts", lambda: _at_least(alert_ids, len(ids) + 10), 60)
        procs["a"].send_signal(signal.SIGKILL)
        await procs["a"].wait()
        dead = str(tmp_path / "a")
        leased = {n for n, v in (await client.hgetall(keys.LEASES)).items() if dead in v}
        pending = await client.xpending_range(keys.ENTRIES, keys.ENTRY_GROUP, "-", "+", 1000)
        left = {p["message_id"] for p in pending if dead in str(p["consumer"])}
        assert left, "the killed daemon held no entries: the test proves nothing"

        await until("round-2 alerts", lambda: _at_least(alert_ids, total), 150)
        await until("round-2 entries acknowledged", drained, 60)
        ids = await alert_ids()
        assert len(ids) == len(set(ids)) == total
        assert (await client.xpending(keys.ENTRIES, keys.ENTRY_GROUP))["pending"] == 0
        for i in range(FEEDS):
            polls = news.hits[f"/f/{i}.xml"] - hits_before[i]
            # Once per due time; a feed whose poll died with daemon a is polled
            # again by another once the lease runs out.
            assert polls == 1 or (f"f{i}" in leased and polls == 2), (i, polls)
        for i in range(FEEDS):
            state = await client.hget(keys.feed_state(f"f{i}"), "last_outcome")
            assert state == "ok"
    finally:
        for p in procs.values():
            if p.returncode is None:
                p.send_signal(signal.SIGTERM)
        for p in procs.values():
            await asyncio.wait_for(p.wait(), timeout=60)
        await client.aclose()
    assert procs["b"].returncode == 0
    assert procs["c"].returncode == 0


async def _at_least(get: Callable[[], Awaitable[list[str]]], n: int) -> bool:
    return len(await get()) >= n


async def _status_daemons(cfg: Path) -> list[dict[str, object]]:
    proc = await asyncio.create_subprocess_exec(
        EXE, "status", "--daemons", "--json", "--config", str(cfg),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    out, _ = await proc.communicate()
    assert proc.returncode == 0
    return [json.loads(line) for line in out.decode().splitlines() if line.strip()]
