"""MQTT sink (paho-mqtt 2.x): topic tree, TLS/auth, last will, HA discovery, durable alarms.

Topic tree under `<prefix>/<device_id>/` (prefix default `edge-asd`):

| topic                         | QoS | retained | payload                                   |
|-------------------------------|-----|----------|-------------------------------------------|
| `availability`                | 1   | yes      | `online` / `offline` (last will)          |
| `<monitor>/score`             | 0   | no       | per-window JSON (score, threshold, ...)   |
| `<monitor>/alarm`             | 1   | yes      | JSON on every alarm raise/clear           |
| `<monitor>/drift`             | 0   | no       | `{ts, epoch, section, monitor, drift}`    |
| `<monitor>/sensor`            | 1   | yes      | the monitor's last sensor health event    |
| `<monitor>/hearing`           | 1   | yes      | its last hearing check (`hearing_*` event) |
| `<monitor>/alarm/spectrum`    | 1   | yes      | PNG of the last alarm's spectrum (HA on) |
| `<monitor>/evidence/<file>`   | 1   | no       | an alarm's audio clip (`evidence.mqtt_...`) |
| `health`                      | 1   | no       | JSON on sensor fault start/end, drops     |
| `<monitor>/feedback`          | 1   | yes      | the latest alarm's answer (or `null`)     |
| `<monitor>/feedback/error`    | 1   | no       | an answer that was not applied, and why   |
| `<monitor>/feedback/set`      | in  | no       | answers: `not_a_fault` / `confirmed`      |
| `state`                       | 1   | yes      | the agent's own health now (`agent_state`) |

`<monitor>` is the monitor's name (`edge_agent.config.monitors`); a single-machine agent's one
monitor is named after its section, so its topics are `<section>/...` as they always were.
Payloads are the agent's events as JSON (`edge_agent.events`: `schema`, `ts`, `epoch`,
`device_id` and, for window events, `section`, `monitor`, `score`, `threshold`, `decision`,
...). Every health event goes to `health`; those about one machine's input (`sensor_fault`,
`sensor_ok`, `device_ok`) also set its retained `<monitor>/sensor` state, and the hearing
check's (`hearing_mismatch`, `hearing_ok`, `hearing_unchecked`: does the audio reaching the
model sound like the training audio, edge_agent.runtime.hearing) its retained
`<monitor>/hearing` state, with the sentence saying what to check.

Alarm and health events go through the SQLite `Outbox`: stored before publishing, deleted on
PUBACK (`on_publish` with the mid), re-sent oldest first after a restart. Scores are QoS 0
and dropped (counted) while disconnected: they are a live view, the alarm is the record.

The outbox keeps delivering under faults (`edge_agent.sinks.outbox`): a disk that refuses
writes (full) sends the rows it refused from memory, directly; a row that cannot be sent is
quarantined instead of blocking the rows behind it. The sender thread is supervised: an
unexpected error restarts it (after `Outbox.repair()`, with a growing pause up to 5 s) and is
reported as `outbox_sender_restarted` (first, each new message, then at 10, 100, ...
restarts), so the one thread that delivers alarms never silently stops.

The alarm topic is the device's *state*: the sink keeps its last payload (from the last alarm
event, or set by the agent at start: the state restored from its decision state file, or
`start_state` when there is none) and re-publishes it, retained, on EVERY (re)connect, after
the outbox backlog, and again after any later batch that carried an older retained row for
it. A broker that lost its retained messages (restarted without persistence), or that still
holds another run's alarm, therefore gets the current state within one reconnect, and Home
Assistant's entity is never `unknown` once the agent has connected. The same holds for each
monitor's `<monitor>/sensor` state once its first window was heard.

Answers (`feedback.mqtt`, with evidence kept: `edge_agent.adaptation.feedback`): the sink
subscribes to `<monitor>/feedback/set` on every connect and hands each message, as it
arrives, to the agent's `answers` callback (which queues it without blocking); a retained
message there is ignored (it would answer every later alarm at each reconnect). The answer
state of each machine's latest alarm is retained on `<monitor>/feedback`: `answer` null from
the alarm with evidence until an operator answers, re-published on every connect like the
alarm state.

Connection management (our own backoff, set through paho's `reconnect_delay_set` before each
wait): an unreachable broker is retried after `reconnect_min`, doubling up to `reconnect_max`
(a few seconds: a refused TCP connection costs nothing, and the cap is what bounds how late
the backlog arrives after the broker is back). A broker that answers but refuses us (CONNACK
refusal: bad password, not authorized; TLS: certificate not trusted) is retried from
`reconnect_max` doubling up to `refused_retry_max`: it will most likely refuse again, and a
broker-side change must never stop local scoring, so this is not fatal, at start or later. It is
logged as an error and queued as a health notice (`mqtt_auth_failed` / `mqtt_tls_failed`, then
`mqtt_ok` once connected again) that the agent emits to every sink. With `password_file` the
password is re-read before each retry after a refused login, so fixing the file is enough.
Logs: one line per disconnect (with the reason code), one per reconnect (downtime, attempts),
and failed attempts only at 1, 2, 4, 8, ... attempts, so a broker that stays down for hours
adds a line per doubling of the outage, not one per retry.

Home Assistant discovery (`ha_discovery: true`): the entities of each machine and of the agent
itself, built from the tables of `edge_agent.sinks.ha`, retained under `<ha_prefix>/...`,
re-published on connect, whenever `<ha_prefix>/status` becomes `online`, and after a model
reload (the devices' `sw_version` names the model version). A single-machine agent's entities
belong to one HA device (the agent); with `monitors:` (`ha_devices`) each monitor is an HA
device of its own (one per machine, `via_device` the agent's device).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import ssl
import sys
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

from edge_agent.config.sinks import MqttSettings
from edge_agent.errors import EdgeAgentError
from edge_agent.events import (
    SCHEMA_VERSION,
    AlarmState,
    Event,
    FeedbackEvent,
    HealthEvent,
    HealthEventName,
    WindowEvent,
    event_json,
    feedback_event,
    health_event,
    iso,
)
from edge_agent.jsonsafe import dumps
from edge_agent.sinks.agent_state import AgentState
from edge_agent.sinks.ha import Machine, discovery_messages
from edge_agent.sinks.outbox import PRIORITY_ALARM, PRIORITY_HEALTH, PRIORITY_STATUS, Outbox

log = logging.getLogger("edge_agent")


class MqttError(EdgeAgentError):
    """The MQTT client cannot be configured (unreadable certificate files): a local error.

    A broker that refuses us (login, certificate) is not an MqttError: it is retried and
    reported as a health notice, because a broker-side change must not stop local scoring."""


def topics(s: MqttSettings, monitor: str = "") -> dict[str, str]:
    """The agent's topics; the per-machine ones for `monitor` (its name)."""
    b = s.base()
    return {
        "availability": f"{b}/availability",
        "score": f"{b}/{monitor}/score",
        "alarm": f"{b}/{monitor}/alarm",
        "drift": f"{b}/{monitor}/drift",
        "sensor": f"{b}/{monitor}/sensor",
        "hearing": f"{b}/{monitor}/hearing",
        "picture": f"{b}/{monitor}/alarm/spectrum",
        "health": f"{b}/health",
        "feedback": f"{b}/{monitor}/feedback",
        "feedback_error": f"{b}/{monitor}/feedback/error",
        "feedback_set": f"{b}/{monitor}/feedback/set",
        "state": f"{b}/state",
    }


