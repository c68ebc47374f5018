"""Real servers for tests: a redis-server on a free port, and a small news
site (aiohttp) that serves feeds and article pages on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import random
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import redis
import redis.asyncio as aioredis
from aiohttp import web
from redis.asyncio.client import PubSub

from monitor import keys
from monitor.alerts import Alert
from monitor.embedded_redis import find_redis_server


async def first_message(pubsub: PubSub, tries: int = 50) -> dict[str, Any]:
    """The first pub/sub message (bounded: ``tries`` waits of 0.1 s)."""
    for _ in range(tries):
        msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
        if msg:
            return cast(dict[str, Any], msg)
    raise AssertionError("no message arrived")


async def stream_entries(url: str) -> list[dict[str, str]]:
    """The fields of every entry in the alert stream, oldest first."""
    client = aioredis.Redis.from_url(url, decode_responses=True)
    try:
        rows = cast(list[tuple[str, dict[str, str]]], await client.xrange(keys.SERVER.alert_stream))
    finally:
        await client.aclose()
    return [fields for _id, fields in rows]


async def stream_alerts(url: str) -> list[Alert]:
    """Every alert in the alert stream, oldest first."""
    return [Alert.from_json(fields["alert"]) for fields in await stream_entries(url)]


# Ports for test servers come from below Linux's ephemeral range (32768 and
# up), where outgoing connections take their source ports: a port picked
# there could be taken by one of the suite's thousands of connections before
# its server binds it ("address already in use", now and then).
_PORTS = range(10_000, 32_768)
_handed_out: set[int] = set()  # never the same port twice in one run


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_ports(offsets: tuple[int, ...]) -> int:
    """A port p such that p + each offset is free and was never handed out."""
    for _ in range(1000):  # bounded
        port = random.choice(_PORTS)
        wanted = {port + o for o in offsets}
        if wanted & _handed_out or max(wanted) not in _PORTS:
            continue
        if all(_bindable(p) for p in wanted):
            _handed_out.update(wanted)
            return port
    raise RuntimeError("no free port below the ephemeral range")


def free_port() -> int:
    return _free_ports((0,))


class RedisServer:
    """A throwaway redis-server; ``stop``/``start`` simulate outages."""

    def __init__(
        self, workdir: Path, *, persist: bool = False, replica_of: int | None = None
    ) -> None:
        self.workdir = workdir
        self.persist = persist  # AOF on, so data survives stop/start
        self.replica_of = replica_of  # the master's port, for a replica
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [find_redis_server(), "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "yes" if self.persist else "no",
             "--appendfsync", "always", "--dir", str(self.workdir),
             *(["--replicaof", "127.0.0.1", str(self.replica_of)] if self.replica_of else [])],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                client = redis.Redis(port=self.port, socket_timeout=0.5)
                client.ping()
                client.close()
                return
            except redis.RedisError:
                time.sleep(0.05)
        raise RuntimeError("test redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None

    def kill(self) -> None:
        """SIGKILL: a crash, with no chance to write anything more."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None


def free_cluster_port() -> int:
    """A free port whose cluster-bus port (+10000) is free too."""
    return _free_ports((0, 10_000))


