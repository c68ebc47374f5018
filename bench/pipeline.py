"""How close does the whole pipeline come to bare extraction? (issue 8, "one machine")

A local site on 127.0.0.1 serves feeds whose items link to real article
pages read in place from ../shared/data/extraction/ (scrapinghub benchmark
and trafilatura-eval pages, repeated under new URLs if more are asked for,
never copied). A real redis-server, and the real daemon (``feed-monitor run``,
a subprocess) with one extraction process per core, poll every feed once and
take each new article through fetch, extraction, matching and delivery.
Articles per second, end to end: from the first feed request that gets the
published items (the feeds are made due at once; the daemon's 1 s tick
picks them up) to the moment every article's entry is acknowledged (all of
them queued, the entry stream empty again, watched every 20 ms). Also from
publishing (so including the wait for the tick), and between 10% and 90% of
the pages asked for (timed by the site), without the start and the tail.

Baseline, in the same run: bare ``trafilatura.extract`` (default settings,
include_comments=False, include_tables=True) on the same page bytes, in a
process pool of as many processes as cores. Peak RSS: the daemon's process
tree (daemon and its worker processes), and the baseline pool's processes.
Rounds alternate baseline and pipeline (a busy spell on a shared machine
hits both); the median ratio is printed.

    .venv/bin/python bench/pipeline.py [--pages 600] [--per-feed 10] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import multiprocessing
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import redis.asyncio as aioredis
import uvloop

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from monitor import keys  # noqa: E402
from tests.servers import RedisServer, rss  # noqa: E402

EXE = str(Path(sys.executable).parent / "feed-monitor")
DATA = ROOT.parent / "shared" / "data" / "extraction"
SH = DATA / "scrapinghub-article-extraction-benchmark"
TE = DATA / "trafilatura-eval"


def page_files() -> list[Path]:
    sh = sorted((SH / "html").glob("*.html.gz"))
    evaldata = json.loads((TE / "evaldata.json").read_text(encoding="utf-8"))
    te = [TE / "html" / f"{item['file']}.gz" for item in evaldata.values()]
    return sh + [p for p in te if p.exists()]


def load_pages(n: int) -> list[bytes]:
    """n page bodies; the corpus repeats (under new URLs) if n is larger."""
    files = page_files()
    bodies = [gzip.decompress(p.read_bytes()) for p in files[: min(n, len(files))]]
    return [bodies[i % len(bodies)] for i in range(n)]


def tree_rss_kb(pid: int, *, include_self: bool = True) -> int:
    """Resident memory of a process and all its descendants, in KiB."""
    total = 0
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            if include_self or p != pid:
                for line in Path(f"/proc/{p}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
            children = Path(f"/proc/{p}/task/{p}/children").read_text().split()
            todo.extend(int(c) for c in children)
        except OSError:
            continue
    return total


def cpu_s(pid: int, *, reaped: bool = False) -> float:
    """CPU seconds of a process (and of its reaped children, if asked)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = int(fields[11]) + int(fields[12])
    if reaped:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / os.sysconf("SC_CLK_TCK")


def descendants(pid: int) -> list[int]:
    out: list[int] = []
    todo = [pid]
    while todo:
        try:
            kids = [int(k) for f in Path(f"/proc/{todo.pop()}/task").glob("*/children")
                    for k in f.read_text().split()]  # fmt: skip
        except OSError:
            continue
        out += kids
        todo += kids
    return out


def cpu_split(daemons: list[int], redis_pid: int) -> dict[str, float]:
    """CPU seconds so far: daemon processes, their pool processes, Redis, this process.

    Pool processes recycled after max_tasks are gone from /proc; their time is
    in their daemon's reaped-children count (the daemon spawns them).
    """
    pools = sum(cpu_s(k) for d in daemons for k in descendants(d))
    pools += sum(cpu_s(d, reaped=True) - cpu_s(d) for d in daemons)
    return {
        "daemon": sum(cpu_s(d) for d in daemons),
        "pools": pools,
        "redis": cpu_s(redis_pid),
        "site+bench": cpu_s(os.getpid()),
    }


