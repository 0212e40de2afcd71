from __future__ import annotations

import pytest

from edge_agent.decision import ALARM, NORMAL, Decider, DecisionSettings
from edge_agent.errors import ConfigError


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
