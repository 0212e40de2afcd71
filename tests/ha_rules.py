"""Home Assistant's rules for MQTT discovery, written from what HA's own code does, for tests.

We cannot run Home Assistant here, so its rules are restated from its source
(homeassistant/components/mqtt/: discovery.py `TOPIC_MATCHER` and the discovery hash,
entity.py `_init_entity_id` / `_set_entity_name` / `device_info_from_specifications`,
util.py `valid_subscribe_topic` / `valid_publish_topic`, schemas.py's device and origin schemas;
homeassistant/core.py `VALID_ENTITY_ID`; homeassistant/util `slugify`; helpers/entity.py
`async_generate_entity_id`) and checked against every payload the agent publishes:

* the topic must match HA's `TOPIC_MATCHER` (else HA ignores it with a log warning);
* the entity id HA makes: HA >= 2025.10 slugifies the part after the `.` of
  `default_entity_id`, older HA slugifies `object_id`, and without either HA slugifies the
  device name + " " + the entity name; `entity_ids` returns what HA makes, and both versions
  must agree;
* topics: valid to subscribe to (wildcards only as whole levels) and, for command topics, to
  publish to (none at all), no control characters;
* devices: at least one identifier; a name on every device block (a device known only as a
  `via_device` is created nameless); the `via_device` exists among the messages; blocks with
  the same identifiers agree (HA keeps the last one it read);
* unique ids, discovery ids and entity ids unique; `state_class` only on sensors and one of
  HA's; `entity_category` one of HA's (`config` not on a sensor);
* stricter than HA, which drops unknown keys silently: every key must be one HA knows for the
  component (a typo would otherwise vanish without a word), and every `value_json.<field>` a
  template reads must exist in the payloads of its topic (`check_templates`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

TOPIC_MATCHER = re.compile(
    r"(?P<component>\w+)/(?:(?P<node_id>[a-zA-Z0-9_-]+)/)?(?P<object_id>[a-zA-Z0-9_-]+)/config"
)
_OBJECT_ID = r"(?!_)[\da-z_]+(?<!_)"
VALID_ENTITY_ID = re.compile(r"^(?!.+__)" + _OBJECT_ID + r"\." + _OBJECT_ID + r"$")

COMMON_KEYS = frozenset(
    {
        "name",
        "unique_id",
        "default_entity_id",
        "object_id",
        "availability_topic",
        "availability_template",
        "availability_mode",
        "availability",
        "payload_available",
        "payload_not_available",
        "device",
        "origin",
        "entity_category",
        "entity_picture",
        "icon",
        "enabled_by_default",
        "json_attributes_topic",
        "json_attributes_template",
        "qos",
        "encoding",
        "state_topic",
        "value_template",
        "device_class",
    }
)
COMPONENT_KEYS: Mapping[str, frozenset[str]] = {
    "binary_sensor": frozenset(
        {"expire_after", "force_update", "off_delay", "payload_on", "payload_off"}
    ),
    "sensor": frozenset(
        {
            "expire_after",
            "force_update",
            "last_reset_value_template",
            "options",
            "state_class",
            "suggested_display_precision",
            "unit_of_measurement",
        }
    ),
    "button": frozenset({"command_topic", "command_template", "payload_press", "retain"}),
    "image": frozenset(
        {"image_topic", "image_encoding", "content_type", "url_topic", "url_template"}
    ),
    "camera": frozenset({"topic", "image_encoding"}),
    "event": frozenset({"event_types"}),
    "text": frozenset(
        {"command_topic", "command_template", "max", "min", "mode", "pattern", "retain"}
    ),
    "select": frozenset({"command_topic", "command_template", "options", "optimistic", "retain"}),
}
"""The keys HA's schema knows for each component we might publish (beside `COMMON_KEYS`)."""

STATE_CLASSES = frozenset({"measurement", "measurement_angle", "total", "total_increasing"})
ENTITY_CATEGORIES = frozenset({"config", "diagnostic"})
BINARY_SENSOR_CLASSES = frozenset(
    {
        "battery",
        "battery_charging",
        "carbon_monoxide",
        "cold",
        "connectivity",
        "door",
        "garage_door",
        "gas",
        "heat",
        "light",
        "lock",
        "moisture",
        "motion",
        "moving",
        "occupancy",
        "opening",
        "plug",
        "power",
        "presence",
        "problem",
        "running",
        "safety",
        "smoke",
        "sound",
        "tamper",
        "update",
        "vibration",
        "window",
    }
)
PUBLISHED_TOPIC_KEYS = frozenset({"command_topic"})
"""Topics HA publishes to (valid_publish_topic: no wildcard at all)."""


