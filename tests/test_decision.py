from __future__ import annotations

from pathlib import Path

import pytest

from edge_agent.config.runtime import DecisionSettings
from edge_agent.errors import ConfigError
from edge_agent.events import ALARM, NORMAL
from edge_agent.runtime.decision import Decider, DeciderState, DecisionStore, state_path


def feed(d: Decider, seq: str) -> list[str]:
    """'A' anomalous, 'n' normal, 'F' sensor fault; returns the state after each window."""
    out: list[str] = []
    for c in seq:
        if c == "F":
            out.append(d.update(None, ("silence",)).state)
        else:
            out.append(d.update(c == "A").state)
    return out


def test_raises_after_k_of_n_and_not_before() -> None:
    d = Decider(DecisionSettings(k=3, n=5, clear_after=3))
    states = feed(d, "AnAnA")
    assert states == [NORMAL] * 4 + [ALARM]


def test_two_of_five_never_raises() -> None:
    d = Decider()
    assert set(feed(d, "AnnAnnAnnA")) == {NORMAL}


def test_clears_after_m_consecutive_normal_only() -> None:
    d = Decider(DecisionSettings(k=2, n=3, clear_after=3))
    assert feed(d, "AA")[-1] == ALARM
    assert feed(d, "nnAnn") == [ALARM] * 5  # run broken by the A
    assert feed(d, "n") == [NORMAL]


def test_change_flag_only_on_transitions() -> None:
    d = Decider(DecisionSettings(k=1, n=1, clear_after=1))
    assert d.update(True).changed
    assert not d.update(True).changed
    assert d.update(False).changed


def test_sensor_faults_do_not_count_toward_alarm() -> None:
    d = Decider(DecisionSettings(k=3, n=5, clear_after=3))
    states = feed(d, "AAFFFFFF")
    assert states[-1] == NORMAL
    r = d.update(None, ("clipping",))
    assert r.anomalous is None and r.sensor_fault == ("clipping",)
    assert d.update(True).state == ALARM  # third anomalous scored window


def test_fault_changed_flags_start_and_end() -> None:
    d = Decider()
    assert d.update(None, ("silence",)).fault_changed
    assert not d.update(None, ("silence",)).fault_changed
    assert d.update(False).fault_changed


def test_threshold_override() -> None:
    d = Decider(DecisionSettings(threshold=0.5))
    assert d.is_anomalous(0.6, threshold=0.9)
    assert not d.is_anomalous(0.4, threshold=0.1)
    assert Decider().is_anomalous(0.6, threshold=0.5)


@pytest.mark.parametrize("kw", [{"k": 6, "n": 5}, {"k": 0}, {"n": 0}, {"clear_after": 0}])
def test_bad_settings(kw: dict[str, int]) -> None:
    with pytest.raises(ConfigError, match="decision"):
        DecisionSettings(**kw)


def test_snapshot_restore_continues_k_of_n_and_clearing() -> None:
    s = DecisionSettings(k=3, n=5, clear_after=3)
    a = Decider(s)
    feed(a, "AA")  # two votes, not raised yet
    b = Decider(s)
    b.restore(a.snapshot())
    assert b.update(True).state == ALARM  # the third vote counts across the "restart"
    feed(b, "nn")
    c = Decider(s)
    c.restore(b.snapshot())
    assert c.state == ALARM and c.update(False).changed  # 2 + 1 normal = clear_after


def test_snapshot_is_canonical_so_steady_state_writes_nothing() -> None:
    d = Decider(DecisionSettings(k=3, n=5, clear_after=3))
    feed(d, "nnnnn")
    steady = d.snapshot()
    feed(d, "nnnFn")
    assert d.snapshot() == steady  # normal_run is not part of the normal state
    feed(d, "AAAAA")
    raised = d.snapshot()
    feed(d, "A")
    assert d.snapshot() == raised  # sustained alarm, window full of votes: the same


def test_restore_with_smaller_window_keeps_latest_votes() -> None:
    d = Decider(DecisionSettings(k=2, n=2, clear_after=1))
    d.restore(DeciderState(NORMAL, (True, False, False, True), 0))
    assert d.snapshot().history == (False, True)
    assert d.update(True).state == ALARM


def test_store_round_trip_atomic(tmp_path: Path) -> None:
    path = state_path(tmp_path / "q" / "outbox.sqlite")
    assert path == tmp_path / "q" / "outbox.decision.json"
    st = DecisionStore(path, "fan_section_00")
    assert st.load() is None  # first start
    last = {"kind": "alarm", "section": "fan_section_00", "decision": "alarm", "window": 4}
    assert st.save(DeciderState(ALARM, (True, True, True), 1), last)
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary left
    got = st.load()
    assert got is not None and got.decider == DeciderState(ALARM, (True, True, True), 1)
    assert got.last_alarm == last
    assert DecisionStore(path, "fan_section_01").load() is None  # another section's state


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        '{"schema": 1}',
        '{"schema": 9, "section": "s"}',
        '{"schema":1,"section":"s","state":"panic","history":[],"normal_run":0}',
        '{"schema":1,"section":"s","state":"alarm","history":[1],"normal_run":0}',
        (
            '{"schema":1,"section":"s","state":"alarm","history":[],"normal_run":0,'
            '"last_alarm":{"kind":"alarm","section":"s","decision":"normal"}}'
        ),
    ],
)
def test_damaged_state_file_starts_normal_with_a_warning(
    tmp_path: Path, content: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "o.decision.json"
    path.write_text(content)
    assert DecisionStore(path, "s").load() is None
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    assert str(path) in caplog.records[0].getMessage()


def test_save_failure_is_a_warning_once_not_an_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "file").write_text("")
    st = DecisionStore(tmp_path / "file" / "o.decision.json", "s")  # parent is not a folder
    snap = DeciderState(ALARM, (True,), 0)
    assert not st.save(snap, None)
    assert not st.save(snap, None)
    assert len([r for r in caplog.records if "not saved" in r.getMessage()]) == 1
