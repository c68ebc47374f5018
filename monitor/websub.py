"""The WebSub subscriber: subscribes feeds whose hub a poll discovered,
answers the hubs' verifications, checks and hands pushed content to the
pipeline, renews leases before they end, unsubscribes removed feeds.

The decisions are pure (``subscriptions``, ``hublinks``, ``signature``);
this module does the talking: hub requests over HTTP, the callback
listener, and the subscription records in Redis (``substore``).

Each subscription gets its own random secret (``hub.secret``), kept in its
Redis record for its whole life, renewals included: nothing secret sits in
the config, one leaked secret exposes one feed, and the secret survives
restarts as long as Redis does (if Redis loses it, the hub's signatures
stop verifying, deliveries are refused, polls go on, and the next
discovery subscribes afresh).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hmac
import logging
import secrets
import time
from collections.abc import Callable, Coroutine, Mapping
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

from monitor.callback import callback_app
from monitor.config import WebSubSettings
from monitor.entries import Feed
from monitor.errors import HubError, RedisUnavailable
from monitor.hublinks import Discovery, HubLinks, discover, header_links
from monitor.logs import event
from monitor.metrics import Metrics
from monitor.schedule import PollPolicy
from monitor.signature import check_signature
from monitor.subscriptions import (
    Action,
    SubscriptionState,
    Timing,
    backoff_s,
    is_pushing,
    on_discovery,
    plan,
    push_policy,
    verify_intent,
)
from monitor.substore import SubscriptionStore

log = logging.getLogger("monitor.websub")

PLAN_EVERY_S = 1.0  # how often renewals and retries are looked at
REFRESH_EVERY_S = 60.0  # re-read every record (another daemon may have acted)
HUB_TIMEOUT_S = 30.0
CLOSE_DEADLINE_S = 20.0

PushHandler = Callable[[Feed, bytes, str | None], Coroutine[object, object, object]]


class WebSub:
    """One daemon's WebSub side; ``start`` opens the callback listener."""

    def __init__(
        self,
        settings: WebSubSettings,
        subs: SubscriptionStore,
        session: aiohttp.ClientSession,
        push: PushHandler,
        clock: Callable[[], float] = time.time,
        plan_every_s: float = PLAN_EVERY_S,
        metrics: Metrics | None = None,
    ) -> None:
        if not settings.callback_url:
            raise ValueError("WebSub needs websub.callback_url")
        self.settings = settings
        self.callback_url = settings.callback_url
        self.store = subs
        self.session = session
        self.push = push
        self.clock = clock
        self.plan_every_s = plan_every_s
        self.metrics = metrics or Metrics()
        self.timing = Timing(
            renew_fraction=settings.renew_fraction,
            verify_timeout_s=settings.verify_timeout_s,
            backoff_base_s=settings.backoff_base_s,
            backoff_ceiling_s=max(settings.backoff_base_s, settings.backoff_ceiling_s),
        )
        self.feeds: Mapping[str, Feed] = {}
        self.subs: dict[str, SubscriptionState] = {}  # cache of the Redis records
        self._busy: set[str] = set()  # feeds with a hub request in flight
        self._push_locks: dict[str, asyncio.Lock] = {}
        self._tasks: set[asyncio.Task[object]] = set()
        self._runner: web.AppRunner | None = None

    # --- lifecycle ---

    async def start(self) -> None:
        path = urlsplit(self.callback_url).path or "/"
        app = callback_app(self, path, self.settings.max_body_bytes)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        host, _, port = self.settings.listen.rpartition(":")
        await web.TCPSite(self._runner, host.strip("[]"), int(port)).start()
        with contextlib.suppress(RedisUnavailable):
            self.subs = await self.store.all()
        event(log, logging.INFO, "websub.listening", address=self.settings.listen,
              callback=self.callback_url, subscriptions=len(self.subs))  # fmt: skip

    async def close(self, deadline_s: float = CLOSE_DEADLINE_S) -> None:
        """Stop taking calls, then let pushed content finish (up to a deadline)."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._tasks:
            _done, pending = await asyncio.wait(set(self._tasks), timeout=deadline_s)
            for t in pending:
                t.cancel()
            if pending:
                await asyncio.wait(pending, timeout=5)

    async def settle(self, timeout_s: float) -> None:
        """Wait until no hub request or pushed document is in progress
        (TimeoutError after ``timeout_s``); for tests and benchmarks."""
        async with asyncio.timeout(timeout_s):
            while self._tasks:
                await asyncio.wait(set(self._tasks))

    def _spawn(self, coro: Coroutine[object, object, object]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def run(self, stopping: asyncio.Event) -> None:
        """Renew, retry and unsubscribe on time, until ``stopping``."""
        refreshed = self.clock()
        while not stopping.is_set():
            now = self.clock()
            try:
                if now - refreshed >= REFRESH_EVERY_S:
                    self.subs = await self.store.all()
                    refreshed = now
                for action in plan(self.feeds.keys(), self.subs, now, self.timing):
                    self._start_action(action, None)
            except RedisUnavailable as exc:
                event(log, logging.WARNING, "websub.redis_unavailable", detail=exc.detail)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), timeout=self.plan_every_s)

    # --- hooks for the daemon ---

    def pushing(self, feed: str) -> bool:
        return is_pushing(self.subs.get(feed), self.clock())

    def policy(self, feed: str, policy: PollPolicy) -> PollPolicy:
        """A pushed feed is polled at the safety interval only."""
        if self.pushing(feed):
            return push_policy(policy, self.settings.safety_interval_s)
        return policy

    def observe(self, feed: Feed, headers: Mapping[str, str], named: HubLinks) -> None:
        """After a poll that got the feed (200): subscribe if it names a hub."""
        if not feed.url.startswith(("http://", "https://")):
            return  # a file: feed has no hub to speak of
        found = discover(
            header_links(headers.get("Link"), feed.url),
            named,
            feed.url,
        )
        action = on_discovery(feed.name, found, self.subs.get(feed.name), self.clock())
        if action is not None:
            self._start_action(action, found)

    # --- hub requests ---

    def _start_action(self, action: Action, found: Discovery | None) -> None:
        if action.feed in self._busy:
            return
        self._busy.add(action.feed)
        self._spawn(self._act(action, found))

    async def _act(self, action: Action, found: Discovery | None) -> None:
        try:
            if action.kind in ("subscribe", "renew"):
                await self._subscribe(action, found)
            elif action.kind == "unsubscribe":
                await self._unsubscribe(action)
            else:
                await self.store.delete(action.feed)
                self.subs.pop(action.feed, None)
                event(log, logging.INFO, "websub.forgotten", feed=action.feed,
                      reason=action.reason)  # fmt: skip
        except RedisUnavailable as exc:
            event(log, logging.WARNING, "websub.redis_unavailable", feed=action.feed,
                  detail=exc.detail)  # fmt: skip
        finally:
            self._busy.discard(action.feed)

    async def _subscribe(self, action: Action, found: Discovery | None) -> None:
        name = action.feed
        # Redis, not the copy: another daemon may have subscribed it meanwhile,
        # and its secret and token are then reused rather than replaced.
        old = await self.store.get(name)
        if found is not None:
            hub, topic = found.hub, found.topic
        elif old is not None:
            hub, topic = old.hub, old.topic
        else:
            return
        now = self.clock()
        same = old is not None and (old.hub, old.topic) == (hub, topic)
        if old is not None and same and action.kind == "renew":
            # Still active meanwhile; not again before the hub had time to verify.
            sub = dataclasses.replace(
                old, requested_at=now, retry_at=now + self.timing.verify_timeout_s
            )
        elif old is not None and same:
            # Asked before and never verified: that counts as a hub failure.
            unverified = old.state == "subscribing"
            failures = old.failures + 1 if unverified else old.failures
            retry_at = now + backoff_s(failures, self.timing) if unverified else None
            sub = dataclasses.replace(
                old, state="subscribing", requested_at=now, failures=failures, retry_at=retry_at
            )
        else:
            sub = SubscriptionState(
                name, hub, topic, secret=secrets.token_hex(32),
                token=secrets.token_urlsafe(16), state="subscribing", requested_at=now,
                lease_s=float(self.settings.lease_s),
            )  # fmt: skip
        # Stored first: a hub may verify before it answers our request.
        await self.store.put(sub)
        if old is not None and not same and old.state in ("active", "subscribing"):
            # The feed moved to another hub (or topic): leave the old one, or
            # it pushes (and is refused) until its lease runs out.
            self._spawn(self._leave(old, "hub or topic changed"))
        self.subs[name] = sub
        event(log, logging.INFO, "websub.subscribing", feed=name, hub=hub, topic=topic,
              reason=action.reason)  # fmt: skip
        try:
            await self._request(sub, "subscribe")
        except HubError as exc:
            latest = await self.store.get(name) or sub
            failures = latest.failures + 1
            wait = backoff_s(failures, self.timing)
            failed = dataclasses.replace(
                latest, failures=failures, retry_at=self.clock() + wait,
                state="active" if latest.state == "active" else "failed",
                reason=f"{exc.kind}: {exc.detail}",
            )  # fmt: skip
            self.metrics.websub_hub_errors.labels(exc.kind).inc()
            await self.store.put(failed)
            self.subs[name] = failed
            event(log, logging.WARNING, "websub.hub_failed", feed=name, hub=hub, kind=exc.kind,
                  error=exc.detail, retry_in_s=round(wait))  # fmt: skip

    async def _unsubscribe(self, action: Action) -> None:
        sub = self.subs.get(action.feed)
        if sub is None:
            return
        leaving = _leaving(sub, self.clock())
        await self.store.put(leaving)
        self.subs[action.feed] = leaving
        # The record is forgotten after verify_timeout_s whatever the hub says.
        await self._ask_to_leave(leaving, action.reason)

    async def _leave(self, old: SubscriptionState, reason: str) -> None:
        """Unsubscribe a replaced subscription at its own hub; its record is
        kept apart (the feed's record is the new one) until verified."""
        leaving = _leaving(old, self.clock())
        try:
            await self.store.put_leaving(leaving, ttl_s=self.timing.verify_timeout_s)
        except RedisUnavailable as exc:  # its lease runs out; pushes meanwhile are refused
            event(log, logging.WARNING, "websub.redis_unavailable", feed=old.feed,
                  detail=exc.detail)  # fmt: skip
            return
        await self._ask_to_leave(leaving, reason)

    async def _ask_to_leave(self, leaving: SubscriptionState, reason: str) -> None:
        event(log, logging.INFO, "websub.unsubscribing", feed=leaving.feed, hub=leaving.hub,
              reason=reason)  # fmt: skip
        try:
            await self._request(leaving, "unsubscribe")
        except HubError as exc:
            self.metrics.websub_hub_errors.labels(exc.kind).inc()
            event(log, logging.WARNING, "websub.hub_failed", feed=leaving.feed, hub=leaving.hub,
                  kind=exc.kind, error=exc.detail)  # fmt: skip

    def callback_for(self, sub: SubscriptionState) -> str:
        return f"{self.callback_url}/{sub.feed}/{sub.token}"

    async def _request(self, sub: SubscriptionState, mode: str) -> None:
        """POST a (un)subscription request; the hub answers 202 (or 204)."""
        data = {"hub.callback": self.callback_for(sub), "hub.mode": mode, "hub.topic": sub.topic}
        if mode == "subscribe":
            data["hub.lease_seconds"] = str(self.settings.lease_s)
            data["hub.secret"] = sub.secret
        timeout = aiohttp.ClientTimeout(total=HUB_TIMEOUT_S)
        try:
            async with self.session.post(
                sub.hub, data=data, timeout=timeout, allow_redirects=False
            ) as resp:
                if resp.status not in (200, 202, 204):
                    text = (await resp.content.read(300)).decode("utf-8", "replace").strip()
                    raise HubError(f"http_{resp.status}", sub.hub, text or str(resp.reason))
        except HubError:
            raise
        except Exception as exc:  # translated at this one boundary
            raise HubError("connect", sub.hub, f"{type(exc).__name__}: {exc}") from exc

    # --- the callback (see monitor/callback.py) ---

    async def _record(
        self, feed: str, token: str, *, cached: bool = True
    ) -> SubscriptionState | None:
        """The feed's subscription if ``token`` is its callback token."""
        sub = self.subs.get(feed) if cached else None
        if sub is None or not hmac.compare_digest(sub.token, token):
            sub = await self.store.get(feed)  # another daemon may have subscribed it
        if sub is None or not hmac.compare_digest(sub.token, token):
            return None
        return sub

    async def verify(self, feed: str, token: str, query: dict[str, str]) -> tuple[int, str]:
        """A hub's verification of intent: echo the challenge only for a
        request we made, and remember the lease it grants."""
        mode, topic = query.get("hub.mode", ""), query.get("hub.topic", "")
        challenge = query.get("hub.challenge", "")
        try:
            lease: float | None = float(query["hub.lease_seconds"])
        except (KeyError, ValueError):
            lease = None
        if mode in ("subscribe", "unsubscribe") and not challenge:
            return 400, "no hub.challenge"
        try:
            sub = await self._record(feed, token, cached=False)  # Redis has the last word
            leaving = sub is None and mode == "unsubscribe"
            if leaving:  # an old hub, after the feed moved to a new one
                sub = await self.store.get_leaving(feed, token)
            decision = verify_intent(
                sub, mode, topic, lease, self.clock(), reason=query.get("hub.reason", ""),
                timing=self.timing,
            )  # fmt: skip
            if not decision.accept:
                event(log, logging.WARNING, "websub.verify_refused", feed=feed, mode=mode,
                      topic=topic, reason=decision.reason)  # fmt: skip
                return 404, ""
            if decision.store is None and leaving:
                await self.store.forget_leaving(feed, token)
            elif decision.store is None:
                await self.store.delete(feed)
                self.subs.pop(feed, None)
            else:
                await self.store.put(decision.store)
                self.subs[feed] = decision.store
        except RedisUnavailable as exc:
            event(log, logging.WARNING, "websub.redis_unavailable", feed=feed, detail=exc.detail)
            return 503, ""
        level = logging.WARNING if mode == "denied" else logging.INFO
        event(log, level, f"websub.{decision.reason}", feed=feed, topic=topic,
              lease_s=lease if lease is not None else "")  # fmt: skip
        return 200, challenge

    async def deliver(
        self, feed: str, token: str, body: bytes, content_type: str | None, signature: str | None
    ) -> int:
        """Content from the hub: 202 and processed in the background if the
        signature verifies; 403 (nothing processed) if it does not."""
        try:
            sub = await self._record(feed, token)
        except RedisUnavailable as exc:
            event(log, logging.WARNING, "websub.redis_unavailable", feed=feed, detail=exc.detail)
            self.metrics.websub_deliveries.labels("redis").inc()
            return 503
        configured = self.feeds.get(feed)
        if sub is None or configured is None or sub.state == "unsubscribing":
            self.metrics.websub_deliveries.labels("gone").inc()
            return 410  # hubs drop a subscription that answers 410 Gone
        check = check_signature(signature, body, sub.secret)
        if check != "ok":
            self.metrics.websub_deliveries.labels("bad_signature").inc()
            event(log, logging.WARNING, "websub.rejected", feed=feed, reason=check,
                  bytes=len(body))  # fmt: skip
            return 403
        self.metrics.websub_deliveries.labels("accepted").inc()
        self._spawn(self._push_in_order(configured, body, content_type))
        return 202

    async def _push_in_order(self, feed: Feed, body: bytes, content_type: str | None) -> None:
        """One feed's deliveries one after another: in order, and no story
        of a burst fetched and extracted twice."""
        lock = self._push_locks.setdefault(feed.name, asyncio.Lock())
        async with lock:
            try:
                await self.push(feed, body, content_type)
            except Exception:  # a bug: nobody awaits this task, so say it here
                log.exception("websub.push_crashed feed=%s", feed.name)


def _leaving(sub: SubscriptionState, now: float) -> SubscriptionState:
    return dataclasses.replace(sub, state="unsubscribing", requested_at=now, retry_at=None)
