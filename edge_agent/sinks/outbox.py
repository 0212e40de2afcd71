"""Durable store-and-forward outbox for MQTT events (SQLite, WAL mode).

Why: an alarm must survive a broker outage and an agent restart. Every alarm/health event is
written here BEFORE it is published and deleted only when the broker acknowledges it (QoS 1
PUBACK). After an outage or a restart rows are delivered oldest first (by rowid).

Bounded: at most `max_rows` rows and about `max_bytes` of payload. When full, the policy is:
drop the oldest rows of the lowest priority first (priority 0 = score-like / status events,
1 = health, 2 = alarms), so alarms go last; every drop is counted (`dropped`) and reported by
the agent, never silent. SQLite connections are per thread (`threading.local`).
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError
from ..settings import bounded, check_fields

PRIORITY_STATUS = 0
PRIORITY_HEALTH = 1
PRIORITY_ALARM = 2


@dataclass(frozen=True)
class OutboxSettings:
    path: str = "edge-agent-outbox.sqlite"
    max_rows: int = bounded(10000, ge=1)
    max_bytes: int = bounded(20_000_000, ge=1)

    def __post_init__(self) -> None:
        check_fields(self, "outbox")


@dataclass(frozen=True)
class OutboxRow:
    id: int
    topic: str
    payload: bytes
    qos: int
    retain: bool
    priority: int


class Outbox:
    """SQLite-backed FIFO of messages awaiting a broker acknowledgement."""

    def __init__(self, settings: OutboxSettings = OutboxSettings()) -> None:
        self.settings = settings
        self.path = Path(settings.path)
        self._local = threading.local()
        self._lock = threading.Lock()
        self.dropped = 0
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            con = self._con()
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(f"outbox.path: cannot open {self.path}: {exc}") from None
        con.execute(
            "CREATE TABLE IF NOT EXISTS outbox (id INTEGER PRIMARY KEY AUTOINCREMENT,"
            " topic TEXT NOT NULL, payload BLOB NOT NULL, qos INTEGER NOT NULL,"
            " retain INTEGER NOT NULL, priority INTEGER NOT NULL)"
        )
        con.commit()

    def _con(self) -> sqlite3.Connection:
        con: sqlite3.Connection | None = getattr(self._local, "con", None)
        if con is None:
            con = sqlite3.connect(self.path, timeout=10.0)
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA synchronous=NORMAL")
            self._local.con = con
        return con

    def put(
        self, topic: str, payload: bytes, qos: int = 1, retain: bool = False, priority: int = 0
    ) -> int:
        """Persist one message (committed before returning); returns its row id."""
        with self._lock:
            con = self._con()
            cur = con.execute(
                "INSERT INTO outbox (topic, payload, qos, retain, priority) VALUES (?,?,?,?,?)",
                (topic, payload, qos, int(retain), priority),
            )
            self._enforce_bounds(con)
            con.commit()
            return int(cur.lastrowid or 0)

    def _enforce_bounds(self, con: sqlite3.Connection) -> None:
        while True:
            n, size = con.execute(
                "SELECT COUNT(*), COALESCE(SUM(LENGTH(payload)), 0) FROM outbox"
            ).fetchone()
            if n <= self.settings.max_rows and (size <= self.settings.max_bytes or n <= 1):
                return
            victim = con.execute(
                "SELECT id FROM outbox ORDER BY priority ASC, id ASC LIMIT 1"
            ).fetchone()
            con.execute("DELETE FROM outbox WHERE id = ?", (victim[0],))
            self.dropped += 1

    def pending(self, limit: int = 100, after: int = 0) -> list[OutboxRow]:
        """Oldest rows first with id > `after`."""
        rows = (
            self._con()
            .execute(
                "SELECT id, topic, payload, qos, retain, priority FROM outbox WHERE id > ?"
                " ORDER BY id LIMIT ?",
                (after, limit),
            )
            .fetchall()
        )
        return [OutboxRow(r[0], r[1], bytes(r[2]), r[3], bool(r[4]), r[5]) for r in rows]

    def ack(self, row_id: int) -> None:
        """The broker acknowledged this row: forget it."""
        with self._lock:
            con = self._con()
            con.execute("DELETE FROM outbox WHERE id = ?", (row_id,))
            con.commit()

    def __len__(self) -> int:
        return int(self._con().execute("SELECT COUNT(*) FROM outbox").fetchone()[0])

    def close(self) -> None:
        con: sqlite3.Connection | None = getattr(self._local, "con", None)
        if con is not None:
            con.close()
            self._local.con = None
