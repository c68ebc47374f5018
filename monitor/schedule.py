"""When to poll a feed next: a pure function of the last poll's facts.

``next_poll(policy, facts, now, rng)`` never reads the clock, the network or
the global random state: ``now`` and a seeded ``random.Random`` come in, a
``Decision`` (due time, interval, reason) goes out. The rules, in the order
they are evaluated:

1. Errors (``outcome="failed"``). A 429 or 503 that carries ``Retry-After``
   waits that long, capped by ``retry_after_cap_s`` and at least
   ``min_interval_s`` (reason ``retry-after``); without ``http_status`` the
   error kinds ``http_429``, ``http_503`` and ``http_5xx`` count as such. Any
   other failure backs off exponentially, ``backoff_base_s * 2**(errors-1)``,
   capped at ``backoff_ceiling_s`` and never below ``min_interval_s``; at the
   ceiling it keeps retrying forever (reason ``backoff``). Only jitter (rule 5)
   applies to errors: rules 2-4 and 6 do not.
2. Success (``ok`` or ``not_modified``): start from ``interval_s``. With an
   observed entry interval G the interval moves towards it on a log scale,
   ``interval_s**(1-w) * G**w`` with ``w = adapt_weight`` (0.5: the geometric
   mean), so a feed publishing every 10 minutes is polled more often than
   configured and a weekly one less often (reason ``adaptive``). Clamped to
   ``[min_interval_s, max_interval_s]``.
3. Server hints only lengthen it: the largest of Cache-Control freshness
   (``s-maxage`` or ``max-age`` minus ``Age``; ``no-cache``/``no-store`` is
   0), ``Expires`` (consulted only without a max-age, as RFC 9111 says), RSS
   ``<ttl>`` and ``sy:updatePeriod``/``sy:updateFrequency``, if it exceeds the
   interval, wins (reason ``max-age``, ``expires``, ``ttl``, ``update-period``),
   still clamped to ``max_interval_s``.
4. A detected gap (items lost between two polls) halves the interval, but
   never below ``min_interval_s`` nor below the server's hint from rule 3:
   we never poll more often than the server asks (reason ``gap``).
5. Jitter: the interval is multiplied by ``1 + u``, u uniform in
   ``[-jitter, +jitter]`` from ``rng``, so feeds do not fire in lockstep; the
   same seed gives the same decision. Jitter never shortens a wait below what
   the server asked for (Retry-After, rule 3's hints): u's lower end is raised
   to that point, so a wait set by the server is only ever lengthened.
6. ``<skipHours>``/``<skipDays>`` (GMT): a due time in a skipped hour or day
   moves to the start of the first allowed hour plus a random offset of up to
   ``jitter`` of that hour (reason ``skip-hours``/``skip-days``), but never
   past ``now + max_interval_s`` (or the jittered due, if later): our own
   guarantee to look at every feed that often wins over the feed's hint. A
   feed that skips every hour or every day has its skip hints ignored.
   Jitter comes before this rule so that it cannot push a moved poll back
   into a skipped hour.

So ``due`` is always within ``[now + min_interval_s * (1 - jitter),
now + max(backoff_ceiling_s, max_interval_s) * (1 + jitter)]`` (give or take
the microsecond ``due`` is rounded to).

The small parsers (``cache_max_age``, ``expires_in``, ``retry_after``,
``ttl_seconds``, ``update_period_seconds``, ``skip_hours_of``,
``skip_days_of``, ``entry_interval_s``) return ``None`` (or ``()``) for
anything they cannot read: feeds and headers are written by strangers.
"""

from __future__ import annotations

import itertools
import math
import random
import re
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Literal

from monitor.entries import ParsedFeed

Outcome = Literal["ok", "not_modified", "failed"]

DAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_PERIODS_S = {
    "hourly": 3600.0,
    "daily": 86400.0,
    "weekly": 7 * 86400.0,
    "monthly": 30 * 86400.0,
    "yearly": 365 * 86400.0,
}
_MAX_HINT_S = 10 * 365 * 86400.0  # larger numbers are noise; the clamps cut them anyway
_DIGITS = re.compile(r"\s*(\d{1,12})\s*")
_RETRY_STATUSES = (429, 503)
_RETRY_KINDS = ("http_429", "http_503", "http_5xx")  # fetch files 503 under http_5xx


