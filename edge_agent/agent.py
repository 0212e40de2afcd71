"""The streaming agent: source -> windows -> scorer -> decision -> sinks.

Threads and why:
- the calling (main) thread reads audio blocks and cuts windows; it never scores, so a slow
  model cannot make the audio device overflow;
- one scoring worker takes windows from a bounded queue. From a live source (device/stdin) a
  full queue drops the new window and counts it (`windows_dropped`, reported as a health
  event); a file replay that is not real-time waits instead (nothing is lost, the replay just
  runs at the scorer's pace);
- a bundle reload (SIGHUP, or the bundle's `current`/manifest mtime changing) loads the new
  model on its own thread and the worker swaps it in between two windows: no audio is dropped.

Lifecycle: SIGTERM/SIGINT stop reading, the worker finishes the windows already cut, sinks
flush (MQTT waits for the outbox to be acknowledged, then publishes retained `offline`), and
`run()` returns 0.

Events (the same for every sink): `edge_agent.events` (score | alarm | health | status).
"""

from __future__ import annotations

import json
import logging
import queue
import signal
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any, Literal

from .config import AgentConfig
from .decision import ALARM, Decider
from .events import (
    Counters,
    Event,
    Levels,
    WindowEvent,
    health_event,
    iso,
    status_event,
    window_event,
)
from .health import HealthReport, assess_window
from .scorer import Scorer
from .sinks import Sink
from .sinks.jsonl import JsonlSink
from .sinks.mqtt import MqttSink
from .sinks.outbox import Outbox
from .sources import open_source
from .windows import Window, Windower

log = logging.getLogger("edge_agent")


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(
            {
                "ts": iso(record.created),
                "level": record.levelname.lower(),
                "msg": record.getMessage(),
            }
        )


def setup_logging(json_logs: bool, level: str) -> None:
    h = logging.StreamHandler(sys.stderr)
    h.setFormatter(
        _JsonFormatter()
        if json_logs
        else logging.Formatter("%(asctime)s %(levelname)s %(message)s")
    )
    log.handlers[:] = [h]
    log.setLevel(level.upper())
    log.propagate = False


def bundle_stamp(path: str | Path) -> tuple[float, ...]:
    """mtimes of the files whose change means 'a new bundle version is active'."""
    p = Path(path)
    out = []
    for f in (p / "current", p / "manifest.json"):
        try:
            out.append(f.stat().st_mtime)
        except OSError:
            out.append(0.0)
    return tuple(out)


