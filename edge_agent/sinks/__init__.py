"""Where events go: stdout/JSONL (no broker needed) and MQTT with a durable outbox.

A sink is anything with `handle(event)` and `close()`; the agent hands every sink every event
(`edge_agent.events`) and one failing sink never stops the others.
"""

from __future__ import annotations

from typing import Protocol

from edge_agent.events import Event


class Sink(Protocol):
    def handle(self, event: Event) -> None: ...
    def close(self) -> None: ...
