"""On-device adaptation maths: recalibrate a section or enrol a new one (pure numpy).

Why this is possible without training: the paper's backend (Wilkinghoff, ICASSP 2023) has no
trained parameters. A section is a set of reference vectors (k-means centres of the source
domain + one vector per target-domain clip) and a threshold, so a new condition needs only
new reference vectors and a new threshold, both computed from embeddings that the bundle's
own TFLite model produced on the device.

Calibrate (`calibrated_section`): the k-means source centres are kept bit for bit; the new
clips' embeddings become the target references, replacing the old target rows
(`mode="replace"`, the default: the old condition is gone) or added to them
(`mode="append"`: the machine now alternates between conditions).

Threshold after calibration. Every new clip is scored LEAVE-ONE-OUT, against the source
centres plus the OTHER target references (the other new clips, and in append mode the old
target rows), so no clip is scored against itself (its distance would be 0, see
`backend.leave_out_threshold`). The bundle keeps no source embeddings, only centres, so the
source clips' held-out scores cannot be recomputed; the old threshold stands for them. Rule
`"max"` (default): new threshold = max(old threshold, `percentile` of the held-out scores).
Adding target references can only lower a source clip's score, so the source domain's false
alarm rate does not rise, and at most (100 - percentile) % of the new condition's normal
clips lie above the threshold. Rule `"target"` uses the held-out percentile alone (the new
condition is all the device will hear; may lower the threshold).

Enrol (`enrolled_section`): a machine the model never saw gets the paper's backend fitted on
its N clips as the source domain, threshold cross-fitted (`backend.fit_section`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np
from numpy.typing import NDArray

from .backend import BackendError, SectionBackend, cosine_scores, fit_section, l2_normalise
from .errors import choice

Mode = Literal["replace", "append"]
ThresholdRule = Literal["max", "target"]
MODES: tuple[Mode, ...] = get_args(Mode)
THRESHOLD_RULES: tuple[ThresholdRule, ...] = get_args(ThresholdRule)
DEFAULT_MODE: Mode = "replace"
DEFAULT_RULE: ThresholdRule = "max"
DEFAULT_PERCENTILE = 90.0
MIN_ENROL_CLIPS = 10
"""Fewer clips than this give a 90th percentile that is the maximum of a handful of scores;
see BENCHMARKS.md "On-device adaptation" for how the threshold settles with N."""

@dataclass(frozen=True)
class Calibration:
    """The calibrated section and the numbers the manifest records about it."""

    backend: SectionBackend
    held_out_scores: NDArray[np.float64]  # one per new clip, leave-one-out
    held_out_threshold: float  # percentile of held_out_scores
    old_threshold: float
    rule: ThresholdRule

    @property
    def threshold(self) -> float:
        return self.backend.threshold

    def record(self) -> dict[str, Any]:
        """JSON-ready numbers for the manifest's `calibration` record."""
        return {
            "old_threshold": self.old_threshold,
            "new_threshold": self.threshold,
            "held_out_threshold": self.held_out_threshold,
            "held_out_scores": [round(float(s), 6) for s in self.held_out_scores],
            "threshold_rule": self.rule,
        }


def held_out_target_scores(
    fixed_refs: NDArray[Any], new_emb: NDArray[Any]
) -> NDArray[np.float64]:
    """Score of each new clip against `fixed_refs` + all OTHER new clips (leave-one-out)."""
    new = l2_normalise(np.asarray(new_emb))
    out = np.empty(new.shape[0])
    for i in range(new.shape[0]):
        refs = np.concatenate([np.asarray(fixed_refs, np.float32).reshape(-1, new.shape[1]),
                               np.delete(new, i, axis=0)])
        if refs.shape[0] == 0:
            raise BackendError("calibrate: a single clip and no other reference to score it by")
        out[i] = float(cosine_scores(new[i : i + 1], refs)[0])
    return out


def calibrated_section(
    old: SectionBackend,
    target_emb: NDArray[Any],
    mode: Mode = DEFAULT_MODE,
    percentile: float = DEFAULT_PERCENTILE,
    rule: ThresholdRule = DEFAULT_RULE,
) -> Calibration:
    """New target references from `target_emb` (N, D) and the threshold rule of the docstring."""
    mode = choice("mode", mode, MODES)  # callers outside the type checker, too
    rule = choice("rule", rule, THRESHOLD_RULES)
    if not 0.0 <= percentile <= 100.0:
        raise BackendError(f"percentile: expected a value in [0, 100], got {percentile}")
    emb = np.asarray(target_emb, dtype=np.float64)
    dim = old.references.shape[1]
    if emb.ndim != 2 or emb.shape[0] == 0 or emb.shape[1] != dim:
        raise BackendError(f"calibrate: expected (N>0, {dim}) embeddings, got shape {emb.shape}")
    if not np.all(np.isfinite(emb)):
        raise BackendError("calibrate: embeddings contain NaN or inf")
    new = l2_normalise(emb)
    src = old.references[: old.n_source]
    kept = old.references if mode == "append" else src
    held = held_out_target_scores(kept, new)
    q = float(np.percentile(held, percentile))
    thr = max(old.threshold, q) if rule == "max" else q
    refs = np.concatenate([kept, new]).astype(np.float32)
    return Calibration(SectionBackend(refs, old.n_source, thr), held, q, old.threshold, rule)


def enrolled_section(
    emb: NDArray[Any],
    n_clusters: int = 16,
    percentile: float = DEFAULT_PERCENTILE,
    seed: int = 0,
    min_clips: int = MIN_ENROL_CLIPS,
) -> SectionBackend:
    """The paper's backend for a new machine: its clips are the source domain (see docstring)."""
    e = np.asarray(emb)
    if e.ndim != 2 or e.shape[0] < min_clips:
        raise BackendError(
            f"enrol: need at least {min_clips} normal clips, got "
            f"{e.shape[0] if e.ndim == 2 else 0}"
        )
    return fit_section(e, np.zeros((0, e.shape[1]), np.float32), n_clusters, seed, percentile)
