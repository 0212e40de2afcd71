"""The names that become MQTT topic levels and Home Assistant ids, checked here and only here.

Why one place: a device id or a monitor name with a space, a `.`, a `+` or a `#` used to pass
`config check`; Home Assistant then refused its discovery (a log warning on HA's side, no
entity), and with `+`/`#` the broker dropped every connection (a wildcard in a published
topic, the will included) while the agent went on scoring into the outbox. Every name that ends
up in a topic or an HA id is checked by one of these functions when the config is read, with
the allowed characters named in the one-line error.

Where the rules come from:
* MQTT 3.1.1 (OASIS, 4.7): `/` separates levels, `+` and `#` are wildcards that a published
  topic must not contain, NUL is forbidden; topics starting with `$` are the broker's.
* Home Assistant's discovery (homeassistant/components/mqtt/discovery.py, `TOPIC_MATCHER`):
  the node id and object id of `<prefix>/<component>/<node_id>/<object_id>/config` are
  `[a-zA-Z0-9_-]+`; a topic with any other character is ignored with a warning. The device id
  is our node id and each monitor's name starts its object ids, so both keep to that class.
* Home Assistant's entity ids (`homeassistant.util.slugify`, `core.valid_entity_id`): lower case
  letters, digits and single `_`; `slug` below is what HA makes of one of our ids, and two
  monitors whose names give the same slug would share entity ids (`check_monitor_names`).

A fleet group or release id is a topic level but no HA id: it may also hold `.` (`LEVEL`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from edge_agent.errors import ConfigError

FLEET = "fleet"

ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
"""A device id or a monitor name: one topic level and part of Home Assistant's ids."""

ID_CHARS = "letters, digits, _ and - (up to 64, first a letter or digit)"

LEVEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
"""One topic level that is no Home Assistant id (a fleet group, a prefix level, a release)."""

LEVEL_CHARS = "letters, digits, _ . - (up to 64, first a letter or digit)"

AGENT_LEVELS = frozenset({FLEET, "availability", "health", "state", "cmd", "agent"})
"""Levels the agent publishes directly under `<prefix>/<device>/` (and `agent`, which starts
the object ids of its own Home Assistant entities): no monitor may be named like one, so a
machine's subtree never mixes with the agent's."""


def check_id(value: str, field: str, what: str) -> str:
    """`value` when it is usable as a topic level and a Home Assistant id (`ID`), else a
    one-line ConfigError naming `field`, what the value is for and the allowed characters."""
    if not isinstance(value, str) or not ID.fullmatch(value):
        raise ConfigError(
            f"{field}: {value!r} cannot be {what}: expected {ID_CHARS}, because "
            "it is an MQTT topic level and part of Home Assistant's ids"
        )
    return value


def check_device(device: str, field: str) -> str:
    """`device` as a fleet member's id: `check_id`, and not the fleet's own level. A one-line
    ConfigError naming `field` (`mqtt.device_id` in a config, `DEVICE` on the command line)."""
    if not isinstance(device, str) or not ID.fullmatch(device):
        raise ConfigError(
            f"{field}: {device!r} cannot join a fleet: expected {ID_CHARS}, "
            "because it is an MQTT topic level and part of Home Assistant's ids"
        )
    if device == FLEET:
        raise ConfigError(
            f"{field}: {device!r} cannot join a fleet: it is the fleet's own "
            "topic level; choose another device id"
        )
    return device


def check_device_id(device: str) -> None:
    """`mqtt.device_id` usable in a fleet (`check_device`); the config validator calls it when
    `fleet.enabled`, the fleet client again at start."""
    check_device(device, "mqtt.device_id")


def check_monitor_name(name: str, field: str) -> str:
    """A machine's name (a monitor's `name`, or the top-level `section` that names a
    single-machine agent's one monitor): `check_id`, and not one of `AGENT_LEVELS`."""
    check_id(name, field, "a machine's name")
    if name in AGENT_LEVELS:
        raise ConfigError(
            f"{field}: {name!r} is a topic level of the agent itself (reserved: "
            f"{', '.join(sorted(AGENT_LEVELS))}); choose another name"
        )
    return name


def check_monitor_names(names: Sequence[tuple[str, str]]) -> None:
    """(field, name) pairs of one config's machines: names that differ only in case or in `_`
    vs `-` become the same Home Assistant entity id (`slug`), so they are refused too."""
    seen: dict[str, tuple[str, str]] = {}
    for field, name in names:
        key = slug(name)
        if key in seen:
            other_field, other = seen[key]
            raise ConfigError(
                f"{field}: {name!r} and {other_field}'s {other!r} give the same "
                f"Home Assistant id {key!r}; names must differ by more than case "
                "or _ and -"
            )
        seen[key] = (field, name)


def check_prefix(prefix: str, field: str) -> str:
    """An MQTT prefix (`mqtt.prefix`, `mqtt.ha_prefix`): one or more levels separated by `/`,
    each one `LEVEL` (no empty level, no leading or trailing `/`, no wildcard, nothing
    starting with `$`, which is the broker's)."""
    if not isinstance(prefix, str) or not all(LEVEL.fullmatch(p) for p in prefix.split("/")):
        raise ConfigError(
            f"{field}: expected topic levels separated by / (each {LEVEL_CHARS}), got {prefix!r}"
        )
    return prefix


def check_level(value: str, pattern: re.Pattern[str], field: str, what: str) -> str:
    """`value` when it matches `pattern` (a group or release id: one topic level), else a
    one-line ConfigError naming `field`: the operator's typo, never paho's ValueError."""
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise ConfigError(
            f"{field}: expected {what}, one MQTT topic level: {LEVEL_CHARS}; got {value!r}"
        )
    return value


_RUNS = re.compile(r"[^a-z0-9]+")


def slug(value: str) -> str:
    """What Home Assistant's `slugify` makes of one of our ids (`ID`, `LEVEL`): lower case,
    every run of other characters one `_`, none at either end."""
    return _RUNS.sub("_", value.lower()).strip("_")
