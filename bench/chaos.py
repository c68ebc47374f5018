"""Does every alert arrive exactly once when things fail? (reliability issue)

Runs the real daemon (`feed-monitor run`, a subprocess) against a real
redis-server and a local news site on 127.0.0.1 that publishes matching
stories while faults are injected:

- redis-outage: the Redis server is stopped for a few seconds, repeatedly;
- daemon-crash: the daemon is SIGKILLed at random moments and restarted;
- hostile: the same feed list also holds hostile feeds (gzip bomb, endless
  body, entity expansion, trickling server, redirect loop, HTML, empty).

Prints, per scenario: stories expected, delivered (a stream entry for the
story: its alert, or an ``also_seen`` update when dedupe folds the identical
texts into the first story's alert), lost, duplicated, whether
the daemon survived (the crash scenario restarts it by design), and the peak
RSS of the daemon's process tree. Baseline row: the same stories with no
fault, measured in the same run.

    .venv/bin/python bench/chaos.py [--stories 200] [--faults 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import html
import json
import random
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from aiohttp import web

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from pipeline import tree_rss_kb  # noqa: E402

from tests.servers import RedisServer, page, rss, stream_entries  # noqa: E402

EXE = str(Path(sys.executable).parent / "feed-monitor")
SEED = (ROOT / "seeds" / "000_79a58b876351234c.txt").read_text(encoding="utf-8")
PARAS = [html.escape(p) for p in SEED.split("\n\n")[1:] if p.strip()]


@dataclass
class Site:
    """Publishes numbered matching stories over several feeds."""

    feeds: int
    published: int = 0
    hostile: bool = False
    runner: web.AppRunner | None = None
    port: int = 0
    items: dict[int, list[dict[str, str]]] = field(default_factory=dict)

    def publish(self, n: int) -> None:
        for _ in range(n):
            i = self.published
            self.published += 1
            title = f"Kina og Russland: felles patrulje nr. {i}"
            self.items.setdefault(i % self.feeds, []).append(
                {"title": title, "link": f"/a/{i}.html", "guid": f"s-{i}"}
            )

    async def feed(self, request: web.Request) -> web.Response:
        k = int(request.match_info["k"])
        base = f"http://127.0.0.1:{self.port}"
        items = [{**it, "link": base + it["link"]} for it in self.items.get(k, [])[-50:]]
        return web.Response(text=rss(items), content_type="application/rss+xml")

    async def article(self, request: web.Request) -> web.Response:
        i = request.match_info["i"]
        return web.Response(text=page(f"Story {i}", PARAS, "nb"), content_type="text/html")

    async def bomb(self, _r: web.Request) -> web.Response:
        return web.Response(body=gzip.compress(b"<" * 30_000_000),
                            headers={"Content-Encoding": "gzip"})  # fmt: skip

    async def endless(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        await resp.prepare(request)
        with contextlib.suppress(ConnectionError):  # the daemon hangs up: good
            for _ in range(2000):
                await resp.write(b"x" * 65536)
        return resp

    async def trickle(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        await resp.prepare(request)
        with contextlib.suppress(ConnectionError):
            for _ in range(50):
                await resp.write(b"<")
                await asyncio.sleep(0.5)
        return resp

    async def laughs(self, _r: web.Request) -> web.Response:
        ents = "".join(f'<!ENTITY a{i} "{f"&a{i - 1};" * 10}">' for i in range(1, 10))
        doc = (
            f'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a0 "lol">{ents}]>'
            '<rss version="2.0"><channel><item><title>&a9;</title></item></channel></rss>'
        )
        return web.Response(text=doc, content_type="application/rss+xml")

    async def loop(self, _r: web.Request) -> web.Response:
        raise web.HTTPFound("/h/loop")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/feed/{k}", self.feed)
        app.router.add_get("/a/{i}.html", self.article)
        app.router.add_get("/h/bomb", self.bomb)
        app.router.add_get("/h/endless", self.endless)
        app.router.add_get("/h/trickle", self.trickle)
        app.router.add_get("/h/laughs", self.laughs)
        app.router.add_get("/h/loop", self.loop)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self.runner:
            await self.runner.cleanup()


class Daemon:
    def __init__(self, cfg: Path, log: Path | None = None) -> None:
        self.cfg = cfg
        self.log = log  # the daemon's log at INFO (appended across restarts), or none
        self.proc: asyncio.subprocess.Process | None = None
        self.peak_kb = 0
        self.unexpected_exits = 0

    async def start(self) -> None:
        level = "info" if self.log else "warning"
        with contextlib.ExitStack() as stack:
            err = stack.enter_context(self.log.open("ab")) if self.log else subprocess.DEVNULL
            self.proc = await asyncio.create_subprocess_exec(
                EXE, "run", "--config", str(self.cfg), "--log-level", level, stderr=err,
            )  # fmt: skip

    def sample(self) -> None:
        if self.proc and self.proc.returncode is None:
            self.peak_kb = max(self.peak_kb, tree_rss_kb(self.proc.pid))
        elif self.proc and self.proc.returncode is not None:
            self.unexpected_exits += 1
            self.proc = None

    async def kill(self) -> None:
        if self.proc and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)
            await self.proc.wait()

    async def stop(self) -> bool:
        if not self.proc:
            return False
        alive = self.proc.returncode is None
        if alive:
            self.proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(self.proc.wait(), timeout=60)
        return alive and self.proc.returncode == 0


async def story_ids(url: str) -> list[str]:
    """The story (entry) behind each stream entry. All stories here carry the
    same text, so with dedupe on (as shipped) the first is an alert and the
    rest arrive as its ``also_seen`` updates: either way, one entry per story."""
    return [json.loads(f["alert"])["entry_id"] for f in await stream_entries(url)]


class Row(NamedTuple):
    scenario: str
    expected: int
    delivered: int
    lost: int
    duplicated: int
    survived: bool
    peak_rss_mb: int


async def scenario(
    name: str, stories: int, faults: int, workdir: Path, log_dir: Path | None
) -> Row:
    work = workdir / name
    work.mkdir(parents=True)
    redis = RedisServer(work / "redis", persist=True)
    redis.start()
    site = Site(feeds=10, hostile=name == "hostile")
    await site.start()
    feeds = [f"  - {{name: f{k}, url: 'http://127.0.0.1:{site.port}/feed/{k}', interval_s: 1}}"
             for k in range(site.feeds)]  # fmt: skip
    if site.hostile:
        feeds += [f"  - {{name: h-{h}, url: 'http://127.0.0.1:{site.port}/h/{h}', interval_s: 1}}"
                  for h in ("bomb", "endless", "trickle", "laughs", "loop")]  # fmt: skip
    cfg = work / "monitor.yaml"
    cfg.write_text(
        f"state_dir: {work / 'st'}\nrules: ['{ROOT}/config/rules/*.yaml']\n"
        f"redis: {{url: '{redis.url}'}}\n"
        "http: {allow_private_addresses: true, timeout_s: 3, max_feed_bytes: 2000000,"
        " per_host_spacing_s: 0, per_host_concurrency: 16}\n"
        "extraction: {workers: 2}\nfeeds:\n" + "\n".join(feeds) + "\n"
    )
    daemon = Daemon(cfg, log_dir / f"{name}.log" if log_dir else None)
    await daemon.start()
    rng = random.Random(name)
    deadline = time.monotonic() + 60 + stories / 5
    fault_at = sorted(rng.uniform(0.15, 0.85) * stories for _ in range(faults))
    try:
        while site.published < stories and time.monotonic() < deadline:
            site.publish(min(10, stories - site.published))
            daemon.sample()
            if fault_at and site.published >= fault_at[0]:
                fault_at.pop(0)
                if name == "redis-outage":
                    redis.stop()
                    for _ in range(6):
                        await asyncio.sleep(0.5)
                        site.publish(min(5, stories - site.published))
                        daemon.sample()
                    redis.start()
                elif name == "daemon-crash":
                    await asyncio.sleep(rng.uniform(0, 1.0))
                    await daemon.kill()
                    await daemon.start()
            await asyncio.sleep(0.5)
        while time.monotonic() < deadline and len(set(await story_ids(redis.url))) < stories:
            daemon.sample()
            await asyncio.sleep(0.5)
        await asyncio.sleep(3)  # a few more polls: nothing may arrive twice
        daemon.sample()
        ids = await story_ids(redis.url)
        survived = await daemon.stop() and daemon.unexpected_exits == 0
    finally:
        if daemon.proc and daemon.proc.returncode is None:
            await daemon.kill()
        await site.stop()
        redis.stop()
    unique = len(set(ids))
    if unique < stories:
        seen = set(ids)
        missing = [i for i in range(stories) if not any(x.endswith(f"s-{i}") for x in seen)]
        print(f"{name}: no stream entry for stories {missing}", file=sys.stderr)
    return Row(name, stories, unique, stories - unique, len(ids) - unique, survived,
               daemon.peak_kb // 1024)  # fmt: skip


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--stories", type=int, default=200)
    ap.add_argument("--faults", type=int, default=3)
    ap.add_argument("--only", help="run only the scenarios whose name starts with this")
    ap.add_argument("--log-dir", type=Path, help="keep each daemon's INFO log here")
    args = ap.parse_args()
    if args.log_dir:
        args.log_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("no-fault (baseline)", "redis-outage", "daemon-crash", "hostile"):
            safe = name.split()[0]
            if args.only and not name.startswith(args.only):
                continue
            row = await scenario(safe, args.stories, args.faults, Path(tmp), args.log_dir)
            rows.append(row._replace(scenario=name))
    print(f"{'scenario':<20} {'expected':>8} {'delivered':>9} {'lost':>5} {'dup':>4} "
          f"{'survived':>8} {'peak RSS MB':>11}")  # fmt: skip
    for name, exp, got, lost, dup, ok, rss_mb in rows:
        print(f"{name:<20} {exp:>8} {got:>9} {lost:>5} {dup:>4} {('yes' if ok else 'NO'):>8} "
              f"{rss_mb:>11}")  # fmt: skip
    print(
        "\ntarget: 0 lost, 0 duplicated, survived, in every scenario "
        "(daemon-crash: survived = the last restart stopped cleanly)"
    )


if __name__ == "__main__":
    asyncio.run(main())
