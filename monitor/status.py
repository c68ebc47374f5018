"""``feed-monitor status``: the health of every feed, worst first, and every
live daemon (pure rendering plus Redis reads)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from monitor.config import Config
from monitor.store import Store
from monitor.subscriptions import SubscriptionState
from monitor.substore import SubscriptionStore

_ORDER = {"retired": 0, "failing": 1, "new": 2, "ok": 3}


@dataclass(frozen=True)
class FeedStatus:
    feed: str
    state: str  # ok | failing | retired | new
    last_poll: str | None
    last_status: str | None
    next_due_in_s: float | None
    errors: int
    error_kind: str | None
    error: str | None
    entries_seen: int
    alerts: int
    url: str
    push: str | None = None  # WebSub state, when the feed has a subscription

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


async def feed_statuses(cfg: Config, store: Store, now: float | None = None) -> list[FeedStatus]:
    now = time.time() if now is None else now
    due = await store.due_times()
    subs = await SubscriptionStore(store).all()
    rows = []
    for f in cfg.feeds:
        h = await store.feed_hash(f.name)
        state = await store.feed_state(f.name)
        if state.retired(f.url):
            kind = "retired"
        elif not h:
            kind = "new"
        elif h.get("last_outcome") == "failed":
            kind = "failing"
        else:
            kind = "ok"
        rows.append(
            FeedStatus(
                feed=f.name,
                state=kind,
                last_poll=h.get("last_poll"),
                last_status=h.get("last_status"),
                next_due_in_s=round(due[f.name] - now, 1) if f.name in due else None,
                errors=state.errors,
                error_kind=h.get("last_error_kind") or None,
                error=h.get("last_error") or None,
                entries_seen=await store.seen_count(f.name),
                alerts=int(h.get("alerts") or 0),
                url=state.poll_url(f.url),
                push=push_summary(subs.get(f.name)),
            )
        )
    return sorted(rows, key=lambda r: (_ORDER[r.state], -r.errors, r.feed))


def push_summary(sub: SubscriptionState | None) -> str | None:
    """``active until <UTC time>``, or the subscription's state and reason."""
    if sub is None:
        return None
    if sub.state == "active" and sub.expires_at is not None:
        until = datetime.fromtimestamp(sub.expires_at, UTC).strftime("%Y-%m-%d %H:%M")
        return f"active until {until}"
    return f"{sub.state} ({sub.reason})" if sub.reason else sub.state


@dataclass(frozen=True)
class DaemonStatus:
    daemon: str  # its id: host and state directory
    role: str
    host: str
    pid: int
    started: str
    heartbeat_age_s: float
    polls: int
    entries: int
    alerts: int
    polls_inflight: int
    entries_inflight: int

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


async def daemon_statuses(store: Store, now: float | None = None) -> list[DaemonStatus]:
    """Daemons whose heartbeat has not expired, by id."""
    now = time.time() if now is None else now
    rows = []
    for daemon_id, h in (await store.daemons()).items():

        def num(key: str, h: dict[str, str] = h) -> int:
            try:
                return int(h.get(key) or 0)
            except ValueError:
                return 0

        try:
            age = round(now - float(h.get("heartbeat") or 0), 1)
        except ValueError:
            age = -1.0
        row = DaemonStatus(daemon=daemon_id, role=h.get("role", "?"), host=h.get("host", "?"),
                           pid=num("pid"), started=h.get("started", ""), heartbeat_age_s=age,
                           polls=num("polls"), entries=num("entries"), alerts=num("alerts"),
                           polls_inflight=num("polls_inflight"),
                           entries_inflight=num("entries_inflight"))  # fmt: skip
        rows.append(row)
    return rows


def render_daemons(rows: list[DaemonStatus]) -> str:
    if not rows:
        return "no live daemon"
    head = ("DAEMON", "ROLE", "HOST", "PID", "HEARTBEAT", "POLLS", "ENTRIES", "ALERTS", "BUSY")
    table = [head]
    for r in rows:
        table.append((r.daemon, r.role, r.host, str(r.pid), f"{r.heartbeat_age_s:.0f}s ago",
                      str(r.polls), str(r.entries), str(r.alerts),
                      f"{r.polls_inflight}+{r.entries_inflight}"))  # fmt: skip
    return _table(table)


def _table(table: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in table
    )


def render(rows: list[FeedStatus]) -> str:
    head: tuple[str, ...] = ("FEED", "STATE", "LAST POLL", "HTTP", "NEXT", "ERRORS", "SEEN",
                             "ALERTS")  # fmt: skip
    pushed = any(r.push for r in rows)
    if pushed:
        head += ("PUSH",)
    table = [head]
    for r in rows:
        nxt = "-" if r.next_due_in_s is None else _ago(r.next_due_in_s)
        err = f"{r.errors} {r.error_kind}" if r.errors else "0"
        last = (r.last_poll or "-")[:19].replace("T", " ")
        row: tuple[str, ...] = (r.feed, r.state, last, r.last_status or "-", nxt, err,
                                str(r.entries_seen), str(r.alerts))  # fmt: skip
        table.append((*row, r.push or "-") if pushed else row)
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in table
    ]
    failing = [r for r in rows if r.state in ("failing", "retired") and r.error]
    if failing:
        lines.append("")
        lines += [f"{r.feed}: {r.error}" for r in failing]
    return "\n".join(lines)


def _ago(seconds: float) -> str:
    s = abs(seconds)
    text = f"{s:.0f}s" if s < 120 else f"{s / 60:.0f}m" if s < 7200 else f"{s / 3600:.1f}h"
    return f"in {text}" if seconds >= 0 else f"{text} late"
