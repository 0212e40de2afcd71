"""Durable store-and-forward outbox for MQTT events (SQLite, WAL mode), kept working under faults.

Why: an alarm must survive a broker outage and an agent restart. Every alarm/health event is
written here BEFORE it is published and deleted only when the broker acknowledges it (QoS 1
PUBACK). After an outage or a restart rows are delivered oldest first (by rowid).

Bounded: at most `max_rows` rows and about `max_bytes` of payload. When full, the policy is:
drop the oldest rows of the lowest priority first (priority 0 = score-like / status events,
1 = health, 2 = alarms), so alarms go last; a row already handed to the MQTT client (it holds
it until the PUBACK) is never dropped. Every drop is counted (`dropped`) and reported
(`outbox_full` notice: at the first drop of an episode, then when the count reaches 10, 100,
1000...; the episode ends when the outbox is half empty again), never silent.

Notices about the outbox itself (`put(..., notice=NAME)`: the agent's `outbox_*` health
events) are outside the bound: they never evict a row and are never evicted, and a newer
undelivered notice of the same name replaces the older one. Otherwise each `outbox_full`
notice evicts a row, which is one more drop, which is one more notice: 41 notices and 91
counted drops for 40 real ones.

Faults, none of which may stop delivery or the agent (each is a notice the agent turns into a
health event, `take_notices`):
- The disk refuses writes (full, I/O error, read-only), at start or later: a row that cannot be
  stored is kept in memory (same bounds and policy) and the sender hands it to the broker
  directly. The first failure starts an episode (`outbox_disk_full`, once), the first write
  that succeeds ends it (`outbox_disk_ok`) and moves the rows still waiting in memory to the
  disk, in order (so order is kept and they survive a restart again). While the episode lasts
  the sender calls `retry()`, which tries a real write at most once a second, so recovery is
  noticed without waiting for the next event. Rows still only in memory when the agent stops
  are lost: `abandon_memory` counts them in `dropped`. An acknowledged row the disk would not
  let us delete is remembered and deleted later (only a restart before that re-sends it). The
  WAL is checkpointed every `WAL_PAGES` pages, so the journal stays small on a small disk.
- A row that cannot be sent (a topic MQTT or the broker refuses, a payload that is not bytes,
  a QoS that does not exist; `row_problem`, or the MQTT client's own refusal) is moved to the
  `outbox_quarantine` table (kept for inspection, newest `QUARANTINE_ROWS`), counted
  (`quarantined`) and reported (`outbox_quarantined`); it is never retried, so one bad row
  cannot block the rows behind it, nor survive a restart in the queue.
- A file that is not a SQLite database or fails SQLite's quick check, or a table of ours with a
  schema this code does not know (a foreign `outbox` table), is moved aside with its -wal and
  -shm (`<path>.corrupt-<UTC time>` / `<path>.foreign-<UTC time>`), with one warning line, and
  a fresh outbox is started (`outbox_replaced`). `repair()` (after an unexpected error in the
  sender) reopens and re-checks the file the same way; a fresh file continues the row ids, so
  an id is never reused while the agent runs.

One SQLite connection for all threads, serialised by a lock: the statements are tiny, and one
connection is what makes reopening or replacing the file at runtime safe.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from edge_agent.config.sinks import OutboxSettings
from edge_agent.errors import ConfigError
from edge_agent.private import create_private

log = logging.getLogger("edge_agent")

PRIORITY_STATUS = 0
PRIORITY_HEALTH = 1
PRIORITY_ALARM = 2

SCHEMA_VERSION = 2  # PRAGMA user_version: 2 = outbox + outbox_notice + outbox_quarantine
QUARANTINE_ROWS = 1000  # the newest quarantined rows kept for inspection
RETRY_SECONDS = 1.0  # while the disk refuses writes: at most one write attempt per second
WAL_PAGES = 100  # checkpoint the WAL at 100 pages (400 KB; SQLite's default: 4 MB): the WAL
# keeps its largest size on disk, and a small SD card or a nearly full one needs that space

# Our tables, as PRAGMA table_info reports them: (column, declared type). A table of one of
# these names with other columns is foreign. The quarantine keeps values as they were stored,
# so its row columns have no type.
_TABLES: dict[str, tuple[tuple[str, str], ...]] = {
    "outbox": (
        ("id", "INTEGER"),
        ("topic", "TEXT"),
        ("payload", "BLOB"),
        ("qos", "INTEGER"),
        ("retain", "INTEGER"),
        ("priority", "INTEGER"),
    ),
    "outbox_notice": (("name", "TEXT"), ("row_id", "INTEGER")),
    "outbox_quarantine": (
        ("id", "INTEGER"),
        ("outbox_id", "INTEGER"),
        ("topic", ""),
        ("payload", ""),
        ("qos", ""),
        ("retain", ""),
        ("priority", ""),
        ("reason", "TEXT"),
        ("epoch", "REAL"),
    ),
}
_CREATE = (
    (
        "CREATE TABLE IF NOT EXISTS outbox (id INTEGER PRIMARY KEY AUTOINCREMENT,"
        " topic TEXT NOT NULL, payload BLOB NOT NULL, qos INTEGER NOT NULL,"
        " retain INTEGER NOT NULL, priority INTEGER NOT NULL)"
    ),
    "CREATE TABLE IF NOT EXISTS outbox_notice (name TEXT PRIMARY KEY, row_id INTEGER NOT NULL)",
    (
        "CREATE TABLE IF NOT EXISTS outbox_quarantine (id INTEGER PRIMARY KEY, outbox_id INTEGER,"
        " topic, payload, qos, retain, priority, reason TEXT NOT NULL, epoch REAL NOT NULL)"
    ),
)
_REGULAR = "id NOT IN (SELECT row_id FROM outbox_notice)"  # rows inside the bound
# errors of the folder that are the disk's state, not a configuration mistake
_DISK_ERRNOS = {errno.ENOSPC, errno.EIO, errno.EROFS, errno.EDQUOT}

NoticeName = Literal[
    "outbox_full", "outbox_disk_full", "outbox_disk_ok", "outbox_quarantined", "outbox_replaced"
]


@dataclass(frozen=True)
class OutboxRow:
    """One message awaiting its PUBACK. `id` > 0: a row on disk; < 0: a row kept in memory
    because the disk refused it."""

    id: int
    topic: str
    payload: bytes
    qos: int
    retain: bool
    priority: int


@dataclass(frozen=True)
class Notice:
    """News about the outbox for the agent's health events (`take_notices`)."""

    event: NoticeName
    message: str  # one line
    dropped: int | None = None  # outbox_full: rows dropped so far
    count: int | None = None  # outbox_quarantined: rows quarantined so far