def busy_s() -> float:
    """CPU seconds the whole machine has spent busy (every core, every
    process: the daemons, Redis, the site, anything else): /proc/stat's
    user, nice, system, irq and softirq. Stolen time is not ours."""
    with open("/proc/stat") as f:  # one short read: cheap enough to sample every 10 ms
        fields = f.readline().split()
    user, nice, system, _idle, _iowait, irq, softirq = map(int, fields[1:8])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


@dataclass
class BusyMeter:
    """How many cores were busy between two moments, from samples of busy_s()
    taken as a run goes (the moments fall between samples: interpolated)."""

    samples: list[tuple[float, float]] = field(default_factory=list)  # (perf_counter, busy_s)

    def sample(self) -> None:
        self.samples.append((time.perf_counter(), busy_s()))

    def at(self, t: float) -> float:
        s = self.samples
        i = next((k for k in range(1, len(s)) if s[k][0] >= t), len(s) - 1)
        (t0, b0), (t1, b1) = s[i - 1], s[i]
        return b0 + (b1 - b0) * (t - t0) / max(t1 - t0, 1e-9)

    def cores(self, start: float, end: float) -> float:
        """Busy cores on average over [start, end] (USER_HZ ticks: 10 ms of
        CPU each, so spans under a second or so are coarse)."""
        return (self.at(end) - self.at(start)) / max(end - start, 1e-9)


# --- baseline: bare trafilatura in a process pool ---------------------------------


def _warm() -> None:
    import trafilatura

    trafilatura.extract("<html><body><p>warm up</p></body></html>")


def _bare(html: bytes) -> int:
    import trafilatura

    text = trafilatura.extract(html, include_comments=False, include_tables=True)
    return len(text or "")


def bare_trafilatura(pages: list[bytes], processes: int) -> tuple[float, int]:
    """Pages per second, and the pool's peak RSS in MiB."""
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.wait(0.2):
            peak = max(peak, tree_rss_kb(os.getpid(), include_self=False))

    ctx = multiprocessing.get_context("forkserver")
    with ctx.Pool(processes, initializer=_warm) as pool:
        pool.map(_bare, pages[: processes * 2])  # workers up and warm
        sampler = threading.Thread(target=sample)
        sampler.start()
        started = time.perf_counter()
        pool.map(_bare, pages, chunksize=4)
        elapsed = time.perf_counter() - started
        done.set()
        sampler.join()
    return len(pages) / elapsed, peak // 1024


# --- the pipeline: a site, Redis, and daemons -------------------------------------


Answer = tuple[bytes, bytes, bytes]  # content type ("": not found), body, ETag ("": none)


class _Http(asyncio.Protocol):
    """A bare HTTP/1.1 responder: GETs in, canned answers out, keep-alive,
    and a 304 for a request whose If-None-Match is the answer's ETag.

    The site stands in for servers on other machines, yet shares this
    machine's two cores with the daemons it serves. Serving bench/scale.py's
    polls with aiohttp.web, this process took 0.45-0.68 ms of CPU per poll
    here; with this responder 0.27-0.29 (the bench's own work included).
    """

    def __init__(self, answer: Callable[[str], Answer]) -> None:
        self.answer = answer
        self.buf = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while self.transport is not None and (end := self.buf.find(b"\r\n\r\n")) >= 0:
            head, self.buf = self.buf[:end], self.buf[end + 4 :]
            lines = head.split(b"\r\n")
            method, path = lines[0].split(b" ", 2)[:2]
            fields = dict(line.lower().split(b":", 1) for line in lines[1:] if b":" in line)
            status, ctype, body, etag = b"404 Not Found", b"text/plain", b"not found", b""
            if method == b"GET":
                ctype, body, etag = self.answer(path.decode("latin-1"))
                status = b"200 OK" if ctype else status
            extra = b"\r\nETag: " + etag if etag else b""
            if etag and fields.get(b"if-none-match", b"").strip() == etag.lower():
                status, body = b"304 Not Modified", b""
            close = fields.get(b"connection", b"").strip() == b"close"
            self.transport.write(
                b"HTTP/1.1 " + status + b"\r\nContent-Type: " + (ctype or b"text/plain")
                + b"\r\nContent-Length: " + str(len(body)).encode() + extra
                + (b"\r\nConnection: close" if close else b"") + b"\r\n\r\n" + body
            )  # fmt: skip
            if close:
                self.transport.close()
                self.transport = None

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


