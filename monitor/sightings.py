"""Redis memory of alerted stories, so a story met again becomes an update, not an alert.

Per rule, for ``dedupe.window_s`` (every key expires, so memory is bounded
by the alerts of one window):

- ``same:url:<rule>:<sha1>`` -> the rule's first alert_id for that page;
- ``same:band:<rule>:<band>`` -> sorted set of first alert_ids with that
  LSH band, scored by time (older members are trimmed on every visit);
- ``same:sig:<alert_id>`` -> the first alert's text signature (hex), so a
  band collision is verified on the whole signature before it counts;
- ``same:feed:<alert_id>`` -> the feed that raised it: the same entry (same
  guid or link, hence the same alert_id) in another feed is a sighting too.

One Lua script decides and records at once, so two deliveries of the same
story racing each other cannot both become first alerts. It reads the
candidates' signatures by keys it builds itself (prefix + alert_id): fine
on one Redis, not on a Redis Cluster. Its cost is bounded by
``MAX_CANDIDATES`` signatures of 128 values per call. A second edge
module on redis-py beside monitor/store.py (it borrows the Store's client);
its errors become ``RedisUnavailable`` here too, and then the caller
delivers the alert as a new one: a story is never dropped for dedupe.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from redis.exceptions import RedisError

from monitor.alerts import Alert, Sighting, iso
from monitor.config import DedupeSettings
from monitor.entries import Article
from monitor.errors import RedisUnavailable
from monitor.logs import event
from monitor.sameness import (
    CONTAINMENT_FLOOR,
    StoryMark,
    also_seen_alert,
    band_keys,
    story_urls,
    to_hex,
)
from monitor.store import Store
from monitor.textsig import TextSignature

log = logging.getLogger("monitor.sightings")

MAX_CANDIDATES = 200  # signatures verified per decision, newest first

# KEYS: url keys (ARGV[5] of them), band keys (ARGV[6]), this alert's
# signature key, its first-feed key, its delivered key. ARGV: alert_id, now, window_s,
# threshold, #urls, #bands, signature hex ("" = no text test; 8 hex digits
# of shingle count, then 8 per value), signature key prefix, max candidates,
# feed, containment threshold (> 1: off), containment floor. Returns
# {first alert_id, "new" | "entry" | "url" | "text", Jaccard}. The text
# verdict is monitor.sameness.same_story, written again in Lua.
_CLAIM = """
local me, now, window = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local threshold, nu, nb = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local sig, prefix, cap, feed = ARGV[7], ARGV[8], tonumber(ARGV[9]), ARGV[10]
local contained, floor = tonumber(ARGV[11]), tonumber(ARGV[12])
local first_feed = KEYS[nu + nb + 2]
local owner = redis.call('GET', first_feed)
-- This very alert went out already from this feed, or unasked (Redis was
-- away, or the spool held alerts): it stays itself, or its entry, processed
-- again after the outage, would go out a second time as an update.
if (not owner or owner == feed) and redis.call('EXISTS', KEYS[nu + nb + 3]) == 1 then
  return {me, 'new', '0'}
end
local function same(j, a, b)
  if j >= threshold then return true end
  if j < floor or contained > 1 or math.min(a, b) <= 0 then return false end
  return math.min(1, j / (1 + j) * (a + b) / math.min(a, b)) >= contained
end
local function claim_urls(owner)
  for j = 1, nu do redis.call('SET', KEYS[j], owner, 'NX', 'EX', window) end
end
-- The same entry (same guid or link, so the same alert_id) in another feed.
if owner and owner ~= feed then
  claim_urls(me)
  return {me, 'entry', '1'}
end
for i = 1, nu do
  local first = redis.call('GET', KEYS[i])
  if first and first ~= me then
    claim_urls(first)
    return {first, 'url', '1'}
  end
