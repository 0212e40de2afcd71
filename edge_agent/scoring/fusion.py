"""How much each component counts, decided per section from its normal clips (pure numpy).

Why. A fixed rule (every kind weighs one: `backend.view_weights`) was chosen on three synthetic
families and on held-out data it made the system worse than the learned model alone: band
statistics and rhythm help on machines whose faults change the spectral balance or the
rhythm and whose normal sound does not, and only add noise elsewhere. No anomaly labels exist
in a plant, so the decision has to come from normal clips alone:

1. every component's cross-fitted scores of the section's normal clips (each clip scored by a
   backend that never saw it: `backend.cross_fit_scores`), standardised as the fit does;
2. the same component's scores of pseudo-anomalies (edge_agent.scoring.pseudo: perturbed
   copies of the held-out clips, scored in the same fold), standardised alike;
3. per GROUP of components (the learned models together, each classical view), the weights of
   a linear discriminant between the two: w = (S + ridge I)^-1 (mean pseudo - mean normal),
   S the within-class covariance of the groups' scores. It gives a view weight in proportion
   to how far it moves pseudo-anomalies beyond its own normal scatter, and takes the
   correlation between views into account (a view that only repeats another's evidence adds
   little). Negative weights are set to 0 (a view that scores pseudo-anomalies as MORE normal
   has nothing to add to a sum of "more anomalous" scores); the largest weight is scaled to 1;
4. the result is blended with the anchor, the learned model alone: w = (1 - anchor) w_lda +
   anchor (1, 0, ..., 0), rescaled to a largest weight of 1;
5. the section then fuses each standardised score through `evidence` (the backend's
   `transform`; default the Gaussian surprise -ln P(Z > z)): a component that finds a clip
   MORE typical than its normal clips no longer cancels another's evidence of a fault. The
   weights are decided on the standardised scores themselves, not on the transformed ones.

The anchor and the ridge are what keep the rule honest: pseudo-anomalies are only a proxy for
real faults and a discriminant over ~40 + 48 scores is noisy; the learned model is the
component that held up best on data the project did not make (issue 19). A discriminant
weight (closed form) was preferred to ranking a grid of weightings by their pseudo-anomaly
AUC: the maximum over candidates picked noise and scored 0.4 points lower on the suite
(BENCHMARKS.md "Fusion decided per section").
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
from numpy.typing import NDArray

from edge_agent.arrays import AnyFloatArray

Transform = Literal["none", "softplus", "surprise"]
TRANSFORMS: tuple[str, ...] = get_args(Transform)
ANCHOR_KIND = "model"
MIN_NORMAL = 8
"""Fewer held-out normal clips than this decide nothing: a discriminant over a handful of
clips is noise, and the section keeps the anchor alone (the learned model), or equal weights
when it has no learned model."""


@dataclass(frozen=True)
class Choice:
    """What the rule decided for one section, and on what evidence."""

    weights: tuple[float, ...]
    """Per component (the models of a group share their group's weight equally)."""
    groups: tuple[str, ...]
    group_weights: tuple[float, ...]
    separation: tuple[float, ...]
    """Each group's own AUC, held-out normal clips vs pseudo-anomalies."""
    fused: float
    """The chosen weighting's AUC on the same scores, each through the `transform` the section
    fuses them with (`evidence`)."""


def evidence(z: AnyFloatArray, transform: Transform) -> NDArray[np.float64]:
    """Standardised scores as the fusion weighs them (`backend.BackendConfig.transform`): as
    they are ("none"), softplus(z) = ln(1 + e^z), or the Gaussian surprise -ln P(Z > z); no
    underflow, and finite wherever z^2 is (|z| < 1e154; a standardised score is never near
    that)."""
    a = np.asarray(z, dtype=np.float64)
    if transform == "none":
        return a
    if transform == "softplus":
        return np.asarray(np.logaddexp(0.0, a))
    if transform == "surprise":
        return gaussian_surprise(a)
    raise ValueError(f"transform: expected one of {TRANSFORMS}, got {transform!r}")


_SURPRISE_TAIL = 30.0
"""Above this z, P(Z > z) (about 5e-198) nears float64's smallest numbers: the asymptotic
series takes over, which agrees with the exact value to 1e-12 there."""


def gaussian_surprise(z: NDArray[np.float64]) -> NDArray[np.float64]:
    """-ln P(Z > z), Z standard normal, elementwise (the standard library's erfc, one value at
    a time: a window has one score per component, and numpy's per-call overhead on arrays that
    small cost more than the arithmetic; the device imports no scipy)."""
    flat = z.reshape(-1).tolist()
    out = np.fromiter((_surprise(v) for v in flat), dtype=np.float64, count=len(flat))
    result: NDArray[np.float64] = out.reshape(z.shape)
    return result


def _surprise(v: float) -> float:
    """-ln P(Z > v) for one v. Below 0 from the lower tail's mass, -ln(1 - P(Z < v)), exact
    where P(Z > v) is within rounding of 1 (+ 0.0: ln 1 would give -0.0); above 0 from
    P(Z > v) = erfc(v / sqrt 2) / 2; above `_SURPRISE_TAIL`, where that nears float64's
    smallest numbers, the asymptotic series of Mills' ratio:
    v^2/2 + ln(v sqrt(2 pi)) - ln(1 - 1/v^2 + 3/v^4)."""
    if v > _SURPRISE_TAIL:
        return (
            0.5 * v * v
            + math.log(v * math.sqrt(2.0 * math.pi))
            - math.log1p(-1.0 / (v * v) + 3.0 / (v * v * v * v))
        )
    root2 = math.sqrt(2.0)
    if v < 0.0:
        return 0.0 - math.log1p(-0.5 * math.erfc(-v / root2))
    return -math.log(0.5 * math.erfc(v / root2))


def auc(negatives: NDArray[np.floating], positives: NDArray[np.floating]) -> float:
    """P(positive > negative) + P(tie) / 2 (the Mann-Whitney AUC); 0.5 when either is empty."""
    neg = np.asarray(negatives, dtype=np.float64).reshape(-1)
    pos = np.asarray(positives, dtype=np.float64).reshape(-1)
    if neg.size == 0 or pos.size == 0:
        return 0.5
    both = np.concatenate([neg, pos])
    order = np.argsort(both, kind="mergesort")
    ranks = np.empty(both.size)
    ranks[order] = np.arange(1, both.size + 1)
    sorted_vals = both[order]  # average ranks over ties
    _, first, counts = np.unique(sorted_vals, return_index=True, return_counts=True)
    for f, c in zip(first, counts, strict=True):
        if c > 1:
            ranks[order[f : f + c]] = f + (c + 1) / 2
    u = ranks[neg.size :].sum() - pos.size * (pos.size + 1) / 2
    return float(u / (neg.size * pos.size))


def groups_of(kinds: Sequence[str]) -> list[str]:
    """Distinct kinds in order of first appearance (the models of an ensemble are one group)."""
    return list(dict.fromkeys(kinds))


def discriminant(
    normal: NDArray[np.float64], pseudo: NDArray[np.float64], ridge: float
) -> NDArray[np.float64]:
    """(G,) non-negative discriminant weights of G score rows, largest 1 (all 0 when no row
    moves pseudo-anomalies up). `normal` (G, n), `pseudo` (G, m)."""
    diff = pseudo.mean(axis=1) - normal.mean(axis=1)
    # within-class covariance: the scatter of each class around its own mean, not the
    # distance between the classes (which would penalise exactly the view that separates)
    within = 0.5 * (np.atleast_2d(np.cov(normal)) + np.atleast_2d(np.cov(pseudo)))
    cov = within + ridge * np.eye(normal.shape[0])
    w = np.maximum(np.linalg.solve(cov, diff), 0.0)
    top = float(w.max())
    out: NDArray[np.float64] = w / top if top > 0 else np.zeros_like(w)
    return out


def choose_weights(
    normal: Sequence[NDArray[np.floating]],
    pseudo: Sequence[NDArray[np.floating]],
    kinds: Sequence[str],
    anchor: float,
    ridge: float,
    transform: Transform = "none",
) -> Choice:
    """The weighting of the module docstring.

    `normal[i]` / `pseudo[i]`: component i's standardised scores of the held-out normal clips
    and of the pseudo-anomalies (the same clips in the same order for every component);
    `kinds[i]`: its kind ("model" for learned embeddings: they form the anchor group). The
    weights are decided on the standardised scores themselves; `transform` (`evidence`) only
    shapes the reported separation of the fused scores, as the section fuses them (deciding on
    the transformed scores measured lower: BENCHMARKS.md "One-sided evidence").
    """
    if not (len(normal) == len(pseudo) == len(kinds)) or not kinds:
        raise ValueError(
            f"fusion: {len(normal)} normal, {len(pseudo)} pseudo score sets for "
            f"{len(kinds)} components"
        )
    if not 0.0 <= anchor <= 1.0:
        raise ValueError(f"fusion anchor: expected a number in [0, 1], got {anchor}")
    if ridge < 0:
        raise ValueError(f"fusion ridge: expected >= 0, got {ridge}")
    groups = groups_of(kinds)
    members = [[i for i, k in enumerate(kinds) if k == g] for g in groups]
    # a group's score: its members' mean (an ensemble votes once)
    g_norm = np.stack(
        [np.mean([np.asarray(normal[i], np.float64) for i in m], axis=0) for m in members]
    )
    g_pseudo = np.stack(
        [np.mean([np.asarray(pseudo[i], np.float64) for i in m], axis=0) for m in members]
    )
    base = (
        np.asarray([1.0 if g == ANCHOR_KIND else 0.0 for g in groups])
        if ANCHOR_KIND in groups
        else np.ones(len(groups))
    )
    sep = tuple(auc(n, p) for n, p in zip(g_norm, g_pseudo, strict=True))
    if g_norm.shape[1] < MIN_NORMAL or g_pseudo.shape[1] < 2:
        gw = base
    else:
        w = discriminant(g_norm, g_pseudo, ridge)
        if not w.any():
            w = base
        gw = (1.0 - anchor) * w + anchor * base
        gw = gw / gw.max()
    gw = np.round(gw, 6)
    weights = [0.0] * len(kinds)
    for g, m in enumerate(members):
        for i in m:
            weights[i] = float(gw[g]) / len(m)
    w_rows = np.asarray(weights)[:, None]
    fused = auc(
        (w_rows * [evidence(x, transform) for x in normal]).sum(axis=0),
        (w_rows * [evidence(x, transform) for x in pseudo]).sum(axis=0),
    )
    return Choice(tuple(weights), tuple(groups), tuple(float(x) for x in gw), sep, fused)
