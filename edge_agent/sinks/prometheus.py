"""Prometheus textfile-collector sink: dashboards without opening a port on the device.

Why a file: node-exporter (Debian's `prometheus-node-exporter`) already runs on many Pis and
already exposes its port; its textfile collector reads every `*.prom` file in one folder
(`/var/lib/prometheus/node-exporter` in the Debian package) at each scrape. The agent writes
its metrics there and listens on nothing itself.

What: per monitor (the event's `monitor` field, else its `section`; health events without
either are device-wide and carry `monitor=""`), from the events the agent already emits:

| metric | type | from |
|---|---|---|
| `edge_asd_score` | gauge | the last scored window's score |
| `edge_asd_threshold` | gauge | the threshold in force for it |
| `edge_asd_anomalous` | gauge | 1 when that window was above the threshold |
| `edge_asd_alarm` | gauge | 1 while the alarm is raised (the window's `decision`) |
| `edge_asd_drift` | gauge | the drift indicator, once the agent knows it |
| `edge_asd_last_window_timestamp_seconds` | gauge | start of the last scored window (epoch) |
| `edge_asd_windows_scored_total` | counter | `score` events |
| `edge_asd_alarms_raised_total` | counter | `alarm` events that raised the alarm |
| `edge_asd_sensor_fault` | gauge | 1 from `sensor_fault` until `sensor_ok` / `device_ok` |
| `edge_asd_health_events_total{event}` | counter | health events by name |
| `edge_asd_window_errors_total` | counter | the running `count` of `window_error` events |
| `edge_asd_model_info{model_version}` | gauge | 1: the bundle version that scored |
| `edge_asd_agent_running` | gauge | 1 while the agent runs, 0 after a clean stop |
| `edge_asd_outbox_depth` | gauge | the `outbox_depth` callable's answer, read at each write |

Every series has the labels `device_id` and `monitor`. Counters start at 0 when the agent
starts (Prometheus' `rate` / `increase` handle the reset). A crash leaves the last file in
place: node-exporter's `node_textfile_mtime_seconds` and `edge_asd_last_window_timestamp_seconds`
show that it is stale.

When: `handle` only updates a few numbers in memory; the file is rewritten on the calling
thread at most every `interval_seconds` (the first event after a quiet interval at once, the
rest with the next event, `tick` or `close`), so a 1 s hop does not mean a write per second on
an SD card. A write is a few kB: temp file in the same folder (named `.<name>.tmp`, which
node-exporter ignores: it reads only `*.prom`), fsync, `os.replace`; a scrape sees the old file
or the new one, never half of one. Mode 0644 whatever the umask (the unit's `UMask=0077`):
node-exporter runs as its own user. Two threads emit events (the scorer and the read loop): one
lock guards the numbers, and a write in progress on one thread is never waited for by the
other (the other leaves its update for the next write).

Errors: a write that fails (folder gone, disk full, permissions) is logged once per distinct
message and never raised into the agent; the first success after a logged failure says so once.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_agent.config.sinks import MetricsSettings
from edge_agent.events import ALARM, Event

log = logging.getLogger("edge_agent")

PREFIX = "edge_asd_"

_MAX_LOGGED = 100
"""Distinct error messages remembered (so a pathological stream of new ones stays bounded)."""


@dataclass
class _Monitor:
    """What the last window of one monitor said, and its counters."""

    score: float = math.nan
    threshold: float = math.nan
    anomalous: bool = False
    alarm: bool = False
    drift: float | None = None
    last_window: float | None = None
    model_version: str | None = None
    scored: int = 0
    alarms_raised: int = 0


@dataclass
class _State:
    monitors: dict[str, _Monitor] = field(default_factory=dict)
    sensor_fault: dict[str, bool] = field(default_factory=dict)
    health_events: dict[tuple[str, str], int] = field(default_factory=dict)
    window_errors: dict[str, int] = field(default_factory=dict)
    running: bool = True


_FAMILIES: tuple[tuple[str, str, str], ...] = (
    ("score", "gauge", "Anomaly score of the monitor's last scored window."),
    ("threshold", "gauge", "Threshold in force for the last scored window."),
    ("anomalous", "gauge", "1 if the last scored window was above the threshold."),
    ("alarm", "gauge", "1 while the monitor's alarm is raised."),
    ("drift", "gauge", "Median of the recent scores minus the threshold (once known)."),
    ("last_window_timestamp_seconds", "gauge", "Start of the last scored window, Unix time."),
    ("windows_scored_total", "counter", "Windows scored since the agent started."),
    ("alarms_raised_total", "counter", "Alarms raised since the agent started."),
    ("sensor_fault", "gauge", '1 while a sensor fault is active (monitor="": device-wide).'),
    ("health_events_total", "counter", "Health events since the agent started, by event."),
    ("window_errors_total", "counter", "Windows whose processing failed since the agent started."),
    ("model_info", "gauge", "The bundle version that scored the monitor's last window."),
    ("agent_running", "gauge", "1 while the agent runs, 0 after it stopped cleanly."),
    ("outbox_depth", "gauge", "Alarm and health events waiting in the MQTT outbox."),
)

METRIC_NAMES: tuple[str, ...] = tuple(PREFIX + name for name, _, _ in _FAMILIES)
"""Every metric name the sink can write (the Grafana dashboard's test reads the file itself)."""


def escape_label(value: str) -> str:
    """A label value as the exposition format wants it: backslash, double quote, newline."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def format_value(v: float) -> str:
    """A sample value: integers as integers, NaN / infinities as Prometheus spells them."""
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, int):
        return str(v)
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return repr(float(v))


Sample = tuple[dict[str, str], float]


def monitor_of(event: Mapping[str, Any]) -> str:
    """The monitor label: the event's `monitor`, else its `section`, else "" (device-wide)."""
    return str(event.get("monitor") or event.get("section") or "")


class PrometheusSink:
    """Keeps the agent's metrics in a textfile-collector file (see module docstring)."""

    def __init__(
        self,
        settings: MetricsSettings,
        device_id: str,
        *,
        outbox_depth: Callable[[], int] | None = None,
    ) -> None:
        self.settings = settings
        self.device_id = device_id
        self.outbox_depth = outbox_depth
        self.path = Path(settings.textfile) if settings.textfile else None
        self._tmp = self.path.with_name(f".{self.path.name}.tmp") if self.path else None
        self._state = _State()
        self._lock = threading.Lock()  # the numbers in _state
        self._writing = threading.Lock()  # one write at a time; never waited for by handle()
        self._dirty = False
        self._last_write = -math.inf  # time.monotonic() of the last write attempt
        self._logged: set[str] = set()
        self._failing: str | None = None  # a write failure logged and not yet recovered from

    # --- the Sink protocol ---
    def handle(self, event: Event) -> None:
        """Update the numbers (microseconds); rewrite the file if `interval_seconds` passed."""
        with self._lock:
            self._update(event)
            self._dirty = True
        self.tick()

    def close(self) -> None:
        """The final file: `edge_asd_agent_running 0`, the last numbers."""
        with self._lock:
            self._state.running = False
            self._dirty = True
        self.flush(wait=True)

    # --- writing ---
    def tick(self) -> None:
        """Write pending updates if the interval has passed (cheap when nothing is due): the
        agent may call it from its loop so a quiet spell does not hold back the last event."""
        if self._dirty and time.monotonic() - self._last_write >= self.settings.interval_seconds:
            self.flush()

    def flush(self, wait: bool = False) -> None:
        """Write the file now (unless another thread is writing it and not `wait`)."""
        if self.path is None or not self._writing.acquire(blocking=wait):
            return
        try:
            with self._lock:
                self._dirty = False
                self._last_write = time.monotonic()
                state_text = self._render_locked()
            self._write(state_text + self._outbox_lines())
        finally:
            self._writing.release()

    def _write(self, text: str) -> None:
        assert self.path is not None and self._tmp is not None
        try:
            fd = os.open(
                self._tmp,
                os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC,
                0o644,
            )
            with os.fdopen(fd, "wb") as f:
                os.fchmod(fd, 0o644)  # node-exporter's user reads it, whatever our umask
                f.write(text.encode("utf-8"))
                f.flush()
                os.fsync(fd)
            Path(self._tmp).replace(self.path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                Path(self._tmp).unlink()
            msg = f"metrics.textfile: cannot write {self.path}: {exc.strerror or exc}"
            if self._log_once(msg):
                self._failing = msg
            return
        if self._failing is not None:  # only after a failure that was logged
            log.info("metrics.textfile: %s written again", self.path)
            self._failing = None

    def _log_once(self, msg: str) -> bool:
        """Log `msg` (a warning) the first time it is seen; True if it was logged now. A
        failure is never raised into the agent."""
        if msg in self._logged:
            return False
        if len(self._logged) < _MAX_LOGGED:
            self._logged.add(msg)
        log.warning("%s", msg)
        return True

    # --- the numbers ---
    def _update(self, e: Mapping[str, Any]) -> None:
        s = self._state
        mon = monitor_of(e)
        if e["kind"] in ("score", "alarm"):
            m = s.monitors.setdefault(mon, _Monitor())
            s.sensor_fault.setdefault(mon, False)
            m.score, m.threshold = float(e["score"]), float(e["threshold"])
            m.anomalous, m.alarm = bool(e["anomalous"]), e["decision"] == ALARM
            m.drift = float(e["drift"]) if "drift" in e else m.drift
            m.last_window, m.model_version = float(e["epoch"]), str(e["model_version"])
            if e["kind"] == "score":
                m.scored += 1
            elif m.alarm:
                m.alarms_raised += 1
        elif e["kind"] == "health":
            name = str(e["event"])
            s.health_events[(mon, name)] = s.health_events.get((mon, name), 0) + 1
            if name == "sensor_fault":
                s.sensor_fault[mon] = True
            elif name in ("sensor_ok", "device_ok"):
                s.sensor_fault[mon] = False
            elif name == "window_error":  # events are rate-limited: `count` is the real total
                seen = s.window_errors.get(mon, 0)
                s.window_errors[mon] = max(seen + 1, int(e.get("count", seen + 1)))
        elif e["kind"] == "status" and "model_version" in e and mon in s.monitors:
            s.monitors[mon].model_version = str(e["model_version"])

    def _samples_locked(self) -> dict[str, list[Sample]]:
        s = self._state
        out: dict[str, list[Sample]] = {name: [] for name, _, _ in _FAMILIES}
        for mon in sorted(s.monitors):
            m, lab = s.monitors[mon], {"monitor": mon}
            out["score"].append((lab, m.score))
            out["threshold"].append((lab, m.threshold))
            out["anomalous"].append((lab, m.anomalous))
            out["alarm"].append((lab, m.alarm))
            if m.drift is not None:
                out["drift"].append((lab, m.drift))
            if m.last_window is not None:
                out["last_window_timestamp_seconds"].append((lab, m.last_window))
            out["windows_scored_total"].append((lab, m.scored))
            out["alarms_raised_total"].append((lab, m.alarms_raised))
            if m.model_version is not None:
                out["model_info"].append(({**lab, "model_version": m.model_version}, 1))
        for mon in sorted(s.sensor_fault):
            out["sensor_fault"].append(({"monitor": mon}, s.sensor_fault[mon]))
        for mon, name in sorted(s.health_events):
            out["health_events_total"].append(
                ({"monitor": mon, "event": name}, s.health_events[(mon, name)])
            )
        for mon in sorted(s.window_errors):
            out["window_errors_total"].append(({"monitor": mon}, s.window_errors[mon]))
        out["agent_running"].append(({"monitor": ""}, s.running))
        return out

    def _render_locked(self) -> str:
        """Every family with samples, HELP and TYPE first; the outbox depth comes later (its
        callable may be slow: a SQLite count, not under the lock)."""
        samples = self._samples_locked()
        lines: list[str] = []
        for name, kind, text in _FAMILIES:
            if samples[name]:
                lines += self._family(name, kind, text, samples[name])
        return "".join(lines)

    def _family(self, name: str, kind: str, text: str, samples: list[Sample]) -> list[str]:
        full = PREFIX + name
        lines = [f"# HELP {full} {_escape_help(text)}\n", f"# TYPE {full} {kind}\n"]
        for labels, value in samples:
            pairs = {"device_id": self.device_id, **labels}
            body = ",".join(f'{k}="{escape_label(v)}"' for k, v in pairs.items())
            lines.append(f"{full}{{{body}}} {format_value(value)}\n")
        return lines

    def _outbox_lines(self) -> str:
        if self.outbox_depth is None:
            return ""
        try:
            depth = int(self.outbox_depth())
        except Exception as exc:  # a closed outbox, a locked database: leave the gauge out
            self._log_once(
                f"metrics: outbox depth unavailable, edge_asd_outbox_depth left out: {exc}"
            )
            return ""
        name, kind, text = next(f for f in _FAMILIES if f[0] == "outbox_depth")
        return "".join(self._family(name, kind, text, [({"monitor": ""}, depth)]))
