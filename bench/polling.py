"""Can the daemon's real polling path poll 10,000 feeds politely and cheaply?

Targets: at least 1,000 polls/s of 304 answers on this 2-core machine, and
a peak RSS under 300 MB for the daemon side at 10,000 feeds.

Set-up (everything on 127.0.0.0/8, nothing reaches further):

- A news server (aiohttp, its own process, so its CPU is not counted) binds
  one TCPSite per loopback address, 127.42.x.y, all on one port, with
  ``--feeds-per-address`` feeds each (10,000 feeds: 2,500 addresses, feed n
  on address n mod 2,500). Bodies are the 30 real feed documents of
  shared/data/feeds (read in place) with every URL except namespace URIs
  rewritten to the feed's own address, guids and links carrying a token
  that changes when the server publishes, so the first ``NEW_PER_200``
  items of a 200 are new. RSS <ttl>, sy:update* and skipHours/skipDays are
  removed so the bench, not the documents, sets the poll interval. Every
  article link is answered with a small HTML page (about 1 in 20 of them a
  story that the default rule pack matches). The server counts in-flight
  requests per address (feed and page requests alike) and keeps the maximum.
- A real redis-server (tests.servers.RedisServer, no persistence) holds the
  state as if every feed had been polled once (ETag, known, seen items),
  written with the daemon's own key names.
- The daemon is ``monitor.daemon.Daemon(open_app(cfg, ...)).run()``, in this
  process: the 1 s tick (run early while the poll queue is half empty and
  feeds wait) reads due feeds from Redis, leases them, hands them to
  ``http.concurrency`` (``--concurrency``, 200) workers that run
  ``Pipeline.poll`` (conditional
  GET, per-host limits, feed parsing and page extraction in the pebble pool,
  rules, delivery) and store ``next_due``. Its log goes at INFO, formatted
  as in production, to a file.

Phases (the server switches what it answers; the daemon runs through them):
warm-in (10 s, not measured: every host gets its first connection), "304"
(every feed answers 304), "mixed" (mostly 304, ``--p-new`` of them a 200
with new items, and per-feed classes: slow, 500, 404, hanging past the
client timeout), "200" (every poll a 200 with new items; then the tick job
is paused until the polls already handed out have finished, at most
``--drain-seconds``, so the row counts completed polls, not a queue). Per
phase: completed polls (the daemon's own counters), polls/s, CPU seconds per
1,000 polls of the daemon's process tree (this process and its worker
processes, from /proc) and of this process alone, of redis-server
apart, the peak RSS (and PSS) of the daemon's tree, the server's answers,
new TCP connections, CPU time in the GC, mean polls in flight. Then the
naive baseline runs in its own process: urllib.request, no conditional GET,
feedparser.parse on every body, one feed at a time, for ``--naive-seconds``.

Configuration-level experiments, off by default (the daemon as shipped):
``--redis-max-connections N`` puts max_connections in the Redis URL
(redis-py's asyncio pool refuses a 101st concurrent command);
``--gc-freeze`` and ``--gc-threshold N`` tune the daemon process's GC;
``--parse-workers N`` sets ``extraction.parse_workers`` (0: feeds are parsed
in the extraction processes, one process fewer).
``--profile PHASE`` prints a cProfile of the event loop for one phase.

    .venv/bin/python bench/polling.py [--feeds 10000] [--seconds 30]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import gc
import html
import ipaddress
import json
import logging
import math
import multiprocessing
import os
import pstats
import random
import re
import resource
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
import urllib.request
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# The daemon's pool workers re-run this file when they start (as
# "__mp_main__": multiprocessing's spawn). Under the `feed-monitor`
# command they import nothing of the daemon (monitor/__main__.py is tiny), so
# here they must skip the daemon's imports too, or the memory measured would
# be this script's, not the daemon's. The bench's own helper processes
# (named "bench-...", spawned) need them.
IN_POOL_WORKER = (
    __name__ == "__mp_main__" and not multiprocessing.current_process().name.startswith("bench-")
)
if not IN_POOL_WORKER:
    import redis
    from aiohttp import web

    from monitor import keys
    from monitor.config import (
        Config,
        ExtractionSettings,
        FeedSpec,
        HttpSettings,
        PollingSettings,
        RedisSettings,
    )
    from monitor.daemon import Daemon, open_app
    from monitor.logs import KeyValueFormatter
    from monitor.rules import load_rules
    from tests.servers import RedisServer, page

FEEDS_DIR = ROOT.parent / "shared" / "data" / "feeds"
RULES = sorted((ROOT / "config" / "rules").glob("*.yaml"))
SEED_TEXT = (ROOT / "seeds" / "000_79a58b876351234c.txt").read_text(encoding="utf-8")
MATCHING = [html.escape(p) for p in SEED_TEXT.split("\n\n")[1:] if p.strip()]
NEUTRAL = [
    "The regional council met on Tuesday to discuss the budget for the coming year, "
    "including repairs to two bridges and a new bus line to the hospital.",
    "Residents asked for more frequent services in the evening; the council said it "
    "would study the numbers and answer before the summer.",
    "A spokesperson said the works should start in the autumn and last about a year, "
    "with one lane kept open on each bridge while they go on.",
    "The opposition welcomed the plan but questioned the cost estimate, which it called "
    "optimistic given the price of steel and concrete this year.",
]
NET = ipaddress.ip_network("127.42.0.0/16")  # the server's addresses: loopback only
CANON_N = 987654321  # a feed number that cannot occur, for identity templates
NEW_PER_200 = 2  # new items in each 200 the server publishes
HANG_S = 60.0  # a hanging feed answers after this (the client gives up first)
CLIENT_TIMEOUT_S = 5.0  # http.timeout_s for the bench
INTERVAL_S = 2.0  # every feed's configured interval: always a backlog
# Feed classes in the mixed phase, per mille of feeds.
CLASSES = (("e500", 15), ("e404", 10), ("hang", 5), ("slow", 30))
PHASES = (("warm-in", "304"), ("304", "304"), ("mixed", "mixed"), ("200", "200"))
SHARES = {"warm-in": 0.0, "304": 0.4, "mixed": 0.3, "200": 0.3}
WARM_IN_S = 10.0  # long enough for the first connection to each of 2,500 hosts

log = logging.getLogger("bench.polling")

# ----------------------------------------------------------------- documents

Part = bytes | tuple[int, int]  # literal bytes, or (item index or -1, URL number)

_HINTS = re.compile(
    rb"<(ttl|sy:updatePeriod|sy:updateFrequency|sy:updateBase|skipHours|skipDays)\b[^>]*>"
    rb".*?</\1\s*>",
    re.S | re.I,
)
_ITEM = re.compile(rb"<(item|entry)\b[^>]*>.*?</\1\s*>", re.S)
_GUID = re.compile(rb"(<(guid|id)\b[^>]*>)([^<]*)(</\2\s*>)")
_URL = re.compile(rb"https?://[^\s\"'<>&\])]+", re.I)
_XMLNS = re.compile(rb"""xmlns(?::[\w.-]+)?\s*=\s*["']([^"']*)["']""")


@dataclass(frozen=True)
class Template:
    """A real feed document with its URLs turned into placeholders."""

    name: str
    parts: tuple[Part, ...]
    items: int
    size: int

    def render(self, host: str, port: int, n: int, gen: int) -> bytes:
        base = f"http://{host}:{port}".encode()
        out: list[bytes] = []
        for p in self.parts:
            if isinstance(p, bytes):
                out.append(p)
            elif p[0] < 0:
                out.append(b"%s/s/%d/%d" % (base, n, p[1]))
            else:
                tok = gen if p[0] < NEW_PER_200 else 0
                out.append(b"%s/a/%d/%d/%d" % (base, n, tok, p[1]))
        return b"".join(out)


def _urls(chunk: bytes, item: int, counter: list[int], keep: set[bytes]) -> list[Part]:
    parts: list[Part] = []
    pos = 0
    for m in _URL.finditer(chunk):
        if m.group(0) in keep:
            continue
        parts += [chunk[pos : m.start()], (item, counter[0])]
        counter[0] += 1
        pos = m.end()
    parts.append(chunk[pos:])
    return parts


def make_template(path: Path, base: Path) -> Template:
    data = _HINTS.sub(b"", path.read_bytes())
    keep = {m.group(1) for m in _XMLNS.finditer(data)}
    counter = [0]
    parts: list[Part] = []
    pos = 0
    items = 0
    for i, m in enumerate(_ITEM.finditer(data)):
        parts += _urls(data[pos : m.start()], -1, counter, keep)
        span = m.group(0)
        inner = 0
        for g in _GUID.finditer(span):
            parts += _urls(span[inner : g.start()], i, counter, keep)
            parts += [g.group(1), (i, counter[0]), g.group(4)]
            counter[0] += 1
            inner = g.end()
        parts += _urls(span[inner:], i, counter, keep)
        pos = m.end()
        items = i + 1
    parts += _urls(data[pos:], -1, counter, keep)
    merged: list[Part] = []
    for p in parts:
        if isinstance(p, bytes) and merged and isinstance(merged[-1], bytes):
            merged[-1] += p
        elif p != b"":
            merged.append(p)
    name = str(path.relative_to(base))
    return Template(name, tuple(merged), items, len(data))


def load_templates(feeds_dir: Path) -> list[Template]:
    index = json.loads((feeds_dir / "INDEX.json").read_text(encoding="utf-8"))
    return [make_template(feeds_dir / e["file"], feeds_dir) for e in index]


@dataclass
class DocCheck:
    template: Template
    entries: int
    new_per_200: int
    gen0_ids: list[str]  # identities at gen 0 for feed CANON_N on the first address
    ok: bool
    note: str = ""


def _is_loopback_link(link: str | None) -> bool:
    if not link:
        return True
    host = urlsplit(link).hostname or ""
    try:
        return ipaddress.ip_address(host) in NET
    except ValueError:
        return False


def probes(addrs: Sequence[str]) -> list[tuple[str, int, int]]:
    """(address, feed number, generation) of the renders each document is checked on."""
    return [(addrs[0], CANON_N, 0), (addrs[0], CANON_N, 1), (addrs[-1], 7, 0)]


def parse_all(docs: list[tuple[bytes, str, str]]) -> list[tuple[list[str], list[str | None]] | str]:
    """Entry identities and links of each document by the daemon's own parser,
    or why it failed. Runs in a helper process: feedparser and lxml are not
    the daemon's imports, and this process is the daemon's."""
    from monitor.feedparse import parse_feed

    out: list[tuple[list[str], list[str | None]] | str] = []
    for body, url, name in docs:
        try:
            parsed = parse_feed(body, url, name, None)
        except Exception as exc:  # reported, not raised
            out.append(f"{type(exc).__name__}: {exc}")
            continue
        out.append(([e.identity for e in parsed.entries], [e.link for e in parsed.entries]))
    return out


def check_templates(templates: list[Template], addrs: Sequence[str], port: int) -> list[DocCheck]:
    """Parse renders with the daemon's own parser: every link must stay in
    127.42.0.0/16, and a new generation must make NEW_PER_200 items new."""
    docs = [(t.render(host, port, n, gen), f"http://{host}:{port}/feed/{n}", f"f{n}")
            for t in templates for host, n, gen in probes(addrs)]  # fmt: skip
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as helper:
        parsed = helper.submit(parse_all, docs).result(timeout=300)
    k = len(probes(addrs))
    return [check_template(t, addrs, port, parsed[i * k : (i + 1) * k])
            for i, t in enumerate(templates)]  # fmt: skip


def check_template(
    t: Template, addrs: Sequence[str], port: int,
    parsed: list[tuple[list[str], list[str | None]] | str],
) -> DocCheck:  # fmt: skip
    failed = next((p for p in parsed if isinstance(p, str)), None)
    if failed is not None:
        return DocCheck(t, 0, 0, [], False, f"does not parse: {failed}")
    (id0, links0), (id1, links1), (id_other, links_other) = [
        p for p in parsed if not isinstance(p, str)
    ]
    other = addrs[-1]
    if not all(_is_loopback_link(x) for x in [*links0, *links1, *links_other]):
        bad = next(x for x in [*links0, *links1, *links_other] if not _is_loopback_link(x))
        return DocCheck(t, len(id0), 0, [], False, f"link outside {NET}: {bad}")
    expected = [seed_identity(i, other, 7, addrs[0], port) for i in id0]
    mismatch = len(set(expected) ^ set(id_other))
    note = f"{mismatch} identities not derivable" if mismatch else ""
    return DocCheck(t, len(id0), len(set(id1) - set(id0)), id0, True, note)


def seed_identity(identity: str, host: str, n: int, canon_host: str, port: int) -> str:
    """The identity of feed n's entry, from the canonical feed's."""
    return (
        identity.replace(f"http://{canon_host}:{port}/", f"http://{host}:{port}/")
        .replace(f"/a/{CANON_N}/", f"/a/{n}/")
        .replace(f"/s/{CANON_N}/", f"/s/{n}/")
    )


# ----------------------------------------------------------------- server


def address(i: int) -> str:
    return str(NET.network_address + 256 * (i // 250) + (i % 250) + 1)


def feed_class(n: int) -> str:
    x = (n * 2654435761 + 12345) % 1000
    for name, share in CLASSES:
        if x < share:
            return name
        x -= share
    return "normal"


@dataclass
class Site:
    templates: list[Template]
    addrs: list[str]
    port: int
    nfeeds: int
    p_new: float
    mode: str = "304"
    gen: list[int] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    inflight: dict[str, int] = field(default_factory=dict)
    max_inflight: int = 0
    max_addr: str = ""
    over: dict[int, int] = field(default_factory=dict)  # in-flight level -> times reached
    peers: set[tuple[str, int]] = field(default_factory=set)  # client ends seen: connections
    rng: random.Random = field(default_factory=lambda: random.Random(42))

    def __post_init__(self) -> None:
        self.gen = [0] * self.nfeeds

    def count(self, what: str) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1

    def _enter(self, request: web.Request) -> str:
        sock = request.transport.get_extra_info("sockname") if request.transport else None
        addr = str(sock[0]) if sock else "?"
        peer = request.transport.get_extra_info("peername") if request.transport else None
        if peer and len(self.peers) < 5_000_000:
            self.peers.add((str(peer[0]), int(peer[1])))
        level = self.inflight[addr] = self.inflight.get(addr, 0) + 1
        self.over[level] = self.over.get(level, 0) + 1
        if level > self.max_inflight:
            self.max_inflight, self.max_addr = level, addr
        return addr

    def _leave(self, addr: str) -> None:
        self.inflight[addr] -= 1
        if not self.inflight[addr]:
            del self.inflight[addr]

    async def feed(self, request: web.Request) -> web.Response:
        addr = self._enter(request)
        try:
            return await self._feed(request, int(request.match_info["n"]), addr)
        finally:
            self._leave(addr)

    async def _feed(self, request: web.Request, n: int, addr: str) -> web.Response:
        if not 0 <= n < self.nfeeds or addr != self.addrs[n % len(self.addrs)]:
            self.count("wrong address")
            return web.Response(status=404)
        cls = feed_class(n) if self.mode == "mixed" else "normal"
        if cls == "e500":
            self.count("500")
            return web.Response(status=500, text="boom")
        if cls == "e404":
            self.count("404")
            return web.Response(status=404, text="gone")
        if cls == "hang":
            self.count("hang (client times out)")
            await asyncio.sleep(HANG_S)  # cancelled when the client gives up
            return web.Response(status=504)
        if cls == "slow":
            self.count("slow (0.5-2 s, then as normal)")
            await asyncio.sleep(0.5 + (n % 16) / 10)
        new = self.mode == "200" or (self.mode == "mixed" and self.rng.random() < self.p_new)
        if new:
            self.gen[n] += 1
        etag = f'"{n}-{self.gen[n]}"'
        if not new and request.headers.get("If-None-Match") == etag:
            self.count("304")
            return web.Response(status=304, headers={"ETag": etag})
        self.count("200 new items" if new else "200 unconditional")
        t = self.templates[n % len(self.templates)]
        body = t.render(addr, self.port, n, self.gen[n])
        return web.Response(body=body, headers={"ETag": etag, "Content-Type": "application/xml"})

    async def article(self, request: web.Request) -> web.Response:
        addr = self._enter(request)
        try:
            self.count("article page")
            path = request.path
            story = zlib.crc32(path.encode()) % 20 == 0
            text = page(f"Story {path}", MATCHING if story else NEUTRAL, "nb" if story else "en")
            return web.Response(text=text, content_type="text/html")
        finally:
            self._leave(addr)

    def stats(self) -> dict[str, Any]:
        return {"counts": dict(self.counts), "max_inflight": self.max_inflight,
                "max_addr": self.max_addr, "levels": dict(self.over),
                "connections": len(self.peers)}  # fmt: skip


def serve(conn: Connection, nfeeds: int, naddrs: int, p_new: float, feeds_dir: str) -> None:
    """The news server's process: bind, say the port, then obey the pipe."""
    with contextlib.suppress(ValueError, OSError):
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us
    asyncio.run(_serve(conn, nfeeds, naddrs, p_new, Path(feeds_dir)))