class RedisClusterServers:
    """A real Redis Cluster of three masters on 127.0.0.1, with the 16384
    slots split between them, and ``replicas`` replicas of each master."""

    SLOTS = 16384

    def __init__(
        self,
        workdir: Path,
        nodes: int = 3,
        *,
        persist: bool = False,
        replicas: int = 0,
        node_timeout_ms: int = 5000,
    ) -> None:
        self.workdir = workdir
        self.persist = persist  # AOF on, so a node's data survives stop_node/start_node
        self.node_timeout_ms = node_timeout_ms
        self.ports = [free_cluster_port() for _ in range(nodes)]  # the masters at start
        self.replica_ports = [free_cluster_port() for _ in range(nodes * replicas)]
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.ports)

    def start_node(self, port: int) -> None:
        """Start (or restart: nodes.conf remembers its slots) one node."""
        node_dir = self.workdir / str(port)
        node_dir.mkdir(parents=True, exist_ok=True)
        self.procs[port] = subprocess.Popen(
            [find_redis_server(), "--port", str(port), "--bind", "127.0.0.1",
             "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
             "--cluster-node-timeout", str(self.node_timeout_ms), "--save", "",
             "--appendonly", "yes" if self.persist else "no", "--appendfsync", "everysec",
             "--dir", str(node_dir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip

    def stop_node(self, port: int) -> None:
        proc = self.procs.pop(port)
        proc.terminate()
        proc.wait(timeout=10)

    def kill_node(self, port: int) -> None:
        """SIGKILL: a crash, with no chance to write anything more."""
        proc = self.procs.pop(port)
        proc.kill()
        proc.wait(timeout=10)

    def wait_ok(self) -> None:
        """Until every running node says the cluster is ok (bounded: 20 s)."""
        for port in self.procs:
            with redis.Redis(port=port, socket_timeout=2) as c:
                _until(lambda c=c: c.execute_command("CLUSTER INFO")["cluster_state"] == "ok")

    def start(self) -> None:
        for port in [*self.ports, *self.replica_ports]:
            self.start_node(port)
        clients = [redis.Redis(port=p, socket_timeout=2) for p in self.ports]
        everyone = [*self.ports, *self.replica_ports]
        try:
            for c in clients:
                _until(c.ping)
            share = -(-self.SLOTS // len(clients))
            for i, c in enumerate(clients):
                slots = range(i * share, min(self.SLOTS, (i + 1) * share))
                c.execute_command("CLUSTER ADDSLOTS", *slots)  # type: ignore[no-untyped-call]
            for p in everyone[1:]:
                clients[0].execute_command("CLUSTER MEET", "127.0.0.1", p)  # type: ignore[no-untyped-call]
            masters = [c.execute_command("CLUSTER MYID") for c in clients]  # type: ignore[no-untyped-call]
            for i, port in enumerate(self.replica_ports):
                with redis.Redis(port=port, socket_timeout=2) as r:
                    # It must know its master before it can follow it.
                    _until(lambda r=r: len(r.execute_command("CLUSTER NODES")) >= len(everyone))
                    master = masters[i % len(masters)]
                    _until(lambda r=r, m=master: r.execute_command("CLUSTER REPLICATE", m))
                    _until(lambda r=r: r.info("replication")["master_link_status"] == "up")
        finally:
            for c in clients:
                c.close()
        self.wait_ok()

    def node_of(self, key: str) -> int:
        """The port of the master that holds ``key``'s slot, as the running
        nodes see it (bounded: 20 s until they all agree)."""
        seen: set[int] = set()

        def agreed() -> bool:
            seen.clear()
            for port in self.procs:
                with redis.Redis(port=port, socket_timeout=2) as c:
                    slot = c.execute_command("CLUSTER KEYSLOT", key)
                    for start, end, (_host, master, *_), *_rest in c.execute_command(
                        "CLUSTER SLOTS"
                    ):
                        if start <= slot <= end:
                            seen.add(int(master))
            return len(seen) == 1 and next(iter(seen)) in self.procs

        _until(agreed)
        return next(iter(seen))

    def flush(self) -> None:
        for p in self.ports:
            with redis.Redis(port=p, socket_timeout=2) as c:
                c.flushall()

    def stop(self) -> None:
        for port in list(self.procs):
            self.stop_node(port)


def _until(check: Any, within_s: float = 20) -> None:
    """Bounded wait until ``check()`` is true and raises no Redis error."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except redis.RedisError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"test Redis Cluster not ready within {within_s} s")


@dataclass
class Resource:
    body: bytes
    content_type: str
    etag: str | None = None
    status: int = 200
    delay_s: float = 0.0  # answer this much later (a slow server)


@dataclass
class NewsSite:
    """Serves whatever tests put in ``resources``, counting every request."""

    resources: dict[str, Resource] = field(default_factory=dict)
    hits: dict[str, int] = field(default_factory=dict)
    conditional_hits: dict[str, int] = field(default_factory=dict)

    def put_feed(self, path: str, xml: str, etag: str | None = None) -> None:
        self.resources[path] = Resource(xml.encode(), "application/rss+xml; charset=utf-8", etag)

    def put_page(self, path: str, html: str) -> None:
        self.resources[path] = Resource(html.encode(), "text/html; charset=utf-8")

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        self.hits[path] = self.hits.get(path, 0) + 1
        res = self.resources.get(path)
        if res is None:
            return web.Response(status=404, text="not found")
        if res.delay_s:
            await asyncio.sleep(res.delay_s)
        if res.etag and request.headers.get("If-None-Match") == res.etag:
            self.conditional_hits[path] = self.conditional_hits.get(path, 0) + 1
            return web.Response(status=304, headers={"ETag": res.etag})
        headers = {"ETag": res.etag} if res.etag else {}
        return web.Response(
            status=res.status, body=res.body, content_type=res.content_type.split(";")[0],
            charset="utf-8" if "charset" in res.content_type else None, headers=headers,
        )  # fmt: skip

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", self.handle)
        return app


def rss(items: list[dict[str, str]], title: str = "Test feed") -> str:
    """An RSS 2.0 document from item dicts (title, link, guid, description, pubDate)."""
    parts = []
    for it in items:
        fields = "".join(
            f"<{k}>{v}</{k}>"
            for k, v in it.items()
            if k in {"title", "link", "guid", "description", "pubDate"}
        )
        parts.append(f"<item>{fields}</item>")
    return (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
        f"<title>{title}</title><link>http://example.invalid/</link>"
        f"{''.join(parts)}</channel></rss>"
    )


def page(title: str, paragraphs: list[str], lang: str = "en") -> str:
    body = "".join(f"<p>{p}</p>" for p in paragraphs)
    return (
        f'<!DOCTYPE html><html lang="{lang}"><head><meta charset="utf-8"><title>{title}</title>'
        f"</head><body><nav><a href='/'>Home</a></nav><main><article><h1>{title}</h1>{body}"
        "</article></main><footer>Test site</footer></body></html>"
    )
