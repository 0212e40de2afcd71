"""Stdout / file sink: works with no broker at all.

Default: one human-readable line per event (`2026-11-24T10:00:00.000Z fan_section_00 window=3
score=0.4120 thr=0.3800 ANOMALOUS state=normal`). With `json_lines=True`: the same events the
MQTT sink publishes, one JSON object per line (JSONL), for piping into other tools.
"""

from __future__ import annotations

import json
import sys
from typing import TextIO

from edge_agent.events import Event, event_json


def human_line(e: Event) -> str:
    """One line a person reads in a terminal or journal (`edge-agent run` without --json)."""
    ts = e["ts"]
    if e["kind"] == "score":
        flag = "ANOMALOUS" if e["anomalous"] else "normal"
        return (
            f"{ts} {e['section']} window={e['window']} score={e['score']:.4f} "
            f"thr={e['threshold']:.4f} {flag} state={e['decision']}"
        )
    if e["kind"] == "alarm":
        return f"{ts} {e['section']} ALARM {e['decision'].upper()} " + (
            f"(score={e['score']:.4f}, votes={e['votes']})"
        )
    if e["kind"] == "health":
        if "error" in e:  # window_error, reload_failed: the fault is the agent's, not the sensor's
            return f"{ts} {e['event']}: {e['error']} (window={e.get('window')})"
        faults = ",".join(e.get("faults", [])) or "ok"
        return f"{ts} sensor {e['event']}: {faults} (window={e.get('window')})"
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
