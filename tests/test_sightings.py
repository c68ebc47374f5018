"""The Redis memory of alerted stories, against a real redis-server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from monitor.alerts import Alert
from monitor.config import DedupeSettings
from monitor.entries import Article, Entry
from monitor.minhash import signature
from monitor.redisconn import connect
from monitor.sameness import StoryMark, band_keys, same_story, similarity
from monitor.sightings import Sightings
from monitor.store import Store
from monitor.textsig import TextSignature
from tests.servers import free_port
from tests.test_sameness import EN, EN_OTHER, ZH

WINDOW = 3600
NOW = 1_790_000_000.0
SETTINGS = DedupeSettings(window_s=WINDOW)


def mark(text: str, *urls: str) -> StoryMark:
    sig = signature(text, shingle_words=SETTINGS.shingle_words, min_words=SETTINGS.min_words)
    return StoryMark(urls, sig)


async def stream_entries_of(store: Store) -> list[dict[str, str]]:
    rows = await store.client.xrange(store.keys.alert_stream)
    return [{str(k): str(v) for k, v in (fields or {}).items()} for _id, fields in rows or []]


async def sameness_keys(store: Store) -> list[str]:
    """On every node of a Cluster too (KEYS asks one)."""
    return [k async for k in store.client.scan_iter(match=f"{store.keys.prefix}:same:*")]


async def sign_here(text: str, shingle_words: int, min_words: int) -> TextSignature | None:
    """The signer, in this process (the pipeline runs it in a worker)."""
    return signature(text, shingle_words, min_words)


@pytest.fixture
async def store(any_redis_url: str) -> AsyncIterator[Store]:
    s = Store(connect(any_redis_url), any_redis_url, stream_maxlen=1000, delivered_ttl_s=3600,
              seen_per_feed=100)  # fmt: skip
    try:
        yield s
    finally:
        await s.close()


async def test_first_sighting_claims_and_later_ones_name_it(store: Store) -> None:
    sights = Sightings(store, SETTINGS, sign_here)
    first = await sights.claim("r", "a1", "f", mark(EN, "//news.example/1"), NOW)
    assert (first.first_id, first.by) == ("a1", "new")
    by_url = await sights.claim("r", "a2", "f", mark(EN_OTHER, "//news.example/1"), NOW + 1)
    assert (by_url.first_id, by_url.by, by_url.similarity) == ("a1", "url", 1.0)
    by_text = await sights.claim("r", "a3", "f", mark("Breaking: " + EN, "//mirror.example/9"), NOW)
    assert (by_text.first_id, by_text.by) == ("a1", "text")
    assert SETTINGS.threshold <= by_text.similarity < 1.0
    # The mirror's address now leads to the first alert too, without text.
    again = await sights.claim("r", "a4", "f", StoryMark(("//mirror.example/9",), None), NOW)
    assert (again.first_id, again.by) == ("a1", "url")
    distinct = await sights.claim("r", "a5", "f", mark(EN_OTHER, "//news.example/2"), NOW)
    assert (distinct.first_id, distinct.by) == ("a5", "new")
    other_rule = await sights.claim("q", "b1", "f", mark(EN, "//news.example/1"), NOW)
    assert (other_rule.first_id, other_rule.by) == ("b1", "new")


async def test_a_story_inside_a_long_wrapper_is_found_by_containment(store: Store) -> None:
    """The Lua verdict agrees with monitor.sameness.same_story."""
    wrapper = " ".join(f"link{i}" for i in range(200))
    first, copy = mark(EN), mark(wrapper + " " + EN + " " + wrapper)
    assert first.signature is not None
    assert copy.signature is not None
    assert set(band_keys(first.signature.values)) & set(band_keys(copy.signature.values))
    jaccard = similarity(first.signature.values, copy.signature.values)
    assert jaccard < SETTINGS.threshold
    plain = Sightings(store, SETTINGS.model_copy(update={"containment": None}), sign_here)
    await plain.claim("r", "a1", "f", first, NOW)
    assert (await plain.claim("r", "a2", "f", copy, NOW)).by == "new"
    await plain.claim("q", "b1", "f", first, NOW)
    found = await Sightings(store, SETTINGS, sign_here).claim("q", "b2", "f", copy, NOW)
    assert (found.first_id, found.by, found.similarity) == ("b1", "text", jaccard)


def _variants() -> list[tuple[str, str]]:
    """Pairs near and across the thresholds, in several scripts."""
    wrapper = " ".join(f"link{i}" for i in range(120))
    pairs = []
    for text in (EN, ZH, EN_OTHER):
        for cut in (0.9, 0.7, 0.5, 0.35):
            pairs.append((text, text[: int(len(text) * cut)]))
        pairs.append((text, wrapper + " " + text))
        pairs.append((text, wrapper + " " + text[: len(text) // 2] + " " + wrapper))
    pairs += [(EN, EN_OTHER), (EN, ZH), (EN_OTHER, EN + " " + EN_OTHER)]
    return pairs


@pytest.mark.parametrize(("a", "b"), _variants())
async def test_the_redis_verdict_is_the_pure_one(store: Store, a: str, b: str) -> None:
    first, second = mark(a), mark(b)
    assert first.signature is not None
    assert second.signature is not None
    expected = same_story(
        first.signature, second.signature, SETTINGS.threshold, SETTINGS.containment
    ) and bool(set(band_keys(first.signature.values)) & set(band_keys(second.signature.values)))
    sights = Sightings(store, SETTINGS, sign_here)
    await sights.claim("r", "a1", "f", first, NOW)
    verdict = await sights.claim("r", "a2", "f", second, NOW)
    assert verdict.by == ("text" if expected else "new")


async def test_the_same_alert_claiming_again_stays_first(store: Store) -> None:
    """A re-delivery after a crash: the alert finds itself, not a rival."""
    sights = Sightings(store, SETTINGS, sign_here)
    m = mark(EN, "//news.example/1")
    assert (await sights.claim("r", "a1", "f", m, NOW)).by == "new"
    assert (await sights.claim("r", "a1", "f", m, NOW + 5)).by == "new"
    assert (await sights.claim("r", "a1", "f", mark(EN), NOW + 5)).by == "new"


async def test_the_same_entry_in_another_feed_is_a_sighting(store: Store) -> None:
    """Same guid or link, hence the same alert_id, but from another feed."""
    sights = Sightings(store, SETTINGS, sign_here)
    assert (await sights.claim("r", "a1", "world", StoryMark((), None), NOW)).by == "new"
    assert (await sights.claim("r", "a1", "world", StoryMark((), None), NOW)).by == "new"
    other = await sights.claim("r", "a1", "europe", StoryMark((), None), NOW)
    assert (other.first_id, other.by) == ("a1", "entry")


async def test_every_key_expires_within_the_window(store: Store) -> None:
    sights = Sightings(store, SETTINGS, sign_here)
    m = mark(ZH, "//news.example/1", "//wire.example/zh")
    await sights.claim("r", "a1", "f", m, NOW)
    assert m.signature is not None
    written = [store.keys.sameness_url("r", u) for u in m.urls]
    written += [store.keys.sameness_band("r", b) for b in band_keys(m.signature.values)]
    written += [store.keys.sameness_signature("a1"), store.keys.sameness_first_feed("a1")]
    for key in written:
        ttl = await store.client.ttl(key)
        assert 0 < ttl <= WINDOW, key
    assert len(await sameness_keys(store)) == len(written)


async def test_a_story_older_than_the_window_is_not_matched(store: Store) -> None:
    sights = Sightings(store, SETTINGS, sign_here)
    await sights.claim("r", "a1", "f", mark(EN), NOW)
    later = await sights.claim("r", "a2", "f", mark(EN), NOW + WINDOW + 1)
    assert (later.first_id, later.by) == ("a2", "new")
    # ...and the stale member left the band sets when they were visited.
    m = mark(EN)
    assert m.signature is not None
    members = await store.client.zrange(
        store.keys.sameness_band("r", band_keys(m.signature.values)[0]), 0, -1
    )
    assert members == ["a2"]


@pytest.mark.parametrize("urls", [("//news.example/1",), ()])
async def test_concurrent_deliveries_make_one_first_alert(
    store: Store, urls: tuple[str, ...]
) -> None:
    sights = Sightings(store, SETTINGS, sign_here)
    m = mark(EN, *urls)
    verdicts = await asyncio.gather(
        *(sights.claim("r", f"a{i}", "f", m, NOW) for i in range(20))
    )  # fmt: skip
    firsts = {v.first_id for v in verdicts}
    assert len(firsts) == 1
    assert sum(v.by == "new" for v in verdicts) == 1


def _alert(rule: str, alert_id: str) -> Alert:
    return Alert(
        schema=1, alert_id=alert_id, rule=rule, rule_title=rule, score=2.0, threshold=1.0,
        title="t", url="https://news.example/1", feed="f", feed_tags=(), entry_id="guid:1",
        published=None, detected_at="2026-11-23T22:00:00Z", lang="en", terms=(),
        body_source="page", body_note=None, channels=(),
    )  # fmt: skip


def _article(link: str) -> Article:
    entry = Entry("f", "guid:1", "t", link, "", "", None)
    return Article(entry, EN, "page")


async def test_resolve_turns_a_second_sighting_into_an_update(store: Store) -> None:
    sights = Sightings(store, SETTINGS, sign_here)
    now = datetime.fromtimestamp(NOW, UTC)
    first = await sights.resolve([_alert("r", "a1")], _article("https://news.example/1"), now)
    assert [a.kind for a in first] == ["alert"]
    second = await sights.resolve(
        [_alert("r", "a2"), _alert("q", "b2")], _article("https://mirror.example/1"), now
    )
    assert [(a.rule, a.kind, a.updates) for a in second] == [
        ("r", "also_seen", "a1"),
        ("q", "alert", None),
    ]
    seen = second[0].also_seen
    assert seen is not None
    assert (seen.feed, seen.url, seen.by, seen.time) == (
        "f", "https://news.example/1", "text", "2026-09-21T14:13:20Z"
    )  # fmt: skip
    off = Sightings(store, SETTINGS.model_copy(update={"enabled": False}), sign_here)
    assert await off.resolve([_alert("r", "a3")], _article("https://news.example/1"), now) == [
        _alert("r", "a3")
    ]


async def test_an_alert_sent_unasked_during_an_outage_stays_itself(store: Store) -> None:
    """An entry alerted while Redis was away (sent as itself, from the spool)
    and processed again after it (its acknowledgement was lost) must not go
    out a second time as an update of the story's first alert."""
    sights = Sightings(store, SETTINGS, sign_here)
    now = datetime.fromtimestamp(NOW, UTC)
    await sights.resolve([_alert("r", "a1")], _article("https://news.example/1"), now)
    outage = _alert("r", "a2")  # the same story from another page, delivered unasked
    assert (await store.deliver(outage)).new
    again = await sights.resolve([outage], _article("https://mirror.example/1"), now)
    assert again == [outage]
    assert not (await store.deliver(again[0])).new
    # Not yet delivered: the same story from a third page is an update.
    third = await sights.resolve([_alert("r", "a3")], _article("https://mirror.example/2"), now)
    assert [(a.kind, a.updates) for a in third] == [("also_seen", "a1")]


