"""The backend: embeddings -> one anomaly score per clip, per section (numpy only).

A section's backend has no trained parameters, which is why `export`, `evaluate` and the
device's `calibrate`/`enrol` can all fit it with the SAME function, `fit_section`:

* one COMPONENT per embedding space (each model of an ensemble, and the classical band
  statistics of edge_agent.scoring.classical): reference vectors and, per reference, a local
  density;
* a component's raw score is the minimum over its references of the cosine distance divided
  by that reference's local density (`density_k` > 0); the paper's backend is the special
  case of k-means source centres + target clips and no density (`PAPER_BACKEND`);
* a classical component also has a DEVIATION score (`BackendConfig.deviation`): the largest
  |z| of the window's features against the per-feature mean and spread of the component's
  references (`feature_deviation`), because a fault that moves a FEW of a 180- or 511-dim
  vector's features (one band's swing at one pace, a few fine-spectrum bins) turns the vector
  little and the cosine distance hardly sees it. It is computed from the references and their
  lengths before normalisation (`Component.norms`) alone, so every refit on the device
  (calibrate, enrol, feedback) recomputes it exactly;
* each score is standardised by the mean and standard deviation of its CROSS-FITTED scores
  on the section's normal training clips, and the standardised scores are summed with weights
  (`view_weights`: the models of an ensemble share one vote, each classical view has one,
  shared half and half by its cosine and deviation scores) into the component's score, and
  the components' scores summed or their maximum taken, so that models and features on
  different scales can be fused and one threshold serves the sum;
* the weights are decided per section (`weighting="pseudo"`, edge_agent.scoring.fusion) from
  the section's normal clips alone (a deviation score in its component's group): cross-fitted
  scores of held-out normal clips against pseudo-anomalies (edge_agent.scoring.pseudo:
  perturbed copies of those clips), anchored on the learned model, so a component that does
  not separate this machine's sounds gets little or no weight; `weighting="fixed"` keeps the
  given weights (`view_weights`);
* the threshold is a percentile of the fused cross-fitted scores.

Why the density. Source references are many and dense, target references (the ~10 clips of
a new condition) few and spread out, so raw distances to target references are larger and a
normal target clip looks anomalous. Dividing each distance by the mean distance of the
reference to its `density_k` nearest other references (Wilkinghoff et al., "Local
density-based anomaly score normalization for domain generalization", 2025) puts sparse and
dense regions of normal sound on one scale, with no domain labels.

Why cross-fitting. Scoring the clips the references were built from is biased low (a clip IS
one of the references: distance 0). `cross_fit_scores` splits the normal clips into K folds
(source and target each spread over the folds), fits on the other K-1 folds and scores the
held-out one, so every normal clip is scored as a new recording in the field would be.
With fewer clips than folds this becomes leave-one-out; with a single clip no held-out score
exists and the threshold is +inf (never alarm) rather than a made-up number.

The paper's Table 6 cosine variants ("source": k-means centres only, "target": target
references only, "sum": source distance + target distance) remain as `variant` for the
ablations; the default "joint" is the minimum over both.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from functools import cached_property
from typing import Any, Literal, cast, get_args

import numpy as np
from numpy.typing import NDArray

from edge_agent.arrays import AnyFloatArray
from edge_agent.errors import EdgeAgentError
from edge_agent.scoring.fusion import (
    ANCHOR_KIND,
    MIN_NORMAL,
    TRANSFORMS,
    Choice,
    Transform,
    choose_weights,
    evidence,
)
from edge_agent.scoring.pseudo import FIRST_KINDS, PERTURB, PseudoSet
from edge_agent.scoring.pseudo import KINDS as PSEUDO_KINDS

Variant = Literal["joint", "source", "target", "sum"]
References = Literal["all", "kmeans"]
Fusion = Literal["sum", "max"]
Weighting = Literal["fixed", "pseudo"]
COSINE_VARIANTS: tuple[Variant, ...] = get_args(Variant)
REFERENCE_KINDS: tuple[str, ...] = get_args(References)
FUSIONS: tuple[str, ...] = get_args(Fusion)
WEIGHTINGS: tuple[str, ...] = get_args(Weighting)
_MIN_DENSITY = 1e-4  # cosine distance; duplicated references would otherwise divide by 0
_MIN_STD = 1e-6
MAX_DEVIATION = 64
"""The most per-feature deviations a deviation score averages (a bound for the validator)."""


class BackendError(EdgeAgentError):
    """A backend cannot be fitted or loaded (no embeddings, wrong shapes, bad saved file)."""


def check_percentile(p: float) -> None:
    if not 0.0 <= p <= 100.0:
        raise BackendError(f"percentile: expected a value in [0, 100], got {p}")


@dataclass(frozen=True)
class BackendConfig:
    """How a section's backend is fitted; stored in the bundle manifest so that calibrate and
    enrol on the device refit exactly as export did."""

    references: References = "all"
    """Source references: every normal source clip ("all"; k-means above `max_references`),
    or k-means centres ("kmeans", the paper). Target clips are always kept as they are."""
    n_clusters: int = 16
    """k-means centres for `references="kmeans"` (the paper: 16)."""
    max_references: int = 256
    """"all" keeps at most this many source references (k-means beyond), bounding the
    bundle's size and the device's scoring cost on large data sets."""
    density_k: int = 3
    """Local-density normalisation: neighbours per reference (0 = plain cosine distance)."""
    normalise: bool = True
    """Standardise each component by its cross-fitted normal scores before fusing."""
    fusion: Fusion = "sum"
    """How components combine: "sum" (the paper's ensemble) or "max" (any detector fires)."""
    percentile: float = 90.0
    """Decision threshold: this percentile of the fused cross-fitted normal scores (DCASE)."""
    folds: int = 5
    """Cross-fitting folds."""
    seed: int = 0
    """k-means and fold assignment seed."""
    variant: Variant = "joint"
    """Ablation (Table 6): which references a score uses."""
    weighting: Weighting = "pseudo"
    """Component weights: decided per section from held-out normal clips against
    pseudo-anomalies ("pseudo", edge_agent.scoring.fusion), or the ones the caller gives
    ("fixed")."""
    anchor: float = 0.3
    """"pseudo": how much of the learned model alone is blended into the per-section
    discriminant weights (0: none, 1: the model alone; BENCHMARKS.md "Fusion decided per
    section": chosen leave-one-family-out). With the one-sided evidence (`transform`) the
    choice leave-one-family-out moves to 0.1, within 0.1 point of 0.3 on the synthetic mean;
    0.3 stays, because the anchor is what kept the system near the learned model on data the
    project did not make (issue 19's held-out sets)."""
    ridge: float = 20.0
    """"pseudo": ridge added to the covariance of the standardised scores in the discriminant.
    A few dozen clips estimate that covariance poorly, and with four components (the
    dynamics among them) a small ridge let it cut the weight of the view that correlates with
    another even where that view was the best one: 20 (chosen leave-one-family-out,
    BENCHMARKS.md "A third classical component") weighs each view mostly by how far it moves
    the pseudo-anomalies, the covariance only tempering it. Bundles store their own value."""
    pseudo_count: int = 56
    """"pseudo": pseudo-anomalies per section (edge_agent.scoring.pseudo.DEFAULT_COUNT); bundles
    written before it was stored read as 48, the count of their plan."""
    pseudo_kinds: tuple[str, ...] = PSEUDO_KINDS
    """"pseudo": the perturbations the copies are drawn from, rotated in turn
    (edge_agent.scoring.pseudo.KINDS). Bundles written
    before the `wobble` joined read as the six before it (pseudo.FIRST_KINDS), so their
    calibrate and enrol refit with the copies their export made."""
    deviation: int = 1
    """Each classical component's deviation score: the mean of the window's `deviation`
    largest per-feature |z| (0: none, cosine distance only). 1, sharing its component's group
    in the weighting, was chosen leave-one-family-out (BENCHMARKS.md "The deviation score"); bundles
    written before it existed read as 0, so their calibrate and enrol refit as they were."""
    no_deviation: tuple[str, ...] = ("stability", "onsets")
    """Classical kinds fitted WITHOUT a deviation score (their cosine score alone). The
    spectral stability's features are log(1 - similarity), heavy-tailed where a line is
    steady, so its largest per-feature deviation mostly picks noise: without it the system
    gained on four of five families and lost on none by more than 0.1 (chosen
    leave-one-family-out, BENCHMARKS.md "Spectral stability in the default"). The onset
    rhythm's 500 autocorrelation lags are one pattern, not 500 measurements: a single lag's
    deviation is noise there too (BENCHMARKS.md "Onset rhythm"). Bundles written before the
    field existed read as none, so their calibrate and enrol refit as they were."""
    transform: Transform = "surprise"
    """What each standardised score z passes through before it is weighted and fused
    (`evidence`). Both one-sided transforms send a score well below 0 (a clip that one
    component finds MORE typical than its normal clips) to about 0, so it no longer cancels
    another component's evidence of a fault: a fault usually moves one or two views and leaves
    the others where they were.
    - "surprise" (default): -ln P(Z > z) for a standard normal Z, the Gaussian tail's
      surprise; the weighted sum is Fisher's combination of one-sided p-values. It grows like
      z^2 / 2, so one component far outside its normal spread outweighs several a little
      above theirs.
    - "softplus": ln(1 + e^z), about z above 2: one-sided, linear in strong evidence.
    - "none": the standardised scores as they are.
    Chosen leave-one-family-out (BENCHMARKS.md "One-sided evidence"); no parameter (the scale
    is the normal clips' spread). A single component's ranking is the same whichever is used
    (each is monotone). Bundles written before the field existed read as "none", so their
    calibrate and enrol refit as they were."""

    def __post_init__(self) -> None:
        if self.references not in REFERENCE_KINDS:
            raise BackendError(
                f"backend references: expected one of {REFERENCE_KINDS}, got {self.references!r}"
            )
        if self.fusion not in FUSIONS:
            raise BackendError(f"backend fusion: expected one of {FUSIONS}, got {self.fusion!r}")
        if self.variant not in COSINE_VARIANTS:
            raise BackendError(
                f"backend variant: expected one of {COSINE_VARIANTS}, got {self.variant!r}"
            )
        if self.transform not in TRANSFORMS:
            raise BackendError(
                f"backend transform: expected one of {TRANSFORMS}, got {self.transform!r}"
            )
        if self.transform != "none" and not self.normalise:
            raise BackendError(
                f"backend transform: {self.transform!r} needs normalise: true (its scale is the "
                "normal clips' spread); use transform: none with raw scores"
            )
        check_percentile(self.percentile)
        if self.n_clusters < 1 or self.max_references < 1:
            raise BackendError("backend: n_clusters and max_references must be >= 1")
        if self.density_k < 0:
            raise BackendError(f"backend density_k: expected >= 0, got {self.density_k}")
        if self.folds < 2:
            raise BackendError(f"backend folds: expected >= 2, got {self.folds}")
        self._check_weighting()

    def _check_weighting(self) -> None:
        """The per-section weighting's fields (`weighting`, `anchor`, `ridge`, `pseudo_count`,
        `pseudo_kinds`) and the deviation scores' (`deviation`, `no_deviation`)."""
        if self.weighting not in WEIGHTINGS:
            raise BackendError(
                f"backend weighting: expected one of {WEIGHTINGS}, got {self.weighting!r}"
            )
        if not (isinstance(self.anchor, int | float) and 0.0 <= self.anchor <= 1.0):
            raise BackendError(f"backend anchor: expected a number in [0, 1], got {self.anchor!r}")
        if not (
            isinstance(self.ridge, int | float) and np.isfinite(self.ridge) and self.ridge >= 0
        ):
            raise BackendError(f"backend ridge: expected a number >= 0, got {self.ridge!r}")
        skip = self.no_deviation
        if (
            not isinstance(skip, tuple)
            or len(set(skip)) != len(skip)
            or not all(isinstance(k, str) and k and k != ANCHOR_KIND for k in skip)
        ):
            raise BackendError(
                f"backend no_deviation: expected distinct classical kinds, got {skip!r}"
            )
        if self.pseudo_count < 0:
            raise BackendError(f"backend pseudo_count: expected >= 0, got {self.pseudo_count}")
        kinds = self.pseudo_kinds
        if (
            not isinstance(kinds, tuple)
            or not kinds
            or len(set(kinds)) != len(kinds)
            or any(k not in PERTURB for k in kinds)
        ):
            raise BackendError(
                f"backend pseudo_kinds: expected distinct kinds among {tuple(PERTURB)}, got "
                f"{kinds!r}"
            )
        if (
            not isinstance(self.deviation, int)
            or isinstance(self.deviation, bool)
            or not (0 <= self.deviation <= MAX_DEVIATION)
        ):
            raise BackendError(
                f"backend deviation: expected an integer in 0..{MAX_DEVIATION}, got "
                f"{self.deviation!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        """The manifest's `backend` object (lists, as JSON and YAML hold them)."""
        d = asdict(self)
        return {
            **d,
            "pseudo_kinds": list(self.pseudo_kinds),
            "no_deviation": list(self.no_deviation),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BackendConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise BackendError(f"backend config: unknown field(s) {unknown}")
        values = dict(data)
        # a bundle written before per-section weighting existed was fitted with fixed weights:
        # its calibrate and enrol must refit the same way
        values.setdefault("weighting", "fixed")
        values.setdefault("deviation", 0)  # and without deviation scores
        values.setdefault("pseudo_count", 48)  # and with the plan of their time
        values.setdefault("transform", "none")  # and their standardised scores as they were
        # and a deviation score for every classical kind; lists (JSON, YAML) as tuples, anything
        # else left for the checks to name
        for name, before in (("pseudo_kinds", FIRST_KINDS), ("no_deviation", ())):
            v = values.get(name, before)
            values[name] = tuple(v) if isinstance(v, list | tuple) else v
        try:
            return cls(**values)
        except TypeError as exc:
            raise BackendError(f"backend config: {exc}") from None


PAPER_BACKEND = BackendConfig(
    references="kmeans",
    density_k=0,
    normalise=False,
    fusion="sum",
    weighting="fixed",
    transform="none",
)
"""The paper's backend (Wilkinghoff, ICASSP 2023): 16 k-means centres of the source clips +
every target clip, plain minimum cosine distance, an ensemble's raw scores summed."""


def l2_normalise(x: AnyFloatArray) -> NDArray[np.float32]:
    """Rows scaled to unit length (zero rows stay zero) so a dot product is a cosine."""
    x = np.asarray(x, dtype=np.float64)
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    out: NDArray[np.float32] = (x / np.maximum(norm, 1e-12)).astype(np.float32)
    return out


def as_matrix(x: AnyFloatArray, name: str, dim: int | None = None) -> NDArray[np.float64]:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 1 and a.size == 0:
        a = a.reshape(0, dim or 0)
    if a.ndim != 2:
        raise BackendError(f"{name}: expected a 2-d array (clips, dims), got shape {a.shape}")
    if dim is not None and a.shape[0] and a.shape[1] != dim:
        raise BackendError(f"{name}: expected {dim} dims, got {a.shape[1]}")
    if not np.all(np.isfinite(a)):
        raise BackendError(f"{name}: embeddings contain NaN or inf")
    return a


# ---------------------------------------------------------------- k-means


def sq_dists(x: NDArray[np.float64], c: NDArray[np.float64]) -> NDArray[np.float64]:
    d = (x * x).sum(1)[:, None] - 2.0 * x @ c.T + (c * c).sum(1)[None, :]
    out: NDArray[np.float64] = np.maximum(d, 0.0)
    return out


def _kmeans_pp(x: NDArray[np.float64], k: int, rng: np.random.Generator) -> NDArray[np.float64]:
    """k-means++ seeding (Arthur & Vassilvitskii 2007), greedy with 2 + log k trials per centre
    like scikit-learn, so the start does not depend on one lucky draw."""
    n = x.shape[0]
    trials = 2 + int(np.log(k))
    centres = np.empty((k, x.shape[1]))
    centres[0] = x[rng.integers(n)]
    closest = sq_dists(x, centres[:1])[:, 0]
    for i in range(1, k):
        total = closest.sum()
        if total <= 0.0:  # every point coincides with a centre: take any points
            centres[i:] = x[rng.choice(n, size=k - i, replace=n < k - i)]
            break
        cand = np.searchsorted(np.cumsum(closest), rng.random(trials) * total)
        cand = np.minimum(cand, n - 1)
        cand_d = np.minimum(closest[None, :], sq_dists(x[cand], x).reshape(trials, n))
        best = int(np.argmin(cand_d.sum(1)))
        centres[i] = x[cand[best]]
        closest = cand_d[best]
    return centres


def _lloyd(
    x: NDArray[np.float64], centres: NDArray[np.float64], iters: int
) -> tuple[NDArray[np.float64], float]:
    labels = np.full(x.shape[0], -1)
    d = sq_dists(x, centres)
    for _ in range(iters):
        new = d.argmin(1)
        if np.array_equal(new, labels):
            break
        labels = new
        counts = np.bincount(labels, minlength=len(centres))
        sums = np.zeros_like(centres)
        np.add.at(sums, labels, x)
        fit = d[np.arange(len(x)), labels]
        for j in np.flatnonzero(counts == 0):  # empty cluster: move it to the worst-fit point
            far = int(fit.argmax())
            old = labels[far]
            if counts[old] > 1:
                sums[old] -= x[far]
                counts[old] -= 1
            sums[j], counts[j], labels[far], fit[far] = x[far], 1, j, -1.0
        centres = sums / counts[:, None]
        d = sq_dists(x, centres)
    inertia = float(d[np.arange(len(x)), d.argmin(1)].sum())
    return centres, inertia


def kmeans(
    x: AnyFloatArray, k: int, seed: int = 0, n_init: int = 4, iters: int = 100
) -> NDArray[np.float32]:
    """k-means (k-means++ init, Lloyd iterations, best of `n_init` by inertia) -> (k', D) centres.

    k' = min(k, number of distinct points): a section with fewer clips than clusters gets one
    centre per clip instead of duplicated centres. Deterministic for a given seed.
    """
    a = as_matrix(x, "kmeans input")
    if a.shape[0] == 0:
        raise BackendError("kmeans input: no embeddings to cluster")
    if k < 1:
        raise BackendError(f"kmeans: k must be >= 1, got {k}")
    k = min(k, len(np.unique(a, axis=0)))
    rng = np.random.default_rng(seed)
    best: tuple[NDArray[np.float64], float] | None = None
    for _ in range(max(1, n_init)):
        sub = np.random.default_rng(int(rng.integers(2**32)))
        res = _lloyd(a, _kmeans_pp(a, k, sub), iters)
        if best is None or res[1] < best[1]:
            best = res
    assert best is not None
    return best[0].astype(np.float32)


# ---------------------------------------------------------------- one embedding space


@dataclass(frozen=True)
class Component:
    """One embedding space of a section: references, their densities, the score normaliser."""

    references: NDArray[np.float32]
    """(K, D) L2-normalised: source references first, then target references (values
    representable in float16: the bundle stores them so)."""
    n_source: int
    """Rows [0, n_source) are source references, the rest target references."""
    density: NDArray[np.float32]
    """(K,) local density of each reference (all ones: plain cosine distance)."""
    mean: float = 0.0
    """Mean of the cross-fitted normal scores (0 when not normalised)."""
    std: float = 1.0
    """Their standard deviation (1 when not normalised)."""
    weight: float = 1.0
    """The standardised score's weight in the fusion (see `view_weights`)."""
    deviation: int = 0
    """The deviation score's K (`feature_deviation`: the mean of the K largest per-feature
    |z|); 0: the component has none (learned models; bundles from before it existed)."""
    dev_mean: float = 0.0
    """Mean of the cross-fitted normal deviation scores."""
    dev_std: float = 1.0
    """Their standard deviation."""
    dev_weight: float = 0.0
    """The standardised deviation score's weight in the fusion."""
    norms: NDArray[np.float32] | None = None
    """(K,) each reference's length before L2 normalisation (a k-means centre: its members'
    mean), so `references * norms` are the features as computed, which the deviation score
    compares with; None: not known (bundles from before; taken as 1)."""

    @property
    def dim(self) -> int:
        return int(self.references.shape[1])

    @cached_property
    def _deviation_stats(self) -> tuple[Stats, ...]:
        raw = self.references.astype(np.float64)
        if self.norms is not None:
            raw = raw * self.norms.astype(np.float64)[:, None]
        return deviation_stats(raw, self.n_source)

    def deviations(self, emb: AnyFloatArray) -> NDArray[np.float64]:
        """(N,) raw deviation score of the embeddings (as computed, not normalised) against
        the features of this component's references."""
        if self.deviation < 1:
            raise BackendError("backend: this component has no deviation score")
        e = np.asarray(emb)
        x = as_matrix(e[None] if e.ndim == 1 else e, "embeddings", self.dim)
        return feature_deviation(x, self._deviation_stats, self.deviation)

    def distances(self, emb: AnyFloatArray, variant: Variant = "joint") -> NDArray[np.float64]:
        """(N,) raw score: min over the variant's references of cosine distance / density."""
        e = np.asarray(emb)
        e2 = l2_normalise(as_matrix(e[None] if e.ndim == 1 else e, "embeddings", self.dim))
        d = (1.0 - e2.astype(np.float64) @ self.references.T.astype(np.float64)) / (
            self.density.astype(np.float64)[None, :]
        )
        src, tgt = d[:, : self.n_source], d[:, self.n_source :]
        if variant == "joint":
            return np.asarray(d.min(axis=1))
        if variant == "source":
            return _min_or_fail(src, "source")
        if variant == "target":
            return _min_or_fail(tgt, "target")
        if variant == "sum":
            return _min_or_fail(src, "source") + _min_or_fail(tgt, "target")
        raise BackendError(
            f"backend variant: expected one of {', '.join(COSINE_VARIANTS)}, got {variant!r}"
        )

    def score(
        self, emb: AnyFloatArray, variant: Variant = "joint", transform: Transform = "none"
    ) -> NDArray[np.float64]:
        """(N,) weighted standardised score (raw score when not normalised, weight 1), plus
        the weighted standardised deviation score where the component has one, each through
        `transform` (`evidence`); a score the section's fit gave no weight costs nothing (not
        computed)."""
        e = np.asarray(emb)
        out = np.zeros(1 if e.ndim == 1 else e.shape[0])
        if self.weight != 0.0:
            z = (self.distances(emb, variant) - self.mean) / self.std
            out += self.weight * evidence(z, transform)
        if self.deviation and self.dev_weight != 0.0:
            z = (self.deviations(emb) - self.dev_mean) / self.dev_std
            out += self.dev_weight * evidence(z, transform)
        return out


def _min_or_fail(d: NDArray[np.float64], which: str) -> NDArray[np.float64]:
    if d.shape[1] == 0:
        raise BackendError(f"backend variant: no {which} references in this section")
    return np.asarray(d.min(axis=1))


Stats = tuple[NDArray[np.float64], NDArray[np.float64]]
"""Per-feature (mean, spread) that a deviation score compares a window with."""


def feature_stats(rows: NDArray[np.float64]) -> Stats:
    """Per-feature mean and spread of `rows`; the spread floored at a tenth of the median
    spread, so a feature that never moves in the normal clips (a silent band's modulation)
    cannot turn a tiny change into the largest deviation."""
    sd = rows.std(axis=0)
    return rows.mean(axis=0), sd + 0.1 * float(np.median(sd)) + _MIN_STD


def deviation_stats(features: NDArray[np.float64], n_source: int) -> tuple[Stats, ...]:
    """What a component's deviation score compares with, from its references' features
    (source rows first): the statistics of all of them, or, with at least 2 source and 2
    target references, those of the source references and those of as many source references
    as there are target ones plus the target ones; the score is the smaller of the two, so that
    a clip of the target domain (a few references among many source ones) is not far just for
    its domain. A section with more source clips than `max_references` keeps k-means centres,
    whose spread is narrower than the clips'; its deviation scores are larger for it, on the
    normal clips as on the others, and the cross-fitted normaliser (fitted the same way)
    takes the scale out."""
    r = features
    n_target = r.shape[0] - n_source
    if n_source < 2 or n_target < 2:
        return (feature_stats(r),)
    mixed = np.concatenate([r[: min(n_target, n_source)], r[n_source:]])
    return feature_stats(r[:n_source]), feature_stats(mixed)


def feature_deviation(
    x: NDArray[np.float64], stats: Sequence[Stats], k: int
) -> NDArray[np.float64]:
    """(N,) per row of `x`, the mean of its `k` largest |x - mean| / spread over the features,
    the smallest over `stats`."""
    best: NDArray[np.float64] | None = None
    for mean, spread in stats:
        z = np.abs((x - mean) / spread)
        kk = min(k, z.shape[1])
        top = np.partition(z, z.shape[1] - kk, axis=1)[:, -kk:].mean(axis=1)
        best = top if best is None else np.minimum(best, top)
    assert best is not None
    return best


def local_density(references: NDArray[np.float32], k: int) -> NDArray[np.float32]:
    """(K,) mean cosine distance of each reference to its k nearest OTHER references; ones
    (plain distances) when k = 0 or there are not k other references: a density from one or
    two neighbours is noise, and a pair of near-duplicate clips would divide every distance
    by almost nothing."""
    n = references.shape[0]
    if k == 0 or n <= k:
        return np.ones(n, dtype=np.float32)
    r = references.astype(np.float64)
    d = 1.0 - r @ r.T
    np.fill_diagonal(d, np.inf)
    near = np.partition(d, k - 1, axis=1)[:, :k]
    out: NDArray[np.float32] = np.maximum(near.mean(axis=1), _MIN_DENSITY).astype(np.float32)
    return out


def fit_component(
    source_emb: AnyFloatArray,
    target_emb: AnyFloatArray,
    config: BackendConfig,
    keep_source: bool = False,
    source_norms: AnyFloatArray | None = None,
) -> Component:
    """References, their lengths and densities of one embedding space (not yet normalised).

    `keep_source`: the source rows already ARE references (a bundle's, when calibrating):
    keep them bit for bit instead of clustering them again, with their lengths
    `source_norms` (None: 1).
    """
    src_in = as_matrix(source_emb, "source embeddings")
    dim = src_in.shape[1] if src_in.shape[0] else None
    tgt_in = as_matrix(target_emb, "target embeddings", dim)
    if src_in.shape[0] == 0 and tgt_in.shape[0] == 0:
        raise BackendError("backend: no training embeddings for this section")
    if keep_source:
        src = src_in.astype(np.float32)
        src_norms = _norms_of(src_in, source_norms)
    else:
        src, src_norms = l2_normalise(src_in), np.linalg.norm(src_in, axis=1)
    limit = config.n_clusters if config.references == "kmeans" else config.max_references
    if src.shape[0] and not keep_source and (config.references == "kmeans" or src.shape[0] > limit):
        # centres of unit vectors are shorter than 1: normalise so scores are true cosines
        centres = l2_normalise(kmeans(src, limit, seed=config.seed))
        src_norms = _centre_norms(src, src_norms, centres)
        src = centres
    # references live in float16 (the bundle stores them so: half the size on disk and in
    # the device's memory); densities and normalisers are computed from the rounded values,
    # so what the device loads scores exactly as what was fitted
    sides = [(src, src_norms), (l2_normalise(tgt_in), np.linalg.norm(tgt_in, axis=1))]
    sides = [(r, n) for r, n in sides if r.shape[0]]  # an empty side may have no width
    refs = np.concatenate([r for r, _ in sides]).astype(np.float16).astype(np.float32)
    norms = np.concatenate([n for _, n in sides]).astype(np.float32)
    return Component(refs, src.shape[0], local_density(refs, config.density_k), norms=norms)


def _norms_of(rows: NDArray[np.float64], norms: AnyFloatArray | None) -> NDArray[np.float64]:
    """`norms` checked against `rows` (one finite length >= 0 per row; None: 1 each)."""
    if norms is None:
        return np.ones(rows.shape[0])
    n = np.asarray(norms, dtype=np.float64).reshape(-1)
    if n.shape != (rows.shape[0],) or not np.all(np.isfinite(n) & (n >= 0)):
        raise BackendError(f"source norms: expected {rows.shape[0]} finite lengths >= 0")
    return n


def _centre_norms(
    rows: NDArray[np.float32], norms: NDArray[np.float64], centres: NDArray[np.float32]
) -> NDArray[np.float64]:
    """Each k-means centre's length: the mean length of the rows nearest to it (all rows'
    mean for a centre no row is nearest to)."""
    nearest = (rows.astype(np.float64) @ centres.T.astype(np.float64)).argmax(axis=1)
    count = np.bincount(nearest, minlength=len(centres))
    total = np.bincount(nearest, weights=norms, minlength=len(centres))
    out: NDArray[np.float64] = np.where(
        count > 0, total / np.maximum(count, 1), float(norms.mean())
    )
    return out


# ---------------------------------------------------------------- a section


def fuse(scores: Sequence[NDArray[np.float64]], fusion: Fusion) -> NDArray[np.float64]:
    """Combine per-component scores (each (N,)) into one (N,) score."""
    if not scores:
        raise BackendError("backend: no components to fuse")
    stacked = np.stack([np.asarray(s, dtype=np.float64) for s in scores])
    if fusion == "sum":
        return np.asarray(stacked.sum(axis=0))
    if fusion == "max":
        return np.asarray(stacked.max(axis=0))
    raise BackendError(f"backend fusion: expected one of {FUSIONS}, got {fusion!r}")


@dataclass(frozen=True)
class SectionBackend:
    """Everything needed to score one section: its components, fusion rule and threshold."""

    components: tuple[Component, ...]
    threshold: float
    """Decision threshold on the fused score (score > threshold -> anomalous)."""
    fusion: Fusion = "sum"
    transform: Transform = "none"
    """What each standardised score passes through before it is weighted
    (`BackendConfig.transform`); "none" for files written before it existed."""

    @property
    def dims(self) -> list[int]:
        return [c.dim for c in self.components]

    def component_scores(
        self, embs: Sequence[AnyFloatArray], variant: Variant = "joint"
    ) -> list[NDArray[np.float64]]:
        """Per-component standardised scores; `embs[i]` is (N, D_i) or (D_i,)."""
        if len(embs) != len(self.components):
            raise BackendError(
                f"backend: {len(embs)} embeddings for {len(self.components)} components"
            )
        return [
            c.score(e, variant, self.transform) for c, e in zip(self.components, embs, strict=True)
        ]

    def score(
        self, embs: Sequence[AnyFloatArray], variant: Variant = "joint"
    ) -> NDArray[np.float64]:
        """(N,) fused anomaly scores of the clips whose component embeddings are `embs`."""
        return fuse(self.component_scores(embs, variant), self.fusion)

    def to_dict(self) -> dict[str, NDArray[Any]]:
        """Arrays only, so `np.savez` stores it and `np.load(allow_pickle=False)` reads it."""
        out: dict[str, NDArray[Any]] = {
            "threshold": np.asarray(self.threshold, dtype=np.float64),
            "fusion": np.asarray(self.fusion),
            "transform": np.asarray(self.transform),
            "n_components": np.asarray(len(self.components), dtype=np.int64),
        }
        for i, c in enumerate(self.components):
            out[f"c{i}.references"] = np.asarray(c.references, dtype=np.float16)
            out[f"c{i}.n_source"] = np.asarray(c.n_source, dtype=np.int64)
            out[f"c{i}.density"] = np.asarray(c.density, dtype=np.float32)
            out[f"c{i}.mean"] = np.asarray(c.mean, dtype=np.float64)
            out[f"c{i}.std"] = np.asarray(c.std, dtype=np.float64)
            out[f"c{i}.weight"] = np.asarray(c.weight, dtype=np.float64)
            out[f"c{i}.deviation"] = np.asarray(c.deviation, dtype=np.int64)
            out[f"c{i}.dev_mean"] = np.asarray(c.dev_mean, dtype=np.float64)
            out[f"c{i}.dev_std"] = np.asarray(c.dev_std, dtype=np.float64)
            out[f"c{i}.dev_weight"] = np.asarray(c.dev_weight, dtype=np.float64)
            if c.norms is not None:
                out[f"c{i}.norms"] = np.asarray(c.norms, dtype=np.float32)
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SectionBackend:
        """Inverse of `to_dict`, with the checks a file from disk needs. A format-1 section
        (`references`, `n_source`, `threshold`: the paper's backend, one model) loads as one
        unnormalised component.

        Every float the score uses must be finite: a NaN threshold makes `score > threshold`
        false forever and a NaN normaliser turns every score into NaN (invalid JSON in the
        events), so the agent would run and never alarm. A +inf threshold (what `fit_section`
        gives a section with fewer than 2 normal clips) is refused too: a section that can never
        alarm is not a usable section. Errors name the field (`threshold`, `c1.std`, ...)."""
        try:
            if "n_components" not in d:  # format 1
                return cls((_component(d, ""),), _finite(d["threshold"], "threshold"), "sum")
            n = int(np.asarray(d["n_components"]))
            fusion = str(np.asarray(d["fusion"]))
            transform = str(np.asarray(d.get("transform", "none")))
            comps = tuple(_component(d, f"c{i}.") for i in range(n))
            threshold = _finite(d["threshold"], "threshold")
        except (KeyError, TypeError, ValueError) as exc:
            raise BackendError(f"backend: missing or malformed field ({exc})") from None
        if n < 1:
            raise BackendError("backend: expected at least one component")
        if not any(c.weight > 0 or c.dev_weight > 0 for c in comps):
            raise BackendError("backend: every component has weight 0 (expected one > 0)")
        if fusion not in FUSIONS:
            raise BackendError(f"backend fusion: expected one of {FUSIONS}, got {fusion!r}")
        if transform not in TRANSFORMS:
            raise BackendError(
                f"backend transform: expected one of {TRANSFORMS}, got {transform!r}"
            )
        return cls(comps, threshold, cast(Fusion, fusion), cast(Transform, transform))


def _finite(x: Any, field: str) -> float:
    v = float(np.asarray(x))
    if not np.isfinite(v):
        hint = (
            " (a section fitted on fewer than 2 normal clips has no held-out score to set it from)"
            if field == "threshold" and v == np.inf
            else ""
        )
        raise BackendError(f"{field}: expected a finite number, got {v}{hint}")
    return v


def _component(d: Mapping[str, Any], prefix: str) -> Component:
    refs = np.asarray(d[f"{prefix}references"], dtype=np.float32)
    n_source = int(np.asarray(d[f"{prefix}n_source"]))
    if refs.ndim != 2 or refs.shape[0] == 0:
        raise BackendError(f"{prefix}references: expected shape (K>0, D), got {refs.shape}")
    if not np.all(np.isfinite(refs)):
        raise BackendError(f"{prefix}references: expected finite numbers, got NaN or inf")
    if not 0 <= n_source <= refs.shape[0]:
        raise BackendError(f"{prefix}n_source: expected 0..{refs.shape[0]}, got {n_source}")
    density = (
        np.asarray(d[f"{prefix}density"], dtype=np.float32)
        if f"{prefix}density" in d
        else np.ones(refs.shape[0], np.float32)
    )
    if density.shape != (refs.shape[0],) or not np.all(np.isfinite(density) & (density > 0)):
        raise BackendError(f"{prefix}density: expected {refs.shape[0]} finite values > 0")
    mean, std, weight = _normaliser(d, prefix, "", 1.0)
    norms = None
    if f"{prefix}norms" in d:
        norms = np.asarray(d[f"{prefix}norms"], dtype=np.float32)
        if norms.shape != (refs.shape[0],) or not np.all(np.isfinite(norms) & (norms >= 0)):
            raise BackendError(f"{prefix}norms: expected {refs.shape[0]} finite lengths >= 0")
    comp = Component(refs, n_source, density, mean, std, weight, norms=norms)
    return _with_deviation(d, prefix, comp)


def _with_deviation(d: Mapping[str, Any], prefix: str, c: Component) -> Component:
    """`c` with its saved deviation score (none when the file has no `deviation` field)."""
    k = int(np.asarray(d.get(f"{prefix}deviation", 0)))
    if not 0 <= k <= MAX_DEVIATION:
        raise BackendError(f"{prefix}deviation: expected an integer in 0..{MAX_DEVIATION}, got {k}")
    if k == 0:
        return c
    mean, std, weight = _normaliser(d, prefix, "dev_", 0.0)
    return replace(c, deviation=k, dev_mean=mean, dev_std=std, dev_weight=weight)


def _normaliser(
    d: Mapping[str, Any], prefix: str, score: str, weight_default: float
) -> tuple[float, float, float]:
    """A saved score's mean, std (> 0) and weight (>= 0): `{prefix}{score}mean` and so on,
    checked, with the error naming the field."""
    name = f"{prefix}{score}"
    mean = _finite(d.get(f"{name}mean", 0.0), f"{name}mean (normaliser)")
    std = _finite(d.get(f"{name}std", 1.0), f"{name}std (normaliser)")
    weight = _finite(d.get(f"{name}weight", weight_default), f"{name}weight")
    if std <= 0:
        raise BackendError(f"{name}std (normaliser): expected a finite number > 0, got {std}")
    if weight < 0:
        raise BackendError(f"{name}weight: expected a finite number >= 0, got {weight}")
    return mean, std, weight


FitScore = Callable[[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]], AnyFloatArray]


def cross_fit_scores(
    source_emb: AnyFloatArray,
    target_emb: AnyFloatArray,
    fit_score: FitScore,
    folds: int = 5,
    seed: int = 0,
) -> NDArray[np.float64]:
    """Held-out scores of every normal clip (source rows first, then target rows).

    `fit_score(source_rest, target_rest, held_out)` builds a backend from the other folds and
    scores the held-out clips ((rows,), or (rows, m) for m scores per clip). Source and
    target clips are each spread over the folds.
    """
    return cross_fit_with_extra(source_emb, target_emb, None, None, fit_score, folds, seed)[0]


def cross_fit_with_extra(
    source_emb: AnyFloatArray,
    target_emb: AnyFloatArray,
    extra_emb: AnyFloatArray | None,
    extra_origin: NDArray[np.integer] | None,
    fit_score: FitScore,
    folds: int = 5,
    seed: int = 0,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """`cross_fit_scores`, and the scores of extra rows (pseudo-anomalies) in the same folds:
    extra row j is scored by the backend that did not see normal clip `extra_origin[j]` (its
    origin, an index into source rows then target rows), so a perturbed copy is never compared
    with the clip it was made from; rows with origin -1 (clips of other machines) are spread
    over the folds. The normal clips' folds and scores do not depend on the extra rows."""
    src = as_matrix(source_emb, "source embeddings")
    tgt = as_matrix(target_emb, "target embeddings", src.shape[1] if src.shape[0] else None)
    n_s, n_t = src.shape[0], tgt.shape[0]
    n = n_s + n_t
    if n < 2:
        raise BackendError(
            f"threshold: need at least 2 normal training clips to cross-fit, got {n}"
        )
    dim = src.shape[1] if n_s else tgt.shape[1]
    extra = np.zeros((0, dim)) if extra_emb is None else as_matrix(extra_emb, "pseudo", dim)
    origin = np.zeros(0, dtype=int) if extra_origin is None else np.asarray(extra_origin, int)
    if origin.shape != (extra.shape[0],) or np.any((origin < -1) | (origin >= n)):
        raise BackendError(f"pseudo origins: expected {extra.shape[0]} indices in -1..{n - 1}")
    k = max(2, min(folds, n))
    rng = np.random.default_rng(seed)
    fold_s = np.empty(n_s, dtype=int)
    fold_s[rng.permutation(n_s)] = np.arange(n_s) % k
    fold_t = np.empty(n_t, dtype=int)
    # continue the round-robin where source stopped so small folds get target clips too
    fold_t[rng.permutation(n_t)] = (np.arange(n_t) + n_s) % k
    fold_all = np.concatenate([fold_s, fold_t])
    fold_x = np.where(origin >= 0, fold_all[np.maximum(origin, 0)], np.arange(origin.size) % k)
    out: NDArray[np.float64] | None = None
    out_x = np.empty(0)
    for f in range(k):
        hs, ht, hx = fold_s == f, fold_t == f, fold_x == f
        held = np.concatenate([src[hs], tgt[ht], extra[hx]], axis=0)
        if held.shape[0] == 0:
            continue
        s = np.asarray(fit_score(src[~hs], tgt[~ht], held), dtype=np.float64)
        if out is None:  # (rows,) or (rows, scores): the fit's scores decide
            out, out_x = np.empty((n, *s.shape[1:])), np.empty((extra.shape[0], *s.shape[1:]))
        a, b = int(hs.sum()), int(hs.sum() + ht.sum())
        out[np.flatnonzero(hs)] = s[:a]
        out[n_s + np.flatnonzero(ht)] = s[a:b]
        out_x[np.flatnonzero(hx)] = s[b:]
    assert out is not None  # n >= 2 clips in k >= 2 folds: some fold holds one
    return out, out_x


@dataclass(frozen=True)
class SectionFit:
    """A fitted section and the cross-fitted normal scores its normaliser and threshold
    came from (source clips first, then target clips; fused and standardised)."""

    backend: SectionBackend
    held_out: NDArray[np.float64]
    n_source_clips: int
    choice: Choice | None = None
    """The per-section weighting and its evidence (`weighting="pseudo"`), else None."""

    @property
    def held_out_target(self) -> NDArray[np.float64]:
        return self.held_out[self.n_source_clips :]


def _spread(held: NDArray[np.float64]) -> float:
    """The normaliser's standard deviation, floored at a tenth of the mean distance: with a
    handful of clips (a fresh enrolment, the smoke test's two) the held-out scores can agree by
    chance and a near-zero spread would blow every later score up by orders of magnitude.
    With tens of clips the floor does not bind (spreads are typically 30-40 % of the mean)."""
    return max(float(held.std()), 0.1 * abs(float(held.mean())), _MIN_STD)


def view_weights(kinds: Sequence[str]) -> list[float]:
    """Fusion weights of components by kind: every kind (the learned models together, each
    classical feature) weighs 1 in total, so an ensemble of M models does not outvote the
    classical views M to 1, and a useless view dilutes the others by the same amount whatever
    the ensemble's size."""
    return [1.0 / kinds.count(k) for k in kinds]


def _decides(
    config: BackendConfig, pseudo: PseudoSet | None, kinds: Sequence[str] | None, n_components: int
) -> bool:
    """Whether the section decides its weights (`weighting="pseudo"`, sum fusion, and both
    pseudo-anomalies and kinds given); checks that those fit the components."""
    if kinds is not None and len(kinds) != n_components:
        raise BackendError(f"backend kinds: expected {n_components}, got {len(kinds)}")
    if pseudo is not None and len(pseudo.origin) and len(pseudo.embeddings) != n_components:
        raise BackendError(
            f"pseudo: {len(pseudo.embeddings)} embedding sets for {n_components} components"
        )
    return (
        config.weighting == "pseudo"
        and config.fusion == "sum"
        and pseudo is not None
        and kinds is not None
        and len(pseudo.origin) > 0
    )


def fit_section(
    sources: Sequence[AnyFloatArray],
    targets: Sequence[AnyFloatArray],
    config: BackendConfig = BackendConfig(),
    keep_source: bool | Sequence[AnyFloatArray] = False,
    weights: Sequence[float] | None = None,
    pseudo: PseudoSet | None = None,
    kinds: Sequence[str] | None = None,
    deviation: Sequence[float] | None = None,
) -> SectionFit:
    """THE way a section is fitted: one component per embedding space (`sources[i]`,
    `targets[i]`: that space's normal source / target training embeddings, the same clips in
    the same order for every space), normalisers and threshold from cross-fitted scores.

    Deviation scores (`config.deviation` > 0): `deviation[i]` is component i's deviation
    score's fixed weight, 0 for none (and `weights[i]` then its cosine score's alone); by
    default every component whose kind is neither the learned model's nor in
    `config.no_deviation` has one, and it shares the
    component's weight half and half with the cosine score, as one view (`kinds` not given:
    none). A section with fewer than `fusion.MIN_NORMAL` normal clips has none: a per-feature
    spread from a handful of clips is noise.

    Weights: with `config.weighting == "pseudo"`, sum fusion, `pseudo` anomalies and the
    components' `kinds` ("model", "bands", ...), decided for this section by
    `fusion.choose_weights` (a deviation score in its component's group); otherwise `weights`
    (default 1 each; see `view_weights`) and `deviation`.
    `keep_source`: see `fit_component` (calibration); a sequence instead of True gives each
    component's source references' lengths (`Component.norms`)."""
    if not sources or len(sources) != len(targets):
        raise BackendError(
            f"backend: expected the same number (>= 1) of source and target embedding sets, "
            f"got {len(sources)} and {len(targets)}"
        )
    srcs = [as_matrix(s, "source embeddings") for s in sources]
    tgts = [
        as_matrix(t, "target embeddings", s.shape[1] if s.shape[0] else None)
        for s, t in zip(srcs, targets, strict=True)
    ]
    counts = {(s.shape[0], t.shape[0]) for s, t in zip(srcs, tgts, strict=True)}
    if len(counts) != 1:
        raise BackendError(f"backend: components disagree on the number of clips: {counts}")
    n_src, n_tgt = counts.pop()
    w = _fixed_weights(weights, len(srcs), "backend weights", positive=True)
    w, dev_w = _deviation_weights(config, kinds, deviation, w, n_src + n_tgt)
    decide = _decides(config, pseudo, kinds, len(srcs)) and n_src + n_tgt >= 2
    lengths: list[AnyFloatArray | None] = (
        [None] * len(srcs) if isinstance(keep_source, bool) else list(keep_source)
    )
    if len(lengths) != len(srcs):
        raise BackendError(f"source norms: expected {len(srcs)} arrays, got {len(lengths)}")
    keep = not isinstance(keep_source, bool) or keep_source
    comps = [
        replace(
            fit_component(s, t, config, keep, n_),
            weight=x,
            deviation=config.deviation if d > 0 else 0,
            dev_weight=d,
        )
        for s, t, n_, x, d in zip(srcs, tgts, lengths, w, dev_w, strict=True)
    ]
    if n_src + n_tgt < 2:
        return SectionFit(
            SectionBackend(tuple(comps), float("inf"), config.fusion, config.transform),
            np.zeros(0),
            n_src,
        )

    scored = _cross_fitted(srcs, tgts, lengths, comps, config, keep, pseudo if decide else None)
    n, with_dev = len(comps), [i for i, c in enumerate(comps) if c.deviation]
    if config.normalise:
        comps = [
            replace(c, mean=float(h.mean()), std=_spread(h))
            for c, (h, _) in zip(comps, scored[:n], strict=True)
        ]
        for i, (h, _) in zip(with_dev, scored[n:], strict=True):
            comps[i] = replace(comps[i], dev_mean=float(h.mean()), dev_std=_spread(h))
    norms = [(c.mean, c.std) for c in comps] + [
        (comps[i].dev_mean, comps[i].dev_std) for i in with_dev
    ]
    z = [((h - m) / sd, (hx - m) / sd) for (h, hx), (m, sd) in zip(scored, norms, strict=True)]
    choice = None
    if decide and kinds is not None:
        groups = [*kinds, *[kinds[i] for i in with_dev]]  # a deviation joins its component
        choice = choose_weights(
            [a for a, _ in z],
            [b for _, b in z],
            groups,
            config.anchor,
            config.ridge,
            config.transform,
        )
        comps = [replace(c, weight=x) for c, x in zip(comps, choice.weights[:n], strict=True)]
        for i, x in zip(with_dev, choice.weights[n:], strict=True):
            comps[i] = replace(comps[i], dev_weight=x)
    # the weights are decided on the standardised scores themselves; the transform shapes only
    # what is fused (deciding on the scores' surprise measured 1.4 lower on the suite's mean:
    # BENCHMARKS.md "One-sided evidence")
    fused = _fused(comps, [a for a, _ in z], config)
    threshold = float(np.percentile(fused, config.percentile))
    backend = SectionBackend(tuple(comps), threshold, config.fusion, config.transform)
    return SectionFit(backend, fused, n_src, choice)


def _fused(
    comps: Sequence[Component], z: Sequence[NDArray[np.float64]], config: BackendConfig
) -> NDArray[np.float64]:
    """The fused score of the held-out clips whose standardised scores are `z` (every
    component's cosine score, then the deviation scores of those that have one, as
    `_cross_fitted` orders them), weighted and through the transform as `SectionBackend.score`
    fuses a window's."""
    n, t = len(comps), config.transform
    per = [c.weight * evidence(zi, t) for c, zi in zip(comps, z[:n], strict=True)]
    with_dev = [i for i, c in enumerate(comps) if c.deviation]
    for i, zi in zip(with_dev, z[n:], strict=True):
        per[i] = per[i] + comps[i].dev_weight * evidence(zi, t)
    return fuse(per, config.fusion)


def _cross_fitted(
    srcs: list[NDArray[np.float64]],
    tgts: list[NDArray[np.float64]],
    lengths: list[AnyFloatArray | None],
    comps: list[Component],
    config: BackendConfig,
    keep_source: bool,
    pseudo: PseudoSet | None,
) -> list[tuple[NDArray[np.float64], NDArray[np.float64]]]:
    """Raw cross-fitted scores (held-out normal clips, pseudo-anomalies): every component's
    cosine distances, then the deviation scores of the components that have one (computed
    from the same fold fits). With `keep_source`, each source row's length travels with it
    through the folds in one more column (the other rows get theirs, unused)."""

    def fit_score(with_deviation: bool) -> FitScore:
        def scores(
            s_: NDArray[np.float64], t_: NDArray[np.float64], h: NDArray[np.float64]
        ) -> NDArray[np.float64]:
            if keep_source:
                s_, n_, t_, h = s_[:, :-1], s_[:, -1], t_[:, :-1], h[:, :-1]
            c = fit_component(s_, t_, config, keep_source, n_ if keep_source else None)
            c = replace(c, deviation=config.deviation)
            d = c.distances(h, config.variant)
            return np.stack([d, c.deviations(h)], axis=1) if with_deviation else d

        return scores

    def with_length(x: NDArray[np.float64], n_: NDArray[np.float64]) -> NDArray[np.float64]:
        return np.concatenate([x, n_.reshape(-1, 1)], axis=1) if keep_source else x

    def own_length(x: NDArray[np.float64]) -> NDArray[np.float64]:
        return with_length(x, np.linalg.norm(x, axis=1))

    cosine, deviation = [], []
    for i, (s, t, c) in enumerate(zip(srcs, tgts, comps, strict=True)):
        extra = None if pseudo is None else own_length(as_matrix(pseudo.embeddings[i], "pseudo"))
        origin = None if pseudo is None else pseudo.origin
        h, hx = cross_fit_with_extra(
            with_length(s, _norms_of(s, lengths[i])),
            own_length(t),
            extra,
            origin,
            fit_score(c.deviation > 0),
            config.folds,
            config.seed,
        )
        if c.deviation:
            deviation.append((h[:, 1], hx[:, 1]))
            h, hx = h[:, 0], hx[:, 0]
        cosine.append((h, hx))
    return cosine + deviation


def _fixed_weights(
    weights: Sequence[float] | None, n: int, field: str, positive: bool
) -> list[float]:
    """`weights` checked (n finite numbers >= 0; with `positive`, one > 0); default 1 each."""
    w = [1.0] * n if weights is None else [float(x) for x in weights]
    if (
        len(w) != n
        or not all(np.isfinite(x) and x >= 0 for x in w)
        or (positive and not any(x > 0 for x in w))
    ):
        one = ", one > 0" if positive else ""
        raise BackendError(f"{field}: expected {n} numbers >= 0{one}, got {w}")
    return w


def _deviation_weights(
    config: BackendConfig,
    kinds: Sequence[str] | None,
    deviation: Sequence[float] | None,
    weights: list[float],
    n_clips: int,
) -> tuple[list[float], list[float]]:
    """Per component, the fixed weights of its cosine and its deviation score (0: none; see
    `fit_section`)."""
    n = len(weights)
    none = (weights, [0.0] * n)
    if config.deviation == 0 or n_clips < MIN_NORMAL:
        return none
    if deviation is not None:
        return weights, _fixed_weights(deviation, n, "backend deviation weights", positive=False)
    if kinds is None or len(kinds) != n:
        return none
    own = [k != ANCHOR_KIND and k not in config.no_deviation for k in kinds]
    return (
        [x / 2 if o else x for x, o in zip(weights, own, strict=True)],
        [x / 2 if o else 0.0 for x, o in zip(weights, own, strict=True)],
    )
