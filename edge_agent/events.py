"""The events the agent emits: one typed schema that every sink and every consumer reads.

Every event carries `schema` (`SCHEMA_VERSION`), `kind`, `ts` (ISO 8601 UTC), `epoch` and
`device_id`, then the fields of its kind:

* `score` / `alarm` (`WindowEvent`): one scored window of one monitor (`section` scores it,
  `monitor` names the machine: the section itself for a single-machine agent); an `alarm`
  event is sent when the alarm state changes (raised or cleared) and repeats the window's
  fields; optional `drift` (the median of the last `history.drift_windows` scores minus the
  threshold, `edge_agent.runtime.history`) once that many scores are known; an `alarm` that raised
  the alarm carries `evidence` (`EvidenceRef`: the stored clip of the voting windows,
  `edge_agent.runtime.evidence`) when the agent keeps evidence and the clip could be stored;
* `health` (`HealthEvent`): a sensor fault starts or ends (`sensor_fault`, `sensor_ok`,
  `device_ok`), windows were dropped (`windows_dropped`), the outbox dropped rows
  (`outbox_full`), a window could not be processed (`window_error`: the first error and each
  change of message, with `error` and the running `count`), a new bundle version was refused
  and the running one kept (`reload_failed`, with `error`), the MQTT broker refuses the agent
  (`mqtt_auth_failed`: login refused; `mqtt_tls_failed`: certificate / handshake; with `error`;
  the agent keeps scoring and retrying) and accepts it again (`mqtt_ok`), an alarm clip was
  not stored (`evidence_skipped`, with `error`: low disk space, a write error); the outbox
  (`edge_agent.sinks.outbox`, each with a one-line `error`): dropped rows when full
  (`outbox_full`, with the running `dropped`), its disk refuses writes (`outbox_disk_full`:
  events are kept in memory and sent directly) and takes them again (`outbox_disk_ok`), a row
  that cannot be sent was set aside (`outbox_quarantined`, with the running `count`), a damaged
  or foreign outbox file was moved aside (`outbox_replaced`), the sender thread failed and was
  restarted (`outbox_sender_restarted`);
* `status` (`StatusEvent`): a bundle was reloaded, or the agent stopped (with its counters);
* `feedback` (`FeedbackEvent`): an operator answered an alarm (`edge_agent.adaptation.feedback`:
  "not a fault", with the bundle version it wrote and the threshold before and after, or
  "confirmed"), or an answer could not be applied (`error`); `answer` null with no `error`:
  the machine's latest alarm waits for an answer.

MQTT publishes them as JSON (docs/mqtt.md), `--json` prints them as JSON lines, so a change
here is a change of the public format: bump `SCHEMA_VERSION` when a field changes meaning or
disappears. Builders below fix the key order, so the JSON reads the same every time.
`event_json` is the one serialiser the sinks use: strict JSON (no NaN / Infinity).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal, NotRequired, TypedDict

from edge_agent.jsonsafe import dumps

SCHEMA_VERSION = 1

HealthEventName = Literal[
    "sensor_fault",
    "sensor_ok",
    "device_ok",
    "windows_dropped",
    "outbox_full",
    "window_error",
    "reload_failed",
    "mqtt_auth_failed",
    "mqtt_tls_failed",
    "mqtt_ok",
    "evidence_skipped",
    "outbox_disk_full",
    "outbox_disk_ok",
    "outbox_quarantined",
    "outbox_replaced",
    "outbox_sender_restarted",
    "hearing_mismatch",
    "hearing_ok",
    "hearing_unchecked",
]
StatusEventName = Literal["reloaded", "stopped"]


class _Header(TypedDict):
    schema: int
    ts: str
    epoch: float
    device_id: str


class EvidenceRef(TypedDict):
    """The alarm clip an `alarm` event refers to (`edge_agent.runtime.evidence`): its file name in
    `evidence.folder`, the sha256 of the file's bytes, its size, the time span (epoch seconds,
    first voting window's start to last one's end) and the voting windows' indices."""

    file: str
    sha256: str
    bytes: int
    t_start: float
    t_end: float
    windows: list[int]


class WindowEvent(_Header):
    """`score` for every scored window, `alarm` when the window changed the alarm state."""

    kind: Literal["score", "alarm"]
    section: str
    monitor: str  # the machine (edge_agent.config.monitors): its topics, history, HA device
    window: int
    score: float
    threshold: float  # the threshold in force (the config's override, else the bundle's)
    anomalous: bool  # score > threshold
    decision: AlarmState  # alarm state after this window
    votes: int  # anomalous windows among the last n scored ones
    model_version: str
    source: str  # the file being replayed, the device, "stdin"
    # median of the last M scores - threshold (edge_agent.runtime.history)
    drift: NotRequired[float]
    evidence: NotRequired[EvidenceRef]  # alarm raised with evidence kept: the stored clip
    # alarm raised: why, from the voting windows against the section's audio profile
    # (edge_agent.scoring.explain.Explanation.to_dict: kind, sentence, band_hz, db, ...)
    explanation: NotRequired[dict[str, Any]]


