"""monitor.fetch against real aiohttp servers on 127.0.0.1.

Nothing here connects anywhere but 127.0.0.1. Tests that name other
addresses (10.0.0.1, 169.254.169.254, ...) run with a session carrying a
tripwire that fails the test if a request to any other host is even started,
so a broken guard shows up as a failure, never as a packet on the network.
"""

from __future__ import annotations

import asyncio
import gzip
import os
import socket
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from email.utils import formatdate
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.test_utils import TestServer

from monitor import fetch as fetch_mod
from monitor.errors import FetchError
from monitor.fetch import (
    BlockedAddress,
    FetchResult,
    GuardedResolver,
    HttpLimits,
    fetch,
    is_blocked_address,
    make_session,
)
from tests.servers import free_port

ETAG = '"feed-v7"'
LAST_MODIFIED = "Tue, 04 Mar 2025 08:15:00 GMT"
FEED_BODY = b"<rss version='2.0'><channel><title>Harbour news</title></channel></rss>"
PUBLIC_NAME = "news.example"  # resolved to 127.0.0.1 by the test resolver only


def limits(
    *,
    allow_private: bool = True,
    timeout_s: float = 5.0,
    max_redirects: int = 5,
) -> HttpLimits:
    return HttpLimits(
        user_agent="feed-monitor-tests/1.0",
        timeout_s=timeout_s,
        connect_timeout_s=2.0,
        max_redirects=max_redirects,
        allow_private_addresses=allow_private,
    )


@dataclass
class Recorder:
    """What the test server saw."""

    hits: dict[str, int] = field(default_factory=dict)
    headers: dict[str, dict[str, str]] = field(default_factory=dict)
    aborted: list[str] = field(default_factory=list)

    def saw(self, request: web.Request) -> None:
        self.hits[request.path] = self.hits.get(request.path, 0) + 1
        self.headers[request.path] = dict(request.headers)


Handler = Callable[[web.Request], Coroutine[Any, Any, web.StreamResponse]]


def build_app(rec: Recorder) -> web.Application:
    async def feed(request: web.Request) -> web.StreamResponse:
        rec.saw(request)
        if request.headers.get("If-None-Match") == ETAG:
            return web.Response(status=304, headers={"ETag": ETAG})
        if request.headers.get("If-Modified-Since") == LAST_MODIFIED:
            return web.Response(status=304, headers={"Last-Modified": LAST_MODIFIED})
        return web.Response(
            body=FEED_BODY,
            content_type="application/rss+xml",
            headers={"ETag": ETAG, "Last-Modified": LAST_MODIFIED},
        )

    async def status(request: web.Request) -> web.StreamResponse:
        rec.saw(request)
        return web.Response(status=int(request.match_info["code"]), text="status page")

    async def hop(request: web.Request) -> web.StreamResponse:
        """/hop/N redirects to /hop/N-1 (cycling through every redirect code)."""
        rec.saw(request)
        n = int(request.match_info["n"])
        if n == 0:
            return web.Response(text="arrived")
        code = (301, 302, 303, 307, 308)[n % 5]
        # Relative Location: must be resolved against the current URL.
        return web.Response(status=code, headers={"Location": f"../hop/{n - 1}"})

    async def loop(request: web.Request) -> web.StreamResponse:
        rec.saw(request)
        return web.Response(status=302, headers={"Location": "/loop"})

    async def goto(request: web.Request) -> web.StreamResponse:
        rec.saw(request)
        return web.Response(status=302, headers={"Location": request.query["to"]})

    async def sized(request: web.Request) -> web.StreamResponse:
        rec.saw(request)
        return web.Response(body=b"x" * int(request.query["n"]))

    async def chunked(request: web.Request) -> web.StreamResponse:
        """n bytes in 8 KiB chunks with no Content-Length."""
        rec.saw(request)
        n = int(request.query["n"])
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        try:
            sent = 0
            while sent < n:
                piece = min(8192, n - sent)
                await resp.write(b"y" * piece)
                sent += piece
            await resp.write_eof()
        except (ConnectionError, aiohttp.ClientConnectionResetError):
            rec.aborted.append(request.path)
        return resp

    async def gz(request: web.Request) -> web.StreamResponse:
        """A gzip-encoded body of n zero bytes (a few KB on the wire)."""
        rec.saw(request)
        payload = gzip.compress(b"\0" * int(request.query["n"]), compresslevel=9)
        if request.query.get("chunked"):
            resp = web.StreamResponse(headers={"Content-Encoding": "gzip"})
            resp.enable_chunked_encoding()
            await resp.prepare(request)
            try:
                for i in range(0, len(payload), 1024):
                    await resp.write(payload[i : i + 1024])
                await resp.write_eof()
            except (ConnectionError, aiohttp.ClientConnectionResetError):
                rec.aborted.append(request.path)
            return resp
        return web.Response(body=payload, headers={"Content-Encoding": "gzip"})

    async def slow(request: web.Request) -> web.StreamResponse:
        """Headers at once, then one byte every 50 ms for up to 20 s."""
        rec.saw(request)
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        try:
            for _ in range(400):
                await resp.write(b".")
                await asyncio.sleep(0.05)
            await resp.write_eof()
        except (ConnectionError, aiohttp.ClientConnectionResetError):
            rec.aborted.append(request.path)
        return resp

    async def secret(request: web.Request) -> web.StreamResponse:
        rec.saw(request)
        return web.Response(text="internal admin page")

    app = web.Application()
    routes: list[tuple[str, Handler]] = [
        ("/feed", feed),
        ("/status/{code}", status),
        ("/hop/{n}", hop),
        ("/loop", loop),
        ("/goto", goto),
        ("/sized", sized),
        ("/chunked", chunked),
        ("/gz", gz),
        ("/slow", slow),
        ("/secret", secret),
    ]
    for path, handler in routes:
        app.router.add_get(path, handler)
    return app


