"""Helpers for tests that run daemons as real subprocesses on one Redis and
one local news site with many feeds (tests/test_cluster.py,
tests/test_redis_cluster.py)."""

from __future__ import annotations

import asyncio
import html
import json
import os
import signal
import sys
from asyncio.subprocess import Process
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import cast

from monitor.keys import KeySpace
from monitor.redisconn import Client
from tests.conftest import ROOT
from tests.servers import NewsSite, page, rss

EXE = str(Path(sys.executable).parent / "feed-monitor")
SEED = (ROOT / "seeds" / "000_79a58b876351234c.txt").read_text(encoding="utf-8")
PARAS = [html.escape(p) for p in SEED.split("\n\n")[1:] if p.strip()]
FEEDS = 200
LEASE_S = 6
CLAIM_IDLE_S = 4


def publish(
    news: NewsSite, base: str, rounds: int, delay_s: float = 0.0, feeds: int = FEEDS
) -> int:
    """Every feed gets ``rounds`` stories; 3 in 4 of them match. Returns the
    number of matching stories in all."""
    matching = 0
    for i in range(feeds):
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


def write_config(tmp_path: Path, name: str, redis_url: str, base: str, feeds: int = FEEDS) -> Path:
    listed = "".join(
        f"  - {{name: f{i}, url: '{base}/f/{i}.xml', interval_s: 3600}}\n" for i in range(feeds)
    )
    cfg = tmp_path / f"{name}.yaml"
    cfg.write_text(
        f"state_dir: {name}\nrules: ['{ROOT}/config/rules/*.yaml']\nredis: {{url: '{redis_url}'}}\n"
        "http: {allow_private_addresses: true, per_host_spacing_s: 0, per_host_concurrency: 64,"
        " timeout_s: 10, concurrency: 8}\n"
        "extraction: {workers: 1}\n"
        f"cluster: {{lease_s: {LEASE_S}, claim_idle_s: {CLAIM_IDLE_S}, heartbeat_s: 1}}\n"
        f"feeds:\n{listed}"
    )
    return cfg


async def until(what: str, check: Callable[[], Awaitable[bool]], within_s: float) -> None:
    """Bounded wait for a condition: at most within_s, in 0.1 s steps."""
    for _ in range(int(within_s * 10)):
        if await check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"not within {within_s} s: {what}")


async def at_least(get: Callable[[], Awaitable[list[str]]], n: int) -> bool:
    return len(await get()) >= n


async def alert_ids(client: Client, space: KeySpace) -> list[str]:
    """The ``alert_id`` of every entry in the alert stream, oldest first."""
    rows = cast(list[tuple[str, dict[str, str]]], await client.xrange(space.alert_stream))
    return [f["alert_id"] for _id, f in rows]


async def polls_in_flight(
    news: NewsSite, base: str, client: Client, space: KeySpace, feeds: int, delay_s: float
) -> int:
    """Publish two more rounds behind slow answers, make every feed due, and
    return (the number of matching stories in all) once their polls are on
    their way: the moment to break something."""
    total = publish(news, base, rounds=2, delay_s=delay_s, feeds=feeds)
    hits = sum(news.hits[f"/f/{i}.xml"] for i in range(feeds))
    await client.zadd(space.due, {f"f{i}": 0 for i in range(feeds)})

    async def polling() -> bool:
        return sum(news.hits[f"/f/{i}.xml"] for i in range(feeds)) > hits

    await until("second-round polls started", polling, 30)
    return total


async def each_alerted_once(get: Callable[[], Awaitable[list[str]]], total: int) -> None:
    """Every story's alert arrives (bounded: 90 s), and no second one after."""
    await until("every alert", lambda: at_least(get, total), 90)
    await asyncio.sleep(2)  # a duplicate would show up now
    ids = await get()
    assert len(ids) == len(set(ids)) == total


async def status_daemons(cfg: Path) -> list[dict[str, object]]:
    proc = await asyncio.create_subprocess_exec(
        EXE, "status", "--daemons", "--json", "--config", str(cfg),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    out, _ = await proc.communicate()
    assert proc.returncode == 0
    return [json.loads(line) for line in out.decode().splitlines() if line.strip()]


async def start_daemons(
    roles: dict[str, str], configs: dict[str, Path], logs: Path | None = None
) -> dict[str, Process]:
    """``feed-monitor run --role ROLE`` per name, each with its config; each
    one's log to ``logs/NAME.log`` if ``logs`` is given."""
    procs: dict[str, Process] = {}
    for name, role in roles.items():
        target = logs / f"{name}.log" if logs else Path(os.devnull)
        err = await asyncio.to_thread(target.open, "wb")
        try:
            procs[name] = await asyncio.create_subprocess_exec(
                EXE, "run", "--role", role, "--config", str(configs[name]), stderr=err,
            )  # fmt: skip
        finally:
            err.close()
    return procs


async def stop_daemons(procs: dict[str, Process]) -> None:
    """SIGTERM the live ones, then wait (bounded) for every one to exit."""
    for p in procs.values():
        if p.returncode is None:
            p.send_signal(signal.SIGTERM)
    for p in procs.values():
        await asyncio.wait_for(p.wait(), timeout=60)
