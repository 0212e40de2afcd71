"""The streaming agent: sources -> windows -> scorer -> decision -> sinks, for every monitor.

Monitors (`edge_agent.config.monitors`): one agent listens to one machine (the top-level `section`)
or to several (`monitors:`), with ONE model in memory for all of them; each machine's windows,
health, decision, history and evidence live in its `edge_agent.runtime.monitor.Monitor`.

Threads and why:
- one reader thread per audio source (`edge_agent.runtime.reader.Capture`; monitors on the channels
  of one interface share one source and one thread): it reads blocks and cuts each monitor's
  windows; it never scores, so a slow model cannot make an audio device overflow, and a stuck
  device cannot starve another one;
- one scoring worker takes (monitor, window) pairs from a bounded queue. From a live source
  (device/stdin) a full queue drops the new window and counts it (`windows_dropped`, a health
  event naming the monitor); a file replay that is not real-time waits instead (nothing is
  lost, the replay just runs at the scorer's pace);
- the main thread supervises: bundle polling and reload, MQTT notices, the end of the sources;
- a bundle reload (SIGHUP, or the bundle's `current`/manifest mtime changing) loads the new
  model on its own thread and the worker swaps it in between two windows (or while it waits
  for one, so the swap never waits for audio): no audio is dropped. A new version with the
  same model bytes shares the running interpreter (`Scorer.from_loaded(running=...)`).
  The candidate must first score a synthetic window of every monitor's section
  (`Scorer.smoke_test`) at the running sample rate and window length, and carry a trusted
  signature when `trusted_keys` are configured; a version that fails is never swapped in: the
  old one keeps running and a `reload_failed` health event says why;
- a window whose processing raises is counted (`window_errors`) and reported as a
  `window_error` health event: the first error, each change of message, and at 10, 100, 1000...
  errors, so a permanently broken model reaches MQTT without flooding it;
- under systemd (`Type=notify`, `edge_agent.runtime.notify`): READY=1 once the sources are
  open and the worker runs; the worker sends WATCHDOG=1 (with a STATUS line) every half
  `WATCHDOG_USEC`, and only while it turns (it wakes at least every 0.5 s) and every reader
  and the main loop turned within the last ping interval (at least 5 s): a hung worker or
  reader stops the pings and systemd restarts the agent; STOPPING=1 when shutdown begins.

Evidence (`edge_agent.runtime.evidence`, with `evidence.folder` set): each monitor keeps its last n
scored windows' audio; when it raises the alarm it hands the voting windows' clip to the one
evidence writer thread (bounded queue: a slow SD card never delays scoring) and the alarm
event references the clip (file, sha256, span).

Answers (`edge_agent.adaptation.feedback`, with evidence kept): an operator's "not a fault" /
"confirmed" for an alarm arrives over MQTT (`<monitor>/feedback/set`, Home Assistant's
buttons) and is applied on the `AnswerDesk`'s own thread (embedding the alarm's windows and
refitting a section takes seconds on a Pi: never on the scoring worker or paho's thread); a
"not a fault" writes a new bundle version, which the bundle poll reloads like a calibration.
The main loop also publishes answers `edge-agent feedback` gave to a machine's latest alarm.

Lifecycle: SIGTERM/SIGINT stop reading, the worker finishes the windows already cut, sinks
flush (MQTT waits for the outbox to be acknowledged, then publishes retained `offline`), and
`run()` returns 0. A source that fails while running stops the agent and its error is raised.

Decision state (with MQTT on): saved next to the outbox whenever it changes and restored at
start (`decision.DecisionStore`, one file per monitor), so a restart during an alarm neither
forgets it nor leaves the retained alarm topic stale; the MQTT sink re-publishes it on every
connect. A broker that refuses the agent (login, TLS) is reported as a health event and
retried; scoring goes on.

Score history (`history.enabled`, default on, live sources; file replays only with
`history.replays`): every window's score, threshold and flags are appended to
`scores.<monitor>.bin` beside the outbox (`edge_agent.runtime.history`), which `edge-agent tune`
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
from collections.abc import Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from edge_agent.audio.files import write_wav
from edge_agent.config.agent import AgentConfig
from edge_agent.config.monitors import MonitorSettings, capture_groups
from edge_agent.errors import BundleError, ConfigError, EdgeAgentError
from edge_agent.events import COUNTERS, Counters, Event, health_event, iso, status_event
from edge_agent.fleet.control import AgentStatus, MonitorStatus
from edge_agent.runtime.evidence import EvidenceStore
from edge_agent.runtime.heap import limit_malloc_arenas, release_freed_memory
from edge_agent.runtime.monitor import Monitor, monitor_files, zero_counters
from edge_agent.runtime.notify import Notifier
from edge_agent.runtime.reader import Capture
from edge_agent.runtime.scorer import Scorer, one_line
from edge_agent.runtime.start import check_start
from edge_agent.runtime.windows import Window
from edge_agent.scoring.embedder import RuntimeRequest
from edge_agent.sinks import Sink
from edge_agent.sinks.build import Sinks
from edge_agent.sinks.build import build as build_sinks
from edge_agent.sinks.jsonl import human_line
from edge_agent.sinks.mqtt import start_state
from edge_agent.sources import open_source
from edge_agent.sources.base import AudioSource

if TYPE_CHECKING:  # cryptography is imported only when keys are configured
    from edge_agent.adaptation.feedback import AnswerDesk
    from edge_agent.adaptation.service import Trust
    from edge_agent.bundle.signing import TrustedKey
    from edge_agent.fleet.client import FleetClient

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


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A handler writing to `sys.stderr` as it is when each record is written, not as it was at
    setup: whoever replaced stderr since (a test harness, a daemon wrapper) gets the line, and
    a closed old stream never turns a log line into a "Logging error" traceback."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def setup_logging(json_logs: bool, level: str) -> None:
    h = _StderrHandler()
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
    """One model, one or more monitors (see module docstring)."""

    def __init__(
        self, cfg: AgentConfig, sinks: list[Sink] | None = None, stdin: IO[bytes] | None = None
    ) -> None:
        self.cfg = cfg
        self.stdin = stdin
        limit_malloc_arenas()  # before any of the agent's threads allocates (runtime/heap.py)
        self.scorer = self._load_scorer()
        # the sections, the window length, the hop against the bundle: the same check (and
        # one-line ConfigError) as `edge-agent config check`, now rather than at every window
        self.window_length, self.hop = check_start(cfg, self.scorer.bundle)
        self.settings: tuple[MonitorSettings, ...] = cfg.monitor_list()
        self._files = {
            m.name: monitor_files(
                m.name,
                not cfg.monitors,
                cfg.outbox.path,
                cfg.history,
                cfg.history.enabled and (m.source.kind != "files" or cfg.history.replays),
                cfg.mqtt.enabled and sinks is None,
                cfg.hearing,
            )
            for m in self.settings
        }
        # what this run would leave behind that was not there before (see `_abandon`)
        self._fresh = [p for p in self._state_paths() if not p.exists()]
        self._agent_counters = {"reloads": 0}
        self._emit_lock = threading.Lock()
        # every sink, and the two with duties beyond handle() (`sinks.build.Sinks`): the ones
        # the config asks for, or those a caller hands in (a test's collector)
        self.out = (
            Sinks(list(sinks))
            if sinks is not None
            else build_sinks(
                cfg, self.settings, self.scorer.bundle.model_version, self._outbox_depth
            )
        )
        self.sinks: list[Sink] = self.out.all
        self.mqtt, self.metrics = self.out.mqtt, self.out.metrics
        self.fleet: FleetClient | None = None  # with fleet.enabled, while run() runs
        # evidence (edge_agent.runtime.evidence): each monitor's last n scored windows, one writer
        self.evidence: EvidenceStore | None = None
        if cfg.evidence.enabled:
            self.evidence = EvidenceStore(
                cfg.evidence, self.scorer.spec.sample_rate, self.device_id
            )
            if self.mqtt is not None and cfg.evidence.mqtt_max_kilobytes > 0:
                self.evidence.publish = self.mqtt.publish_evidence
        self.answers: AnswerDesk | None = None  # operators' answers (needs the clips)
        if cfg.evidence.enabled:
            self.answers = self._answer_desk()
        rate = self.scorer.spec.sample_rate
        self.monitors: list[Monitor] = []
        for m in self.settings:
            mon = Monitor(
                m,
                self.device_id,
                self.emit,
                self._files[m.name],
                self.evidence,
                (self.window_length, self.hop, rate),
            )
            if self.mqtt is not None and cfg.mqtt.ha_discovery:  # HA's alarm picture
                mon.publish_picture = self.mqtt.publish_picture
            if self.mqtt is not None:  # the current state, whatever the broker retained
                state: Mapping[str, object] = (
                    mon.last_alarm
                    if mon.last_alarm is not None
                    else start_state(
                        self.device_id,
                        mon.name,
                        mon.section,
                        mon.decider.state,
                        sum(mon.decider.snapshot().history),
                        self.scorer.bundle.model_version,
                        time.time(),
                    )
                )
                self.mqtt.set_alarm_state(state)
            self.monitors.append(mon)
        self.by_name = {m.name: m for m in self.monitors}
        self.captures: list[Capture] = []
        self._queue: queue.Queue[tuple[Monitor, Window] | None] = queue.Queue(
            maxsize=cfg.queue_size * len(self.monitors)
        )
        self._stop = threading.Event()
        self._reload = threading.Event()
        self._pending: Scorer | None = None
        self._pending_lock = threading.Lock()
        self._reload_gen = 0  # generation of the last reload started (see _start_reload)
        self._reload_failures: queue.SimpleQueue[str] = queue.SimpleQueue()  # reload -> main
        self._stamp = bundle_stamp(cfg.bundle)
        self._next_poll = 0.0
        self.notify = Notifier()  # systemd; a no-op without NOTIFY_SOCKET
        self._ready = False  # READY=1 sent: the worker may ping the watchdog
        self._main_beat = time.monotonic()  # the supervising loop's last turn (watchdog)
        self._next_ping = 0.0
        self._started = time.time()

    def _load_scorer(self, running: Scorer | None = None) -> Scorer:
        """The bundle's scorer; with `trusted_keys`, only a version signed by one of them (or
        a local calibration of one: `edge_agent.bundle.signing`). The key files are re-read at each
        load, so a rotated key list applies from the next reload. Each load says in the log
        what vouches for the version (`signing.provenance`). `running`: the scorer a reload
        replaces (its interpreters are shared where the model is the same, `Scorer.from_loaded`)."""
        from edge_agent.bundle.load import provenance

        trusted = self.trusted()
        # the bundle's self-test runs in from_bundle: a runtime that computes other numbers
        # on this CPU is refused here, at start and at every reload (and so every install);
        # a reload shares the running scorer's interpreter where the model is the same
        scorer = Scorer.from_bundle(
            self.cfg.bundle,
            self.cfg.threads,
            trusted=trusted,
            request=self.cfg.tflite.request(),
            running=running,
        )
        log.info("%s", provenance(scorer.bundle, trusted))
        log.info(
            "TFLite runtime %s: %s",
            scorer.runtime.label,
            "no self-test in this bundle"
            if scorer.self_test is None
            else f"self-test passed ({scorer.self_test.numbers()})",
        )
        return scorer

    def _answer_desk(self) -> AnswerDesk:
        """The desk that applies answers (`edge_agent.adaptation.feedback`); over MQTT too when
        `feedback.mqtt` and the broker is configured."""
        from edge_agent.adaptation.feedback import AnswerDesk
        from edge_agent.adaptation.service import Teach

        cfg = self.cfg
        assert cfg.evidence.folder
        desk = AnswerDesk(
            cfg.bundle,
            cfg.evidence.folder,
            {m.name: m.section for m in self.settings},
            self.device_id,
            self.adapt_trust,
            Teach(cfg.feedback.max_references, cfg.feedback.threshold_rule),
            self.emit,
            cfg.threads,
        )
        if self.mqtt is not None and cfg.feedback.mqtt:
            self.mqtt.answers = desk.submit
        return desk

    def adapt_trust(self) -> Trust:
        """What a version adapted by the agent is checked and sealed with, as a command's
        (`commands.overrides.trust`): the keys now, and this device's key with trusted keys."""
        from edge_agent.adaptation.service import Trust
        from edge_agent.bundle.signing import device_signing_key

        return Trust(
            self.trusted(),
            device_signing_key(self.cfg.state_folder) if self.cfg.trusted_keys else None,
        )

    def trusted(self) -> list[TrustedKey]:
        """The configured public keys and this device's own (`signing.load_trust`; none
        configured: signatures are not checked)."""
        from edge_agent.bundle.signing import load_trust

        return load_trust(self.cfg.trusted_keys, self.cfg.state_folder)

    def _state_paths(self) -> list[Path]:
        """The files and folders a run of this config writes (outbox and its journals, each
        monitor's history and decision state, the JSON-lines log, the metrics file, the
        evidence folder)."""
        cfg = self.cfg
        paths = [
            Path(p)
            for p in (
                cfg.log.jsonl_file,
                cfg.metrics.textfile,
                cfg.evidence.folder if cfg.evidence.enabled else None,
            )
            if p
        ]
        if cfg.mqtt.enabled:
            paths += [Path(cfg.outbox.path + suffix) for suffix in ("", "-wal", "-shm", "-journal")]
        for f in self._files.values():
            paths += [p for p in (f.history, f.decision) if p is not None]
        return paths

    def _abandon(self) -> None:
        """The sources could not be opened (no microphone, a device that is not there): the run
        never began. Close what the agent opened, report no `stopped` status (nothing ran),
        and remove the files and folders it created, so a failed start leaves nothing behind
        in the state folder; what existed before is kept as it was."""
        for s in self.sinks:
            try:
                s.close()
            except Exception as exc:  # closing must not hide why the start failed
                log.debug("closing %s after a failed start: %s", type(s).__name__, exc)
        for m in self.monitors:
            m.close()
        if self.evidence is not None:
            self.evidence.close()
        self.notify.close()
        for p in sorted(self._fresh, key=lambda q: len(q.parts), reverse=True):
            try:
                if p.is_dir():
                    p.rmdir()  # only when empty: never a folder with someone's files
                else:
                    p.unlink(missing_ok=True)
            except OSError as exc:
                log.debug("%s left after a failed start: %s", p, exc)

    def _outbox_depth(self) -> int:
        return self.out.outbox_depth

    # --- events ---
    @property
    def device_id(self) -> str:
        return self.cfg.mqtt.device_id

    @property
    def counters(self) -> Counters:
        """Every monitor's counters summed, with the agent's own (reloads, and the outbox's
        drops: rows evicted when full, rows only in memory at the end)."""
        total = zero_counters()
        for m in self.monitors:
            for k in COUNTERS:
                total[k] += m.counters[k]
        total["reloads"] = self._agent_counters["reloads"]
        total["outbox_dropped"] = self.mqtt.outbox.dropped if self.mqtt is not None else 0
        return total

    def emit(self, event: Event) -> None:
        """Every sink gets the event, one event at a time (readers, the worker and the main
        thread all emit: the lock keeps lines and files whole)."""
        if event["kind"] == "alarm" and "evidence" in event and self.answers is not None:
            self.answers.track(event["monitor"], event["evidence"]["file"])  # the new question
        with self._emit_lock:
            for s in self.sinks:
                try:
                    s.handle(event)
                except Exception as exc:  # one broken sink must not stop the others
                    log.error("sink %s failed: %s", type(s).__name__, exc)
        if event["kind"] != "score":  # the human line without its time (the log has one)
            level = (
                logging.WARNING
                if event.get("event") in ("windows_dropped", "hearing_mismatch")
                else logging.INFO
            )
            log.log(level, "%s", human_line(event).split(" ", 1)[1])

    # --- control ---
    def stop(self, *_: Any) -> None:
        self._stop.set()

    def request_reload(self, *_: Any) -> None:
        self._reload.set()

    def _start_reload(self) -> None:
        """Load the active version on a thread of its own. Each start is a new generation: a
        slower load of an older generation (an install quickly followed by a rollback) is
        discarded when it finishes, so the model swapped in is always the latest `current`."""
        self._reload.clear()
        self._reload_gen += 1
        gen = self._reload_gen

        def load() -> None:
            try:
                new = self._load_scorer(self.scorer)
                self._check_candidate(new)
                with self._pending_lock:
                    if gen != self._reload_gen:
                        log.info("bundle reload superseded by a newer one: discarded")
                        return
                    self._pending = new
            except Exception as exc:  # any failure: keep the running model
                msg = one_line(exc)
                log.error(
                    "bundle reload failed, keeping %s: %s", self.scorer.bundle.model_version, msg
                )
                self._reload_failures.put(msg)  # the main loop emits it (sinks: not this thread)

        threading.Thread(target=load, name="bundle-reload", daemon=True).start()

    def _check_candidate(self, new: Scorer) -> None:
        """BundleError unless `new` can replace the running scorer as it is: the windowers keep
        their sample rate and window length, and the candidate scores a synthetic window of
        every monitor's section to a finite number (embedding sizes, threshold:
        `Scorer.smoke_test`)."""
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
        for section in dict.fromkeys(m.section for m in self.monitors):
            new.smoke_test(section, self.window_length)

    def _report_reload_failures(self) -> None:
        while True:
            try:
                msg = self._reload_failures.get_nowait()
            except queue.Empty:
                return
            self.emit(
                health_event(
                    time.time(), self.device_id, "reload_failed", ["reload_failed"], error=msg
                )
            )

    # --- worker ---
    def process(self, monitor: Monitor, w: Window) -> None:
        """Swap in a reloaded model between windows, then the monitor's path for `w`."""
        self._swap_pending()
        monitor.process(w, self.scorer)

    def _swap_pending(self) -> None:
        """The worker (only it): a reloaded, checked model replaces the running one. Called
        before each window and when the worker is idle, so the swap never waits for audio:
        with 10 s windows, or a lost device, `running_version` (which the fleet's health
        check waits for) would otherwise lag a finished reload by a hop or for ever."""
        if self._pending is None:
            return
        with self._pending_lock:
            new, self._pending = self._pending, None
        if new is None:
            return
        self.scorer = new
        for m in self.monitors:
            m.new_model()
        self._agent_counters["reloads"] += 1
        self.emit(
            status_event(
                time.time(),
                self.device_id,
                "reloaded",
                model_version=self.scorer.bundle.model_version,
            )
        )
        release_freed_memory()  # the old scorer's arena, else kept by malloc for good

    def _report_evidence(self) -> None:
        """Alarm clips that were not stored (low disk space, write errors): a health event
        each, from the worker (skips at a raise) or at shutdown. Scoring goes on."""
        if self.evidence is None:
            return
        for msg in self.evidence.take_notices():
            self.emit(
                health_event(
                    time.time(), self.device_id, "evidence_skipped", ["evidence_skipped"], error=msg
                )
            )

    def _report_mqtt(self) -> None:
        """The broker refused us or accepts us again (`MqttSink.take_notices`): a health event
        to every sink (main thread). The agent goes on scoring either way."""
        if self.mqtt is None:
            return
        for name, msg in self.mqtt.take_notices():
            faults = [] if name == "mqtt_ok" else [name]
            self.emit(health_event(time.time(), self.device_id, name, faults, error=msg))

    def _report_outbox(self) -> None:
        """What happened to the outbox (`Outbox.take_notices`: full, the disk refusing writes
        and storing again, rows quarantined, a damaged or foreign file replaced): a health event
        each (main thread), never silently. The notices are rate-limited at the source."""
        if self.mqtt is None:
            return
        for n in self.mqtt.outbox.take_notices():
            faults = [] if n.event == "outbox_disk_ok" else [n.event]
            self.emit(
                health_event(
                    time.time(),
                    self.device_id,
                    n.event,
                    faults,
                    error=n.message,
                    dropped=n.dropped,
                    count=n.count,
                )
            )

    def _worker(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=0.5)  # wake to ping the watchdog while idle
            except queue.Empty:
                self._swap_pending()  # a reload is taken up while no window comes
                self._watchdog()
                continue
            if item is None:
                return
            monitor, w = item
            try:
                self.process(monitor, w)
                self._report_evidence()
            except Exception as exc:  # one bad window must not stop the agent
                monitor.window_failed(w, one_line(exc))
            self._watchdog()

    def status_line(self) -> str:
        """The short line `systemctl status` shows (systemd STATUS=)."""
        parts = []
        for m in self.monitors:
            c = m.counters
            lost = ", device lost" if m.lost else ""
            parts.append(f"{m.name}: {c['scored']} windows scored, {c['alarms']} alarms{lost}")
        return "; ".join(parts)

    def _beats_fresh(self, now: float, limit: float) -> bool:
        """The main loop and every running reader turned within `limit` seconds."""
        if now - self._main_beat > limit:
            return False
        return all(now - c.beat <= limit for c in self.captures if not c.finished.is_set())

    def _watchdog(self) -> None:
        """Worker thread, after each window and each idle 0.5 s: WATCHDOG=1 (and STATUS) every
        half WATCHDOG_USEC, if the main loop and every reader turned within the ping interval
        (at least 5 s: a loaded machine must not trigger restarts). That the worker calls this
        at all is its own liveness: a window that hangs stops the pings. Without a watchdog:
        STATUS every 10 s."""
        now = time.monotonic()
        if not self._ready or not self.notify.enabled or now < self._next_ping:
            return
        interval = self.notify.watchdog_interval
        if interval is None:
            self._next_ping = now + 10.0
            self.notify.status(self.status_line())
            return
        if not self._beats_fresh(now, max(interval, 5.0)):
            return  # a read loop is stuck: let systemd's watchdog fire
        self._next_ping = now + interval
        self.notify.watchdog(self.status_line())

    # --- the fleet's view of the agent (edge_agent.fleet.control.AgentControl) ---
    def running_version(self) -> str:
        return self.scorer.bundle.model_version

    def status(self) -> AgentStatus:
        """What a remote `status` command answers (JSON-safe); per monitor also what a remote
        `tune` replays (`edge_agent.fleet.control.MonitorStatus`)."""
        mons: dict[str, MonitorStatus] = {}
        for m in self.monitors:
            last = m.last_score
            d = m.settings.decision
            mons[m.name] = MonitorStatus(
                section=m.section,
                decision=m.decider.state,
                device_lost=m.lost,
                counters=m.counters.copy(),
                last_score=None if last is None else last["score"],
                threshold=None if last is None else last["threshold"],
                last_window_ts=None if last is None else last["ts"],
                history=str(m.history.path) if m.history is not None else "",
                k=d.k,
                n=d.n,
                clear_after=d.clear_after,
                hop_seconds=self.cfg.windows.hop,
                threshold_override=d.threshold,
            )
        return AgentStatus(
            device_id=self.device_id,
            model_version=self.running_version(),
            bundle_version=self.scorer.bundle.version,
            uptime_s=round(time.time() - self._started, 1),
            counters=self.counters.copy(),
            monitors=mons,
        )

    def record(self, monitor: str, seconds: float, path: Path, timeout: float) -> Path:
        """Record the next `seconds` of `monitor`'s live audio into the WAV file `path` (at the
        bundle's rate), waiting at most `timeout` s for the audio; EdgeAgentError otherwise."""
        m = self.by_name.get(monitor)
        if m is None:
            raise ConfigError(f"monitor: no monitor {monitor!r} (has {', '.join(self.by_name)})")
        capture = next((c for c in self.captures if m in c.monitors), None)
        if capture is None or capture.finished.is_set():
            raise EdgeAgentError(f"{monitor}: its audio source is not running")
        rate = self.scorer.spec.sample_rate
        rec = capture.record(m, max(1, round(seconds * rate)))
        if not rec.done.wait(timeout):
            capture.cancel(rec)
            raise EdgeAgentError(
                f"{monitor}: {seconds:g} s of audio did not arrive within "
                f"{timeout:g} s (device lost?)"
            )
        write_wav(path, rec.audio(), rate)
        return path

    # --- main loop ---
    def _open_sources(self) -> list[tuple[AudioSource, list[Monitor], bool]]:
        """One source per capture group, not started yet (`monitors.capture_groups`)."""
        rate = self.scorer.spec.sample_rate
        out = []
        for g in capture_groups(self.settings):
            mons = [self.by_name[m.name] for m in g.monitors]
            src = open_source(
                g.source,
                rate,
                self.stdin,
                self.window_length,
                lanes=g.lanes if len(g.monitors) > 1 else None,
            )
            live = g.source.kind != "files" or g.source.realtime
            out.append((src, mons, live))
        return out

    def run(self, install_signals: bool = True) -> int:
        """Run until every source ends or `stop()` / SIGTERM / SIGINT; returns the exit code."""
        if install_signals and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self.stop)
            signal.signal(signal.SIGINT, self.stop)
            signal.signal(signal.SIGHUP, self.request_reload)
        planned = self._open_sources()
        self._start_sources(planned)  # first: no microphone = one error, no broker, no files
        if self.answers is not None:
            self.answers.start()
        if self.mqtt is not None:
            self.mqtt.start()
        worker = threading.Thread(target=self._worker, name="scorer", daemon=True)
        worker.start()
        log.info(
            "started: %s model=%s",
            ", ".join(
                f"{m.name} (section={m.section}, source={m.settings.source.kind})"
                for m in self.monitors
            ),
            self.scorer.bundle.model_version,
        )
        self._next_poll = time.monotonic() + self.cfg.reload_poll_seconds
        error: BaseException | None = None
        fleet: FleetClient | None = None
        try:
            fleet = self._start_fleet()
            for src, mons, live in planned:
                self.captures.append(
                    Capture(src, mons, live, self._enqueue, mons[0].settings.source.stall_seconds)
                )
            for c in self.captures:
                c.start()
            self.notify.ready(self.status_line())
            self._ready = True
            error = self._supervise()
        finally:
            self.notify.stopping()
            if fleet is not None:
                fleet.close()
            self._shutdown(planned, worker)
        if error is None:
            error = next((c.error for c in self.captures if c.error is not None), None)
        if error is not None:
            raise error
        return 0

    def _start_sources(self, planned: list[tuple[AudioSource, list[Monitor], bool]]) -> None:
        """Open every source (each open is bounded: `DeviceSource.start`) before the broker,
        the worker or the fleet start. One that fails stops those already open, and the agent
        gives up as if it had never started (`_abandon`): the caller prints one error line."""
        started: list[AudioSource] = []
        try:
            for src, _, _ in planned:
                src.start()
                started.append(src)
        except BaseException:
            for src in started:
                src.stop()
            self._abandon()
            raise

    def _start_fleet(self) -> FleetClient | None:
        """With `fleet.enabled`: the fleet client (releases over MQTT, remote commands) on its
        own connection; it installs versions into the bundle folder and the agent's own poll
        reloads them (smoke-tested, signature checked), so it never touches the scorer."""
        if not self.cfg.fleet.enabled:
            return None
        from edge_agent.fleet.client import FleetClient

        client = FleetClient(
            self.cfg.mqtt, self.cfg.fleet, _FleetView(self), self.trusted, self.cfg.state_folder
        )
        client.start()
        self.fleet = client
        return client

    def _supervise(self) -> BaseException | None:
        """The main thread while the readers run: bundle polling, MQTT notices, metrics; until
        stop, every source ended, or one failed (its error is returned)."""
        while not self._stop.is_set():
            if all(c.finished.is_set() for c in self.captures):
                break
            self._stop.wait(0.25)
            now = self._main_beat = time.monotonic()
            self._poll_bundle(now)
            for m in self.monitors:  # windows dropped: summarised (Monitor.flush_drops)
                m.flush_drops()
            if self.answers is not None:
                self.answers.poll()  # refusals, and answers a command gave
            self._report_mqtt()
            self._report_outbox()
            if self.metrics is not None:
                self.metrics.tick()  # a quiet spell does not hold back the last numbers
            error = next((c.error for c in self.captures if c.error is not None), None)
            if error is not None:
                return error
        return None

    def _shutdown(
        self, planned: list[tuple[AudioSource, list[Monitor], bool]], worker: threading.Thread
    ) -> None:
        for c in self.captures:
            c.stop()
        for c in self.captures:
            c.thread.join(5.0)  # a read returns within 0.5 s; a stuck one is not waited for
        for src, _, _ in planned:
            src.stop()
        self._queue.put(None)
        worker.join()
        for m in self.monitors:  # the drops not yet reported
            m.flush_drops(force=True)
        if self.evidence is not None:  # queued clips written (and skips reported) first
            self.evidence.close()
            self._report_evidence()
        if self.answers is not None:  # the answer being applied finishes; its event goes out
            self.answers.close()
            self.answers.poll()
        self._report_mqtt()
        self._report_outbox()
        if self.mqtt is not None:  # deliver what can be; what exists only in memory is lost
            self.mqtt.settle()
            self._report_outbox()  # what settling found (the disk takes writes again, ...)
        self.emit(
            status_event(
                time.time(),
                self.device_id,
                "stopped",
                counters=self.counters,
                scores_unsent=self.mqtt.scores_dropped if self.mqtt else None,
                monitors={m.name: m.counters for m in self.monitors} if self.cfg.monitors else None,
            )
        )
        for s in self.sinks:
            s.close()
        for m in self.monitors:
            m.close()
        self.notify.close()

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

    def _enqueue(self, monitor: Monitor, w: Window, live: bool) -> None:
        """A reader's window for the worker: a replay waits for room, a live source never
        waits (the window is dropped, counted and reported for its monitor)."""
        if not live:
            while not self._stop.is_set():
                try:
                    self._queue.put((monitor, w), timeout=0.5)
                except queue.Full:
                    continue
                return
            return
        try:
            self._queue.put_nowait((monitor, w))
        except queue.Full:
            monitor.dropped(w)


class _FleetView:
    """The agent as the fleet client sees it (`edge_agent.fleet.control.AgentControl`)."""

    def __init__(self, agent: Agent) -> None:
        self._agent = agent

    def running_version(self) -> str:
        return self._agent.running_version()

    def monitors(self) -> dict[str, str]:
        return {m.name: m.section for m in self._agent.monitors}

    def window_samples(self) -> int:
        return self._agent.window_length

    def runtime_request(self) -> RuntimeRequest:
        return self._agent.cfg.tflite.request()

    def bundle_root(self) -> Path:
        return self._agent.scorer.bundle.root

    def status(self) -> AgentStatus:
        return self._agent.status()

    def record(self, monitor: str, seconds: float, path: Path, timeout: float) -> Path:
        return self._agent.record(monitor, seconds, path, timeout)
