"""monitor.entries: entry identity, link normalisation, backfill window."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from monitor.entries import (
    Entry,
    entry_from_raw,
    entry_identity,
    is_within_backfill,
    normalise_link,
)

FEED_URL = "https://wire.example/feeds/main.xml"


@pytest.mark.parametrize(
    ("link", "expected"),
    [
        ("https://news.example/a/b", "https://news.example/a/b"),
        ("HTTPS://News.EXAMPLE/Case/Kept", "https://news.example/Case/Kept"),
        ("https://news.example:443/x", "https://news.example/x"),
        ("http://news.example:80/x", "http://news.example/x"),
        ("http://news.example:8080/x", "http://news.example:8080/x"),
        ("https://news.example:80/x", "https://news.example:80/x"),
        ("https://news.example/x#comments", "https://news.example/x"),
        ("https://news.example", "https://news.example/"),
        ("  https://news.example/x  ", "https://news.example/x"),
        (
            "https://news.example/x?id=7&utm_source=rss&utm_medium=feed&UTM_Campaign=s",
            "https://news.example/x?id=7",
        ),
        ("https://news.example/x?fbclid=abc&gclid=def&page=2", "https://news.example/x?page=2"),
        ("https://news.example/x?mc_cid=1&mc_eid=2&ocid=3&cmpid=4", "https://news.example/x"),
        ("https://news.example/x?b=2&a=1", "https://news.example/x?b=2&a=1"),  # order kept
        ("https://news.example/x?flag=&q=fjord", "https://news.example/x?flag=&q=fjord"),
        ("https://user:pw@news.example/x", "https://news.example/x"),
        ("http://[2001:DB8::1]:8080/x", "http://[2001:db8::1]:8080/x"),
        ("http://[2001:db8::1]/x", "http://[2001:db8::1]/x"),
    ],
)
def test_normalise_link(link: str, expected: str) -> None:
    assert normalise_link(link) == expected


def test_normalised_variants_of_one_story_agree() -> None:
    variants = [
        "https://news.example/2025/03/ferry?id=9",
        "HTTPS://NEWS.example:443/2025/03/ferry?id=9#top",
        "https://news.example/2025/03/ferry?utm_source=x&id=9&fbclid=y",
        " https://news.example/2025/03/ferry?id=9&utm_content=z ",
    ]
    assert {normalise_link(v) for v in variants} == {"https://news.example/2025/03/ferry?id=9"}


def test_ipv6_hosts_with_different_ports_do_not_collide() -> None:
    a = normalise_link("http://[2001:db8::1]:8080/")
    b = normalise_link("http://[2001:db8::1:8080]/")
    assert a != b


@pytest.mark.parametrize("link", ["http://news.example:eighty/x", "http://[2001:db8::1/x"])
def test_malformed_links_do_not_raise(link: str) -> None:
    assert normalise_link(link) == link
    assert entry_identity(None, link, "t", "s") == "link:" + link


@given(st.text(max_size=60))
def test_normalise_link_never_raises(link: str) -> None:
    normalise_link(link)
    normalise_link("http://" + link)


def test_identity_prefers_guid() -> None:
    assert entry_identity("  tag:wire,2025:1  ", "https://x.example/a", "T", "S") == (
        "guid:tag:wire,2025:1"
    )


def test_identity_falls_back_to_normalised_link() -> None:
    assert entry_identity(None, "HTTPS://X.example:443/a?utm_source=z#f", "T", "S") == (
        "link:https://x.example/a"
    )
    assert entry_identity("   ", "https://x.example/a", "T", "S") == "link:https://x.example/a"
    assert entry_identity("", "https://x.example/a", "T", "S") == "link:https://x.example/a"


def test_identity_falls_back_to_content_hash() -> None:
    one = entry_identity(None, None, "Harbour reopens", "Ferries run again")
    assert one.startswith("hash:")
    assert len(one) == len("hash:") + 32
    assert one == entry_identity("", "  ", "Harbour reopens", "Ferries run again")
    assert one != entry_identity(None, None, "Harbour reopens", "Ferries run again!")
    assert one != entry_identity(None, None, "Harbour reopen", "sFerries run again")
    assert one != entry_identity(None, None, "Harbour reopens", "")


@given(st.text(), st.text())
def test_same_content_same_hash(title: str, summary: str) -> None:
    a = entry_identity(None, None, title, summary)
    assert a == entry_identity(None, None, title, summary)
    assert a.startswith("hash:")


NO_NUL = st.text(alphabet=st.characters(exclude_characters="\x00"))


@given(NO_NUL, NO_NUL.filter(bool), NO_NUL)
def test_hash_separates_title_from_summary(a: str, b: str, c: str) -> None:
    """Moving text across the title/summary boundary changes the identity."""
    assert entry_identity(None, None, a + b, c) != entry_identity(None, None, a, b + c)


def raw(**fields: Any) -> dict[str, Any]:
    return fields


def test_entry_from_raw_uses_guid_link_and_dates() -> None:
    entry = entry_from_raw(
        raw(
            id="wire-42",
            title="  Ferry resumes  ",
            link="/2025/ferry#x",
            summary="Short summary",
            content=[
                {"value": "Body one", "language": "en"},
                {"value": ""},
                {"value": "Body two", "language": "fr"},
            ],
            published_parsed=time.struct_time((2025, 3, 4, 8, 15, 0, 1, 63, 0)),
        ),
        "wire",
        FEED_URL,
    )
    assert entry == Entry(
        feed="wire",
        identity="guid:wire-42",
        title="Ferry resumes",
        link="https://wire.example/2025/ferry#x",
        summary="Short summary",
        content="Body one\n\nBody two",
        published=datetime(2025, 3, 4, 8, 15, tzinfo=UTC),
        lang="en",
    )


def test_entry_from_raw_date_fallbacks_and_link_identity() -> None:
    entry = entry_from_raw(
        raw(
            title="t",
            link="story?id=1&utm_medium=rss",
            updated_parsed=(2024, 12, 31, 23, 59, 59, 0, 0, 0),
        ),
        "wire",
        FEED_URL,
    )
    assert entry.link == "https://wire.example/feeds/story?id=1&utm_medium=rss"
    assert entry.identity == "link:https://wire.example/feeds/story?id=1"
    assert entry.published == datetime(2024, 12, 31, 23, 59, 59, tzinfo=UTC)


def test_entry_from_raw_tolerates_junk() -> None:
    entry = entry_from_raw(
        raw(title=None, link=42, summary=["x"], content="not a list of dicts", id=7,
            published_parsed=(1, 2)),
        "wire",
        FEED_URL,
    )  # fmt: skip
    assert entry.title == ""
    assert entry.link is None
    assert entry.summary == ""
    assert entry.published is None
    assert entry.identity == entry_identity(None, None, "", "")


def entry_at(published: datetime | None) -> Entry:
    return Entry("f", "id", "t", None, "", "", published)


NOW = datetime(2025, 3, 4, 12, 0, tzinfo=UTC)
DAY = 86400.0


@pytest.mark.parametrize(
    ("published", "inside"),
    [
        (None, True),  # undated: cannot tell, so it counts as recent
        (NOW, True),
        (NOW - timedelta(hours=23), True),
        (NOW - timedelta(days=1), True),  # the boundary is inside
        (NOW - timedelta(days=1, seconds=1), False),
        (NOW - timedelta(days=30), False),
        (NOW + timedelta(hours=2), True),  # clock skew: future-dated is recent
    ],
)
def test_backfill_window(published: datetime | None, inside: bool) -> None:
    assert is_within_backfill(entry_at(published), NOW, DAY) is inside


def test_zero_backfill_window_keeps_only_undated_and_current() -> None:
    assert is_within_backfill(entry_at(None), NOW, 0)
    assert is_within_backfill(entry_at(NOW), NOW, 0)
    assert not is_within_backfill(entry_at(NOW - timedelta(seconds=1)), NOW, 0)
