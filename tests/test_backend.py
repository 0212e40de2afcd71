"""edge_agent.scoring.backend: k-means, components, local density, fusion, cross-fitted
thresholds."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest
from numpy.typing import NDArray
from scipy.special import log_ndtr

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
from edge_agent.scoring.fusion import TRANSFORMS, Transform


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


NO_DENSITY = BackendConfig(density_k=0, normalise=False, transform="none")


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
    fit = fit_section([src], [tgt], BackendConfig(percentile=90.0, transform="none"))
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
    # one-sided evidence: the same standardised scores through the transform, the threshold
    # the percentile of those (the default: the Gaussian surprise)
    new_clips = np.concatenate([src[:5] + 0.2, tgt[:3] * 2])
    one_sided: tuple[tuple[Transform, Any], ...] = (
        ("surprise", lambda z: -log_ndtr(-z)),
        ("softplus", lambda z: np.logaddexp(0.0, z)),
    )
    for transform, f in one_sided:
        cfg = BackendConfig(percentile=90.0, transform=transform)
        one = fit_section([src], [tgt], cfg)
        assert one.backend.transform == transform
        np.testing.assert_allclose(one.held_out, f(fit.held_out), rtol=1e-10)
        assert one.backend.threshold == pytest.approx(np.percentile(one.held_out, 90))
        np.testing.assert_allclose(
            one.backend.score([new_clips]), f(b.score([new_clips])), rtol=1e-10
        )
    assert BackendConfig().transform == "surprise"
    # every held-out score is the score of a backend that never saw that clip
    cfg = BackendConfig(normalise=False, transform="none")
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
            z = (c.distances(e) - c.mean) / c.std
            np.testing.assert_allclose(p, -log_ndtr(-z))  # the default: the Gaussian surprise
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


def _one_feature_moved() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Normal clips of a 200-dim classical feature (most features swing widely, feature 17
    a third as much), and test clips: 10 normal ones, then 10 with feature 17 moved by 12 of
    its own spreads (a small move beside the 199 others' swings)."""
    rng = np.random.default_rng(4)
    centre = 0.1 * rng.standard_normal(200)  # features around 0, like a spectrum's fine shape
    centre[17] = 0.0
    spread = np.full(200, 0.3)
    spread[17] = 0.1

    def clips(n: int) -> np.ndarray:
        return centre + spread * rng.standard_normal((n, 200))

    train, test = clips(40), clips(20)
    test[10:, 17] += 12 * 0.1
    return train[:34], train[34:], test


def test_deviation_score_sees_one_moved_feature_that_the_cosine_hardly_sees() -> None:
    """A fault that moves one of 200 features turns the vector little (the cosine distance's
    AUC stays low), while the largest per-feature |z| finds it; a classical kind gets the
    deviation score by default, the learned model does not, and the fused section separates
    the faulty clips."""
    from edge_agent.scoring.fusion import auc

    src, tgt, test = _one_feature_moved()
    cfg = BackendConfig(weighting="fixed")
    fit = fit_section([src], [tgt], cfg, kinds=["bands"])
    c = fit.backend.components[0]
    assert (c.deviation, c.dev_weight, c.weight) == (1, 0.5, 0.5)  # one view, shared
    assert c.dev_std > 0 and np.isfinite(c.dev_mean)
    cos_auc = auc(c.distances(test[:10]), c.distances(test[10:]))
    dev_auc = auc(c.deviations(test[:10]), c.deviations(test[10:]))
    assert cos_auc < 0.9 and dev_auc == 1.0
    fused = fit.backend.score([test])
    assert auc(fused[:10], fused[10:]) > cos_auc
    # the raw deviation: |z| against the features of the references (unit rows times their
    # lengths), the feature moved by 12 spreads standing out
    assert c.norms is not None
    feats = c.references.astype(np.float64) * c.norms[:, None]
    np.testing.assert_allclose(feats, np.concatenate([src, tgt]), rtol=2e-3, atol=2e-3)
    assert c.deviations(test[10:]).min() > 1.5 * c.deviations(test[:10]).max()
    # a clip louder in every feature has the same direction (cosine distance unchanged) but
    # lies outside every feature's normal range
    np.testing.assert_allclose(c.distances(1.5 * test[:10]), c.distances(test[:10]), atol=1e-6)
    assert np.all(c.deviations(1.5 * test[:10]) > c.deviations(test[:10]))
    assert fit_section([src], [tgt], cfg, kinds=["model"]).backend.components[0].deviation == 0
    assert fit_section([src], [tgt], cfg).backend.components[0].deviation == 0  # no kinds
    off = fit_section([src], [tgt], BackendConfig(weighting="fixed", deviation=0), kinds=["bands"])
    assert off.backend.components[0].deviation == 0
    few = fit_section([src[:5]], [tgt[:2]], cfg, kinds=["bands"])  # 7 clips: too few
    assert few.backend.components[0].deviation == 0


