"""WebSub subscription state and the decisions about it (pure; ``now`` is
passed in).

A subscription moves through: ``subscribing`` (request sent, waiting for
the hub's verification of intent) → ``active`` (verified; lease running)
→ renewed in place before the lease ends; ``failed``/``denied`` retry with
backoff; ``unsubscribing`` once its feed leaves the config, until the hub
verifies it or gives no answer within ``verify_timeout_s``.

While a subscription is active the feed is still polled, at the long
``safety_interval_s``, so a hub that goes silent never hides a story.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Literal

from monitor.hublinks import Discovery
from monitor.schedule import PollPolicy

SubState = Literal["subscribing", "active", "unsubscribing", "failed", "denied"]
_STATES: tuple[SubState, ...] = ("subscribing", "active", "unsubscribing", "failed", "denied")
ActionKind = Literal["subscribe", "renew", "unsubscribe", "forget"]
Mode = Literal["subscribe", "unsubscribe", "denied"]


@dataclass(frozen=True)
class SubscriptionState:
    """What Redis keeps of one feed's subscription (times are unix seconds)."""

    feed: str
    hub: str
    topic: str
    secret: str  # our HMAC key for this subscription, sent as hub.secret
    token: str  # the random last segment of its callback URL
    state: SubState
    requested_at: float
    verified_at: float | None = None
    lease_s: float | None = None  # as granted by the hub
    failures: int = 0  # hub errors in a row
    retry_at: float | None = None  # not before this: backoff, or a request in flight
    reason: str = ""

    @property
    def expires_at(self) -> float | None:
        if self.verified_at is None or self.lease_s is None:
            return None
        return self.verified_at + self.lease_s

    def to_hash(self) -> dict[str, str]:
        return {k: "" if v is None else str(v) for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_hash(cls, h: Mapping[str, str]) -> SubscriptionState | None:
        """None for a record that is incomplete or not ours."""

        def num(key: str) -> float | None:
            try:
                return float(h[key])
            except (KeyError, ValueError):
                return None

        state = h.get("state", "")
        requested = num("requested_at")
        required = ("feed", "hub", "topic", "secret", "token")
        if state not in _STATES or requested is None or not all(h.get(k) for k in required):
            return None
        return cls(
            feed=h["feed"], hub=h["hub"], topic=h["topic"], secret=h["secret"],
            token=h["token"], state=state, requested_at=requested,
            verified_at=num("verified_at"), lease_s=num("lease_s"),
            failures=int(num("failures") or 0), retry_at=num("retry_at"),
            reason=h.get("reason", ""),
        )  # fmt: skip


@dataclass(frozen=True)
class Timing:
    """The knobs of the decisions, from the ``websub`` config section."""

    renew_fraction: float = 0.85  # renew when this much of the lease has run
    verify_timeout_s: float = 300.0  # a hub that has not verified by then is asked again
    backoff_base_s: float = 60.0
    backoff_ceiling_s: float = 6 * 3600.0


@dataclass(frozen=True)
class Action:
    kind: ActionKind
    feed: str
    reason: str


def backoff_s(failures: int, timing: Timing) -> float:
    """Wait after ``failures`` hub errors in a row (doubling, capped)."""
    if failures <= 0:
        return 0.0
    return float(min(timing.backoff_ceiling_s, timing.backoff_base_s * 2 ** (failures - 1)))


def renew_at(sub: SubscriptionState, timing: Timing) -> float | None:
    """When an active subscription should be renewed (before its lease ends)."""
    if sub.verified_at is None or sub.lease_s is None:
        return None
    return sub.verified_at + timing.renew_fraction * sub.lease_s


def is_pushing(sub: SubscriptionState | None, now: float) -> bool:
    """Does the hub push this feed now (verified and within the lease)?"""
    if sub is None or sub.state != "active":
        return False
    expires = sub.expires_at
    return expires is None or now < expires


def plan(
    configured: Collection[str],
    subs: Mapping[str, SubscriptionState],
    now: float,
    timing: Timing,
) -> list[Action]:
    """The timer-driven work: renewals, retries, unsubscribing removed feeds."""
    actions = []
    for name, sub in sorted(subs.items()):
        waiting = sub.retry_at is not None and now < sub.retry_at
        if name not in configured:
            if sub.state in ("active", "subscribing"):
                actions.append(Action("unsubscribe", name, "feed removed from the config"))
            elif sub.state != "unsubscribing" or now - sub.requested_at >= timing.verify_timeout_s:
                actions.append(Action("forget", name, "feed removed from the config"))
            continue
        if waiting:
            continue
        if sub.state == "active":
            expires = sub.expires_at
            if expires is not None and now >= expires:
                actions.append(Action("subscribe", name, "lease expired"))
            else:
                due = renew_at(sub, timing)
                if due is not None and now >= due:
                    actions.append(Action("renew", name, "lease nearly over"))
        elif sub.state == "subscribing":
            if now - sub.requested_at >= timing.verify_timeout_s:
                actions.append(Action("subscribe", name, "hub did not verify in time"))
        elif sub.state in ("failed", "denied"):
            actions.append(Action("subscribe", name, f"retry after {sub.state}"))
        elif sub.state == "unsubscribing":
            # Back in the config while leaving: subscribe again.
            actions.append(Action("subscribe", name, "feed is configured again"))
    return actions


def on_discovery(
    feed: str, found: Discovery | None, sub: SubscriptionState | None, now: float
) -> Action | None:
    """What a successful poll's hub links call for (nothing on 304s: no links)."""
    if found is None:
        if sub is not None and sub.state in ("active", "subscribing"):
            return Action("unsubscribe", feed, "the feed no longer names a hub")
        if sub is not None and sub.state in ("failed", "denied"):
            return Action("forget", feed, "the feed no longer names a hub")
        return None
    if sub is None or sub.state == "unsubscribing":
        return Action("subscribe", feed, "hub discovered")
    if (sub.hub, sub.topic) != (found.hub, found.topic):
        return Action("subscribe", feed, "hub or topic changed")
    return None


@dataclass(frozen=True)
class IntentDecision:
    """The answer to a hub's verification request, and what to store after it.

    ``store`` None with ``accept`` True means: delete the subscription.
    """

    accept: bool
    store: SubscriptionState | None
    reason: str


def verify_intent(
    sub: SubscriptionState | None,
    mode: str,
    topic: str,
    lease_s: float | None,
    now: float,
    *,
    reason: str = "",
    timing: Timing = Timing(),
) -> IntentDecision:
    """Confirm only what we asked for: a subscribe we requested (or renew),
    an unsubscribe we requested; anyone can otherwise call the callback."""
    if sub is None:
        return IntentDecision(False, None, "no such subscription")
    if topic != sub.topic:
        return IntentDecision(False, sub, "topic does not match")
    if mode == "subscribe":
        if sub.state not in ("subscribing", "active"):
            return IntentDecision(False, sub, f"not subscribing ({sub.state})")
        granted = lease_s if lease_s is not None and lease_s > 0 else sub.lease_s
        new = dataclasses.replace(
            sub, state="active", verified_at=now, lease_s=granted, failures=0,
            retry_at=None, reason="",
        )  # fmt: skip
        return IntentDecision(True, new, "subscribed")
    if mode == "unsubscribe":
        if sub.state != "unsubscribing":
            return IntentDecision(False, sub, "we did not ask to unsubscribe")
        return IntentDecision(True, None, "unsubscribed")
    if mode == "denied":
        if sub.state not in ("subscribing", "active"):
            return IntentDecision(False, sub, f"not subscribing ({sub.state})")
        failures = sub.failures + 1
        new = dataclasses.replace(
            sub, state="denied", reason=reason or "denied by the hub", failures=failures,
            retry_at=now + backoff_s(failures, timing),
        )  # fmt: skip
        return IntentDecision(True, new, "denied")
    return IntentDecision(False, sub, f"unknown mode {mode!r}")


def push_policy(policy: PollPolicy, safety_interval_s: float) -> PollPolicy:
    """The poll policy of a feed the hub pushes: the safety interval, not
    adapted to the entry rate; errors still back off as usual."""
    high = max(policy.max_interval_s, safety_interval_s)
    return dataclasses.replace(
        policy, interval_s=safety_interval_s, max_interval_s=high, adapt_weight=0.0
    )
