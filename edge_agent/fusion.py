"""How much each component counts, decided per section from its normal clips (pure numpy).

Why. A fixed rule (every kind weighs one: `backend.view_weights`) was chosen on three synthetic
families and on held-out data it made the system worse than the learned model alone: band
statistics and rhythm help on machines whose faults change the spectral balance or the
rhythm and whose normal sound does not, and only add noise elsewhere. No anomaly labels exist
in a plant, so the decision has to come from normal clips alone:

1. every component's cross-fitted scores of the section's normal clips (each clip scored by a
   backend that never saw it: `backend.cross_fit_scores`), standardised as the fit does;
2. the same component's scores of pseudo-anomalies (edge_agent.pseudo: perturbed copies of the
   held-out clips, scored in the same fold), standardised alike;
3. a small grid of candidate weightings (each GROUP of components, the learned models together
   and each classical view, at 0, 1/2 or 1, rescaled so the largest is 1) is ranked by how well
   the fused score separates held-out normal clips from pseudo-anomalies (AUC), minus a
   penalty `shrink` per unit of distance from the anchor, the learned model alone.

The anchor and the penalty are what keep the rule honest: pseudo-anomalies are only a proxy
for real faults, an AUC over ~40 + 48 scores carries a few points of noise, and the learned
model is the component that held up best on data the project did not make (issue 19). So a
classical view has to EARN its weight by a clear margin on this machine's own data, and a
section where nothing beats the model by that margin scores with the model alone.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

LEVELS = (0.0, 0.5, 1.0)
"""Weights a group can take (relative to the largest)."""
ANCHOR_KIND = "model"
MIN_NORMAL = 8
"""Fewer held-out normal clips than this decide nothing: an AUC over a handful of clips is
noise, and the section keeps the anchor alone (the learned model), or equal weights when it
has no learned model."""


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
    """The chosen weighting's AUC on the same scores."""


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


def candidates(n_groups: int, anchor: int | None) -> list[tuple[float, ...]]:
    """Every weighting of the groups on LEVELS, rescaled so its largest weight is 1, without
    duplicates; the anchor alone (when there is one) comes first, so it wins ties."""
    seen: dict[tuple[float, ...], None] = {}
    if anchor is not None:
        seen[tuple(1.0 if g == anchor else 0.0 for g in range(n_groups))] = None
    for w in itertools.product(LEVELS, repeat=n_groups):
        top = max(w)
        if top > 0:
            seen[tuple(round(x / top, 6) for x in w)] = None
    return list(seen)


def choose_weights(
    normal: Sequence[NDArray[np.floating]],
    pseudo: Sequence[NDArray[np.floating]],
    kinds: Sequence[str],
    shrink: float,
) -> Choice:
    """The weighting of the module docstring.

    `normal[i]` / `pseudo[i]`: component i's standardised scores of the held-out normal clips
    and of the pseudo-anomalies (the same clips in the same order for every component);
    `kinds[i]`: its kind ("model" for learned embeddings: they form the anchor group).
    """
    if not (len(normal) == len(pseudo) == len(kinds)) or not kinds:
        raise ValueError(f"fusion: {len(normal)} normal, {len(pseudo)} pseudo score sets for "
                         f"{len(kinds)} components")
    if shrink < 0:
        raise ValueError(f"fusion shrink: expected >= 0, got {shrink}")
    groups = groups_of(kinds)
    members = [[i for i, k in enumerate(kinds) if k == g] for g in groups]
    # a group's score: its members' mean (an ensemble votes once)
    g_norm = [np.mean([np.asarray(normal[i], np.float64) for i in m], axis=0) for m in members]
    g_pseudo = [np.mean([np.asarray(pseudo[i], np.float64) for i in m], axis=0) for m in members]
    anchor = groups.index(ANCHOR_KIND) if ANCHOR_KIND in groups else None
    sep = tuple(auc(n, p) for n, p in zip(g_norm, g_pseudo, strict=True))
    best: tuple[float, tuple[float, ...], float] | None = None
    pool = candidates(len(groups), anchor)
    if g_norm[0].size < MIN_NORMAL:
        pool = [pool[0]] if anchor is not None else [tuple(1.0 for _ in groups)]
    for w in pool:
        fused_n = sum(x * s for x, s in zip(w, g_norm, strict=True))
        fused_p = sum(x * s for x, s in zip(w, g_pseudo, strict=True))
        a = auc(np.asarray(fused_n), np.asarray(fused_p))
        dist = sum(abs(x - (1.0 if g == anchor else 0.0)) for g, x in enumerate(w)) \
            if anchor is not None else 0.0
        value = a - shrink * dist
        if best is None or value > best[0] + 1e-12:
            best = (value, w, a)
    assert best is not None
    _, gw, fused_auc = best
    weights = [0.0] * len(kinds)
    for g, m in enumerate(members):
        for i in m:
            weights[i] = gw[g] / len(m)
    return Choice(tuple(weights), tuple(groups), tuple(gw), sep, fused_auc)