def test_deviation_held_out_scores_and_threshold_come_from_the_same_fold_fits() -> None:
    """The deviation normaliser is the mean and spread of its cross-fitted scores, and the
    threshold the percentile of the fused (cosine + deviation) held-out scores."""
    src, tgt, _ = _one_feature_moved()
    cfg = BackendConfig(weighting="fixed")
    fit = fit_section([src], [tgt], cfg, kinds=["bands"], weights=[0.5], deviation=[2.0])
    c = fit.backend.components[0]
    assert (c.weight, c.dev_weight) == (0.5, 2.0)

    def dev(s: np.ndarray, t: np.ndarray, h: np.ndarray) -> np.ndarray:
        return replace(fit_component(s, t, cfg), deviation=1).deviations(h)

    def cos(s: np.ndarray, t: np.ndarray, h: np.ndarray) -> np.ndarray:
        return fit_component(s, t, cfg).distances(h)

    hd, hc = cross_fit_scores(src, tgt, dev), cross_fit_scores(src, tgt, cos)
    assert c.dev_mean == pytest.approx(hd.mean())
    assert c.dev_std == pytest.approx(max(hd.std(), 0.1 * hd.mean()))
    z_cos, z_dev = (hc - c.mean) / c.std, (hd - c.dev_mean) / c.dev_std
    fused = 0.5 * -log_ndtr(-z_cos) + 2.0 * -log_ndtr(-z_dev)  # each one's Gaussian surprise
    np.testing.assert_allclose(fit.held_out, fused)
    assert fit.backend.threshold == pytest.approx(np.percentile(fused, 90))
    with pytest.raises(BackendError, match="deviation weights"):
        fit_section([src], [tgt], cfg, kinds=["bands"], deviation=[-1.0])


def test_deviation_round_trips_and_bad_fields_are_named(tmp_path: Path) -> None:
    src, tgt, test = _one_feature_moved()
    b = fit_section([src], [tgt], BackendConfig(weighting="fixed"), kinds=["bands"]).backend
    saved: dict[str, Any] = b.to_dict()
    np.savez(tmp_path / "b.npz", **saved)
    with np.load(tmp_path / "b.npz", allow_pickle=False) as f:
        d = dict(f)
    back = SectionBackend.from_dict(d)
    c, k = back.components[0], b.components[0]
    assert (c.deviation, c.dev_mean, c.dev_std, c.dev_weight) == (
        k.deviation,
        k.dev_mean,
        k.dev_std,
        k.dev_weight,
    )
    np.testing.assert_array_equal(back.score([test]), b.score([test]))
    assert c.norms is not None and k.norms is not None
    np.testing.assert_array_equal(c.norms, k.norms)
    for key, value, match in (
        ("c0.dev_std", 0.0, "c0.dev_std"),
        ("c0.dev_mean", np.nan, "c0.dev_mean"),
        ("c0.dev_weight", -1.0, "c0.dev_weight"),
        ("c0.deviation", -1, "c0.deviation"),
        ("c0.norms", np.full(len(d["c0.norms"]), np.nan), "c0.norms"),
        ("c0.norms", np.ones(3), "c0.norms"),
    ):
        with pytest.raises(BackendError, match=match):
            SectionBackend.from_dict({**d, key: np.asarray(value)})
    # a section written before deviation scores existed loads without them
    old = {k: v for k, v in d.items() if "dev" not in k and "norms" not in k}
    assert SectionBackend.from_dict(old).components[0].deviation == 0
    assert SectionBackend.from_dict(old).components[0].norms is None
    # weight 0 on the cosine alone is still a usable section
    only = SectionBackend.from_dict({**d, "c0.weight": np.asarray(0.0)})
    assert np.all(np.isfinite(only.score([test])))


def test_deviation_config_is_checked_and_old_bundles_read_as_none() -> None:
    assert BackendConfig().deviation == 1
    assert BackendConfig.from_dict({"density_k": 3}).deviation == 0
    assert BackendConfig.from_dict(BackendConfig().to_dict()).deviation == 1
    for bad in (-1, 65, 1.5, True):
        with pytest.raises(BackendError, match="backend deviation: expected an integer"):
            BackendConfig(deviation=bad)  # type: ignore[arg-type]


