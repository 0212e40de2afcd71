"""The `fleet:` section of the agent's YAML: bundle releases over MQTT and remote commands.

Off by default: joining a fleet means accepting model versions and commands from the broker,
a decision for the site. With it on, the agent installs releases published for its `group`
(signed by a key in `trusted_keys`; see docs/fleet.md) and answers commands on its own command
topic. Every wait the fleet client makes has a bound here, so a broker that stalls half-way
through a release, or a command that never ends, costs at most that long.
"""

from __future__ import annotations

from dataclasses import dataclass

from edge_agent.config.fields import bounded, check_fields
from edge_agent.config.ids import LEVEL, check_level

GROUP = LEVEL
"""A group name: one MQTT topic level (`edge_agent.config.ids.LEVEL`)."""


@dataclass(frozen=True)
class FleetSettings:
    """The `fleet:` section (edge_agent.fleet.client.FleetClient reads it)."""

    enabled: bool = False
    """Install bundle releases for `group` and answer remote commands."""
    group: str = "default"
    """The device group whose releases this agent installs (a topic level)."""
    allow_unsigned: bool = False
    """Without trusted_keys, still install releases (test rigs only)."""
    max_bundle_mb: float = bounded(64.0, gt=0, le=4096)
    """Refuse a release announced larger."""
    release_timeout_seconds: float = bounded(300.0, gt=0, le=86400)
    """Give up a release still incomplete after this."""
    health_timeout_seconds: float = bounded(60.0, gt=0, le=3600)
    """Wait this long for the agent to run an install."""
    command_ttl_seconds: float = bounded(300.0, gt=0, le=86400)
    """Refuse a command issued longer ago than this."""
    command_timeout_seconds: float = bounded(900.0, gt=0, le=86400)
    """A command running longer gets a timed-out reply."""
    max_record_seconds: float = bounded(600.0, gt=0, le=600)
    """Longest `record` command (at most 600: in memory) float32 held in memory, copied once when
    joined: 77 MB at 600 s."""
    max_recordings: int = bounded(50, ge=1, le=10000)
    """`record` keeps this many WAV files per monitor."""
    remember_commands: int = bounded(1000, ge=10, le=100000)
    """Command ids kept on disk to answer replays."""

    def __post_init__(self) -> None:
        check_fields(self, "fleet")
        check_level(self.group, GROUP, "fleet.group", "a group name")