@pytest.fixture
async def server() -> AsyncIterator[tuple[Recorder, str, int]]:
    """The test app on 127.0.0.1: (recorder, base URL, port)."""
    rec = Recorder()
    srv = TestServer(build_app(rec), host="127.0.0.1")
    await srv.start_server()
    try:
        assert srv.port is not None
        yield rec, str(srv.make_url("")).rstrip("/"), srv.port
    finally:
        await srv.close()


class MapResolver(AbstractResolver):
    """Resolves only the names it is given (stands in for public DNS)."""

    def __init__(self, names: dict[str, str]) -> None:
        self.names = names
        self.asked: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.asked.append(host)
        if host not in self.names:
            raise OSError(f"test resolver does not know {host}")
        return [
            ResolveResult(
                hostname=host,
                host=self.names[host],
                port=port,
                family=socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
        ]

    async def close(self) -> None:
        return None


class Tripwire(Exception):
    """A request to a host other than 127.0.0.1 or PUBLIC_NAME was started."""


def tripwire_session(
    started: list[str], resolver: AbstractResolver | None = None
) -> aiohttp.ClientSession:
    """A session that records every request start and refuses foreign hosts."""

    async def on_start(
        session: aiohttp.ClientSession,
        ctx: Any,
        params: aiohttp.TraceRequestStartParams,
    ) -> None:
        started.append(str(params.url))
        if params.url.host not in ("127.0.0.1", PUBLIC_NAME):
            raise Tripwire(str(params.url))

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_start)
    connector = aiohttp.TCPConnector(resolver=resolver or MapResolver({}))
    return aiohttp.ClientSession(connector=connector, trace_configs=[trace])


async def get(
    url: str,
    *,
    lim: HttpLimits | None = None,
    max_bytes: int = 1_000_000,
    **kwargs: Any,
) -> FetchResult:
    lim = lim or limits()
    async with make_session(lim, concurrency=4) as session:
        return await fetch(session, url, lim, max_bytes=max_bytes, **kwargs)


async def fetch_error(url: str, **kwargs: Any) -> FetchError:
    with pytest.raises(FetchError) as info:
        await get(url, **kwargs)
    return info.value


# ---------------------------------------------------------------- 200 / 304


