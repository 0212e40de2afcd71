"""Score history on disk (per section) and the drift indicator: what `edge-agent tune` reads.

Why on disk: "how often will it cry wolf?" is answered by replaying the k-of-n rule over the
scores the machine actually produced (edge_agent.adaptation.tuning); that needs days of them, kept
across restarts. Why this format: one fixed-size little-endian record per window (epoch f64, score
f32, threshold f32, flags u8: 17 bytes; a fault window has score NaN) appended to
`scores.<section>.bin` behind an 8-byte magic. An append is one unbuffered `write` of 17 bytes
without fsync: no measurable cost on the scoring path, and a crash or power loss loses at most
the last records the OS had not written; a torn last record (file size not a whole number of
records) is cut off at the next open. Nothing to parse, no SQLite lock contention with the
outbox.

Bounded: the file is compacted (rewritten to a temporary file, fsynced, renamed over) to the
newest `max_rows` records no older than `max_days` when it holds more than `max_rows` plus a
tenth, or its oldest record is more than an hour past `max_days`; checked at open and every
1000 appends. A disk that refuses writes never stops scoring: one warning per distinct error.

Drift (`DriftTracker`): the median of the last `drift_windows` scores minus the threshold in
force. The bundle stores no reference level of normal scores (backend.SectionBackend has only
the threshold), so the threshold is the reference; a difference, not a ratio, because fused
scores may be near zero (and negative for bundles that fuse standardised scores as they
are). Negative = the machine sits below its threshold (by how much: the margin); drifting
towards 0 means the normal level creeps up towards alarms, > 0 means the typical window is
already anomalous. It is reported only once
`drift_windows` scores are known (seeded from the history at start, so a restart does not
blank it).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import statistics
import struct
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from edge_agent.config.runtime import HistorySettings
from edge_agent.errors import EdgeAgentError
from edge_agent.private import open_private

log = logging.getLogger("edge_agent")

MAGIC = b"EASDHS1\n"
RECORD = struct.Struct("<dffB")
ANOMALOUS, FAULT, IN_ALARM = 1, 2, 4  # flag bits
COMPACT_EVERY = 1000
DAY = 86400.0
EPOCH_MIN, EPOCH_MAX = 1e9, 4.1e9
"""The timestamps a record can plausibly carry (2001-09-09 .. 2099-12-03). Outside: a damaged
record (1e300), or a clock that was not set when it was written (a board without a real-time
clock starts at 1970 until NTP answers). Such records are left out of tune's replay (with a
note), and never taken for "now" when the file is compacted at open: a last record dated
1e300 would make every other record older than `max_days`."""


def plausible(epoch: NDArray[np.float64]) -> NDArray[np.bool_]:
    """Which timestamps are plausible wall-clock times (EPOCH_MIN..EPOCH_MAX, finite)."""
    out: NDArray[np.bool_] = np.isfinite(epoch) & (epoch >= EPOCH_MIN) & (epoch <= EPOCH_MAX)
    return out


class HistoryError(EdgeAgentError):
    """The score history file cannot be read (tune): missing, foreign or damaged."""


def history_path(settings: HistorySettings, outbox_path: str | Path, section: str) -> Path:
    """`<folder>/scores.<section>.bin`; the folder defaults to the outbox's (already the
    agent's writable state folder, like the decision state)."""
    folder = Path(settings.folder) if settings.folder else Path(outbox_path).absolute().parent
    return folder / f"scores.{section}.bin"


@dataclass(frozen=True)
class Records:
    """A history read back: parallel arrays, oldest first."""

    epoch: NDArray[np.float64]
    score: NDArray[np.float64]  # NaN for fault windows
    threshold: NDArray[np.float64]
    flags: NDArray[np.uint8]

    def __len__(self) -> int:
        return int(self.epoch.size)

    @property
    def fault(self) -> NDArray[np.bool_]:
        out: NDArray[np.bool_] = (self.flags & FAULT) != 0
        return out

    @property
    def in_alarm(self) -> NDArray[np.bool_]:
        out: NDArray[np.bool_] = (self.flags & IN_ALARM) != 0
        return out

    @property
    def anomalous(self) -> NDArray[np.bool_]:
        out: NDArray[np.bool_] = (self.flags & ANOMALOUS) != 0
        return out


_DTYPE = np.dtype([("epoch", "<f8"), ("score", "<f4"), ("threshold", "<f4"), ("flags", "u1")])


def _parse(data: bytes, where: Path) -> Records:
    if not data.startswith(MAGIC):
        raise HistoryError(f"{where}: not an edge-agent score history (bad header)")
    body = data[len(MAGIC) :]
    body = body[: len(body) - len(body) % RECORD.size]
    a = np.frombuffer(body, dtype=_DTYPE)
    return Records(
        a["epoch"].astype(np.float64),
        a["score"].astype(np.float64),
        a["threshold"].astype(np.float64),
        a["flags"].copy(),
    )


