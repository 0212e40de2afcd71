from __future__ import annotations

import contextlib
import logging
import random
import sqlite3
import threading
from pathlib import Path

import pytest
from disk_fixtures import SmallDisk, mounted_tmpfs

from edge_agent.config.sinks import OutboxSettings
from edge_agent.sinks.outbox import (
    PRIORITY_ALARM,
    PRIORITY_HEALTH,
    PRIORITY_STATUS,
    Outbox,
    topic_problem,
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


def test_an_outbox_of_the_previous_version_keeps_its_rows(tmp_path: Path) -> None:
    """A device's outbox from before the quarantine and notice tables: the same `outbox`
    table, so it is ours; the new tables are added and the waiting alarms are sent."""
    path = tmp_path / "o.sqlite"
    with contextlib.closing(sqlite3.connect(path)) as con:
        con.execute("PRAGMA journal_mode=WAL")
        con.execute(
            "CREATE TABLE outbox (id INTEGER PRIMARY KEY AUTOINCREMENT,"
            " topic TEXT NOT NULL, payload BLOB NOT NULL, qos INTEGER NOT NULL,"
            " retain INTEGER NOT NULL, priority INTEGER NOT NULL)"
        )
        con.executemany(
            "INSERT INTO outbox (topic, payload, qos, retain, priority) VALUES (?,?,?,?,?)",
            [("t/a", b"old1", 1, 1, 2), ("t/a", b"old2", 1, 1, 2)],
        )
        con.commit()
    ob = Outbox(OutboxSettings(path=str(path)))
    assert [r.payload for r in ob.pending()] == [b"old1", b"old2"]
    assert ob.take_notices() == [] and not list(tmp_path.glob("o.sqlite.*-*"))
    assert ob.put("t/a", b"new") == 3


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


# --- faults (issue 25): a real full file system, real damaged files, real bad rows ----------


def health_of(ob: Outbox) -> list[str]:
    return [n.event for n in ob.take_notices()]


def test_full_disk_keeps_rows_in_memory_reports_once_and_recovers_in_order(
    small_disk: SmallDisk,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Disk full: rows go to memory (negative ids), one `outbox_disk_full` for the episode, not
    one per row; space back: `retry()` notices it, moves the rows to disk in order, and says
    `outbox_disk_ok`."""
    caplog.set_level(logging.INFO, logger="edge_agent")
    ob = Outbox(OutboxSettings(path=str(small_disk.path / "o.sqlite")))
    first = ob.put("t/a", b"before", priority=PRIORITY_ALARM)
    assert first > 0 and health_of(ob) == []
    small_disk.fill()
    held = [ob.put("t/a", f"full{i}".encode() * 100, priority=PRIORITY_ALARM) for i in range(5)]
    assert all(i < 0 for i in held)
    assert len(ob) == 6 and ob.dropped == 0
    assert health_of(ob) == ["outbox_disk_full"]  # once per episode
    warnings = [r.getMessage() for r in caplog.records if "cannot store" in r.getMessage()]
    assert len(warnings) == 1 and "database or disk is full" in warnings[0]
    ob.retry()  # still full: nothing new
    assert health_of(ob) == [] and len(ob.unsent_memory()) == 5
    small_disk.free()
    ob.retry(now=True)  # (the sender's retries come at most once a second)
    assert health_of(ob) == ["outbox_disk_ok"]
    assert ob.unsent_memory() == []
    rows = ob.pending()
    assert [r.payload[:5] for r in rows] == [b"befor"] + [f"full{i}".encode() for i in range(5)]
    assert all(r.id > 0 for r in rows) and [r.id for r in rows] == sorted(r.id for r in rows)
    ob.close()
    assert len(Outbox(OutboxSettings(path=str(small_disk.path / "o.sqlite")))) == 6  # durable


def test_disk_full_at_start_is_a_warning_and_the_outbox_opens_later(
    small_disk: SmallDisk,
    caplog: pytest.LogCaptureFixture,
) -> None:
    small_disk.fill()
    ob = Outbox(OutboxSettings(path=str(small_disk.path / "new" / "o.sqlite")))  # no raise
    msgs = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(msgs) == 1 and "cannot store" in msgs[0] and "\n" not in msgs[0]
    assert ob.put("t/a", b"x", priority=PRIORITY_ALARM) < 0
    assert health_of(ob) == ["outbox_disk_full"]
    small_disk.free()
    ob.retry(now=True)
    assert health_of(ob) == ["outbox_disk_ok"] and [r.payload for r in ob.pending()] == [b"x"]


def test_the_journal_stays_small_on_a_small_disk(tmp_path: Path) -> None:
    """A busy outbox (rows written, delivered, deleted) keeps its WAL under half a megabyte
    (SQLite's default checkpoint lets it reach 4 MB and keeps that space): on a 2 MiB disk,
    1000 alarms pass through without the disk ever refusing one."""
    with mounted_tmpfs(tmp_path / "disk", "2m") as disk:
        ob = Outbox(OutboxSettings(path=str(disk.path / "o.sqlite")))
        for _ in range(50):
            ids = [ob.put("t/a", b"m" * 1500, priority=PRIORITY_ALARM) for _ in range(20)]
            assert all(i > 0 for i in ids)
            for i in ids:
                ob.ack(i)
        assert (disk.path / "o.sqlite-wal").stat().st_size < 500_000
        assert health_of(ob) == [] and len(ob) == 0
        ob.close()


def test_acks_the_disk_refuses_are_deleted_later(small_disk: SmallDisk) -> None:
    ob = Outbox(OutboxSettings(path=str(small_disk.path / "o.sqlite")))
    ids = [ob.put("t/a", b"m" * 2000, priority=PRIORITY_ALARM) for _ in range(3)]
    small_disk.fill()
    ob.ack(ids[0])  # a DELETE is a write too: refused
    assert len(ob) == 2 and [r.id for r in ob.pending()] == ids[1:]
    small_disk.free()
    ob.retry(now=True)
    ob.close()
    assert [
        r.id for r in Outbox(OutboxSettings(path=str(small_disk.path / "o.sqlite"))).pending()
    ] == ids[1:]


def test_notices_neither_evict_nor_inflate_the_drop_count(tmp_path: Path) -> None:
    """A 10-row outbox, 50 events: 40 real drops are 40 counted drops; the `outbox_full`
    notices (first drop, 10th drop) sit outside the bound and replace each other."""
    ob = Outbox(OutboxSettings(path=str(tmp_path / "o.sqlite"), max_rows=10))
    for i in range(50):
        ob.put("t/a", f"a{i}".encode(), priority=PRIORITY_ALARM)
        for n in ob.take_notices():  # what the agent does: the notice into the same outbox
            assert n.event == "outbox_full"
            ob.put(
                "t/health",
                f"full {n.dropped}".encode(),
                priority=PRIORITY_HEALTH,
                notice="outbox_full",
            )
    assert ob.dropped == 40
    # the latest notice only (put after the 10th drop, at a19), and it evicted nothing
    assert [r.payload for r in ob.pending()] == [b"full 10"] + [
        f"a{i}".encode() for i in range(40, 50)
    ]


def test_a_row_in_flight_is_never_dropped(tmp_path: Path) -> None:
    ob = Outbox(OutboxSettings(path=str(tmp_path / "o.sqlite"), max_rows=2))
    a = ob.put("t", b"a", priority=PRIORITY_STATUS)
    ob.handed(a)  # the MQTT client holds it until the PUBACK: dropping it would be a lie
    ob.put("t", b"b", priority=PRIORITY_ALARM)
    ob.put("t", b"c", priority=PRIORITY_ALARM)
    assert ob.dropped == 1 and [r.payload for r in ob.pending()] == [b"a", b"c"]


def test_bad_rows_are_quarantined_counted_and_never_returned(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    ob = Outbox(OutboxSettings(path=str(path)))
    ob.put("t/good", b"1")
    with contextlib.closing(sqlite3.connect(path)) as con:
        con.executemany(
            "INSERT INTO outbox (topic, payload, qos, retain, priority) VALUES (?,?,?,?,?)",
            [
                ("t/#", b"w", 1, 0, 2),
                ("t/\x01", b"c", 1, 0, 2),
                ("t/text", "not bytes", 1, 0, 2),
                ("t/q", b"q", 7, 0, 2),
                ("t/good", b"2", 1, 0, 2),
            ],
        )
        con.commit()
    assert [r.payload for r in ob.pending()] == [b"1", b"2"]
    assert ob.quarantined == 4
    notices = ob.take_notices()
    assert [(n.event, n.count) for n in notices] == [("outbox_quarantined", 4)]  # summed
    with contextlib.closing(sqlite3.connect(path)) as con:
        kept = con.execute("SELECT topic, payload, reason FROM outbox_quarantine").fetchall()
    assert [(t, p) for t, p, _ in kept] == [
        ("t/#", b"w"),
        ("t/\x01", b"c"),
        ("t/text", "not bytes"),
        ("t/q", b"q"),
    ]
    reasons = [r for *_, r in kept]
    assert "wildcards" in reasons[0] and "U+0001" in reasons[1]
    assert "expected bytes" in reasons[2] and "qos: expected 0, 1 or 2, got 7" in reasons[3]
    ob.close()
    again = Outbox(OutboxSettings(path=str(path)))  # nothing bad survives in the queue
    assert [r.payload for r in again.pending()] == [b"1", b"2"] and again.quarantined == 0


def damage(path: Path, kind: str) -> bytes:
    """Make `path` a real broken outbox file of `kind`; returns its bytes."""
    if kind == "garbage":
        path.write_bytes(random.Random(1).randbytes(8192))
    elif kind == "damaged":  # a real outbox with rows, a page in the middle overwritten
        ob = Outbox(OutboxSettings(path=str(path)))
        for _ in range(100):
            ob.put("t/a", random.Random(2).randbytes(1500), priority=PRIORITY_ALARM)
        ob.close()
        data = bytearray(path.read_bytes())
        data[4096 * 4 : 4096 * 6] = random.Random(3).randbytes(8192)
        path.write_bytes(bytes(data))
    else:  # another program's table called outbox
        with contextlib.closing(sqlite3.connect(path)) as con:
            con.execute("CREATE TABLE outbox (id INTEGER PRIMARY KEY, msg TEXT)")
            con.execute("INSERT INTO outbox (msg) VALUES ('theirs')")
            con.commit()
    return path.read_bytes()


@pytest.mark.parametrize("kind", ["garbage", "damaged", "foreign"])
def test_a_damaged_or_foreign_file_is_moved_aside_with_one_warning(
    tmp_path: Path,
    kind: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    path = tmp_path / "o.sqlite"
    before = damage(path, kind)
    caplog.clear()
    ob = Outbox(OutboxSettings(path=str(path)))
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    aside = "foreign" if kind == "foreign" else "corrupt"
    assert len(warnings) == 1 and "\n" not in warnings[0], warnings
    assert f"moved aside to o.sqlite.{aside}-" in warnings[0]
    want = {
        "garbage": "not a SQLite database (file is not a database)",
        "damaged": "damaged SQLite database (quick_check: ",
        "foreign": "table outbox has a schema this agent does not know (columns id, msg;",
    }
    assert want[kind] in warnings[0]
    (moved,) = tmp_path.glob(f"o.sqlite.{aside}-*")
    assert moved.read_bytes() == before  # kept for whoever wants to look
    assert [n.event for n in ob.take_notices()] == ["outbox_replaced"]
    row = ob.put("t/a", b"fresh", priority=PRIORITY_ALARM)
    assert [r.id for r in ob.pending()] == [row]


def test_topic_problem_names_what_the_broker_would_refuse() -> None:
    assert topic_problem("edge-asd/dev1/fan/alarm") is None
    assert topic_problem("edge-asd/dev/é") is None
    for bad, words in (
        ("", "empty"),
        ("a/+", "wildcards"),
        ("a/\x00", "U+0000"),
        ("a/\x7f", "U+007F"),
        ("a/\ufffe", "U+FFFE"),
        ("a/\ud800", "UTF-8"),
    ):
        why = topic_problem(bad)
        assert why is not None and words in why, (bad, why)
