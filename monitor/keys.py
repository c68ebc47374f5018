"""Every Redis key and channel name feed-monitor uses; nothing else builds them.

Keys live in a ``KeySpace``. On a single server or Sentinel it is ``SERVER``
(prefix ``feed-monitor``); on Redis Cluster it is ``CLUSTER`` (prefix
``{feed-monitor}``), whose hash tag puts every key in one slot: the Lua
scripts and MULTI blocks each touch several keys, and Cluster runs those
only when all their keys share a slot.

Public contracts: the alert stream (``feed-monitor:alerts``, on Cluster
``{feed-monitor}:alerts``) and the pub/sub channels below, which are not
keys and so have the same names everywhere.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

ALERT_CHANNEL = "feed-monitor:alerts"
SYSTEM_CHANNEL = "feed-monitor:system"
# The consumer group of workers reading KeySpace.entries.
ENTRY_GROUP = "workers"


def rule_channel(rule_id: str) -> str:
    return f"{ALERT_CHANNEL}:{rule_id}"


def _digest(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class KeySpace:
    prefix: str

    @property
    def alert_stream(self) -> str:
        return f"{self.prefix}:alerts"

    @property
    def due(self) -> str:
        """Sorted set: feed name -> unix time of its next poll."""
        return f"{self.prefix}:due"

    @property
    def leases(self) -> str:
        """Hash: feed name -> "owner|until": a poll in progress, so no one else starts it."""
        return f"{self.prefix}:leases"

    @property
    def entries(self) -> str:
        """Stream of new entries waiting for a worker (fields: monitor/workitem.py),
        read by the group ENTRY_GROUP; an entry leaves it when acknowledged."""
        return f"{self.prefix}:entries"

    @property
    def dead_entries(self) -> str:
        """Stream of entries given up after cluster.max_deliveries attempts (their
        fields, plus entry_id, reason, deliveries, at); `feed-monitor dead-letters`."""
        return f"{self.prefix}:entries:dead"

    @property
    def daemons(self) -> str:
        """Set of the ids of daemons that registered; each has a hash that
        expires unless its daemon keeps beating (daemon(id))."""
        return f"{self.prefix}:daemons"

    @property
    def websub_feeds(self) -> str:
        """Set of feed names that have a WebSub subscription record."""
        return f"{self.prefix}:websub"

    @property
    def sameness_signature_prefix(self) -> str:
        """Of the strings sameness_signature(); the Redis script appends the alert_id."""
        return f"{self.prefix}:same:sig:"

    def delivered(self, alert_id: str) -> str:
        """Marks an alert as appended; holds its stream entry id."""
        return f"{self.prefix}:delivered:{alert_id}"

    def delivered_entry(self, rule_id: str, entry_id: str, feed: str) -> str:
        """Marks an entry of a feed as alerted on for a rule, as an alert or an
        also_seen update (they have different alert_ids); holds the stream id."""
        digest = _digest("\x00".join((rule_id, entry_id, feed)))
        return f"{self.prefix}:delivered:entry:{digest}"

    def feed_state(self, feed: str) -> str:
        """Hash of a feed's HTTP caching state and last outcome."""
        return f"{self.prefix}:feed:{feed}"

    def alerted(self, feed: str, identity: str) -> str:
        """Hash for an alerted story: its fingerprint and, per rule, its alert_id."""
        return f"{self.prefix}:alerted:{feed}:{_digest(identity)}"

    def seen(self, feed: str) -> str:
        """Sorted set of processed entry identities, scored by first-seen time."""
        return f"{self.prefix}:seen:{feed}"

    def sameness_url(self, rule_id: str, url: str) -> str:
        """String: a rule's first alert_id for a story at this (sameness) URL."""
        return f"{self.prefix}:same:url:{rule_id}:{_digest(url)}"

    def sameness_band(self, rule_id: str, band: str) -> str:
        """Sorted set: a rule's first alert_ids whose text has this LSH band, by time."""
        return f"{self.prefix}:same:band:{rule_id}:{band}"

    def sameness_signature(self, alert_id: str) -> str:
        """String per first alert: its text signature."""
        return self.sameness_signature_prefix + alert_id

    def sameness_first_feed(self, alert_id: str) -> str:
        """String: the feed that raised a first alert."""
        return f"{self.prefix}:same:feed:{alert_id}"

    def websub(self, feed: str) -> str:
        """Hash of a feed's WebSub subscription (hub, topic, secret, state, lease)."""
        return f"{self.prefix}:websub:{feed}"

    def websub_leaving(self, feed: str, token: str) -> str:
        """Hash of a subscription being left at its old hub after the feed
        named a new one (as websub(), with a TTL), until that hub verifies."""
        return f"{self.prefix}:websub-leaving:{feed}:{token}"

    def daemon(self, daemon_id: str) -> str:
        """Hash of a live daemon: role, host, pid, heartbeat, work done (with a TTL)."""
        return f"{self.prefix}:daemon:{daemon_id}"

    def host_inflight(self, host: str) -> str:
        """Sorted set of requests in flight to a host, from every daemon, scored
        by when each one's lease runs out."""
        return f"{self.prefix}:host:{host}:inflight"

    def host_next(self, host: str) -> str:
        """Unix time (Redis clock) before which no request to the host may start."""
        return f"{self.prefix}:host:{host}:next"


SERVER = KeySpace("feed-monitor")
CLUSTER = KeySpace("{feed-monitor}")