async def _serve(conn: Connection, nfeeds: int, naddrs: int, p_new: float, feeds: Path) -> None:
    addrs = [address(i) for i in range(naddrs)]
    site = Site(load_templates(feeds), addrs, 0, nfeeds, p_new)
    app = web.Application()
    app.router.add_get("/feed/{n}", site.feed)
    app.router.add_get("/{tail:.*}", site.article)
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
    await runner.setup()
    port = 0
    for _attempt in range(5):
        port = _free_port(addrs[0])
        try:
            for a in addrs:
                await web.TCPSite(runner, a, port, backlog=128, reuse_address=True).start()
            break
        except OSError:
            await runner.cleanup()
            runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
            await runner.setup()
            port = 0
    site.port = port
    conn.send({"port": port, "addresses": len(addrs)})
    if not port:
        return
    loop = asyncio.get_running_loop()
    done = asyncio.Event()

    def on_command() -> None:
        try:
            cmd, arg = conn.recv()
        except (EOFError, OSError):
            done.set()
            return
        if cmd == "mode":
            site.mode = str(arg)
        elif cmd == "stop":
            done.set()
        conn.send(site.stats())

    loop.add_reader(conn.fileno(), on_command)
    await done.wait()
    loop.remove_reader(conn.fileno())
    await runner.cleanup()


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


