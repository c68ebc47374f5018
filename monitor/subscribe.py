"""``feed-monitor subscribe``: print alerts from the stream as they arrive.

Reads the durable stream rather than pub/sub, so an alert raised a moment
before the command started is not missed: by default the last hour is
replayed, then new alerts follow live.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import cast

from redis.exceptions import ResponseError

from monitor.alerts import Alert
from monitor.redisconn import Client, keyspace

BLOCK_MS = 5000


def format_alert(alert: Alert) -> str:
    """Readable multi-line form for a terminal."""
    terms = ", ".join(dict.fromkeys(f"{t.text} ({t.field})" for t in alert.terms))
    lines = [
        f"[{alert.detected_at}] {alert.rule}  score {alert.score:g} (≥ {alert.threshold:g})",
        f"  {alert.title}",
        f"  {alert.url or '(no link)'}",
        f"  feed: {alert.feed}  lang: {alert.lang or '?'}  published: {alert.published or '?'}"
        f"  body: {alert.body_source}",
        f"  terms: {terms}",
    ]
    if alert.terms:
        lines.append(f"  e.g.: {alert.terms[0].snippet}")
    if alert.also_seen is not None:
        seen = alert.also_seen
        lines.insert(1, f"  also seen: the story of alert {alert.updates} (same {seen.by}, "
                        f"similarity {seen.similarity:g})")  # fmt: skip
    return "\n".join(lines)


def start_id(from_start: bool, since_s: float, now: float | None = None) -> str:
    if from_start:
        return "0"
    if since_s <= 0:
        return "$"
    return str(int(((now if now is not None else time.time()) - since_s) * 1000))


async def subscribe(
    client: Client,
    emit: Callable[[str], None],
    *,
    rule: str | None,
    as_json: bool,
    from_id: str,
    limit: int | None = None,
) -> int:
    """Emit alerts until ``limit`` alerts (or forever); returns how many."""
    stream = keyspace(client).alert_stream
    last = from_id
    if last == "$":
        info = await client.xinfo_stream(stream) if await client.exists(stream) else None
        last = info["last-generated-id"] if info else "0"
    count = 0
    while limit is None or count < limit:
        resp = await client.xread({stream: last}, block=BLOCK_MS, count=100)
        batches = cast(list[tuple[str, list[tuple[str, dict[str, str]]]]], resp or [])
        for _stream, entries in batches:
            for entry_id, fields in entries:
                last = entry_id
                raw = fields.get("alert")
                if raw is None:
                    continue
                alert = Alert.from_json(raw)
                if rule and alert.rule != rule:
                    continue
                emit(raw if as_json else format_alert(alert))
                count += 1
                if limit is not None and count >= limit:
                    return count
    return count


async def consume_group(
    client: Client,
    emit: Callable[[str], None],
    *,
    group: str,
    consumer: str,
    rule: str | None,
    as_json: bool,
    from_start: bool,
    limit: int | None = None,
    claim_idle_ms: int = 60_000,
) -> int:
    """Reliable consumption: a consumer group, acked only after ``emit``.

    Order of work: this consumer's own pending entries (emitted but not acked
    when it last stopped), then entries other consumers left pending for
    longer than ``claim_idle_ms`` (XAUTOCLAIM), then new entries.
    """
    stream = keyspace(client).alert_stream
    try:
        await client.xgroup_create(stream, group, id="0" if from_start else "$",
                                   mkstream=True)  # fmt: skip
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise
    count = 0

    async def handle(entries: list[tuple[str, dict[str, str]]]) -> bool:
        nonlocal count
        for entry_id, fields in entries:
            if entry_id is None:
                continue  # Redis 6.2 XAUTOCLAIM: an entry trimmed while pending
            raw = fields.get("alert") if fields else None
            if raw is not None:
                alert = Alert.from_json(raw)
                if not rule or alert.rule == rule:
                    emit(raw if as_json else format_alert(alert))
                    count += 1
            await client.xack(stream, group, entry_id)
            if limit is not None and count >= limit:
                return True
        return False

    own = await client.xreadgroup(group, consumer, {stream: "0"}, count=1000)
    for _stream, entries in cast(list[tuple[str, list[tuple[str, dict[str, str]]]]], own or []):
        if await handle(entries):
            return count
    while limit is None or count < limit:
        claimed = await client.xautoclaim(stream, group, consumer, claim_idle_ms,
                                          start_id="0-0", count=100)  # fmt: skip
        if await handle(cast(list[tuple[str, dict[str, str]]], claimed[1])):
            return count
        resp = await client.xreadgroup(group, consumer, {stream: ">"},
                                       count=100, block=BLOCK_MS)  # fmt: skip
        batches = cast(list[tuple[str, list[tuple[str, dict[str, str]]]]], resp or [])
        for _stream, entries in batches:
            if await handle(entries):
                return count
    return count
