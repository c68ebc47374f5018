"""End to end through the real pipeline: a real HTTP server on 127.0.0.1
serving feeds and pages, a real redis-server, real worker processes.
"""

from __future__ import annotations

import asyncio
import html
import json
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import redis.asyncio as aioredis

from monitor import keys
from monitor.daemon import open_app
from monitor.entries import Feed
from monitor.rules import load_rules
from tests.conftest import ROOT, make_config
from tests.servers import NewsSite, page, rss, stream_alerts

SEED = (ROOT / "seeds" / "000_79a58b876351234c.txt").read_text(encoding="utf-8")
SEED_TITLE = "Kina og Russland styrker forsvarsbåndene"
NEAR_MISS = [
    "Russia and China agreed on Tuesday to raise the volume of gas sold through the eastern "
    "pipeline, the two energy ministries said after talks in Beijing.",
    "The agreement covers prices for the next ten years. Trade between the two countries grew "
    "by a fifth last year, customs figures show, and officials expect more deals in farming.",
    "Moscow is looking for new buyers in Asia, and Chinese refiners want long contracts.",
]


def seed_page() -> str:
    paras = [html.escape(p) for p in SEED.split("\n\n") if p.strip()]
    return page(SEED_TITLE, paras, lang="nb")


def publish(site: NewsSite, base: str, *, etag: str | None = "v1") -> None:
    site.put_page("/a/seed.html", seed_page())
    site.put_page("/a/gas.html", page("Russia and China agree gas prices", NEAR_MISS))
    site.put_feed(
        "/feed.xml",
        rss([
            {"title": SEED_TITLE, "link": f"{base}/a/seed.html", "guid": "seed-1"},
            {"title": "Russia and China agree gas prices", "link": f"{base}/a/gas.html",
             "guid": "gas-1"},
        ]),
        etag=etag,
    )  # fmt: skip


async def test_seed_flagged_near_miss_not_and_pubsub_delivers(
    tmp_path: Path, redis_url: str, site: tuple[NewsSite, str]
) -> None:
    news, base = site
    publish(news, base)
    cfg = make_config(tmp_path, [{"name": "news", "url": f"{base}/feed.xml"}])
    ruleset = load_rules(cfg.rule_files())
    sub = aioredis.Redis.from_url(redis_url, decode_responses=True)
    pubsub = sub.pubsub()
    await pubsub.subscribe(keys.ALERT_CHANNEL, keys.rule_channel("sino-russian-military"))
    try:
        async with open_app(cfg, redis_url, ruleset) as app:
            outcome = await app.pipeline.poll(Feed("news", f"{base}/feed.xml", 60))
        assert outcome.status == "ok", outcome
        assert outcome.new_entries == 2
        assert outcome.alerts == 1
        alerts = await stream_alerts(redis_url)
        assert [a.title for a in alerts] == [SEED_TITLE]
        alert = alerts[0]
        assert alert.rule == "sino-russian-military"
        assert alert.body_source == "page"
        assert alert.url == f"{base}/a/seed.html"
        assert alert.lang == "nb"
        assert alert.score >= alert.threshold
        assert len({t.concept for t in alert.terms}) >= 3  # countries, joint, military
        for t in alert.terms:
            assert t.text.lower() in t.snippet.lower()
        got: dict[str, str] = {}
        deadline = asyncio.get_running_loop().time() + 5
        while len(got) < 2 and asyncio.get_running_loop().time() < deadline:
            msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if msg:
                got[msg["channel"]] = msg["data"]
        assert set(got) == {keys.ALERT_CHANNEL, keys.rule_channel("sino-russian-military")}
        assert json.loads(got[keys.ALERT_CHANNEL])["alert_id"] == alert.alert_id
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]
        await sub.aclose()


async def test_304_restart_and_redelivery_add_nothing(
    tmp_path: Path, redis_url: str, site: tuple[NewsSite, str]
) -> None:
    news, base = site
    publish(news, base)
    cfg = make_config(tmp_path, [{"name": "news", "url": f"{base}/feed.xml"}])
    ruleset = load_rules(cfg.rule_files())
    feed = Feed("news", f"{base}/feed.xml", 60)
    async with open_app(cfg, redis_url, ruleset) as app:
        first = await app.pipeline.poll(feed)
        second = await app.pipeline.poll(feed)
    assert first.alerts == 1
    assert second.status == "not_modified"
    assert news.conditional_hits["/feed.xml"] == 1
    # A restart (new app, same Redis) with the feed changed: nothing old re-alerts.
    publish(news, base, etag="v2")
    async with open_app(cfg, redis_url, ruleset) as app:
        third = await app.pipeline.poll(feed)
        assert third.status == "ok"
        assert third.new_entries == 0
        # Re-delivering an alert already delivered adds no stream entry.
        alerts = await stream_alerts(redis_url)
        again = await app.store.deliver(alerts[0])
        assert not again.new
    assert len(await stream_alerts(redis_url)) == 1


