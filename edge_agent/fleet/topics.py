"""The fleet's MQTT topics, in one place: the operator and every agent build them here.

Under the agent's topic prefix (`mqtt.prefix`, e.g. `edge-asd` or `listening/site-a`):

| topic                                          | retained | by       | payload            |
|------------------------------------------------|----------|----------|--------------------|
| `<prefix>/fleet/<group>/bundle/manifest`       | yes      | operator | release / rollback notice |
| `<prefix>/fleet/<group>/bundle/chunk/<id>/<i>` | yes      | operator | archive bytes      |
| `<prefix>/<device>/fleet/state`                | yes      | device   | what it runs       |
| `<prefix>/<device>/cmd`                        | no       | operator | a command          |
| `<prefix>/<device>/cmd/reply`                  | no       | device   | its reply          |

All QoS 1; JSON payloads but the chunks (edge_agent.fleet.messages).

Why retained releases: a device that is off during a rollout finds the group's release on the
broker when it connects and catches up. Why `fleet` as a level after the prefix: the device
subtree (`<prefix>/<device>/...`) and the group subtree never overlap, so broker ACLs can give
each device its own subtree and the operator alone the fleet's (deploy/mosquitto/acl); a device
may therefore not be named `fleet`.
"""

from __future__ import annotations

import re

from edge_agent.config.ids import FLEET

RELEASE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
"""A release id: one topic level."""


def group_base(prefix: str, group: str) -> str:
    return f"{prefix}/{FLEET}/{group}/bundle"


def manifest_topic(prefix: str, group: str) -> str:
    """The group's retained release manifest (or rollback notice)."""
    return f"{group_base(prefix, group)}/manifest"


def chunk_topic(prefix: str, group: str, release: str, index: int | None = None) -> str:
    """Chunk `index` of `release` (None: the `+` filter over all its chunks)."""
    return f"{group_base(prefix, group)}/chunk/{release}/{'+' if index is None else index}"


def state_topic(prefix: str, device: str) -> str:
    return f"{prefix}/{device}/{FLEET}/state"


def command_topic(prefix: str, device: str) -> str:
    return f"{prefix}/{device}/cmd"


def reply_topic(prefix: str, device: str) -> str:
    return f"{prefix}/{device}/cmd/reply"