@dataclass
class Site:
    """Feeds of ``per_feed`` items each, linking to the pages; empty until published."""

    pages: list[bytes]
    per_feed: int
    published: bool = False
    first_hit: float | None = None  # perf_counter of the first feed request after publishing
    feed_hits: int = 0
    feed_hit_times: list[float] = field(default_factory=list)  # perf_counter of each
    page_hit_times: list[float] = field(default_factory=list)  # perf_counter of each
    hosts: int = 1  # loopback addresses (127.43.x.y beyond the first) the feeds spread over
    servers: list[asyncio.Server] = field(default_factory=list)
    base: str = ""
    port: int = 0
    docs: dict[int, bytes] = field(default_factory=dict)

    @property
    def feeds(self) -> int:
        return (len(self.pages) + self.per_feed - 1) // self.per_feed

    def address(self, k: int) -> str:
        """Feed k's address: one host per address, as far as politeness limits go."""
        h = k % self.hosts
        return "127.0.0.1" if h == 0 else f"127.43.{h // 250}.{h % 250 + 1}"

    def feed_url(self, k: int) -> str:
        return f"http://{self.address(k)}:{self.port}/f/{k}.xml"

    def answer(self, path: str) -> Answer:
        kind, _, name = path.rpartition("/")
        stem, _, ext = name.partition(".")
        if not stem.isdigit():
            return b"", b"", b""
        if kind == "/f" and ext == "xml" and int(stem) < self.feeds:
            etag = f'"p{stem}"' if self.published else '"empty"'
            return b"application/rss+xml", self.feed(int(stem)), etag.encode()
        if kind == "/p" and ext == "html" and int(stem) < len(self.pages):
            self.page_hit_times.append(time.perf_counter())
            return b"text/html", self.pages[int(stem)], b""
        return b"", b"", b""

    def feed(self, k: int) -> bytes:
        self.feed_hits += 1
        self.feed_hit_times.append(time.perf_counter())
        if not self.published:
            return EMPTY_FEED
        if self.first_hit is None:
            self.first_hit = time.perf_counter()
        if k not in self.docs:
            first = k * self.per_feed
            last = min(first + self.per_feed, len(self.pages))
            items = [{"title": f"Story {i}", "link": f"{self.base}/p/{i}.html", "guid": f"p-{i}"}
                     for i in range(first, last)]  # fmt: skip
            self.docs[k] = rss(items).encode()
        return self.docs[k]

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        first = await loop.create_server(lambda: _Http(self.answer), "127.0.0.1", 0)
        self.servers.append(first)
        self.port = first.sockets[0].getsockname()[1]
        self.base = f"http://127.0.0.1:{self.port}"
        for h in range(1, min(self.hosts, self.feeds)):  # the same port on the other addresses
            self.servers.append(
                await loop.create_server(lambda: _Http(self.answer), self.address(h), self.port)
            )

    async def stop(self) -> None:
        for server in self.servers:
            server.close()
        for server in self.servers:
            await server.wait_closed()


EMPTY_FEED = rss([]).encode()


def write_config(
    work: Path, name: str, site: Site, redis_url: str, processes: int, concurrency: int = 64
) -> Path:
    """One host: no politeness limits to speak of. Many hosts: the shipped ones."""
    feeds = "".join(
        f"  - {{name: f{k}, url: '{site.feed_url(k)}', interval_s: 3600}}\n"
        for k in range(site.feeds)
    )
    polite = "per_host_concurrency: 64, per_host_spacing_s: 0, " if site.hosts == 1 else ""
    cfg = work / f"{name}.yaml"
    cfg.write_text(
        f"state_dir: {work / name}\nrules: ['{ROOT}/config/rules/*.yaml']\n"
        f"redis: {{url: '{redis_url}'}}\n"
        f"http: {{allow_private_addresses: true, {polite}"
        f"concurrency: {concurrency}, timeout_s: 60}}\n"
        f"extraction: {{workers: {processes}, timeout_s: 60}}\n"
        "cluster: {heartbeat_s: 0.2}\nmax_new_entries_per_poll: 1000\n"
        f"feeds:\n{feeds}"
    )
    return cfg


async def entries_added(client: aioredis.Redis) -> int:
    """Entries ever added to the entry stream (its XINFO counter)."""
    info = await client.xinfo_stream(keys.SERVER.entries)
    return int(info["entries-added"])


