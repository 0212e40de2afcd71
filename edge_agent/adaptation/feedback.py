"""The operator's answer to an alarm: "not a fault" teaches the section, "confirmed" labels it.

Why: an alarm is a question to the plant ("this sounds unlike normal: is it a fault?"), and the
answer is the most valuable data a deployment produces. "Not a fault" means the voting windows
are normal sound of this machine that its section did not know (a new load, a forklift by the
wall): their embeddings join the section's target references and the threshold is re-derived
(`service.teach`, `sections.taught_section`), so the same sound stops alarming, with the
same record, rollback, signed origin and device seal as a calibration. "Confirmed" changes
nothing on the device; the clip is kept labelled. Both answers are written into the alarm
clip's sidecar (`answer`), and the answered clips are a labelled data set
(`edge_agent.adaptation.labelled`, `edge-agent evidence export --dcase`) for the next model.

Where answers come from, and why one function applies them all: the agent takes them from
MQTT (Home Assistant's buttons and select, `<prefix>/<device>/<monitor>/feedback/set`) on its
`AnswerDesk` thread; `edge-agent feedback` applies them itself, whether or not the agent runs.
Both go through `apply_answer` on the same two files: the evidence folder (the sidecar) and the
bundle (a new version). A running agent then needs no message from the command: it reloads the
new version as it reloads a calibration (its bundle poll), and its `AnswerDesk.poll` sees the
sidecar's answer to its latest alarm and publishes it (`<monitor>/feedback`), so Home Assistant
shows a command line's answer too. No broker is needed for the command, and an answer given
while the agent is stopped is there when it starts. Two answers at once (the command and a
button press) are serialised by a lock file in the evidence folder, so neither version is
written from a stale parent.

Answering again: the same answer twice does nothing (a button pressed twice); "confirmed" after
"not a fault" rolls the teaching back if its version is still current (else it is refused:
a later version was built on it; roll back or recalibrate by hand); "not a fault" after
"confirmed" teaches.

Which alarm: the one named (its clip's file name), or the machine's latest alarm clip.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

from edge_agent.adaptation import service
from edge_agent.audio.dcase import Label
from edge_agent.bundle.layout import current_version
from edge_agent.errors import EdgeAgentError, FieldError
from edge_agent.events import FeedbackAnswer, FeedbackEvent, feedback_event, iso
from edge_agent.runtime.evidence import (
    ClipInfo,
    EvidenceError,
    list_clips,
    read_clip,
    voting_windows,
    write_sidecar,
)

log = logging.getLogger("edge_agent")

Answer = FeedbackAnswer
ANSWERS: tuple[Answer, ...] = ("not_a_fault", "confirmed")
LABELS: Mapping[Answer, Label] = {"not_a_fault": "normal", "confirmed": "anomaly"}
By = Literal["cli", "mqtt"]
DEFAULT_TEACH = service.Teach()
LOCK_NAME = ".answers.lock"
LOCK_TIMEOUT = 120.0
"""Seconds an answer waits for another one to finish (an answer embeds a few windows and
refits one section: seconds on a Pi)."""

_SPELLINGS: Mapping[str, Answer] = {
    "not_a_fault": "not_a_fault",
    "not-a-fault": "not_a_fault",
    "not a fault": "not_a_fault",
    "confirmed": "confirmed",
    "confirmed fault": "confirmed",
    "confirmed_fault": "confirmed",
    "confirmed-fault": "confirmed",
}


class FeedbackError(EdgeAgentError):
    """An answer cannot be applied (no such alarm, a malformed message, a version since)."""


def parse_answer(text: str) -> Answer:
    """`not_a_fault` or `confirmed` from what a person or Home Assistant sends (`not-a-fault`,
    `Not a fault`, `Confirmed fault`, ...); FieldError("answer") otherwise."""
    a = _SPELLINGS.get(" ".join(text.strip().lower().split()))
    if a is None:
        raise FieldError("answer", f"expected not_a_fault or confirmed, got {text[:40]!r}")
    return a


def parse_message(payload: bytes) -> tuple[Answer, str | None]:
    """(answer, alarm clip or None: the latest) of a `feedback/set` message: a plain answer
    (`not_a_fault`, what Home Assistant's buttons send) or JSON `{"answer": ..., "alarm":
    "<clip file>"}`. FeedbackError naming what is wrong."""
    try:
        text = payload.decode()
    except UnicodeDecodeError:
        raise FeedbackError("feedback/set: expected UTF-8 text") from None
    if text.lstrip().startswith("{"):
        try:
            obj = json.loads(text)
        except ValueError as exc:
            raise FeedbackError(f"feedback/set: invalid JSON ({exc})") from None
        if not isinstance(obj, dict) or not isinstance(obj.get("answer"), str):
            raise FeedbackError(
                'feedback/set: expected {"answer": "not_a_fault" or '
                '"confirmed", "alarm": "<clip file>" (optional)}'
            )
        alarm = obj.get("alarm")
        if alarm is not None and not isinstance(alarm, str):
            raise FeedbackError("feedback/set: alarm: expected a clip's file name")
        return _answer(obj["answer"]), alarm
    return _answer(text), None


def _answer(text: str) -> Answer:
    try:
        return parse_answer(text)
    except FieldError as exc:
        raise FeedbackError(f"feedback/set: {exc.reason}") from None


def find_clip(folder: str | Path, monitor: str | None = None, alarm: str | None = None) -> ClipInfo:
    """The alarm clip an answer is about: `alarm` (a clip's file name, with or without its
    suffix, in `folder`), else `monitor`'s latest. FeedbackError naming the folder otherwise."""
    d = Path(folder)
    if not d.is_dir():
        raise FeedbackError(f"{d}: no such evidence folder (no alarm kept yet?)")
    if alarm is not None:
        name = Path(alarm).name
        if name != alarm.strip() or name.startswith("."):
            raise FeedbackError(f"alarm: expected a clip's file name in {d}, got {alarm!r}")
        hits = [c for c in list_clips(d) if name in (c.path.name, c.path.stem)]
        if not hits:
            raise FeedbackError(f"{d}: no alarm clip {name!r} (see edge-agent evidence list)")
        clip = hits[0]
        if monitor is not None and clip.monitor != monitor:
            raise FeedbackError(f"{clip.path.name}: an alarm of {clip.monitor}, not of {monitor}")
        return clip
    mine = [c for c in list_clips(d) if monitor is None or c.monitor == monitor]
    if not mine:
        which = f" of {monitor}" if monitor else ""
        raise FeedbackError(
            f"{d}: no alarm clip{which} kept (answers need the alarm's evidence clip)"
        )
    if monitor is None and len({c.monitor for c in mine}) > 1:
        raise FeedbackError(
            f"{d}: clips of several machines "
            f"({', '.join(sorted({c.monitor for c in mine}))}); name the "
            "monitor or the alarm"
        )
    return mine[-1]


@contextlib.contextmanager
def answer_lock(folder: str | Path, timeout: float = LOCK_TIMEOUT) -> Iterator[None]:
    """Hold the evidence folder's answer lock (an flock on `.answers.lock`): one answer at a
    time, from any process; FeedbackError after `timeout` s of waiting."""
    path = Path(folder) / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
    except OSError as exc:
        raise FeedbackError(f"{path}: cannot open the answer lock: {exc.strerror}") from None
    try:
        end = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise
                if time.monotonic() >= end:
                    raise FeedbackError(
                        f"{path}: another answer is still being applied "
                        f"after {timeout:g} s; try again"
                    ) from None
                time.sleep(0.1)
        yield
    finally:
        os.close(fd)  # releases the lock


@dataclass(frozen=True)
class Outcome:
    """What an answer did: the clip (with its sidecar as written now), the answer, the version
    a "not a fault" wrote, the rollback a changed mind did, or nothing (`repeated`)."""

    clip: ClipInfo
    answer: Answer
    change: service.Change | None = None
    rolled_back: tuple[int, int] | None = None
    repeated: bool = False

    @property
    def record(self) -> dict[str, Any]:
        rec = self.clip.answer
        assert rec is not None
        return rec

    def summary(self) -> str:
        """One line for the command and the log."""
        name, m = self.clip.path.name, self.clip.monitor
        if self.repeated:
            return f"{m}: alarm {name} was already answered {self.answer}; nothing changed"
        if self.change is not None:
            r = self.change.record
            dropped = (
                f", {r['references_dropped']} oldest dropped (max_references {r['max_references']})"
                if r["references_dropped"]
                else ""
            )
            return (
                f"{m}: alarm {name} answered not a fault: {r['references_added']} "
                f"window(s) added to {self.change.section}'s normal references "
                f"({r['target_references']} target references{dropped}); threshold "
                f"{self.change.old_threshold:.5f} -> {self.change.new_threshold:.5f}; "
                f"bundle version {self.change.version_from} -> {self.change.version}"
            )
        undone = (
            f"; its teaching undone: bundle version {self.rolled_back[0]} -> {self.rolled_back[1]}"
            if self.rolled_back
            else ""
        )
        return (
            f"{m}: alarm {name} labelled a confirmed fault, kept for the labelled data set "
            f"(edge-agent evidence export --dcase){undone}"
        )


def apply_answer(
    root: str | Path | None,
    clip: ClipInfo,
    answer: Answer,
    trust: service.Trust,
    how: service.Teach = DEFAULT_TEACH,
    by: By = "cli",
    threads: int = 1,
    now: float | None = None,
) -> Outcome:
    """Apply `answer` to the alarm `clip` (see the module docstring), under the answer lock;
    the sidecar is read again inside it, so a concurrent answer is seen."""
    with answer_lock(clip.path.parent):
        clip = read_clip(clip.path)
        before = clip.answer
        if before is not None and before.get("answer") == answer:
            return Outcome(clip, answer, repeated=True)
        epoch = time.time() if now is None else now
        rec: dict[str, Any] = {
            "answer": answer,
            "label": LABELS[answer],
            "by": by,
            "ts": iso(epoch),
            "epoch": round(epoch, 3),
        }
        change, rolled = None, None
        if answer == "not_a_fault":
            change = _teach(root, clip, trust, how, by, threads)
            rec.update(
                version=change.version,
                version_from=change.version_from,
                old_threshold=round(change.old_threshold or 0.0, 6),
                new_threshold=round(change.new_threshold, 6),
                references_added=change.record["references_added"],
                references_dropped=change.record["references_dropped"],
            )
        elif before is not None and before.get("answer") == "not_a_fault":
            rolled = _untaught(root, clip, before, trust)
            rec["rolled_back"] = {"from": rolled[0], "to": rolled[1]}
        if before is not None:
            rec["previous"] = {k: v for k, v in before.items() if k != "previous"}
        clip = write_sidecar(clip, {**clip.meta, "answer": rec})
        return Outcome(clip, answer, change, rolled)


def _bundle(root: str | Path | None, why: str) -> Path:
    if not root:
        raise FieldError("bundle", f"required: {why}")
    return Path(root)


def _teach(
    root: str | Path | None,
    clip: ClipInfo,
    trust: service.Trust,
    how: service.Teach,
    by: By,
    threads: int,
) -> service.Change:
    section = str(clip.meta.get("section") or "")
    scorer = service.open_scorer(
        _bundle(root, 'a "not a fault" writes a bundle version'), trust, threads
    )
    scorer.bundle.backend(section)  # an unknown section fails before the clip is decoded
    windows, rate = voting_windows(clip)
    spec = scorer.spec
    if rate != spec.sample_rate or windows[0].size != spec.clip_samples:
        raise FeedbackError(
            f"{clip.path.name}: windows of {windows[0].size} samples at {rate} Hz, the bundle "
            f"scores {spec.clip_samples} at {spec.sample_rate} Hz (a model of another clip "
            "length since the alarm); label it confirmed or calibrate instead"
        )
    origin = {
        "alarm": clip.path.name,
        "alarm_ts": clip.meta.get("alarm_ts"),
        "by": by,
        "monitor": clip.monitor,
        "alarm_model_version": clip.meta.get("model_version"),
    }
    return service.teach(scorer, section, windows, trust, how, origin=origin)


def _untaught(
    root: str | Path | None, clip: ClipInfo, before: Mapping[str, Any], trust: service.Trust
) -> tuple[int, int]:
    """Undo a "not a fault" (its version must still be current: nothing built on it)."""
    root = _bundle(root, f"{clip.path.name} was answered not a fault, whose version is undone")
    version, cur = before.get("version"), current_version(root)
    if version != cur:
        raise FeedbackError(
            f"{clip.path.name}: answered not a fault into bundle version {version}, and "
            f"version {cur} is current now (built on it); roll back by hand (edge-agent "
            "calibrate --rollback) or calibrate again, then answer confirmed"
        )
    return service.undo(root, trust)


def answer_event(clip: ClipInfo, device_id: str, now: float | None = None) -> FeedbackEvent:
    """The `feedback` event of the clip's current answer (unanswered: `answer` null)."""
    rec = clip.answer
    return feedback_event(
        time.time() if now is None else now,
        device_id,
        monitor=clip.monitor,
        section=str(clip.meta.get("section") or clip.monitor),
        alarm=clip.path.name,
        answer=None if rec is None else cast(Answer, rec.get("answer")),
        record=rec,
    )


# ---------------------------------------------------------------- the agent's side


class AnswerDesk:
    """The agent's answers: messages from MQTT applied one at a time on a thread of its own
    (`submit` never blocks: it is called on paho's network thread), the result emitted as a
    `feedback` event; and `poll` (the agent's main loop) publishes answers a command gave to
    a machine's latest alarm. Every wait is bounded: a full queue refuses the message (and
    says so), `close` waits at most `timeout`."""

    QUEUE_SIZE = 8

    def __init__(
        self,
        root: str | Path,
        folder: str | Path,
        monitors: Mapping[str, str],
        device_id: str,
        trust: Callable[[], service.Trust],
        how: service.Teach,
        emit: Callable[[FeedbackEvent], None],
        threads: int = 1,
    ) -> None:
        self.root, self.folder = Path(root), Path(folder)
        self.monitors = dict(monitors)  # name -> section
        self.device_id = device_id
        self.trust, self.how, self.emit, self.threads = trust, how, emit, threads
        self._jobs: queue.Queue[tuple[str, bytes] | None] = queue.Queue(self.QUEUE_SIZE)
        self._refused: queue.SimpleQueue[tuple[str, str]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._latest: dict[str, str] = {}  # monitor -> its latest alarm clip's file name
        self._seen: dict[str, tuple[int, str | None]] = {}  # monitor -> (sidecar mtime, ts)
        self.applied = 0
        self._thread = threading.Thread(target=self._work, name="answers", daemon=True)

    def start(self) -> None:
        """Learn each machine's latest alarm clip (its answer is taken as published), then take
        messages."""
        with contextlib.suppress(OSError, EvidenceError):
            for c in list_clips(self.folder) if self.folder.is_dir() else []:
                if c.monitor in self.monitors:
                    self._latest[c.monitor] = c.path.name
                    rec = c.answer
                    self._seen[c.monitor] = (
                        _mtime(c.sidecar),
                        None if rec is None else str(rec.get("ts")),
                    )
        self._thread.start()

    # --- paho's network thread
    def submit(self, monitor: str, payload: bytes) -> None:
        """Queue a `feedback/set` message of `monitor`; never blocks, never raises."""
        try:
            self._jobs.put_nowait((monitor, bytes(payload)))
        except queue.Full:
            self._refused.put(
                (
                    monitor,
                    (
                        f"{self.QUEUE_SIZE} answers already wait; this one "
                        "was not applied, send it again"
                    ),
                )
            )

    # --- the agent's emit (any thread)
    def track(self, monitor: str, clip_file: str) -> None:
        """`monitor` raised an alarm with this clip: the answers without a clip name are now
        about it."""
        with self._lock:
            self._latest[monitor] = clip_file
            self._seen[monitor] = (0, None)

    # --- the main loop
    def poll(self) -> None:
        """Refusals from `submit` as events, and answers given by a command to a machine's
        latest alarm (its sidecar changed and holds an answer not yet published)."""
        while True:
            try:
                monitor, msg = self._refused.get_nowait()
            except queue.Empty:
                break
            self._error(monitor, None, msg)
        with self._lock:
            latest = dict(self._latest)
        for monitor, name in latest.items():
            side = (self.folder / name).with_suffix(".json")
            mtime = _mtime(side)
            with self._lock:
                seen_mtime, seen_ts = self._seen.get(monitor, (0, None))
            if mtime == seen_mtime:
                continue
            try:
                clip = read_clip(self.folder / name)
            except EvidenceError:
                continue  # not written yet, or deleted by retention
            rec = clip.answer
            ts = None if rec is None else str(rec.get("ts"))
            with self._lock:
                self._seen[monitor] = (mtime, ts)
            if ts is not None and ts != seen_ts:
                self.emit(answer_event(clip, self.device_id))

    # --- the desk's thread
    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            monitor, payload = job
            try:
                self._apply(monitor, payload)
            except Exception as exc:  # any failure is the answer's, never the agent's
                self._error(monitor, None, " ".join(str(exc).split()) or type(exc).__name__)

    def _apply(self, monitor: str, payload: bytes) -> None:
        alarm: str | None = None
        try:
            answer, alarm = parse_message(payload)
            with self._lock:
                latest = self._latest.get(monitor)
            clip = find_clip(self.folder, monitor, alarm or latest)
            out = apply_answer(
                self.root, clip, answer, self.trust(), self.how, "mqtt", self.threads
            )
        except EdgeAgentError as exc:
            self._error(monitor, alarm, str(exc))
            return
        log.info("answer: %s", out.summary())
        if not out.repeated:
            self.applied += 1
        with self._lock:
            if self._latest.get(monitor) == out.clip.path.name:
                self._seen[monitor] = (_mtime(out.clip.sidecar), str(out.record.get("ts")))
        self.emit(answer_event(out.clip, self.device_id))

    def _error(self, monitor: str, alarm: str | None, msg: str) -> None:
        log.warning("answer for %s not applied: %s", monitor, msg)
        self.emit(
            feedback_event(
                time.time(),
                self.device_id,
                monitor=monitor,
                section=self.monitors.get(monitor, monitor),
                alarm=alarm,
                answer=None,
                error=msg,
            )
        )

    def close(self, timeout: float = 60.0) -> None:
        """Finish the answer being applied (and those queued) within `timeout` s."""
        if not self._thread.is_alive():
            return
        with contextlib.suppress(queue.Full):
            self._jobs.put(None, timeout=timeout)
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("answers: still applying one after %g s; left to finish alone", timeout)


def _mtime(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return 0


def labelled(clips: Sequence[ClipInfo]) -> list[ClipInfo]:
    """The answered clips of `clips`, in order."""
    return [c for c in clips if c.answer is not None and c.answer.get("answer") in ANSWERS]