async def test_200_returns_body_type_and_validators(server: tuple[Recorder, str, int]) -> None:
    rec, base, _ = server
    res = await get(f"{base}/feed", accept="application/rss+xml")
    assert res.status == 200
    assert not res.not_modified
    assert res.body == FEED_BODY
    assert res.url == f"{base}/feed"
    assert res.content_type is not None
    assert res.content_type.startswith("application/rss+xml")
    assert res.etag == ETAG
    assert res.last_modified == LAST_MODIFIED
    sent = rec.headers["/feed"]
    assert sent["User-Agent"] == "feed-monitor-tests/1.0"
    assert sent["Accept"] == "application/rss+xml"
    assert "If-None-Match" not in sent
    assert "If-Modified-Since" not in sent


async def test_conditional_get_with_etag_gives_not_modified(
    server: tuple[Recorder, str, int],
) -> None:
    rec, base, _ = server
    res = await get(f"{base}/feed", etag=ETAG)
    assert rec.headers["/feed"]["If-None-Match"] == ETAG
    assert res.status == 304
    assert res.not_modified
    assert res.body == b""
    assert res.etag == ETAG


async def test_conditional_get_with_last_modified_gives_not_modified(
    server: tuple[Recorder, str, int],
) -> None:
    rec, base, _ = server
    res = await get(f"{base}/feed", last_modified=LAST_MODIFIED)
    assert rec.headers["/feed"]["If-Modified-Since"] == LAST_MODIFIED
    assert res.not_modified
    assert res.body == b""


async def test_conditional_get_sends_both_validators(server: tuple[Recorder, str, int]) -> None:
    rec, base, _ = server
    res = await get(f"{base}/feed", etag='"stale"', last_modified="Mon, 01 Jan 2024 00:00:00 GMT")
    sent = rec.headers["/feed"]
    assert sent["If-None-Match"] == '"stale"'
    assert sent["If-Modified-Since"] == "Mon, 01 Jan 2024 00:00:00 GMT"
    # Stale validators: the server sends the full document again.
    assert res.status == 200
    assert res.body == FEED_BODY


# ------------------------------------------------------------ status kinds


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        (404, "http_404"),
        (410, "http_410"),
        (429, "http_429"),
        (403, "http_403"),
        (500, "http_5xx"),
        (502, "http_5xx"),
        (503, "http_5xx"),
    ],
)
async def test_http_error_status_kinds(
    server: tuple[Recorder, str, int], code: int, kind: str
) -> None:
    _, base, _ = server
    err = await fetch_error(f"{base}/status/{code}")
    assert err.kind == kind
    assert err.url == f"{base}/status/{code}"
    assert str(code) in err.detail


async def test_connection_refused_is_connect(tmp_path: Path) -> None:
    err = await fetch_error(f"http://127.0.0.1:{free_port()}/feed")
    assert err.kind == "connect"


@pytest.mark.parametrize("url", ["http://[::1/feed", "https://[fe80::1/x?y=1"])
async def test_malformed_url_is_a_fetch_error(url: str) -> None:
    """Feed links are written by strangers: a broken one must not crash a poll."""
    started: list[str] = []
    async with tripwire_session(started) as session:
        with pytest.raises(FetchError) as info:
            await fetch(session, url, limits(), max_bytes=1000)
    assert info.value.kind == "connect"
    assert "invalid URL" in info.value.detail
    assert started == []


async def test_malformed_file_url_is_a_fetch_error() -> None:
    err = await fetch_error("file://[bad/feed.xml", allow_file=True)
    assert err.kind == "connect"


# --------------------------------------------------------------- redirects


async def test_redirect_chain_is_followed_and_final_url_reported(
    server: tuple[Recorder, str, int],
) -> None:
    rec, base, _ = server
    res = await get(f"{base}/hop/5", lim=limits(max_redirects=5))
    assert res.status == 200
    assert res.body == b"arrived"
    assert res.url == f"{base}/hop/0"
    assert [rec.hits.get(f"/hop/{n}") for n in range(6)] == [1] * 6


async def test_conditional_headers_follow_redirects(server: tuple[Recorder, str, int]) -> None:
    rec, base, _ = server
    res = await get(f"{base}/goto?to=/feed", etag=ETAG)
    assert res.not_modified
    assert res.url == f"{base}/feed"
    assert rec.headers["/feed"]["If-None-Match"] == ETAG


async def test_one_redirect_too_many_is_redirect_loop(server: tuple[Recorder, str, int]) -> None:
    _, base, _ = server
    err = await fetch_error(f"{base}/hop/3", lim=limits(max_redirects=2))
    assert err.kind == "redirect_loop"