async def test_page_failure_falls_back_to_feed_text(
    tmp_path: Path, redis_url: str, site: tuple[NewsSite, str]
) -> None:
    news, base = site
    summary = html.escape(SEED.split("\n\n")[2])  # the roadmap paragraph
    news.put_feed(
        "/feed.xml",
        rss([{"title": SEED_TITLE, "link": f"{base}/gone.html", "guid": "g",
              "description": summary}]),
    )  # fmt: skip
    cfg = make_config(tmp_path, [{"name": "news", "url": f"{base}/feed.xml"}])
    async with open_app(cfg, redis_url, load_rules(cfg.rule_files())) as app:
        outcome = await app.pipeline.poll(Feed("news", f"{base}/feed.xml", 60))
    assert outcome.alerts == 1
    (alert,) = await stream_alerts(redis_url)
    assert alert.body_source == "feed"
    assert alert.body_note is not None
    assert "http_404" in alert.body_note


async def test_first_poll_backfills_only_recent_entries(
    tmp_path: Path, redis_url: str, site: tuple[NewsSite, str]
) -> None:
    news, base = site
    now = datetime.now(UTC)
    news.put_page("/a/seed.html", seed_page())
    news.put_page("/a/old.html", seed_page())
    news.put_feed(
        "/feed.xml",
        rss([
            {"title": SEED_TITLE, "link": f"{base}/a/seed.html", "guid": "new",
             "pubDate": format_datetime(now - timedelta(hours=1))},
            {"title": SEED_TITLE + " (old)", "link": f"{base}/a/old.html", "guid": "old",
             "pubDate": format_datetime(now - timedelta(days=3))},
        ]),
    )  # fmt: skip
    cfg = make_config(tmp_path, [{"name": "news", "url": f"{base}/feed.xml"}])
    async with open_app(cfg, redis_url, load_rules(cfg.rule_files())) as app:
        outcome = await app.pipeline.poll(Feed("news", f"{base}/feed.xml", 60))
    assert outcome.new_entries == 1
    assert [a.entry_id for a in await stream_alerts(redis_url)] == ["guid:new"]
    assert news.hits.get("/a/old.html") is None  # old entries are not even fetched


async def test_broken_feed_is_reported_and_others_go_on(
    tmp_path: Path, redis_url: str, site: tuple[NewsSite, str]
) -> None:
    news, base = site
    publish(news, base)
    news.put_page("/broken.xml", "<html><body>Not a feed</body></html>")
    cfg = make_config(
        tmp_path,
        [{"name": "news", "url": f"{base}/feed.xml"}, {"name": "bad", "url": f"{base}/broken.xml"}],
    )
    async with open_app(cfg, redis_url, load_rules(cfg.rule_files())) as app:
        bad, good = await asyncio.gather(
            app.pipeline.poll(Feed("bad", f"{base}/broken.xml", 60)),
            app.pipeline.poll(Feed("news", f"{base}/feed.xml", 60)),
        )
        state = await app.store.client.hgetall(keys.SERVER.feed_state("bad"))
    assert bad.status == "failed"
    assert bad.error_kind == "not_a_feed"
    assert state["last_error_kind"] == "not_a_feed"
    assert good.alerts == 1


async def test_updated_story_realerts_only_where_the_rule_asks(
    tmp_path: Path, redis_url: str, site: tuple[NewsSite, str]
) -> None:
    news, base = site
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "concepts:\n  a: {terms: {en: [alpha]}}\n"
        "rules:\n"
        "  - {id: quiet, title: Quiet, match: a}\n"
        "  - {id: loud, title: Loud, on_update: realert, match: a}\n"
    )
    cfg = make_config(tmp_path, [], rules=[str(rules)])
    news.put_page("/a.html", page("Alpha", ["The alpha team met today."]))
    feed = Feed("news", f"{base}/feed.xml", 60)

    def publish_title(title: str) -> None:
        news.put_feed("/feed.xml", rss([{"title": title, "link": f"{base}/a.html", "guid": "g"}]))

    publish_title("Alpha team meets")
    async with open_app(cfg, redis_url, load_rules(cfg.rule_files())) as app:
        first = await app.pipeline.poll(feed)
        publish_title("Alpha team meets again, new details")
        second = await app.pipeline.poll(feed)
        third = await app.pipeline.poll(feed)
    assert (first.alerts, second.alerts, third.alerts) == (2, 1, 0)
    alerts = await stream_alerts(redis_url)
    loud = [a for a in alerts if a.rule == "loud"]
    assert len(loud) == 2
    assert loud[1].updates == loud[0].alert_id
    assert loud[1].alert_id != loud[0].alert_id
    assert loud[1].title == "Alpha team meets again, new details"
    assert [a.rule for a in alerts].count("quiet") == 1
