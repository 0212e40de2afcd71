"""Stdout / file sink: works with no broker at all.

Default: one human-readable line per event (`2026-11-24T10:00:00Z fan_section_00 score=0.412
thr=0.380 ANOMALOUS state=normal`). With `json=True`: the same event dicts the MQTT sink
publishes, one JSON object per line (JSONL), for piping into other tools.
"""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO


def human_line(e: dict[str, Any]) -> str:
    kind = e.get("kind")
    ts = e.get("ts", "")
    if kind == "score":
        flag = "ANOMALOUS" if e.get("anomalous") else "normal"
        return (
            f"{ts} {e.get('section')} window={e.get('window')} score={e.get('score'):.4f} "
            f"thr={e.get('threshold'):.4f} {flag} state={e.get('decision')}"
        )
    if kind == "alarm":
        return f"{ts} {e.get('section')} ALARM {str(e.get('decision')).upper()} " + (
            f"(score={e.get('score'):.4f}, votes={e.get('votes')})"
        )
    if kind == "health":
        faults = ",".join(e.get("faults") or []) or "ok"
        return f"{ts} sensor {e.get('event', '')}: {faults} (window={e.get('window')})"
    return f"{ts} {kind}: " + json.dumps({k: v for k, v in e.items() if k not in ("ts", "kind")})


class JsonlSink:
    """Writes one line per event to `stream` (stdout by default)."""

    def __init__(self, stream: TextIO | None = None, json_lines: bool = False) -> None:
        self.stream = stream if stream is not None else sys.stdout
        self.json_lines = json_lines

    def handle(self, event: dict[str, Any]) -> None:
        line = json.dumps(event, separators=(",", ":")) if self.json_lines else human_line(event)
        self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        self.stream.flush()
