"""Prometheus metrics and the /metrics and /healthz endpoints.

A private registry per daemon (not the library's global one), so tests and
several daemons in one process never mix counts.
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.polls = Counter(
            "feed_monitor_polls", "Feed polls by outcome (ok, not_modified, failed).",
            ["outcome"], registry=r,
        )  # fmt: skip
        self.poll_errors = Counter(
            "feed_monitor_poll_errors", "Failed polls by error kind.", ["kind"], registry=r
        )
        self.fetch_seconds = Histogram(
            "feed_monitor_fetch_seconds", "Time to fetch a feed or page.", ["what"], registry=r,
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
        )  # fmt: skip
        self.entries = Counter(
            "feed_monitor_entries_processed", "New entries processed.", registry=r
        )
        self.alerts = Counter("feed_monitor_alerts", "Alerts delivered.", ["rule"], registry=r)
        self.extraction_failures = Counter(
            "feed_monitor_extraction_failures",
            "Pages whose text could not be used (the feed's text was used instead).",
            ["reason"], registry=r,
        )  # fmt: skip
        self.redis_errors = Counter(
            "feed_monitor_redis_errors", "Redis commands that failed.", registry=r
        )
        self.inflight = Gauge("feed_monitor_polls_inflight", "Polls running now.", registry=r)
        self.last_success = Gauge(
            "feed_monitor_last_successful_poll_timestamp_seconds",
            "Unix time of the last poll that completed without error.", registry=r,
        )  # fmt: skip
        self.rules_loaded = Gauge("feed_monitor_rules_loaded", "Rules in force.", registry=r)
        self.spool_depth = Gauge(
            "feed_monitor_spool_depth", "Items waiting in the local spool for Redis.", ["kind"],
            registry=r,
        )  # fmt: skip
        self.group_lag = Gauge(
            "feed_monitor_consumer_group_lag", "Alerts a consumer group has not read yet.",
            ["group"], registry=r,
        )  # fmt: skip
        self.feeds = Gauge("feed_monitor_feeds", "Feeds by last outcome.", ["state"], registry=r)
        self.websub_deliveries = Counter(
            "feed_monitor_websub_deliveries",
            "WebSub content deliveries by result (accepted, bad_signature, gone, redis).",
            ["result"], registry=r,
        )  # fmt: skip
        self.websub_hub_errors = Counter(
            "feed_monitor_websub_hub_errors", "WebSub hub requests that failed, by kind.",
            ["kind"], registry=r,
        )  # fmt: skip

    def render(self) -> bytes:
        return generate_latest(self.registry)


def metrics_app(metrics: Metrics, healthy: Callable[[], tuple[bool, str]]) -> web.Application:
    async def get_metrics(_request: web.Request) -> web.Response:
        resp = web.Response(body=metrics.render())
        resp.content_type = CONTENT_TYPE_LATEST.split(";")[0]
        return resp

    async def get_health(_request: web.Request) -> web.Response:
        ok, why = healthy()
        return web.Response(status=200 if ok else 503, text=why + "\n")

    app = web.Application()
    app.router.add_get("/metrics", get_metrics)
    app.router.add_get("/healthz", get_health)
    return app