@dataclass
class Run:
    articles_per_s: float  # first feed request that sees the articles -> last one acknowledged
    from_publish_per_s: float  # the same, from publishing (includes the wait for the tick)
    steady_per_s: float  # between 10% and 90% of the pages asked for: no start-up, no tail
    steady_busy: float  # cores busy on this machine in that span (every process)
    polls_per_s: float
    alerts: int
    peak_rss_mb: int
    cpu: dict[str, float]  # CPU seconds from publish to the end, by process kind


async def daemon_totals(client: aioredis.Redis) -> tuple[int, int, int]:
    """Polls, entries and alerts reported by every live daemon."""
    polls = entries = alerts = 0
    for i in await client.smembers(keys.SERVER.daemons):
        h = await client.hgetall(keys.SERVER.daemon(str(i)))
        polls += int(h.get("polls") or 0)
        entries += int(h.get("entries") or 0)
        alerts += int(h.get("alerts") or 0)
    return polls, entries, alerts


def daemon_command(n: int, *, pinned: bool) -> list[str]:
    """Daemon n's command; pinned, it and its extraction processes (which
    inherit the affinity) keep to core n, as if each daemon had a machine
    of one core to itself."""
    pin = ["taskset", "--cpu-list", str(n % (os.cpu_count() or 1))] if pinned else []
    return [*pin, str(EXE), "run"]


