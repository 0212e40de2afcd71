"""The backend: turn an embedding into an anomaly score, per section (numpy/scipy only).

The paper's backend (Wilkinghoff, ICASSP 2023, section 2.3) has no trainable parameters,
which is why the device can refit it from a handful of recordings:

* embeddings are L2-normalised;
* per section, k-means (16 clusters) on the SOURCE-domain normal training embeddings gives
  the source reference vectors; every TARGET-domain training embedding (there are only ~10)
  is kept as a reference vector of its own;
* the anomaly score of a clip is its minimum cosine distance to all reference vectors
  (higher = more anomalous). One score scale and one threshold serve both domains.

Decision threshold (cross-fitting). DCASE takes the 90th percentile of the anomaly scores of
normal training clips. Scoring the clips the references were built from is biased low: a
target clip IS one of the references (distance 0) and a source clip pulled its own k-means
centre towards itself. `leave_out_threshold` therefore splits the normal clips into K folds
(source and target each spread over the folds by a seeded permutation), builds the references
from the other K-1 folds only, scores the held-out fold, and takes the percentile of all
held-out scores. Every normal clip is thus scored by references it did not shape, as a new
recording in the field would be. With fewer clips than folds this becomes leave-one-out.

Ablations of the paper's Table 6 are here too: a GMM backend (16 components, full covariance,
1e-3 added to the diagonal, score = negative log-likelihood) and the cosine variants
"source" (k-means centres only), "target" (target embeddings only), "sum" (source distance +
target distance) next to the default "joint" (minimum over both).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .arrays import AnyFloatArray
from .errors import EdgeAgentError

COSINE_VARIANTS = ("joint", "source", "target", "sum")


class BackendError(EdgeAgentError):
    """A backend cannot be fitted or loaded (no embeddings, wrong shapes, bad saved file)."""


def l2_normalise(x: AnyFloatArray) -> NDArray[np.float32]:
    """Rows scaled to unit length (zero rows stay zero) so a dot product is a cosine."""
    x = np.asarray(x, dtype=np.float64)
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    out: NDArray[np.float32] = (x / np.maximum(norm, 1e-12)).astype(np.float32)
    return out


def _as_matrix(x: AnyFloatArray, name: str, dim: int | None = None) -> NDArray[np.float64]:
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


def _sq_dists(x: NDArray[np.float64], c: NDArray[np.float64]) -> NDArray[np.float64]:
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
    closest = _sq_dists(x, centres[:1])[:, 0]
    for i in range(1, k):
        total = closest.sum()
        if total <= 0.0:  # every point coincides with a centre: take any points
            centres[i:] = x[rng.choice(n, size=k - i, replace=n < k - i)]
            break
        cand = np.searchsorted(np.cumsum(closest), rng.random(trials) * total)
        cand = np.minimum(cand, n - 1)
        cand_d = np.minimum(closest[None, :], _sq_dists(x[cand], x).reshape(trials, n))
        best = int(np.argmin(cand_d.sum(1)))
        centres[i] = x[cand[best]]
        closest = cand_d[best]
    return centres


def _lloyd(
    x: NDArray[np.float64], centres: NDArray[np.float64], iters: int
) -> tuple[NDArray[np.float64], float]:
    labels = np.full(x.shape[0], -1)
    d = _sq_dists(x, centres)
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
        d = _sq_dists(x, centres)
    inertia = float(d[np.arange(len(x)), d.argmin(1)].sum())
    return centres, inertia


def kmeans(
    x: AnyFloatArray, k: int, seed: int = 0, n_init: int = 4, iters: int = 100
) -> NDArray[np.float32]:
    """k-means (k-means++ init, Lloyd iterations, best of `n_init` by inertia) -> (k', D) centres.

    k' = min(k, number of distinct points): a section with fewer clips than clusters gets one
    centre per clip instead of duplicated centres. Deterministic for a given seed.
    """
    a = _as_matrix(x, "kmeans input")
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


@dataclass(frozen=True)
class SectionBackend:
    """Everything needed to score one section: reference vectors and the decision threshold."""

    references: NDArray[np.float32]  # (K, D), L2-normalised: k-means centres, then target embs
    n_source: int  # rows [0, n_source) are source k-means centres, the rest target embeddings
    threshold: float  # decision threshold on the score (score > threshold -> anomalous)

    def score(self, emb: AnyFloatArray, variant: str = "joint") -> NDArray[np.float32]:
        """Anomaly scores of (N, D) or (D,) embeddings; see `variant_scores`."""
        return variant_scores(emb, self, variant)

    def to_dict(self) -> dict[str, NDArray[Any]]:
        """Arrays only, so `np.savez` stores it and `np.load(allow_pickle=False)` reads it."""
        return {
            "references": np.asarray(self.references, dtype=np.float32),
            "n_source": np.asarray(self.n_source, dtype=np.int64),
            "threshold": np.asarray(self.threshold, dtype=np.float64),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SectionBackend:
        """Inverse of `to_dict`, with the checks a file from disk needs."""
        try:
            refs = np.asarray(d["references"], dtype=np.float32)
            n_source = int(np.asarray(d["n_source"]))
            threshold = float(np.asarray(d["threshold"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise BackendError(
                f"backend: expected arrays references, n_source, threshold ({exc})"
            ) from None
        if refs.ndim != 2 or refs.shape[0] == 0:
            raise BackendError(f"backend references: expected shape (K>0, D), got {refs.shape}")
        if not 0 <= n_source <= refs.shape[0]:
            raise BackendError(f"backend n_source: expected 0..{refs.shape[0]}, got {n_source}")
        return cls(refs, n_source, threshold)


def cosine_scores(emb: AnyFloatArray, references: AnyFloatArray) -> NDArray[np.float32]:
    """(N,) minimum cosine distance (1 - cos) of each embedding to the reference vectors."""
    e = np.asarray(emb)
    single = e.ndim == 1
    e2 = l2_normalise(_as_matrix(e[None] if single else e, "embeddings"))
    refs = l2_normalise(_as_matrix(references, "references", e2.shape[1]))
    if refs.shape[0] == 0:
        raise BackendError("references: no reference vectors to score against")
    s: NDArray[np.float32] = (1.0 - (e2 @ refs.T).max(1)).astype(np.float32)
    return s[0:1] if single else s


def variant_scores(
    emb: AnyFloatArray, backend: SectionBackend, variant: str = "joint"
) -> NDArray[np.float32]:
    """Scores of the cosine backend and its Table-6 variants.

    joint: min distance over all references (the paper); source: k-means centres only;
    target: target embeddings only; sum: source distance + target distance.
    """
    src, tgt = backend.references[: backend.n_source], backend.references[backend.n_source :]
    if variant == "joint":
        return cosine_scores(emb, backend.references)
    if variant == "source":
        return cosine_scores(emb, src)
    if variant == "target":
        return cosine_scores(emb, tgt)
    if variant == "sum":
        return cosine_scores(emb, src) + cosine_scores(emb, tgt)
    raise BackendError(
        f"backend variant: expected one of {', '.join(COSINE_VARIANTS)}, got {variant!r}"
    )


def fit_references(
    source_emb: AnyFloatArray, target_emb: AnyFloatArray, n_clusters: int = 16, seed: int = 0
) -> tuple[NDArray[np.float32], int]:
    """(references, n_source): normalised k-means centres of source + normalised target embs."""
    src = l2_normalise(_as_matrix(source_emb, "source embeddings"))
    dim = src.shape[1] if src.shape[0] else None
    tgt = l2_normalise(_as_matrix(target_emb, "target embeddings", dim))
    if src.shape[0] == 0 and tgt.shape[0] == 0:
        raise BackendError("backend: no training embeddings for this section")
    parts = []
    if src.shape[0]:
        # Centres of unit vectors are shorter than 1: normalise so the score is a true cosine.
        parts.append(l2_normalise(kmeans(src, n_clusters, seed=seed)))
    n_source = parts[0].shape[0] if parts else 0
    if tgt.shape[0]:
        parts.append(tgt)
    return np.concatenate(parts, axis=0).astype(np.float32), n_source


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
    scores the held-out clips. Source and target clips are each spread over the folds.
    """
    src = _as_matrix(source_emb, "source embeddings")
    tgt = _as_matrix(target_emb, "target embeddings", src.shape[1] if src.shape[0] else None)
    n_s, n_t = src.shape[0], tgt.shape[0]
    n = n_s + n_t
    if n < 2:
        raise BackendError(
            f"threshold: need at least 2 normal training clips to cross-fit, got {n}"
        )
    k = max(2, min(folds, n))
    rng = np.random.default_rng(seed)
    fold_s = np.empty(n_s, dtype=int)
    fold_s[rng.permutation(n_s)] = np.arange(n_s) % k
    fold_t = np.empty(n_t, dtype=int)
    # continue the round-robin where source stopped so small folds get target clips too
    fold_t[rng.permutation(n_t)] = (np.arange(n_t) + n_s) % k
    out = np.empty(n)
    for f in range(k):
        hs, ht = fold_s == f, fold_t == f
        held = np.concatenate([src[hs], tgt[ht]], axis=0)
        if held.shape[0] == 0:
            continue
        s = np.asarray(fit_score(src[~hs], tgt[~ht], held), dtype=np.float64)
        out[np.flatnonzero(hs)] = s[: hs.sum()]
        out[n_s + np.flatnonzero(ht)] = s[hs.sum() :]
    return out


def leave_out_threshold(
    source_emb: AnyFloatArray,
    target_emb: AnyFloatArray,
    n_clusters: int = 16,
    seed: int = 0,
    percentile: float = 90.0,
    folds: int = 5,
    variant: str = "joint",
) -> float:
    """Percentile of cross-fitted scores of the normal clips (see the module docstring)."""
    _check_percentile(percentile)

    def fit_score(
        s: NDArray[np.float64], t: NDArray[np.float64], held: NDArray[np.float64]
    ) -> AnyFloatArray:
        refs, n_src = fit_references(s, t, n_clusters, seed)
        return variant_scores(held, SectionBackend(refs, n_src, 0.0), variant)

    scores = cross_fit_scores(source_emb, target_emb, fit_score, folds, seed)
    return float(np.percentile(scores, percentile))


def _check_percentile(p: float) -> None:
    if not 0.0 <= p <= 100.0:
        raise BackendError(f"percentile: expected a value in [0, 100], got {p}")


def fit_section(
    source_emb: AnyFloatArray,
    target_emb: AnyFloatArray,
    n_clusters: int = 16,
    seed: int = 0,
    percentile: float = 90.0,
    folds: int = 5,
    variant: str = "joint",
) -> SectionBackend:
    """The section's backend: references from all clips, threshold by cross-fitting.

    With a single normal clip no held-out score exists; the threshold is then +inf (never
    alarm) rather than a made-up number.
    """
    refs, n_source = fit_references(source_emb, target_emb, n_clusters, seed)
    n = _as_matrix(source_emb, "source embeddings").shape[0]
    n += _as_matrix(target_emb, "target embeddings").shape[0]
    thr = (
        leave_out_threshold(source_emb, target_emb, n_clusters, seed, percentile, folds, variant)
        if n >= 2
        else float("inf")
    )
    return SectionBackend(refs, n_source, thr)


def in_sample_threshold(
    backend: SectionBackend, train_emb: AnyFloatArray, percentile: float
) -> float:
    """The naive DCASE-reference threshold: percentile of scores of the fitting clips themselves.

    Kept for comparison only: it is biased low (see the module docstring).
    """
    _check_percentile(percentile)
    return float(np.percentile(cosine_scores(train_emb, backend.references), percentile))


# ---------------------------------------------------------------- GMM (Table 6 ablation)


@dataclass(frozen=True)
class GmmBackend:
    """Gaussian mixture on L2-normalised embeddings; score = negative log-likelihood."""

    weights: NDArray[np.float64]  # (K,)
    means: NDArray[np.float64]  # (K, D)
    precision_chol: NDArray[np.float64]  # (K, D, D) upper-triangular Cholesky of the precision
    threshold: float

    def score(self, emb: AnyFloatArray) -> NDArray[np.float64]:
        return -_gmm_log_prob(l2_normalise(_as_matrix(np.atleast_2d(emb), "embeddings")), self)

    def to_dict(self) -> dict[str, NDArray[Any]]:
        return {
            "weights": self.weights,
            "means": self.means,
            "precision_chol": self.precision_chol,
            "threshold": np.asarray(self.threshold),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> GmmBackend:
        try:
            return cls(
                np.asarray(d["weights"], dtype=np.float64),
                np.asarray(d["means"], dtype=np.float64),
                np.asarray(d["precision_chol"], dtype=np.float64),
                float(np.asarray(d["threshold"])),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise BackendError(
                f"gmm backend: expected weights, means, precision_chol ({exc})"
            ) from None


def _component_log_prob(x: NDArray[np.float64], g: GmmBackend) -> NDArray[np.float64]:
    n, d = x.shape
    out = np.empty((n, len(g.weights)))
    for k in range(len(g.weights)):
        y = (x - g.means[k]) @ g.precision_chol[k]
        logdet = np.log(np.diag(g.precision_chol[k])).sum()
        out[:, k] = -0.5 * (d * np.log(2 * np.pi) + (y * y).sum(1)) + logdet
    return out + np.log(g.weights)[None, :]


def _logsumexp(a: NDArray[np.float64]) -> NDArray[np.float64]:
    """log(sum(exp(a), axis=1)) without overflow (numpy only: scipy.special costs ~30 MB)."""
    m = a.max(axis=1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    return np.asarray(np.log(np.exp(a - m).sum(axis=1)) + m[:, 0])


def _gmm_log_prob(x: AnyFloatArray, g: GmmBackend) -> NDArray[np.float64]:
    return _logsumexp(_component_log_prob(np.asarray(x, np.float64), g))


def _m_step(
    x: NDArray[np.float64], resp: NDArray[np.float64], reg: float
) -> GmmBackend:
    import scipy.linalg  # the GMM ablation only: a scoring device never pays for it

    nk = resp.sum(0) + 10 * np.finfo(float).eps
    means = (resp.T @ x) / nk[:, None]
    d = x.shape[1]
    chols = np.empty((len(nk), d, d))
    for k in range(len(nk)):
        diff = x - means[k]
        cov = (resp[:, k, None] * diff).T @ diff / nk[k]
        cov.flat[:: d + 1] += reg
        c = scipy.linalg.cholesky(cov, lower=True)
        chols[k] = scipy.linalg.solve_triangular(c, np.eye(d), lower=True).T
    return GmmBackend(nk / nk.sum(), means, chols, float("nan"))


def fit_gmm(
    emb: AnyFloatArray,
    n_components: int = 16,
    reg: float = 1e-3,
    seed: int = 0,
    iters: int = 30,
    tol: float = 1e-3,
) -> GmmBackend:
    """EM for a full-covariance GMM, initialised from k-means (threshold left as NaN)."""
    x = l2_normalise(_as_matrix(emb, "gmm input")).astype(np.float64)
    if x.shape[0] == 0:
        raise BackendError("gmm input: no embeddings")
    centres = kmeans(x, n_components, seed=seed, n_init=1).astype(np.float64)
    resp = np.zeros((x.shape[0], centres.shape[0]))
    resp[np.arange(x.shape[0]), _sq_dists(x, centres).argmin(1)] = 1.0
    g = _m_step(x, resp, reg)
    prev = -np.inf
    for _ in range(iters):
        lp = _component_log_prob(x, g)
        norm = _logsumexp(lp)
        ll = float(norm.mean())
        resp = np.exp(lp - norm[:, None])
        g = _m_step(x, resp, reg)
        if abs(ll - prev) < tol:
            break
        prev = ll
    return g


def fit_gmm_section(
    source_emb: AnyFloatArray,
    target_emb: AnyFloatArray,
    n_components: int = 16,
    seed: int = 0,
    percentile: float = 90.0,
    folds: int = 5,
    reg: float = 1e-3,
) -> GmmBackend:
    """GMM on all normal training embeddings of a section; threshold by cross-fitting."""
    _check_percentile(percentile)
    src = _as_matrix(source_emb, "source embeddings")
    tgt = _as_matrix(target_emb, "target embeddings", src.shape[1] if src.shape[0] else None)
    both = np.concatenate([src.reshape(-1, tgt.shape[1]) if not src.shape[0] else src,
                           tgt.reshape(-1, src.shape[1]) if not tgt.shape[0] else tgt])
    g = fit_gmm(both, n_components, reg, seed)

    def fit_score(
        s: NDArray[np.float64], t: NDArray[np.float64], held: NDArray[np.float64]
    ) -> AnyFloatArray:
        return fit_gmm(np.concatenate([s, t]), n_components, reg, seed).score(held)

    thr = (
        float(np.percentile(cross_fit_scores(src, tgt, fit_score, folds, seed), percentile))
        if both.shape[0] >= 2
        else float("inf")
    )
    return GmmBackend(g.weights, g.means, g.precision_chol, thr)
