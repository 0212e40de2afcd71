"""edge_agent.config.sinks: moved from edge_agent.sinks.mqtt."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from edge_agent.config.fields import bounded, check_fields
from edge_agent.config.ids import check_id, check_prefix
from edge_agent.errors import ConfigError


@dataclass(frozen=True)
class TlsSettings:
    ca_file: str | None = None
    """CA that signed the broker certificate (None = system CAs)."""
    cert_file: str | None = None
    """Client certificate (mutual TLS)."""
    key_file: str | None = None
    """Private key of the client certificate."""
    insecure: bool = False
    """Skip hostname check (never in production)."""


@dataclass(frozen=True)
class MqttSettings:
    host: str = ""
    """Empty = MQTT off."""
    port: int = bounded(1883, ge=1, le=65535)
    """Broker port (8883 is the usual TLS port)."""
    prefix: str = "edge-asd"
    """First topic level(s); put the site here for a fleet, e.g. `listening/site-a`."""
    device_id: str = "edge-agent"
    """This device's topic level, HA node id and default client id (letters, digits, _ and -)."""
    client_id: str | None = None
    """MQTT client id; unset = `edge-agent-<device_id>` (must be unique)."""
    username: str | None = None
    """Broker user name (password from `password_env` / `password_file`)."""
    password_env: str | None = None
    """Name of the environment variable holding the password."""
    password_file: str | None = None
    """File holding the password (first line)."""
    tls: TlsSettings | None = None
    """TLS settings; unset = plain TCP (see `mqtt.tls.*`)."""
    keepalive: int = bounded(30, ge=1, le=65535)
    """Seconds between MQTT keep-alive pings; the will fires after ~1.5x."""
    reconnect_min: float = bounded(1.0, gt=0)
    """First reconnect delay after the broker is lost, seconds."""
    reconnect_max: float = bounded(2.0, gt=0)
    """Reconnect delay cap (doubling backoff) while the broker is unreachable, seconds: the backlog
    arrives at most this late after it is back."""
    refused_retry_max: float = 60.0
    """Retry delay cap, seconds, while the broker refuses login/TLS."""
    connect_timeout: float = bounded(10.0, ge=0)
    """Seconds to wait for the first connection before going on offline."""
    ha_discovery: bool = False
    """Publish Home Assistant discovery configs (retained)."""
    ha_prefix: str = "homeassistant"
    """Home Assistant discovery prefix."""
    publish_scores: bool = True
    """Publish every window's score (QoS 0); false = alarms/health only."""
    password: str | None = field(default=None, repr=False)
    """Resolved at load, never from YAML."""

    def __post_init__(self) -> None:
        check_fields(self, "mqtt")  # finite, in the `bounded` ranges; then the rules between
        # the names that become topic levels and Home Assistant ids (edge_agent.config.ids)
        check_id(self.device_id, "mqtt.device_id", "a device id")
        check_prefix(self.prefix, "mqtt.prefix")
        check_prefix(self.ha_prefix, "mqtt.ha_prefix")
        if not 0 < self.reconnect_min <= self.reconnect_max <= self.refused_retry_max:
            raise ConfigError(
                "mqtt.reconnect_min / reconnect_max / refused_retry_max: expected "
                f"0 < reconnect_min <= reconnect_max <= refused_retry_max, got {self.reconnect_min}"
                f" / {self.reconnect_max} / {self.refused_retry_max}"
            )

    @property
    def enabled(self) -> bool:
        return bool(self.host)

    def base(self) -> str:
        return f"{self.prefix}/{self.device_id}"

    def resolve_password(self) -> str | None:
        if self.password is not None:
            return self.password
        if self.password_env:
            return os.environ.get(self.password_env)
        if self.password_file:
            return Path(self.password_file).read_text().splitlines()[0].strip()
        return None


@dataclass(frozen=True)
class OutboxSettings:
    path: str = "edge-agent-outbox.sqlite"
    """SQLite file holding alarm/health events until the broker acknowledges them."""
    max_rows: int = bounded(10000, ge=1)
    """Outbox capacity in events; when full the lowest-priority oldest goes."""
    max_bytes: int = bounded(20_000_000, ge=1)
    """Outbox capacity in payload bytes."""

    def __post_init__(self) -> None:
        check_fields(self, "outbox")


@dataclass(frozen=True)
class MetricsSettings:
    """The `metrics:` section: the Prometheus textfile the agent keeps up to date.

    There is no `enabled` key: setting `textfile` turns the metrics on."""

    textfile: str | None = None
    """E.g. /var/lib/prometheus/node-exporter/edge_asd.prom; None = off."""
    interval_seconds: float = bounded(15.0, ge=1.0, le=3600.0)
    """Rewrite the file at most this often (and at stop)."""

    def __post_init__(self) -> None:
        check_fields(self, "metrics")
        if self.textfile and not self.textfile.endswith(".prom"):
            raise ConfigError(
                f"metrics.textfile: {self.textfile}: node-exporter's textfile "
                "collector reads only files named *.prom"
            )

    @property
    def enabled(self) -> bool:
        return bool(self.textfile)