class ServerHandle:
    def __init__(self, nfeeds: int, naddrs: int, p_new: float, feeds_dir: Path) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(
            target=serve,
            args=(child, nfeeds, naddrs, p_new, str(feeds_dir)),
            daemon=True,
            name="bench-news-server",
        )
        self.proc.start()
        child.close()
        self.lock = threading.Lock()
        if not self.conn.poll(120):
            raise RuntimeError("the news server did not start within 120 s")
        hello: dict[str, int] = self.conn.recv()
        self.port = hello["port"]
        if not self.port:
            raise RuntimeError(f"could not bind {naddrs} loopback addresses")

    def call(self, cmd: str, arg: object = None) -> dict[str, Any]:
        with self.lock:
            self.conn.send((cmd, arg))
            if not self.conn.poll(30):
                raise RuntimeError(f"the news server did not answer {cmd!r}")
            reply: dict[str, Any] = self.conn.recv()
            return reply

    def stop(self) -> dict[str, Any]:
        stats: dict[str, Any] = {}
        with contextlib.suppress(Exception):
            stats = self.call("stop")
        self.proc.join(10)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(5)
        return stats


# ----------------------------------------------------------------- /proc

CLK_TCK = os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    found: list[int] = []
    with contextlib.suppress(OSError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{tid}/children") as f:
                found += [int(x) for x in f.read().split()]
    return found


def tree(root: int, exclude: set[int]) -> list[int]:
    out: list[int] = []
    todo = [root]
    while todo and len(out) < 10_000:
        pid = todo.pop()
        if pid in exclude:
            continue
        out.append(pid)
        todo += children(pid)
    return out


def cpu_s(pid: int, *, reaped: bool = True) -> float:
    """utime+stime of pid, and of its reaped children (workers that exited) if asked."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return sum(int(x) for x in fields[11 : 15 if reaped else 13]) / CLK_TCK


def role(pid: int) -> str:
    if pid == os.getpid():
        return "daemon"
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return "?"
    if "resource_tracker" in cmd:
        return "resource tracker"
    if "spawn_main" in cmd:  # monitor.workers spawns its workers
        # Extraction workers carry numpy (text signatures); feed parsers do not.
        with contextlib.suppress(OSError), open(f"/proc/{pid}/maps") as f:
            if "numpy" in f.read():
                return "extraction worker"
        return "parse worker"
    return cmd[:40]


def memory_kb(pid: int, rollup: bool) -> tuple[int, int]:
    """(RSS, PSS) in kB; PSS only with rollup (costlier to read)."""
    rss = pss = 0
    with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
                break
    if rollup:
        with contextlib.suppress(OSError), open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    pss = int(line.split()[1])
                    break
    return rss, pss


# ----------------------------------------------------------------- measuring


@dataclass
class Snapshot:
    t: float
    cpu: float
    redis_cpu: float
    polls: dict[str, float]
    alerts: int
    entries: float
    redis_errors: float
    server: dict[str, int]
    extra: dict[str, float]


@dataclass
class PhaseResult:
    name: str
    seconds: float
    polls: dict[str, float]
    cpu: float
    redis_cpu: float
    peak_rss_mb: float
    peak_pss_mb: float
    mean_inflight: float
    alerts: int
    entries: float
    redis_errors: float
    server: dict[str, int]
    extra: dict[str, float]
    drain: tuple[float, bool] | None = None  # seconds, and whether it finished

    @property
    def total(self) -> float:
        return sum(self.polls.values())


@dataclass
class Sampler:
    """Peak memory of the daemon's process tree, sampled from the event loop."""

    exclude: set[int]
    redis_pid: int
    peak_rss: float = 0.0
    peak_pss: float = 0.0
    overall_rss: float = 0.0
    overall_pss: float = 0.0
    redis_rss: float = 0.0
    ticks: int = 0
    at_peak: list[tuple[int, str, float]] = field(default_factory=list)  # pid, role, MB
    daemon: Daemon | None = None
    inflight_sum: float = 0.0  # polls in flight, summed over this phase's samples
    inflight_n: int = 0

    def sample(self) -> None:
        self.ticks += 1
        if self.daemon is not None:
            self.inflight_sum += len(self.daemon.inflight)
            self.inflight_n += 1
        rollup = self.ticks % 4 == 0
        rss = pss = 0
        each: list[tuple[int, float]] = []
        for pid in tree(os.getpid(), self.exclude):
            r, p = memory_kb(pid, rollup)
            rss, pss = rss + r, pss + p
            each.append((pid, r / 1024))
        self.peak_rss = max(self.peak_rss, rss / 1024)
        if rss / 1024 > self.overall_rss:
            # Named only at a new peak: role() reads /proc/<pid>/maps, and
            # this runs on the daemon's event loop, in the CPU measured.
            self.at_peak = [(pid, role(pid), mb) for pid, mb in each]
        self.overall_rss = max(self.overall_rss, rss / 1024)
        if rollup:
            self.peak_pss = max(self.peak_pss, pss / 1024)
            self.overall_pss = max(self.overall_pss, pss / 1024)
        self.redis_rss = max(self.redis_rss, memory_kb(self.redis_pid, False)[0] / 1024)

    def reset(self) -> None:
        self.peak_rss = self.peak_pss = self.inflight_sum = 0.0
        self.inflight_n = 0

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.sample()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=0.25)