class HaRuleError(AssertionError):
    """A payload Home Assistant would refuse, or would read otherwise than we mean."""


def slugify(text: str) -> str:
    """HA's `slugify` for ASCII text (python-slugify with `_`): lower case, every run of other
    characters one `_`, none at the ends; "unknown" when nothing is left."""
    slug = re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")
    return slug or "unknown"


def valid_topic(topic: str, publish: bool = False) -> None:
    """HA's `valid_topic` + `valid_subscribe_topic` (or `valid_publish_topic`)."""
    if not topic or len(topic.encode()) > 65535:
        raise HaRuleError(f"topic {topic!r}: empty or too long")
    if any(c == "\0" or c <= "\u001f" or "\u007f" <= c <= "\u009f" for c in topic):
        raise HaRuleError(f"topic {topic!r}: control characters")
    if publish and ("+" in topic or "#" in topic):
        raise HaRuleError(f"topic {topic!r}: wildcards in a topic HA publishes to")
    for level in topic.split("/"):
        if ("+" in level or "#" in level) and level not in ("+", "#"):
            raise HaRuleError(f"topic {topic!r}: a wildcard must be a whole level")
    if "#" in topic and not topic.endswith("#"):
        raise HaRuleError(f"topic {topic!r}: # must be the last level")


def entity_ids(component: str, payload: Mapping[str, Any]) -> tuple[str, str]:
    """(HA >= 2025.10, HA < 2025.10): the entity id each makes of this payload."""
    device_name = str(payload.get("device", {}).get("name", ""))
    name = payload.get("name")
    fallback = slugify(f"{device_name} {name}" if name else device_name)
    new = old = fallback
    if "default_entity_id" in payload:
        new = slugify(str(payload["default_entity_id"]).partition(".")[2])
    if "object_id" in payload:
        old = slugify(str(payload["object_id"]))
    return f"{component}.{new}", f"{component}.{old}"


def _component(topic: str, prefix: str) -> str:
    """The component of a discovery topic HA accepts (`TOPIC_MATCHER`)."""
    if not topic.startswith(f"{prefix}/"):
        raise HaRuleError(f"{topic}: not under the discovery prefix {prefix!r}")
    m = TOPIC_MATCHER.fullmatch(topic[len(prefix) + 1 :])
    if m is None:
        raise HaRuleError(f"{topic}: HA ignores it (node and object ids [a-zA-Z0-9_-])")
    if m["component"] not in COMPONENT_KEYS:
        raise HaRuleError(f"{topic}: component {m['component']!r} unknown to these rules")
    return str(m["component"])


def _check_keys_and_topics(topic: str, component: str, payload: Mapping[str, Any]) -> None:
    unknown = set(payload) - COMMON_KEYS - COMPONENT_KEYS[component]
    if unknown:
        raise HaRuleError(f"{topic}: keys HA does not know (dropped silently): {sorted(unknown)}")
    for key, value in payload.items():
        if key.endswith("_topic") or key == "topic":
            valid_topic(str(value), publish=key in PUBLISHED_TOPIC_KEYS)


def _entity_id(topic: str, component: str, payload: Mapping[str, Any]) -> str:
    """The entity id HA makes (the same before and after 2025.10), checked."""
    if "default_entity_id" in payload:
        de = str(payload["default_entity_id"])
        if not VALID_ENTITY_ID.match(de) or de.partition(".")[0] != component:
            raise HaRuleError(
                f"{topic}: default_entity_id {de!r} is not a valid {component} entity id"
            )
        if "object_id" in payload and payload["object_id"] != de.partition(".")[2]:
            raise HaRuleError(f"{topic}: object_id and default_entity_id disagree")
    new, old = entity_ids(component, payload)
    if new != old:
        raise HaRuleError(f"{topic}: HA >= 2025.10 makes {new}, older HA {old}")
    if not VALID_ENTITY_ID.match(new):
        raise HaRuleError(f"{topic}: entity id {new!r} is not valid")
    return new


