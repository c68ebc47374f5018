"""A small WebSub hub for tests, on 127.0.0.1: it takes (un)subscription
requests, verifies intent by calling the subscriber's callback with a
challenge, and pushes content, signed or not, to the subscribers of a topic.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

from monitor.signature import sign


@dataclass
class HubSub:
    callback: str
    topic: str
    secret: str
    lease_s: int
    verified_at: float


@dataclass
class Hub:
    """Records every request; ``grant_lease_s`` overrides the lease asked for,
    ``fail_next`` answers that many requests with 500, ``verify`` False
    accepts requests but never verifies them."""

    grant_lease_s: int | None = None
    fail_next: int = 0
    verify: bool = True
    requests: list[dict[str, str]] = field(default_factory=list)
    verifications: list[tuple[str, str, int, float]] = field(default_factory=list)
    subs: dict[str, HubSub] = field(default_factory=dict)  # callback -> subscription
    url: str = ""
    _changed: asyncio.Condition | None = None
    _session: aiohttp.ClientSession | None = None
    _runner: web.AppRunner | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def start(self) -> None:
        self._changed = asyncio.Condition()
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        app = web.Application()
        app.router.add_post("/hub", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}/hub"

    async def close(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def _notify(self) -> None:
        assert self._changed is not None
        async with self._changed:
            self._changed.notify_all()

    async def wait_until(self, ready: Callable[[], bool], timeout_s: float = 10.0) -> None:
        """Until ``ready()`` holds (bounded; checked on every hub event)."""
        assert self._changed is not None
        async with asyncio.timeout(timeout_s), self._changed:
            await self._changed.wait_for(ready)

    async def _handle(self, request: web.Request) -> web.Response:
        form = {k: str(v) for k, v in (await request.post()).items()}
        self.requests.append(form)
        await self._notify()
        if self.fail_next > 0:
            self.fail_next -= 1
            return web.Response(status=500, text="hub is having a bad day")
        if form.get("hub.mode") not in ("subscribe", "unsubscribe") or not form.get("hub.topic"):
            return web.Response(status=400, text="bad request")
        if not self.verify:
            return web.Response(status=202)
        # Verification of intent after the answer, as most hubs do it.
        task = asyncio.get_running_loop().create_task(self._verify(form))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return web.Response(status=202)

    async def _verify(self, form: dict[str, str]) -> None:
        assert self._session is not None
        challenge = secrets.token_urlsafe(12)
        lease = self.grant_lease_s or int(form.get("hub.lease_seconds") or 3600)
        mode = form["hub.mode"]
        params = {"hub.mode": mode, "hub.topic": form["hub.topic"], "hub.challenge": challenge}
        if mode == "subscribe":
            params["hub.lease_seconds"] = str(lease)
        async with self._session.get(form["hub.callback"], params=params) as resp:
            ok = resp.status == 200 and await resp.text() == challenge
        self.verifications.append((mode, form["hub.callback"], resp.status, time.monotonic()))
        if ok and mode == "subscribe":
            self.subs[form["hub.callback"]] = HubSub(
                form["hub.callback"], form["hub.topic"], form.get("hub.secret", ""), lease,
                time.monotonic(),
            )  # fmt: skip
        elif ok:
            self.subs.pop(form["hub.callback"], None)
        await self._notify()

    async def publish(
        self,
        topic: str,
        body: bytes,
        content_type: str = "application/rss+xml",
        *,
        algorithm: str | None = "sha256",
        secret: str | None = None,
    ) -> list[int]:
        """Push ``body`` to every subscriber of ``topic``; their HTTP statuses.
        ``algorithm`` None sends no signature; ``secret`` overrides theirs."""
        assert self._session is not None
        statuses = []
        for sub in list(self.subs.values()):
            if sub.topic != topic:
                continue
            headers = {"Content-Type": content_type}
            if algorithm is not None:
                headers["X-Hub-Signature"] = sign(body, secret or sub.secret, algorithm)
            async with self._session.post(sub.callback, data=body, headers=headers) as resp:
                statuses.append(resp.status)
        return statuses