def daemon_cpu(exclude: set[int]) -> float:
    return sum(cpu_s(pid) for pid in tree(os.getpid(), exclude))


OUTCOMES = ("not_modified", "ok", "failed", "retired")


class GcClock:
    """CPU time spent in the cyclic garbage collector of the daemon's process."""

    def __init__(self) -> None:
        self.seconds = self.full_seconds = 0.0
        self.count = self.full_count = 0
        self._t0 = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._t0 = time.thread_time()  # CPU time: the machine is shared
            return
        took = time.thread_time() - self._t0
        self.seconds += took
        self.count += 1
        if info.get("generation") == 2:
            self.full_seconds += took
            self.full_count += 1


GC = GcClock()


def snapshot(daemon: Daemon, server: ServerHandle, exclude: set[int], rpid: int) -> Snapshot:
    reg = daemon.app.metrics.registry
    polls = {
        o: reg.get_sample_value("feed_monitor_polls_total", {"outcome": o}) or 0.0 for o in OUTCOMES
    }
    entries = reg.get_sample_value("feed_monitor_entries_processed_total") or 0.0
    redis_errors = reg.get_sample_value("feed_monitor_redis_errors_total") or 0.0
    stats = server.call("stats")
    extra = {"main_cpu": cpu_s(os.getpid(), reaped=False), "connections": stats["connections"],
             "gc_s": GC.seconds, "gc_n": GC.count, "gc2_s": GC.full_seconds,
             "gc2_n": GC.full_count}  # fmt: skip
    return Snapshot(time.monotonic(), daemon_cpu(exclude), cpu_s(rpid), polls,
                    daemon.alerts_today, entries, redis_errors, stats["counts"], extra)  # fmt: skip