class _HealthRequired(_Header):
    kind: Literal["health"]
    event: HealthEventName


class HealthEvent(_HealthRequired, total=False):
    """A sensor fault started or ended, audio / outbox rows were dropped, a window could not be
    processed, or a new bundle version was refused. `monitor` and `section` name the machine
    for what concerns one (sensor faults, its device, its windows); without them the event is
    about the agent (outbox, MQTT, a reload)."""

    monitor: str
    section: str

    window: int
    faults: list[str]  # health.Fault names, device_lost, scorer_behind, outbox_full,
    # window_error, reload_failed, mqtt_*, outbox_* (the event's own name); [] = ok
    rms_dbfs: float
    peak_dbfs: float
    clipped_fraction: float
    dropped: int
    error: str  # window_error, reload_failed, mqtt_*, evidence_skipped, outbox_*: one line
    count: int  # window_error: windows failed so far; outbox_quarantined: rows set aside
    message: str  # hearing_*: what an engineer should check, in one sentence or a few
    findings: list[dict[str, Any]]  # hearing_mismatch: edge_agent.runtime.hearing.Finding


class _StatusRequired(_Header):
    kind: Literal["status"]
    event: StatusEventName


class StatusEvent(_StatusRequired, total=False):
    """`reloaded` (with the new model_version) or `stopped` (with the agent's counters)."""

    model_version: str
    windows: int
    scored: int
    windows_dropped: int
    faults: int
    alarms: int
    reloads: int
    outbox_dropped: int
    window_errors: int
    scores_unsent: int
    monitors: dict[str, Counters]  # stopped, with several monitors: each one's counters


FeedbackAnswer = Literal["not_a_fault", "confirmed"]


class _FeedbackRequired(_Header):
    kind: Literal["feedback"]
    monitor: str
    section: str
    alarm: str | None  # the alarm's evidence clip (file name in `evidence.folder`)
    answer: FeedbackAnswer | None  # None: unanswered (or an answer that failed: `error`)


class FeedbackEvent(_FeedbackRequired, total=False):
    """An answer to an alarm, as its clip's sidecar records it (see the module docstring)."""

    label: str  # normal (not a fault) or anomaly (confirmed): the clip's label for data sets
    by: str  # mqtt (Home Assistant, any MQTT client) or cli (`edge-agent feedback`)
    answered_ts: str
    version: int  # not a fault: the bundle version written ...
    version_from: int  # ... from this one
    old_threshold: float
    new_threshold: float
    references_added: int
    references_dropped: int  # oldest target references dropped for `feedback.max_references`
    rolled_back: dict[str, int]  # confirmed after not a fault: {"from": v, "to": parent}
    error: str  # why an answer was not applied (one line)


Event = WindowEvent | HealthEvent | StatusEvent | FeedbackEvent


class Levels(TypedDict):
    """A window's levels, as `health.HealthReport` measured them."""

    rms_dbfs: float
    peak_dbfs: float
    clipped_fraction: float


class Counters(TypedDict):
    """What the agent counted; the `stopped` status event reports them."""

    windows: int
    scored: int
    windows_dropped: int
    faults: int
    alarms: int
    reloads: int
    outbox_dropped: int
    window_errors: int  # windows whose processing raised (reported as window_error health)


COUNTERS: tuple[
    Literal[
        "windows",
        "scored",
        "windows_dropped",
        "faults",
        "alarms",
        "reloads",
        "outbox_dropped",
        "window_errors",
    ],
    ...,
] = (
    "windows",
    "scored",
    "windows_dropped",
    "faults",
    "alarms",
    "reloads",
    "outbox_dropped",
    "window_errors",
)