@dataclass
class _Held:
    """A row in memory: `handed` once the MQTT client has it (it re-sends it until acked)."""

    row: OutboxRow
    notice: str | None
    handed: bool = False


def topic_problem(topic: str) -> str | None:
    """Why MQTT or the broker would refuse `topic` as a publish topic (None: it would not).

    The client library refuses wildcards and empty topics; mosquitto disconnects a client that
    publishes a topic with a control character or a non-character (its UTF-8 check), and the
    client then re-sends the same message after every reconnect: one such row would stop all
    delivery for good, so it must never be handed over."""
    if not topic:
        return "topic: empty"
    if "+" in topic or "#" in topic:
        return f"topic {topic!r}: wildcards (+, #) cannot be published to"
    try:
        size = len(topic.encode("utf-8"))
    except UnicodeEncodeError:
        return f"topic {topic!r}: not valid UTF-8"
    if size > 65535:
        return f"topic: {size} bytes, MQTT allows 65535"
    bad = next((ch for ch in topic if _refused_char(ord(ch))), None)
    return None if bad is None else f"topic {topic!r}: character U+{ord(bad):04X} refused"


def _refused_char(c: int) -> bool:
    """A control character or a Unicode non-character (mosquitto's UTF-8 check refuses both)."""
    return c <= 0x1F or 0x7F <= c <= 0x9F or 0xFDD0 <= c <= 0xFDEF or (c & 0xFFFE) == 0xFFFE


