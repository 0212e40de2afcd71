"""MQTT sink (paho-mqtt 2.x): topic tree, TLS/auth, last will, HA discovery, durable alarms.

Topic tree under `<prefix>/<device_id>/` (prefix default `edge-asd`):

| topic                         | QoS | retained | payload                                   |
|-------------------------------|-----|----------|-------------------------------------------|
| `availability`                | 1   | yes      | `online` / `offline` (last will)          |
| `<section>/score`             | 0   | no       | per-window JSON (score, threshold, ...)   |
| `<section>/alarm`             | 1   | yes      | JSON on every alarm raise/clear           |
| `health`                      | 1   | no       | JSON on sensor fault start/end, drops     |

Payloads are the agent's events as JSON (`edge_agent.events`: `schema`, `ts`, `epoch`,
`device_id` and, for window events, `section`, `score`, `threshold`, `decision`, ...).

Alarm and health events go through the SQLite `Outbox`: stored before publishing, deleted on
PUBACK (`on_publish` with the mid), re-sent oldest first after a restart. Scores are QoS 0
and dropped (counted) while disconnected: they are a live view, the alarm is the record.

Home Assistant discovery (`ha_discovery: true`): per section a `binary_sensor`
(device_class `problem`, state from the alarm topic) and a score `sensor`, retained under
`homeassistant/...`, re-published whenever `homeassistant/status` becomes `online`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import ssl
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import EdgeAgentError
from ..events import Event
from .outbox import PRIORITY_ALARM, PRIORITY_HEALTH, Outbox

log = logging.getLogger("edge_agent")


class MqttError(EdgeAgentError):
    """The broker refused us (bad credentials, TLS verification) or cannot be configured."""


@dataclass(frozen=True)
class TlsSettings:
    ca_file: str | None = None  # CA that signed the broker certificate (None = system CAs)
    cert_file: str | None = None  # client certificate (mutual TLS)
    key_file: str | None = None
    insecure: bool = False  # skip hostname check (never in production)


@dataclass(frozen=True)
class MqttSettings:
    host: str = ""  # empty = MQTT off
    port: int = 1883
    prefix: str = "edge-asd"
    device_id: str = "edge-agent"
    client_id: str | None = None
    username: str | None = None
    password_env: str | None = None  # name of the environment variable holding the password
    password_file: str | None = None  # file holding the password (first line)
    tls: TlsSettings | None = None
    keepalive: int = 30
    reconnect_min: float = 1.0
    reconnect_max: float = 60.0
    connect_timeout: float = 10.0
    ha_discovery: bool = False
    ha_prefix: str = "homeassistant"
    publish_scores: bool = True
    password: str | None = field(default=None, repr=False)  # resolved at load, never from YAML

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


def topics(s: MqttSettings, section: str = "") -> dict[str, str]:
    b = s.base()
    return {
        "availability": f"{b}/availability",
        "score": f"{b}/{section}/score",
        "alarm": f"{b}/{section}/alarm",
        "health": f"{b}/health",
    }


def discovery_messages(
    s: MqttSettings, sections: list[str], model_version: str
) -> list[tuple[str, str]]:
    """(topic, JSON) retained config messages for Home Assistant."""
    node = s.device_id.replace("/", "_")
    device = {
        "identifiers": [f"edge_asd_{node}"],
        "name": f"Edge ASD {s.device_id}",
        "model": f"edge-agent ({model_version})",
        "manufacturer": "open edge ASD",
    }
    avail = topics(s)["availability"]
    out = []
    for sec in sections:
        t = topics(s, sec)
        out.append(
            (
                f"{s.ha_prefix}/binary_sensor/{node}/{sec}_alarm/config",
                json.dumps(
                    {
                        "name": f"{sec} anomaly",
                        "unique_id": f"{node}_{sec}_alarm",
                        "device_class": "problem",
                        "state_topic": t["alarm"],
                        "value_template": "{{ 'ON' if value_json.decision == 'alarm' else 'OFF' }}",
                        "availability_topic": avail,
                        "payload_available": "online",
                        "payload_not_available": "offline",
                        "device": device,
                    }
                ),
            )
        )
        out.append(
            (
                f"{s.ha_prefix}/sensor/{node}/{sec}_score/config",
                json.dumps(
                    {
                        "name": f"{sec} anomaly score",
                        "unique_id": f"{node}_{sec}_score",
                        "state_topic": t["score"],
                        "value_template": "{{ value_json.score }}",
                        "availability_topic": avail,
                        "device": device,
                    }
                ),
            )
        )
    return out


def make_client(s: MqttSettings) -> Any:
    """A configured paho client (auth, TLS, last will, backoff); not connected yet."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    c = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=s.client_id or f"edge-agent-{s.device_id}",
    )
    if s.username:
        c.username_pw_set(s.username, s.resolve_password())
    if s.tls is not None:
        try:
            c.tls_set(
                ca_certs=s.tls.ca_file,
                certfile=s.tls.cert_file,
                keyfile=s.tls.key_file,
                cert_reqs=ssl.CERT_REQUIRED,
            )
        except (OSError, ssl.SSLError) as exc:
            raise MqttError(f"mqtt.tls: cannot load certificates: {exc}") from None
        c.tls_insecure_set(s.tls.insecure)
    c.will_set(topics(s)["availability"], "offline", qos=1, retain=True)
    c.reconnect_delay_set(s.reconnect_min, s.reconnect_max)  # type: ignore[arg-type]
    return c