@dataclass(frozen=True)
class PollPolicy:
    """How often to poll one feed; all durations in seconds."""

    interval_s: float
    min_interval_s: float = 60.0
    max_interval_s: float = 86400.0
    backoff_base_s: float = 60.0
    backoff_ceiling_s: float = 6 * 3600.0
    jitter: float = 0.1  # fraction of the interval, 0 <= jitter < 1
    retry_after_cap_s: float = 6 * 3600.0
    adapt_weight: float = 0.5  # 0: ignore the entry rate; 1: poll at the entry rate

    def __post_init__(self) -> None:
        values = (
            self.interval_s,
            self.min_interval_s,
            self.max_interval_s,
            self.backoff_base_s,
            self.backoff_ceiling_s,
            self.retry_after_cap_s,
        )
        if not all(math.isfinite(v) and v > 0 for v in values):
            raise ValueError("poll durations must be finite and positive")
        if self.min_interval_s > self.max_interval_s:
            raise ValueError("min_interval_s must not exceed max_interval_s")
        if not self.min_interval_s <= self.backoff_base_s <= self.backoff_ceiling_s:
            raise ValueError("need min_interval_s <= backoff_base_s <= backoff_ceiling_s")
        longest = max(self.backoff_ceiling_s, self.max_interval_s)
        if not self.min_interval_s <= self.retry_after_cap_s <= longest:
            raise ValueError(
                "retry_after_cap_s must lie in [min_interval_s, "
                "max(backoff_ceiling_s, max_interval_s)]"
            )
        if not 0.0 <= self.jitter < 1.0:
            raise ValueError("jitter must be in [0, 1)")
        if not 0.0 <= self.adapt_weight <= 1.0:
            raise ValueError("adapt_weight must be in [0, 1]")


@dataclass(frozen=True)
class FeedHints:
    """What the feed document says about its own schedule (kept between polls)."""

    ttl_s: float | None = None
    update_period_s: float | None = None
    skip_hours: tuple[int, ...] = ()  # 0-23, GMT
    skip_days: tuple[str, ...] = ()  # "Monday" ... "Sunday", GMT

    @classmethod
    def from_parsed(cls, parsed: ParsedFeed) -> FeedHints:
        return cls(parsed.ttl_s, parsed.update_period_s, parsed.skip_hours, parsed.skip_days)


@dataclass(frozen=True)
class PollFacts:
    """What the last poll of a feed found out; the input of ``next_poll``."""

    outcome: Outcome
    consecutive_errors: int = 0  # including this poll, when it failed
    error_kind: str | None = None  # FetchError/FeedParseError.kind
    http_status: int | None = None
    headers: Mapping[str, str] = field(default_factory=dict)  # Cache-Control, Expires, ...
    hints: FeedHints = field(default_factory=FeedHints)
    entry_interval_s: float | None = None  # see entry_interval_s()
    gap: bool = False  # entries were missed between the previous poll and this one


@dataclass(frozen=True)
class Decision:
    due: datetime
    interval_s: float  # due - now, in seconds
    # interval, adaptive, max-age, expires, ttl, update-period, gap,
    # retry-after, backoff, skip-hours, skip-days
    reason: str


# ----------------------------------------------------------------- parsers


def header(headers: Mapping[str, str], name: str) -> str | None:
    """A header by name, case-insensitively (plain dicts are not)."""
    value = headers.get(name)
    if value is not None:
        return value
    lower = name.lower()
    for key, val in headers.items():
        if key.lower() == lower:
            return val
    return None


def _seconds(value: str | None) -> float | None:
    m = _DIGITS.fullmatch(value) if value is not None else None
    return float(m.group(1)) if m else None


def _http_date(value: str) -> datetime | None:
    try:
        when = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when


def _aware(now: datetime) -> datetime:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    return now