end
if sig ~= '' then
  local best, best_sim, seen, n = nil, -1, {}, 0
  local width = string.len(sig)
  local mine = tonumber(string.sub(sig, 1, 8), 16)
  for i = nu + 1, nu + nb do
    redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', '(' .. (now - window))
    for _, id in ipairs(redis.call('ZREVRANGE', KEYS[i], 0, cap - 1)) do
      if id ~= me and not seen[id] and n < cap then
        seen[id] = true
        n = n + 1
        local other = redis.call('GET', prefix .. id)
        if other and string.len(other) == width then
          local equal = 0
          for p = 9, width, 8 do
            if string.sub(sig, p, p + 7) == string.sub(other, p, p + 7) then equal = equal + 1 end
          end
          local sim = equal / ((width - 8) / 8)
          if sim > best_sim and same(sim, mine, tonumber(string.sub(other, 1, 8), 16)) then
            best, best_sim = id, sim
          end
        end
      end
    end
  end
  if best then
    claim_urls(best)
    return {best, 'text', tostring(best_sim)}
  end
end
for j = 1, nu do redis.call('SET', KEYS[j], me, 'EX', window) end
redis.call('SET', first_feed, feed, 'EX', window)
if sig ~= '' then
  redis.call('SET', KEYS[nu + nb + 1], sig, 'EX', window)
  for i = nu + 1, nu + nb do
    redis.call('ZADD', KEYS[i], now, me)
    redis.call('EXPIRE', KEYS[i], window)
  end
end
return {me, 'new', '0'}
"""


@dataclass(frozen=True)
class Verdict:
    """Whose story this is for one rule: ``by`` is "new" when it is this alert's own."""

    first_id: str
    by: str  # "new" | "entry" | "url" | "text"
    similarity: float


# Text, shingle words, least words -> the text's signature (monitor.minhash.signature,
# which the pipeline runs in a worker process: it is CPU work, and numpy).
Signer = Callable[[str, int, int], Awaitable[TextSignature | None]]


class Sightings:
    def __init__(self, store: Store, settings: DedupeSettings, signer: Signer) -> None:
        self.store = store
        self.settings = settings
        self.signer = signer
        self.keys = store.keys
        self._claim = store.client.register_script(_CLAIM)

    async def mark(self, article: Article) -> StoryMark:
        """The story's sameness URLs and text signature, as the settings ask."""
        s = self.settings
        urls = story_urls(article.entry.link, article.extra.get("canonical_url"))
        sig = await self.signer(article.body, s.shingle_words, s.min_words) if s.by_text else None
        return StoryMark(urls if s.by_url else (), sig)

    async def claim(
        self, rule: str, alert_id: str, feed: str, mark: StoryMark, now: float
    ) -> Verdict:
        """Record this alert (from ``feed``) as the rule's first for the story, or name it."""
        bands: Sequence[str] = band_keys(mark.signature.values) if mark.signature else ()
        key_list = [self.keys.sameness_url(rule, u) for u in mark.urls]
        key_list += [self.keys.sameness_band(rule, b) for b in bands]
        key_list += [
            self.keys.sameness_signature(alert_id),
            self.keys.sameness_first_feed(alert_id),
            self.keys.delivered(alert_id),
        ]
        s = self.settings
        sig = to_hex(mark.signature) if mark.signature else ""
        args: list[str | int | float] = [alert_id, now, s.window_s, s.threshold, len(mark.urls),
                                         len(bands), sig, self.keys.sameness_signature_prefix,
                                         MAX_CANDIDATES, feed,
                                         2 if s.containment is None else s.containment,
                                         CONTAINMENT_FLOOR]  # fmt: skip
        try:
            first, by, sim = await self._claim(keys=key_list, args=args)
        except (RedisError, OSError) as exc:
            raise RedisUnavailable(self.store.where, f"{type(exc).__name__}: {exc}") from exc
        return Verdict(str(first), str(by), float(sim))

    async def resolve(
        self, alerts: list[Alert], article: Article, now: datetime, *, spooling: bool = False
    ) -> list[Alert]:
        """Each alert as it is, or as an ``also_seen`` update of the rule's
        first alert for this story. Redis away, or alerts still waiting in
        the spool (``spooling``): all as they are, at once, so that an outage
        costs no extra failing calls."""
        if not alerts or not self.settings.enabled or spooling:
            return alerts
        mark = await self.mark(article)
        out = []
        for alert in alerts:
            try:
                verdict = await self.claim(
                    alert.rule, alert.alert_id, alert.feed, mark, now.timestamp()
                )
            except RedisUnavailable as exc:
                event(log, logging.WARNING, "dedupe.skipped", rule=alert.rule,
                      alert_id=alert.alert_id, reason=exc.detail)  # fmt: skip
                out.append(alert)
                continue
            if verdict.by == "new":
                out.append(alert)
                continue
            seen = Sighting(alert.feed, alert.url, iso(now), alert.entry_id, verdict.by,
                            round(verdict.similarity, 4))  # fmt: skip
            event(log, logging.INFO, "alert.also_seen", rule=alert.rule, feed=alert.feed,
                  first=verdict.first_id, by=verdict.by, similarity=seen.similarity)  # fmt: skip
            out.append(also_seen_alert(alert, verdict.first_id, seen))
        return out
