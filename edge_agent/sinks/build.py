"""The sinks a config asks for, built in one place.

Why here and not in the agent: the agent hands every event to every sink and must not care
which ones exist. Two sinks have duties beyond `handle(event)`, and the agent reaches them
through `Sinks` by role: `mqtt` (the retained alarm state at start, broker and outbox notices,
evidence clips, settling the outbox at the end) and `metrics` (a tick while nothing happens).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from edge_agent.config.agent import AgentConfig
from edge_agent.config.monitors import MonitorSettings
from edge_agent.private import open_private
from edge_agent.sinks import Sink
from edge_agent.sinks.ha import Machine
from edge_agent.sinks.jsonl import JsonlSink
from edge_agent.sinks.mqtt import MqttSink
from edge_agent.sinks.outbox import Outbox
from edge_agent.sinks.prometheus import PrometheusSink


@dataclass
class Sinks:
    """Every sink (`all`, in the order events reach them), and the two with duties of their
    own, when configured."""

    all: list[Sink] = field(default_factory=list)
    mqtt: MqttSink | None = None
    metrics: PrometheusSink | None = None

    @property
    def outbox_depth(self) -> int:
        """Events waiting for the broker (0 without MQTT)."""
        return len(self.mqtt.outbox) if self.mqtt is not None else 0


def features(cfg: AgentConfig) -> frozenset[str]:
    """What this agent has, for the Home Assistant entities that need it
    (`edge_agent.sinks.ha.Entity.needs`): `evidence` (alarm clips kept), `answers` (it takes
    operators' answers over MQTT: `feedback.mqtt`, which needs the clips)."""
    out = set()
    if cfg.evidence.enabled:
        out.add("evidence")
        if cfg.feedback.mqtt:
            out.add("answers")
    return frozenset(out)


def build(
    cfg: AgentConfig,
    monitors: Sequence[MonitorSettings],
    model_version: str,
    outbox_depth: Callable[[], int],
) -> Sinks:
    """The config's sinks: stdout (human or JSON lines), a JSON-lines file (0600), MQTT with
    its outbox (`mqtt.host` set), the Prometheus textfile (`metrics.textfile` set).
    `outbox_depth`: asked by the metrics at each write."""
    out = Sinks()
    if cfg.log.stdout:
        out.all.append(JsonlSink(sys.stdout, cfg.log.json))
    if cfg.log.jsonl_file:  # the files the agent keeps are 0600 (edge_agent.private)
        out.all.append(JsonlSink(open_private(cfg.log.jsonl_file, "a"), True))
    if cfg.mqtt.enabled:
        out.mqtt = MqttSink(
            cfg.mqtt,
            Outbox(cfg.outbox),
            [Machine(m.name, m.section) for m in monitors],
            model_version,
            ha_devices=bool(cfg.monitors),
            features=features(cfg),
        )
        out.all.append(out.mqtt)
    if cfg.metrics.textfile:  # dashboards: node-exporter's textfile collector
        out.metrics = PrometheusSink(cfg.metrics, cfg.mqtt.device_id, outbox_depth=outbox_depth)
        out.all.append(out.metrics)
    return out
