"""Stdout / file sink: works with no broker at all.

Default: one human-readable line per event (`2026-11-24T10:00:00.000Z fan_1 window=3
score=0.4120 thr=0.3800 ANOMALOUS state=normal`). Every line about a machine starts with the
machine (`machine`): its monitor name, with its section when the two differ (`gearbox_1
[gearbox_section_00]`), so an agent listening to four machines never prints a line that could
be any of them; lines about the agent itself (the outbox, a reload, the broker) say `agent`.
With `json_lines=True`: the same events the MQTT sink publishes, one JSON object per line
(JSONL), for piping into other tools.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from typing import Any, TextIO

from edge_agent.events import Event, FeedbackEvent, HealthEvent, event_json

SENSOR_EVENTS = ("sensor_fault", "sensor_ok", "device_ok")
"""Health events about a machine's input (printed as `<machine> sensor <event>: ...`)."""


def machine(e: Mapping[str, Any]) -> str:
    """Who an event is about, as a person reads it: the monitor's name, with its section in
    brackets when they differ; `agent` for events about the agent itself."""
    mon, sec = e.get("monitor") or e.get("section"), e.get("section")
    if not mon:
        return "agent"
    return f"{mon} [{sec}]" if sec and sec != mon else str(mon)


def _details(e: Mapping[str, Any]) -> str:
    parts = [f"{k}={e[k]}" for k in ("window", "dropped", "count") if e.get(k) is not None]
    return f" ({', '.join(parts)})" if parts else ""


def _health_text(e: HealthEvent) -> str:
    """A health event after its machine: the agent's own error, a hearing sentence, or the
    sensor faults."""
    name = e["event"]
    if "error" in e:  # window_error, reload_failed: the fault is the agent's, not the sensor's
        return f"{name}: {e['error']}{_details(e)}"
    if "message" in e:  # hearing_*: a sentence saying what to check
        return f"{name}: {e['message']}"
    faults = ",".join(e.get("faults", [])) or "ok"
    kind = "sensor " if name in SENSOR_EVENTS else ""
    return f"{kind}{name}: {faults}{_details(e)}"


def human_line(e: Event) -> str:
    """One line a person reads in a terminal or journal (`edge-agent run` without --json),
    starting with the machine it is about (`machine`)."""
    ts, who = e["ts"], machine(e)
    if e["kind"] == "score":
        flag = "ANOMALOUS" if e["anomalous"] else "normal"
        return (
            f"{ts} {who} window={e['window']} score={e['score']:.4f} "
            f"thr={e['threshold']:.4f} {flag} state={e['decision']}"
        )
    if e["kind"] == "alarm":
        what = "ALARM raised" if e["decision"] == "alarm" else "alarm cleared"
        why = e.get("explanation")
        return (
            f"{ts} {who} {what} (window={e['window']}, score={e['score']:.4f}, "
            f"votes={e['votes']})" + (f" why: {why['sentence']}" if why else "")
        )
    if e["kind"] == "health":
        return f"{ts} {who} {_health_text(e)}"
    if e["kind"] == "feedback":  # an operator's answer to an alarm
        return f"{ts} {who} {_feedback_text(e)}"
    return f"{ts} {e['kind']}: " + json.dumps(
        {k: v for k, v in e.items() if k not in ("ts", "kind")}
    )


class JsonlSink:
    """Writes one line per event to `stream` (stdout by default)."""

    def __init__(self, stream: TextIO | None = None, json_lines: bool = False) -> None:
        self.stream = stream if stream is not None else sys.stdout
        self.json_lines = json_lines

    def handle(self, event: Event) -> None:
        line = event_json(event) if self.json_lines else human_line(event)  # strict: no NaN
        self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        self.stream.flush()


def _feedback_text(e: FeedbackEvent) -> str:
    """A feedback event's line after the time and the machine: the answer, or why it was not
    applied."""
    if "error" in e:
        return f"answer not applied: {e['error']}"
    what = e["answer"] or "asked (no answer yet)"
    change = f" (bundle version {e['version_from']} -> {e['version']})" if "version" in e else ""
    return f"answer {what} to alarm {e['alarm']}{change}"