def test_a_kind_in_no_deviation_is_fitted_on_its_cosine_score_alone() -> None:
    """`no_deviation` (the stability and the onset rhythm by default): the component keeps its
    whole weight on the cosine score, in fixed and per-section weighting alike, while another
    classical kind beside it keeps its deviation score; a bundle written before the field
    existed reads as none, and the field is checked by name."""
    src, tgt, _ = _one_feature_moved()
    cfg = BackendConfig(weighting="fixed")
    assert cfg.no_deviation == ("stability", "onsets")
    fit = fit_section([src, src], [tgt, tgt], cfg, kinds=["bands", "stability"])
    bands, stab = fit.backend.components
    assert (bands.deviation, bands.dev_weight, bands.weight) == (1, 0.5, 0.5)
    assert (stab.deviation, stab.dev_weight, stab.weight) == (0, 0.0, 1.0)
    every = fit_section([src], [tgt], replace(cfg, no_deviation=()), kinds=["stability"])
    assert every.backend.components[0].deviation == 1
    old = BackendConfig.from_dict({"weighting": "pseudo", "deviation": 1})
    assert old.no_deviation == ()
    stored = {**BackendConfig().to_dict(), "no_deviation": ["stability", "onsets"]}  # JSON's
    assert BackendConfig.from_dict(stored) == BackendConfig()
    for bad in (("model",), ("bands", "bands"), ("",), "stability"):
        with pytest.raises(BackendError, match="backend no_deviation"):
            BackendConfig(no_deviation=bad)  # type: ignore[arg-type]


def test_kmeans_centres_carry_their_members_mean_length() -> None:
    """Past `max_references` the source references are k-means centres; each keeps the mean
    length of the clips nearest to it, so the deviation score still sees the level of the
    features as computed (two clusters of directions, one quiet, one three times as loud)."""
    rng = np.random.default_rng(5)
    a, b = np.zeros(8), np.zeros(8)
    a[0], b[1] = 1.0, 1.0
    quiet = l2_normalise(a + 0.05 * rng.standard_normal((30, 8)))
    loud = 3.0 * l2_normalise(b + 0.05 * rng.standard_normal((30, 8)))
    c = fit_component(
        np.concatenate([quiet, loud]),
        np.zeros((0, 8)),
        BackendConfig(references="kmeans", n_clusters=2),
    )
    assert c.n_source == 2 and c.norms is not None
    order = np.argsort(c.references[:, 1])  # the quiet direction's centre first
    np.testing.assert_allclose(c.norms[order], [1.0, 3.0], rtol=1e-5)


def test_one_sided_evidence_lets_one_component_alarm_where_another_finds_the_clip_typical() -> None:
    """A clip that one component finds more typical than its normal clips (a copy of one of
    its references: z = -2.5) and another finds far outside its normal spread (z = 3.1): summed
    as they are, the first cancels the second and the clip is below the threshold; through
    either one-sided transform it alarms (a fault usually moves one view, not every view)."""
    rng = np.random.default_rng(3)
    ca, cb = rng.normal(size=8), rng.normal(size=6)
    srcs = [ca + 0.5 * rng.normal(size=(40, 8)), cb + 0.5 * rng.normal(size=(40, 6))]
    tgts = [ca + 0.5 * rng.normal(size=(4, 8)), cb + 0.5 * rng.normal(size=(4, 6))]
    clip = [srcs[0][:1], (cb + 1.0 * rng.normal(size=6))[None]]
    above = {}
    for transform in TRANSFORMS:
        cfg = BackendConfig(transform=cast(Transform, transform))
        b = fit_section(srcs, tgts, cfg).backend
        z = [
            float((c.distances(e)[0] - c.mean) / c.std)
            for c, e in zip(b.components, clip, strict=True)
        ]
        assert z[0] < -2.0 and z[1] > 3.0  # the same standardised scores under every transform
        above[transform] = float(b.score(clip)[0]) > b.threshold
    assert above == {"none": False, "softplus": True, "surprise": True}


def test_transform_is_checked_saved_with_the_section_and_old_files_read_as_none(
    tmp_path: Path,
) -> None:
    assert BackendConfig().transform == "surprise" and PAPER_BACKEND.transform == "none"
    assert BackendConfig.from_dict({"density_k": 3}).transform == "none"  # an older manifest
    assert BackendConfig.from_dict(BackendConfig().to_dict()) == BackendConfig()
    with pytest.raises(BackendError, match="backend transform: expected one of"):
        BackendConfig(transform="sigmoid")  # type: ignore[arg-type]
    with pytest.raises(BackendError, match="backend transform: 'surprise' needs normalise"):
        BackendConfig(normalise=False)
    rng = np.random.default_rng(4)
    src, tgt, x = rng.normal(size=(30, 8)), rng.normal(size=(4, 8)), rng.normal(size=(5, 8))
    b = fit_section([src], [tgt], BackendConfig(transform="softplus")).backend
    path = tmp_path / "b.npz"
    saved: dict[str, Any] = b.to_dict()
    np.savez(path, **saved)
    with np.load(path, allow_pickle=False) as z:
        d = {k: z[k] for k in z.files}
    back = SectionBackend.from_dict(d)
    assert back.transform == "softplus"
    np.testing.assert_array_equal(back.score([x]), b.score([x]))
    old = SectionBackend.from_dict({k: v for k, v in d.items() if k != "transform"})
    assert old.transform == "none"
    np.testing.assert_allclose(np.logaddexp(0.0, old.score([x])), b.score([x]), rtol=1e-12)
    with pytest.raises(BackendError, match="backend transform: expected one of"):
        SectionBackend.from_dict({**d, "transform": np.asarray("sigmoid")})
