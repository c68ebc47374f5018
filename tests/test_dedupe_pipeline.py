"""One story, one alert, end to end: real HTTP server on 127.0.0.1, real
redis-server, real extraction workers, the real pipeline."""

from __future__ import annotations

from pathlib import Path

from monitor import keys
from monitor.config import Config
from monitor.daemon import open_app
from monitor.entries import Feed
from monitor.pipeline import PollOutcome
from monitor.rules import load_rules
from tests.conftest import make_config
from tests.servers import NewsSite, page, rss, stream_alerts

# Written for these tests.
STORY = [
    "The harbour authority in Tromsø said on Monday that a new ferry line to Svalbard will "
    "open next spring, with two ships sailing twice a week between the mainland and the islands.",
    "The crossing will take about thirty hours in good weather. Tickets go on sale in January, "
    "and the operator expects most passengers in the summer months, when the sea is calm.",
    "Local fishermen welcomed the ferry plan but asked for more berths in the old harbour, which "
    "is already full from June to August. The town council will discuss the harbour next week.",
    "Tourism officials in Longyearbyen said the ferry line could double the number of visitors "
    "who arrive by sea, and warned that hotels on the islands are small and often fully booked.",
]
# Shares most of its words with STORY, but is another story.
OTHER = [
    "The harbour authority in Bodø said on Tuesday that the old ferry line to Røst will close "
    "next spring, after forty years of ships sailing between the mainland and the island.",
    "Fishermen on Røst said the closure would hurt the island in the summer months, when the "
    "catch is landed, and asked the town council for money to keep one ship sailing each week.",
    "Tourism officials warned that visitors who arrive by sea would stay away, and that the small "
    "hotels on the island depend on them from June to August, when the weather is calm.",
    "The operator said tickets already sold for January will be refunded in full.",
]
RULES = (
    "concepts:\n  ferry: {terms: {en: [ferry, ferries]}}\n"
    "rules:\n  - {id: ferries, title: Ferries, match: ferry}\n"
)


def config(tmp_path: Path, base: str, **overrides: object) -> Config:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    return make_config(tmp_path, [], rules=[str(rules)], **{"dedupe": {}, **overrides})


async def poll_in_turn(
    cfg: Config, redis_url: str, base: str, names: list[str]
) -> list[PollOutcome]:
    """Poll the site's feed /<name>.xml for each name, one after the other."""
    async with open_app(cfg, redis_url, load_rules(cfg.rule_files())) as app:
        return [await app.pipeline.poll(Feed(n, f"{base}/{n}.xml", 60)) for n in names]


async def test_the_same_story_in_two_feeds_gives_one_alert_and_one_update(
    tmp_path: Path, redis_url: str, site: tuple[NewsSite, str]
) -> None:
    news, base = site
    news.put_page("/world/ferry.html", page("New ferry line to Svalbard", STORY))
    news.put_page("/wire/123.html", page("Svalbard gets a ferry", STORY[:3]))  # trimmed copy
    news.put_feed("/world.xml", rss([{"title": "New ferry line to Svalbard", "guid": "w1",
                                      "link": f"{base}/world/ferry.html"}]))  # fmt: skip
    news.put_feed("/wire.xml", rss([{"title": "Svalbard gets a ferry", "guid": "x1",
                                     "link": f"{base}/wire/123.html?utm_source=rss"}]))  # fmt: skip
    # The same page again under tracking parameters, in a third feed.
    news.put_feed("/share.xml", rss([{"title": "Ferry!", "guid": "s1",
                  "link": f"{base}/world/ferry.html?utm_medium=social#top"}]))  # fmt: skip
    cfg = config(tmp_path, base)
    world, wire, share = (Feed(n, f"{base}/{n}.xml", 60) for n in ("world", "wire", "share"))
    async with open_app(cfg, redis_url, load_rules(cfg.rule_files())) as app:
        outcomes = [await app.pipeline.poll(f) for f in (world, wire, share)]
        # A crash before the seen-marks: after a restart the wire entry is processed again.
        await app.store.client.delete(keys.SERVER.seen("wire"))
    async with open_app(cfg, redis_url, load_rules(cfg.rule_files())) as app:
        again = await app.pipeline.poll(wire)
    assert [o.alerts for o in outcomes] == [1, 0, 0]
    assert again.new_entries == 1
    alerts = await stream_alerts(redis_url)
    assert [(a.kind, a.feed) for a in alerts] == [
        ("alert", "world"),
        ("also_seen", "wire"),
        ("also_seen", "share"),
    ]  # the re-processed wire entry appended nothing
    first, by_text, by_url = alerts
    assert by_text.updates == by_url.updates == first.alert_id
    assert by_text.also_seen is not None
    assert by_text.also_seen.feed == "wire"
    assert by_text.also_seen.url == f"{base}/wire/123.html?utm_source=rss"
    assert by_text.also_seen.by == "text"
    assert by_text.also_seen.time.endswith("Z")
    assert by_url.also_seen is not None
    assert by_url.also_seen.by == "url"
    assert len({a.alert_id for a in alerts}) == 3


