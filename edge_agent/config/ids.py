"""edge_agent.config.ids: moved from edge_agent.fleet.topics."""

from __future__ import annotations

import re

from edge_agent.errors import ConfigError

FLEET = "fleet"


def check_device(device: str, field: str) -> str:
    """`device` as a fleet member's id: one topic level (not empty, no `/ + #` nor NUL, which
    MQTT forbids in a topic or reads as wildcards) and not the fleet's own level. A one-line
    ConfigError naming `field` (`mqtt.device_id` in a config, `DEVICE` on the command line)."""
    if not device or any(c in device for c in "/+#\0") or device == FLEET:
        raise ConfigError(f"{field}: {device!r} cannot join a fleet (expected one topic "
                          f"level without / + #, not {FLEET!r})")
    return device


def check_device_id(device: str) -> None:
    """`mqtt.device_id` usable in a fleet (`check_device`); the config validator calls it when
    `fleet.enabled`, the fleet client again at start."""
    check_device(device, "mqtt.device_id")


def check_level(value: str, pattern: re.Pattern[str], field: str, what: str) -> str:
    """`value` when it matches `pattern` (a group or release id: one topic level), else a
    one-line ConfigError naming `field`: the operator's typo, never paho's ValueError."""
    if not pattern.fullmatch(value):
        raise ConfigError(f"{field}: expected {what} (letters, digits, _ . -; up to 64, first a "
                          f"letter or digit: it is an MQTT topic level), got {value!r}")
    return value