def cache_max_age(headers: Mapping[str, str]) -> float | None:
    """Seconds the response stays fresh per Cache-Control, minus its Age.

    ``s-maxage`` (what a CDN in front of the feed keeps) wins over
    ``max-age``; ``no-cache`` or ``no-store`` give 0; None without either.
    """
    value = header(headers, "Cache-Control")
    if not value:
        return None
    directives: dict[str, str] = {}
    for part in value.split(","):
        name, _, arg = part.partition("=")
        directives.setdefault(name.strip().lower(), arg.strip().strip('"'))
    if "no-store" in directives or "no-cache" in directives:
        return 0.0
    for name in ("s-maxage", "max-age"):
        if name in directives:
            fresh = _seconds(directives[name])
            if fresh is not None:
                age = _seconds(header(headers, "Age")) or 0.0
                return min(max(0.0, fresh - age), _MAX_HINT_S)
    return None


def expires_in(headers: Mapping[str, str], now: datetime) -> float | None:
    """Seconds until ``Expires``, measured from ``Date`` if valid, else from now.

    An unreadable Expires (``0``, ``-1``) means already expired: 0.
    """
    value = header(headers, "Expires")
    if value is None:
        return None
    expires = _http_date(value)
    if expires is None:
        return 0.0
    date_value = header(headers, "Date")
    origin = (_http_date(date_value) if date_value else None) or _aware(now)
    return min(max(0.0, (expires - origin).total_seconds()), _MAX_HINT_S)


def retry_after(value: str | None, now: datetime, cap_s: float = 86400.0) -> float | None:
    """``Retry-After`` as seconds from now (delta-seconds or an HTTP-date), capped."""
    if value is None:
        return None
    seconds = _seconds(value)
    if seconds is None:
        when = _http_date(value)
        if when is None:
            return None
        seconds = max(0.0, (when - _aware(now)).total_seconds())
    return min(seconds, cap_s)


def ttl_seconds(value: object) -> float | None:
    """RSS ``<ttl>`` (minutes) as seconds; None unless a positive whole number."""
    minutes = _seconds(value) if isinstance(value, str) else None
    return min(minutes * 60.0, _MAX_HINT_S) if minutes else None


def update_period_seconds(period: object, frequency: object) -> float | None:
    """``sy:updatePeriod`` / ``sy:updateFrequency`` as seconds between updates.

    Either alone is enough: the module's defaults are ``daily`` and 1.
    """
    if not isinstance(period, str) and not isinstance(frequency, str):
        return None
    name = period.strip().lower() if isinstance(period, str) and period.strip() else "daily"
    span = _PERIODS_S.get(name)
    times = _seconds(frequency) if isinstance(frequency, str) else None
    if span is None:
        return None
    return span / times if times else span


def skip_hours_of(values: Iterable[str]) -> tuple[int, ...]:
    """``<skipHours>`` hour values as sorted GMT hours 0-23 (24 means midnight)."""
    hours = set()
    for value in values:
        n = _seconds(value)
        if n is not None and n <= 24:
            hours.add(int(n) % 24)
    return tuple(sorted(hours))


def skip_days_of(values: Iterable[str]) -> tuple[str, ...]:
    """``<skipDays>`` day names, normalised to ``DAY_NAMES`` (3-letter forms too)."""
    days = set()
    for value in values:
        word = value.strip().lower()
        for name in DAY_NAMES:
            if len(word) >= 3 and name.lower().startswith(word):
                days.add(name)
    return tuple(d for d in DAY_NAMES if d in days)


def entry_interval_s(
    published: Iterable[datetime | None], now: datetime, *, last: int = 20
) -> float | None:
    """The typical gap between entries: median gap of the ``last`` newest dates.

    Undated, future and duplicate dates are ignored; fewer than two distinct
    dates give None. A feed that has gone quiet for longer than its median
    gap reports the time since its newest entry instead.
    """
    now = _aware(now)
    dates = sorted(
        {d for d in published if d is not None and d.tzinfo is not None and d <= now},
        reverse=True,
    )[: max(2, last)]
    if len(dates) < 2:
        return None
    gaps = [(a - b).total_seconds() for a, b in itertools.pairwise(dates)]
    return max(statistics.median(gaps), (now - dates[0]).total_seconds())


# ----------------------------------------------------------------- decision


def _positive(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) and value > 0 else None


def _clamp(value: float, policy: PollPolicy) -> float:
    return min(max(value, policy.min_interval_s), policy.max_interval_s)