async def test_redirect_loop(server: tuple[Recorder, str, int]) -> None:
    rec, base, _ = server
    err = await fetch_error(f"{base}/loop", lim=limits(max_redirects=4))
    assert err.kind == "redirect_loop"
    assert rec.hits["/loop"] == 5  # the first request and four redirects, then it stops


async def test_redirect_to_non_http_scheme_is_refused(server: tuple[Recorder, str, int]) -> None:
    _, base, _ = server
    err = await fetch_error(f"{base}/goto?to=file:///etc/passwd")
    assert err.kind == "blocked_address"
    assert err.url == "file:///etc/passwd"


# ------------------------------------------------------------------- caps


async def test_body_at_the_cap_is_accepted(server: tuple[Recorder, str, int]) -> None:
    _, base, _ = server
    res = await get(f"{base}/sized?n=5000", max_bytes=5000)
    assert len(res.body) == 5000


async def test_content_length_over_cap_is_too_large(server: tuple[Recorder, str, int]) -> None:
    _, base, _ = server
    err = await fetch_error(f"{base}/sized?n=5001", max_bytes=5000)
    assert err.kind == "too_large"
    assert "Content-Length" in err.detail


async def test_chunked_body_over_cap_is_too_large(server: tuple[Recorder, str, int]) -> None:
    _, base, _ = server
    err = await fetch_error(f"{base}/chunked?n=300000", max_bytes=100_000)
    assert err.kind == "too_large"
    assert "Content-Length" not in err.detail  # caught while reading, not from the header


async def test_chunked_body_under_cap_is_read_whole(server: tuple[Recorder, str, int]) -> None:
    _, base, _ = server
    res = await get(f"{base}/chunked?n=50000", max_bytes=100_000)
    assert res.body == b"y" * 50000


async def test_gzip_body_is_decompressed(server: tuple[Recorder, str, int]) -> None:
    _, base, _ = server
    res = await get(f"{base}/gz?n=20000", max_bytes=100_000)
    assert res.body == b"\0" * 20000


@pytest.mark.parametrize("chunked", [False, True])
async def test_gzip_bomb_is_too_large(server: tuple[Recorder, str, int], chunked: bool) -> None:
    _, base, _ = server
    url = f"{base}/gz?n=20000000" + ("&chunked=1" if chunked else "")
    err = await fetch_error(url, max_bytes=200_000)
    assert err.kind == "too_large"


async def test_trickling_server_hits_the_total_timeout(server: tuple[Recorder, str, int]) -> None:
    rec, base, _ = server
    err = await fetch_error(f"{base}/slow", lim=limits(timeout_s=0.5))
    assert err.kind == "timeout"
    assert rec.hits["/slow"] == 1


# -------------------------------------------------------- address guard


