"""monitor.schedule: the next poll time, a pure function tested by tables.

Every table uses the same ``NOW`` (Tuesday 4 March 2025, 12:00 GMT) and, unless
a test is about jitter, a policy without jitter so the expected intervals are exact.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.entries import ParsedFeed
from monitor.feedparse import parse_feed
from monitor.schedule import (
    DAY_NAMES,
    Decision,
    FeedHints,
    PollFacts,
    PollPolicy,
    cache_max_age,
    entry_interval_s,
    expires_in,
    header,
    next_poll,
    retry_after,
    skip_days_of,
    skip_hours_of,
    ttl_seconds,
    update_period_seconds,
)

NOW = datetime(2025, 3, 4, 12, 0, tzinfo=UTC)  # a Tuesday
HOUR = 3600.0
DAY = 86400.0
POLICY = PollPolicy(
    interval_s=HOUR,
    min_interval_s=300.0,
    max_interval_s=DAY,
    backoff_base_s=600.0,
    backoff_ceiling_s=6 * HOUR,
    jitter=0.0,
    retry_after_cap_s=2 * HOUR,
    adapt_weight=0.5,
)
EPS = timedelta(microseconds=1)  # due is rounded to whole microseconds


def decide(facts: PollFacts, policy: PollPolicy = POLICY, seed: int = 7) -> Decision:
    return next_poll(policy, facts, NOW, random.Random(seed))


def http_date(when: datetime) -> str:
    return when.strftime("%a, %d %b %Y %H:%M:%S GMT")


def at(hours: float) -> str:
    """An HTTP date ``hours`` from NOW."""
    return http_date(NOW + timedelta(hours=hours))


def ok(**kwargs: object) -> PollFacts:
    return PollFacts("ok", **kwargs)  # type: ignore[arg-type]


def failed(errors: int = 1, **kwargs: object) -> PollFacts:
    return PollFacts("failed", consecutive_errors=errors, **kwargs)  # type: ignore[arg-type]


def check(decision: Decision, interval_s: float, reason: str) -> None:
    assert decision.reason == reason
    assert decision.interval_s == pytest.approx(interval_s, abs=1e-5)
    assert abs(decision.due - (NOW + timedelta(seconds=interval_s))) <= EPS


# ------------------------------------------------------------ header parsers


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, None),
        ({"Cache-Control": "max-age=300"}, 300.0),
        ({"cache-control": "public, max-age=300"}, 300.0),
        ({"CACHE-CONTROL": "MAX-AGE=300"}, 300.0),
        ({"Cache-Control": 'max-age="300"'}, 300.0),
        ({"Cache-Control": " public ,  max-age = 300 , must-revalidate"}, 300.0),
        ({"Cache-Control": "s-maxage=600, max-age=300"}, 600.0),
        ({"Cache-Control": "max-age=300, s-maxage=600"}, 600.0),
        ({"Cache-Control": "s-maxage=junk, max-age=300"}, 300.0),
        ({"Cache-Control": "no-cache"}, 0.0),
        ({"Cache-Control": "no-store, max-age=300"}, 0.0),
        ({"Cache-Control": "max-age=300, no-cache"}, 0.0),
        ({"Cache-Control": "public"}, None),
        ({"Cache-Control": "max-age="}, None),
        ({"Cache-Control": "max-age=abc"}, None),
        ({"Cache-Control": "max-age=-5"}, None),
        ({"Cache-Control": "max-age=1.5"}, None),
        ({"Cache-Control": "max-age=1" + "0" * 40}, None),  # absurd: no hint at all
        ({"Cache-Control": "max-age=9999999999"}, 10 * 365 * DAY),  # capped
        ({"Cache-Control": ""}, None),
        ({"Cache-Control": ",,,="}, None),
        ({"Cache-Control": "max-age=300", "Age": "100"}, 200.0),
        ({"Cache-Control": "max-age=300", "age": "500"}, 0.0),
        ({"Cache-Control": "max-age=300", "Age": "old"}, 300.0),
        ({"Age": "100"}, None),
    ],
)
def test_cache_max_age(headers: Mapping[str, str], expected: float | None) -> None:
    assert cache_max_age(headers) == expected


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, None),
        ({"Expires": at(1)}, HOUR),
        ({"expires": at(1)}, HOUR),
        ({"Expires": at(1), "Date": at(0.5)}, HOUR / 2),  # the server's clock wins
        ({"Expires": at(3), "Date": at(-1)}, 4 * HOUR),
        ({"Expires": at(1), "Date": "yesterday-ish"}, HOUR),  # bad Date: from now
        ({"Expires": at(-1)}, 0.0),
        ({"Expires": "0"}, 0.0),  # RFC 9111: an invalid date means already expired
        ({"Expires": "-1"}, 0.0),
        ({"Expires": ""}, 0.0),
        ({"Expires": "Tue, 04 Mar 2025 14:00:00 +0100"}, HOUR),
        ({"Expires": "Tue, 04 Mar 2025 13:00:00 -0000"}, HOUR),
        ({"Expires": "Fri, 31 Dec 9999 23:59:59 GMT"}, 10 * 365 * DAY),  # capped
    ],
)
def test_expires_in(headers: Mapping[str, str], expected: float | None) -> None:
    assert expires_in(headers, NOW) == expected


@pytest.mark.parametrize(
    ("value", "cap_s", "expected"),
    [
        (None, DAY, None),
        ("120", DAY, 120.0),
        ("  120 ", DAY, 120.0),
        ("0", DAY, 0.0),
        ("999999", DAY, DAY),
        ("-1", DAY, None),
        ("1.5", DAY, None),
        ("soon", DAY, None),
        ("", DAY, None),
        ("9" * 5000, DAY, None),
        (at(0.5), DAY, HOUR / 2),
        ("Tue, 04 Mar 2025 13:30:00 +0100", DAY, HOUR / 2),
        (at(-2), DAY, 0.0),
        (at(24 * 365), DAY, DAY),
        (at(3), HOUR, HOUR),
        ("Tuesday at noon", DAY, None),
    ],
)
def test_retry_after(value: str | None, cap_s: float, expected: float | None) -> None:
    assert retry_after(value, NOW, cap_s) == expected


def test_header_lookup_is_case_insensitive() -> None:
    assert header({"retry-after": "5"}, "Retry-After") == "5"
    assert header({"Retry-After": "5"}, "retry-after") == "5"
    assert header({"Other": "5"}, "Retry-After") is None


def test_naive_now_is_refused() -> None:
    naive = datetime(2025, 3, 4, 12, 0)
    with pytest.raises(ValueError, match="timezone-aware"):
        next_poll(POLICY, ok(), naive, random.Random(1))
    with pytest.raises(ValueError, match="timezone-aware"):
        retry_after(at(1), naive)


# ------------------------------------------------------------ feed hints


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("30", 1800.0),
        (" 60 ", HOUR),
        ("0", None),
        ("-5", None),
        ("1.5", None),
        ("abc", None),
        ("", None),
        (None, None),
        (30, None),  # feedparser always gives text; anything else is not trusted
        ("99999999999", 10 * 365 * DAY),
    ],
)
def test_ttl_seconds(value: object, expected: float | None) -> None:
    assert ttl_seconds(value) == expected


@pytest.mark.parametrize(
    ("period", "frequency", "expected"),
    [
        ("hourly", "2", HOUR / 2),
        ("daily", None, DAY),
        (None, "4", DAY / 4),  # the module's default period is daily
        ("", "4", DAY / 4),
        ("Weekly", "1", 7 * DAY),
        (" monthly ", "", 30 * DAY),
        ("yearly", "1", 365 * DAY),
        ("daily", "0", DAY),
        ("daily", "often", DAY),
        ("fortnightly", "1", None),
        (None, None, None),
    ],
)
def test_update_period_seconds(period: object, frequency: object, expected: float | None) -> None:
    assert update_period_seconds(period, frequency) == expected


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([], ()),
        (["0", "23", " 5 "], (0, 5, 23)),
        (["7", "7", "07"], (7,)),
        (["24"], (0,)),  # some feeds count 1-24
        (["25", "-1", "x", "", "3.5"], ()),
    ],
)
def test_skip_hours_of(values: list[str], expected: tuple[int, ...]) -> None:
    assert skip_hours_of(values) == expected


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([], ()),
        (["Saturday", "sunday", " MONDAY "], ("Monday", "Saturday", "Sunday")),
        (["Sat", "thu"], ("Thursday", "Saturday")),
        (["Sa", "Funday", ""], ()),
        (["Friday", "Friday"], ("Friday",)),
    ],
)
def test_skip_days_of(values: list[str], expected: tuple[str, ...]) -> None:
    assert skip_days_of(values) == expected


def _ago(*minutes: float) -> list[datetime | None]:
    return [NOW - timedelta(minutes=m) for m in minutes]


@pytest.mark.parametrize(
    ("published", "last", "expected"),
    [
        ([], 20, None),
        (_ago(5), 20, None),
        ([None, None], 20, None),
        (_ago(5, 5, 5), 20, None),  # one distinct date
        (_ago(5, 15, 25, 35, 45), 20, 600.0),
        (_ago(45, 5, 35, 15, 25), 20, 600.0),  # order does not matter
        (_ago(5, 5, 15, 15, 25, 25), 20, 600.0),  # duplicates ignored
        ([*_ago(5, 15, 25), None, None], 20, 600.0),  # undated ignored
        ([*_ago(5, 15, 25), NOW + timedelta(days=3)], 20, 600.0),  # future ignored
        ([datetime(2025, 3, 4, 11, 55), *_ago(5, 15)], 20, 600.0),  # naive ignored
        (_ago(5, 15, 35, 65, 105), 20, 1500.0),  # even count: mean of the middle two
        (_ago(60 * 24, 60 * 24 * 8, 60 * 24 * 15), 20, 7 * DAY),  # weekly
        (_ago(60 * 24 * 30, 60 * 24 * 30 + 10, 60 * 24 * 30 + 20), 20, 30 * DAY),  # quiet
        (_ago(1, 2, 3, 4, 5, 6, 1000, 2000, 3000, 4000, 5000), 6, 60.0),  # newest only
        (_ago(1, 2, 3, 4, 5, 6, 1000, 2000, 3000, 4000, 5000, 6000, 7000), 20, 59820.0),
    ],
)
def test_entry_interval_s(published: list[datetime | None], last: int, expected: float) -> None:
    assert entry_interval_s(published, NOW, last=last) == expected


# ------------------------------------------------------------ the policy object


@pytest.mark.parametrize(
    "changes",
    [
        {"interval_s": 0.0},
        {"interval_s": math.inf},
        {"min_interval_s": math.nan},
        {"min_interval_s": -1.0},
        {"min_interval_s": 2 * DAY},  # above max_interval_s
        {"backoff_base_s": 60.0},  # below min_interval_s
        {"backoff_ceiling_s": 500.0},  # below backoff_base_s
        {"retry_after_cap_s": 100.0},  # below min_interval_s
        {"retry_after_cap_s": 2 * DAY},  # above max(ceiling, max_interval)
        {"jitter": -0.1},
        {"jitter": 1.0},
        {"adapt_weight": 1.5},
    ],
)
def test_invalid_policies_are_refused(changes: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        replace(POLICY, **changes)


# ------------------------------------------------------------ rule 1: errors


@pytest.mark.parametrize(
    ("errors", "expected"),
    [
        (0, 600.0),  # a failure counts as at least one error
        (1, 600.0),
        (2, 1200.0),
        (3, 2400.0),
        (4, 4800.0),
        (6, 19200.0),
        (7, 6 * HOUR),  # 38400 capped at the ceiling
        (8, 6 * HOUR),
        (1000, 6 * HOUR),  # never gives up, never overflows
        (10**9, 6 * HOUR),
    ],
)
def test_backoff_grows_to_the_ceiling_and_stays(errors: int, expected: float) -> None:
    check(decide(failed(errors, error_kind="timeout")), expected, "backoff")


def test_backoff_is_never_below_the_min_interval() -> None:
    policy = replace(POLICY, backoff_base_s=300.0, min_interval_s=300.0)
    check(decide(failed(1), policy), 300.0, "backoff")


@pytest.mark.parametrize(
    ("status", "kind", "headers", "expected", "reason"),
    [
        (429, "http_429", {"Retry-After": "1800"}, 1800.0, "retry-after"),
        (429, "http_429", {"retry-after": "1800"}, 1800.0, "retry-after"),
        (429, "http_429", {"Retry-After": "120"}, 300.0, "retry-after"),  # at least min
        (429, "http_429", {"Retry-After": "0"}, 300.0, "retry-after"),
        (429, "http_429", {"Retry-After": "999999"}, 2 * HOUR, "retry-after"),  # capped
        (429, "http_429", {"Retry-After": at(0.5)}, 1800.0, "retry-after"),
        (429, "http_429", {"Retry-After": at(-1)}, 300.0, "retry-after"),
        (429, "http_429", {"Retry-After": at(24)}, 2 * HOUR, "retry-after"),
        (429, "http_429", {"Retry-After": "later, please"}, 600.0, "backoff"),
        (429, "http_429", {}, 600.0, "backoff"),
        (503, "http_5xx", {"Retry-After": "900"}, 900.0, "retry-after"),
        (None, "http_5xx", {"Retry-After": "900"}, 900.0, "retry-after"),  # 503 filed as 5xx
        (None, "http_429", {"Retry-After": "900"}, 900.0, "retry-after"),
        (None, "http_503", {"Retry-After": "900"}, 900.0, "retry-after"),
        (500, "http_5xx", {"Retry-After": "900"}, 600.0, "backoff"),  # only 429 and 503
        (None, "timeout", {"Retry-After": "900"}, 600.0, "backoff"),
        (None, None, {"Retry-After": "900"}, 600.0, "backoff"),
    ],
)
def test_retry_after_on_429_and_503(
    status: int | None, kind: str | None, headers: dict[str, str], expected: float, reason: str
) -> None:
    facts = failed(1, http_status=status, error_kind=kind, headers=headers)
    check(decide(facts), expected, reason)


def test_retry_after_replaces_a_long_backoff() -> None:
    facts = failed(9, http_status=429, headers={"Retry-After": "600"})
    check(decide(facts), 600.0, "retry-after")


HINTS = FeedHints(ttl_s=5 * HOUR, update_period_s=5 * HOUR, skip_hours=(14, 15), skip_days=())


@pytest.mark.parametrize(
    "facts",
    [
        failed(1, hints=HINTS),
        failed(1, headers={"Cache-Control": "max-age=20000"}),
        failed(1, gap=True),
        failed(1, entry_interval_s=60.0),
    ],
)
def test_success_rules_do_not_apply_to_errors(facts: PollFacts) -> None:
    # Rules 2-6 would give 5 h, 20000 s, 30 min or 465 s; the skipped 14:00-16:00 is
    # not avoided either (due 12:10).
    check(decide(facts), 600.0, "backoff")


# ------------------------------------------------------------ rule 2: interval


@pytest.mark.parametrize(
    ("policy", "facts", "expected", "reason"),
    [
        (POLICY, ok(), HOUR, "interval"),
        (POLICY, PollFacts("not_modified"), HOUR, "interval"),
        (POLICY, ok(entry_interval_s=600.0), math.sqrt(HOUR * 600.0), "adaptive"),
        (POLICY, ok(entry_interval_s=7 * DAY), math.sqrt(HOUR * 7 * DAY), "adaptive"),
        (
            POLICY,
            PollFacts("not_modified", entry_interval_s=600.0),
            math.sqrt(HOUR * 600.0),
            "adaptive",
        ),
        (POLICY, ok(entry_interval_s=HOUR), HOUR, "interval"),  # nothing to adapt
        (POLICY, ok(entry_interval_s=1.0), 300.0, "adaptive"),  # clamped to min
        (POLICY, ok(entry_interval_s=1e12), DAY, "adaptive"),  # clamped to max
        (POLICY, ok(entry_interval_s=1e308), DAY, "adaptive"),
        (POLICY, ok(entry_interval_s=0.0), HOUR, "interval"),  # nonsense is ignored
        (POLICY, ok(entry_interval_s=-600.0), HOUR, "interval"),
        (POLICY, ok(entry_interval_s=math.nan), HOUR, "interval"),
        (POLICY, ok(entry_interval_s=math.inf), HOUR, "interval"),
        (replace(POLICY, adapt_weight=0.0), ok(entry_interval_s=600.0), HOUR, "interval"),
        (replace(POLICY, adapt_weight=1.0), ok(entry_interval_s=600.0), 600.0, "adaptive"),
        (replace(POLICY, interval_s=30.0), ok(), 300.0, "interval"),  # clamped to min
        (replace(POLICY, interval_s=1e6), ok(), DAY, "interval"),  # clamped to max
    ],
)
def test_success_interval(
    policy: PollPolicy, facts: PollFacts, expected: float, reason: str
) -> None:
    check(decide(facts, policy), expected, reason)


def test_a_frequent_feed_is_polled_more_often_and_a_weekly_one_less() -> None:
    every_10_min = decide(ok(entry_interval_s=600.0)).interval_s
    weekly = decide(ok(entry_interval_s=7 * DAY)).interval_s
    assert every_10_min < POLICY.interval_s < weekly


# ------------------------------------------------------------ rule 3: server hints


@pytest.mark.parametrize(
    ("facts", "expected", "reason"),
    [
        (ok(headers={"Cache-Control": "max-age=7200"}), 7200.0, "max-age"),
        (ok(headers={"Cache-Control": "max-age=60"}), HOUR, "interval"),  # only lengthens
        (ok(headers={"Cache-Control": "max-age=7200", "Age": "1800"}), 5400.0, "max-age"),
        (ok(headers={"Cache-Control": "s-maxage=10800, max-age=60"}), 10800.0, "max-age"),
        (ok(headers={"Cache-Control": "no-cache, max-age=7200"}), HOUR, "interval"),
        (ok(headers={"Cache-Control": "max-age=999999"}), DAY, "max-age"),  # clamped
        (ok(headers={"Expires": at(2)}), 2 * HOUR, "expires"),
        (ok(headers={"Expires": at(2), "Date": at(-1)}), 3 * HOUR, "expires"),
        (ok(headers={"Expires": at(0.5)}), HOUR, "interval"),
        # RFC 9111: with a max-age, Expires is not consulted
        (ok(headers={"Cache-Control": "max-age=60", "Expires": at(5)}), HOUR, "interval"),
        (ok(headers={"Cache-Control": "no-store", "Expires": at(5)}), HOUR, "interval"),
        (ok(headers={"Cache-Control": "public", "Expires": at(5)}), 5 * HOUR, "expires"),
        (ok(hints=FeedHints(ttl_s=2 * HOUR)), 2 * HOUR, "ttl"),
        (ok(hints=FeedHints(ttl_s=600.0)), HOUR, "interval"),
        (ok(hints=FeedHints(update_period_s=DAY / 4)), DAY / 4, "update-period"),
        (ok(hints=FeedHints(update_period_s=365 * DAY)), DAY, "update-period"),  # clamped
        (ok(hints=FeedHints(ttl_s=math.nan, update_period_s=-1.0)), HOUR, "interval"),
        # the largest hint wins
        (
            ok(headers={"Cache-Control": "max-age=10800"}, hints=FeedHints(ttl_s=7200.0)),
            10800.0,
            "max-age",
        ),
        (
            ok(headers={"Cache-Control": "max-age=7200"}, hints=FeedHints(ttl_s=10800.0)),
            10800.0,
            "ttl",
        ),
        (
            ok(hints=FeedHints(ttl_s=7200.0, update_period_s=DAY / 2)),
            DAY / 2,
            "update-period",
        ),
        # hints beat the adaptive interval: never poll more often than the server asks
        (ok(entry_interval_s=600.0, hints=FeedHints(ttl_s=1800.0)), 1800.0, "ttl"),
        (PollFacts("not_modified", headers={"Cache-Control": "max-age=7200"}), 7200.0, "max-age"),
    ],
)
def test_server_hints_only_lengthen(facts: PollFacts, expected: float, reason: str) -> None:
    check(decide(facts), expected, reason)


# ------------------------------------------------------------ rule 4: gap


@pytest.mark.parametrize(
    ("policy", "facts", "expected", "reason"),
    [
        (POLICY, ok(gap=True), HOUR / 2, "gap"),
        (POLICY, PollFacts("not_modified", gap=True), HOUR / 2, "gap"),
        (POLICY, ok(gap=True, entry_interval_s=600.0), math.sqrt(HOUR * 600.0) / 2, "gap"),
        (replace(POLICY, interval_s=500.0), ok(gap=True), 300.0, "gap"),  # not below min
        (replace(POLICY, interval_s=300.0), ok(gap=True), 300.0, "interval"),  # already min
        # not below what the server asks
        (POLICY, ok(gap=True, hints=FeedHints(ttl_s=2 * HOUR)), 2 * HOUR, "ttl"),
        (
            POLICY,
            ok(gap=True, entry_interval_s=7 * DAY, hints=FeedHints(ttl_s=30000.0)),
            30000.0,
            "gap",
        ),
        (
            replace(POLICY, interval_s=4 * HOUR),
            ok(gap=True, headers={"Cache-Control": "max-age=5400"}),
            2 * HOUR,
            "gap",
        ),
    ],
)
def test_gap_shortens(policy: PollPolicy, facts: PollFacts, expected: float, reason: str) -> None:
    check(decide(facts, policy), expected, reason)


# ------------------------------------------------------------ rule 6: skipHours/skipDays


WEEK_POLICY = replace(POLICY, max_interval_s=7 * DAY)


@pytest.mark.parametrize(
    ("policy", "hints", "expected", "reason"),
    [
        # due 13:00, not skipped
        (POLICY, FeedHints(skip_hours=(5, 14)), HOUR, "interval"),
        # due 13:00 skipped: first allowed hour 14:00
        (POLICY, FeedHints(skip_hours=(13,)), 2 * HOUR, "skip-hours"),
        (POLICY, FeedHints(skip_hours=(13, 14, 15)), 4 * HOUR, "skip-hours"),
        # due 13:30 moves to 14:00, not 14:30
        (replace(POLICY, interval_s=5400.0), FeedHints(skip_hours=(13,)), 2 * HOUR, "skip-hours"),
        # wrap-around past midnight: due 22:00 Tue, skipped until 03:00 Wed
        (
            replace(POLICY, interval_s=10 * HOUR),
            FeedHints(skip_hours=(22, 23, 0, 1, 2)),
            15 * HOUR,
            "skip-hours",
        ),
        # every hour skipped but 09:00: due 13:00 Tue, next 09:00 Wed
        (
            POLICY,
            FeedHints(skip_hours=tuple(h for h in range(24) if h != 9)),
            21 * HOUR,
            "skip-hours",
        ),
        # every hour skipped: the hint is ignored
        (POLICY, FeedHints(skip_hours=tuple(range(24))), HOUR, "interval"),
        # out-of-range hours are ignored
        (POLICY, FeedHints(skip_hours=(-1, 24, 99)), HOUR, "interval"),
        # skip Tuesday: due Tue 13:00, next Wed 00:00
        (POLICY, FeedHints(skip_days=("Tuesday",)), 12 * HOUR, "skip-days"),
        (POLICY, FeedHints(skip_days=("Wednesday",)), HOUR, "interval"),
        (POLICY, FeedHints(skip_days=DAY_NAMES), HOUR, "interval"),  # every day: ignored
        (POLICY, FeedHints(skip_days=("Caturday",)), HOUR, "interval"),
        # skip Tue and Wed: Thu 00:00 is 36 h away, past max_interval_s: poll at the max
        (POLICY, FeedHints(skip_days=("Tuesday", "Wednesday")), DAY, "skip-days"),
        (WEEK_POLICY, FeedHints(skip_days=("Tuesday", "Wednesday")), 36 * HOUR, "skip-days"),
        # days and hours: due Wed 00:00 (skipped day), Thu 00:00-05:59 skipped hours
        (
            replace(WEEK_POLICY, interval_s=12 * HOUR),
            FeedHints(skip_hours=(0, 1, 2, 3, 4, 5), skip_days=("Wednesday",)),
            42 * HOUR,
            "skip-days",
        ),
        # a skipped hour on an allowed day reports skip-hours
        (
            replace(WEEK_POLICY, interval_s=12 * HOUR),
            FeedHints(skip_hours=(0, 1), skip_days=("Tuesday",)),
            14 * HOUR,
            "skip-hours",
        ),
    ],
)
def test_skip_hours_and_days(
    policy: PollPolicy, hints: FeedHints, expected: float, reason: str
) -> None:
    check(decide(ok(hints=hints), policy), expected, reason)


def test_skip_is_applied_after_server_hints_and_gap() -> None:
    facts = ok(gap=True, hints=FeedHints(ttl_s=2 * HOUR, skip_hours=(14,)))
    check(decide(facts), 3 * HOUR, "skip-hours")  # ttl 2 h: due 14:00, skipped to 15:00


def test_skip_works_in_gmt_whatever_the_zone_of_now() -> None:
    local_now = NOW.astimezone(timezone(timedelta(hours=5)))  # 17:00 there, 12:00 GMT
    decision = next_poll(POLICY, ok(hints=FeedHints(skip_hours=(13,))), local_now, random.Random(1))
    assert decision.due == NOW + timedelta(hours=2)
    assert decision.reason == "skip-hours"


# ------------------------------------------------------------ rule 5: jitter


JITTERY = replace(POLICY, jitter=0.2)


@pytest.mark.parametrize(
    ("facts", "low", "high"),
    [
        (ok(), 0.8 * HOUR, 1.2 * HOUR),
        (ok(gap=True), 0.4 * HOUR, 0.6 * HOUR),
        (failed(3), 0.8 * 2400, 1.2 * 2400),
        (failed(50), 0.8 * 6 * HOUR, 1.2 * 6 * HOUR),
        # server-asked waits are only lengthened
        (failed(1, http_status=429, headers={"Retry-After": "1800"}), 1800.0, 1.2 * 1800),
        (ok(hints=FeedHints(ttl_s=2 * HOUR)), 2 * HOUR, 1.2 * 2 * HOUR),
        (ok(headers={"Cache-Control": "max-age=7200"}), 2 * HOUR, 1.2 * 2 * HOUR),
        # a hint just below the interval: jitter stops at the hint
        (ok(hints=FeedHints(ttl_s=0.9 * HOUR)), 0.9 * HOUR, 1.2 * HOUR),
        # a skipped hour: somewhere in the first 20% of the first allowed hour
        (ok(hints=FeedHints(skip_hours=(12, 13))), 2 * HOUR, 2.2 * HOUR),
    ],
)
def test_jitter_spreads_within_bounds(facts: PollFacts, low: float, high: float) -> None:
    seen = set()
    for seed in range(200):
        decision = decide(facts, JITTERY, seed)
        assert low - 1e-5 <= decision.interval_s <= high + 1e-5
        seen.add(decision.due)
        assert decide(facts, JITTERY, seed) == decision  # same seed, same answer
    assert len(seen) > 150  # different seeds spread the feeds out


def test_jitter_uses_only_the_given_rng() -> None:
    random.seed(1)
    first = decide(ok(), JITTERY, seed=3)
    random.seed(2)
    assert decide(ok(), JITTERY, seed=3) == first


# ------------------------------------------------------------ the bounds, for any facts


HEADER_VALUES = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["max-age=0", "max-age=999999999", "no-cache", "s-maxage=40", "0"]),
    st.integers(-(10**12), 10**12).map(str),
    st.datetimes(
        min_value=datetime(1990, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
    ).map(http_date),
)
ANY_SECONDS = st.one_of(
    st.none(), st.floats(allow_nan=True, allow_infinity=True), st.floats(0.0, 1e9)
)


@st.composite
def policies(draw: st.DrawFn) -> PollPolicy:
    min_s = draw(st.floats(1.0, 3600.0))
    max_s = draw(st.floats(min_s, 30 * DAY))
    base = draw(st.floats(min_s, 4 * HOUR))
    ceiling = draw(st.floats(base, 30 * DAY))
    return PollPolicy(
        interval_s=draw(st.floats(1.0, 30 * DAY)),
        min_interval_s=min_s,
        max_interval_s=max_s,
        backoff_base_s=base,
        backoff_ceiling_s=ceiling,
        jitter=draw(st.floats(0.0, 0.9)),
        retry_after_cap_s=draw(st.floats(min_s, max(ceiling, max_s))),
        adapt_weight=draw(st.floats(0.0, 1.0)),
    )


FACTS = st.builds(
    PollFacts,
    outcome=st.sampled_from(["ok", "not_modified", "failed"]),
    consecutive_errors=st.integers(-5, 10**6),
    error_kind=st.sampled_from([None, "timeout", "http_429", "http_5xx", "dns"]),
    http_status=st.sampled_from([None, 200, 304, 429, 500, 503]),
    headers=st.dictionaries(
        st.sampled_from(["Cache-Control", "expires", "Date", "Retry-After", "Age", "X"]),
        HEADER_VALUES,
    ),
    hints=st.builds(
        FeedHints,
        ttl_s=ANY_SECONDS,
        update_period_s=ANY_SECONDS,
        skip_hours=st.lists(st.integers(-2, 26), max_size=30).map(tuple),
        skip_days=st.lists(st.sampled_from([*DAY_NAMES, "Funday"]), max_size=8).map(tuple),
    ),
    entry_interval_s=ANY_SECONDS,
    gap=st.booleans(),
)


@settings(max_examples=400, deadline=None)
@given(
    policies(),
    FACTS,
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1)),
    st.integers(0, 2**32),
)
def test_due_is_always_within_bounds(
    policy: PollPolicy, facts: PollFacts, naive_now: datetime, seed: int
) -> None:
    now = naive_now.replace(tzinfo=UTC)
    decision = next_poll(policy, facts, now, random.Random(seed))
    low = now + timedelta(seconds=policy.min_interval_s * (1 - policy.jitter))
    longest = max(policy.backoff_ceiling_s, policy.max_interval_s)
    high = now + timedelta(seconds=longest * (1 + policy.jitter))
    assert low - EPS <= decision.due <= high + EPS
    assert decision.interval_s == (decision.due - now).total_seconds()
    assert decision.reason
    assert next_poll(policy, facts, now, random.Random(seed)) == decision


# ------------------------------------------------------------ parse_feed reads the hints


SY = "http://purl.org/rss/1.0/modules/syndication/"


def parse(doc: str) -> ParsedFeed:
    return parse_feed(doc.encode("utf-8"), "http://feeds.example/rss.xml", "hints", None)


def rss(channel: str, ns: str = f' xmlns:sy="{SY}"') -> str:
    return (
        f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"{ns}><channel>'
        f"<title>Harbour Notes</title><link>http://feeds.example/</link>{channel}"
        "<item><title>Tide tables updated</title><guid>hn-1</guid></item></channel></rss>"
    )


def test_parse_feed_reads_every_hint() -> None:
    feed = parse(
        rss(
            "<ttl>45</ttl><sy:updatePeriod>hourly</sy:updatePeriod>"
            "<sy:updateFrequency>2</sy:updateFrequency>"
            "<skipHours>\n  <hour>0</hour>\n  <hour>23</hour>\n  <hour>1</hour>\n</skipHours>"
            "<skipDays><day>Saturday</day><day>Sunday</day></skipDays>"
        )
    )
    assert feed.ttl_s == 45 * 60.0
    assert feed.update_period_s == HOUR / 2
    assert feed.skip_hours == (0, 1, 23)  # feedparser alone keeps only the last <hour>
    assert feed.skip_days == ("Saturday", "Sunday")
    assert FeedHints.from_parsed(feed) == FeedHints(
        2700.0, 1800.0, (0, 1, 23), ("Saturday", "Sunday")
    )
    assert [e.title for e in feed.entries] == ["Tide tables updated"]


@pytest.mark.parametrize(
    ("channel", "ns", "field", "expected"),
    [
        ("", f' xmlns:sy="{SY}"', "ttl_s", None),
        ("<ttl>soon</ttl>", "", "ttl_s", None),
        ("<ttl> 90 </ttl>", "", "ttl_s", 5400.0),
        # any prefix for the syndication namespace
        ("<s:updatePeriod>weekly</s:updatePeriod>", f' xmlns:s="{SY}"', "update_period_s", 7 * DAY),
        (
            "<sy:updateFrequency>4</sy:updateFrequency>",
            f' xmlns:sy="{SY}"',
            "update_period_s",
            DAY / 4,
        ),
        (
            "<sy:updatePeriod>sometimes</sy:updatePeriod>",
            f' xmlns:sy="{SY}"',
            "update_period_s",
            None,
        ),
        ("<skipHours><hour>5</hour></skipHours>", "", "skip_hours", (5,)),
        ("<skiphours><hour>24</hour><hour>x</hour></skiphours>", "", "skip_hours", (0,)),
        ("<skipHours></skipHours>", "", "skip_hours", ()),
        ("<skipHours><hour>5</hour>", "", "skip_hours", ()),  # never closed
        ("<skipDays><day> monday </day><day>Funday</day></skipDays>", "", "skip_days", ("Monday",)),
        ("<skipDays/>", "", "skip_days", ()),
        ("", "", "skip_days", ()),
    ],
)
def test_parse_feed_hint_variants(channel: str, ns: str, field: str, expected: object) -> None:
    assert getattr(parse(rss(channel, ns)), field) == expected


def test_parse_feed_reads_sy_hints_in_rss_1_0() -> None:
    doc = (
        '<?xml version="1.0"?><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"'
        f' xmlns="http://purl.org/rss/1.0/" xmlns:sy="{SY}">'
        '<channel rdf:about="http://feeds.example/"><title>Harbour Notes</title>'
        "<link>http://feeds.example/</link><description>notes</description>"
        "<sy:updatePeriod>daily</sy:updatePeriod><sy:updateFrequency>3</sy:updateFrequency>"
        "</channel>"
        '<item rdf:about="http://feeds.example/1"><title>Buoy moved</title>'
        "<link>http://feeds.example/1</link></item></rdf:RDF>"
    )
    feed = parse(doc)
    assert feed.update_period_s == DAY / 3
    assert feed.ttl_s is None


def test_parse_feed_atom_has_no_hints() -> None:
    doc = (
        '<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom">'
        "<title>Harbour Notes</title><id>urn:hn</id><updated>2025-03-04T10:00:00Z</updated>"
        "<entry><title>Pier closed</title><id>urn:hn:1</id>"
        "<updated>2025-03-04T10:00:00Z</updated></entry></feed>"
    )
    feed = parse(doc)
    assert (feed.ttl_s, feed.update_period_s, feed.skip_hours, feed.skip_days) == (
        None,
        None,
        (),
        (),
    )


def test_skip_block_scan_is_linear_on_hostile_bytes() -> None:
    # Thousands of unclosed openers inside a comment: feedparser ignores them,
    # the byte scan must not go quadratic over them.
    junk = "<skipHours <hour>1" * 20000 + "<skipDays <day>Monday" * 20000
    started = time.perf_counter()
    feed = parse(rss(f"<!-- {junk} -->"))
    assert time.perf_counter() - started < 5.0
    assert feed.skip_hours == ()
    assert feed.skip_days == ()
