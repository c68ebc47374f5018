"""Does a second daemon add throughput? (issue 8, "past one machine")

The pipeline benchmark (bench/pipeline.py: real article pages from
../shared/data/extraction/ behind feeds on a local site, a real Redis, real
``feed-monitor run`` subprocesses) with one daemon of one extraction process,
then two such daemons (separate processes, one Redis): articles per second
for each and their ratio. Then the same for polling alone: many small
feeds, all due at once, each on a loopback address of its own (one host
per feed: the shared per-host limit would otherwise cap the pair at one
daemon's rate), polled by one daemon and then by two (``--role poller``),
polls per second and the ratio. Articles are timed from the site's first
feed request to the last acknowledgement, polls from the site's first
feed request to its last (neither waits for a daemon's first tick, up to a
second); both also between 10% and 90% (no start, no tail), by the
site's time of each page or feed request. Polls also from making them due
to the daemons' heartbeats reporting them done, which adds the tick and a
heartbeat (no target).

Baseline, in the same run: bare ``trafilatura.extract`` on the same pages
in one process and in two, pages per second and the ratio. It shows what
this machine gives a second process: on a 2-core virtual machine that is
not always 2x.

Each is measured twice, with the daemons placed two ways ("cores"):
- shared: as the kernel likes. One daemon of one extraction process then
  gets the second core for its event loop, so it already uses more than
  one core, and a second daemon can add less than a daemon's worth.
- own: each daemon, with its extraction process, held to a core of its
  own (``taskset``), as if each had a machine of one core to itself: the
  arrangement "past one machine" is about. Redis, the site and this bench
  run where the kernel likes, as before.

On a 2-core machine two daemons can at best double one; Redis and the
local site share the same cores. So the bench also prints how many cores
the whole machine kept busy between 10% and 90%, with one daemon and with
two (/proc/stat): two daemons that keep every core busy are held back by
the machine, not by each other; and one daemon that already keeps U1
cores busy (its core, and the site and Redis serving it from the other)
leaves room for at most cores / U1 times its rate. The machine's speed
drifts by tens of percent over minutes here, so each round measures 1
then 2 back to back, and the median of the rounds' ratios is printed.

    .venv/bin/python bench/scale.py [--pages 400] [--feeds 3000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import redis.asyncio as aioredis
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pipeline import (
    DATA,
    BusyMeter,
    Site,
    bare_trafilatura,
    cpu_split,
    daemon_command,
    daemon_totals,
    load_pages,
    run_pipeline,
    stop_daemons,
    write_config,
)

from monitor import keys  # on the path through pipeline
from tests.servers import RedisServer


async def run_polls(
    feeds: int, hosts: int, daemons: int, work: Path, *, pinned: bool = False
) -> tuple[float, float, float, float, dict[str, float]]:
    """Polls per second of ``daemons`` pollers re-polling every (empty) feed
    once, timed by the site as the requests arrive: from the first to the
    last, as the articles are timed (no wait for the first tick), and
    between 10% and 90% of them (no start, no tail); from making
    them due to the daemons reporting them all done (the tick and the last
    heartbeat included); the cores busy between 10% and 90%; and the CPU
    seconds by process kind."""
    redis = RedisServer(work / "redis")
    redis.start()
    # One feed per page slot, never published, spread over ``hosts`` addresses.
    site = Site([b""] * feeds, per_feed=1, hosts=hosts)
    await site.start()
    client = aioredis.Redis.from_url(redis.url, decode_responses=True)
    procs: list[asyncio.subprocess.Process] = []
    try:
        for n in range(daemons):
            cfg = write_config(work, f"p{n}", site, redis.url, 1, concurrency=500)
            proc = await asyncio.create_subprocess_exec(
                *daemon_command(n, pinned=pinned), "--role", "poller", "--config", str(cfg),
                "--log-level", "warning", stderr=asyncio.subprocess.DEVNULL,
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
        assert redis.proc is not None
        pids = [p.pid for p in procs]
        cpu_before = cpu_split(pids, redis.proc.pid)
        before = len(site.feed_hit_times)
        meter = BusyMeter()
        meter.sample()
        started = time.perf_counter()
        await client.zadd(keys.SERVER.due, {f"f{k}": 0 for k in range(site.feeds)})
        while True:
            meter.sample()
            polls, _e, _a = await daemon_totals(client)
            if polls - base >= feeds:
                break
            if time.perf_counter() - started > 600:
                raise RuntimeError("polling did not finish within 10 minutes")
            await asyncio.sleep(0.01)
        from_due = feeds / (time.perf_counter() - started)
        at = site.feed_hit_times[before:]  # one request per poll
        by_site = (len(at) - 1) / max(at[-1] - at[0], 1e-9)
        tenth, ninth = at[len(at) // 10], at[len(at) * 9 // 10]
        steady = 0.8 * len(at) / max(ninth - tenth, 1e-9)
        cpu = {k: v - cpu_before[k] for k, v in cpu_split(pids, redis.proc.pid).items()}
        return by_site, steady, from_due, meter.cores(tenth, ninth), cpu
    finally:
        await stop_daemons(procs)
        await client.aclose()
        await site.stop()
        redis.stop()


# How the daemons share the machine's cores: as the kernel likes ("shared"),
# or each held to a core of its own ("own": a machine of one core each).
ARRANGEMENTS = {"shared": False, "own": True}
MEASURES = ["articles/s", "art/s 10-90%", "polls/s", "polls/s 10-90%", "polls from due"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--pages", type=int, default=400)
    ap.add_argument("--feeds", type=int, default=3000)
    ap.add_argument("--per-feed", type=int, default=10)
    ap.add_argument("--hosts", type=int, default=3000, help="addresses of the polled feeds")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    pages = load_pages(args.pages)
    print(f"{len(pages)} pages from {DATA}; {args.feeds} feeds on {args.hosts} hosts to poll; "
          f"{args.rounds} rounds\n")  # fmt: skip
    # Per (cores, measure), per round: (1, 2) daemons or processes.
    rows = [("-", "bare art/s")] + [(a, m) for a in ARRANGEMENTS for m in MEASURES]
    rates: dict[tuple[str, str], list[tuple[float, float]]] = {k: [] for k in rows}
    cpus: dict[tuple[str, str], list[dict[str, float]]] = {
        (a, u): [] for a in ARRANGEMENTS for u in ("article", "poll")
    }
    # Per (cores, unit), per round: (1, 2) daemons' cores busy between 10% and 90%.
    busy: dict[tuple[str, str], list[tuple[float, float]]] = {k: [] for k in cpus}
    rss: dict[tuple[str, int], int] = {}  # (cores, daemons) -> peak MiB, the last round
    print(f"{'round':>5} {'cores':<6} {'measure':<14} {'1':>7} {'2':>7} {'ratio':>6}")
    for n in range(1, args.rounds + 1):
        # Alternating, within the round: a busy spell on a shared machine
        # hits both sides of each ratio.
        rate: dict[tuple[str, str], list[float]] = {k: [] for k in rows}
        used: dict[tuple[str, str], list[float]] = {k: [] for k in cpus}
        for daemons in (1, 2):
            rate["-", "bare art/s"].append(bare_trafilatura(pages, daemons)[0])
            for cores, pinned in ARRANGEMENTS.items():
                with tempfile.TemporaryDirectory() as tmp:
                    roles = [("all", 1)] * daemons
                    run = uvloop.run(
                        run_pipeline(pages, args.per_feed, roles, Path(tmp), pinned=pinned)
                    )
                rate[cores, "articles/s"].append(run.articles_per_s)
                rate[cores, "art/s 10-90%"].append(run.steady_per_s)
                used[cores, "article"].append(run.steady_busy)
                cpus[cores, "article"].append({k: v / len(pages) for k, v in run.cpu.items()})
                rss[cores, daemons] = run.peak_rss_mb
                with tempfile.TemporaryDirectory() as tmp:
                    polls, steady, from_due, cores_busy, cpu = uvloop.run(
                        run_polls(args.feeds, args.hosts, daemons, Path(tmp), pinned=pinned)
                    )
                rate[cores, "polls/s"].append(polls)
                rate[cores, "polls/s 10-90%"].append(steady)
                rate[cores, "polls from due"].append(from_due)
                used[cores, "poll"].append(cores_busy)
                cpus[cores, "poll"].append({k: v / args.feeds for k, v in cpu.items()})
        for (cores, name), (one, two) in rate.items():
            rates[cores, name].append((one, two))
            print(f"{n:>5} {cores:<6} {name:<14} {one:>7.1f} {two:>7.1f} {two / one:>5.2f}x",
                  flush=True)  # fmt: skip
        for key, (one, two) in used.items():
            busy[key].append((one, two))

    print(f"\n{'median':<5} {'cores':<6} {'measure':<14} {'1':>7} {'2':>7} {'ratio':>6}  target")
    for (cores, name), runs in rates.items():
        one, two = statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)
        ratio = statistics.median(r[1] / r[0] for r in runs)
        target = {"bare art/s": "(baseline)", "polls from due": ""}.get(name, ">= 1.70x")
        print(f"{'':<5} {cores:<6} {name:<14} {one:>7.1f} {two:>7.1f} {ratio:>5.2f}x  {target}")
    # Shared, the ratio is at most 2 E / (E + O): E the CPU per article of
    # the one extraction process that bounds one daemon, O all the rest (the
    # daemon, Redis, the site), which the second core has to take. Own
    # cores, one daemon is bound by E + its own part of O.
    print("\nCPU ms per article / per poll by process, last round (1 daemon; 2 daemons)")
    for (cores, unit), split in cpus.items():
        alone, pair = split[-2], split[-1]
        cols = "  ".join(f"{k} {alone[k] * 1e3:.2f}; {pair[k] * 1e3:.2f}" for k in alone)
        print(f"  {cores:<6} {unit:<8} {cols}")
    print_ceilings(rates, busy)
    print(f"\npeak RSS of the daemons (pipeline runs, last round, shared): {rss['shared', 1]} "
          f"MiB, {rss['shared', 2]} MiB; each daemon runs 1 extraction process")  # fmt: skip


def print_ceilings(
    rates: dict[tuple[str, str], list[tuple[float, float]]],
    busy: dict[tuple[str, str], list[tuple[float, float]]],
) -> None:
    """The most a second daemon can add on this machine.

    Driving one daemon keeps more than its own core busy: the site and Redis
    serve it from the other core, and, shared, its event loop runs there
    beside its extraction process. If it keeps U1 cores busy, two daemons at
    the same CPU per article (or poll) need 2 x U1 cores; the machine has
    ``cores``, so the ratio is at most cores / U1. Two daemons keeping every
    core busy (U2 = cores) are held back by the machine, not by each other.
    Busy is machine-wide (/proc/stat), between 10% and 90%. A pair can beat
    the ceiling where its CPU per unit is lower than one daemon's (bigger
    batches to Redis and the site under load): polls between 10% and 90%.
    """
    cores = os.cpu_count() or 1
    print(f"\nCores busy between 10% and 90% (the whole machine, of {cores}), median of rounds;"
          f" ceiling = {cores} / (1 daemon's), at the same CPU per unit")  # fmt: skip
    head = f"{'1 daemon':>8} {'2':>6} {'ceiling':>8} {'ratio':>6} {'10-90%':>7}"
    print(f"  {'cores':<6} {'unit':<8} {head}")
    measures = {"article": ("articles/s", "art/s 10-90%"), "poll": ("polls/s", "polls/s 10-90%")}
    for (arrangement, unit), runs in busy.items():
        one = statistics.median(r[0] for r in runs)
        two = statistics.median(r[1] for r in runs)
        ceiling = statistics.median(cores / max(r[0], 1e-9) for r in runs)
        ratio, steady = (
            statistics.median(b / a for a, b in rates[arrangement, m]) for m in measures[unit]
        )
        cols = f"{one:>8.2f} {two:>6.2f} {ceiling:>7.2f}x {ratio:>5.2f}x {steady:>6.2f}x"
        print(f"  {arrangement:<6} {unit:<8} {cols}")


if __name__ == "__main__":
    main()
