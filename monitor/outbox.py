"""A durable local spool for alerts and seen-marks that Redis could not take.

SQLite in WAL mode with synchronous=FULL: a row is on disk when ``add_*``
returns, so an alert survives a Redis outage, a crash of the daemon, or
both. Rows leave the spool only after Redis has taken them. Blocking calls:
the async side runs them in a thread.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    alert_id TEXT NOT NULL UNIQUE,
    json TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS seen (
    feed TEXT NOT NULL,
    identity TEXT NOT NULL,
    ts REAL NOT NULL,
    PRIMARY KEY (feed, identity)
);
"""


class Outbox:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def add_alert(self, alert_id: str, doc: str) -> bool:
        """Spool an alert; False if that alert_id is already waiting."""
        with self._lock, self._db:
            cur = self._db.execute(
                "INSERT OR IGNORE INTO alerts (alert_id, json) VALUES (?, ?)", (alert_id, doc)
            )
            return cur.rowcount == 1

    def alerts(self, limit: int = 100) -> list[tuple[int, str]]:
        """The oldest spooled alerts, in the order they were spooled."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, json FROM alerts ORDER BY seq LIMIT ?", (limit,)
            ).fetchall()
        return [(int(seq), str(doc)) for seq, doc in rows]

    def remove_alert(self, seq: int) -> None:
        with self._lock, self._db:
            self._db.execute("DELETE FROM alerts WHERE seq = ?", (seq,))

    def add_seen(self, feed: str, identities: Sequence[str], ts: float) -> None:
        with self._lock, self._db:
            self._db.executemany(
                "INSERT OR IGNORE INTO seen (feed, identity, ts) VALUES (?, ?, ?)",
                [(feed, i, ts) for i in identities],
            )

    def seen(self, limit: int = 1000) -> list[tuple[str, str, float]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT feed, identity, ts FROM seen ORDER BY ts LIMIT ?", (limit,)
            ).fetchall()
        return [(str(f), str(i), float(t)) for f, i, t in rows]

    def remove_seen(self, rows: Sequence[tuple[str, str]]) -> None:
        with self._lock, self._db:
            self._db.executemany("DELETE FROM seen WHERE feed = ? AND identity = ?", rows)

    def depth(self) -> tuple[int, int]:
        """(alerts, seen-marks) waiting for Redis."""
        with self._lock:
            a = self._db.execute("SELECT COUNT(*) FROM alerts").fetchone()[0]
            s = self._db.execute("SELECT COUNT(*) FROM seen").fetchone()[0]
        return int(a), int(s)
