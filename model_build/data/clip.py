"""model_build.data.clip: moved from model_build.data.dataset."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edge_agent.audio.dcase import Domain, Label, Split, section_id
from edge_agent.errors import EdgeAgentError


class DatasetError(EdgeAgentError):
    """A data root cannot be used (missing, empty, or in an unknown layout)."""


@dataclass(frozen=True)
class Clip:
    """One audio file and everything its path and the ground truth say about it."""

    path: Path
    machine: str
    section: str  # two digits, e.g. "00"
    split: Split
    domain: Domain | None  # None: eval test clip whose ground truth is unknown
    label: Label | None  # None: unknown
    attrs: str  # attribute string from the name, "" if none

    @property
    def section_id(self) -> str:
        """Machine type + section: the unit a backend and a threshold belong to."""
        return section_id(self.machine, self.section)

    @property
    def is_anomaly(self) -> bool:
        return self.label == "anomaly"
