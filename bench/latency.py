"""How soon after a story is published does its alert arrive? (issue 9)

Runs the real daemon (`feed-monitor run`, a subprocess) against a real
redis-server, a local news site and a local WebSub hub (tests/hub.py), all
on 127.0.0.1. Two feeds publish matching stories at random moments side by
side:

- push: the site's feed names the hub; the daemon subscribes, and each
  story is pushed by the hub (the whole current feed, signed) the moment it
  is published;
- poll (the baseline): a feed without a hub, polled at ``--poll-interval``
  (adaptive rate off, so the configured interval is what is measured).

A pub/sub subscriber (the bench process) notes when each alert arrives;
latency is arrival minus publication (the push to the callback, or the
story's appearance in the polled feed), both on the bench's clock. Prints
p50/p95/p99 per path, their ratio, and the time to extract one article
page in-process, for context.

Article pages are real news pages read in place from ../shared/data (never
copied; each story's matching text is in its feed summary, the page is what
gets fetched and extracted), or small generated ones with ``--pages
generated`` (or when the data is absent).

    .venv/bin/python bench/latency.py [--stories 40] [--poll-interval 10] [--pages real]
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
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis.asyncio as aioredis
from aiohttp import web

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from monitor import keys  # noqa: E402
from monitor.extract import extract_page  # noqa: E402
from tests.hub import Hub  # noqa: E402
from tests.servers import RedisServer, free_port, page  # noqa: E402

EXE = str(Path(sys.executable).parent / "feed-monitor")
SEED = (ROOT / "seeds" / "000_79a58b876351234c.txt").read_text(encoding="utf-8")
REAL = ROOT.parent / "shared" / "data" / "extraction" / "scrapinghub-article-extraction-benchmark"
REAL = REAL / "html"
PARAS = [html.escape(p) for p in SEED.split("\n\n")[1:] if p.strip()]
SUMMARY = html.escape(" ".join(PARAS[:2]))  # escaped twice: text inside <description>


@dataclass
class Site:
    """Two feeds (``push`` names the hub, ``poll`` does not) and their pages."""

    hub_url: str
    real: list[bytes] = field(default_factory=list)  # real pages to serve, if any
    port: int = 0
    items: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # feed -> (guid, title)
    runner: web.AppRunner | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def document(self, name: str) -> str:
        hub = ""
        if name == "push":
            hub = (
                f'<atom:link rel="hub" href="{self.hub_url}"/>'
                f'<atom:link rel="self" href="{self.base}/feed/push.xml"/>'
            )
        items = "".join(
            f"<item><title>{t}</title><link>{self.base}/a/{g}.html</link><guid>{g}</guid>"
            f"<description>{SUMMARY}</description></item>"
            for g, t in self.items.get(name, [])[-20:]
        )
        return (
            '<?xml version="1.0" encoding="utf-8"?>'
            '<rss version="2.0" xmlns:atom="http://www.w3.org/2005/Atom"><channel>'
            f"<title>{name}</title><link>{self.base}/</link>{hub}{items}</channel></rss>"
        )

    async def feed(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        return web.Response(text=self.document(name), content_type="application/rss+xml")

    async def article(self, request: web.Request) -> web.Response:
        guid = request.match_info["guid"]
        if self.real:  # a real page; the story's matching text is in its feed summary
            body = self.real[int(guid.rsplit("-", 1)[1]) % len(self.real)]
            return web.Response(body=body, content_type="text/html", charset="utf-8")
        return web.Response(text=page(f"Story {guid}", PARAS, "nb"), content_type="text/html")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/feed/{name}.xml", self.feed)
        app.router.add_get("/a/{guid}.html", self.article)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        self.port = free_port()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


def extraction_s(bodies: list[bytes]) -> tuple[float, float]:
    """Median and p95 time to extract one page in-process (the push floor)."""
    extract_page(bodies[0], "http://127.0.0.1/a/x.html", 3_000_000)  # load models first
    times = []
    for body in bodies:
        started = time.perf_counter()
        extract_page(body, "http://127.0.0.1/a/x.html", 3_000_000)
        times.append(time.perf_counter() - started)
    return statistics.median(times), percentiles(times)[1] if len(times) > 1 else times[0]


def real_pages(limit: int = 60) -> list[bytes]:
    """Real news pages read in place from ../shared/data (never copied), if present."""
    files = sorted(REAL.glob("*.html.gz"))[:limit]
    return [gzip.decompress(f.read_bytes()) for f in files]


def percentiles(values: list[float]) -> tuple[float, float, float]:
    if len(values) < 2:
        v = values[0] if values else float("nan")
        return v, v, v
    q = statistics.quantiles(values, n=100, method="inclusive")
    return q[49], q[94], q[98]


async def run(stories: int, poll_interval: float, real: list[bytes], workdir: Path) -> None:
    redis = RedisServer(workdir / "redis")
    redis.start()
    hub = Hub()
    await hub.start()
    site = Site(hub.url, real)
    await site.start()
    port = free_port()
    cfg = workdir / "monitor.yaml"
    cfg.write_text(
        f"state_dir: {workdir / 'st'}\nrules: ['{ROOT}/config/rules/*.yaml']\n"
        f"redis: {{url: '{redis.url}'}}\n"
        "http: {allow_private_addresses: true, timeout_s: 5, per_host_spacing_s: 0,"
        " per_host_concurrency: 16}\n"
        "extraction: {workers: 2}\npolling: {adapt_weight: 0}\n"
        f"websub: {{callback_url: 'http://127.0.0.1:{port}/websub', listen: '127.0.0.1:{port}'}}\n"
        "feeds:\n"
        f"  - {{name: push, url: '{site.base}/feed/push.xml', interval_s: {poll_interval}}}\n"
        f"  - {{name: poll, url: '{site.base}/feed/poll.xml', interval_s: {poll_interval}}}\n"
    )
    client = aioredis.Redis.from_url(redis.url, decode_responses=True)
    pubsub = client.pubsub()
    await pubsub.subscribe(keys.ALERT_CHANNEL)
    published: dict[str, float] = {}  # article URL -> publication time
    arrived: dict[str, float] = {}
    all_in = asyncio.Event()
    proc = await asyncio.create_subprocess_exec(
        EXE, "run", "--config", str(cfg), "--log-level", "warning",
        stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip

    async def listen() -> None:
        while True:
            msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if msg:
                now = time.monotonic()
                arrived.setdefault(json.loads(msg["data"])["url"], now)
                if len(arrived) >= 2 * stories:
                    all_in.set()

    async def publish(name: str, rng: random.Random) -> None:
        for i in range(stories):
            await asyncio.sleep(rng.uniform(0.5, 1.5))
            guid = f"{name}-{i}"
            title = f"Kina og Russland: felles patrulje nr. {i} ({name})"
            url = f"{site.base}/a/{guid}.html"
            site.items.setdefault(name, []).append((guid, title))
            published[url] = time.monotonic()
            if name == "push":
                await hub.publish(f"{site.base}/feed/push.xml", site.document("push").encode())

    listener = asyncio.get_running_loop().create_task(listen())
    try:
        await hub.wait_until(lambda: len(hub.subs) == 1, timeout_s=60)
        await asyncio.gather(publish("push", random.Random(1)), publish("poll", random.Random(2)))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(all_in.wait(), timeout=poll_interval * 1.2 + 30)
    finally:
        listener.cancel()
        await asyncio.gather(listener, return_exceptions=True)
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), timeout=60)
        await pubsub.aclose()  # type: ignore[no-untyped-call]
        await client.aclose()
        await site.stop()
        await hub.close()
        redis.stop()

    ours, _ = extraction_s([page("Story x", PARAS, "nb").encode()] * 20)
    pages = real or real_pages()
    real_med, real_p95 = extraction_s(pages) if pages else (float("nan"), float("nan"))
    served = f"{len(real)} real news pages" if real else "small generated pages"
    print(f"article pages served: {served}")
    rows = []
    for name, label in (("push", "push (WebSub)"), ("poll", f"poll every {poll_interval:g} s")):
        lat = [arrived[u] - t for u, t in published.items() if f"/{name}-" in u and u in arrived]
        lost = sum(1 for u in published if f"/{name}-" in u and u not in arrived)
        rows.append((label, len(lat), lost, *percentiles(lat)))
    print(f"{'path':<20} {'alerts':>6} {'missing':>7} {'p50 s':>8} {'p95 s':>8} {'p99 s':>8}")
    for label, n, lost, p50, p95, p99 in rows:
        print(f"{label:<20} {n:>6} {lost:>7} {p50:>8.3f} {p95:>8.3f} {p99:>8.3f}")
    push, poll = rows
    ratios = " / ".join(
        f"{b / a:.0f}x" if a > 0 else "-" for a, b in zip(push[3:], poll[3:], strict=True)
    )
    print(f"{'poll/push ratio':<20} {'':>6} {'':>7} {ratios:>26} (p50 / p95 / p99)")
    print(f"\npage extraction in-process: generated page {ours * 1000:.1f} ms (median); "
          f"{len(pages)} real news pages {real_med * 1000:.0f} ms median, "
          f"{real_p95 * 1000:.0f} ms p95")  # fmt: skip
    extraction = real_p95 if real else ours
    target = 1.0 + extraction
    verdict = "met" if push[4] < target else "NOT met"
    print(f"target: push p95 < 1 s + extraction of the page ({extraction * 1000:.0f} ms) = "
          f"{target:.3f} s: {verdict}")  # fmt: skip


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--stories", type=int, default=40, help="stories per path")
    ap.add_argument("--poll-interval", type=float, default=10.0, help="seconds")
    ap.add_argument(
        "--pages", choices=("real", "generated"), default="real",
        help="article pages: real news pages from ../shared/data (if present), or small "
        "generated ones",
    )  # fmt: skip
    args = ap.parse_args()
    real = real_pages() if args.pages == "real" else []
    with tempfile.TemporaryDirectory() as tmp:
        await run(args.stories, args.poll_interval, real, Path(tmp))


if __name__ == "__main__":
    asyncio.run(main())
