"""edge_agent.scoring.backend: k-means, components, local density, fusion, cross-fitted
thresholds."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from edge_agent.scoring.backend import (
    PAPER_BACKEND,
    BackendConfig,
    BackendError,
    SectionBackend,
    cross_fit_scores,
    fit_component,
    fit_section,
    kmeans,
    l2_normalise,
    local_density,
    view_weights,
)


def _blobs(
    n_per: int = 50, k: int = 4, dim: int = 32, seed: int = 0, spread: float = 0.05
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    rng = np.random.default_rng(seed)
    centres = l2_normalise(rng.normal(size=(k, dim)))
    x = np.concatenate([c + spread * rng.normal(size=(n_per, dim)) for c in centres])
    return centres, x.astype(np.float32)


def test_l2_normalise_gives_unit_rows_and_keeps_zero_rows() -> None:
    x = np.array([[3.0, 4.0], [0.0, 0.0]])
    out = l2_normalise(x)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [[0.6, 0.8], [0.0, 0.0]], atol=1e-7)


def test_kmeans_recovers_separated_clusters() -> None:
    centres, x = _blobs()
    found = kmeans(x, 4, seed=3)
    assert found.shape == (4, 32)
    d = np.linalg.norm(found[:, None] - centres[None], axis=-1)
    assert sorted(d.argmin(1).tolist()) == [0, 1, 2, 3]  # one centre per blob
    assert d.min(1).max() < 0.05


def test_kmeans_is_deterministic_for_a_seed() -> None:
    _, x = _blobs(k=6, spread=0.5)
    np.testing.assert_array_equal(kmeans(x, 16, seed=7), kmeans(x, 16, seed=7))


def test_kmeans_uses_fewer_clusters_when_fewer_points() -> None:
    x = np.random.default_rng(0).normal(size=(5, 8))
    c = kmeans(x, 16)
    assert c.shape == (5, 8)
    np.testing.assert_allclose(np.sort(c, axis=0), np.sort(x, axis=0), atol=1e-6)
    dup = np.repeat(x[:2], 4, axis=0)  # 8 rows, 2 distinct points
    assert kmeans(dup, 16).shape == (2, 8)


def test_kmeans_is_fast_on_a_dcase_section() -> None:
    x = np.random.default_rng(0).normal(size=(1000, 256)).astype(np.float32)
    kmeans(x[:50], 16)  # warm-up
    # CPU time of this process (all its threads), so other jobs on a loaded CI machine do not
    # count; typical here: ~0.1 s idle, up to ~0.9 s CPU under load (BLAS threads contend).
    t = time.process_time()
    kmeans(x, 16)
    assert time.process_time() - t < 3.0


NO_DENSITY = BackendConfig(density_k=0, normalise=False)


def test_component_distance_is_zero_for_a_reference_and_grows_with_the_angle() -> None:
    c = fit_component(np.eye(4)[:2], np.zeros((0, 4)), NO_DENSITY)
    e = np.array([[2.0, 0, 0, 0], [1.0, 1.0, 0, 0], [0, 0, 1.0, 0], [-1.0, 0, 0, 0]])
    np.testing.assert_allclose(c.distances(e), [0.0, 1 - np.sqrt(0.5), 1.0, 1.0], atol=1e-6)
    assert c.distances(e[0]).shape == (1,)
    with pytest.raises(BackendError, match="4 dims"):
        c.distances(np.ones((1, 3)))


def test_local_density_is_the_mean_distance_to_the_k_nearest_other_references() -> None:
    refs = l2_normalise(np.array([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0]]))
    d = 1.0 - refs @ refs.T
    dens = local_density(refs, 1)
    assert dens[0] == pytest.approx(d[0, 1]) and dens[2] == pytest.approx(d[2, 1])
    dens2 = local_density(refs, 2)
    assert dens2[2] == pytest.approx((d[2, 0] + d[2, 1]) / 2)
    np.testing.assert_array_equal(local_density(refs, 0), np.ones(3, np.float32))
    assert local_density(refs[:1], 3).tolist() == [1.0]
    # fewer than k other references: plain distances, not a density from one neighbour
    np.testing.assert_array_equal(local_density(refs, 3), np.ones(3, np.float32))
    dup = np.repeat(refs[:1], 2, axis=0)
    assert np.all(local_density(dup, 1) > 0)  # duplicates never divide by zero


def test_density_puts_a_sparse_target_domain_on_the_source_scale() -> None:
    """Dense source clips, ten spread-out target clips: without the density, normal target
    clips score far above normal source clips (one threshold cannot serve both); with it
    their score distributions overlap."""
    rng = np.random.default_rng(0)
    dim = 16
    s_dir, t_dir = np.eye(dim)[0], np.eye(dim)[1]
    src = s_dir + 0.05 * rng.standard_normal((200, dim))
    tgt = t_dir + 0.3 * rng.standard_normal((10, dim))
    new_src = s_dir + 0.05 * rng.standard_normal((100, dim))
    new_tgt = t_dir + 0.3 * rng.standard_normal((100, dim))
    plain = fit_section([src], [tgt], BackendConfig(density_k=0)).backend
    dense = fit_section([src], [tgt], BackendConfig(density_k=3)).backend
    ratio_plain = np.median(plain.score([new_tgt])) - np.median(plain.score([new_src]))
    ratio_dense = np.median(dense.score([new_tgt])) - np.median(dense.score([new_src]))
    assert ratio_plain > 3.0 and abs(ratio_dense) < 0.5 * ratio_plain


def test_fit_section_keeps_every_clip_and_cross_fits_normaliser_and_threshold() -> None:
    _, src = _blobs(n_per=60, k=3, spread=0.3)
    tgt = np.random.default_rng(9).normal(size=(10, 32)).astype(np.float32)
    fit = fit_section([src], [tgt], BackendConfig(percentile=90.0))
    b = fit.backend
    c = b.components[0]
    assert c.n_source == 180 and c.references.shape == (190, 32)
    np.testing.assert_allclose(np.linalg.norm(c.references, axis=1), 1.0, atol=5e-4)  # float16
    np.testing.assert_allclose(c.distances(tgt), 0.0, atol=5e-4)  # to itself (float16 refs)
    # the normaliser: held-out scores standardised to mean 0, std 1
    assert fit.held_out.shape == (190,)
    assert fit.held_out.mean() == pytest.approx(0.0, abs=1e-9)
    assert fit.held_out.std() == pytest.approx(1.0, abs=1e-9)
    assert b.threshold == pytest.approx(np.percentile(fit.held_out, 90))
    # the naive DCASE-reference threshold: the percentile of the fitting clips' own scores
    naive = float(np.percentile(b.score([np.concatenate([src, tgt])]), 90.0))
    assert b.threshold > naive  # held-out clips are further from references they did not shape
    # every held-out score is the score of a backend that never saw that clip
    cfg = BackendConfig(normalise=False)
    raw = cross_fit_scores(src, tgt, lambda s, t, h: fit_component(s, t, cfg).distances(h))
    np.testing.assert_allclose(fit.held_out, (raw - c.mean) / c.std)


def test_references_kmeans_and_the_cap_on_all() -> None:
    _, src = _blobs(n_per=60, k=3, spread=0.3)
    tgt = np.random.default_rng(9).normal(size=(10, 32))
    paper = fit_section([src], [tgt], PAPER_BACKEND).backend.components[0]
    assert paper.n_source == 16 and paper.references.shape == (26, 32)
    np.testing.assert_array_equal(paper.density, 1.0)
    assert (paper.mean, paper.std) == (0.0, 1.0)  # the paper's raw distance
    capped = fit_component(src, tgt, BackendConfig(max_references=50))
    assert capped.n_source == 50 and capped.references.shape == (60, 32)


def test_fusion_sums_or_takes_the_max_of_standardised_components() -> None:
    rng = np.random.default_rng(1)
    a_src, b_src = rng.normal(size=(40, 8)), rng.normal(size=(40, 6))
    a_tgt, b_tgt = rng.normal(size=(5, 8)), rng.normal(size=(5, 6))
    x = [rng.normal(size=(7, 8)), rng.normal(size=(7, 6))]
    for fusion in ("sum", "max"):
        b = fit_section([a_src, b_src], [a_tgt, b_tgt], BackendConfig(fusion=fusion)).backend
        per = b.component_scores(x)
        expected = per[0] + per[1] if fusion == "sum" else np.maximum(per[0], per[1])
        np.testing.assert_allclose(b.score(x), expected)
        for c, p, e in zip(b.components, per, x, strict=True):
            np.testing.assert_allclose(p, (c.distances(e) - c.mean) / c.std)
    with pytest.raises(BackendError, match="2 components"):
        b.score(x[:1])
    w = fit_section([a_src, b_src], [a_tgt, b_tgt], weights=[0.25, 1.0])
    per = w.backend.component_scores(x)
    np.testing.assert_allclose(per[0], 0.25 * b.component_scores(x)[0])
    np.testing.assert_allclose(w.backend.score(x), per[0] + per[1])
    assert w.backend.threshold == pytest.approx(np.percentile(w.held_out, 90))
    # a weight of 0 silences a component (a per-section fit may decide so); all 0 is refused
    off = fit_section([a_src, b_src], [a_tgt, b_tgt], weights=[1.0, 0.0]).backend
    np.testing.assert_array_equal(off.component_scores(x)[1], 0.0)
    np.testing.assert_allclose(off.score(x), b.component_scores(x)[0])
    for bad in ([0.0, 0.0], [1.0, -0.5], [1.0, np.nan]):
        with pytest.raises(BackendError, match="weights"):
            fit_section([a_src, b_src], [a_tgt, b_tgt], weights=bad)

    with pytest.raises(BackendError, match="number of clips"):
        fit_section([a_src, b_src[:30]], [a_tgt, b_tgt])


def test_view_weights_give_every_kind_one_vote() -> None:
    assert view_weights(["model", "model", "model", "bands", "rhythm"]) == pytest.approx(
        [1 / 3, 1 / 3, 1 / 3, 1.0, 1.0]
    )
    assert view_weights(["model"]) == [1.0]


def test_fit_section_with_few_clips() -> None:
    x = np.random.default_rng(0).normal(size=(3, 8))
    b = fit_section([x[:2]], [x[2:]]).backend
    assert b.components[0].references.shape == (3, 8) and np.isfinite(b.threshold)
    one = fit_section([x[:1]], [np.zeros((0, 8))]).backend
    assert one.threshold == np.inf  # no held-out score exists: never alarm
    with pytest.raises(BackendError, match="no training embeddings"):
        fit_section([np.zeros((0, 8))], [np.zeros((0, 8))])
    with pytest.raises(BackendError, match="2-d"):
        fit_section([np.zeros((2, 2, 2))], [np.zeros((0, 8))])
    with pytest.raises(BackendError, match="percentile"):
        BackendConfig(percentile=120.0)
    with pytest.raises(BackendError, match="NaN"):
        fit_section([np.full((3, 8), np.nan)], [np.zeros((0, 8))])


def test_variants_use_the_right_references() -> None:
    b = fit_section([np.eye(6)[:3]], [np.eye(6)[3:4]], NO_DENSITY).backend
    e = [np.eye(6)[[0, 3]]]
    np.testing.assert_allclose(b.score(e, "joint"), [0, 0], atol=1e-6)
    np.testing.assert_allclose(b.score(e, "source"), [0, 1], atol=1e-6)
    np.testing.assert_allclose(b.score(e, "target"), [1, 0], atol=1e-6)
    np.testing.assert_allclose(b.score(e, "sum"), [1, 1], atol=1e-6)
    with pytest.raises(BackendError, match="variant"):
        b.score(e, "median")  # type: ignore[arg-type]
    with pytest.raises(BackendError, match="variant"):
        BackendConfig(variant="median")  # type: ignore[arg-type]


def test_section_backend_round_trips_through_npz(tmp_path: Path) -> None:
    _, x = _blobs()
    b = fit_section([x[:150], x[:150, :8]], [x[150:160], x[150:160, :8]]).backend
    path = tmp_path / "b.npz"
    d: dict[str, Any] = b.to_dict()
    np.savez(path, **d)
    with np.load(path, allow_pickle=False) as f:
        back = SectionBackend.from_dict(dict(f))
    assert len(back.components) == 2
    assert all(
        np.array_equal(p.references, q.references)
        and np.array_equal(p.density, q.density)
        and (p.n_source, p.mean, p.std, p.weight) == (q.n_source, q.mean, q.std, q.weight)
        for p, q in zip(back.components, b.components, strict=True)
    )
    assert (back.threshold, back.fusion) == (b.threshold, b.fusion)
    d = b.to_dict()
    with pytest.raises(BackendError, match="n_source"):
        SectionBackend.from_dict({**d, "c0.n_source": np.asarray(999)})
    with pytest.raises(BackendError, match="missing or malformed"):
        SectionBackend.from_dict(
            {
                "threshold": np.asarray(1.0),
                "n_components": np.asarray(1),
                "fusion": np.asarray("sum"),
            }
        )
    with pytest.raises(BackendError, match="threshold"):
        SectionBackend.from_dict({**d, "threshold": np.asarray(np.nan)})
    with pytest.raises(BackendError, match="normaliser"):
        SectionBackend.from_dict({**d, "c1.std": np.asarray(0.0)})
    with pytest.raises(BackendError, match="fusion"):
        SectionBackend.from_dict({**d, "fusion": np.asarray("median")})
    with pytest.raises(BackendError, match="weight"):
        SectionBackend.from_dict({**d, "c0.weight": np.asarray(-1.0)})


def test_config_round_trips_and_rejects_unknown_fields() -> None:
    c = BackendConfig(density_k=5, fusion="max")
    assert BackendConfig.from_dict(c.to_dict()) == c
    with pytest.raises(BackendError, match="unknown field"):
        BackendConfig.from_dict({**c.to_dict(), "colour": "blue"})
    with pytest.raises(BackendError, match="references"):
        BackendConfig(references="some")  # type: ignore[arg-type]


def test_a_handful_of_agreeing_clips_does_not_blow_up_the_normaliser() -> None:
    """Two clips whose held-out scores agree by chance: the spread is floored at a tenth of
    the mean distance, so a new clip's score stays a few units, not millions."""
    x = l2_normalise(np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]))
    b = fit_section([x], [np.zeros((0, 3))], BackendConfig(density_k=0)).backend
    c = b.components[0]
    assert c.std == pytest.approx(0.1 * c.mean)
    assert abs(float(b.score([np.array([[1.0, 1.0, 1.0]])])[0])) < 20


def test_references_are_stored_in_float16_and_score_exactly_as_fitted(tmp_path: Path) -> None:
    """The bundle stores references as float16; the fit already rounded them, so a loaded
    backend scores bit for bit like the one that was fitted."""
    _, x = _blobs()
    b = fit_section([x[:150]], [x[150:160]]).backend
    d: dict[str, Any] = b.to_dict()
    assert d["c0.references"].dtype == np.float16
    np.savez(tmp_path / "b.npz", **dict(d))
    with np.load(tmp_path / "b.npz", allow_pickle=False) as f:
        back = SectionBackend.from_dict(dict(f))
    probe = [np.random.default_rng(2).normal(size=(9, 32))]
    np.testing.assert_array_equal(back.score(probe), b.score(probe))
