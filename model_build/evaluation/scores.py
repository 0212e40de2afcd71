"""model_build.evaluation.scores: moved from model_build.evaluation.evaluate."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from edge_agent.scoring.fusion import Choice
from model_build.data.clip import Clip


@dataclass(frozen=True)
class BackendScores:
    """Test scores of one scorer plus what its thresholds are made of."""

    scores: NDArray[np.float64]  # (N_test,), aligned with the test clips
    thresholds: dict[str, float]  # section id -> decision threshold
    normal_scores: dict[str, NDArray[np.float64]]  # section id -> cross-fitted train scores
    backends: dict[str, Any] = field(default_factory=dict)  # section id -> fitted backend
    choices: dict[str, Choice] = field(default_factory=dict)  # section id -> its weighting


def _groups(clips: Sequence[Clip]) -> dict[str, NDArray[np.intp]]:
    out: dict[str, list[int]] = {}
    for i, c in enumerate(clips):
        out.setdefault(c.section_id, []).append(i)
    return {k: np.asarray(v, dtype=np.intp) for k, v in out.items()}


def section_rows(
    train_clips: Sequence[Clip], section: str
) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """(source rows, target rows) of a section's NORMAL training clips."""
    src = [
        i
        for i, c in enumerate(train_clips)
        if c.section_id == section and c.label != "anomaly" and c.domain != "target"
    ]
    tgt = [
        i
        for i, c in enumerate(train_clips)
        if c.section_id == section and c.label != "anomaly" and c.domain == "target"
    ]
    return np.asarray(src, dtype=np.intp), np.asarray(tgt, dtype=np.intp)
