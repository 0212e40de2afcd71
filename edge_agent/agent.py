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
  The candidate must first score a synthetic window of the agent's section (`Scorer.smoke_test`)
  at the running sample rate and window length; a version that loads but cannot score is never
  swapped in: the old one keeps running and a `reload_failed` health event says why;
- a window whose processing raises is counted (`window_errors`) and reported as a
  `window_error` health event: the first error, each change of message, and at 10, 100, 1000...
  errors, so a permanently broken model reaches MQTT without flooding it;
- under systemd (`Type=notify`, `edge_agent.systemd_notify`): READY=1 once the source is open
  and the worker runs; the worker sends WATCHDOG=1 (with a STATUS line) every half
  `WATCHDOG_USEC`, and only while it turns (it wakes at least every 0.5 s) and the read loop
  turned within the last ping interval (at least 5 s): a hung worker or read loop stops the
  pings and systemd restarts the agent; STOPPING=1 when shutdown begins.

Evidence (`edge_agent.evidence`, with `evidence.folder` set): the worker keeps the last n
scored windows' audio; when it raises the alarm it hands the voting windows' clip to the
evidence writer thread (bounded queue: a slow SD card never delays scoring) and the alarm
event references the clip (file, sha256, span).

Lifecycle: SIGTERM/SIGINT stop reading, the worker finishes the windows already cut, sinks
flush (MQTT waits for the outbox to be acknowledged, then publishes retained `offline`), and
`run()` returns 0.

Decision state (with MQTT on): saved next to the outbox whenever it changes and restored at
start (`decision.DecisionStore`), so a restart during an alarm neither forgets it nor leaves
the retained alarm topic stale; the MQTT sink re-publishes it on every connect. A broker that
refuses the agent (login, TLS) is reported as a health event and retried; scoring goes on.

Score history (`history.enabled`, default on, live sources; file replays only with
`history.replays`): every window's score, threshold and flags are appended to
`scores.<section>.bin` beside the outbox (`edge_agent.history`), which `edge-agent tune`
replays; score events carry `drift` (median of the last `history.drift_windows` scores minus
the threshold), seeded from that history at start.

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
from typing import IO, Any, Literal, cast

