"""Home Assistant MQTT discovery as data: the entities of each machine and of the agent.

Why a table: what Home Assistant shows is a list of entities, and an entity is a handful of
fields (which component, which topic, how to read the payload). Written as code, every new
entity copied the device block, the availability and the id scheme, and the copies drifted.
Here an entity is one row of `MACHINE_ENTITIES` (one per machine) or `AGENT_ENTITIES` (one per
agent, on the agent's own device); `discovery()` builds the retained config messages from the
rows. Adding an entity is adding a row.

Home Assistant's rules this module keeps (read in homeassistant/components/mqtt/: discovery.py,
entity.py, schemas.py, util.py; tests/ha_rules.py checks every payload against them):

* Discovery topic `<ha_prefix>/<component>/<node_id>/<object_id>/config`, node and object id
  of `[a-zA-Z0-9_-]` only: the node id is `mqtt.device_id`, the object id
  `<monitor>_<key>` or `agent_<key>`; `edge_agent.config.ids` keeps those characters.
* Entity id. Without a hint HA makes it from the device name and the entity name
  (`binary_sensor.fan_1_hall_2_pi_fan_1_anomaly`: the machine twice, and nobody can guess it).
  HA >= 2025.10 takes the part after the `.` of `default_entity_id`, older versions take
  `object_id` (deprecated in 2025.10, ignored from 2026.4); both are slugified and HA ignores
  discovery keys it does not know, so we send both and every version makes
  `<component>.<device>_<monitor>_<suffix>` (`entity_id`; `<component>.<device>_<suffix>` for
  the agent's own entities), with `<device>` and `<monitor>` as `ids.slug` writes them. Once
  HA has registered an entity (by `unique_id`) it keeps the id it gave it: the key of a row is
  therefore never renamed, and an installation made before the hint keeps its old ids until
  the device is deleted in HA.
* Entity names: HA puts the device name before the entity's (`has_entity_name`), so on a
  machine's own device an entity is named without the machine ("Anomaly"), on the agent's
  device (a single-machine agent) with it ("fan_section_00 anomaly").
* Devices: every entity carries its full device block (name, model, manufacturer,
  `sw_version`: the agent's version and the model version in force). A device known to HA only
  as some `via_device` has no name; the agent's device has entities of its own
  (`AGENT_ENTITIES`), so with monitors it is a named device too, and each machine's device
  links to it.
* Topics in a payload are full topics (no `~` base), valid to subscribe to (no wildcard).

The messages are re-published on connect, when Home Assistant says `online`, and after a
model reload (the device's `sw_version` names the model version).
"""

from __future__ import annotations

import functools
import importlib.metadata
import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from edge_agent.config.ids import slug
from edge_agent.config.sinks import MqttSettings

MANUFACTURER = "open edge ASD"

ON_WHEN_FAULTS = "{{ 'ON' if value_json.faults else 'OFF' }}"

ANSWER_OPTIONS = {"not_a_fault": "Not a fault", "confirmed": "Confirmed fault"}
"""The answer select's options (what HA sends when one is picked; the agent reads these
spellings, `edge_agent.adaptation.feedback.parse_answer`) by the `answer` they stand for."""


@dataclass(frozen=True)
class Entity:
    """One Home Assistant entity, per machine or per agent.

    `key` names its discovery topic and unique id (never rename it: HA would make a new
    entity); `suffix` ends its entity id; `name` is its name in lower case (capitalised on a
    machine's device, after the machine's name on the agent's). `topics`: payload keys ending
    in `_topic` -> the topic under `<prefix>/<device_id>/`, `{monitor}` standing for the
    machine's name. `fields`: the rest of the payload as HA documents it. `needs`: a feature
    the agent must have for the entity to exist (`discovery(features=...)`), "" = always."""

    component: str
    key: str
    suffix: str
    name: str
    topics: Mapping[str, str]
    fields: Mapping[str, Any] = field(default_factory=dict)
    needs: str = ""


