"""One machine's path from a window to its events: health -> score -> decision -> events.

The agent (`edge_agent.agent`) owns the threads, the one model and the sinks; a `Monitor` owns
what is one machine's alone (`edge_agent.config.monitors` says which machines there are): its
windower, its k-of-n decider and the decision state saved for restarts, its score history and
drift, the ring of recent windows kept as alarm evidence, and its counters. `process` runs on
the agent's scoring worker with the scorer in force for that window; events leave through the
`emit` the agent gives it, so every sink sees every monitor's events in one stream, each event
naming its `monitor` and `section`.

Files are keyed by the monitor's name: `scores.<name>.bin` (history), `<outbox>.decision.json`
for a single-machine agent as before and `<outbox>.decision.<name>.json` per monitor otherwise.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

from edge_agent.config.monitors import MonitorSettings
from edge_agent.config.runtime import HearingSettings, HistorySettings
from edge_agent.events import (
    ALARM,
    COUNTERS,
    Counters,
    Event,
    EvidenceRef,
    HealthEventName,
    Levels,
    WindowEvent,
    health_event,
    window_event,
)
from edge_agent.runtime.decision import Decider, DeciderState, DecisionStore, state_path
from edge_agent.runtime.evidence import EvidenceRing, EvidenceStore, HeardWindow
from edge_agent.runtime.health import HealthReport, assess_window
from edge_agent.runtime.hearing import HearingCheck
from edge_agent.runtime.history import DriftTracker, ScoreHistory, history_path
from edge_agent.runtime.scorer import Scorer
from edge_agent.runtime.windows import Window, Windower
from edge_agent.scoring.profile import AudioProfile, summarise

log = logging.getLogger("edge_agent")

Emit = Callable[[Event], None]

DROP_REPORT_SECONDS = 60.0
"""Windows dropped are reported at the first drop, then at most once per this many seconds
with the count since the last report: a live source the scorer cannot keep up with (a pipe
fed faster than real time) must not print a line per window."""


def zero_counters() -> Counters:
    return cast(Counters, dict.fromkeys(COUNTERS, 0))


@dataclass
class Files:
    """Where a monitor keeps its durable state (None: not kept)."""

    history: Path | None = None
    decision: Path | None = None
    history_settings: HistorySettings = field(default_factory=HistorySettings)
    hearing: HearingSettings = field(default_factory=HearingSettings)


class Monitor:
    """One machine (see module docstring)."""

    def __init__(
        self,
        settings: MonitorSettings,
        device_id: str,
        emit: Emit,
        files: Files,
        evidence: EvidenceStore | None,
        window: tuple[int, int, int],
    ) -> None:
        """`window`: (length, hop, rate) in samples: the bundle's clip length, the hop."""
        self.settings = settings
        self.name = settings.name
        self.section = settings.section
        self.device_id = device_id
        self.emit = emit
        self.counters = zero_counters()
        self.decider = Decider(settings.decision)
        self.windower = Windower(*window)
        self.evidence = evidence
        self._heard = EvidenceRing(settings.decision.n)
        self._last_window_error: str | None = None
        self.last_alarm: WindowEvent | None = None
        self.last_score: WindowEvent | None = None
        self.lost = False  # its capture reported the device lost (health device_lost)
        self._drops_lock = threading.Lock()  # readers drop, the main thread flushes
        self._drops_unreported = 0
        self._drops_reported_at: float | None = None  # monotonic
        self._last_drop: Window | None = None
        self._store: DecisionStore | None = None
        self._saved: DeciderState | None = None
        if files.decision is not None:
            self._store = DecisionStore(files.decision, self.section)
            self._restore()
        self.history: ScoreHistory | None = None
        seed: list[float] = []
        hs = files.history_settings
        if files.history is not None:
            self.history = ScoreHistory(files.history, hs.max_days, hs.max_rows)
            seed = self.history.recent_scores(hs.drift_windows)
        self.drift = DriftTracker(hs.drift_windows, seed)
        # does it hear right (edge_agent.runtime.hearing); the profile comes with the scorer
        self.hearing = HearingCheck(None, files.hearing, self.section)
        self._hearing_of: object | None = None  # the bundle whose profile is in force
        # the last n scored windows (audio, levels, index): an alarm's explanation reads its
        # voting windows from here (edge_agent.scoring.explain), whether evidence is kept or not
        # (only the anomalous ones keep their audio: the voting windows are those; a raise
        # always comes with an anomalous window)
        self._recent: deque[tuple[Window | None, HealthReport, bool]] = deque(
            maxlen=settings.decision.n
        )
        # the alarm's spectrum on the normal range as a PNG (edge_agent.scoring.picture), for
        # Home Assistant's image entity: set by the agent when MQTT discovery is on
        self.publish_picture: Callable[[str, bytes], None] | None = None
        self._picture: bytes | None = None

    # --- events ---
    def health(  # noqa: PLR0913 -- one keyword-only parameter per optional field
        self,
        epoch: float,
        event: HealthEventName,
        faults: list[str],
        *,
        window: int | None = None,
        levels: Levels | None = None,
        dropped: int | None = None,
        error: str | None = None,
        count: int | None = None,
        message: str | None = None,
        findings: list[dict[str, Any]] | None = None,
    ) -> None:
        """A health event about this machine (it names the monitor and its section)."""
        self.emit(
            health_event(
                epoch,
                self.device_id,
                event,
                faults,
                window=window,
                levels=levels,
                dropped=dropped,
                error=error,
                count=count,
                monitor=self.name,
                section=self.section,
                message=message,
                findings=findings,
            )
        )

    # --- decision state (persisted next to the outbox: see decision.DecisionStore) ---
    def _restore(self) -> None:
        """Continue where the last run stopped: alarm state, votes, and the alarm topic's last
        payload (the MQTT sink re-publishes it, retained, on every connect)."""
        assert self._store is not None
        saved = self._store.load()
        if saved is None:
            return
        self.decider.restore(saved.decider)
        self._saved = self.decider.snapshot()
        if saved.last_alarm is not None:
            self.last_alarm = cast(WindowEvent, saved.last_alarm)  # checked by load()
        log.info(
            "decision state of %s restored from %s: %s (%d of the last %d windows anomalous)",
            self.name,
            self._store.path,
            saved.decider.state,
            sum(saved.decider.history),
            len(saved.decider.history),
        )

    def _save_decision(self, alarm: WindowEvent | None) -> None:
        """Persist the decision state if it changed (or a new alarm event): before the alarm
        event is emitted, so a crash in between still restores and re-publishes it."""
        if self._store is None:
            return
        snap = self.decider.snapshot()
        if alarm is None and snap == self._saved:
            return
        if alarm is not None:
            self.last_alarm = alarm
        if self._store.save(snap, self.last_alarm):
            self._saved = snap

    # --- one window (the agent's scoring worker) ---
    def process(self, w: Window, scorer: Scorer) -> None:
        """Health -> score -> decision -> events for one window of this machine."""
        self.counters["windows"] += 1
        h = assess_window(w, self.settings.health)
        if not h.ok:
            self.counters["faults"] += 1
            d = self.decider.update(None, h.faults)
            if self.history is not None:
                self.history.append(
                    w.t_start, None, float("nan"), fault=True, in_alarm=d.state == ALARM
                )
            if d.fault_changed:
                self.health(
                    w.t_start, "sensor_fault", list(h.faults), window=w.index, levels=_levels(h)
                )
            return
        ws = self._score_and_hear(w, h, scorer)
        thr = self.decider.effective_threshold(ws.threshold)
        anomalous = self.decider.is_anomalous(ws.score, ws.threshold)
        d = self.decider.update(anomalous)
        self.counters["scored"] += 1
        if self.history is not None:  # one 17-byte append: see edge_agent.runtime.history
            self.history.append(
                w.t_start, ws.score, thr, anomalous=anomalous, in_alarm=d.state == ALARM
            )
        drift = self.drift.add(ws.score, thr)
        self._recent.append((w if anomalous else None, h, anomalous))
        explanation = self._explain(scorer) if d.changed and d.state == ALARM else None
        evidence = self._keep_evidence(
            w, ws.score, thr, anomalous, d.state, d.changed, ws.model_version, explanation
        )
        if d.fault_changed:
            self.health(w.t_start, "sensor_ok", [], window=w.index, levels=_levels(h))

        def event(kind: Literal["score", "alarm"]) -> WindowEvent:
            return window_event(
                kind,
                w.t_start,
                self.device_id,
                section=self.section,
                monitor=self.name,
                window=w.index,
                score=ws.score,
                threshold=thr,
                anomalous=anomalous,
                decision=d.state,
                votes=d.votes,
                model_version=ws.model_version,
                source=w.source_info,
                drift=drift,
                evidence=evidence if kind == "alarm" else None,
                explanation=explanation if kind == "alarm" else None,
            )

        alarm = event("alarm") if d.changed else None
        self._save_decision(alarm)
        self.last_score = event("score")
        self.emit(self.last_score)
        if alarm is not None:
            if d.state == ALARM:
                self.counters["alarms"] += 1
            self._emit_alarm(alarm, evidence is not None)

    def _emit_alarm(self, alarm: WindowEvent, kept: bool) -> None:
        """The alarm event, then what goes with it over MQTT: its picture, its clip."""
        self.emit(alarm)
        if self._picture is not None and self.publish_picture is not None:
            self.publish_picture(self.name, self._picture)
        self._picture = None
        if kept and self.evidence is not None:
            self.evidence.publish_staged()  # the clip over MQTT, after its alarm

    def _score_and_hear(self, w: Window, h: HealthReport, scorer: Scorer) -> Any:
        """Score the window; with the hearing check on, summarise it from the |STFT| the
        scorer computed and report a change of what the check finds as a health event."""
        if not self.hearing.settings.enabled:
            return scorer.score(w.samples, self.section)
        if self._hearing_of is not scorer.bundle:
            self._hearing_of = scorer.bundle
            self.hearing.new_profile(scorer.bundle.profile(self.section))
        ws, feats = scorer.score_window(w.samples, self.section)
        change = self.hearing.add(
            summarise(feats.magnitude, scorer.spec, h.rms_dbfs, h.peak_dbfs, h.clipped_fraction)
        )
        if change is not None:  # the agent logs it (a mismatch as a WARNING: --quiet keeps it)
            self.health(
                w.t_start,
                change.event,
                [f.kind for f in change.findings],
                window=w.index,
                message=change.message,
                findings=[f.to_dict() for f in change.findings]
                if change.event == "hearing_mismatch"
                else None,
            )
        return ws

    def _explain(self, scorer: Scorer) -> dict[str, Any] | None:
        """Why it alarmed: the voting windows (the anomalous ones among the last n) against
        the section's audio profile; None without a profile. Only on a raise (~50 ms a
        window); a failure is logged and the alarm goes out without it (no alarm is lost).
        When the hearing check finds the audio path unlike the training audio (even before
        its ring is full), the explanation says so first (`audio_path`): an alarm through a
        resampler that cuts 6 kHz is the path's fault until shown otherwise."""
        from edge_agent.scoring.explain import explain
        from edge_agent.scoring.picture import spectrum_png
        from edge_agent.scoring.profile import detail

        profile: AudioProfile | None = scorer.bundle.profile(self.section)
        if profile is None:
            return None
        voting = [(w, h) for w, h, _ in self._recent if w is not None]
        if not voting:
            return None
        try:
            details = (
                detail(w.samples, scorer.spec, h.rms_dbfs, h.peak_dbfs, h.clipped_fraction)
                for w, h in voting
            )  # one at a time
            ex = explain(details, profile, [w.index for w, _ in voting])
            out = ex.to_dict()
            if self.publish_picture is not None and ex.shape_db is not None:
                band = ex.main.band_hz if ex.main is not None else None
                self._picture = spectrum_png(ex.shape_db, profile, band)
        except (ValueError, FloatingPointError, IndexError) as exc:
            log.error("%s: the alarm could not be explained: %s", self.name, exc)
            return None
        path = self.hearing.now()
        if path:  # the audio reaching the model is unlike the training audio: say that first
            out["audio_path"] = [f.to_dict() for f in path]
            out["sentence"] = (
                "The audio path differs from the training audio ("
                + "; ".join(f.sentence for f in path)
                + "): fix it before "
                "trusting this alarm. The windows themselves: " + out["sentence"]
            )
        return out

    def _keep_evidence(
        self,
        w: Window,
        score: float,
        thr: float,
        anomalous: bool,
        state: str,
        changed: bool,
        model_version: str,
        explanation: dict[str, Any] | None = None,
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
        return self.evidence.keep(
            self.name,
            self._heard.voting(),
            w.t_start,
            model_version,
            section=self.section,
            explanation=explanation,
        )

    def window_failed(self, w: Window, msg: str) -> None:
        """Count the failure and report it as a `window_error` health event, rate-limited: the
        first error, each change of message, and at 10, 100, 1000... errors (the count), so a
        model that fails every window is visible on MQTT without an event per window."""
        self.counters["window_errors"] += 1
        n = self.counters["window_errors"]
        decade = n >= 10 and str(n).rstrip("0") == "1"
        if msg == self._last_window_error and not decade:
            log.debug("%s: window %d failed: %s", self.name, w.index, msg)
            return
        self._last_window_error = msg
        log.error("%s: window %d failed (%d so far): %s", self.name, w.index, n, msg)
        self.health(w.t_start, "window_error", ["window_error"], window=w.index, error=msg, count=n)

    def device_back(self) -> None:
        """Its device delivers again (reader thread): `device_ok`, and the decider forgets the
        faults of the windows before the loss, so a fault that persists is reported again by
        the next window (and the retained sensor state follows)."""
        self.lost = False
        self.decider.forget_faults()
        self.health(time.time(), "device_ok", [])

    def new_model(self) -> None:
        """A reloaded model's errors are news again."""
        self._last_window_error = None

    def dropped(self, w: Window) -> None:
        """A live window the worker had no room for: counted at once, reported summarised
        (`DROP_REPORT_SECONDS`; `flush_drops` reports what is left)."""
        with self._drops_lock:
            self.counters["windows_dropped"] += 1
            self._drops_unreported += 1
            self._last_drop = w
            due = self._drops_reported_at is None
        if due:
            self.flush_drops(force=True)

    def flush_drops(self, force: bool = False) -> None:
        """Report the windows dropped since the last report, when there are any and
        `DROP_REPORT_SECONDS` have passed (or `force`: the first drop, the end of the run): one
        `windows_dropped` health event with `count` (dropped since the last report) and
        `dropped` (in all). The agent's main loop calls it a few times a second."""
        with self._drops_lock:
            now = time.monotonic()
            if (
                not self._drops_unreported
                or self._last_drop is None
                or (
                    not force
                    and self._drops_reported_at is not None
                    and now - self._drops_reported_at < DROP_REPORT_SECONDS
                )
            ):
                return
            n, w = self._drops_unreported, self._last_drop
            self._drops_unreported = 0
            self._drops_reported_at = now
            total = self.counters["windows_dropped"]
        self.health(
            w.t_start, "windows_dropped", ["scorer_behind"], window=w.index, dropped=total, count=n
        )

    def close(self) -> None:
        if self.history is not None:
            self.history.close()


def monitor_files(
    name: str,
    single: bool,
    outbox_path: str,
    history: HistorySettings,
    keep_history: bool,
    keep_decision: bool,
    hearing: HearingSettings | None = None,
) -> Files:
    """Where monitor `name` keeps its history and decision state (see module docstring)."""
    return Files(
        history_path(history, outbox_path, name) if keep_history else None,
        (state_path(outbox_path) if single else state_path(outbox_path, name))
        if keep_decision
        else None,
        history,
        hearing or HearingSettings(),
    )


def _levels(h: HealthReport) -> Levels:
    return {
        "rms_dbfs": round(h.rms_dbfs, 1),
        "peak_dbfs": round(h.peak_dbfs, 1),
        "clipped_fraction": h.clipped_fraction,
    }