def diff(name: str, a: Snapshot, b: Snapshot, sampler: Sampler) -> PhaseResult:
    keys_ = set(a.server) | set(b.server)
    return PhaseResult(
        name=name,
        seconds=b.t - a.t,
        polls={o: b.polls[o] - a.polls[o] for o in OUTCOMES},
        cpu=b.cpu - a.cpu,
        redis_cpu=b.redis_cpu - a.redis_cpu,
        peak_rss_mb=sampler.peak_rss,
        peak_pss_mb=sampler.peak_pss,
        mean_inflight=sampler.inflight_sum / max(1, sampler.inflight_n),
        alerts=b.alerts - a.alerts,
        entries=b.entries - a.entries,
        redis_errors=b.redis_errors - a.redis_errors,
        extra={k: b.extra[k] - a.extra[k] for k in a.extra},
        server={k: b.server.get(k, 0) - a.server.get(k, 0) for k in sorted(keys_)},
    )


# ----------------------------------------------------------------- the daemon


async def drain(daemon: Daemon, limit_s: float) -> tuple[float, bool]:
    """Let the polls already handed out finish, with no new ones started
    (the tick job paused), so the 200 path is measured by completed polls."""
    t0 = time.monotonic()
    daemon.scheduler.pause_job("tick")
    try:
        await asyncio.wait_for(daemon.queue.join(), timeout=limit_s)
        done = True
    except TimeoutError:
        done = False
    finally:
        daemon.scheduler.resume_job("tick")
    return time.monotonic() - t0, done


def make_config(args: argparse.Namespace, workdir: Path, redis_url: str, port: int) -> Config:
    naddrs = math.ceil(args.feeds / args.feeds_per_address)
    feeds = tuple(
        FeedSpec(name=f"f{n:05d}", url=f"http://{address(n % naddrs)}:{port}/feed/{n}",
                 interval_s=INTERVAL_S)
        for n in range(args.feeds)
    )  # fmt: skip
    rules_dir = workdir / "rules"  # a copy: edits to the repo's rules must not reload us
    rules_dir.mkdir()
    for r in RULES:
        shutil.copy(r, rules_dir / r.name)
    return Config(
        state_dir=workdir / "state",
        redis=RedisSettings(url=redis_url),
        http=HttpSettings(
            concurrency=args.concurrency,
            allowed_networks=(str(NET),),  # the bench's server, and nothing else private
            timeout_s=CLIENT_TIMEOUT_S,
        ),
        # adapt_weight 0: the documents' items are years old, and the adaptive
        # rate would move every feed to hours; the bench wants its interval.
        polling=PollingSettings(adapt_weight=0.0),
        extraction=ExtractionSettings()
        if args.parse_workers is None
        else ExtractionSettings(parse_workers=args.parse_workers),
        shutdown_deadline_s=5.0,
        rules=(str(rules_dir / "*.yaml"),),
        feed_files=(),
        feeds=feeds,
    )


