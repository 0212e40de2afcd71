"""DCASE Task 2 metrics in pure numpy: AUC, pAUC, per section and domain, harmonic means.

`auc` and `pauc` reproduce scikit-learn's `roc_auc_score` (ties included) and
`roc_auc_score(max_fpr=0.1)`, the McClish-standardised partial AUC
0.5 * (1 + (A - 0.5 p^2) / (p - 0.5 p^2)), without depending on scikit-learn at run time.

Two views of a section, because the paper and the challenge count domains differently:

* **paper view** (Wilkinghoff's reference code, the numbers of the paper's tables): the AUC
  and pAUC of a domain use that domain's test clips only (its normal AND its anomalous clips);
  "mixed" uses all test clips of the section.
* **official DCASE 2022 view** (dcase2022_task2_evaluator and the baseline's test script):
  AUC(source) = source normal clips vs ALL anomalous clips of the section (both domains),
  AUC(target) likewise; the pAUC is computed once per section over all its test clips.
  The official score is the harmonic mean of {AUC_source, AUC_target, pAUC} over all
  sections, i.e. of 3 x (number of sections) values.

Per machine type, as the reference code prints them: the harmonic means over the type's
sections of the mixed AUC and of the mixed pAUC, and the mean of those two.

A domain without both normal and anomalous clips has no metric (None) and is left out of the
harmonic means; `auc`/`pauc` themselves raise `MetricError` on one-class input, as sklearn does.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from edge_agent.errors import EdgeAgentError

DOMAINS = ("source", "target", "mixed")


class MetricError(EdgeAgentError):
    """A metric is undefined for the given labels/scores (e.g. only one class present)."""


def _check(y_true: ArrayLike, y_score: ArrayLike) -> tuple[NDArray[np.bool_], NDArray[np.float64]]:
    y = np.asarray(y_true)
    s = np.asarray(y_score, dtype=np.float64)
    if y.ndim != 1 or s.ndim != 1 or y.shape != s.shape:
        raise MetricError(
            f"labels/scores: expected two 1-d arrays of equal length, got {y.shape} and {s.shape}"
        )
    if not np.all(np.isfinite(s)):
        raise MetricError("scores: expected finite numbers, got NaN or inf")
    yb = y.astype(bool)
    if yb.all() or not yb.any():
        raise MetricError(
            f"labels: need both normal (0) and anomalous (1) clips, got {int(yb.sum())} anomalous"
            f" of {yb.size}"
        )
    return yb, s


def _trapz(y: NDArray[np.float64], x: NDArray[np.float64]) -> float:
    """Trapezoid rule (numpy renamed trapz to trapezoid in 2.0; this works with both)."""
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) * 0.5))


def roc_curve(
    y_true: ArrayLike, y_score: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """(fpr, tpr, thresholds) at every distinct score, starting at (0, 0); ties form one step.

    Same points as sklearn's `roc_curve(drop_intermediate=False)` (first threshold is +inf).
    """
    y, s = _check(y_true, y_score)
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s)), y.size - 1]  # last index of each tie group
    tps = np.cumsum(y)[last].astype(np.float64)
    fps = (last + 1) - tps
    tpr = np.r_[0.0, tps / tps[-1]]
    fpr = np.r_[0.0, fps / fps[-1]]
    return fpr, tpr, np.r_[np.inf, s[last]]


def auc(y_true: ArrayLike, y_score: ArrayLike) -> float:
    """Area under the ROC curve (trapezoids, so tied scores count one half)."""
    fpr, tpr, _ = roc_curve(y_true, y_score)
    return float(_trapz(tpr, fpr))


def pauc(y_true: ArrayLike, y_score: ArrayLike, max_fpr: float = 0.1) -> float:
    """McClish-standardised partial AUC for FPR in [0, max_fpr], as sklearn computes it."""
    if not 0.0 < max_fpr <= 1.0:
        raise MetricError(f"max_fpr: expected a value in (0, 1], got {max_fpr}")
    fpr, tpr, _ = roc_curve(y_true, y_score)
    if max_fpr == 1.0:
        return float(_trapz(tpr, fpr))
    stop = int(np.searchsorted(fpr, max_fpr, "right"))
    t_end = np.interp(max_fpr, fpr[stop - 1 : stop + 1], tpr[stop - 1 : stop + 1])
    part = float(_trapz(np.r_[tpr[:stop], t_end], np.r_[fpr[:stop], max_fpr]))
    lo, hi = 0.5 * max_fpr**2, max_fpr
    return 0.5 * (1.0 + (part - lo) / (hi - lo))


def hmean(values: Iterable[float | None]) -> float | None:
    """Harmonic mean of the defined values (None skipped); 0 if any is 0; None if none."""
    v = np.array([x for x in values if x is not None], dtype=np.float64)
    if v.size == 0:
        return None
    if np.any(v <= 0.0):
        return 0.0
    return float(v.size / np.sum(1.0 / v))


@dataclass(frozen=True)
class SectionMetrics:
    """Metrics of one section (paper view per domain, plus the official DCASE 2022 values)."""

    section: str
    auc: dict[str, float | None]  # paper view: source / target / mixed
    pauc: dict[str, float | None]
    official_auc_source: float | None  # source normal vs all anomalies
    official_auc_target: float | None
    official_pauc: float | None  # all clips of the section
    counts: dict[str, int] = field(default_factory=dict)  # e.g. "source_normal": 50

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _maybe(fn: Any, y: NDArray[np.bool_], s: NDArray[np.float64], **kw: Any) -> float | None:
    if y.size == 0 or y.all() or not y.any():
        return None
    return float(fn(y, s, **kw))


def section_metrics(
    section: str,
    labels: ArrayLike,
    domains: Sequence[str | None],
    scores: ArrayLike,
    max_fpr: float = 0.1,
) -> SectionMetrics:
    """All metrics of one section from per-clip labels (1 = anomaly), domains and scores."""
    y = np.asarray(labels).astype(bool)
    s = np.asarray(scores, dtype=np.float64)
    d = np.asarray([x or "" for x in domains])
    if not (y.shape == s.shape == d.shape) or y.ndim != 1:
        raise MetricError(
            f"{section}: labels, domains and scores must have equal length "
            f"({y.shape}, {d.shape}, {s.shape})"
        )
    if y.all() or not y.any():
        raise MetricError(
            f"{section}: need both normal and anomalous test clips, got {int(y.sum())} anomalous"
            f" of {y.size}"
        )
    a: dict[str, float | None] = {}
    p: dict[str, float | None] = {}
    for dom in DOMAINS:
        m = np.ones_like(y) if dom == "mixed" else d == dom
        a[dom] = _maybe(auc, y[m], s[m])
        p[dom] = _maybe(pauc, y[m], s[m], max_fpr=max_fpr)
    off = {}
    for dom in ("source", "target"):
        m = (d == dom) | y
        off[dom] = _maybe(auc, y[m], s[m]) if np.any((d == dom) & ~y) else None
    counts = {
        f"{dom}_{lab}": int(np.sum((d == dom) & (y == (lab == "anomaly"))))
        for dom in ("source", "target")
        for lab in ("normal", "anomaly")
    }
    return SectionMetrics(section, a, p, off["source"], off["target"], p["mixed"], counts)


@dataclass(frozen=True)
class Summary:
    """Harmonic means over sections, in the paper view and the official DCASE 2022 score,
    and per machine type (`machines`: type -> auc, pauc, mean; mixed domain)."""

    auc: dict[str, float | None]
    pauc: dict[str, float | None]
    official_score: float | None
    n_sections: int
    machines: dict[str, dict[str, float | None]] = field(default_factory=dict)
    # the challenge year whose rule `official_score` follows (model_build.evaluation.official;
    # `summarise` alone gives the 2022 rule, evaluate_scores the data's year)
    year: str = "2022"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def machine_type(section: str) -> str:
    """`ToyCar_section_00` -> `ToyCar`."""
    return section.rsplit("_section_", 1)[0]


def per_machine(sections: Sequence[SectionMetrics]) -> dict[str, dict[str, float | None]]:
    """The reference code's per-type figures: hmean over the type's sections of the mixed
    AUC and of the mixed pAUC, and their mean ("mean of AUC and pAUC for category")."""
    out: dict[str, dict[str, float | None]] = {}
    for machine in sorted({machine_type(m.section) for m in sections}):
        mine = [m for m in sections if machine_type(m.section) == machine]
        a, p = hmean(m.auc["mixed"] for m in mine), hmean(m.pauc["mixed"] for m in mine)
        out[machine] = {
            "auc": a,
            "pauc": p,
            "mean": None if a is None or p is None else (a + p) / 2,
        }
    return out


def summarise(sections: Sequence[SectionMetrics]) -> Summary:
    """Harmonic means per domain over the sections; official score over 3 values per section."""
    return Summary(
        auc={dom: hmean(m.auc[dom] for m in sections) for dom in DOMAINS},
        pauc={dom: hmean(m.pauc[dom] for m in sections) for dom in DOMAINS},
        official_score=hmean(
            v
            for m in sections
            for v in (m.official_auc_source, m.official_auc_target, m.official_pauc)
        ),
        n_sections=len(sections),
        machines=per_machine(sections),
    )