MACHINE_ENTITIES: tuple[Entity, ...] = (
    # attributes: the alarm payload, its `explanation` (why it alarmed) included
    Entity(
        "binary_sensor",
        "alarm",
        "anomaly",
        "anomaly",
        {"state_topic": "{monitor}/alarm", "json_attributes_topic": "{monitor}/alarm"},
        {
            "device_class": "problem",
            "value_template": "{{ 'ON' if value_json.decision == 'alarm' else 'OFF' }}",
        },
    ),
    Entity(
        "sensor",
        "score",
        "anomaly_score",
        "anomaly score",
        {"state_topic": "{monitor}/score"},
        {
            "value_template": "{{ value_json.score }}",
            "state_class": "measurement",
            "suggested_display_precision": 3,
        },
    ),
    # median of recent scores minus the threshold (edge_agent.runtime.history)
    Entity(
        "sensor",
        "drift",
        "score_drift",
        "score drift",
        {"state_topic": "{monitor}/drift"},
        {
            "value_template": "{{ value_json.drift }}",
            "state_class": "measurement",
            "suggested_display_precision": 3,
            "entity_category": "diagnostic",
        },
    ),
    # the machine's input: a dead microphone, a lost device, clipping
    Entity(
        "binary_sensor",
        "sensor",
        "sensor_fault",
        "sensor fault",
        {"state_topic": "{monitor}/sensor"},
        {
            "device_class": "problem",
            "entity_category": "diagnostic",
            "value_template": ON_WHEN_FAULTS,
        },
    ),
    # the operator's answer to the machine's latest alarm (edge_agent.adaptation.feedback):
    # HA publishes the button's payload (or the option picked) on feedback/set, not retained;
    # the agent applies it and the retained feedback state says what it did
    Entity(
        "button",
        "not_a_fault",
        "not_a_fault",
        "not a fault",
        {"command_topic": "{monitor}/feedback/set"},
        {"payload_press": "not_a_fault", "icon": "mdi:check-circle-outline"},
        needs="answers",
    ),
    Entity(
        "button",
        "confirmed",
        "confirmed_fault",
        "confirmed fault",
        {"command_topic": "{monitor}/feedback/set"},
        {"payload_press": "confirmed", "icon": "mdi:alert-circle-outline"},
        needs="answers",
    ),
    # the latest alarm's answer as the agent applied it ("None": not answered yet, which HA
    # shows as unknown); picking an option answers; attributes: the alarm's clip, who, what
    Entity(
        "select",
        "answer",
        "alarm_answer",
        "alarm answer",
        {
            "command_topic": "{monitor}/feedback/set",
            "state_topic": "{monitor}/feedback",
            "json_attributes_topic": "{monitor}/feedback",
        },
        {
            "options": list(ANSWER_OPTIONS.values()),
            "value_template": "{{ " + repr(ANSWER_OPTIONS) + ".get(value_json.answer, 'None') }}",
            "icon": "mdi:comment-question-outline",
        },
        needs="answers",
    ),
    # does it hear right (edge_agent.runtime.hearing): ON while the audio reaching the model
    # is unlike the training audio; attributes: the sentence (`message`) and the findings
    Entity(
        "binary_sensor",
        "hearing",
        "audio_path",
        "audio path",
        {"state_topic": "{monitor}/hearing", "json_attributes_topic": "{monitor}/hearing"},
        {
            "device_class": "problem",
            "entity_category": "diagnostic",
            "value_template": "{{ 'ON' if value_json.event == 'hearing_mismatch' else 'OFF' "
            "if value_json.event == 'hearing_ok' else 'None' }}",
        },
    ),
    # why it alarmed, as a picture (edge_agent.scoring.picture): the last alarm's spectrum
    # (red) on the normal range (grey), the band the explanation names shaded
    Entity(
        "image",
        "alarm_spectrum",
        "alarm_spectrum",
        "alarm spectrum",
        {"image_topic": "{monitor}/alarm/spectrum"},
        {"content_type": "image/png"},
    ),
)
"""Each machine's entities (see `Entity`)."""

AGENT_ENTITIES: tuple[Entity, ...] = (
    # the agent's own state (edge_agent.sinks.agent_state): windows dropped, a reload refused,
    # the outbox full or its disk full, ...; its attributes say which and why
    Entity(
        "binary_sensor",
        "health",
        "health",
        "health",
        {"state_topic": "state", "json_attributes_topic": "state"},
        {
            "device_class": "problem",
            "entity_category": "diagnostic",
            "value_template": ON_WHEN_FAULTS,
        },
    ),
    Entity(
        "sensor",
        "model",
        "model_version",
        "model version",
        {"state_topic": "state"},
        {"value_template": "{{ value_json.model_version }}", "entity_category": "diagnostic"},
    ),
)
"""The agent's own entities, on its device (see `Entity`)."""


@dataclass(frozen=True)
class Machine:
    """A monitored machine as HA shows it: its name (topic level) and the section scoring it."""

    name: str
    section: str = ""


