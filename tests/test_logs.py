"""Log lines: key=value text, JSON, and journald priority prefixes."""

from __future__ import annotations

import json
import logging
import queue
import sys
import time

import pytest

from monitor.logs import (
    JsonFormatter,
    KeyValueFormatter,
    _QueueWithoutBlocking,
    event,
    setup_logging,
    stop_logging,
)


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


def test_a_full_queue_drops_lines_counts_them_and_says_so() -> None:
    lines: queue.Queue[logging.LogRecord] = queue.Queue(2)  # and no writer: stderr is stuck
    handler = _QueueWithoutBlocking(lines, KeyValueFormatter(journald=True))
    log = logging.getLogger("test.logs.full")
    log.propagate = False
    log.setLevel(logging.INFO)
    log.handlers[:] = [handler]
    try:
        for n in range(5):
            event(log, logging.WARNING, "feed.failed", n=n)
        assert [lines.get_nowait().getMessage() for _ in range(2)] == [
            "<4>feed.failed n=0",
            "<4>feed.failed n=1",
        ]
        event(log, logging.INFO, "feed.fetched", n=5)  # room again
        written = [lines.get_nowait().getMessage() for _ in range(2)]
    finally:
        log.handlers.clear()
    assert written == [
        '<4>logs.dropped lines=3 reason="stderr was not being read"',
        "<6>feed.fetched n=5",
    ]
    assert lines.empty()


def test_the_queued_line_is_made_where_it_is_logged() -> None:
    """Time and exception come from the moment of logging, not of writing."""
    lines: queue.Queue[logging.LogRecord] = queue.Queue(4)
    handler = _QueueWithoutBlocking(lines, KeyValueFormatter(journald=False))
    rec = record(logging.ERROR, "poll.crashed", feed="nrk")
    try:
        raise ValueError("bad bytes")
    except ValueError:
        rec.exc_info = sys.exc_info()
    handler.handle(rec)
    line = lines.get_nowait()
    assert line.exc_info is None and line.args is None
    text = line.getMessage()
    assert text.startswith(time.strftime("%Y-%m-%dT", time.gmtime(rec.created)))
    assert "ERROR   poll.crashed feed=nrk exc=" in text and "ValueError: bad bytes" in text


def test_the_background_writer_writes_every_line_before_it_stops(
    capsys: pytest.CaptureFixture[str],
) -> None:
    root = logging.getLogger()
    saved, level = root.handlers[:], root.level
    try:
        setup_logging("info", "json", background=True)
        log = logging.getLogger("test.logs.writer")
        for n in range(200):
            event(log, logging.INFO, "feed.polled", n=n)
        stop_logging()  # written out, then lines go straight to stderr
        event(log, logging.WARNING, "daemon.stopped")
    finally:
        root.handlers[:], root.level = saved, level
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [d.get("n") for d in lines[:200]] == list(range(200))
    assert lines[200]["event"] == "daemon.stopped"
    assert len(lines) == 201
