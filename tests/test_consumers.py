"""Reliable consumption with consumer groups, and the lag warning."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from monitor import keys
from monitor.alerts import SCHEMA_VERSION, Alert, MatchedTerm
from monitor.daemon import Daemon, open_app
from monitor.rules import load_rules
from monitor.subscribe import consume_group
from tests.conftest import make_config
from tests.servers import first_message

EXE = str(Path(sys.executable).parent / "feed-monitor")


def alert(i: int) -> Alert:
    return Alert(
        schema=SCHEMA_VERSION, alert_id=f"id-{i}", rule="r", rule_title="R", score=5.0,
        threshold=4.0, title=f"Story {i}", url=f"http://example.invalid/{i}", feed="f",
        feed_tags=(), entry_id=f"guid:{i}", published=None, detected_at="2026-01-01T00:00:00Z",
        lang="en", terms=(MatchedTerm("c", "t", "body", 0, 1, "t", "t", 1.0),),
        body_source="page", body_note=None, channels=(),
    )  # fmt: skip


async def add(url: str, n: int) -> None:
    client = aioredis.Redis.from_url(url)
    try:
        for i in range(n):
            await client.xadd(
                keys.SERVER.alert_stream, {"alert": alert(i).to_json(), "alert_id": f"id-{i}"}
            )
    finally:
        await client.aclose()


async def test_group_acks_after_printing_and_rereads_what_a_crash_left(redis_url: str) -> None:
    await add(redis_url, 3)
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        printed: list[str] = []

        def crash_after_print(text: str) -> None:
            printed.append(text)
            raise RuntimeError("consumer died before acking")

        with pytest.raises(RuntimeError):
            await consume_group(client, crash_after_print, group="g", consumer="c1", rule=None,
                                as_json=True, from_start=True)  # fmt: skip
        assert len(printed) == 1
        # The same consumer restarts: its unacked entry comes first, then the rest.
        again: list[str] = []
        n = await consume_group(client, again.append, group="g", consumer="c1", rule=None,
                                as_json=True, from_start=True, limit=3)  # fmt: skip
        assert n == 3
        assert [json.loads(t)["alert_id"] for t in again] == ["id-0", "id-1", "id-2"]
        pending = await client.xpending(keys.SERVER.alert_stream, "g")
        assert pending["pending"] == 0
    finally:
        await client.aclose()


async def test_stale_pending_of_a_dead_consumer_is_claimed(redis_url: str) -> None:
    await add(redis_url, 2)
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        await client.xgroup_create(keys.SERVER.alert_stream, "g", id="0")
        # "dead" reads both and never acks.
        await client.xreadgroup("g", "dead", {keys.SERVER.alert_stream: ">"}, count=10)
        got: list[str] = []
        n = await consume_group(
            client, got.append, group="g", consumer="alive", rule=None, as_json=True,
            from_start=True, limit=2, claim_idle_ms=0,
        )  # fmt: skip
        assert n == 2
        assert sorted(json.loads(t)["alert_id"] for t in got) == ["id-0", "id-1"]
    finally:
        await client.aclose()


async def test_cli_subscribe_with_group(redis_url: str, tmp_path: Path) -> None:
    await add(redis_url, 2)
    cfg = tmp_path / "monitor.yaml"
    cfg.write_text(f"redis: {{url: '{redis_url}'}}\nfeeds: []\n")
    proc = await asyncio.create_subprocess_exec(
        EXE, "subscribe", "--config", str(cfg), "--group", "ops", "--consumer", "one",
        "--from-start", "--count", "2", stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=30)
    assert proc.returncode == 0
    assert out.decode().count("Story ") == 2
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        (group,) = await client.xinfo_groups(keys.SERVER.alert_stream)
        assert group["name"] == "ops"
        assert group["pending"] == 0
    finally:
        await client.aclose()


async def test_lagging_group_is_warned_about(redis_url: str, tmp_path: Path) -> None:
    cfg = make_config(tmp_path, [], redis={"url": redis_url, "stream_maxlen": 1000,
                                           "consumer_groups": ["analysts", "missing"]})  # fmt: skip
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    pubsub = client.pubsub()
    await pubsub.subscribe(keys.SYSTEM_CHANNEL)
    try:
        await add(redis_url, 900)
        await client.xgroup_create(keys.SERVER.alert_stream, "analysts", id="0")
        async with open_app(cfg, redis_url, load_rules(cfg.rule_files())) as app:
            warnings = await Daemon(app).check_lag()
            assert len(warnings) == 2
            assert "900 unread alerts" in warnings[0]
            assert "'missing' does not exist" in warnings[1]
            assert 'feed_monitor_consumer_group_lag{group="analysts"} 900.0' in (
                app.metrics.render().decode()
            )
        msg = await first_message(pubsub)
        assert json.loads(msg["data"])["event"] == "stream.lag"
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]
        await client.aclose()