def seed_state(redis_url: str, args: argparse.Namespace, checks: list[DocCheck], port: int) -> int:
    """Every feed as if polled once: its ETag, known, its items seen."""
    naddrs = math.ceil(args.feeds / args.feeds_per_address)
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    canon = address(0)
    now = time.time()
    members = 0
    try:
        for start in range(0, args.feeds, 500):
            pipe = client.pipeline(transaction=False)
            for n in range(start, min(start + 500, args.feeds)):
                name = f"f{n:05d}"
                check = checks[n % len(checks)]
                pipe.hset(keys.SERVER.feed_state(name), mapping={
                    "known": "1", "etag": f'"{n}-0"', "last_outcome": "not_modified",
                    "last_status": "200", "errors": "0"})  # fmt: skip
                host = address(n % naddrs)
                ids = [seed_identity(i, host, n, canon, port) for i in check.gen0_ids]
                if ids:
                    pipe.zadd(keys.SERVER.seen(name), dict.fromkeys(ids, now))
                    members += len(ids)
            pipe.execute()
    finally:
        client.close()
    return members


async def run_daemon(
    args: argparse.Namespace,
    cfg: Config,
    redis_url: str,
    server: ServerHandle,
    exclude: set[int],
    redis_pid: int,
) -> tuple[list[PhaseResult], Sampler, dict[str, int]]:
    ruleset = load_rules(cfg.rule_files())
    results: list[PhaseResult] = []
    sampler = Sampler(exclude, redis_pid)
    stop_sampling = asyncio.Event()
    async with open_app(cfg, redis_url, ruleset) as app:
        daemon = Daemon(app)
        sampler.daemon = daemon
        task = asyncio.create_task(daemon.run())
        for _ in range(200):
            if daemon.scheduler.running or task.done():
                break
            await asyncio.sleep(0.05)
        sampling = asyncio.create_task(sampler.run(stop_sampling))
        call = asyncio.to_thread
        try:
            drained: tuple[float, bool] | None = None
            for name, mode in PHASES:
                seconds = WARM_IN_S if name == "warm-in" else args.seconds * SHARES[name]
                await call(server.call, "mode", mode)
                before = await call(snapshot, daemon, server, exclude, redis_pid)
                sampler.reset()
                prof = cProfile.Profile() if args.profile == name else None
                if prof:
                    prof.enable()
                await asyncio.wait({task}, timeout=seconds)  # early only if the daemon ends
                if name == "200" and not task.done():
                    drained = await drain(daemon, args.drain_seconds)
                if prof:
                    prof.disable()
                after = await call(snapshot, daemon, server, exclude, redis_pid)
                if name != "warm-in":
                    results.append(diff(name, before, after, sampler))
                if name == "200" and results:
                    results[-1].drain = drained
                if prof:
                    print(f"\n--- cProfile of the daemon's event loop, phase {name} ---")
                    pstats.Stats(prof).sort_stats("tottime").print_stats(30)
                if task.done():
                    break
        finally:
            daemon.stopping.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(task), timeout=30)
            if not task.done():
                task.cancel()
                await asyncio.wait({task}, timeout=10)
            stop_sampling.set()
            await sampling
        if task.done() and not task.cancelled() and task.exception():
            raise RuntimeError("the daemon failed") from task.exception()
        peak = dict(app.pipeline.hosts.peak)
        worst = max(peak.values(), default=0)
        limiter = {"max": worst, "hosts": len(peak),
                   "per_host": app.pipeline.hosts.per_host}  # fmt: skip
    return results, sampler, limiter


# ----------------------------------------------------------------- naive


def naive(conn: Connection, urls: list[str], seconds: float) -> None:
    """The baseline: urllib + feedparser, one feed at a time, no caching."""
    import feedparser

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never a proxy
    polls = errors = 0
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.monotonic()
    end = t0 + seconds
    i = 0
    while time.monotonic() < end and i < 1_000_000:
        url = urls[i % len(urls)]
        i += 1
        try:
            with opener.open(url, timeout=CLIENT_TIMEOUT_S) as resp:
                body = resp.read()
            feedparser.parse(body)
            polls += 1
        except OSError:
            errors += 1
    wall = time.monotonic() - t0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    conn.send({"polls": polls, "errors": errors, "seconds": wall, "cpu": cpu,
               "rss_mb": r1.ru_maxrss / 1024})  # fmt: skip


def run_naive(urls: list[str], seconds: float) -> dict[str, float]:
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=naive, args=(child, urls, seconds), daemon=True, name="bench-naive")
    proc.start()
    child.close()
    try:
        if not parent.poll(seconds + 60):
            raise RuntimeError("the naive baseline did not finish")
        result: dict[str, float] = parent.recv()
        return result
    finally:
        proc.join(10)
        if proc.is_alive():
            proc.kill()
            proc.join(5)


# ----------------------------------------------------------------- report


def per_k(cpu: float, polls: float) -> str:
    return f"{1000 * cpu / polls:.2f}" if polls else "-"


