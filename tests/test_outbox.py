from __future__ import annotations

import contextlib
import sqlite3
import threading
from pathlib import Path

from edge_agent.sinks.outbox import (
    PRIORITY_ALARM,
    PRIORITY_STATUS,
    Outbox,
    OutboxSettings,
)


def test_persists_across_reopen_oldest_first(tmp_path: Path) -> None:
    s = OutboxSettings(path=str(tmp_path / "o.sqlite"))
    ob = Outbox(s)
    ids = [ob.put("t/a", f"m{i}".encode(), priority=PRIORITY_ALARM) for i in range(5)]
    ob.ack(ids[1])
    ob.close()
    ob2 = Outbox(s)
    assert [r.payload for r in ob2.pending()] == [b"m0", b"m2", b"m3", b"m4"]
    assert ob2.pending(after=ids[2])[0].payload == b"m3"
    assert len(ob2) == 4
    # WAL journal (set by the outbox, kept by the file): a crash loses no committed alarm
    with contextlib.closing(sqlite3.connect(tmp_path / "o.sqlite")) as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_bounded_drops_low_priority_first_and_counts(tmp_path: Path) -> None:
    ob = Outbox(OutboxSettings(path=str(tmp_path / "o.sqlite"), max_rows=3))
    ob.put("s", b"status", priority=PRIORITY_STATUS)
    ob.put("a", b"alarm1", priority=PRIORITY_ALARM)
    ob.put("a", b"alarm2", priority=PRIORITY_ALARM)
    ob.put("a", b"alarm3", priority=PRIORITY_ALARM)
    assert [r.payload for r in ob.pending()] == [b"alarm1", b"alarm2", b"alarm3"]
    assert ob.dropped == 1
    ob.put("a", b"alarm4", priority=PRIORITY_ALARM)
    assert [r.payload for r in ob.pending()] == [b"alarm2", b"alarm3", b"alarm4"]
    assert ob.dropped == 2


def test_byte_bound(tmp_path: Path) -> None:
    ob = Outbox(OutboxSettings(path=str(tmp_path / "o.sqlite"), max_bytes=250))
    for i in range(5):
        ob.put("a", bytes([i]) * 100)
    assert len(ob) == 2 and ob.dropped == 3


def test_threads_use_own_connections(tmp_path: Path) -> None:
    ob = Outbox(OutboxSettings(path=str(tmp_path / "o.sqlite")))

    def writer(k: int) -> None:
        for i in range(20):
            ob.put("t", f"{k}-{i}".encode())

    ts = [threading.Thread(target=writer, args=(k,)) for k in range(3)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert len(ob) == 60
