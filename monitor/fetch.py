"""HTTP and file fetching with caps, conditional GET and an address guard.

The one module that talks to aiohttp as a client. Every failure becomes a
``FetchError`` with a stable ``kind``. Feeds are written by strangers, so by
default no fetch may reach loopback, private, link-local or multicast
addresses: IP literals are checked before each hop, host names when they are
resolved (so a DNS answer cannot smuggle in a private address either).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.utils import formatdate
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit
from urllib.request import url2pathname

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from monitor.config import DEFAULT_MAX_IDLE, HttpSettings
from monitor.connpool import IdleCappedConnector
from monitor.errors import FetchError

_REDIRECTS = (301, 302, 303, 307, 308)


def _accept_encoding() -> str:
    # aiohttp decodes br only when a Brotli package is installed.
    try:
        import brotli  # noqa: F401
    except ImportError:
        return "gzip, deflate"
    return "gzip, deflate, br"


ACCEPT_ENCODING = _accept_encoding()


@dataclass(frozen=True)
class FetchResult:
    url: str  # after redirects
    status: int
    body: bytes
    content_type: str | None
    etag: str | None
    last_modified: str | None
    # Where the leading run of 301/308 redirects pointed, if there was one.
    moved_to: str | None = None
    # Response headers the scheduler reads (Cache-Control, Expires, Date, ...).
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def not_modified(self) -> bool:
        return self.status == 304


@dataclass(frozen=True)
class HttpLimits:
    user_agent: str
    timeout_s: float
    connect_timeout_s: float
    max_redirects: int
    allow_private_addresses: bool
    # Non-public networks opened anyway (e.g. 127.0.0.0/8 for a local site).
    allowed_networks: tuple[str, ...] = ()

    @classmethod
    def from_settings(cls, h: HttpSettings) -> HttpLimits:
        return cls(h.user_agent, h.timeout_s, h.connect_timeout_s, h.max_redirects,
                   h.allow_private_addresses, h.allowed_networks)  # fmt: skip

    def allows(self, host: str) -> bool:
        """May a request go to ``host`` (a name or an IP literal)?"""
        if self.allow_private_addresses:
            return True
        if host == "localhost":
            host = "127.0.0.1"
        return not is_blocked_address(host) or _in_networks(host, self.allowed_networks)


def _parse_ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    literal = host.split("%", 1)[0].removesuffix(".")
    try:
        return ipaddress.ip_address(literal)
    except ValueError:
        pass
    # Legacy IPv4 forms that getaddrinfo/inet_aton accept: 127.1, 2130706433,
    # 0x7f000001, 0177.0.0.1. Older aiohttp treats the all-digit ones as IP
    # literals and skips the resolver, so they must be caught here.
    try:
        return ipaddress.IPv4Address(socket.inet_aton(literal))
    except (OSError, ValueError):
        return None


def host_of(url: str) -> str:
    """The host part of a URL, for per-host limits ('' for file: URLs)."""
    try:
        return (urlsplit(url).hostname or "").lower()
    except ValueError:
        return ""


def is_blocked_address(host: str) -> bool:
    ip = _parse_ip(host)
    if ip is None:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or not ip.is_global  # also 100.64.0.0/10 (shared/CGNAT, cloud metadata)
    )


def _in_networks(host: str, networks: tuple[str, ...]) -> bool:
    ip = _parse_ip(host)
    if ip is None:
        return False
    return any(ip in ipaddress.ip_network(n, strict=False) for n in networks)


class BlockedAddress(OSError):
    """Raised by the resolver; becomes FetchError(kind='blocked_address')."""


class GuardedResolver(AbstractResolver):
    """Resolves names, then refuses any answer in a blocked range."""

    def __init__(self, allowed_networks: tuple[str, ...] = ()) -> None:
        self._inner = aiohttp.ThreadedResolver()
        self._allowed = allowed_networks

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        answers = await self._inner.resolve(host, port, family)
        for a in answers:
            if is_blocked_address(a["host"]) and not _in_networks(a["host"], self._allowed):
                raise BlockedAddress(f"{host} resolves to {a['host']}, a non-public address")
        return answers

    async def close(self) -> None:
        await self._inner.close()


def make_session(
    limits: HttpLimits, concurrency: int, max_idle: int = DEFAULT_MAX_IDLE
) -> aiohttp.ClientSession:
    resolver: AbstractResolver = (
        aiohttp.ThreadedResolver()
        if limits.allow_private_addresses
        else GuardedResolver(limits.allowed_networks)
    )
    # Per-host limits are the HostLimiter's job (shared by feeds and pages).
    connector = IdleCappedConnector(
        max_idle=max_idle, limit=concurrency, limit_per_host=0, resolver=resolver
    )
    timeout = aiohttp.ClientTimeout(total=limits.timeout_s, sock_connect=limits.connect_timeout_s)
    return aiohttp.ClientSession(
        connector=connector,
        timeout=timeout,
        headers={"User-Agent": limits.user_agent},
        auto_decompress=True,
    )


async def fetch(
    session: aiohttp.ClientSession,
    url: str,
    limits: HttpLimits,
    *,
    max_bytes: int,
    etag: str | None = None,
    last_modified: str | None = None,
    accept: str = "*/*",
    allow_file: bool = False,
    user_agent: str | None = None,
) -> FetchResult:
    """GET ``url`` (following redirects by hand, checking every hop).

    On 429 and 503 the raised FetchError carries the response headers, so
    the scheduler can honour Retry-After.
    """
    if url.startswith("file:"):
        if not allow_file:
            raise FetchError("blocked_address", url, "file: URLs are allowed only from local feeds")
        return await asyncio.to_thread(_read_file, url, max_bytes, last_modified)
    headers = {"Accept": accept, "Accept-Encoding": ACCEPT_ENCODING}
    if user_agent:
        headers["User-Agent"] = user_agent
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    current = url
    moved_to: str | None = None
    permanent = True  # still in the leading run of 301/308s
    for _ in range(limits.max_redirects + 1):
        _check_url(current, limits)
        try:
            async with session.get(current, headers=headers, allow_redirects=False) as resp:
                if resp.status in _REDIRECTS and "Location" in resp.headers:
                    current = urljoin(current, resp.headers["Location"])
                    permanent = permanent and resp.status in (301, 308)
                    if permanent:
                        moved_to = current
                    continue
                if resp.status == 304:
                    return _result(current, resp, b"", moved_to)
                if resp.status >= 400:
                    err = FetchError(_status_kind(resp.status), current, f"HTTP {resp.status}")
                    err.headers = _kept_headers(resp)
                    raise err
                body = await _read_capped(resp, max_bytes, current)
                return _result(current, resp, body, moved_to)
        except FetchError:
            raise
        except Exception as exc:  # translated at this one boundary
            raise _translate(exc, current) from exc
    raise FetchError("redirect_loop", url, f"more than {limits.max_redirects} redirects")


# Link carries a WebSub hub (rel="hub"); a server may send it several times.
_KEPT_HEADERS = ("Cache-Control", "Expires", "Date", "Retry-After", "Age", "Link")


def _kept_headers(resp: aiohttp.ClientResponse) -> dict[str, str]:
    kept = {h: resp.headers[h] for h in _KEPT_HEADERS if h in resp.headers}
    if "Link" in kept:
        kept["Link"] = ", ".join(resp.headers.getall("Link"))  # one list, RFC 8288
    return kept


def _result(
    url: str, resp: aiohttp.ClientResponse, body: bytes, moved_to: str | None
) -> FetchResult:
    return FetchResult(
        url=url,
        status=resp.status,
        body=body,
        content_type=resp.headers.get("Content-Type"),
        etag=resp.headers.get("ETag"),
        last_modified=resp.headers.get("Last-Modified"),
        moved_to=moved_to,
        headers=_kept_headers(resp),
    )


def _check_url(url: str, limits: HttpLimits) -> None:
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # e.g. "http://[::1/" from a feed's link
        raise FetchError("connect", url, f"invalid URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise FetchError("blocked_address", url, f"scheme {parts.scheme!r} is not fetched")
    host = parts.hostname or ""
    if not host:
        raise FetchError("connect", url, "no host in URL")
    if not limits.allows(host):
        raise FetchError(
            "blocked_address",
            url,
            "non-public address (open it with http.allowed_networks or allow_private_addresses)",
        )


async def _read_capped(resp: aiohttp.ClientResponse, max_bytes: int, url: str) -> bytes:
    declared = resp.content_length
    if declared is not None and declared > max_bytes:
        raise FetchError("too_large", url, f"Content-Length {declared} > {max_bytes} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_chunked(65536):
        size += len(chunk)  # counted after decompression: bombs are cut off
        if size > max_bytes:
            raise FetchError("too_large", url, f"body exceeds {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _status_kind(status: int) -> str:
    if status >= 500:
        return "http_5xx"
    return f"http_{status}"


def _translate(exc: BaseException, url: str) -> FetchError:
    chain: list[BaseException] = []
    e: BaseException | None = exc
    while e is not None and len(chain) < 10:
        chain.append(e)
        e = e.__cause__ or e.__context__
    for e in chain:
        if isinstance(e, BlockedAddress):
            return FetchError("blocked_address", url, str(e))
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return FetchError("timeout", url, "no complete response within the time limit")
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return FetchError("dns", url, str(exc))
    if isinstance(exc, aiohttp.ClientConnectorCertificateError | aiohttp.ClientSSLError):
        return FetchError("tls", url, str(exc))
    if isinstance(exc, aiohttp.ClientConnectorError):
        return FetchError("connect", url, str(exc))
    if isinstance(exc, aiohttp.ClientPayloadError | aiohttp.ServerDisconnectedError):
        return FetchError("connect", url, f"connection broke mid-response: {exc}")
    if isinstance(exc, aiohttp.ClientError | OSError | ValueError):
        return FetchError("connect", url, f"{type(exc).__name__}: {exc}")
    raise exc


def _read_file(url: str, max_bytes: int, last_modified: str | None) -> FetchResult:
    try:
        path = Path(url2pathname(urlsplit(url).path))
    except ValueError as exc:
        raise FetchError("connect", url, f"invalid URL: {exc}") from None
    try:
        st = path.stat()
        mtime = formatdate(st.st_mtime, usegmt=True)
        if last_modified == mtime:
            return FetchResult(url, 304, b"", None, None, mtime)
        if st.st_size > max_bytes:
            raise FetchError("too_large", url, f"file is {st.st_size} > {max_bytes} bytes")
        body = path.read_bytes()
    except FileNotFoundError:
        raise FetchError("http_404", url, "file not found") from None
    except OSError as exc:
        raise FetchError("connect", url, f"cannot read file: {exc}") from None
    return FetchResult(url, 200, body, _guess_type(path), None, mtime)


def _guess_type(path: Path) -> str | None:
    suffix = path.suffix.lower()
    types: dict[str, Any] = {
        ".xml": "application/xml",
        ".rss": "application/rss+xml",
        ".atom": "application/atom+xml",
        ".html": "text/html",
    }
    return types.get(suffix)