class Agent:
    """One microphone, one section (see module docstring)."""

    def __init__(
        self, cfg: AgentConfig, sinks: list[Sink] | None = None, stdin: IO[bytes] | None = None
    ) -> None:
        self.cfg = cfg
        self.stdin = stdin
        self.scorer = Scorer.from_bundle(cfg.bundle, cfg.threads)
        self.scorer.bundle.backend(cfg.section)  # unknown section: BundleError now, not later
        self.window_length, self.hop = cfg.windows.samples(self.scorer.spec)  # bad: fail now
        self.decider = Decider(cfg.decision)
        self.counters: Counters = {
            "windows": 0,
            "scored": 0,
            "windows_dropped": 0,
            "faults": 0,
            "alarms": 0,
            "reloads": 0,
            "outbox_dropped": 0,
        }
        self.sinks: list[Sink] = list(sinks or [])
        self.mqtt: MqttSink | None = None
        if sinks is None:
            if cfg.log.stdout:
                self.sinks.append(JsonlSink(sys.stdout, cfg.log.json))
            if cfg.log.jsonl_file:
                self.sinks.append(JsonlSink(open(cfg.log.jsonl_file, "a"), True))  # noqa: SIM115
            if cfg.mqtt.enabled:
                self.mqtt = MqttSink(
                    cfg.mqtt, Outbox(cfg.outbox), [cfg.section], self.scorer.bundle.model_version
                )
                self.sinks.append(self.mqtt)
        self._queue: queue.Queue[Window | None] = queue.Queue(maxsize=cfg.queue_size)
        self._stop = threading.Event()
        self._reload = threading.Event()
        self._pending: Scorer | None = None
        self._stamp = bundle_stamp(cfg.bundle)
        self._next_poll = 0.0
        self._lost_since: float | None = None
        self._last_block = time.monotonic()

    # --- events ---
    @property
    def device_id(self) -> str:
        return self.cfg.mqtt.device_id

    def emit(self, event: Event) -> None:
        for s in self.sinks:
            try:
                s.handle(event)
            except Exception as exc:  # one broken sink must not stop the others
                log.error("sink %s failed: %s", type(s).__name__, exc)
        if event["kind"] != "score":
            log.info(
                "%s %s",
                event["kind"],
                json.dumps(
                    {k: v for k, v in event.items() if k not in ("schema", "kind", "ts", "epoch")}
                ),
            )

    # --- control ---
    def stop(self, *_: Any) -> None:
        self._stop.set()

    def request_reload(self, *_: Any) -> None:
        self._reload.set()

    def _start_reload(self) -> None:
        self._reload.clear()

        def load() -> None:
            try:
                new = Scorer.from_bundle(self.cfg.bundle, self.cfg.threads)
                new.bundle.backend(self.cfg.section)
                self._pending = new
            except Exception as exc:  # any failure: keep the running model
                log.error(
                    "bundle reload failed, keeping %s: %s", self.scorer.bundle.model_version, exc
                )

        threading.Thread(target=load, name="bundle-reload", daemon=True).start()

    # --- worker ---
    def process(self, w: Window) -> None:
        """Health -> score -> decision -> events for one window (worker thread)."""
        if self._pending is not None:
            self.scorer, self._pending = self._pending, None
            self.counters["reloads"] += 1
            self.emit(status_event(time.time(), self.device_id, "reloaded",
                                   model_version=self.scorer.bundle.model_version))
        self.counters["windows"] += 1
        sec = self.cfg.section
        h = assess_window(w, self.cfg.health)
        if not h.ok:
            self.counters["faults"] += 1
            d = self.decider.update(None, h.faults)
            if d.fault_changed:
                self.emit(health_event(w.t_start, self.device_id, "sensor_fault", h.faults,
                                       window=w.index, levels=_levels(h)))
            return
        ws = self.scorer.score(w.samples, sec)
        thr = self.decider.effective_threshold(ws.threshold)
        anomalous = self.decider.is_anomalous(ws.score, ws.threshold)
        d = self.decider.update(anomalous)
        self.counters["scored"] += 1
        if d.fault_changed:
            self.emit(health_event(w.t_start, self.device_id, "sensor_ok", [], window=w.index,
                                   levels=_levels(h)))

        def event(kind: Literal["score", "alarm"]) -> WindowEvent:
            return window_event(
                kind, w.t_start, self.device_id, section=sec, window=w.index, score=ws.score,
                threshold=thr, anomalous=anomalous, decision=d.state, votes=d.votes,
                model_version=ws.model_version, source=w.source_info,
            )

        self.emit(event("score"))
        if d.changed:
            if d.state == ALARM:
                self.counters["alarms"] += 1
            self.emit(event("alarm"))

    def _report_outbox(self) -> None:
        """Outbox full: rows were dropped (policy in sinks.outbox); say so, never silently."""
        if self.mqtt is None:
            return
        dropped = self.mqtt.outbox.dropped
        if dropped > self.counters["outbox_dropped"]:
            self.counters["outbox_dropped"] = dropped
            self.emit(health_event(time.time(), self.device_id, "outbox_full", ["outbox_full"],
                                   dropped=dropped))

    def _worker(self) -> None:
        while True:
            w = self._queue.get()
            if w is None:
                return
            try:
                self.process(w)
                self._report_outbox()
            except Exception as exc:  # one bad window must not stop the agent
                log.error("window %d failed: %s", w.index, exc)

    # --- main loop ---
    def run(self, install_signals: bool = True) -> int:
        """Run until the source ends or `stop()` / SIGTERM / SIGINT; returns the exit code."""
        if install_signals and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self.stop)
            signal.signal(signal.SIGINT, self.stop)
            signal.signal(signal.SIGHUP, self.request_reload)
        rate = self.scorer.spec.sample_rate
        source = open_source(self.cfg.source, rate, self.stdin)
        live = self.cfg.source.kind != "files" or self.cfg.source.realtime
        windower = Windower(self.window_length, self.hop, rate)
        if self.mqtt is not None:
            self.mqtt.start()
        worker = threading.Thread(target=self._worker, name="scorer", daemon=True)
        worker.start()
        log.info(
            "started: section=%s model=%s source=%s",
            self.cfg.section,
            self.scorer.bundle.model_version,
            self.cfg.source.kind,
        )
        self._next_poll = time.monotonic() + self.cfg.reload_poll_seconds
        source.start()
        try:
            while not self._stop.is_set():
                block = source.read(0.5)
                now = time.monotonic()
                self._poll_bundle(now)
                if block is None:
                    if source.exhausted:
                        break
                    self._check_lost(now)
                    continue
                if self._lost_since is not None:
                    self._lost_since = None
                    self.emit(health_event(time.time(), self.device_id, "device_ok", []))
                self._last_block = now
                for w in windower.push(block):
                    self._enqueue(w, live)
        finally:
            source.stop()
            self._queue.put(None)
            worker.join()
            self.emit(status_event(
                time.time(), self.device_id, "stopped", counters=self.counters,
                scores_unsent=self.mqtt.scores_dropped if self.mqtt else None,
            ))
            for s in self.sinks:
                s.close()
        return 0

    def _poll_bundle(self, now: float) -> None:
        """Every `reload_poll_seconds`: a new bundle version is active -> reload it (and any
        reload a SIGHUP asked for)."""
        if now >= self._next_poll:
            self._next_poll = now + self.cfg.reload_poll_seconds
            stamp = bundle_stamp(self.cfg.bundle)
            if stamp != self._stamp:
                self._stamp = stamp
                self._reload.set()
        if self._reload.is_set():
            self._start_reload()

    def _check_lost(self, now: float) -> None:
        if self._lost_since is None and now - self._last_block > self.cfg.source.stall_seconds:
            self._lost_since = now
            self.emit(health_event(time.time(), self.device_id, "sensor_fault", ["device_lost"]))

    def _enqueue(self, w: Window, live: bool) -> None:
        if not live:
            self._queue.put(w)
            return
        try:
            self._queue.put_nowait(w)
        except queue.Full:
            self.counters["windows_dropped"] += 1
            self.emit(health_event(w.t_start, self.device_id, "windows_dropped", ["scorer_behind"],
                                   window=w.index, dropped=self.counters["windows_dropped"]))


def _levels(h: HealthReport) -> Levels:
    return {
        "rms_dbfs": round(h.rms_dbfs, 1),
        "peak_dbfs": round(h.peak_dbfs, 1),
        "clipped_fraction": h.clipped_fraction,
    }