FEEDBACK_SET = "/feedback/set"


SENSOR_EVENTS = ("sensor_fault", "sensor_ok", "device_ok")
"""Health events that are a monitor's input state (its retained `<monitor>/sensor`)."""
HEARING_EVENTS = ("hearing_mismatch", "hearing_ok", "hearing_unchecked")
"""Health events that are a monitor's hearing state (its retained `<monitor>/hearing`)."""


def start_state(
    device_id: str,
    monitor: str,
    section: str,
    decision: AlarmState,
    votes: int,
    model_version: str,
    epoch: float,
) -> dict[str, Any]:
    """The alarm topic's payload at start when no earlier alarm payload was restored (no
    decision state file, or a damaged one, or one the full disk did not let us save): the
    header and the decision the agent starts with, without the window fields (`window`,
    `score`, `threshold`, `anomalous`, `source`: no window has been judged yet). Published so
    that another run's retained alarm is replaced and a new entity is not `unknown`."""
    return {
        "schema": SCHEMA_VERSION,
        "kind": "alarm",
        "ts": iso(epoch),
        "epoch": round(epoch, 3),
        "device_id": device_id,
        "section": section,
        "monitor": monitor,
        "decision": decision,
        "votes": votes,
        "model_version": model_version,
    }


OUTBOX_NOTICES = frozenset(
    {
        "outbox_full",
        "outbox_disk_full",
        "outbox_disk_ok",
        "outbox_quarantined",
        "outbox_replaced",
        "outbox_sender_restarted",
    }
)
"""Health events about the outbox itself: kept as outbox notices (outside its bound, one per
name: `Outbox.put(notice=...)`), so reporting a full outbox never evicts a row."""