def iso(epoch: float) -> str:
    """`2026-11-24T10:00:00.123Z`: UTC with milliseconds."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def window_event(  # noqa: PLR0913 -- one keyword-only parameter per field of the event
    kind: Literal["score", "alarm"],
    epoch: float,
    device_id: str,
    *,
    section: str,
    window: int,
    score: float,
    threshold: float,
    anomalous: bool,
    decision: AlarmState,
    votes: int,
    model_version: str,
    source: str,
    drift: float | None = None,
    evidence: EvidenceRef | None = None,
    monitor: str | None = None,
    explanation: dict[str, Any] | None = None,
) -> WindowEvent:
    """`monitor` defaults to the section (a single-machine agent's one monitor)."""
    e: WindowEvent = {
        "schema": SCHEMA_VERSION,
        "kind": kind,
        "ts": iso(epoch),
        "epoch": round(epoch, 3),
        "device_id": device_id,
        "section": section,
        "monitor": monitor or section,
        "window": window,
        "score": round(score, 6),
        "threshold": round(threshold, 6),
        "anomalous": anomalous,
        "decision": decision,
        "votes": votes,
        "model_version": model_version,
        "source": source,
    }
    if drift is not None:  # absent until the drift window is full (history.DriftTracker)
        e["drift"] = round(drift, 6)
    if evidence is not None:  # alarm raised and its clip queued (edge_agent.runtime.evidence)
        e["evidence"] = evidence
    if explanation is not None:  # alarm raised, the section has an audio profile
        e["explanation"] = explanation
    return e


def health_event(  # noqa: PLR0913 -- one keyword-only parameter per optional field
    epoch: float,
    device_id: str,
    event: HealthEventName,
    faults: Sequence[str],
    *,
    window: int | None = None,
    levels: Levels | None = None,
    dropped: int | None = None,
    error: str | None = None,
    count: int | None = None,
    monitor: str | None = None,
    section: str | None = None,
    message: str | None = None,
    findings: list[dict[str, Any]] | None = None,
) -> HealthEvent:
    e: HealthEvent = {
        "schema": SCHEMA_VERSION,
        "kind": "health",
        "ts": iso(epoch),
        "epoch": round(epoch, 3),
        "device_id": device_id,
        "event": event,
    }
    if monitor is not None:
        e["monitor"] = monitor
        e["section"] = section or monitor
    if window is not None:
        e["window"] = window
    e["faults"] = list(faults)
    if levels is not None:
        e["rms_dbfs"] = levels["rms_dbfs"]
        e["peak_dbfs"] = levels["peak_dbfs"]
        e["clipped_fraction"] = levels["clipped_fraction"]
    if dropped is not None:
        e["dropped"] = dropped
    if error is not None:
        e["error"] = error
    if count is not None:
        e["count"] = count
    if message is not None:
        e["message"] = message
    if findings is not None:
        e["findings"] = findings
    return e


def status_event(
    epoch: float,
    device_id: str,
    event: StatusEventName,
    *,
    model_version: str | None = None,
    counters: Counters | None = None,
    scores_unsent: int | None = None,
    monitors: dict[str, Counters] | None = None,
) -> StatusEvent:
    e: StatusEvent = {
        "schema": SCHEMA_VERSION,
        "kind": "status",
        "ts": iso(epoch),
        "epoch": round(epoch, 3),
        "device_id": device_id,
        "event": event,
    }
    if model_version is not None:
        e["model_version"] = model_version
    if counters is not None:
        for key in COUNTERS:
            e[key] = counters[key]
    if scores_unsent is not None:
        e["scores_unsent"] = scores_unsent
    if monitors is not None:
        e["monitors"] = {name: dict(c) for name, c in monitors.items()}  # type: ignore[misc]
    return e


_ANSWER_FIELDS = (
    "label",
    "by",
    "version",
    "version_from",
    "old_threshold",
    "new_threshold",
    "references_added",
    "references_dropped",
    "rolled_back",
)


def feedback_event(
    epoch: float,
    device_id: str,
    *,
    monitor: str,
    section: str,
    alarm: str | None,
    answer: FeedbackAnswer | None,
    record: Mapping[str, object] | None = None,
    error: str | None = None,
) -> FeedbackEvent:
    """`record`: the sidecar's `answer` (its fields are copied; `ts` becomes `answered_ts`)."""
    e: FeedbackEvent = {
        "schema": SCHEMA_VERSION,
        "kind": "feedback",
        "ts": iso(epoch),
        "epoch": round(epoch, 3),
        "device_id": device_id,
        "monitor": monitor,
        "section": section,
        "alarm": alarm,
        "answer": answer,
    }
    if record is not None:
        if "ts" in record:
            e["answered_ts"] = str(record["ts"])
        for key in _ANSWER_FIELDS:
            if key in record:
                e[key] = record[key]  # type: ignore[literal-required]
    if error is not None:
        e["error"] = error
    return e


def event_json(event: Event) -> str:
    """The event as one compact line of strict JSON (the `--json` line, the MQTT payload).

    A NaN or infinite number raises `jsonsafe.NonFiniteError` naming the event kind and the
    fields instead of writing `NaN`, which no JSON consumer accepts; the agent logs the sink's
    error and the other sinks still get the event."""
    return dumps(event, f"{event['kind']} event", separators=(",", ":"))


AlarmState = Literal["normal", "alarm"]


NORMAL: AlarmState = "normal"


ALARM: AlarmState = "alarm"