def _error_wait(policy: PollPolicy, facts: PollFacts, now: datetime) -> tuple[float, str, float]:
    asked = facts.http_status in _RETRY_STATUSES or (
        facts.http_status is None and facts.error_kind in _RETRY_KINDS
    )
    if asked:
        wait = retry_after(header(facts.headers, "Retry-After"), now, policy.retry_after_cap_s)
        if wait is not None:
            wait = max(wait, policy.min_interval_s)
            return wait, "retry-after", wait
    exponent = min(max(facts.consecutive_errors, 1) - 1, 64)  # 2.0**1100 overflows
    wait = min(policy.backoff_base_s * 2.0**exponent, policy.backoff_ceiling_s)
    return max(wait, policy.min_interval_s), "backoff", 0.0


def _server_floor(facts: PollFacts, now: datetime) -> tuple[float, str]:
    fresh = cache_max_age(facts.headers)
    candidates = [
        (fresh, "max-age"),
        (expires_in(facts.headers, now) if fresh is None else None, "expires"),
        (_positive(facts.hints.ttl_s), "ttl"),
        (_positive(facts.hints.update_period_s), "update-period"),
    ]
    return max(((v, r) for v, r in candidates if v is not None), default=(0.0, ""))


def _success_interval(
    policy: PollPolicy, facts: PollFacts, now: datetime
) -> tuple[float, str, float]:
    interval, reason = _clamp(policy.interval_s, policy), "interval"
    observed = _positive(facts.entry_interval_s)
    if observed is not None and policy.adapt_weight > 0:
        w = policy.adapt_weight
        log_mean = (1 - w) * math.log(policy.interval_s) + w * math.log(observed)
        adapted = _clamp(math.exp(min(log_mean, 700.0)), policy)
        if not math.isclose(adapted, interval, rel_tol=1e-9):
            interval, reason = adapted, "adaptive"
    floor, hint = _server_floor(facts, now)
    floor = min(floor, policy.max_interval_s)
    if floor > interval:
        interval, reason = floor, hint
    if facts.gap:
        halved = max(interval / 2, policy.min_interval_s, floor)
        if halved < interval:
            interval, reason = halved, "gap"
    return interval, reason, floor


def _skipped(when: datetime, hours: frozenset[int], days: frozenset[str]) -> str | None:
    if DAY_NAMES[when.weekday()] in days:
        return "skip-days"
    return "skip-hours" if when.hour in hours else None


def _skip(
    due: datetime, hints: FeedHints, latest: datetime, rng: random.Random, jitter: float
) -> tuple[datetime, str | None]:
    hours = frozenset(h for h in hints.skip_hours if 0 <= h <= 23)
    days = frozenset(d for d in hints.skip_days if d in DAY_NAMES)
    if len(hours) == 24:
        hours = frozenset()
    if len(days) == 7:
        days = frozenset()
    utc = due.astimezone(UTC)
    reason = _skipped(utc, hours, days)
    if reason is None:
        return due, None
    slot = utc.replace(minute=0, second=0, microsecond=0)
    for _ in range(8 * 24):
        slot += timedelta(hours=1)
        if _skipped(slot, hours, days) is None:
            moved = slot + timedelta(seconds=rng.uniform(0.0, jitter) * 3600.0)
            return min(moved, latest).astimezone(due.tzinfo), reason
    return due, None  # unreachable: some hour of some day is allowed


def next_poll(policy: PollPolicy, facts: PollFacts, now: datetime, rng: random.Random) -> Decision:
    """When to poll next, and why; see the module docstring for the rules."""
    now = _aware(now)
    if facts.outcome == "failed":
        interval, reason, floor = _error_wait(policy, facts, now)
    else:
        interval, reason, floor = _success_interval(policy, facts, now)
    # Jitter never takes us below what the server asked for.
    low = max(-policy.jitter, min(0.0, floor / interval - 1.0))
    interval *= 1.0 + rng.uniform(low, policy.jitter)
    due = now + timedelta(seconds=interval)
    if facts.outcome != "failed":
        latest = max(due, now + timedelta(seconds=policy.max_interval_s))
        due, skip_reason = _skip(due, facts.hints, latest, rng, policy.jitter)
        reason = skip_reason or reason
    return Decision(due=due, interval_s=(due - now).total_seconds(), reason=reason)
