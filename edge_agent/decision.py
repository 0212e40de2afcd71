"""Alarm decision: k-of-n hysteresis over window scores, with sensor faults kept apart.

Why k-of-n: one noisy 10 s window above threshold is not a failing machine; requiring `k` of
the last `n` scored windows to be anomalous before raising, and `clear_after` consecutive normal
windows before clearing, keeps the alarm from flapping. A window whose sensor health check
failed (near-silence, clipping, overflow, device loss) says nothing about the machine: it is
reported as a sensor fault and does not enter the k-of-n history at all.

Pure: `Decider.update` takes one window's outcome and returns what changed; no I/O, no clock.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Literal

from .errors import ConfigError

AlarmState = Literal["normal", "alarm"]
NORMAL: AlarmState = "normal"
ALARM: AlarmState = "alarm"


@dataclass(frozen=True)
class DecisionSettings:
    """k-of-n raise, m consecutive normal windows clear; optional threshold overrides."""

    k: int = 3  # raise when at least k ...
    n: int = 5  # ... of the last n scored windows are above threshold
    clear_after: int = 3  # clear after this many consecutive normal windows
    threshold: float | None = None  # None = the bundle's per-section threshold

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ConfigError(f"decision.n: expected an integer >= 1, got {self.n}")
        if not 1 <= self.k <= self.n:
            raise ConfigError(f"decision.k: expected 1 <= k <= n ({self.n}), got {self.k}")
        if self.clear_after < 1:
            raise ConfigError(
                f"decision.clear_after: expected an integer >= 1, got {self.clear_after}"
            )


@dataclass(frozen=True)
class Decision:
    """What one window did to the alarm state."""

    state: AlarmState  # after this window
    anomalous: bool | None  # this window above threshold; None when not scored (sensor fault)
    changed: bool  # state differs from the previous window's state
    sensor_fault: tuple[str, ...] = ()  # health faults of this window (empty = healthy)
    fault_changed: bool = False  # sensor fault started or ended with this window
    votes: int = 0  # anomalous windows among the last n scored ones


class Decider:
    """Stateful k-of-n alarm with separate sensor-fault tracking (see module docstring)."""

    def __init__(self, settings: DecisionSettings = DecisionSettings()) -> None:
        self.settings = settings
        self.state: AlarmState = NORMAL
        self._history: deque[bool] = deque(maxlen=settings.n)
        self._normal_run = 0
        self._faults: tuple[str, ...] = ()

    def is_anomalous(self, score: float, threshold: float) -> bool:
        t = self.settings.threshold if self.settings.threshold is not None else threshold
        return score > t

    def effective_threshold(self, threshold: float) -> float:
        return self.settings.threshold if self.settings.threshold is not None else threshold

    def update(self, anomalous: bool | None, faults: tuple[str, ...] = ()) -> Decision:
        """Feed one window: `anomalous` (None if not scored) and its sensor faults."""
        fault_changed = tuple(faults) != self._faults
        self._faults = tuple(faults)
        if faults or anomalous is None:
            return Decision(
                self.state, None, False, tuple(faults), fault_changed, sum(self._history)
            )
        previous = self.state
        self._history.append(bool(anomalous))
        self._normal_run = 0 if anomalous else self._normal_run + 1
        votes = sum(self._history)
        if self.state == NORMAL and votes >= self.settings.k:
            self.state = ALARM
        elif self.state == ALARM and self._normal_run >= self.settings.clear_after:
            self.state = NORMAL
            self._history.clear()
        return Decision(
            self.state, bool(anomalous), self.state != previous, (), fault_changed, votes
        )
