"""Log lines: key=value text, JSON, and journald priority prefixes."""

from __future__ import annotations

import json
import logging

from monitor.logs import JsonFormatter, KeyValueFormatter


def record(level: int, name: str, **fields: object) -> logging.LogRecord:
    rec = logging.LogRecord("t", level, __file__, 1, name, None, None)
    rec.fields = fields
    return rec


def test_key_value_lines_quote_what_needs_it() -> None:
    line = KeyValueFormatter(journald=False).format(
        record(logging.INFO, "feed.fetched", feed="nrk", title="Kina og Russland", n=3)
    )
    assert line.endswith('INFO    feed.fetched feed=nrk title="Kina og Russland" n=3')
    assert line[:4].isdigit()  # timestamp first


def test_journald_gets_priorities_and_no_timestamp() -> None:
    fmt = KeyValueFormatter(journald=True)
    assert fmt.format(record(logging.WARNING, "feed.failed", kind="dns")) == (
        "<4>feed.failed kind=dns"
    )
    assert fmt.format(record(logging.ERROR, "rules.rejected")).startswith("<3>")
    assert fmt.format(record(logging.INFO, "alert.published")).startswith("<6>")


def test_json_lines() -> None:
    doc = json.loads(JsonFormatter().format(record(logging.INFO, "alert.published", rule="r")))
    assert doc["event"] == "alert.published"
    assert doc["rule"] == "r"
    assert doc["level"] == "info"
