"""The agent's own health as a state (`<prefix>/<device>/state`, retained): is it fine now?

Why a state beside the `health` topic: `health` carries events (a window dropped at 10:02, a
reload refused at 10:05); Home Assistant, a dashboard or an operator asks what holds NOW, and
a retained state answers whoever subscribes later. The agent's device in Home Assistant shows
it as its "Health" entity (`edge_agent.sinks.ha`), its attributes say which problem and why.

What counts (the machines' own input faults are theirs: each machine's `sensor` state):
* conditions with an end: a refused model version (`reload_failed`) until a reload succeeds,
  the outbox's disk refusing writes (`outbox_disk_full`) until `outbox_disk_ok`, the broker
  refusing the agent (`mqtt_auth_failed` / `mqtt_tls_failed`) until `mqtt_ok`;
* incidents without an end event (windows dropped because the scorer fell behind, a window
  that failed, an alarm clip not stored, outbox rows dropped or set aside, a damaged outbox
  replaced, its sender restarted): reported until `HOLD_SECONDS` pass without a new one, checked
  at each scored window, so the state clears by itself once the agent runs cleanly again and
  does not flicker while a problem recurs every few minutes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from edge_agent.events import SCHEMA_VERSION, Event, iso

ENDED_BY = {
    "reload_failed": "reloaded",
    "outbox_disk_full": "outbox_disk_ok",
    "mqtt_auth_failed": "mqtt_ok",
    "mqtt_tls_failed": "mqtt_ok",
}
"""Conditions and the event that ends them (`reloaded` is a status event, the others health)."""

INCIDENTS = frozenset(
    {
        "windows_dropped",
        "window_error",
        "evidence_skipped",
        "outbox_full",
        "outbox_quarantined",
        "outbox_replaced",
        "outbox_sender_restarted",
    }
)
"""Health events that are the agent's problem but have no end event."""

HOLD_SECONDS = 600.0
"""An incident stays in the state this long after its last occurrence."""


class AgentState:
    """The state's payload, updated from the agent's events (`update` says whether it changed)."""

    def __init__(self, device_id: str, model_version: str, now: float) -> None:
        self.device_id = device_id
        self.model_version = model_version
        self.epoch = now
        self.problems: dict[str, dict[str, Any]] = {}  # fault -> since, last, detail

    def update(self, event: Event) -> bool:
        """Take one event; True when the state changed (publish it again)."""
        now = float(event["epoch"])
        if event["kind"] == "status":
            if event["event"] != "reloaded":
                return False
            self.model_version = str(event.get("model_version", self.model_version))
            self.problems.pop("reload_failed", None)
            return self._changed(now)
        if event["kind"] == "score":
            stale = [
                k
                for k, p in self.problems.items()
                if k in INCIDENTS and now - p["last_epoch"] >= HOLD_SECONDS
            ]
            for k in stale:
                del self.problems[k]
            return bool(stale) and self._changed(now)
        if event["kind"] != "health":
            return False
        name = event["event"]
        ended = [k for k, end in ENDED_BY.items() if end == name and k in self.problems]
        for k in ended:
            del self.problems[k]
        if name in ENDED_BY or name in INCIDENTS:
            old = self.problems.get(name)
            raw: Mapping[str, Any] = event
            detail = {k: raw[k] for k in ("monitor", "error", "dropped", "count") if k in raw}
            self.problems[name] = {
                "since": old["since"] if old else iso(now),
                "last": iso(now),
                "last_epoch": round(now, 3),
                **detail,
            }
            return self._changed(now)
        return bool(ended) and self._changed(now)

    def _changed(self, now: float) -> bool:
        self.epoch = now
        return True

    def payload(self) -> dict[str, Any]:
        """The retained JSON: `faults` (names; empty = fine) and each one's `problems` entry
        (`since`, `last`, and what the event said: `monitor`, `error`, `dropped`, `count`)."""
        return {
            "schema": SCHEMA_VERSION,
            "ts": iso(self.epoch),
            "epoch": round(self.epoch, 3),
            "device_id": self.device_id,
            "model_version": self.model_version,
            "faults": sorted(self.problems),
            "problems": {
                k: {f: v for f, v in p.items() if f != "last_epoch"}
                for k, p in sorted(self.problems.items())
            },
        }
