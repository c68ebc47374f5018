"""Does a second daemon add throughput? (issue 8, "past one machine")

The pipeline benchmark (bench/pipeline.py: real article pages from
../shared/data/extraction/ behind feeds on a local site, a real Redis, real
``feed-monitor run`` subprocesses) with one daemon of one extraction process,
then two such daemons (separate processes, one Redis): articles per second
for each and their ratio. Then the same for polling alone: many small
unchanged feeds, all due at once, polled by one daemon and then by two
(``--role poller``), polls per second and the ratio.

On a 2-core machine two daemons can at best double one; the daemons' event
loops, Redis and the local site share the same cores.

    .venv/bin/python bench/scale.py [--pages 400] [--feeds 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import redis.asyncio as aioredis

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pipeline import (
    DATA,
    EXE,
    Site,
    daemon_totals,
    load_pages,
    run_pipeline,
    stop_daemons,
    write_config,
)

from monitor import keys  # on the path through pipeline
from tests.servers import RedisServer


async def run_polls(feeds: int, daemons: int, work: Path) -> float:
    """Polls per second of ``daemons`` pollers re-polling every (empty) feed once."""
    redis = RedisServer(work / "redis")
    redis.start()
    site = Site([b""] * feeds, per_feed=1)  # one feed per page slot; never published
    await site.start()
    client = aioredis.Redis.from_url(redis.url, decode_responses=True)
    procs: list[asyncio.subprocess.Process] = []
    try:
        for n in range(daemons):
            cfg = write_config(work, f"p{n}", site, redis.url, 1, concurrency=500)
            proc = await asyncio.create_subprocess_exec(
                EXE, "run", "--role", "poller", "--config", str(cfg), "--log-level", "warning",
                stderr=asyncio.subprocess.DEVNULL,
            )  # fmt: skip
            procs.append(proc)
        for _ in range(1200):  # every daemon up, every feed polled once
            polls, _e, _a = await daemon_totals(client)
            if await client.scard(keys.SERVER.daemons) == daemons and polls >= feeds:
                break
            await asyncio.sleep(0.1)
        else:
            raise RuntimeError("the pollers did not start and poll within 120 s")
        await asyncio.sleep(0.5)  # the last heartbeats
        base, _e, _a = await daemon_totals(client)
        started = time.perf_counter()
        await client.zadd(keys.SERVER.due, {f"f{k}": 0 for k in range(site.feeds)})
        while True:
            polls, _e, _a = await daemon_totals(client)
            if polls - base >= feeds:
                break
            if time.perf_counter() - started > 600:
                raise RuntimeError("polling did not finish within 10 minutes")
            await asyncio.sleep(0.05)
        return feeds / (time.perf_counter() - started)
    finally:
        await stop_daemons(procs)
        await client.aclose()
        await site.stop()
        redis.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--pages", type=int, default=400)
    ap.add_argument("--feeds", type=int, default=3000)
    ap.add_argument("--per-feed", type=int, default=10)
    args = ap.parse_args()
    pages = load_pages(args.pages)
    print(f"{len(pages)} pages from {DATA}; {args.feeds} feeds for polling\n")
    rates: dict[str, list[float]] = {"articles/s": [], "polls/s": []}
    rss: list[int] = []
    for daemons in (1, 2):
        with tempfile.TemporaryDirectory() as tmp:
            roles = [("all", 1)] * daemons
            run = asyncio.run(run_pipeline(pages, args.per_feed, roles, Path(tmp)))
        rates["articles/s"].append(run.articles_per_s)
        rss.append(run.peak_rss_mb)
        with tempfile.TemporaryDirectory() as tmp:
            rates["polls/s"].append(asyncio.run(run_polls(args.feeds, daemons, Path(tmp))))
    print(f"{'measure':<12} {'1 daemon':>9} {'2 daemons':>10} {'ratio':>6}  target")
    for name, (one, two) in rates.items():
        print(f"{name:<12} {one:>9.1f} {two:>10.1f} {two / one:>5.2f}x  >= 1.70x")
    print(f"\npeak RSS of the daemons (pipeline runs): {rss[0]} MiB, {rss[1]} MiB; "
          "each daemon runs 1 extraction process")  # fmt: skip


if __name__ == "__main__":
    main()