def row_problem(topic: Any, payload: Any, qos: Any, retain: Any, priority: Any) -> str | None:
    """Why a stored row cannot be sent (None: it can): values as SQLite returned them."""
    if not isinstance(topic, str):
        return f"topic: expected text, got {_kind(topic)}"
    checks = (
        (topic_problem(topic) is None, topic_problem(topic) or ""),
        (isinstance(payload, bytes), f"payload: expected bytes (a BLOB), got {_kind(payload)}"),
        (type(qos) is int and qos in (0, 1, 2), f"qos: expected 0, 1 or 2, got {qos!r}"),
        (type(retain) is int and retain in (0, 1), f"retain: expected 0 or 1, got {retain!r}"),
        (type(priority) is int, f"priority: expected an integer, got {priority!r}"),
    )
    return next((why for ok, why in checks if not ok), None)


def _kind(v: Any) -> str:
    return {str: "text", bytes: "a BLOB", int: "an integer", float: "a real"}.get(
        type(v), type(v).__name__
    )


def _corrupt(exc: sqlite3.Error) -> bool:
    """The file itself is damaged or not a database (as opposed to a disk that refuses)."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    return name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB"))


class Outbox:
    """SQLite-backed FIFO of messages awaiting a broker acknowledgement (see module docstring)."""

    def __init__(self, settings: OutboxSettings = OutboxSettings()) -> None:
        self.settings = settings
        self.path = Path(settings.path)
        self.dropped = 0  # rows lost: evicted by the bound, or only in memory at the end
        self.quarantined = 0
        self._lock = threading.RLock()
        self._con: sqlite3.Connection | None = None
        self._mem: dict[int, _Held] = {}  # key (= -row id) -> row the disk refused, in order
        self._mem_key = 0
        self._mem_notice: dict[str, int] = {}  # notice name -> key of its row in memory
        self._handed: set[int] = set()  # disk rows the MQTT client holds (never evicted)
        self._acked: set[int] = set()  # acknowledged rows the disk did not let us delete
        self._skip: set[int] = set()  # bad rows the disk did not let us quarantine
        self._max_id = 0  # the largest disk row id seen: a fresh file continues above it
        self._store_error: str | None = None  # why the disk refuses writes (an episode)
        self._full = False  # in an outbox-full episode
        self._next_retry = 0.0
        self._bound_state = (0, 0)  # regular rows, bytes after the last bound check
        self._notices: list[Notice] = []
        self._open(at_start=True)

    # --- opening, checking, replacing the file ---
    def _open(self, at_start: bool = False) -> None:
        """Connect and check the file. A damaged or foreign file is moved aside and a fresh
        one started; a disk that refuses (full, I/O error, read-only) leaves the outbox
        without a database (rows go to memory) until `retry()` succeeds. Only a path that can
        never work (a folder, a parent that cannot be a folder) is a configuration error, at
        start."""
        self._close_con()
        if not self._folder_ready(at_start):
            return
        for _ in range(2):  # the second round opens the fresh file after a move aside
            problem = self._connect()
            if problem is None or not self._move_aside(*problem):
                return

    def _folder_ready(self, at_start: bool) -> bool:
        if self.path.is_dir():
            if at_start:
                raise ConfigError(f"outbox.path: {self.path} is a folder; expected a file name")
            self._cannot_store(f"{self.path} is a folder")
            return False
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            if at_start and exc.errno not in _DISK_ERRNOS:
                raise ConfigError(
                    f"outbox.path: cannot create {self.path.parent}: {exc.strerror or exc}"
                ) from None
            self._cannot_store(f"cannot create {self.path.parent}: {exc.strerror or exc}")
            return False
        return True

    def _connect(self) -> tuple[str, str] | None:
        """Open and check the file: ('corrupt' | 'foreign', why) if it must be moved aside;
        None once connected, or once the disk's refusal is recorded."""
        con: sqlite3.Connection | None = None
        create_private(self.path)  # a new database (and so its WAL) is 0600, whatever the umask
        try:
            con = sqlite3.connect(
                self.path, timeout=10.0, isolation_level=None, check_same_thread=False
            )
            problem = self._check(con)
            if problem is not None:
                con.close()
                return problem
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA synchronous=NORMAL")
            con.execute(f"PRAGMA wal_autocheckpoint = {WAL_PAGES}")
            if not all(self._columns(con, t) for t in _TABLES):  # a new or older file: a write
                con.execute("BEGIN IMMEDIATE")
                for sql in _CREATE:
                    con.execute(sql)
                con.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                con.execute("COMMIT")
            self._continue_ids(con)
        except sqlite3.Error as exc:
            if con is not None:
                with contextlib.suppress(sqlite3.Error):
                    con.close()
            if _corrupt(exc):
                return "corrupt", f"not a SQLite database ({exc})"
            self._cannot_store(str(exc))
            return None
        self._con = con
        return None

    @staticmethod
    def _columns(con: sqlite3.Connection, table: str) -> tuple[tuple[str, str], ...]:
        return tuple(
            (r[1], str(r[2]).upper()) for r in con.execute(f"PRAGMA table_info({table})").fetchall()
        )

    def _check(self, con: sqlite3.Connection) -> tuple[str, str] | None:
        """('corrupt' | 'foreign', why) for a file we must not use; None if it is ours (or
        new). Raises sqlite3.Error for what the checks could not read."""
        result = con.execute("PRAGMA quick_check(1)").fetchone()[0]
        if result != "ok":
            return "corrupt", f"damaged SQLite database (quick_check: {' '.join(result.split())})"
        for table, expected in _TABLES.items():
            got = self._columns(con, table)
            if got and got != expected:
                have, want = (", ".join(c for c, _ in cols) for cols in (got, expected))
                return "foreign", (
                    f"table {table} has a schema this agent does not know "
                    f"(columns {have}; expected {want})"
                )
        return None

    def _continue_ids(self, con: sqlite3.Connection) -> None:
        """A file replaced while running starts its row ids above every id handed out so far:
        an acknowledgement for an old row can never delete a new one."""
        row = con.execute("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").fetchone()
        seq = int(row[0]) if row else 0
        if self._max_id > seq:
            con.execute("BEGIN IMMEDIATE")
            if row:
                con.execute(
                    "UPDATE sqlite_sequence SET seq = ? WHERE name = 'outbox'", (self._max_id,)
                )
            else:
                con.execute(
                    "INSERT INTO sqlite_sequence (name, seq) VALUES ('outbox', ?)", (self._max_id,)
                )
            con.execute("COMMIT")

    def _move_aside(self, kind: str, why: str) -> bool:
        """Rename the file (and its -wal / -shm) out of the way; False if that failed."""
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        target = self.path.with_name(f"{self.path.name}.{kind}-{stamp}")
        n = 1
        while target.exists():
            n += 1
            target = self.path.with_name(f"{self.path.name}.{kind}-{stamp}-{n}")
        try:
            for suffix in ("", "-wal", "-shm"):
                src = Path(f"{self.path}{suffix}")
                if src.exists():
                    Path(src).replace(f"{target}{suffix}")
        except OSError as exc:
            self._cannot_store(f"{why}; cannot move it aside: {exc.strerror or exc}")
            return False
        self._handed.clear()  # ids of the old file (the fresh one continues above them)
        self._acked.clear()
        self._skip.clear()
        msg = f"outbox {self.path}: {why}; moved aside to {target.name}, starting a fresh outbox"
        log.warning(msg)
        self._notices.append(Notice("outbox_replaced", msg))
        return True

    def _close_con(self) -> None:
        if self._con is not None:
            with contextlib.suppress(sqlite3.Error):
                self._con.close()
            self._con = None

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: committed, or rolled back and the error raised."""
        con = self._con
        if con is None:
            raise sqlite3.OperationalError(self._store_error or "outbox database not open")
        con.execute("BEGIN IMMEDIATE")
        try:
            yield con
            con.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                con.execute("ROLLBACK")
            raise

    # --- episodes and notices ---
    def _cannot_store(self, why: str) -> None:
        if self._store_error is None:
            msg = (
                f"outbox {self.path}: cannot store ({why}); alarm and health events are kept "
                "in memory and sent directly while the broker is connected"
            )
            log.warning(msg)
            self._notices.append(Notice("outbox_disk_full", msg))
        self._store_error = why

    def _stored_again(self) -> None:
        if self._store_error is not None:
            self._store_error = None
            msg = f"outbox {self.path}: storing again"
            log.info(msg)
            self._notices.append(Notice("outbox_disk_ok", msg))

    def _failed(self, exc: sqlite3.Error) -> bool:
        """A statement failed. A damaged file is replaced, and a plain SQL error (a table gone
        or changed under us) reopens and re-checks the file; True if that left a database
        worth one more try. Anything else is the disk refusing (full, I/O, read-only, locked):
        an episode (see module docstring)."""
        if _corrupt(exc) or getattr(exc, "sqlite_errorname", "") == "SQLITE_ERROR":
            log.warning("outbox %s: %s; reopening it", self.path, exc)
            self._open()
            return self._con is not None
        self._cannot_store(str(exc))
        return False

    def _count_drops(self, n: int, regular: int, size: int) -> None:
        """`n` rows were just evicted, `regular` rows / `size` bytes remain inside the bound."""
        if n == 0:
            if (
                self._full
                and regular <= self.settings.max_rows // 2
                and size <= self.settings.max_bytes // 2
            ):
                self._full = False  # drained: the next drop is news again
            return
        before, self.dropped = self.dropped, self.dropped + n
        if self._full and len(str(before)) == len(str(self.dropped)):
            return  # same episode, no new power of ten
        self._full = True
        msg = (
            f"outbox {self.path} full ({self.settings.max_rows} rows / "
            f"{self.settings.max_bytes} bytes): {self.dropped} events dropped so far, the "
            "oldest of the lowest priority first"
        )
        log.warning(msg)
        self._notices.append(Notice("outbox_full", msg, dropped=self.dropped))

    def take_notices(self) -> list[Notice]:
        """What happened to the outbox since the last call (see module docstring); quarantined
        rows are summed into one notice."""
        with self._lock:
            out, self._notices = self._notices, []
        merged: list[Notice] = []
        for n in out:
            if n.event == "outbox_quarantined" and merged and merged[-1].event == n.event:
                merged[-1] = n  # the latest count and reason
            else:
                merged.append(n)
        return merged

    # --- writing ---
    def put(
        self,
        topic: str,
        payload: bytes,
        qos: int = 1,
        retain: bool = False,
        priority: int = PRIORITY_STATUS,
        notice: str | None = None,
    ) -> int:
        """Keep one message: on disk (committed before returning; the row id, > 0) or, when
        the disk refuses, in memory (< 0). `notice`: a notice row of that name (outside the
        bound, replacing an undelivered one of the same name). Never raises for a disk
        fault. While the disk refuses, rows go to memory without trying it (each try rewrites
        every held row): a try is made at most once every `RETRY_SECONDS` (here or in
        `retry()`)."""
        values = (topic, payload, qos, int(retain), priority)
        with self._lock:
            if self._store_error is not None:
                self.retry()  # when due: the disk may take writes again
            for _ in range(2):  # a second try after a reopen (a damaged file replaced, ...)
                if self._con is None or self._store_error is not None:
                    break
                try:
                    with self._write() as con:
                        moved = self._migrate(con)
                        self._delete_acked(con)
                        row_id = self._insert(con, values, notice)
                        evicted = self._enforce_bounds(con)
                except sqlite3.Error as exc:
                    if not self._failed(exc):
                        break
                else:
                    self._committed(moved, evicted)
                    return row_id
            return self._hold(values, notice)

    def _insert(self, con: sqlite3.Connection, values: tuple[Any, ...], notice: str | None) -> int:
        if notice is not None:
            old = con.execute(
                "SELECT row_id FROM outbox_notice WHERE name = ?", (notice,)
            ).fetchone()
            if old is not None and old[0] not in self._handed:
                con.execute("DELETE FROM outbox WHERE id = ?", (old[0],))  # superseded
        cur = con.execute(
            "INSERT INTO outbox (topic, payload, qos, retain, priority) VALUES (?,?,?,?,?)", values
        )
        row_id = int(cur.lastrowid or 0)
        if notice is not None:
            con.execute(
                "INSERT OR REPLACE INTO outbox_notice (name, row_id) VALUES (?, ?)",
                (notice, row_id),
            )
        self._max_id = max(self._max_id, row_id)
        return row_id

    def _migrate(self, con: sqlite3.Connection) -> list[int]:
        """Memory rows not handed to the client yet, onto the disk, oldest first (inside the
        caller's transaction); their keys, to forget once committed."""
        moved = []
        for key, held in self._mem.items():
            if not held.handed:
                r = held.row
                self._insert(
                    con, (r.topic, r.payload, r.qos, int(r.retain), r.priority), held.notice
                )
                moved.append(key)
        return moved

    def _delete_acked(self, con: sqlite3.Connection) -> None:
        for row_id in self._acked:
            con.execute("DELETE FROM outbox WHERE id = ?", (row_id,))
            con.execute("DELETE FROM outbox_notice WHERE row_id = ?", (row_id,))

    def _enforce_bounds(self, con: sqlite3.Connection) -> int:
        """Evict until inside the bound (never a notice, never a row the client holds); the
        number evicted, counted by the caller once the transaction is committed."""
        evicted = 0
        while True:
            n, size = con.execute(
                f"SELECT COUNT(*), COALESCE(SUM(LENGTH(payload)), 0) FROM outbox WHERE {_REGULAR}"
            ).fetchone()
            self._bound_state = (n, size)
            if n <= self.settings.max_rows and (size <= self.settings.max_bytes or n <= 1):
                return evicted
            victim = next(
                (
                    r[0]
                    for r in con.execute(
                        f"SELECT id FROM outbox WHERE {_REGULAR} ORDER BY priority ASC, id ASC"
                    )
                    if r[0] not in self._handed
                ),
                None,
            )
            if victim is None:
                return evicted
            con.execute("DELETE FROM outbox WHERE id = ?", (victim,))
            evicted += 1

    def _committed(self, moved: list[int], evicted: int) -> None:
        for key in moved:
            held = self._mem.pop(key)
            if held.notice is not None and self._mem_notice.get(held.notice) == key:
                del self._mem_notice[held.notice]
        self._acked.clear()
        self._count_drops(evicted, *self._bound_state)
        self._stored_again()

    def _hold(self, values: tuple[Any, ...], notice: str | None) -> int:
        """Keep a row the disk refused in memory, under the same bound and policy."""
        self._mem_key += 1
        key = self._mem_key
        if notice is not None:
            old = self._mem_notice.get(notice)
            if old is not None and old in self._mem and not self._mem[old].handed:
                del self._mem[old]  # superseded
            self._mem_notice[notice] = key
        topic, payload, qos, retain, priority = values
        self._mem[key] = _Held(OutboxRow(-key, topic, payload, qos, bool(retain), priority), notice)
        evicted = 0
        while True:
            regular = [(k, h) for k, h in self._mem.items() if h.notice is None]
            size = sum(len(h.row.payload) for _, h in regular)
            if len(regular) <= self.settings.max_rows and (
                size <= self.settings.max_bytes or len(regular) <= 1
            ):
                break
            victims = [(h.row.priority, k) for k, h in regular if not h.handed]
            if not victims:
                break
            del self._mem[min(victims)[1]]
            evicted += 1
        self._count_drops(evicted, len(regular), size)
        return -key

    # --- sending ---
    def pending(self, limit: int = 100, after: int = 0) -> list[OutboxRow]:
        """Disk rows with id > `after`, oldest first, at most `limit`; a row that cannot be
        sent is quarantined on the way (never returned). Raises sqlite3.Error for a database
        that cannot be read (the sender's supervisor calls `repair()`)."""
        out: list[OutboxRow] = []
        with self._lock:
            if self._con is None:
                return out
            while len(out) < limit:
                rows = self._con.execute(
                    "SELECT id, topic, payload, qos, retain, priority FROM outbox WHERE id > ?"
                    " ORDER BY id LIMIT ?",
                    (after, limit),
                ).fetchall()
                if not rows:
                    break
                for r in rows:
                    after = r[0]
                    self._max_id = max(self._max_id, r[0])
                    if r[0] in self._acked or r[0] in self._skip:
                        continue
                    why = row_problem(*r[1:])
                    if why is not None:
                        self.quarantine(r[0], why)
                        continue
                    out.append(OutboxRow(r[0], r[1], r[2], r[3], bool(r[4]), r[5]))
                    if len(out) == limit:
                        break
        return out

    def unsent_memory(self, limit: int = 100) -> list[OutboxRow]:
        """Memory rows not handed to the client yet, oldest first (bad ones quarantined)."""
        out: list[OutboxRow] = []
        with self._lock:
            for held in list(self._mem.values()):
                if held.handed:
                    continue
                why = topic_problem(held.row.topic)
                if why is not None:
                    self.quarantine(held.row.id, why)
                    continue
                out.append(held.row)
                if len(out) == limit:
                    break
        return out

    def handed(self, row_id: int) -> None:
        """The MQTT client took the row (it re-sends it after a reconnect until the PUBACK):
        it is no longer ours to drop."""
        with self._lock:
            if row_id < 0:
                held = self._mem.get(-row_id)
                if held is not None:
                    held.handed = True
            else:
                self._handed.add(row_id)

    def ack(self, row_id: int) -> None:
        """The broker acknowledged this row: forget it."""
        with self._lock:
            if row_id < 0:
                held = self._mem.pop(-row_id, None)
                if (
                    held is not None
                    and held.notice is not None
                    and self._mem_notice.get(held.notice) == -row_id
                ):
                    del self._mem_notice[held.notice]
                return
            self._handed.discard(row_id)
            self._acked.add(row_id)
            if self._con is None or self._store_error is not None:
                return  # deleted by the write that ends the episode
            try:
                with self._write() as con:
                    self._delete_acked(con)
            except sqlite3.Error as exc:
                self._failed(exc)
            else:
                self._acked.clear()

    def quarantine(self, row_id: int, why: str) -> None:
        """Set aside a row that cannot be sent (see module docstring)."""
        with self._lock:
            if row_id < 0:
                held = self._mem.pop(-row_id, None)
                if held is None:
                    return
                r = held.row
                values: tuple[Any, ...] = (
                    None,
                    r.topic,
                    r.payload,
                    r.qos,
                    int(r.retain),
                    r.priority,
                )
            else:
                values = (row_id,)
            try:
                with self._write() as con:
                    if row_id < 0:
                        con.execute(
                            "INSERT INTO outbox_quarantine (outbox_id, topic, payload, qos,"
                            " retain, priority, reason, epoch) VALUES (?,?,?,?,?,?,?,?)",
                            (*values, why, time.time()),
                        )
                    else:
                        con.execute(
                            "INSERT INTO outbox_quarantine (outbox_id, topic, payload, qos,"
                            " retain, priority, reason, epoch) SELECT id, topic, payload, qos,"
                            " retain, priority, ?, ? FROM outbox WHERE id = ?",
                            (why, time.time(), row_id),
                        )
                        con.execute("DELETE FROM outbox WHERE id = ?", (row_id,))
                        con.execute("DELETE FROM outbox_notice WHERE row_id = ?", (row_id,))
                    con.execute(
                        "DELETE FROM outbox_quarantine WHERE id NOT IN (SELECT id FROM"
                        " outbox_quarantine ORDER BY id DESC LIMIT ?)",
                        (QUARANTINE_ROWS,),
                    )
            except sqlite3.Error as exc:
                if row_id > 0:
                    self._skip.add(row_id)  # not retried in this run; quarantined at the next
                self._failed(exc)
            self.quarantined += 1
            n = self.quarantined
            msg = f"outbox {self.path}: a row cannot be sent ({why}): quarantined ({n} so far)"
            if n <= 10 or str(n).rstrip("0") == "1":
                log.warning(msg)
            self._notices.append(Notice("outbox_quarantined", msg, count=n))

    # --- upkeep ---
    def retry(self, now: bool = False) -> None:
        """While the disk refuses (or rows or deletions wait in memory): at most once every
        `RETRY_SECONDS` (`now`: at once), reopen if needed and try a real write (move the
        memory rows to disk, delete acknowledged rows, rewrite the schema version). Cheap
        otherwise."""
        with self._lock:
            waiting = any(not h.handed for h in self._mem.values())
            if self._store_error is None and not self._acked and not waiting:
                return
            t = time.monotonic()
            if t < self._next_retry and not now:
                return
            self._next_retry = t + RETRY_SECONDS
            if self._con is None:
                self._open()
                if self._con is None:
                    return
            try:
                with self._write() as con:
                    moved = self._migrate(con)
                    self._delete_acked(con)
                    evicted = self._enforce_bounds(con)
                    con.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")  # a write, always
            except sqlite3.Error as exc:
                self._failed(exc)
                return
            self._committed(moved, evicted)

    def repair(self) -> None:
        """After an unexpected database error: reopen and re-check the file (a damaged or
        foreign one is moved aside, a missing table re-created)."""
        with self._lock:
            self._open()

    def abandon_memory(self) -> int:
        """At shutdown: rows that exist only in memory are lost. Counted in `dropped`, with
        one error line; returns how many."""
        with self._lock:
            lost = len(self._mem)
            self._mem.clear()
            self._mem_notice.clear()
            if lost:
                self.dropped += lost
                log.error(
                    "outbox %s: %d alarm/health events could neither be stored (%s) nor "
                    "delivered: lost",
                    self.path,
                    lost,
                    self._store_error or "disk refused",
                )
            return lost

    @property
    def stored(self) -> bool:
        """The disk takes writes (no episode of refusals going on)."""
        return self._con is not None and self._store_error is None

    def __len__(self) -> int:
        """Rows awaiting a PUBACK: on disk (acknowledged-but-undeleted ones excluded) and in
        memory."""
        with self._lock:
            n = len(self._mem)
            if self._con is not None:
                with contextlib.suppress(sqlite3.Error):
                    disk = int(self._con.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
                    n += max(0, disk - len(self._acked))
            return n

    def close(self) -> None:
        with self._lock:
            self.abandon_memory()
            self._close_con()