@functools.cache
def agent_version() -> str:
    """The installed agent's version (the `listening-monitor` distribution's)."""
    try:
        return importlib.metadata.version("listening-monitor")
    except importlib.metadata.PackageNotFoundError:  # run from a checkout that is not installed
        return "unknown"


def sw_version(model_version: str) -> str:
    """The devices' `sw_version`: this agent's version and the model version in force."""
    return f"edge-agent {agent_version()}, model {model_version}"


def agent_device(s: MqttSettings, model_version: str) -> dict[str, Any]:
    """The agent's (the Pi's) HA device."""
    return {
        "identifiers": [f"edge_asd_{s.device_id}"],
        "name": f"Edge ASD {s.device_id}",
        "manufacturer": MANUFACTURER,
        "model": "edge-agent",
        "sw_version": sw_version(model_version),
    }


def machine_device(s: MqttSettings, m: Machine, model_version: str) -> dict[str, Any]:
    """A machine's own HA device (with `monitors:`), linked to the agent's."""
    return {
        "identifiers": [f"edge_asd_{s.device_id}_{m.name}"],
        "name": f"{m.name} ({s.device_id})",
        "manufacturer": MANUFACTURER,
        "model": f"machine sound monitor, section {m.section or m.name}",
        "sw_version": sw_version(model_version),
        "via_device": f"edge_asd_{s.device_id}",
    }


def entity_id(s: MqttSettings, e: Entity, monitor: str | None = None) -> str:
    """The entity id HA gives `e` of machine `monitor` (None: the agent's own entity)."""
    parts = [s.device_id] if monitor is None else [s.device_id, monitor]
    return f"{e.component}.{'_'.join(slug(p) for p in parts)}_{e.suffix}"


def _payload(
    s: MqttSettings, e: Entity, monitor: str | None, name: str, device: Mapping[str, Any]
) -> dict[str, Any]:
    base = s.base()
    node = s.device_id
    key = e.key if monitor is None else f"{monitor}_{e.key}"
    eid = entity_id(s, e, monitor)
    out: dict[str, Any] = {
        "name": name,
        "unique_id": f"{node}_{key}",
        "default_entity_id": eid,
        "object_id": eid.split(".", 1)[1],
    }
    for k, t in e.topics.items():
        out[k] = f"{base}/{t.format(monitor=monitor)}"
    out.update(e.fields)
    out.update(
        {
            "availability_topic": f"{base}/availability",
            "payload_available": "online",
            "payload_not_available": "offline",
            "device": dict(device),
            "origin": {"name": "edge-agent", "sw_version": agent_version()},
        }
    )
    return out


def _topic(s: MqttSettings, e: Entity, monitor: str | None) -> str:
    obj = f"agent_{e.key}" if monitor is None else f"{monitor}_{e.key}"
    return f"{s.ha_prefix}/{e.component}/{s.device_id}/{obj}/config"


def discovery(
    s: MqttSettings,
    machines: Sequence[Machine],
    model_version: str,
    own_devices: bool = False,
    features: Collection[str] = (),
) -> list[tuple[str, dict[str, Any]]]:
    """(topic, payload) of every retained discovery config: the agent's entities, then each
    machine's. `own_devices`: each machine is an HA device of its own (with `monitors:`),
    else every entity is on the agent's device. `features`: what the agent has (an entity
    whose `needs` is not among them is left out)."""
    agent = agent_device(s, model_version)
    out = [
        (_topic(s, e, None), _payload(s, e, None, e.name.capitalize(), agent))
        for e in AGENT_ENTITIES
        if not e.needs or e.needs in features
    ]
    for m in machines:
        device = machine_device(s, m, model_version) if own_devices else agent
        for e in MACHINE_ENTITIES:
            if e.needs and e.needs not in features:
                continue
            name = e.name.capitalize() if own_devices else f"{m.name} {e.name}"
            out.append((_topic(s, e, m.name), _payload(s, e, m.name, name, device)))
    return out


def discovery_messages(
    s: MqttSettings,
    machines: Sequence[Machine],
    model_version: str,
    own_devices: bool = False,
    features: Collection[str] = (),
) -> list[tuple[str, str]]:
    """`discovery` with each payload as its JSON text (what is published)."""
    return [
        (t, json.dumps(p, separators=(",", ":")))
        for t, p in discovery(s, machines, model_version, own_devices, features)
    ]
