"""Alarm decision: k-of-n hysteresis over window scores, with sensor faults kept apart.

Why k-of-n: one noisy 10 s window above threshold is not a failing machine; requiring `k` of
the last `n` scored windows to be anomalous before raising, and `clear_after` consecutive normal
windows before clearing, keeps the alarm from flapping. A window whose sensor health check
failed (near-silence, clipping, overflow, device loss) says nothing about the machine: it is
reported as a sensor fault and does not enter the k-of-n history at all.

Pure: `Decider.update` takes one window's outcome and returns what changed; no I/O, no clock.

Why the state is persisted (`DecisionStore`): the alarm topic on MQTT is retained, so it is the
state every dashboard shows. An agent that restarts in `normal` while the broker still holds
its `alarm` would never publish the clear (nothing changes from its point of view) and Home
Assistant would show a problem forever. The agent therefore saves `Decider.snapshot()` (alarm
state, the k-of-n vote window, the run of normal windows) and the last alarm-topic payload
whenever they change, atomically, and restores them at start. In steady operation the snapshot
does not change (a full window of normal votes stays the same), so nothing is written.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_agent.config.runtime import DecisionSettings
from edge_agent.events import ALARM, NORMAL, AlarmState
from edge_agent.private import open_private

log = logging.getLogger("edge_agent")


@dataclass(frozen=True)
class Decision:
    """What one window did to the alarm state."""

    state: AlarmState  # after this window
    anomalous: bool | None  # this window above threshold; None when not scored (sensor fault)
    changed: bool  # state differs from the previous window's state
    sensor_fault: tuple[str, ...] = ()  # health faults of this window (empty = healthy)
    fault_changed: bool = False  # sensor fault started or ended with this window
    votes: int = 0  # anomalous windows among the last n scored ones


@dataclass(frozen=True)
class DeciderState:
    """What a restarted agent needs to continue deciding where it stopped."""

    state: AlarmState
    history: tuple[bool, ...]  # the last n scored windows' votes, oldest first
    normal_run: int  # consecutive normal windows so far (matters only in alarm)


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

    def forget_faults(self) -> None:
        """The sensor-fault memory is stale (the device was lost and is back): the next window
        reports its faults afresh (`fault_changed`), so a microphone that is still dead says
        so again instead of staying hidden behind `device_ok`."""
        self._faults = ()

    def snapshot(self) -> DeciderState:
        """The persistent part of the state, canonical: equal snapshots mean nothing to save.

        `normal_run` only matters while the alarm is raised (it counts towards clearing), so it
        is 0 in the normal state; sensor faults are not kept (a restart re-checks the audio)."""
        run = self._normal_run if self.state == ALARM else 0
        return DeciderState(self.state, tuple(self._history), run)

    def restore(self, s: DeciderState) -> None:
        """Continue from `s` (a snapshot, possibly taken with other settings: the vote window
        keeps its last n entries)."""
        self.state = s.state
        self._history = deque(s.history[-self.settings.n :], maxlen=self.settings.n)
        self._normal_run = max(0, s.normal_run) if s.state == ALARM else 0


STATE_SCHEMA = 1


def state_path(outbox_path: str | Path, monitor: str | None = None) -> Path:
    """Where the decision state lives: next to the MQTT outbox (`outbox.sqlite` ->
    `outbox.decision.json`), because both are this agent's durable MQTT state, the outbox's
    folder is already writable, and one outbox per agent makes the name unique per agent.
    An agent with several monitors keeps one file per monitor (`outbox.decision.<name>.json`)."""
    suffix = ".decision.json" if monitor is None else f".decision.{monitor}.json"
    return Path(outbox_path).with_suffix(suffix)


@dataclass(frozen=True)
class SavedDecision:
    """A restored decision state and the last alarm-topic payload (None: none published yet)."""

    decider: DeciderState
    last_alarm: dict[str, Any] | None


class DecisionStore:
    """The decision state of one agent (one section) in a JSON file, replaced atomically.

    `save` writes a temporary file in the same folder, fsyncs it, renames it over the old one
    and fsyncs the folder: a crash or power loss leaves either the old or the new state, never
    a torn file. `load` treats a missing file as "no state" and an unreadable or foreign one
    (other section, bad content) as "no state" with a warning: the agent must start even if
    its own state file is damaged; it then starts `normal`, as before persistence existed.
    """

    def __init__(self, path: str | Path, section: str) -> None:
        self.path = Path(path)
        self.section = section
        self._last_error: str | None = None

    def load(self) -> SavedDecision | None:
        try:
            raw = json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.warning("decision state %s unreadable, starting normal: %s", self.path, exc)
            return None
        try:
            return self._parse(raw)
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("decision state %s ignored, starting normal: %s", self.path, exc)
            return None

    def _parse(self, raw: Any) -> SavedDecision | None:
        if not isinstance(raw, dict) or raw.get("schema") != STATE_SCHEMA:
            raise ValueError(f"expected a schema {STATE_SCHEMA} object")
        if raw["section"] != self.section:
            log.info(
                "decision state %s is for section %s, not %s: starting normal",
                self.path,
                raw["section"],
                self.section,
            )
            return None
        state = raw["state"]
        history = raw["history"]
        run = raw["normal_run"]
        if state not in (NORMAL, ALARM):
            raise ValueError(f"state: expected normal or alarm, got {state!r}")
        if not isinstance(history, list) or not all(isinstance(v, bool) for v in history):
            raise ValueError("history: expected a list of booleans")
        if not isinstance(run, int) or isinstance(run, bool) or run < 0:
            raise ValueError("normal_run: expected an integer >= 0")
        last = raw.get("last_alarm")
        if last is not None and not (
            isinstance(last, dict)
            and last.get("kind") == "alarm"
            and last.get("section") == self.section
            and last.get("decision") == state
        ):
            raise ValueError("last_alarm: expected this section's alarm event with the state")
        return SavedDecision(DeciderState(state, tuple(history), run), last)

    def save(self, s: DeciderState, last_alarm: Mapping[str, object] | None) -> bool:
        """Persist atomically; False (and one warning per distinct error) if the disk refuses:
        a full or read-only disk must not stop the scoring, it only loses restart continuity."""
        doc = {
            "schema": STATE_SCHEMA,
            "section": self.section,
            "state": s.state,
            "history": list(s.history),
            "normal_run": s.normal_run,
            "last_alarm": dict(last_alarm) if last_alarm is not None else None,
        }
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open_private(tmp, "w") as f:  # 0600 (edge_agent.private)
                json.dump(doc, f, allow_nan=False, separators=(",", ":"))
                f.flush()
                os.fsync(f.fileno())
            Path(tmp).replace(self.path)
            with contextlib.suppress(OSError):  # not every file system can fsync a folder
                fd = os.open(self.path.parent, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        except (OSError, ValueError) as exc:
            msg = str(exc)
            if msg != self._last_error:
                log.warning("decision state %s not saved: %s", self.path, msg)
            self._last_error = msg
            return False
        self._last_error = None
        return True
