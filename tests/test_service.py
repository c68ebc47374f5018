"""The daemon's side of the systemd contract, with a notify socket we own.

The daemon runs as a real subprocess with $NOTIFY_SOCKET pointing at a
datagram socket bound by the test, like systemd does it.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import fcntl
import os
import signal
import socket
import sys
import termios
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
import redis.asyncio as aioredis

from monitor import keys
from tests.conftest import ROOT
from tests.servers import NewsSite, free_port, page, rss

EXE = str(Path(sys.executable).parent / "feed-monitor")
SEED_TITLE, _, SEED_BODY = (ROOT / "seeds" / "000_79a58b876351234c.txt").read_text().partition("\n")


Msg = dict[str, str]


class NotifySocket:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.setblocking(False)
        self.messages: list[dict[str, str]] = []

    async def next(
        self, key: str, value: str | None = None, within_s: float = 20
    ) -> dict[str, str]:
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(within_s):
            while True:
                data = await loop.sock_recv(self.sock, 4096)
                msg = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
                self.messages.append(msg)
                if key in msg and (value is None or msg[key] == value):
                    return msg

    def close(self) -> None:
        self.sock.close()


async def eventually(probe: Callable[[], Awaitable[int]], at_least: int) -> None:
    """Poll ``probe`` (bounded: 400 tries, 20 s) until it reaches ``at_least``."""
    for _ in range(400):
        if await probe() >= at_least:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"never reached {at_least}")


async def stream_len(url: str) -> int:
    client = aioredis.Redis.from_url(url)
    try:
        return await client.xlen(keys.SERVER.alert_stream)
    finally:
        await client.aclose()


def open_files_limits(pid: int) -> tuple[str, str]:
    """The (soft, hard) limit on open files of ``pid``, as /proc shows them."""
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return soft, hard
    raise AssertionError(f"no open files limit for pid {pid}")


def descendants(pid: int) -> list[int]:
    """Every process under ``pid`` (the forkserver, the pool workers, ...)."""
    found, todo = [], [pid]
    while todo:
        for kids in Path(f"/proc/{todo.pop()}/task").glob("*/children"):
            with contextlib.suppress(OSError):  # a thread or process just ended
                pids = [int(k) for k in kids.read_text().split()]
                todo.extend(pids)
                found.extend(pids)
    return found


def has_loaded(pid: int, library: str) -> bool:
    return library in Path(f"/proc/{pid}/maps").read_text()


async def test_notify_watchdog_reload_metrics_and_graceful_stop(
    tmp_path: Path, redis_url: str, site: tuple[NewsSite, str]
) -> None:
    news, base = site
    paras = [p for p in SEED_BODY.split("\n\n") if p.strip()]
    news.put_page("/seed.html", page(SEED_TITLE, paras, lang="nb"))
    news.put_feed("/feed.xml", rss([{"title": SEED_TITLE, "link": f"{base}/seed.html",
                                     "guid": "seed"}]))  # fmt: skip
    port = free_port()
    cfg = tmp_path / "monitor.yaml"
    cfg.write_text(
        f"state_dir: st\nrules: ['{ROOT}/config/rules/*.yaml']\n"
        f"redis: {{url: '{redis_url}'}}\n"
        "http: {allow_private_addresses: true, "
        "per_host_spacing_s: 0, per_host_concurrency: 16, timeout_s: 10}\n"
        "extraction: {workers: 1}\n"
        f"metrics: {{listen: '127.0.0.1:{port}'}}\nshutdown_deadline_s: 15\n"
        f"feeds:\n  - {{name: news, url: '{base}/feed.xml', interval_s: 1}}\n"
    )
    notify = NotifySocket(tmp_path / "notify.sock")
    env = {"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "1000000", "PATH": "/usr/bin:/bin"}
    # Started from a shell with a low soft limit on open files, as a user's may be.
    proc = await asyncio.create_subprocess_exec(
        "/bin/sh", "-c", 'ulimit -S -n 256 && exec "$0" "$@"', EXE, "run", "--config", str(cfg),
        env=env, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        ready = await notify.next("READY", "1")
        assert "rules" in ready["STATUS"]
        # The daemon raised it to the hard limit.
        soft, hard = open_files_limits(proc.pid)
        assert soft == hard != "256"
        # Readiness means Redis answers and the rules are loaded.
        assert await stream_len(redis_url) >= 0
        watchdogs = 0
        while watchdogs < 3:
            await notify.next("WATCHDOG", "1", within_s=5)
            watchdogs += 1
        await eventually(lambda: stream_len(redis_url), 1)
        # The extraction workers run the command's script again on start
        # (multiprocessing's spawn): it must not drag in the CLI.
        below = descendants(proc.pid)
        assert [p for p in below if has_loaded(p, "lxml/etree")], "no extraction worker"
        assert has_loaded(proc.pid, "_pydantic_core")
        assert has_loaded(proc.pid, "uvloop/loop"), "not on uvloop, the default event loop"
        assert not [p for p in below if has_loaded(p, "_pydantic_core")]
        statuses = [(await notify.next("STATUS"))["STATUS"] for _ in range(3)]
        assert any("1 alerts today" in st for st in statuses)

        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/metrics") as resp:
                metrics = await resp.text()
            async with http.get(f"http://127.0.0.1:{port}/healthz") as resp:
                assert resp.status == 200
        assert 'feed_monitor_polls_total{outcome="ok"}' in metrics
        assert 'feed_monitor_alerts_total{rule="sino-russian-military"} 1.0' in metrics
        assert "feed_monitor_rules_loaded 1.0" in metrics

        proc.send_signal(signal.SIGHUP)
        await notify.next("RELOADING", "1")
        await notify.next("READY", "1")

        # A poll in flight (slow page) when SIGTERM arrives is finished first.
        news.put_page("/slow.html", page(SEED_TITLE + " II", paras, lang="nb"))
        news.resources["/slow.html"].delay_s = 3.0
        news.put_feed("/feed.xml", rss([
            {"title": SEED_TITLE, "link": f"{base}/seed.html", "guid": "seed"},
            {"title": SEED_TITLE + " II", "link": f"{base}/slow.html", "guid": "slow"},
        ]))  # fmt: skip
        await eventually(lambda: asyncio.sleep(0, news.hits.get("/slow.html", 0)), 1)
        proc.send_signal(signal.SIGTERM)
        await notify.next("STOPPING", "1")
        assert await asyncio.wait_for(proc.wait(), timeout=30) == 0
        assert await stream_len(redis_url) == 2  # the in-flight story was delivered
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        notify.close()


async def test_a_wedged_event_loop_stops_the_watchdog_pings(
    tmp_path: Path, redis_url: str, site: tuple[NewsSite, str]
) -> None:
    """The watchdog pings come from the event loop itself: when it is stuck
    (the test hook blocks it one second after READY), they stop though the
    process and its threads live on, so systemd would kill and restart it.
    (systemd/boot-check.sh shows that part under the real systemd.)"""
    _news, base = site
    cfg = tmp_path / "monitor.yaml"
    cfg.write_text(
        f"state_dir: st\nrules: ['{ROOT}/config/rules/*.yaml']\n"
        f"redis: {{url: '{redis_url}'}}\nhttp: {{allow_private_addresses: true}}\n"
        "extraction: {workers: 1}\n"
        f"feeds:\n  - {{name: news, url: '{base}/feed.xml', interval_s: 60}}\n"
    )
    notify = NotifySocket(tmp_path / "notify.sock")
    env = {"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "400000", "PATH": "/usr/bin:/bin",
           "FEED_MONITOR_TEST_WEDGE_S": "1"}  # fmt: skip
    proc = await asyncio.create_subprocess_exec(
        EXE, "run", "--config", str(cfg), env=env, stderr=asyncio.subprocess.DEVNULL
    )
    try:
        await notify.next("READY", "1")
        await notify.next("WATCHDOG", "1", within_s=2)  # pinging, every 0.2 s
        await asyncio.sleep(1.5)  # wedged by now
        while True:  # what was sent before the wedge
            try:
                notify.sock.recv(4096)
            except BlockingIOError:
                break
        with pytest.raises(TimeoutError):
            await notify.next("WATCHDOG", "1", within_s=3)
        assert proc.returncode is None  # alive, and silent: systemd's cue
    finally:
        proc.kill()
        await proc.wait()
        notify.close()


async def test_a_stderr_nobody_reads_does_not_stop_the_daemon(
    tmp_path: Path, redis_url: str
) -> None:
    """Its log lines go to a pipe of 4 KB that nobody reads (a stalled log
    collector): the first couple of dozen fill it. The daemon still polls
    every feed and its event loop still pings the watchdog; a thread, not
    the loop, waits on stderr. It stops on SIGTERM all the same."""
    feeds = 300  # each fails to connect: a warning line apiece, 50 KB in all
    closed = free_port()
    listed = "".join(
        f"  - {{name: f{i}, url: 'http://127.0.0.1:{closed}/{i}.xml', interval_s: 3600}}\n"
        for i in range(feeds)
    )
    cfg = tmp_path / "monitor.yaml"
    cfg.write_text(
        f"state_dir: st\nrules: ['{ROOT}/config/rules/*.yaml']\n"
        f"redis: {{url: '{redis_url}'}}\n"
        "http: {allow_private_addresses: true, per_host_spacing_s: 0, per_host_concurrency: 64}\n"
        f"extraction: {{workers: 1}}\ncluster: {{heartbeat_s: 0.2}}\nfeeds:\n{listed}"
    )
    notify = NotifySocket(tmp_path / "notify.sock")
    env = {"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "400000", "PATH": "/usr/bin:/bin"}
    read_end, write_end = os.pipe()
    fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, 4096)
    stderr = os.fdopen(read_end, "rb")
    proc = await asyncio.create_subprocess_exec(
        EXE, "run", "--config", str(cfg), env=env, stderr=write_end
    )
    os.close(write_end)
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)

    async def polls() -> int:
        ids = await client.smembers(keys.SERVER.daemons)
        done = [await client.hget(keys.SERVER.daemon(str(i)), "polls") for i in ids]
        return sum(int(n or 0) for n in done)

    try:
        await notify.next("READY", "1")
        await eventually(polls, feeds)  # every feed polled, its failure logged
        assert pipe_bytes(stderr.fileno()) >= 4096 - 256  # and the pipe full long since
        for _ in range(3):  # the loop still pings, every 0.2 s
            await notify.next("WATCHDOG", "1", within_s=1)
        proc.send_signal(signal.SIGTERM)
        reader = asyncio.create_task(asyncio.to_thread(stderr.read))  # to the end: all exited
        assert await asyncio.wait_for(proc.wait(), 30) == 0
        log = (await reader).decode()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await client.aclose()
        notify.close()
        stderr.close()
    assert "daemon.started" in log
    assert log.count("feed.failed") == feeds  # all written in the end: none lost


def pipe_bytes(fd: int) -> int:
    """Bytes waiting in a pipe."""
    waiting = array.array("i", [0])
    fcntl.ioctl(fd, termios.FIONREAD, waiting)
    return waiting[0]