class MqttSink:
    """Publishes window events; alarms/health via the durable outbox (see module docstring)."""

    def __init__(
        self, settings: MqttSettings, outbox: Outbox, sections: list[str], model_version: str = ""
    ) -> None:
        self.s = settings
        self.outbox = outbox
        self.sections = list(sections)
        self.model_version = model_version
        self.client = make_client(settings)
        self.connected = threading.Event()
        self.scores_dropped = 0
        self.discovery_published = 0
        self._fatal: str | None = None
        self._acks: queue.Queue[int] = queue.Queue()
        self._inflight: dict[int, int] = {}  # mid -> outbox row id
        self._last_sent = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._first = threading.Event()
        self._thread = threading.Thread(target=self._flusher, name="mqtt-outbox", daemon=True)
        c = self.client
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_publish = self._on_publish
        c.on_message = self._on_message

    # --- paho callbacks (network thread: never block, never touch SQLite) ---
    def _on_connect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        if rc.is_failure:
            self._fatal = f"mqtt: broker {self.s.host}:{self.s.port} refused the connection: {rc}"
            self._first.set()
            return
        client.publish(topics(self.s)["availability"], "online", qos=1, retain=True)
        if self.s.ha_discovery:
            client.subscribe(f"{self.s.ha_prefix}/status", qos=1)
            self._publish_discovery()
        self.connected.set()
        self._first.set()
        self._wake.set()

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        self.connected.clear()

    def _on_publish(self, client: Any, userdata: Any, mid: int, rc: Any, props: Any) -> None:
        self._acks.put(mid)
        self._wake.set()

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        if msg.topic == f"{self.s.ha_prefix}/status" and msg.payload == b"online":
            self._publish_discovery()

    def _publish_discovery(self) -> None:
        for topic, payload in discovery_messages(self.s, self.sections, self.model_version):
            self.client.publish(topic, payload, qos=1, retain=True)
        self.discovery_published += 1

    # --- lifecycle ---
    def start(self) -> None:
        """Connect (a refused login or bad certificate is an error; an unreachable broker is
        not: we keep retrying with backoff and the outbox keeps every alarm meanwhile)."""
        try:
            self.client.connect(self.s.host, self.s.port, self.s.keepalive)
        except ssl.SSLCertVerificationError as exc:
            raise MqttError(
                f"mqtt.tls.ca_file: broker certificate not trusted ({exc.verify_message})"
            ) from None
        except ssl.SSLError as exc:
            raise MqttError(f"mqtt.tls: TLS handshake with {self.s.host} failed: {exc}") from None
        except OSError:
            self.client.connect_async(self.s.host, self.s.port, self.s.keepalive)
        self.client.loop_start()
        self._first.wait(self.s.connect_timeout)
        if self._fatal:
            self.client.loop_stop()
            raise MqttError(self._fatal)
        if not self.connected.is_set():
            log.warning(
                "mqtt: broker %s:%d not reachable yet; retrying with backoff, alarms are "
                "kept in the outbox (%d pending)",
                self.s.host,
                self.s.port,
                len(self.outbox),
            )
        self._thread.start()

    def _flusher(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(0.2)
            self._wake.clear()
            self._drain_acks()
            if self.connected.is_set():
                for row in self.outbox.pending(limit=100, after=self._last_sent):
                    info = self.client.publish(
                        row.topic, row.payload, qos=row.qos, retain=row.retain
                    )
                    self._inflight[info.mid] = row.id
                    self._last_sent = row.id
        self._drain_acks()

    def _drain_acks(self) -> None:
        while True:
            try:
                mid = self._acks.get_nowait()
            except queue.Empty:
                return
            row = self._inflight.pop(mid, None)
            if row is not None:
                self.outbox.ack(row)

    # --- events ---
    def handle(self, event: Event) -> None:
        payload = json.dumps(event, separators=(",", ":"))
        if event["kind"] == "score":
            if not self.s.publish_scores:
                return
            if self.connected.is_set():
                self.client.publish(topics(self.s, event["section"])["score"], payload, qos=0)
            else:
                self.scores_dropped += 1
        elif event["kind"] == "alarm":
            self.outbox.put(topics(self.s, event["section"])["alarm"], payload.encode(), 1, True,
                            PRIORITY_ALARM)
            self._wake.set()
        elif event["kind"] == "health":
            self.outbox.put(topics(self.s)["health"], payload.encode(), 1, False, PRIORITY_HEALTH)
            self._wake.set()

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until the outbox is empty (all acknowledged) or `timeout`."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if len(self.outbox) == 0:
                return True
            self._wake.set()
            time.sleep(0.05)
        return len(self.outbox) == 0

    def close(self, timeout: float = 5.0) -> None:
        """Flush, publish retained `offline`, disconnect."""
        self.flush(timeout if self.connected.is_set() else 0.0)
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(2.0)
        if self.connected.is_set():
            info = self.client.publish(
                topics(self.s)["availability"], "offline", qos=1, retain=True
            )
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(timeout)
        self.client.disconnect()
        self.client.loop_stop()