def _check_fields(topic: str, component: str, payload: Mapping[str, Any]) -> None:
    sc = payload.get("state_class")
    if sc is not None and (component != "sensor" or sc not in STATE_CLASSES):
        raise HaRuleError(f"{topic}: state_class {sc!r} on a {component}")
    cat = payload.get("entity_category")
    if cat is not None and (
        cat not in ENTITY_CATEGORIES or (component == "sensor" and cat == "config")
    ):
        raise HaRuleError(f"{topic}: entity_category {cat!r}")
    dc = payload.get("device_class")
    if component == "binary_sensor" and dc is not None and dc not in BINARY_SENSOR_CLASSES:
        raise HaRuleError(f"{topic}: binary_sensor device_class {dc!r}")
    origin = payload.get("origin")
    if origin is not None and not (isinstance(origin, dict) and origin.get("name")):
        raise HaRuleError(f"{topic}: origin needs a name")


def _device(topic: str, payload: Mapping[str, Any]) -> dict[str, Any]:
    dev = payload.get("device")
    if not isinstance(dev, dict):
        raise HaRuleError(f"{topic}: no device (the entity would belong to none)")
    ids = dev.get("identifiers")
    if not (isinstance(ids, list) and ids and all(isinstance(i, str) for i in ids)):
        raise HaRuleError(f"{topic}: device identifiers must be a non-empty list of strings")
    if not dev.get("name"):
        raise HaRuleError(f"{topic}: device without a name (HA shows it nameless)")
    return dev


def _check_unique_id(topic: str, payload: Mapping[str, Any], seen: dict[str, str]) -> None:
    uid = payload.get("unique_id")
    if not isinstance(uid, str) or not uid:
        raise HaRuleError(f"{topic}: no unique_id (the entity could not be renamed in HA)")
    if uid in seen:
        raise HaRuleError(f"{topic}: unique_id {uid!r} also on {seen[uid]}")
    seen[uid] = topic


def check_discovery(
    messages: Iterable[tuple[str, str | bytes]], prefix: str = "homeassistant"
) -> dict[str, dict[str, Any]]:
    """Check retained discovery messages (topic, JSON) against HA's rules (module docstring);
    returns entity id -> payload. Raises HaRuleError naming the topic and the rule."""
    out: dict[str, dict[str, Any]] = {}
    unique: dict[str, str] = {}
    devices: dict[str, dict[str, Any]] = {}
    via: list[tuple[str, str]] = []
    for topic, raw in messages:
        component = _component(topic, prefix)
        payload = json.loads(raw)
        if not isinstance(payload, dict):
            raise HaRuleError(f"{topic}: the payload must be a JSON object")
        _check_keys_and_topics(topic, component, payload)
        eid = _entity_id(topic, component, payload)
        if eid in out:
            raise HaRuleError(f"{topic}: entity id {eid} twice (HA would make {eid}_2)")
        _check_unique_id(topic, payload, unique)
        _check_fields(topic, component, payload)
        dev = _device(topic, payload)
        for i in dev["identifiers"]:
            if i in devices and devices[i] != dev:
                raise HaRuleError(
                    f"{topic}: device {i} described twice differently: {devices[i]} vs {dev}"
                )
            devices[i] = dev
        if "via_device" in dev:
            via.append((topic, str(dev["via_device"])))
        out[eid] = payload
    for topic, target in via:
        if target not in devices:
            raise HaRuleError(
                f"{topic}: via_device {target!r} is no device of these messages "
                "(HA would create it nameless)"
            )
    return out


def check_templates(
    entities: Mapping[str, Mapping[str, Any]], published: Sequence[tuple[str, str | bytes]]
) -> None:
    """Every `value_json.<field>` of a value template exists in each JSON payload published on
    the entity's state topic (and at least one was published)."""
    for eid, payload in entities.items():
        tpl = str(payload.get("value_template", ""))
        fields = set(re.findall(r"value_json\.(\w+)", tpl))
        topic = payload.get("state_topic")
        if not fields or topic is None:
            continue
        seen = [json.loads(p) for t, p in published if t == topic]
        if not seen:
            raise HaRuleError(f"{eid}: nothing was published on its state topic {topic}")
        for p in seen:
            missing = fields - set(p)
            if missing:
                raise HaRuleError(f"{eid}: {topic} payload lacks {sorted(missing)}: {p}")
