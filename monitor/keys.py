"""Every Redis key and channel name feed-monitor uses; nothing else builds them.

``feed-monitor:alerts`` (stream and channel) is a public contract.
"""

from __future__ import annotations

import hashlib

PREFIX = "feed-monitor"
ALERT_STREAM = f"{PREFIX}:alerts"
ALERT_CHANNEL = f"{PREFIX}:alerts"
SYSTEM_CHANNEL = f"{PREFIX}:system"
# Sorted set: feed name -> unix time of its next poll.
DUE = f"{PREFIX}:due"
# Hash: feed name -> "owner|until": a poll in progress, so no one else starts it.
LEASES = f"{PREFIX}:leases"
# Stream of new entries waiting for a worker (fields: see monitor/workitem.py),
# read by the consumer group ENTRY_GROUP; an entry leaves it when acknowledged.
ENTRIES = f"{PREFIX}:entries"
ENTRY_GROUP = "workers"
# Stream of entries given up after cluster.max_deliveries attempts (their
# fields, plus entry_id, reason, deliveries, at); `feed-monitor dead-letters`.
DEAD_ENTRIES = f"{PREFIX}:entries:dead"
# Set of the ids of daemons that registered; each has a hash that expires
# unless its daemon keeps beating (daemon(id)).
DAEMONS = f"{PREFIX}:daemons"


def rule_channel(rule_id: str) -> str:
    return f"{PREFIX}:alerts:{rule_id}"


def delivered(alert_id: str) -> str:
    """Marks an alert as appended; holds its stream entry id."""
    return f"{PREFIX}:delivered:{alert_id}"


def feed_state(feed: str) -> str:
    """Hash of a feed's HTTP caching state and last outcome."""
    return f"{PREFIX}:feed:{feed}"


def alerted(feed: str, identity: str) -> str:
    """Hash for an alerted story: its fingerprint and, per rule, its alert_id."""
    digest = hashlib.sha1(identity.encode("utf-8", "surrogatepass")).hexdigest()
    return f"{PREFIX}:alerted:{feed}:{digest}"


def seen(feed: str) -> str:
    """Sorted set of processed entry identities, scored by first-seen time."""
    return f"{PREFIX}:seen:{feed}"


def sameness_url(rule_id: str, url: str) -> str:
    """String: a rule's first alert_id for a story at this (sameness) URL."""
    digest = hashlib.sha1(url.encode("utf-8", "surrogatepass")).hexdigest()
    return f"{PREFIX}:same:url:{rule_id}:{digest}"


def sameness_band(rule_id: str, band: str) -> str:
    """Sorted set: a rule's first alert_ids whose text has this LSH band, by time."""
    return f"{PREFIX}:same:band:{rule_id}:{band}"


# String per first alert: its text signature (the Redis script appends the alert_id).
SAMENESS_SIGNATURE = f"{PREFIX}:same:sig:"


def sameness_signature(alert_id: str) -> str:
    return SAMENESS_SIGNATURE + alert_id


def sameness_first_feed(alert_id: str) -> str:
    """String: the feed that raised a first alert."""
    return f"{PREFIX}:same:feed:{alert_id}"


# Set of feed names that have a WebSub subscription record.
WEBSUB_FEEDS = f"{PREFIX}:websub"


def websub(feed: str) -> str:
    """Hash of a feed's WebSub subscription (hub, topic, secret, state, lease)."""
    return f"{PREFIX}:websub:{feed}"


def daemon(daemon_id: str) -> str:
    """Hash of a live daemon: role, host, pid, heartbeat, work done (with a TTL)."""
    return f"{PREFIX}:daemon:{daemon_id}"


def host_inflight(host: str) -> str:
    """Sorted set of requests in flight to a host, from every daemon, scored by
    when each one's lease runs out."""
    return f"{PREFIX}:host:{host}:inflight"


def host_next(host: str) -> str:
    """Unix time (Redis clock) before which no request to the host may start."""
    return f"{PREFIX}:host:{host}:next"
