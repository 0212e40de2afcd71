"""On-device adaptation maths: recalibrate a section or enrol a new one (pure numpy).

Why this is possible without training: the backend (edge_agent.scoring.backend) has no trained
parameters. A section is, per component, a set of reference vectors (source references +
one vector per target-domain clip) with their local densities and a score normaliser, plus
a threshold; a new condition needs only new references and a refit, both computed from
embeddings that the bundle's own embedders produced on the device. The refit is
`backend.fit_section` with the bundle's own `BackendConfig`: the very function `export` used.

Calibrate (`calibrated_section`): every component's source references are kept bit for bit
(never re-clustered); the new clips' embeddings become the target references, replacing the
old target rows (`mode="replace"`, the default: the old condition is gone) or added to them
(`mode="append"`: the machine now alternates between conditions). Densities, normalisers and
the threshold are then cross-fitted over source references and target clips together, so no
clip is scored against itself.

Threshold rule. `"max"` (default): the larger of the refit threshold and the `percentile` of
the new clips' held-out scores, so at most (100 - percentile) % of the new condition's normal
clips lie above it and the source domain does not start to alarm. `"target"` uses the new
clips' held-out percentile alone (the new condition is all the device will hear).

Enrol (`enrolled_section`): a machine the model never saw gets the backend fitted on its N
clips as the source domain (`backend.fit_section`).

Teach (`taught_section`): an operator answered an alarm "not a fault" (edge_agent.adaptation.
feedback). The alarm's voting windows are normal sound of this machine that the section did not
know, so their embeddings are appended to the target references, as calibrate's `append`
does, and the section is refit the same way (source rows kept bit for bit, cross-fitted
densities, normalisers and threshold). Two differences from calibrate, both because answers
keep coming for the life of a deployment: the target references are bounded (`max_references`;
beyond it the oldest rows go, first in first out: calibration's clips are the oldest, so a
machine answered often is described by what the operator said most recently), and the
threshold rule is the section's own refit percentile (`refit`), with `max` never below that
percentile of the answered windows' held-out scores, or (`keep`) the old threshold and score
normalisers (only the references change). Calibrate's `target` rule does not apply: an answer
is a handful of windows, not a condition. BENCHMARKS.md "Teach it" measures the three.

Component weights. A bundle fitted with `weighting="pseudo"` decides each section's weights
from held-out normal clips against pseudo-anomalies (edge_agent.scoring.fusion); calibrate and
enrol decide them again the same way when given the pseudo-anomalies of their new clips
(`pseudo`: perturbed copies of the new clips, edge_agent.scoring.pseudo, embedded by the
bundle's own components), so a new condition or a new machine gets the weighting its own
sound supports. Without them (or with a `"fixed"` bundle) calibrate keeps the section's weights
and enrol uses the given ones. A classical component's deviation score (backend) is computed
from its references alone, so every refit recomputes it from the references it keeps; its
weight is decided again or kept like the component's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal, get_args

import numpy as np
from numpy.typing import NDArray

from edge_agent.arrays import AnyFloatArray
from edge_agent.config.runtime import FeedbackRule
from edge_agent.errors import choice
from edge_agent.scoring.backend import (
    BackendConfig,
    BackendError,
    Component,
    SectionBackend,
    SectionFit,
    check_percentile,
    fit_section,
)
from edge_agent.scoring.pseudo import PseudoSet

Mode = Literal["replace", "append"]
ThresholdRule = Literal["max", "target"]
MODES: tuple[Mode, ...] = get_args(Mode)
THRESHOLD_RULES: tuple[ThresholdRule, ...] = get_args(ThresholdRule)
DEFAULT_MODE: Mode = "replace"
DEFAULT_RULE: ThresholdRule = "max"
DEFAULT_PERCENTILE = 90.0
FEEDBACK_RULES: tuple[FeedbackRule, ...] = get_args(FeedbackRule)
MIN_ENROL_CLIPS = 10
"""Fewer clips than this give a 90th percentile that is the maximum of a handful of scores;
see BENCHMARKS.md "On-device adaptation" for how the threshold settles with N."""
ENROL_CLIPS = 30
"""The documented number of clips for an enrolment (`enrol --count`): fewer (but at least
`MIN_ENROL_CLIPS`) is done with a warning; at N = 10 the false-alarm rate asked to be 10 % was
26 +- 10 % on the benchmark, at 30 it was 11 +- 4 %."""
CALIBRATE_CLIPS = 10
"""The documented number of clips for a calibration (the paper's target clips per section);
fewer is done with a warning that says how many."""


@dataclass(frozen=True)
class Calibration:
    """The calibrated section and the numbers the manifest records about it."""

    backend: SectionBackend
    held_out_scores: NDArray[np.float64]  # one per new clip, cross-fitted
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


def _embeddings(
    embs: Sequence[AnyFloatArray], dims: Sequence[int], what: str
) -> list[NDArray[np.float64]]:
    if len(embs) != len(dims):
        raise BackendError(f"{what}: {len(embs)} embedding sets for {len(dims)} components")
    out = []
    for e, d in zip(embs, dims, strict=True):
        a = np.asarray(e, dtype=np.float64)
        if a.ndim != 2 or a.shape[0] == 0 or a.shape[1] != d:
            raise BackendError(f"{what}: expected (N>0, {d}) embeddings, got shape {a.shape}")
        if not np.all(np.isfinite(a)):
            raise BackendError(f"{what}: embeddings contain NaN or inf")
        out.append(a)
    if len({a.shape[0] for a in out}) != 1:
        raise BackendError(f"{what}: components disagree on the number of clips")
    return out


def calibrated_section(
    old: SectionBackend,
    target_embs: Sequence[AnyFloatArray],
    config: BackendConfig,
    mode: Mode = DEFAULT_MODE,
    percentile: float = DEFAULT_PERCENTILE,
    rule: ThresholdRule = DEFAULT_RULE,
    pseudo: PseudoSet | None = None,
    kinds: Sequence[str] | None = None,
) -> Calibration:
    """New target references from `target_embs` (per component (N, D_i)), refit, and the
    threshold rule of the module docstring. `pseudo`: pseudo-anomalies of the new clips
    (origins index `target_embs`' rows) and `kinds` the components' kinds: the weights are
    decided again (module docstring)."""
    mode = choice("mode", mode, MODES)  # callers outside the type checker, too
    rule = choice("rule", rule, THRESHOLD_RULES)
    check_percentile(percentile)
    new = _embeddings(target_embs, old.dims, "calibrate")
    n_new = new[0].shape[0]
    fit = _refit(
        old,
        new,
        mode == "append",
        None,
        replace(config, percentile=percentile),
        "calibrate",
        pseudo,
        kinds,
    )
    held = fit.held_out_target[-n_new:]
    q = float(np.percentile(held, percentile))
    thr = max(fit.backend.threshold, q) if rule == "max" else q
    return Calibration(replace(fit.backend, threshold=thr), held, q, old.threshold, rule)


def _refit(
    old: SectionBackend,
    new: Sequence[NDArray[np.float64]],
    keep_targets: bool,
    max_targets: int | None,
    config: BackendConfig,
    what: str,
    pseudo: PseudoSet | None = None,
    kinds: Sequence[str] | None = None,
) -> SectionFit:
    """`old`'s section refit with `new` (per component) as its newest target references: the
    source rows kept bit for bit, the old target rows before the new ones when `keep_targets`,
    and of all target rows only the last `max_targets` (None: all). `pseudo` (origins index
    `new`'s rows) and `kinds`: the weights decided again (module docstring)."""
    sources, targets = [], []
    for c, e in zip(old.components, new, strict=True):
        sources.append(c.references[: c.n_source])
        kept = _features(c)[c.n_source :] if keep_targets else c.references[:0]
        rows = np.concatenate([kept.astype(np.float64), e])
        targets.append(rows if max_targets is None else rows[-max_targets:])
    if sum(len(s) for s in sources[:1]) + len(targets[0]) < 2:
        raise BackendError(f"{what}: a single clip and no other reference to score it by")
    n_new = len(new[0])
    offset = len(sources[0]) + len(targets[0]) - n_new  # the new rows come last in the fit
    # weights decided again: the deviation scores too (by kind); kept: the old ones'
    keep = None if kinds is not None and pseudo is not None else _old_deviation(old)
    return fit_section(
        sources,
        targets,
        config,
        keep_source=[_lengths(c)[: c.n_source] for c in old.components],
        weights=[c.weight for c in old.components],
        pseudo=_shifted(pseudo, offset, n_new),
        kinds=kinds,
        deviation=keep,
    )


def _lengths(c: Component) -> NDArray[np.float32]:
    """Each reference's length before normalisation (1 where the bundle does not say)."""
    return np.ones(c.references.shape[0], np.float32) if c.norms is None else c.norms


def _features(c: Component) -> NDArray[np.float64]:
    """The references as the features they were computed as (unit rows times their lengths),
    so a kept target row is fitted again as the clip it came from."""
    out: NDArray[np.float64] = c.references.astype(np.float64) * _lengths(c)[:, None]
    return out


def _old_deviation(old: SectionBackend) -> list[float]:
    """The fixed weights of `old`'s deviation scores (0: none, or one the fit gave no weight:
    the same fused score)."""
    return [c.dev_weight if c.deviation else 0.0 for c in old.components]


@dataclass(frozen=True)
class Teaching:
    """A section taught by answered windows (`taught_section`) and what its record says."""

    backend: SectionBackend
    old_threshold: float
    added: int  # windows whose embeddings were appended
    dropped: int  # oldest target references dropped for the bound
    n_target: int  # target references after
    max_references: int
    refit_threshold: float  # the section's percentile of all held-out normal scores
    answered_threshold: float  # that percentile of the answered windows' held-out scores
    rule: FeedbackRule

    @property
    def threshold(self) -> float:
        return self.backend.threshold

    def record(self) -> dict[str, Any]:
        """JSON-ready numbers for the manifest's `feedback` record."""
        return {
            "old_threshold": self.old_threshold,
            "new_threshold": self.threshold,
            "refit_threshold": self.refit_threshold,
            "answered_threshold": self.answered_threshold,
            "threshold_rule": self.rule,
            "references_added": self.added,
            "references_dropped": self.dropped,
            "target_references": self.n_target,
            "max_references": self.max_references,
        }


def taught_section(
    old: SectionBackend,
    answered_embs: Sequence[AnyFloatArray],
    config: BackendConfig,
    max_references: int,
    rule: FeedbackRule = "refit",
) -> Teaching:
    """`old` with the answered windows' embeddings (per component (N, D_i)) appended to its
    target references, at most `max_references` of them kept (newest), refit; the threshold
    by `rule` (see the module docstring). The percentile is the bundle's (`config`)."""
    rule = choice("threshold_rule", rule, FEEDBACK_RULES)
    if max_references < 1:
        raise BackendError(f"max_references: expected >= 1, got {max_references}")
    new = _embeddings(answered_embs, old.dims, "feedback")
    n_new = new[0].shape[0]
    before = old.components[0].references.shape[0] - old.components[0].n_source
    fit = _refit(old, new, True, max_references, config, "feedback")
    n_target = fit.backend.components[0].references.shape[0] - fit.backend.components[0].n_source
    kept_new = min(n_new, n_target)
    held = fit.held_out_target[-kept_new:]
    answered = float(np.percentile(held, config.percentile))
    refit = fit.backend.threshold
    backend = fit.backend
    if rule == "keep":  # the old scale: the answered references only lower scores near them
        backend = replace(
            backend,
            components=tuple(
                replace(c, mean=o.mean, std=o.std, dev_mean=o.dev_mean, dev_std=o.dev_std)
                for c, o in zip(backend.components, old.components, strict=True)
            ),
        )
    thr = {"refit": refit, "max": max(refit, answered), "keep": old.threshold}[rule]
    return Teaching(
        replace(backend, threshold=thr),
        old.threshold,
        n_new,
        before + n_new - n_target,
        n_target,
        max_references,
        refit,
        answered,
        rule,
    )


def enrolled_section(
    embs: Sequence[AnyFloatArray],
    config: BackendConfig,
    percentile: float = DEFAULT_PERCENTILE,
    min_clips: int = MIN_ENROL_CLIPS,
    weights: Sequence[float] | None = None,
    pseudo: PseudoSet | None = None,
    kinds: Sequence[str] | None = None,
) -> SectionBackend:
    """The backend for a new machine: its clips are the source domain (see docstring).
    `pseudo` (origins index `embs`' rows) and `kinds`: weights decided per section."""
    arrays = [np.asarray(e) for e in embs]
    n = arrays[0].shape[0] if arrays and arrays[0].ndim == 2 else 0
    if n < min_clips:
        raise BackendError(f"enrol: need at least {min_clips} normal clips, got {n}")
    dims = [a.shape[1] for a in arrays]
    clips = _embeddings(arrays, dims, "enrol")
    empty = [np.zeros((0, d)) for d in dims]
    return fit_section(
        clips,
        empty,
        replace(config, percentile=percentile),
        weights=weights,
        pseudo=_shifted(pseudo, 0, n),
        kinds=kinds,
    ).backend


def _shifted(pseudo: PseudoSet | None, offset: int, n_new: int) -> PseudoSet | None:
    """Pseudo-anomalies of the new clips with their origins moved to the clips' rows in the
    fit (after the references that are kept)."""
    if pseudo is None:
        return None
    origin = np.asarray(pseudo.origin, dtype=int)
    if np.any((origin < 0) | (origin >= n_new)):
        raise BackendError(f"pseudo origins: expected indices of the {n_new} new clips")
    return PseudoSet(pseudo.embeddings, origin + offset)