def print_table(results: list[PhaseResult], base: dict[str, float]) -> None:
    head = (f"{'path':<16} {'polls':>7} {'polls/s':>8} {'CPU s/1k':>9} {'(main)':>7} "
            f"{'redis s/1k':>10} {'peak RSS MB':>11} {'(PSS)':>6}  outcomes")  # fmt: skip
    print(head)
    print("-" * len(head))
    for r in results:
        outcome = ", ".join(f"{k} {v:.0f}" for k, v in r.polls.items() if v)
        print(f"{r.name:<16} {r.total:>7.0f} {r.total / r.seconds:>8.1f} "
              f"{per_k(r.cpu, r.total):>9} {per_k(r.extra['main_cpu'], r.total):>7} "
              f"{per_k(r.redis_cpu, r.total):>10} "
              f"{r.peak_rss_mb:>11.0f} {r.peak_pss_mb:>6.0f}  {outcome}")  # fmt: skip
    nps = base["polls"] / base["seconds"] if base["seconds"] else 0.0
    print(f"{'naive baseline':<16} {base['polls']:>7.0f} {nps:>8.1f} "
          f"{per_k(base['cpu'], base['polls']):>9} {'':>7} {'-':>10} {base['rss_mb']:>11.0f} "
          f"{'':>6}  200 {base['polls']:.0f}, errors {base['errors']:.0f}")  # fmt: skip
    for r in results:
        rate = r.total / r.seconds if r.seconds else 0.0
        ours_k = r.cpu / r.total if r.total else math.inf
        base_k = base["cpu"] / base["polls"] if base["polls"] else math.inf
        print(f"{'ratio ' + r.name + '/naive':<16} polls/s x{rate / nps if nps else 0:.1f}, "
              f"CPU per poll x{ours_k / base_k:.2f} (below 1: cheaper than naive)")  # fmt: skip


def print_setup(args: argparse.Namespace, checks: list[DocCheck], naddrs: int, port: int) -> None:
    print(f"feeds {args.feeds} on {naddrs} addresses {address(0)}..{address(naddrs - 1)} "
          f"port {port} ({args.feeds_per_address} per address, feed n on address n mod "
          f"{naddrs}); interval {INTERVAL_S:g} s, http.concurrency {args.concurrency}, "
          f"per-host 2 in flight / 1.0 s spacing (defaults), allowed_networks {NET}, "
          f"client timeout "
          f"{CLIENT_TIMEOUT_S:g} s; Redis pool max_connections "
          f"{args.redis_max_connections or 'as shipped (redis-py default 100)'}"
          f"{'; EXPERIMENT gc.freeze()' if args.gc_freeze else ''}"
          f"{f'; EXPERIMENT gc threshold {args.gc_threshold}' if args.gc_threshold else ''}"
          f"{'' if args.parse_workers is None else f'; parse_workers {args.parse_workers}'}"
          )  # fmt: skip
    sizes = [c.template.size for c in checks]
    print(f"documents: {len(checks)} real feeds, {min(sizes)}-{max(sizes)} bytes, "
          f"{min(c.entries for c in checks)}-{max(c.entries for c in checks)} entries; "
          f"new items per 200: {sorted({c.new_per_200 for c in checks})}; every entry link "
          f"parsed with monitor.feedparse and checked inside {NET}")  # fmt: skip
    for c in checks:
        if c.note:
            print(f"  note {c.template.name}: {c.note}")
    classes = {name: sum(feed_class(n) == name for n in range(args.feeds)) for name, _ in CLASSES}
    print(f"mixed phase feed classes: {classes}, the rest normal (304, or a 200 with "
          f"{NEW_PER_200} new items with p={args.p_new}); article links answered with a small "
          f"HTML page")  # fmt: skip


