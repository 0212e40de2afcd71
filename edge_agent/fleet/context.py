"""edge_agent.fleet.context: moved from edge_agent.fleet.remote."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge_agent.config.fleet import FleetSettings
from edge_agent.fleet.control import AgentControl

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from edge_agent.bundle.signing import TrustedKey


RECORDING = re.compile(r"(?P<monitor>.+)-(?P<stamp>\d{8}T\d{6}\d{3}Z)\.wav")
"""`<monitor>-<UTC time with milliseconds>.wav`: sorted by name = sorted by time."""


@dataclass(frozen=True)
class Context:
    """What a command may use: the agent, the settings, the keys, and the client's own
    rollback and state (so a rollback by command and by notice is the same code)."""

    control: AgentControl
    settings: FleetSettings
    keys: Callable[[], Sequence[TrustedKey]]  # the agent's trusted keys as they are now
    recordings: Path
    rollback: Callable[[], dict[str, Any]]
    fleet_state: Callable[[], dict[str, Any]]
    seal_key: Callable[[], Ed25519PrivateKey | None]  # this device's key for what it adapts

    @property
    def trusted(self) -> Sequence[TrustedKey]:
        """The trusted keys now (re-read: the agent re-reads its key files at each reload)."""
        return self.keys()


def recordings_of(folder: Path, monitor: str) -> list[Path]:
    """The monitor's recordings in `folder`, oldest first."""
    if not folder.is_dir():
        return []
    return sorted(
        p
        for p in folder.iterdir()
        if (m := RECORDING.fullmatch(p.name)) and m["monitor"] == monitor
    )
