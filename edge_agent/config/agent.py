"""edge_agent.config.agent: moved from edge_agent.config.load."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from edge_agent.config.fields import bounded, check_fields
from edge_agent.config.fleet import FleetSettings
from edge_agent.config.ids import check_monitor_name
from edge_agent.config.monitors import (
    MonitorSettings,
    check_monitors,
)
from edge_agent.config.runtime import (
    DecisionSettings,
    EvidenceSettings,
    FeedbackSettings,
    HealthSettings,
    HearingSettings,
    HistorySettings,
    TfliteSettings,
    WindowSettings,
)
from edge_agent.config.sinks import MetricsSettings, MqttSettings, OutboxSettings
from edge_agent.config.sources import SourceSettings
from edge_agent.errors import ConfigError

if TYPE_CHECKING:  # the bundle module pulls in the backend: only the caller's bundle is used
    pass


LogLevel = Literal["debug", "info", "warning", "error"]


@dataclass(frozen=True)
class LogSettings:
    json: bool = False
    """Log lines (stderr) and window lines (stdout) as JSON."""
    level: LogLevel = "info"
    """The least severe log lines written to stderr."""
    stdout: bool = True
    """One line per window on stdout (the JSONL/human sink)."""
    jsonl_file: str | None = None
    """Also append JSON lines to this file."""


@dataclass(frozen=True)
class AgentConfig:
    bundle: str = ""
    """Bundle folder (or its `current` pointer parent)."""
    section: str = ""
    """Bundle section this microphone listens to, e.g. fan_section_00."""
    source: SourceSettings = field(default_factory=SourceSettings)
    """Where the audio comes from: a microphone, replayed files or raw PCM on stdin."""
    windows: WindowSettings = field(default_factory=WindowSettings)
    """How the audio is cut into the windows the model scores."""
    decision: DecisionSettings = field(default_factory=DecisionSettings)
    """The alarm rule: k of the last n windows above the threshold, and what clears it."""
    health: HealthSettings = field(default_factory=HealthSettings)
    """The sensor checks that keep a dead, clipping or overflowing input from scoring."""
    mqtt: MqttSettings = field(default_factory=MqttSettings)
    """The broker, topics and Home Assistant discovery; no host: MQTT off."""
    outbox: OutboxSettings = field(default_factory=OutboxSettings)
    """Where alarm and health events wait for the broker (store and forward)."""
    history: HistorySettings = field(default_factory=HistorySettings)
    """Every window's score kept on disk, for `edge-agent tune` and the drift figure."""
    evidence: EvidenceSettings = field(default_factory=EvidenceSettings)
    """The audio of each alarm kept on the device; off unless a folder is set."""
    feedback: FeedbackSettings = field(default_factory=FeedbackSettings)
    """How an operator's "not a fault" answer teaches the section (bounds, reference cap)."""
    hearing: HearingSettings = field(default_factory=HearingSettings)
    """Live audio compared with the training audio: a cut band, a wrong gain, clipping."""
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    """A Prometheus textfile for node-exporter; off unless a path is set."""
    log: LogSettings = field(default_factory=LogSettings)
    """What the agent writes to stdout/stderr and to a JSON-lines file."""
    threads: int = bounded(1, ge=1, le=256)
    """TFLite interpreter threads."""
    tflite: TfliteSettings = field(default_factory=TfliteSettings)
    """Which TFLite runtime scores and with which kernels (`edge-agent check` tries them)."""
    queue_size: int = bounded(8, ge=1)
    """Windows waiting for the scorer before new ones are dropped."""
    reload_poll_seconds: float = bounded(2.0, gt=0)
    """How often to check the bundle for a new version."""
    trusted_keys: tuple[str, ...] = ()
    """Public key files; if any, only bundles they signed load."""
    monitors: tuple[MonitorSettings, ...] = ()
    """Several machines; none: the one `section` names."""
    fleet: FleetSettings = field(default_factory=FleetSettings)
    """Bundle releases over MQTT and remote commands; off by default."""

    def __post_init__(self) -> None:
        check_fields(self, "")
        check_monitors(self.monitors, self.section)
        if self.section and not self.monitors:  # it names the one machine's topics and ids
            check_monitor_name(self.section, "section")
        clip = self.evidence.mqtt_max_kilobytes * 1000
        if clip > self.outbox.max_bytes // 4:
            raise ConfigError(
                f"evidence.mqtt_max_kilobytes: {self.evidence.mqtt_max_kilobytes}"
                f" kB clips would crowd the outbox ({self.outbox.max_bytes} bytes, "
                "outbox.max_bytes): keep them under a quarter of it"
            )
        if self.fleet.enabled:
            from edge_agent.config.ids import check_device_id

            check_device_id(self.mqtt.device_id)
        if self.fleet.enabled and not self.mqtt.enabled:
            raise ConfigError("fleet.enabled: releases and commands come over MQTT; set mqtt.host")
        if self.fleet.enabled and not self.trusted_keys and not self.fleet.allow_unsigned:
            raise ConfigError(
                "fleet.enabled: a fleet installs only signed bundles; set "
                "trusted_keys (or fleet.allow_unsigned: true on a test rig)"
            )

    @property
    def state_folder(self) -> Path:
        """Where the agent keeps its state: the outbox's folder (decisions, score histories,
        the fleet's records, this device's signing key; /var/lib/edge-agent under systemd)."""
        return Path(self.outbox.path).absolute().parent

    def monitor_list(self) -> tuple[MonitorSettings, ...]:
        """The machines this agent listens to: `monitors`, or the one that the top-level
        `section`, `source`, `decision` and `health` describe (named after its section)."""
        if self.monitors:
            return self.monitors
        return (
            MonitorSettings(self.section, self.section, self.source, self.decision, self.health),
        )