def read_history(path: str | Path) -> Records:
    """Every whole record of the file at `path`; HistoryError (one line) if unreadable."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise HistoryError(
            f"{p}: no score history yet (the agent writes it while it runs with history.enabled)"
        ) from None
    except OSError as exc:
        raise HistoryError(f"{p}: cannot read the score history: {exc.strerror}") from None
    return _parse(data, p)


def _pack(records: Iterable[tuple[float, float, float, int]]) -> bytes:
    return b"".join(RECORD.pack(*r) for r in records)


class ScoreHistory:
    """Append-only score history of one section (see module docstring)."""

    def __init__(self, path: str | Path, max_days: float = 30.0, max_rows: int = 300_000) -> None:
        self.path = Path(path)
        self.max_days = max_days
        self.max_rows = max_rows
        self._fd: int | None = None
        self._rows = 0
        self._oldest = math.inf
        self._since_check = 0
        self._last_error: str | None = None
        self._open()

    def _warn(self, exc: Exception) -> None:
        msg = str(exc)
        if msg != self._last_error:
            log.warning("score history %s: %s", self.path, msg)
        self._last_error = msg

    def _open(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                recs = read_history(self.path)
            except HistoryError as exc:
                if self.path.exists():  # damaged or foreign: keep it aside, start afresh
                    log.warning("%s; moved aside to %s.bad", exc, self.path.name)
                    Path(self.path).replace(self.path.with_name(self.path.name + ".bad"))
                recs = None
            if recs is None:
                self._rewrite(b"")
            else:
                self._rows = len(recs)
                self._oldest = float(recs.epoch[0]) if len(recs) else math.inf
                size = len(MAGIC) + self._rows * RECORD.size
                if self.path.stat().st_size != size:  # a torn last record
                    os.truncate(self.path, size)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
            dated = recs.epoch[plausible(recs.epoch)] if recs is not None else np.zeros(0)
            if dated.size:  # "now": the last record written with a plausible time
                self._maybe_compact(float(dated[-1]))
        except OSError as exc:
            self._warn(exc)
            self._fd = None

    def _rewrite(self, body: bytes) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open_private(tmp, "wb") as f:  # scores are the agent's own (edge_agent.private)
            f.write(MAGIC + body)
            f.flush()
            os.fsync(f.fileno())
        Path(tmp).replace(self.path)

    def append(
        self,
        epoch: float,
        score: float | None,
        threshold: float,
        *,
        anomalous: bool = False,
        fault: bool = False,
        in_alarm: bool = False,
    ) -> None:
        """Record one window (score None = not scored: a sensor fault)."""
        if self._fd is None:
            return
        flags = (
            (ANOMALOUS if anomalous else 0)
            | (FAULT if fault else 0)
            | (IN_ALARM if in_alarm else 0)
        )
        s = math.nan if score is None else score
        try:
            os.write(self._fd, RECORD.pack(epoch, s, threshold, flags))
        except (OSError, struct.error, OverflowError) as exc:
            self._warn(exc)
            return
        self._last_error = None
        self._rows += 1
        self._oldest = min(self._oldest, epoch)
        self._since_check += 1
        if self._since_check >= COMPACT_EVERY:
            self._maybe_compact(epoch)

    def _maybe_compact(self, now: float) -> None:
        self._since_check = 0
        too_many = self._rows > self.max_rows + max(self.max_rows // 10, 1)
        too_old = self._oldest < now - self.max_days * DAY - 3600.0
        if too_many or too_old:
            self.compact(now)

    def compact(self, now: float) -> None:
        """Keep the newest `max_rows` records no older than `max_days` before `now`."""
        try:
            recs = read_history(self.path)
            keep = np.flatnonzero(recs.epoch >= now - self.max_days * DAY)
            keep = keep[-self.max_rows :]
            body = _pack(
                zip(
                    recs.epoch[keep].tolist(),
                    recs.score[keep].tolist(),
                    recs.threshold[keep].tolist(),
                    recs.flags[keep].tolist(),
                    strict=True,
                )
            )
            if self._fd is not None:
                os.close(self._fd)
            self._rewrite(body)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
            self._rows = int(keep.size)
            self._oldest = float(recs.epoch[keep[0]]) if keep.size else math.inf
        except (OSError, HistoryError) as exc:
            self._warn(exc)

    def recent_scores(self, count: int) -> list[float]:
        """The last `count` scored (non-fault) scores, oldest first (seeds the drift)."""
        try:
            recs = read_history(self.path)
        except HistoryError:
            return []
        ok = recs.score[~recs.fault]
        return [float(x) for x in ok[-count:]]

    def close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None


class DriftTracker:
    """Median of the last M scores minus the threshold in force (see module docstring)."""

    def __init__(self, windows: int, seed: Iterable[float] = ()) -> None:
        self.windows = windows
        self._scores: deque[float] = deque(seed, maxlen=windows)

    def add(self, score: float, threshold: float) -> float | None:
        """Add one score; the drift, or None until M scores are known."""
        self._scores.append(score)
        if len(self._scores) < self.windows:
            return None
        return statistics.median(self._scores) - threshold
