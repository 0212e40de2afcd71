"""The GMM backend of the paper's Table 6 ablation (training side only).

A Gaussian mixture (16 components, full covariance, 1e-3 added to the diagonal) on the
L2-normalised embeddings of a section; score = negative log-likelihood. The paper found the
cosine backend better; this exists to rerun that comparison (`model-build evaluate --method
gmm`). Like the cosine backend it has the Table 6 variants (`BackendConfig.variant`): one
mixture on all normal clips ("joint"), on the source clips only ("source"), on the target
clips only ("target": ~10 clips, so as many components as clips), or the sum of the source
and the target mixture's scores ("sum"). It lives in model_build because the device never
uses it, and its `scipy.linalg` import would cost the scoring process memory for nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from edge_agent.arrays import AnyFloatArray
from edge_agent.scoring.backend import (
    BackendConfig,
    BackendError,
    Variant,
    as_matrix,
    check_percentile,
    cross_fit_scores,
    kmeans,
    l2_normalise,
    sq_dists,
)
from model_build.data.clip import Clip

if TYPE_CHECKING:
    from model_build.evaluation.scores import BackendScores


@dataclass(frozen=True)
class GmmBackend:
    """Gaussian mixture on L2-normalised embeddings; score = negative log-likelihood."""

    weights: NDArray[np.float64]  # (K,)
    means: NDArray[np.float64]  # (K, D)
    precision_chol: NDArray[np.float64]  # (K, D, D) upper-triangular Cholesky of the precision

    def score(self, emb: AnyFloatArray) -> NDArray[np.float64]:
        return -_gmm_log_prob(l2_normalise(as_matrix(np.atleast_2d(emb), "embeddings")), self)


@dataclass(frozen=True)
class GmmSection:
    """One section's GMM backend: the mixtures its variant uses (their scores are summed)
    and the decision threshold."""

    models: tuple[GmmBackend, ...]
    threshold: float

    def score(self, emb: AnyFloatArray) -> NDArray[np.float64]:
        return np.asarray(sum(g.score(emb) for g in self.models), dtype=np.float64)


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


def _m_step(x: NDArray[np.float64], resp: NDArray[np.float64], reg: float) -> GmmBackend:
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
    return GmmBackend(nk / nk.sum(), means, chols)


def fit_gmm(
    emb: AnyFloatArray,
    n_components: int = 16,
    reg: float = 1e-3,
    seed: int = 0,
    iters: int = 30,
    tol: float = 1e-3,
) -> GmmBackend:
    """EM for a full-covariance GMM, initialised from k-means; at most one component per
    distinct embedding (a target domain has ~10 clips)."""
    x = l2_normalise(as_matrix(emb, "gmm input")).astype(np.float64)
    if x.shape[0] == 0:
        raise BackendError("gmm input: no embeddings")
    centres = kmeans(x, n_components, seed=seed, n_init=1).astype(np.float64)
    resp = np.zeros((x.shape[0], centres.shape[0]))
    resp[np.arange(x.shape[0]), sq_dists(x, centres).argmin(1)] = 1.0
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


def fit_variant(
    source_emb: NDArray[np.float64],
    target_emb: NDArray[np.float64],
    variant: Variant,
    n_components: int = 16,
    seed: int = 0,
    reg: float = 1e-3,
) -> tuple[GmmBackend, ...]:
    """The mixtures of a Table 6 variant, fitted on a section's normal training embeddings."""

    def fit(x: NDArray[np.float64], which: str) -> GmmBackend:
        if x.shape[0] == 0:
            raise BackendError(f"gmm variant {variant}: no {which} training clips in this section")
        return fit_gmm(x, n_components, reg, seed)

    if variant == "joint":
        return (fit(np.concatenate([source_emb, target_emb]), "normal"),)
    if variant == "source":
        return (fit(source_emb, "source"),)
    if variant == "target":
        return (fit(target_emb, "target"),)
    return fit(source_emb, "source"), fit(target_emb, "target")


def fit_gmm_section(
    source_emb: AnyFloatArray,
    target_emb: AnyFloatArray,
    config: BackendConfig = BackendConfig(),
) -> tuple[GmmSection, NDArray[np.float64]]:
    """(the section's GMM backend, the cross-fitted scores of its normal clips); the
    threshold is `config.percentile` of the latter (DCASE's rule, without in-sample bias)."""
    check_percentile(config.percentile)
    src = as_matrix(source_emb, "source embeddings")
    tgt = as_matrix(target_emb, "target embeddings", src.shape[1] if src.shape[0] else None)
    dim = src.shape[1] if src.shape[0] else tgt.shape[1]
    src, tgt = src.reshape(-1, dim), tgt.reshape(-1, dim)
    models = fit_variant(src, tgt, config.variant, config.n_clusters, config.seed)

    def fit_score(
        s: NDArray[np.float64], t: NDArray[np.float64], held: NDArray[np.float64]
    ) -> AnyFloatArray:
        rest = fit_variant(s, t, config.variant, config.n_clusters, config.seed)
        return GmmSection(rest, float("nan")).score(held)

    if src.shape[0] + tgt.shape[0] < 2:
        return GmmSection(models, float("inf")), np.zeros(0)
    held = cross_fit_scores(src, tgt, fit_score, config.folds, config.seed)
    return GmmSection(models, float(np.percentile(held, config.percentile))), held


def gmm_scores(
    train_embs: Sequence[NDArray[Any]],
    train_clips: Sequence[Clip],
    test_embs: Sequence[NDArray[Any]],
    test_clips: Sequence[Clip],
    config: BackendConfig,
) -> BackendScores:
    """`evaluate.backend_scores` with the GMM backend per component; several components
    (an ensemble) are summed raw, as the paper sums its models' scores, and so are their
    cross-fitted normal scores that the threshold comes from."""
    from model_build.evaluation.scores import BackendScores, _groups, section_rows

    scores = np.zeros(len(test_clips))
    thresholds: dict[str, float] = {}
    normal: dict[str, NDArray[np.float64]] = {}
    backends: dict[str, Any] = {}
    for sec, t_idx in sorted(_groups(test_clips).items()):
        src, tgt = section_rows(train_clips, sec)
        if len(src) + len(tgt) == 0:
            raise BackendError(f"{sec}: test clips but no training clips to fit a backend on")
        held = np.zeros(len(src) + len(tgt))
        for tr, te in zip(train_embs, test_embs, strict=True):
            g, h = fit_gmm_section(tr[src], tr[tgt], config)
            scores[t_idx] += g.score(te[t_idx])
            backends.setdefault(sec, []).append(g)
            held = held + h if h.size else held
        normal[sec] = held
        thresholds[sec] = (
            float(np.percentile(held, config.percentile))
            if len(src) + len(tgt) >= 2
            else float("inf")
        )
    return BackendScores(scores, thresholds, normal, backends)
