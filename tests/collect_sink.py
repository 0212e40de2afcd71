"""A sink that keeps every event the real agent emits, for tests to read back."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class Collect:
    """`Agent(cfg, sinks=[Collect()])`: events in order, as plain dicts."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.closed = False

    def handle(self, event: Mapping[str, Any]) -> None:
        self.events.append(dict(event))

    def close(self) -> None:
        self.closed = True

    def kind(self, k: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["kind"] == k]

    def scores(self) -> list[dict[str, Any]]:
        return self.kind("score")