async def test_an_entry_goes_out_once_per_feed_as_an_alert_or_an_update(store: Store) -> None:
    """The reverse of the case above: an update went out, then (in an outage,
    another daemon with no memory of the entry) the entry is delivered
    unasked as an alert. Its own id is new, the entry is not."""
    update = replace(_alert("r", "u1"), kind="also_seen", updates="first")
    assert (await store.deliver(update)).new
    assert not (await store.deliver(_alert("r", "a1"))).new  # same rule, entry and feed
    # Still new: the entry in another feed, for another rule, or re-alerted as edited.
    assert (await store.deliver(replace(_alert("r", "a2"), feed="g"))).new
    assert (await store.deliver(_alert("q", "b1"))).new
    assert (await store.deliver(replace(_alert("r", "e1"), updates="u1"))).new
    ids = [f["alert_id"] for f in await stream_entries_of(store)]
    assert ids == ["u1", "a2", "b1", "e1"]


async def test_while_alerts_wait_in_the_spool_redis_is_not_asked(store: Store) -> None:
    sights = Sightings(store, SETTINGS, sign_here)
    now = datetime.fromtimestamp(NOW, UTC)
    alerts = [_alert("r", "a1")]
    article = _article("https://news.example/1")
    assert await sights.resolve(alerts, article, now, spooling=True) == alerts
    assert await sameness_keys(store) == []
    assert await sights.resolve(alerts, article, now) == alerts
    assert await sameness_keys(store) != []


async def test_redis_away_means_new_alerts_not_lost_ones() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    down = Store(connect(url), url, stream_maxlen=1000, delivered_ttl_s=3600, seen_per_feed=100)
    try:
        sights = Sightings(down, SETTINGS, sign_here)
        now = datetime.fromtimestamp(NOW, UTC)
        alerts = [_alert("r", "a1"), _alert("q", "b1")]
        assert await sights.resolve(alerts, _article("https://news.example/1"), now) == alerts
    finally:
        await down.close()
