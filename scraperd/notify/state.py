"""What the notifier remembers across restarts: a small SQLite file (var/monitor/<section>.state.sqlite).

    states    key -> the state last observed (the next message's previous_state)
    notified  (key, recipient) -> the state last delivered to that recipient, and the time of the
              observation it reported (renotify counts from it)

A delivery that finally failed is not in `notified`, so the next observation sends it again. With
no path the same tables live in memory (a long job's progress). One connection, shared by the
observing thread and the delivery worker under a lock.
"""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS states (key TEXT PRIMARY KEY, state TEXT NOT NULL, seen TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS notified (key TEXT NOT NULL, recipient TEXT NOT NULL, state TEXT NOT NULL,
                                     ts TEXT NOT NULL, PRIMARY KEY (key, recipient));
"""


def _text(t: datetime) -> str:
    return (t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)).isoformat()


class StateFile:
    """The states and the deliveries, in SQLite (a file, or memory when path is None)."""

    def __init__(self, path: Path | None) -> None:
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.lock = threading.Lock()
        self.db = sqlite3.connect(str(path) if path else ":memory:", check_same_thread=False, timeout=10,
                                  isolation_level=None)
        with self.lock:
            self.db.executescript(_SCHEMA)

    def state(self, key: str) -> str | None:
        """The state last observed of key, or None."""
        with self.lock:
            row = self.db.execute("SELECT state FROM states WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_states(self, states: dict[str, str], now: datetime) -> None:
        """Record the state observed now of every key given (one transaction)."""
        with self.lock:
            self.db.execute("BEGIN")
            self.db.executemany("INSERT INTO states (key, state, seen) VALUES (?, ?, ?) ON CONFLICT (key) "
                                "DO UPDATE SET state = excluded.state, seen = excluded.seen",
                                [(k, s, _text(now)) for k, s in states.items()])
            self.db.execute("COMMIT")

    def notified(self, key: str, recipient: str) -> tuple[str, datetime] | None:
        """(state, observation time) last delivered to recipient about key, or None."""
        with self.lock:
            row = self.db.execute("SELECT state, ts FROM notified WHERE key = ? AND recipient = ?",
                                  (key, recipient)).fetchone()
        return (row[0], datetime.fromisoformat(row[1])) if row else None

    def record_notified(self, key: str, recipient: str, state: str, ts: datetime) -> None:
        """A delivery landed: recipient now knows key is in state (as observed at ts)."""
        with self.lock:
            self.db.execute("INSERT INTO notified (key, recipient, state, ts) VALUES (?, ?, ?, ?) "
                            "ON CONFLICT (key, recipient) DO UPDATE SET state = excluded.state, ts = excluded.ts",
                            (key, recipient, state, _text(ts)))

    def close(self) -> None:
        with self.lock:
            self.db.close()
