"""One event per line: ``event.name key=value ...`` (or JSON).

Under journald ($JOURNAL_STREAM set) lines carry no timestamp and start with
a syslog priority prefix, so ``journalctl -p warning`` filters them.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
import queue
import sys
import time
from logging.handlers import QueueHandler, QueueListener
from typing import Any

_PRIORITY = {
    logging.DEBUG: 7,
    logging.INFO: 6,
    logging.WARNING: 4,
    logging.ERROR: 3,
    logging.CRITICAL: 2,
}


def event(logger: logging.Logger, level: int, name: str, **fields: Any) -> None:
    """Log a named event with fields; the formatter renders it."""
    logger.log(level, name, extra={"fields": fields})


def _quote(v: Any) -> str:
    s = str(v)
    if not s or any(c in s for c in ' "=\n\t'):
        return json.dumps(s, ensure_ascii=False)
    return s


class KeyValueFormatter(logging.Formatter):
    def __init__(self, journald: bool) -> None:
        super().__init__()
        self.journald = journald

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = getattr(record, "fields", {})
        parts = [record.getMessage(), *(f"{k}={_quote(v)}" for k, v in fields.items())]
        if record.exc_info:
            parts.append("exc=" + _quote(self.formatException(record.exc_info)))
        line = " ".join(parts)
        if self.journald:
            return f"<{_PRIORITY.get(record.levelno, 6)}>{line}"
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        return f"{ts}Z {record.levelname:<7} {line}"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "event": record.getMessage(),
            **getattr(record, "fields", {}),
        }
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False, default=str)


# Lines the daemon may hold while stderr is not being read, before it drops
# the newest (and counts them): about 1 KB of memory each (a queued record
# and its line, measured), 10 MB when full.
QUEUED_LINES = 10_000
# How long a stopping daemon waits for its last lines to be written.
FLUSH_S = 2.0


class _QueueWithoutBlocking(QueueHandler):
    """Formats each record where it is logged, and queues the line for the
    writer thread; never waits. A full queue drops the line and counts it;
    the next line that fits is preceded by a ``logs.dropped`` line."""

    def __init__(self, lines: queue.Queue[logging.LogRecord], formatter: logging.Formatter) -> None:
        super().__init__(lines)
        self.setFormatter(formatter)
        self.dropped = 0

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        # The line is made here, with the record's own time and exception;
        # the writer only writes it.
        line = copy.copy(record)
        line.msg, line.args = self.format(record), None
        line.exc_info = line.exc_text = line.stack_info = None
        return line

    def enqueue(self, record: logging.LogRecord) -> None:
        try:
            if self.dropped:
                fields = {"lines": self.dropped, "reason": "stderr was not being read"}
                note = logging.makeLogRecord(
                    {"levelno": logging.WARNING, "levelname": "WARNING", "msg": "logs.dropped",
                     "name": __name__, "fields": fields}
                )  # fmt: skip
                self.queue.put_nowait(self.prepare(note))
                self.dropped = 0
            self.queue.put_nowait(record)
        except queue.Full:
            self.dropped += 1


class _Writer(QueueListener):
    """The thread that writes the queued lines to stderr."""

    def stop_within(self, timeout_s: float) -> None:
        """Write what is queued, waiting at most ``timeout_s``: stderr may be
        stuck, and a daemon must still exit."""
        with contextlib.suppress(queue.Full):
            self.enqueue_sentinel()
        # QueueListener.stop() is the same, but joins without a limit.
        thread = self._thread
        if thread is not None:
            thread.join(timeout_s)
        self._thread = None


_writers: list[_Writer] = []  # the one running, if any


def setup_logging(level: str = "info", fmt: str = "text", *, background: bool = False) -> None:
    """Log lines to stderr. ``background`` (the daemon): a thread writes them,
    so a stderr that blocks (a full pipe nobody reads, a stalled log
    collector) never stops the event loop; the CLI's commands write at
    once, in order with their other output."""
    stop_logging()
    journald = bool(os.environ.get("JOURNAL_STREAM"))
    formatter = JsonFormatter() if fmt == "json" else KeyValueFormatter(journald)
    sink = logging.StreamHandler(sys.stderr)
    handler: logging.Handler = sink
    if background:
        lines: queue.Queue[logging.LogRecord] = queue.Queue(QUEUED_LINES)
        handler = _QueueWithoutBlocking(lines, formatter)
        sink.setFormatter(logging.Formatter("%(message)s"))
        writer = _Writer(lines, sink)
        writer.start()
        _writers.append(writer)
    else:
        sink.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Third-party chatter stays at warning unless asked for.
    for noisy in (
        "apscheduler",
        "trafilatura",
        "htmldate",
        "courlan",
        "charset_normalizer",
        "watchfiles",
    ):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def stop_logging() -> None:
    """Write out the background writer's last lines (bounded by FLUSH_S);
    lines logged after that are written at once."""
    while _writers:
        _writers.pop().stop_within(FLUSH_S)
    root = logging.getLogger()
    for i, handler in enumerate(root.handlers):
        if isinstance(handler, _QueueWithoutBlocking):
            direct = logging.StreamHandler(sys.stderr)
            direct.setFormatter(handler.formatter)
            root.handlers[i] = direct