@pytest.mark.parametrize(
    ("host", "blocked"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("10.0.0.1", True),
        ("172.16.5.4", True),
        ("192.168.1.1", True),
        ("169.254.169.254", True),
        ("100.100.100.200", True),  # shared address space (cloud metadata lives here)
        ("0.0.0.0", True),
        ("224.0.0.251", True),
        ("255.255.255.255", True),
        ("240.0.0.1", True),
        ("::1", True),
        ("::", True),
        ("fe80::1", True),
        ("fe80::1%eth0", True),
        ("fc00::1", True),
        ("fd12:3456::1", True),
        ("ff02::1", True),
        ("::ffff:127.0.0.1", True),
        ("::ffff:10.1.2.3", True),
        ("::ffff:8.8.8.8", False),
        ("8.8.8.8", False),
        ("93.184.216.34", False),
        ("1.1.1.1", False),
        ("2606:4700:4700::1111", False),
        ("2a00:1450:4001:81b::200e", False),
        # Legacy numeric forms: getaddrinfo reads them as 127.0.0.1 / 10.0.0.1.
        ("127.1", True),
        ("2130706433", True),
        ("0x7f000001", True),
        ("0177.0.0.1", True),
        ("10.1", True),
        ("127.0.0.1.", True),
        ("134744072", False),  # 8.8.8.8 as one number
        # Names are not addresses: the resolver checks what they resolve to.
        ("example.com", False),
        ("localhost", False),
        ("", False),
    ],
)
def test_is_blocked_address(host: str, blocked: bool) -> None:
    assert is_blocked_address(host) is blocked


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/feed",
        "http://localhost/feed",
        "http://LOCALHOST:8080/feed",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/feed",
        "http://[::ffff:127.0.0.1]/feed",
        "http://10.0.0.1/",
        "http://192.168.0.1:8080/admin",
        "http://100.100.100.200/latest/meta-data/",
        "http://0.0.0.0/",
        "http://127.1/",
        "http://2130706433/",
        "http://0177.0.0.1/",
    ],
)
async def test_blocked_addresses_are_refused_before_any_request(url: str) -> None:
    lim = limits(allow_private=False)
    started: list[str] = []
    async with tripwire_session(started) as session:
        with pytest.raises(FetchError) as info:
            await fetch(session, url, lim, max_bytes=10_000)
    assert info.value.kind == "blocked_address"
    assert info.value.url == url
    assert started == []  # refused before the request was even started


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1", "localhost", "127.1", "2130706433", "0177.0.0.1", "0x7f000001", "[::1]"],
)
async def test_guarded_session_never_reaches_a_loopback_server(
    server: tuple[Recorder, str, int], host: str
) -> None:
    """The real session from make_session, aimed at a live server: nothing arrives."""
    rec, _, port = server
    err = await fetch_error(f"http://{host}:{port}/secret", lim=limits(allow_private=False))
    assert err.kind == "blocked_address"
    assert rec.hits == {}


async def test_allow_private_addresses_reaches_loopback(server: tuple[Recorder, str, int]) -> None:
    rec, _, port = server
    res = await get(f"http://localhost:{port}/secret", lim=limits(allow_private=True))
    assert res.body == b"internal admin page"
    assert rec.hits == {"/secret": 1}


@pytest.mark.parametrize(
    "target",
    [
        "http://127.0.0.1:{port}/secret",
        "http://localhost:{port}/secret",
        "http://127.1:{port}/secret",
        "http://[::1]:{port}/secret",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/",
    ],
)
async def test_redirect_from_public_to_blocked_address_is_refused(
    server: tuple[Recorder, str, int], target: str
) -> None:
    """First hop: a public-looking name (our resolver maps it to the test server).

    The private-address check is on, so the only way to the server is that
    name; the redirect it sends must be checked again before the next hop.
    """
    rec, _, port = server
    lim = limits(allow_private=False)
    blocked = target.format(port=port)
    first = f"http://{PUBLIC_NAME}:{port}/goto?to={blocked}"
    started: list[str] = []
    resolver = MapResolver({PUBLIC_NAME: "127.0.0.1"})
    async with tripwire_session(started, resolver) as session:
        with pytest.raises(FetchError) as info:
            await fetch(session, first, lim, max_bytes=10_000)
    assert info.value.kind == "blocked_address"
    assert info.value.url == blocked
    assert rec.hits == {"/goto": 1}  # the first hop arrived, /secret never did
    assert len(started) == 1
    assert resolver.asked == [PUBLIC_NAME]


async def test_redirect_between_public_names_is_followed(
    server: tuple[Recorder, str, int],
) -> None:
    """Control for the test above: the same setup does follow an allowed redirect."""
    rec, _, port = server
    lim = limits(allow_private=False)
    first = f"http://{PUBLIC_NAME}:{port}/goto?to=/feed"
    started: list[str] = []
    async with tripwire_session(started, MapResolver({PUBLIC_NAME: "127.0.0.1"})) as session:
        res = await fetch(session, first, lim, max_bytes=10_000)
    assert res.body == FEED_BODY
    assert res.url == f"http://{PUBLIC_NAME}:{port}/feed"
    assert rec.hits == {"/goto": 1, "/feed": 1}


class StubResolver(AbstractResolver):
    def __init__(self, answers: list[str]) -> None:
        self.answers = answers

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            ResolveResult(hostname=host, host=a, port=port, family=family, proto=0, flags=0)
            for a in self.answers
        ]

    async def close(self) -> None:
        return None


def guarded(answers: list[str]) -> GuardedResolver:
    resolver = GuardedResolver()
    resolver._inner = StubResolver(answers)  # type: ignore[assignment]
    return resolver