async def run_pipeline(
    pages: list[bytes],
    per_feed: int,
    roles: list[tuple[str, int]],
    work: Path,
    *,
    pinned: bool = False,
) -> Run:
    """Daemons of the given (role, extraction processes) on one Redis and site."""
    redis = RedisServer(work / "redis")
    redis.start()
    site = Site(pages, per_feed)
    await site.start()
    client = aioredis.Redis.from_url(redis.url, decode_responses=True)
    procs: list[asyncio.subprocess.Process] = []
    try:
        for n, (role, processes) in enumerate(roles):
            cfg = write_config(work, f"d{n}", site, redis.url, processes)
            proc = await asyncio.create_subprocess_exec(
                *daemon_command(n, pinned=pinned), "--role", role, "--config", str(cfg),
                "--log-level", "warning", stderr=asyncio.subprocess.DEVNULL,
            )  # fmt: skip
            procs.append(proc)
        # Started, every feed polled once (empty), workers idle: now publish.
        for _ in range(1200):
            polls, _e, _a = await daemon_totals(client)
            live = await client.scard(keys.SERVER.daemons)
            if live == len(roles) and polls >= site.feeds:
                break
            await asyncio.sleep(0.1)
        else:
            raise RuntimeError("the daemons did not start and poll within 120 s")
        base_polls, base_entries, _a = await daemon_totals(client)
        added_before = await entries_added(client)
        site.published = True
        peak = 0
        assert redis.proc is not None
        pids = [p.pid for p in procs]
        cpu_before = cpu_split(pids, redis.proc.pid)
        started = time.perf_counter()
        await client.zadd(keys.SERVER.due, {f"f{k}": 0 for k in range(site.feeds)})
        polled_at = None
        sampled = 0.0
        meter = BusyMeter()
        while True:
            meter.sample()
            now = time.perf_counter()
            if now - sampled >= 0.1:  # RSS and heartbeats: every 100 ms
                sampled = now
                peak = max(peak, sum(tree_rss_kb(p.pid) for p in procs))
                polls, entries, alerts = await daemon_totals(client)
                if polled_at is None and polls - base_polls >= site.feeds:
                    polled_at = now
            # Done: every article queued, and every queued entry acknowledged
            # (a worker XDELs an entry in the same step as its XACK).
            queued = await entries_added(client) - added_before
            if queued >= len(pages) and await client.xlen(keys.SERVER.entries) == 0:
                break
            if now - started > 1800:
                raise RuntimeError("the pipeline did not finish within 30 minutes")
            await asyncio.sleep(0.02)
        done = time.perf_counter()
        cpu_after = cpu_split(pids, redis.proc.pid)
        cpu = {k: cpu_after[k] - cpu_before[k] for k in cpu_after}
        for _ in range(100):  # the last heartbeats, for the counts
            polls, entries, alerts = await daemon_totals(client)
            if entries - base_entries >= len(pages):
                break
            await asyncio.sleep(0.1)
        poll_s = (polled_at or done) - started
        # Timed by the site, as each page is asked for: a worker holds at
        # most max_inflight entries and starts new ones as others finish, so
        # in the steady middle pages are asked for at the rate they are done.
        # (Heartbeat counters sampled every 100 ms, over a 10%-90% span of
        # 2-4 s, could be off by up to a tenth.)
        at = sorted(site.page_hit_times)
        if len(at) < 10:
            raise RuntimeError(f"the site served {len(at)} of {len(pages)} pages")
        tenth, ninth = at[len(at) // 10], at[len(at) * 9 // 10]
        steady = 0.8 * len(at) / max(ninth - tenth, 1e-9)
        return Run(
            articles_per_s=len(pages) / (done - (site.first_hit or started)),
            from_publish_per_s=len(pages) / (done - started),
            steady_per_s=steady,
            steady_busy=meter.cores(tenth, ninth),
            polls_per_s=site.feeds / poll_s,
            alerts=alerts,
            peak_rss_mb=peak // 1024,
            cpu=cpu,
        )
    finally:
        await stop_daemons(procs)
        await client.aclose()
        await site.stop()
        redis.stop()


async def stop_daemons(procs: list[asyncio.subprocess.Process]) -> None:
    """SIGTERM every daemon, then wait; one that does not stop in 60 s is killed."""
    for p in procs:
        if p.returncode is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            await asyncio.wait_for(p.wait(), timeout=60)
        except TimeoutError:
            p.kill()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--pages", type=int, default=600)
    ap.add_argument("--per-feed", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    cores = os.cpu_count() or 1
    pages = load_pages(args.pages)
    mb = sum(len(p) for p in pages) / 1e6
    print(f"{len(pages)} pages ({mb:.0f} MB of HTML) from {DATA}; {cores} cores\n")
    print(f"{'round':>5} {'bare art/s':>10} {'pipeline art/s':>14} {'ratio':>6} "
          f"{'from publish':>12} {'10-90%':>7} {'RSS bare':>8} {'RSS pipeline':>12}")  # fmt: skip
    ratios: list[tuple[float, float, float]] = []
    for n in range(1, args.rounds + 1):
        # Alternating, so a busy spell on a shared machine hits both sides.
        bare_rate, bare_rss = bare_trafilatura(pages, cores)
        with tempfile.TemporaryDirectory() as tmp:
            run = uvloop.run(run_pipeline(pages, args.per_feed, [("all", cores)], Path(tmp)))
        r = (run.articles_per_s / bare_rate, run.from_publish_per_s / bare_rate,
             run.steady_per_s / bare_rate)  # fmt: skip
        ratios.append(r)
        print(f"{n:>5} {bare_rate:>10.1f} {run.articles_per_s:>14.1f} {r[0]:>6.2f} {r[1]:>12.2f} "
              f"{r[2]:>7.2f} {bare_rss:>8} {run.peak_rss_mb:>12}")  # fmt: skip
    mid = sorted(ratios)[len(ratios) // 2]
    print(f"\nratio pipeline / bare trafilatura, median round: {mid[0]:.2f} end to end (first "
          f"feed request that sees the articles to the last acknowledgement; target >= 0.90), "
          f"{mid[1]:.2f} from publishing (with the wait for the 1 s tick), {mid[2]:.2f} "
          f"between 10% and 90% of the pages asked for. RSS in MiB; {run.alerts} alerts "
          f"per round")  # fmt: skip
    print_cpu(run.cpu, len(pages), bare_rate, cores)


def print_cpu(cpu: dict[str, float], articles: int, bare_rate: float, cores: int) -> None:
    """Where the cores went in the last round (the ratio's explanation)."""
    total = sum(cpu.values())
    bare = cores / bare_rate * 100  # CPU s per 100 pages when the baseline has every core
    print(f"\nCPU seconds per 100 articles, last round (bare trafilatura: {bare:.2f}):")
    for name, sec in [*cpu.items(), ("total", total)]:
        print(f"  {name:<11} {sec / articles * 100:6.2f}  {sec / total:4.0%}")


if __name__ == "__main__":
    main()