def print_mix(results: list[PhaseResult]) -> None:
    print("\nserver answers per phase (the mix):")
    for r in results:
        total = sum(r.server.values()) or 1
        mix = ", ".join(f"{k} {v} ({100 * v / total:.1f}%)" for k, v in r.server.items() if v)
        print(f"  {r.name:<6} {mix}")
        drain = ""
        if r.drain:
            drain = (f" (of which {r.drain[0]:.1f} s draining the polls handed out, tick "
                     f"paused{'' if r.drain[1] else '; NOT finished: a lower bound'})")  # fmt: skip
        x = r.extra
        print(f"         entries processed {r.entries:.0f}, alerts {r.alerts}, daemon's "
              f"Redis errors {r.redis_errors:.0f}, {r.seconds:.1f} s{drain}")  # fmt: skip
        print(f"         new TCP connections to the server {x['connections']:.0f}; the daemon "
              f"process spent {x['gc_s']:.2f} CPU s in {x['gc_n']:.0f} GC runs "
              f"({x['gc2_s']:.2f} s in {x['gc2_n']:.0f} full collections) of "
              f"{x['main_cpu']:.1f} CPU s")  # fmt: skip
        rate = r.total / r.seconds if r.seconds else 0.0
        if rate:
            print(f"         polls in flight on average {r.mean_inflight:.0f}: a poll takes "
                  f"{r.mean_inflight / rate:.2f} s on average (Little's law)")  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--feeds", type=int, default=10_000)
    ap.add_argument("--seconds", type=float, default=30.0,
                    help="measured daemon time, split 40/30/30 over 304/mixed/200")  # fmt: skip
    ap.add_argument("--naive-seconds", type=float, default=20.0)
    ap.add_argument("--drain-seconds", type=float, default=90.0,
                    help="after the 200 phase, wait at most this long for its polls")  # fmt: skip
    ap.add_argument("--feeds-per-address", type=int, default=4)
    ap.add_argument("--concurrency", type=int, default=200, help="http.concurrency (max 1000)")
    ap.add_argument("--p-new", type=float, default=0.02)
    ap.add_argument("--profile", choices=["304", "mixed", "200"], default=None,
                    help="cProfile the event loop during this phase")  # fmt: skip
    ap.add_argument("--feeds-dir", type=Path, default=FEEDS_DIR)
    ap.add_argument("--redis-max-connections", type=int, default=None,
                    help="pass max_connections in the Redis URL (redis-py's pool "
                    "default is 100 and fails beyond it); default: as shipped")  # fmt: skip
    ap.add_argument("--gc-freeze", action="store_true",
                    help="experiment: gc.freeze() before the daemon starts (not what "
                    "the daemon does today)")  # fmt: skip
    ap.add_argument("--gc-threshold", type=int, default=None,
                    help="experiment: gc.set_threshold(N) (generation 0) before the "
                    "daemon starts (the daemon leaves Python's default, 700)")  # fmt: skip
    ap.add_argument("--parse-workers", type=int, default=None,
                    help="experiment: extraction.parse_workers (as shipped: 1)")  # fmt: skip
    ap.add_argument("--keep", action="store_true", help="keep the work dir (daemon log)")
    args = ap.parse_args(argv)
    if not 1 <= args.feeds <= 100_000 or not 0 < args.seconds <= 3600:
        ap.error("--feeds must be in 1..100000 and --seconds in (0, 3600]")
    naddrs = math.ceil(args.feeds / args.feeds_per_address)
    if naddrs > 250 * 256 - 1:
        ap.error("too many addresses")
    deadline = WARM_IN_S + args.seconds + args.drain_seconds + args.naive_seconds + 300
    with contextlib.suppress(ValueError, OSError):
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    workdir = Path(tempfile.mkdtemp(prefix="bench-polling-"))
    started = time.monotonic()
    victims: list[Callable[[], None]] = []

    def too_late() -> None:
        print(f"hard deadline of {deadline:.0f} s reached: stopping", file=sys.stderr)
        for kill in victims:
            with contextlib.suppress(Exception):
                kill()
        os._exit(3)

    timer = threading.Timer(deadline, too_late)
    timer.daemon = True
    timer.start()
    server: ServerHandle | None = None
    rs = RedisServer(workdir / "redis")
    try:
        server = ServerHandle(args.feeds, naddrs, args.p_new, args.feeds_dir)
        sproc = server.proc
        victims.append(sproc.kill)
        addrs = [address(i) for i in range(naddrs)]
        checks = check_templates(load_templates(args.feeds_dir), addrs, server.port)
        bad = [c for c in checks if not c.ok]
        for c in bad:
            print(f"excluded {c.template.name}: {c.note}")
        checks = [c for c in checks if c.ok]
        if len(checks) != len(load_templates(args.feeds_dir)):
            # The server serves every document: refuse rather than leak a link.
            raise SystemExit("a document failed its check; nothing was polled")
        rs.start()
        assert rs.proc is not None
        rproc = rs.proc
        victims.append(rproc.kill)
        url = rs.url
        if args.redis_max_connections:
            url += f"?max_connections={args.redis_max_connections}"
        cfg = make_config(args, workdir, url, server.port)
        members = seed_state(rs.url, args, checks, server.port)
        print_setup(args, checks, naddrs, server.port)
        print(f"redis seeded: {args.feeds} feed states, {members} seen items; "
              f"setup took {time.monotonic() - started:.1f} s")  # fmt: skip
        handler = logging.FileHandler(workdir / "daemon.log", encoding="utf-8")
        handler.setFormatter(KeyValueFormatter(journald=False))
        root = logging.getLogger()
        root.handlers[:] = [handler]
        root.setLevel(logging.INFO)
        for noisy in ("apscheduler", "trafilatura", "htmldate", "courlan", "watchfiles"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
        exclude = {server.proc.pid or -1, rproc.pid}
        gc.callbacks.append(GC)
        if args.gc_freeze:
            gc.collect()
            gc.freeze()
        if args.gc_threshold:
            gc.set_threshold(args.gc_threshold, *gc.get_threshold()[1:])
        print(f"objects tracked by the GC in the daemon's process before it starts: "
              f"{len(gc.get_objects())} (+{gc.get_freeze_count()} frozen)")  # fmt: skip
        results, sampler, limiter = asyncio.run(
            run_daemon(args, cfg, url, server, exclude, rproc.pid)
        )
        root.handlers[:] = []
        handler.close()
        server.call("mode", "304")  # unconditional GETs get the full document
        sample = [f.url for f in cfg.feeds if feed_class(int(f.url.rsplit("/", 1)[1])) != "hang"]
        base = run_naive(sample[:2000], args.naive_seconds)
        stats = server.stop()
        print()
        print_table(results, base)
        print_mix(results)
        lines = sum(1 for _ in (workdir / "daemon.log").open(encoding="utf-8"))
        print(f"\npeak RSS of the daemon tree over the run: {sampler.overall_rss:.0f} MB "
              f"(PSS {sampler.overall_pss:.0f} MB); redis-server peak RSS "
              f"{sampler.redis_rss:.0f} MB; daemon log {lines} lines at INFO")  # fmt: skip
        parts = ", ".join(f"{r} {mb:.0f}" for _pid, r, mb in sampler.at_peak)
        print(f"  at the peak, RSS MB per process: {parts}")
        print(f"per-host limit {limiter['per_host']}: server saw at most "
              f"{stats.get('max_inflight')} requests in flight on one address "
              f"({stats.get('max_addr')}); levels reached {stats.get('levels')}; the daemon's "
              f"HostLimiter peak {limiter['max']} over {limiter['hosts']} hosts")  # fmt: skip
        print(f"total wall time {time.monotonic() - started:.0f} s")
        return 0
    finally:
        timer.cancel()
        if server is not None and server.proc.is_alive():
            server.stop()
        rs.stop()
        if args.keep:
            print(f"work dir kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