def event_monitor(event: Mapping[str, Any]) -> str:
    """The monitor an event is about (events saved before monitors existed: the section)."""
    return str(event.get("monitor") or event.get("section") or "")


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
        self,
        settings: MqttSettings,
        outbox: Outbox,
        machines: Sequence[str | Machine],
        model_version: str = "",
        ha_devices: bool = False,
        features: Collection[str] = (),
    ) -> None:
        """`machines`: the monitors (a name alone: its topic level, section unknown);
        `ha_devices`: an HA device each; `features`: what the agent has, for the HA entities
        that need it (`edge_agent.sinks.ha.Entity.needs`)."""
        self.s = settings
        self.outbox = outbox
        self.machines = [m if isinstance(m, Machine) else Machine(m) for m in machines]
        self.sections = [m.name for m in self.machines]
        self.ha_devices = ha_devices
        self.features = frozenset(features)
        self.model_version = model_version
        self.client = make_client(settings)
        self.connected = threading.Event()
        self.scores_dropped = 0
        self.discovery_published = 0
        self._acks: queue.Queue[int] = queue.Queue()
        self._inflight: dict[int, int] = {}  # mid -> outbox row id
        self._last_sent = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._first = threading.Event()  # first attempt settled: connected or refused
        self._thread = threading.Thread(target=self._flusher, name="mqtt-outbox", daemon=True)
        # connection bookkeeping (network thread only)
        self._ever_connected = False
        self._down_since: float | None = None  # monotonic; None = connected / never tried
        self._failures = 0  # failed attempts since the connection was lost
        self._delay = settings.reconnect_min  # next wait while unreachable
        self._refused_delay = settings.reconnect_max  # next wait while refused
        self._refusal: str | None = None  # why the broker refuses us; None = it does not
        self._notices: queue.SimpleQueue[tuple[HealthEventName, str]] = queue.SimpleQueue()
        # retained alarm state, re-published on every connect (see module docstring)
        self._retained: dict[str, bytes] = {}
        self._retained_lock = threading.Lock()
        self._discovery_lock = threading.Lock()
        self._sensor_known: set[str] = set()  # monitors whose sensor state was published
        self._conn_gen = 0  # incremented on every successful connect
        self._republish_now = threading.Event()
        self._state_sent = threading.Event()  # this connection's backlog + state handed to paho
        # the agent's own health as a retained state (edge_agent.sinks.agent_state)
        self.agent_state = AgentState(settings.device_id, model_version, time.time())
        self._set_retained(topics(settings)["state"], self._agent_state_payload())
        self.sender_restarts = 0
        self._last_sender_error: str | None = None
        self.answers: Callable[[str, bytes], None] | None = None
        """Set by the agent to take answers (`feedback/set`): called on paho's network thread
        with (monitor, payload); it must not block."""
        c = self.client
        c.on_connect = self._on_connect
        c.on_connect_fail = self._on_connect_fail
        c.on_disconnect = self._on_disconnect
        c.on_publish = self._on_publish
        c.on_message = self._on_message

    # --- paho callbacks (network thread: never block, never touch SQLite) ---
    def _on_connect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        if rc.is_failure:
            login = rc.value in (134, 135)  # bad user name or password, not authorized
            what = "refused the login" if login and self.s.username else "refused the connection"
            self._refused("mqtt_auth_failed", f"mqtt: broker {self._where()} {what}: {rc}")
            if login:
                self._reread_password()
            return
        self._connected_again()
        client.publish(topics(self.s)["availability"], "online", qos=1, retain=True)
        if self.s.ha_discovery:
            client.subscribe(f"{self.s.ha_prefix}/status", qos=1)
            self._publish_discovery()
        if self.answers is not None:
            client.subscribe(f"{self.s.base()}/+{FEEDBACK_SET}", qos=1)
        self._state_sent.clear()
        self._conn_gen += 1
        self.connected.set()
        self._first.set()
        self._wake.set()

    def _on_connect_fail(self, client: Any, userdata: Any) -> None:
        # paho calls this from inside its `except OSError:` around the connection attempt, so
        # the attempt's exception is the one being handled: it tells a TLS refusal (a broker
        # that answered and rejected us) from an unreachable broker.
        exc = sys.exc_info()[1]
        if isinstance(exc, ssl.SSLError):
            self._refused("mqtt_tls_failed", self._tls_message(exc))
        else:
            self._unreachable(exc)

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        was_connected = self.connected.is_set()
        self.connected.clear()
        if not was_connected or self._stop.is_set():
            return  # a refused attempt (reported there) or our own close()
        self._down_since = time.monotonic()
        self._failures = 0
        self._delay = self.s.reconnect_min
        self._set_delay(self._delay)
        log.warning(
            "mqtt: disconnected from %s (reason %s: %s); reconnecting, alarms are kept in the "
            "outbox",
            self._where(),
            getattr(rc, "value", rc),
            rc,
        )

    def _on_publish(self, client: Any, userdata: Any, mid: int, rc: Any, props: Any) -> None:
        self._acks.put(mid)
        self._wake.set()

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        if msg.topic == f"{self.s.ha_prefix}/status" and msg.payload == b"online":
            self._publish_discovery()
            return
        monitor = self._answer_monitor(msg.topic)
        if monitor is None or self.answers is None:
            return
        if msg.retain:  # would answer every later alarm again at each reconnect
            log.warning(
                "mqtt: retained answer on %s ignored (publish answers without retain)", msg.topic
            )
            return
        try:
            self.answers(monitor, bytes(msg.payload))
        except Exception as exc:  # never let paho's network thread die of it
            log.error("mqtt: answer on %s not taken: %s", msg.topic, exc)

    def _answer_monitor(self, topic: str) -> str | None:
        """The monitor of a `<base>/<monitor>/feedback/set` topic (one of ours), else None."""
        head = f"{self.s.base()}/"
        if not (topic.startswith(head) and topic.endswith(FEEDBACK_SET)):
            return None
        monitor = topic[len(head) : -len(FEEDBACK_SET)]
        return monitor if monitor in self.sections else None

    def _publish_discovery(self) -> None:
        """Every HA discovery config (`edge_agent.sinks.ha`), retained; from the network thread
        (connect, HA online) or the emitting one (a reload changed the model version)."""
        with self._discovery_lock:
            for topic, payload in discovery_messages(
                self.s, self.machines, self.model_version, self.ha_devices, self.features
            ):
                self.client.publish(topic, payload, qos=1, retain=True)
            self.discovery_published += 1

    # --- connection bookkeeping: backoff, logs, health notices ---
    def _where(self) -> str:
        return f"{self.s.host}:{self.s.port}"

    def _set_delay(self, seconds: float) -> None:
        """The wait before paho's next attempt (paho waits `min_delay` after a reset)."""
        self.client.reconnect_delay_set(seconds, seconds)

    def _connected_again(self) -> None:
        if not self._ever_connected:
            log.info("mqtt: connected to %s", self._where())
        else:
            down = time.monotonic() - (self._down_since or time.monotonic())
            log.info(
                "mqtt: reconnected to %s after %.1f s down (%d failed attempts)",
                self._where(),
                down,
                self._failures,
            )
        if self._refusal is not None:
            self._notices.put(("mqtt_ok", f"mqtt: connected to {self._where()} again"))
            self._refusal = None
        self._ever_connected = True
        self._down_since = None
        self._failures = 0
        self._delay = self.s.reconnect_min
        self._refused_delay = self.s.reconnect_max
        self._set_delay(self.s.reconnect_min)

    def _failed_attempt(self) -> int:
        self._failures += 1
        if self._down_since is None:
            self._down_since = time.monotonic()
        return self._failures

    def _unreachable(self, exc: BaseException | None) -> None:
        n = self._failed_attempt()
        delay = self._delay
        self._delay = min(delay * 2, self.s.reconnect_max)
        self._set_delay(delay)
        if n & (n - 1) == 0:  # 1, 2, 4, 8, ...: no flood while the broker stays down
            down = time.monotonic() - (self._down_since or time.monotonic())
            log.warning(
                "mqtt: broker %s unreachable (%d failed attempts in %.0f s: %s); next attempt "
                "in %.1f s, alarms are kept in the outbox",
                self._where(),
                n,
                down,
                exc or "connection failed",
                delay,
            )

    def _refused(self, event: HealthEventName, msg: str) -> None:
        """The broker answered and said no: report it (health notice, error log), back off
        longer, keep running (see module docstring)."""
        n = self._failed_attempt()
        delay = self._refused_delay
        self._refused_delay = min(delay * 2, self.s.refused_retry_max)
        self._set_delay(delay)
        if msg != self._refusal:
            self._refusal = msg
            self._notices.put((event, msg))
            log.error(
                "%s; scoring goes on locally, alarms are kept in the outbox, retrying with "
                "backoff (next attempt in %.1f s)",
                msg,
                delay,
            )
        elif n & (n - 1) == 0:
            log.error("%s (%d failed attempts; next in %.1f s)", msg, n, delay)
        self._first.set()

    def _tls_message(self, exc: ssl.SSLError) -> str:
        if isinstance(exc, ssl.SSLCertVerificationError):
            return f"mqtt.tls.ca_file: broker certificate not trusted ({exc.verify_message})"
        return f"mqtt.tls: TLS handshake with {self.s.host} failed: {exc}"

    def _reread_password(self) -> None:
        """After a refused login: take the password file's current content for the next try,
        so an operator who updates the file does not have to restart the agent."""
        if not (self.s.username and self.s.password_file):
            return
        try:
            pw = Path(self.s.password_file).read_text().splitlines()[0].strip()
        except (OSError, IndexError, UnicodeDecodeError):
            return  # keep the current one; the next refusal tries again
        self.client.username_pw_set(self.s.username, pw)

    def take_notices(self) -> list[tuple[HealthEventName, str]]:
        """Connection health news since the last call (`mqtt_auth_failed`, `mqtt_tls_failed`,
        `mqtt_ok`, with a one-line message): the agent turns them into health events."""
        out: list[tuple[HealthEventName, str]] = []
        while True:
            try:
                out.append(self._notices.get_nowait())
            except queue.Empty:
                return out

    # --- lifecycle ---
    def start(self) -> None:
        """Connect in the background and wait up to `connect_timeout` for the first attempt to
        settle. Neither an unreachable broker nor a refusal (login, TLS) is an error: the agent
        must keep scoring; we retry with backoff and the outbox keeps every alarm meanwhile.
        Only local configuration errors (unreadable certificate files) raise `MqttError`, in
        `make_client`."""
        pending = len(self.outbox)
        if pending:
            log.info("mqtt: %d alarm/health events from before wait in the outbox", pending)
        self.client.connect_async(self.s.host, self.s.port, self.s.keepalive)
        self.client.loop_start()
        self._first.wait(self.s.connect_timeout)
        self._thread.start()

    def set_alarm_state(self, event: Mapping[str, object]) -> None:
        """The alarm topic's current state (an `alarm` event, e.g. restored by the agent at
        start): published, retained, on every (re)connect; at once if connected now."""
        topic = topics(self.s, event_monitor(event))["alarm"]
        self._set_retained(topic, dumps(event, "alarm state", separators=(",", ":")).encode())

    def _set_retained(self, topic: str, payload: bytes) -> None:
        """A retained state the sink keeps and re-publishes on every connect (at once now)."""
        with self._retained_lock:
            self._retained[topic] = payload
        self._republish_now.set()
        self._wake.set()

    def _agent_state_payload(self) -> bytes:
        return dumps(self.agent_state.payload(), "agent state", separators=(",", ":")).encode()

    def _track_agent(self, event: Event) -> None:
        """The agent's own state (`agent_state`) after `event`; re-published when it changed.
        A reload also re-sends the HA discovery: the devices' `sw_version` names the model."""
        if self.agent_state.update(event):
            self._set_retained(topics(self.s)["state"], self._agent_state_payload())
        if event["kind"] == "status" and event["event"] == "reloaded":
            self.model_version = self.agent_state.model_version
            if self.s.ha_discovery and self.connected.is_set():
                self._publish_discovery()

    def retained_state(self) -> dict[str, bytes]:
        """Topic -> payload of the retained state the sink re-publishes on connect."""
        with self._retained_lock:
            return dict(self._retained)

    def _flusher(self) -> None:
        """The sender thread: runs `_send_loop`, and restarts it if it ever raises (see module
        docstring): the thread that delivers alarms must not die of one unexpected error."""
        while not self._stop.is_set():
            try:
                self._send_loop()
            except Exception as exc:  # anything: report, repair, restart
                self._sender_failed(" ".join(f"{type(exc).__name__}: {exc}".split()))
                continue
            break
        with contextlib.suppress(Exception):
            self._drain_acks()

    def _sender_failed(self, msg: str) -> None:
        self.sender_restarts += 1
        n = self.sender_restarts
        if msg != self._last_sender_error or str(n).rstrip("0") == "1":
            self._last_sender_error = msg
            text = f"mqtt: the outbox sender failed ({msg}); restarted ({n} so far)"
            log.error("%s", text)
            self._notices.put(("outbox_sender_restarted", text))
        self._stop.wait(min(0.1 * 2 ** min(n, 6), 5.0))
        try:
            self.outbox.repair()
        except Exception as exc:  # the next round reports it again if it persists
            log.error("mqtt: outbox repair failed: %s", " ".join(str(exc).split()))

    def _send_loop(self) -> None:
        """Outbox -> broker. Publishes are pipelined (paho keeps up to 20 QoS 1 messages in
        flight and queues the rest), rows are deleted as PUBACKs arrive, a connect wakes the
        loop at once, and a full batch loops without waiting. After the backlog of a new
        connection, and after any batch that carried a retained row, the retained state is
        re-published where the last payload sent on its topic differs from it."""
        gen = 0
        sent: dict[str, bytes] = {}  # retained topic -> last payload sent on this connection
        republish = False
        while not self._stop.is_set():
            self._wake.wait(0.2)
            self._wake.clear()
            self._drain_acks()
            self.outbox.retry()  # a disk that refused writes: recovered yet?
            if not self.connected.is_set():
                continue
            if self._conn_gen != gen:
                gen, sent, republish = self._conn_gen, {}, True
            if self._republish_now.is_set():
                self._republish_now.clear()
                republish = True
            batch = self._send_batch(sent)
            if batch:
                self._wake.set()  # maybe more: next batch without waiting
                republish = republish or batch > 1
            elif republish:
                republish = False
                for topic, payload in self.retained_state().items():
                    if sent.get(topic) != payload:
                        self.client.publish(topic, payload, qos=1, retain=True)
                        sent[topic] = payload
                if gen == self._conn_gen:
                    self._state_sent.set()

    def _send_batch(self, sent: dict[str, bytes]) -> int:
        """Hand the next outbox rows to paho (no waiting for acks): disk rows, then rows the
        disk refused (memory). 0 if none were left, 1 if some were sent, 2 if a retained one
        was among them. A row paho refuses is quarantined."""
        rows = self.outbox.pending(limit=100, after=self._last_sent)
        rows += self.outbox.unsent_memory(limit=100)
        retained = False
        for row in rows:
            if row.id > 0:
                self._last_sent = max(self._last_sent, row.id)
            try:
                info = self.client.publish(row.topic, row.payload, qos=row.qos, retain=row.retain)
            except (ValueError, TypeError) as exc:  # it would never go: set it aside
                self.outbox.quarantine(row.id, f"the MQTT client refused it: {exc}")
                continue
            self._inflight[info.mid] = row.id
            self.outbox.handed(row.id)
            if row.retain:
                sent[row.topic] = row.payload
                retained = True
        return 0 if not rows else 2 if retained else 1

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
    def _sensor_state(self, monitor: str, payload: bytes) -> None:
        """Set monitor's retained `<monitor>/sensor` state (durable, re-sent on connect)."""
        topic = topics(self.s, monitor)["sensor"]
        self.outbox.put(topic, payload, 1, True, PRIORITY_HEALTH)
        with self._retained_lock:
            self._retained[topic] = payload
        self._sensor_known.add(monitor)

    def handle(self, event: Event) -> None:
        payload = event_json(event)  # strict JSON: a NaN raises instead of an invalid payload
        self._track_agent(event)
        if event["kind"] == "score" and event_monitor(event) not in self._sensor_known:
            # the first scored window says the input works: the sensor entity is never unknown
            ok = health_event(
                event["epoch"],
                event["device_id"],
                "sensor_ok",
                [],
                monitor=event_monitor(event),
                section=event["section"],
            )
            self._sensor_state(event_monitor(event), event_json(ok).encode())
        if event["kind"] == "score":
            drift = event.get("drift")
            if drift is not None and self.connected.is_set():  # live view, as scores; its own
                # topic (and not publish_scores'): the HA drift entity updates only with a value
                self.client.publish(
                    topics(self.s, event_monitor(event))["drift"],
                    dumps(
                        {
                            "ts": event["ts"],
                            "epoch": event["epoch"],
                            "section": event["section"],
                            "monitor": event_monitor(event),
                            "drift": drift,
                        },
                        "drift",
                        separators=(",", ":"),
                    ),
                    qos=0,
                )
            if not self.s.publish_scores:
                return
            if self.connected.is_set():
                self.client.publish(topics(self.s, event_monitor(event))["score"], payload, qos=0)
            else:
                self.scores_dropped += 1
        elif event["kind"] == "alarm":
            topic = topics(self.s, event_monitor(event))["alarm"]
            self.outbox.put(topic, payload.encode(), 1, True, PRIORITY_ALARM)
            with self._retained_lock:
                self._retained[topic] = payload.encode()
            self._question(event)
            self._wake.set()
        elif event["kind"] == "feedback":
            self._answer(event, payload.encode())
        elif event["kind"] == "health":
            self._health(event, payload.encode())

    def _health(self, event: HealthEvent, payload: bytes) -> None:
        """A health event on `health`, and, when it is a machine's input or hearing state, on
        that machine's retained topic too."""
        name = event["event"]
        self.outbox.put(
            topics(self.s)["health"],
            payload,
            1,
            False,
            PRIORITY_HEALTH,
            notice=name if name in OUTBOX_NOTICES else None,
        )
        monitor = event.get("monitor")
        if monitor and name in SENSOR_EVENTS:  # the machine's input state
            self._sensor_state(monitor, payload)
        if monitor and name in HEARING_EVENTS:  # does it hear right
            topic = topics(self.s, monitor)["hearing"]
            self.outbox.put(topic, payload, 1, True, PRIORITY_HEALTH)
            with self._retained_lock:
                self._retained[topic] = payload
        self._wake.set()

    def _question(self, alarm: WindowEvent) -> None:
        """An alarm raised with its clip kept asks for an answer: `<monitor>/feedback` says
        `answer` null for that clip (with answers taken)."""
        evidence = alarm.get("evidence")
        if evidence is None or self.answers is None:
            return
        m = event_monitor(alarm)
        self._feedback_state(
            m,
            event_json(
                feedback_event(
                    alarm["epoch"],
                    alarm["device_id"],
                    monitor=m,
                    section=alarm["section"],
                    alarm=evidence["file"],
                    answer=None,
                )
            ).encode(),
        )

    def _answer(self, event: FeedbackEvent, payload: bytes) -> None:
        """An answer applied: the machine's answer state; not applied: `feedback/error` (the
        state stays what it was)."""
        t = topics(self.s, event["monitor"])
        if "error" in event:
            self.outbox.put(t["feedback_error"], payload, 1, False, PRIORITY_HEALTH)
        else:
            self._feedback_state(event["monitor"], payload)
        self._wake.set()

    def _feedback_state(self, monitor: str, payload: bytes) -> None:
        """Set monitor's retained `<monitor>/feedback` (durable, re-sent on connect)."""
        topic = topics(self.s, monitor)["feedback"]
        self.outbox.put(topic, payload, 1, True, PRIORITY_HEALTH)
        with self._retained_lock:
            self._retained[topic] = payload

    def publish_picture(self, monitor: str, png: bytes) -> None:
        """An alarm's spectrum on the normal range (edge_agent.scoring.picture), retained on
        `<monitor>/alarm/spectrum` for Home Assistant's image entity, through the outbox at
        the lowest priority (a picture is never worth an alarm's place)."""
        self.outbox.put(topics(self.s, monitor)["picture"], png, 1, True, PRIORITY_STATUS)
        self._wake.set()

    def publish_evidence(self, monitor: str, ref: Mapping[str, Any], audio: bytes) -> None:
        """An alarm clip's bytes through the outbox at the lowest priority (dropped before any
        health event or alarm when the outbox is full), on `<monitor>/evidence/<file>`."""
        topic = f"{self.s.base()}/{monitor}/evidence/{ref['file']}"
        self.outbox.put(topic, audio, 1, False, PRIORITY_STATUS)
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

    def settle(self, timeout: float = 5.0) -> int:
        """At shutdown, before the final counters: deliver what can be delivered (while
        connected), give the disk one more try (rows it takes now survive the restart), then
        count the rows that exist only in memory as lost (`Outbox.abandon_memory`); returns
        how many."""
        self.flush(timeout if self.connected.is_set() else 0.0)
        self.outbox.retry(now=True)
        return self.outbox.abandon_memory()

    def close(self, timeout: float = 5.0) -> None:
        """Flush, publish retained `offline`, disconnect. A short run still re-asserts the
        retained alarm state: the state publish precedes `offline` on the same connection."""
        self.flush(timeout if self.connected.is_set() else 0.0)
        if self.connected.is_set():
            self._state_sent.wait(timeout)
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
        self.outbox.close()