async def test_guarded_resolver_passes_public_answers() -> None:
    resolver = guarded(["93.184.216.34", "2606:2800:220:1::1"])
    answers = await resolver.resolve("news.example", 443)
    assert [a["host"] for a in answers] == ["93.184.216.34", "2606:2800:220:1::1"]


@pytest.mark.parametrize("bad", ["10.0.0.7", "169.254.169.254", "::1", "::ffff:192.168.0.1"])
async def test_guarded_resolver_refuses_any_private_answer(bad: str) -> None:
    """One private address among public ones is enough to refuse (DNS rebinding)."""
    resolver = guarded(["93.184.216.34", bad])
    with pytest.raises(BlockedAddress, match="non-public"):
        await resolver.resolve("rebind.example", 80)


async def test_guarded_resolver_on_localhost() -> None:
    resolver = GuardedResolver()
    try:
        with pytest.raises(BlockedAddress, match=r"localhost resolves to 127\.0\.0\.1"):
            await resolver.resolve("localhost", 80)
    finally:
        await resolver.close()


def test_check_url_per_hop() -> None:
    """The check fetch runs before every hop, on its own."""
    strict = limits(allow_private=False)
    fetch_mod._check_url("https://news.example/feed.xml", strict)
    fetch_mod._check_url("http://8.8.8.8/", strict)
    for url in ("http://10.0.0.1/", "http://localhost/", "http://[fd00::1]/", "ftp://x.example/"):
        with pytest.raises(FetchError) as info:
            fetch_mod._check_url(url, strict)
        assert info.value.kind == "blocked_address"
    fetch_mod._check_url("http://10.0.0.1/", limits(allow_private=True))
    with pytest.raises(FetchError) as info:
        fetch_mod._check_url("http:///no-host", strict)
    assert info.value.kind == "connect"


# ----------------------------------------------------------------- file:


async def test_file_url_refused_unless_allowed(tmp_path: Path) -> None:
    feed = tmp_path / "local.xml"
    feed.write_bytes(FEED_BODY)
    err = await fetch_error(feed.as_uri())
    assert err.kind == "blocked_address"
    res = await get(feed.as_uri(), allow_file=True)
    assert res.status == 200
    assert res.body == FEED_BODY
    assert res.content_type == "application/xml"
    assert res.url == feed.as_uri()


async def test_file_url_with_space_in_path(tmp_path: Path) -> None:
    feed = tmp_path / "my feeds" / "wire.rss"
    feed.parent.mkdir()
    feed.write_bytes(b"<rss/>")
    assert "%20" in feed.as_uri()
    res = await get(feed.as_uri(), allow_file=True)
    assert res.body == b"<rss/>"
    assert res.content_type == "application/rss+xml"


async def test_missing_file_is_http_404(tmp_path: Path) -> None:
    err = await fetch_error((tmp_path / "nope.xml").as_uri(), allow_file=True)
    assert err.kind == "http_404"


async def test_file_over_cap_is_too_large(tmp_path: Path) -> None:
    feed = tmp_path / "huge.xml"
    feed.write_bytes(b"z" * 5000)
    err = await fetch_error(feed.as_uri(), allow_file=True, max_bytes=4999)
    assert err.kind == "too_large"


async def test_file_last_modified_gives_304_until_it_changes(tmp_path: Path) -> None:
    feed = tmp_path / "local.atom"
    feed.write_bytes(b"<feed/>")
    os.utime(feed, (1_700_000_000, 1_700_000_000))
    first = await get(feed.as_uri(), allow_file=True)
    assert first.status == 200
    assert first.last_modified == formatdate(1_700_000_000, usegmt=True)
    assert first.content_type == "application/atom+xml"
    again = await get(feed.as_uri(), allow_file=True, last_modified=first.last_modified)
    assert again.not_modified
    assert again.body == b""
    feed.write_bytes(b"<feed><entry/></feed>")
    os.utime(feed, (1_700_000_600, 1_700_000_600))
    changed = await get(feed.as_uri(), allow_file=True, last_modified=first.last_modified)
    assert changed.status == 200
    assert changed.body == b"<feed><entry/></feed>"
    assert changed.last_modified != first.last_modified