from .config import AgentConfig, check_start
from .decision import ALARM, Decider, DeciderState, DecisionStore, state_path
from .errors import BundleError
from .events import (
    Counters,
    Event,
    EvidenceRef,
    Levels,
    WindowEvent,
    health_event,
    iso,
    status_event,
    window_event,
)
from .evidence import EvidenceRing, EvidenceStore, HeardWindow
from .health import HealthReport, assess_window
from .history import DriftTracker, ScoreHistory, history_path
from .scorer import Scorer, one_line
from .sinks import Sink
from .sinks.jsonl import JsonlSink
from .sinks.mqtt import MqttSink
from .sinks.outbox import Outbox
from .sources import open_source
from .systemd_notify import Notifier
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
        # the section, the window length, the hop against the bundle: the same check (and
        # one-line ConfigError) as `edge-agent config check`, now rather than at every window
        self.window_length, self.hop = check_start(cfg, self.scorer.bundle)
        self.scorer.bundle.backend(cfg.section)
        self.decider = Decider(cfg.decision)
        self.counters: Counters = {
            "windows": 0,
            "scored": 0,
            "windows_dropped": 0,
            "faults": 0,
            "alarms": 0,
            "reloads": 0,
            "outbox_dropped": 0,
            "window_errors": 0,
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
        self._state_store: DecisionStore | None = None
        self._saved_state: DeciderState | None = None
        self._last_alarm: WindowEvent | None = None
        if self.mqtt is not None:
            self._restore_decision(self.mqtt)
        self.history: ScoreHistory | None = None
        seed: list[float] = []
        if cfg.history.enabled and (cfg.source.kind != "files" or cfg.history.replays):
            self.history = ScoreHistory(
                history_path(cfg.history, cfg.outbox.path, cfg.section), cfg.history.max_days,
                cfg.history.max_rows)
            seed = self.history.recent_scores(cfg.history.drift_windows)
        self.drift = DriftTracker(cfg.history.drift_windows, seed)
        # evidence (edge_agent.evidence): the last n scored windows' audio, written on a raise
        self.evidence: EvidenceStore | None = None
        self._heard = EvidenceRing(cfg.decision.n)
        if cfg.evidence.enabled:
            self.evidence = EvidenceStore(cfg.evidence, self.scorer.spec.sample_rate,
                                          self.device_id)
        self._queue: queue.Queue[Window | None] = queue.Queue(maxsize=cfg.queue_size)
        self._stop = threading.Event()
        self._reload = threading.Event()
        self._pending: Scorer | None = None
        self._reload_failures: queue.SimpleQueue[str] = queue.SimpleQueue()  # reload -> main
        self._last_window_error: str | None = None
        self._stamp = bundle_stamp(cfg.bundle)
        self._next_poll = 0.0
        self._lost_since: float | None = None
        self._last_block = time.monotonic()
        self.notify = Notifier()  # systemd; a no-op without NOTIFY_SOCKET
        self._ready = False  # READY=1 sent: the worker may ping the watchdog
        self._main_beat = time.monotonic()  # the read loop's last turn (watchdog)
        self._next_ping = 0.0

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

    # --- decision state (persisted next to the outbox: see decision.DecisionStore) ---
    def _restore_decision(self, mqtt: MqttSink) -> None:
        """Continue where the last run stopped: alarm state, votes, and the alarm topic's last
        payload, which the MQTT sink re-publishes (retained) on every connect. Only with MQTT
        on: the retained topic is what goes stale otherwise, and the state file then lives
        next to the outbox (`decision.state_path`)."""
        self._state_store = DecisionStore(state_path(self.cfg.outbox.path), self.cfg.section)
        saved = self._state_store.load()
        if saved is None:
            return
        self.decider.restore(saved.decider)
        self._saved_state = self.decider.snapshot()
        if saved.last_alarm is not None:
            self._last_alarm = cast(WindowEvent, saved.last_alarm)  # checked by load()
            mqtt.set_alarm_state(saved.last_alarm)
        log.info(
            "decision state restored from %s: %s (%d of the last %d windows anomalous)",
            self._state_store.path, saved.decider.state, sum(saved.decider.history),
            len(saved.decider.history),
        )

    def _save_decision(self, alarm: WindowEvent | None) -> None:
        """Persist the decision state if it changed (or a new alarm event): before the alarm
        event is emitted, so a crash in between still restores and re-publishes it."""
        if self._state_store is None:
            return
        snap = self.decider.snapshot()
        if alarm is None and snap == self._saved_state:
            return
        if alarm is not None:
            self._last_alarm = alarm
        if self._state_store.save(snap, self._last_alarm):
            self._saved_state = snap

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
                self._check_candidate(new)
                self._pending = new
            except Exception as exc:  # any failure: keep the running model
                msg = one_line(exc)
                log.error(
                    "bundle reload failed, keeping %s: %s", self.scorer.bundle.model_version, msg
                )
                self._reload_failures.put(msg)  # the main loop emits it (sinks: not this thread)

        threading.Thread(target=load, name="bundle-reload", daemon=True).start()

    def _check_candidate(self, new: Scorer) -> None:
        """BundleError unless `new` can replace the running scorer as it is: the windower keeps
        its sample rate and window length, and the candidate scores a synthetic window of the
        agent's section to a finite number (embedding sizes, threshold: `Scorer.smoke_test`)."""
        rate, running = new.spec.sample_rate, self.scorer.spec.sample_rate
        if rate != running:
            raise BundleError(
                f"{new.bundle.path}: frontend sample_rate {rate} Hz, the agent runs at {running} "
                "Hz (restart the agent to change it)"
            )
        length, hop = self.cfg.windows.samples(new.spec)
        if (length, hop) != (self.window_length, self.hop):
            raise BundleError(
                f"{new.bundle.path}: windows of {length} samples (hop {hop}), the agent cuts "
                f"{self.window_length} (hop {self.hop}) (restart the agent to change it)"
            )
        new.smoke_test(self.cfg.section, self.window_length)

    def _report_reload_failures(self) -> None:
        while True:
            try:
                msg = self._reload_failures.get_nowait()
            except queue.Empty:
                return
            self.emit(health_event(time.time(), self.device_id, "reload_failed",
                                   ["reload_failed"], error=msg))

    # --- worker ---
    def process(self, w: Window) -> None:
        """Health -> score -> decision -> events for one window (worker thread)."""
        if self._pending is not None:
            self.scorer, self._pending = self._pending, None
            self._last_window_error = None  # a new model's errors are news
            self.counters["reloads"] += 1
            self.emit(status_event(time.time(), self.device_id, "reloaded",
                                   model_version=self.scorer.bundle.model_version))
        self.counters["windows"] += 1
        sec = self.cfg.section
        h = assess_window(w, self.cfg.health)
        if not h.ok:
            self.counters["faults"] += 1
            d = self.decider.update(None, h.faults)
            if self.history is not None:
                self.history.append(w.t_start, None, float("nan"), fault=True,
                                    in_alarm=d.state == ALARM)
            if d.fault_changed:
                self.emit(health_event(w.t_start, self.device_id, "sensor_fault", h.faults,
                                       window=w.index, levels=_levels(h)))
            return
        ws = self.scorer.score(w.samples, sec)
        thr = self.decider.effective_threshold(ws.threshold)
        anomalous = self.decider.is_anomalous(ws.score, ws.threshold)
        d = self.decider.update(anomalous)
        self.counters["scored"] += 1
        if self.history is not None:  # one 17-byte append: see edge_agent.history
            self.history.append(w.t_start, ws.score, thr, anomalous=anomalous,
                                in_alarm=d.state == ALARM)
        drift = self.drift.add(ws.score, thr)
        evidence = self._keep_evidence(w, ws.score, thr, anomalous, d.state, d.changed,
                                       ws.model_version)
        if d.fault_changed:
            self.emit(health_event(w.t_start, self.device_id, "sensor_ok", [], window=w.index,
                                   levels=_levels(h)))

        def event(kind: Literal["score", "alarm"]) -> WindowEvent:
            return window_event(
                kind, w.t_start, self.device_id, section=sec, window=w.index, score=ws.score,
                threshold=thr, anomalous=anomalous, decision=d.state, votes=d.votes,
                model_version=ws.model_version, source=w.source_info, drift=drift,
                evidence=evidence if kind == "alarm" else None,
            )

        alarm = event("alarm") if d.changed else None
        self._save_decision(alarm)
        self.emit(event("score"))
        if alarm is not None:
            if d.state == ALARM:
                self.counters["alarms"] += 1
            self.emit(alarm)

    def _keep_evidence(
        self, w: Window, score: float, thr: float, anomalous: bool, state: str, changed: bool,
        model_version: str,
    ) -> EvidenceRef | None:
        """Keep the scored window's audio in the ring (mirroring the decider's vote history:
        cleared when the alarm clears); on a raise, queue the voting windows' clip and return
        its reference for the alarm payload (None: no evidence kept or the clip skipped)."""
        if self.evidence is None:
            return None
        self._heard.push(HeardWindow(w.samples, w.t_start, w.index, score, thr, anomalous))
        if not changed:
            return None
        if state != ALARM:
            self._heard.clear()
            return None
        return self.evidence.keep(self.cfg.section, self._heard.voting(), w.t_start,
                                  model_version)

    def _close_evidence(self) -> None:
        """Shutdown: the queued clips are written (and skips reported) before `stopped`."""
        if self.evidence is not None:
            self.evidence.close()
            self._report_evidence()

    def _report_evidence(self) -> None:
        """Alarm clips that were not stored (low disk space, write errors): a health event
        each, from the worker (skips at a raise) or at shutdown. Scoring goes on."""
        if self.evidence is None:
            return
        for msg in self.evidence.take_notices():
            self.emit(health_event(time.time(), self.device_id, "evidence_skipped",
                                   ["evidence_skipped"], error=msg))

    def _report_mqtt(self) -> None:
        """The broker refused us or accepts us again (`MqttSink.take_notices`): a health event
        to every sink (main thread). The agent goes on scoring either way."""
        if self.mqtt is None:
            return
        for name, msg in self.mqtt.take_notices():
            faults = [] if name == "mqtt_ok" else [name]
            self.emit(health_event(time.time(), self.device_id, name, faults, error=msg))

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
            try:
                w = self._queue.get(timeout=0.5)  # wake to ping the watchdog while idle
            except queue.Empty:
                self._watchdog()
                continue
            if w is None:
                return
            try:
                self.process(w)
                self._report_outbox()
                self._report_evidence()
            except Exception as exc:  # one bad window must not stop the agent
                self._window_failed(w, exc)
            self._watchdog()

    def status_line(self) -> str:
        """The short line `systemctl status` shows (systemd STATUS=)."""
        c = self.counters
        line = f"{self.cfg.section}: {c['scored']} windows scored, {c['alarms']} alarms"
        return line + (", device lost" if self._lost_since is not None else "")

    def _watchdog(self) -> None:
        """Worker thread, after each window and each idle 0.5 s: WATCHDOG=1 (and STATUS) every
        half WATCHDOG_USEC, if the read loop turned within the ping interval (at least 5 s:
        a loaded machine must not trigger restarts). That the worker calls this at all is
        its own liveness: a window that hangs stops the pings. Without a watchdog: STATUS
        every 10 s."""
        now = time.monotonic()
        if not self._ready or not self.notify.enabled or now < self._next_ping:
            return
        interval = self.notify.watchdog_interval
        if interval is None:
            self._next_ping = now + 10.0
            self.notify.status(self.status_line())
            return
        if now - self._main_beat > max(interval, 5.0):
            return  # the read loop is stuck: let systemd's watchdog fire
        self._next_ping = now + interval
        self.notify.watchdog(self.status_line())

    def _window_failed(self, w: Window, exc: Exception) -> None:
        """Count the failure and report it as a `window_error` health event, rate-limited: the
        first error, each change of message, and at 10, 100, 1000... errors (the count), so a
        model that fails every window is visible on MQTT without an event per window."""
        self.counters["window_errors"] += 1
        n = self.counters["window_errors"]
        msg = one_line(exc)
        decade = n >= 10 and str(n).rstrip("0") == "1"
        if msg == self._last_window_error and not decade:
            log.debug("window %d failed: %s", w.index, msg)
            return
        self._last_window_error = msg
        log.error("window %d failed (%d so far): %s", w.index, n, msg)
        self.emit(health_event(w.t_start, self.device_id, "window_error", ["window_error"],
                               window=w.index, error=msg, count=n))

    # --- main loop ---
    def run(self, install_signals: bool = True) -> int:
        """Run until the source ends or `stop()` / SIGTERM / SIGINT; returns the exit code."""
        if install_signals and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self.stop)
            signal.signal(signal.SIGINT, self.stop)
            signal.signal(signal.SIGHUP, self.request_reload)
        rate = self.scorer.spec.sample_rate
        source = open_source(self.cfg.source, rate, self.stdin, self.window_length)
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
        self.notify.ready(self.status_line())
        self._ready = True
        try:
            while not self._stop.is_set():
                block = source.read(0.5)
                now = self._main_beat = time.monotonic()
                self._poll_bundle(now)
                self._report_mqtt()
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
            self.notify.stopping()
            source.stop()
            self._queue.put(None)
            worker.join()
            self._close_evidence()
            self._report_mqtt()
            self.emit(status_event(
                time.time(), self.device_id, "stopped", counters=self.counters,
                scores_unsent=self.mqtt.scores_dropped if self.mqtt else None,
            ))
            for s in self.sinks:
                s.close()
            if self.history is not None:
                self.history.close()
            self.notify.close()
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
        self._report_reload_failures()

    def _check_lost(self, now: float) -> None:
        if self._lost_since is None and now - self._last_block > self.cfg.source.stall_seconds:
            self._lost_since = now
            self.emit(health_event(time.time(), self.device_id, "sensor_fault", ["device_lost"]))

    def _enqueue(self, w: Window, live: bool) -> None:
        if not live:
            while True:  # waiting for a busy worker is progress: the watchdog is told
                try:
                    self._queue.put(w, timeout=0.5)
                    return
                except queue.Full:
                    self._main_beat = time.monotonic()
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
