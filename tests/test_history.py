"""Score history (edge_agent.runtime.history): append, bounded by rows and days, restart-safe;
drift."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from edge_agent.config.load import read_config
from edge_agent.errors import ConfigError
from edge_agent.runtime.history import (
    COMPACT_EVERY,
    DAY,
    MAGIC,
    RECORD,
    DriftTracker,
    HistoryError,
    ScoreHistory,
    history_path,
    read_history,
)

T0 = 1_800_000_000.0


def test_records_round_trip_with_flags_and_fault_nan(tmp_path: Path) -> None:
    h = ScoreHistory(tmp_path / "scores.s.bin")
    h.append(T0, 0.25, 1.5, anomalous=False)
    h.append(T0 + 10, 2.0, 1.5, anomalous=True, in_alarm=True)
    h.append(T0 + 20, None, math.nan, fault=True)
    h.close()
    r = read_history(tmp_path / "scores.s.bin")
    assert len(r) == 3
    assert r.epoch.tolist() == [T0, T0 + 10, T0 + 20]
    assert r.score[:2].tolist() == [0.25, 2.0] and math.isnan(r.score[2])
    assert r.anomalous.tolist() == [False, True, False]
    assert r.in_alarm.tolist() == [False, True, False]
    assert r.fault.tolist() == [False, False, True]


def test_restart_appends_and_a_torn_record_is_cut(tmp_path: Path) -> None:
    p = tmp_path / "scores.s.bin"
    h = ScoreHistory(p)
    for i in range(5):
        h.append(T0 + i, float(i), 3.0)
    h.close()
    with Path(p).open("ab") as f:  # a crash in the middle of a write
        f.write(RECORD.pack(T0 + 5, 5.0, 3.0, 0)[:7])
    assert len(read_history(p)) == 5  # the reader ignores the partial record
    h = ScoreHistory(p)  # restart: cut it off, then append after the whole records
    h.append(T0 + 6, 6.0, 3.0)
    h.close()
    r = read_history(p)
    assert r.score.tolist() == [0, 1, 2, 3, 4, 6]
    assert p.stat().st_size == len(MAGIC) + 6 * RECORD.size
    assert h.recent_scores(3) == [3.0, 4.0, 6.0]


def test_bounded_by_rows(tmp_path: Path) -> None:
    p = tmp_path / "scores.s.bin"
    h = ScoreHistory(p, max_rows=100)
    n = 3 * COMPACT_EVERY
    for i in range(n):
        h.append(T0 + i, float(i), 1.0)
    h.close()
    r = read_history(p)
    assert len(r) <= 100 + 10  # max_rows plus the tenth of slack between compactions
    assert r.score[-1] == n - 1  # the newest kept, in order
    assert np.all(np.diff(r.epoch) > 0)
    ScoreHistory(p, max_rows=100).close()  # at open: over the bound -> compacted
    assert len(read_history(p)) <= 110


def test_bounded_by_days_at_open(tmp_path: Path) -> None:
    p = tmp_path / "scores.s.bin"
    h = ScoreHistory(p, max_days=1.0)
    for i in range(10):
        h.append(T0 + i * DAY / 4, float(i), 1.0)  # 2.25 days
    h.close()
    ScoreHistory(p, max_days=1.0).close()
    r = read_history(p)
    assert r.epoch[0] >= r.epoch[-1] - DAY
    assert r.score[-1] == 9 and len(r) == 5


def test_damaged_file_moved_aside_and_tune_error_is_one_line(tmp_path: Path) -> None:
    p = tmp_path / "scores.s.bin"
    p.write_bytes(b"not a history at all")
    with pytest.raises(HistoryError, match="not an edge-agent score history"):
        read_history(p)
    h = ScoreHistory(p)  # the agent starts afresh, keeping the damaged file aside
    h.append(T0, 1.0, 2.0)
    h.close()
    assert len(read_history(p)) == 1
    assert (tmp_path / "scores.s.bin.bad").read_bytes() == b"not a history at all"
    with pytest.raises(HistoryError, match="no score history yet"):
        read_history(tmp_path / "missing.bin")


def test_unwritable_folder_does_not_raise(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    h = ScoreHistory(blocker / "scores.s.bin")  # parent is a file: cannot create
    h.append(T0, 1.0, 1.0)  # scoring goes on
    h.close()


def test_config_defaults_beside_the_outbox_and_validates(tmp_path: Path) -> None:
    yml = tmp_path / "agent.yaml"
    yml.write_text("outbox: {path: state/outbox.sqlite}\nhistory: {max_days: 7}\n")
    cfg = read_config(yml)
    assert cfg.history.enabled and cfg.history.max_days == 7
    assert history_path(cfg.history, cfg.outbox.path, "fan_section_00") == (
        tmp_path / "state" / "scores.fan_section_00.bin"
    )
    yml.write_text("history: {folder: hist}\n")
    cfg = read_config(yml)
    assert history_path(cfg.history, cfg.outbox.path, "s") == tmp_path / "hist" / "scores.s.bin"
    yml.write_text("history: {max_days: 0}\n")
    with pytest.raises(ConfigError, match=r"history\.max_days: expected a number in \(0, 3650\]"):
        read_config(yml)
    yml.write_text("history: {drift_windows: 0}\n")
    with pytest.raises(ConfigError, match=r"history\.drift_windows"):
        read_config(yml)


def test_drift_is_recent_median_minus_threshold() -> None:
    d = DriftTracker(3)
    assert d.add(1.0, 2.0) is None and d.add(5.0, 2.0) is None  # not yet M scores
    assert d.add(2.0, 2.0) == pytest.approx(0.0)  # median(1, 5, 2) - 2
    assert d.add(9.0, 2.0) == pytest.approx(3.0)  # median(5, 2, 9) - 2
    seeded = DriftTracker(3, [0.0, 1.0])  # seeded from the history at start
    assert seeded.add(4.0, 3.0) == pytest.approx(-2.0)