async def test_one_article_in_two_section_feeds_gives_one_alert_and_one_update(
    tmp_path: Path, redis_url: str, site: tuple[NewsSite, str]
) -> None:
    """Same link and no guid: the same entry identity, so the same alert_id."""
    news, base = site
    news.put_page("/a.html", page("New ferry line to Svalbard", STORY))
    for name in ("world", "europe"):
        news.put_feed(f"/{name}.xml", rss([{"title": "Ferry", "link": f"{base}/a.html"}]))
    polls = await poll_in_turn(config(tmp_path, base), redis_url, base, ["world", "europe"])
    assert [p.alerts for p in polls] == [1, 0]
    first, update = await stream_alerts(redis_url)
    assert (first.kind, first.feed) == ("alert", "world")
    assert (update.kind, update.feed, update.updates) == ("also_seen", "europe", first.alert_id)
    assert update.also_seen is not None
    assert (update.also_seen.feed, update.also_seen.by) == ("europe", "entry")


async def test_distinct_stories_sharing_words_give_two_alerts(
    tmp_path: Path, redis_url: str, site: tuple[NewsSite, str]
) -> None:
    news, base = site
    news.put_page("/a.html", page("New ferry line to Svalbard", STORY))
    news.put_page("/b.html", page("Ferry line to Røst to close", OTHER))
    news.put_feed(
        "/a.xml", rss([{"title": "New ferry line", "guid": "a", "link": f"{base}/a.html"}])
    )
    news.put_feed(
        "/b.xml", rss([{"title": "Ferry to close", "guid": "b", "link": f"{base}/b.html"}])
    )
    a, b = await poll_in_turn(config(tmp_path, base), redis_url, base, ["a", "b"])
    assert (a.alerts, b.alerts) == (1, 1)
    alerts = await stream_alerts(redis_url)
    assert [(x.kind, x.feed, x.updates) for x in alerts] == [
        ("alert", "a", None),
        ("alert", "b", None),
    ]


async def test_with_dedupe_off_every_feed_alerts(
    tmp_path: Path, redis_url: str, site: tuple[NewsSite, str]
) -> None:
    news, base = site
    news.put_page("/a.html", page("New ferry line to Svalbard", STORY))
    for name in ("a", "b"):
        news.put_feed(f"/{name}.xml", rss([{"title": "Ferry", "guid": name,
                                            "link": f"{base}/a.html"}]))  # fmt: skip
    cfg = config(tmp_path, base, dedupe={"enabled": False})
    polls = await poll_in_turn(cfg, redis_url, base, ["a", "b"])
    assert [p.alerts for p in polls] == [1, 1]
    assert [x.kind for x in await stream_alerts(redis_url)] == ["alert", "alert"]
