"""edge_agent.scoring.fusion: per-section component weights from held-out normal clips against
pseudo-anomalies, anchored on the learned model; and their use in backend.fit_section."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import log_ndtr

from edge_agent.scoring.backend import (
    BackendConfig,
    BackendError,
    cross_fit_scores,
    cross_fit_with_extra,
    fit_component,
    fit_section,
)
from edge_agent.scoring.fusion import (
    Transform,
    auc,
    choose_weights,
    evidence,
    gaussian_surprise,
)
from edge_agent.scoring.pseudo import DEFAULT_COUNT, FIRST_KINDS, PseudoSet
from edge_agent.scoring.pseudo import KINDS as PSEUDO_KINDS

KINDS = ["model", "bands", "rhythm"]


def test_auc_is_the_mann_whitney_statistic_with_ties() -> None:
    assert auc(np.array([0.0, 1.0]), np.array([2.0, 3.0])) == 1.0
    assert auc(np.array([2.0, 3.0]), np.array([0.0, 1.0])) == 0.0
    assert auc(np.array([1.0, 1.0]), np.array([1.0])) == 0.5
    assert auc(np.array([0.0, 2.0]), np.array([1.0, 3.0])) == 0.75
    assert auc(np.array([]), np.array([1.0])) == 0.5
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=200), rng.normal(0.5, 1, size=150)
    slow = np.mean([(y > x) + 0.5 * (y == x) for x in a for y in b])
    assert auc(a, b) == pytest.approx(slow)


def _scores(
    rng: np.random.Generator, shifts: list[float], n: int = 60, m: int = 80
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Standardised scores: normal ~ N(0, 1) per component, pseudo shifted by `shifts`."""
    normal = [rng.normal(size=n) for _ in shifts]
    pseudo = [rng.normal(s, 1.0, size=m) for s in shifts]
    return normal, pseudo


def test_a_component_carrying_only_noise_gets_about_no_weight() -> None:
    """The model separates, the classical views score pseudo-anomalies like normal clips:
    without the anchor their discriminant weight is ~0, the model's 1."""
    normal, pseudo = _scores(np.random.default_rng(1), [1.5, 0.0, 0.0])
    ch = choose_weights(normal, pseudo, KINDS, anchor=0.0, ridge=0.5)
    assert ch.weights[0] == 1.0 and max(ch.weights[1:]) < 0.15
    assert ch.separation[0] > 0.8 and abs(ch.separation[1] - 0.5) < 0.15


def test_a_separating_component_earns_weight_and_a_useless_model_keeps_only_the_anchor() -> None:
    normal, pseudo = _scores(np.random.default_rng(2), [0.0, 2.0, 0.0])
    ch = choose_weights(normal, pseudo, KINDS, anchor=0.3, ridge=0.5)
    assert ch.group_weights[1] == 1.0 and ch.weights[2] < 0.1
    assert 0.25 < ch.weights[0] < 0.5  # the anchor's share of the blend, nothing more
    # two views that each separate, with independent errors: both count, and together they
    # separate better than either alone
    normal, pseudo = _scores(np.random.default_rng(3), [1.2, 1.2, 0.0])
    both = choose_weights(normal, pseudo, KINDS, anchor=0.0, ridge=0.5)
    assert min(both.weights[:2]) > 0.7 and both.weights[2] < 0.15
    assert both.fused > max(both.separation[:2])


def test_a_view_that_repeats_another_adds_little() -> None:
    """Bands is the model's evidence again (correlated scores): the discriminant gives it
    far less than an independent view with the same separation would get."""
    rng = np.random.default_rng(9)
    base_n, base_p = rng.normal(size=60), rng.normal(1.2, 1.0, size=80)
    normal = [base_n, base_n + 0.1 * rng.normal(size=60), rng.normal(size=60)]
    pseudo = [base_p, base_p + 0.1 * rng.normal(size=80), rng.normal(1.2, 1.0, size=80)]
    ch = choose_weights(normal, pseudo, KINDS, anchor=0.0, ridge=0.1)
    assert ch.weights[2] == 1.0 and ch.weights[0] + ch.weights[1] < 1.5


def test_the_anchor_blends_towards_the_model_alone() -> None:
    normal, pseudo = _scores(np.random.default_rng(4), [0.5, 1.5, 0.0])
    free = choose_weights(normal, pseudo, KINDS, anchor=0.0, ridge=0.5)
    held = choose_weights(normal, pseudo, KINDS, anchor=0.6, ridge=0.5)
    assert free.weights[1] == 1.0 and held.weights[0] == 1.0
    assert held.weights[1] / held.weights[0] < free.weights[1] / free.weights[0]
    assert choose_weights(normal, pseudo, KINDS, anchor=1.0, ridge=0.5).weights == (1.0, 0.0, 0.0)
    # nothing separates: the anchor alone
    normal, pseudo = _scores(np.random.default_rng(5), [-1.0, -1.0, -1.0])
    assert choose_weights(normal, pseudo, KINDS, anchor=0.0, ridge=0.5).weights == (1.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="anchor"):
        choose_weights(normal, pseudo, KINDS, anchor=1.5, ridge=0.5)
    with pytest.raises(ValueError, match="ridge"):
        choose_weights(normal, pseudo, KINDS, anchor=0.3, ridge=-1.0)
    with pytest.raises(ValueError, match="components"):
        choose_weights(normal[:2], pseudo, KINDS, anchor=0.3, ridge=0.5)


def test_a_handful_of_clips_decides_nothing() -> None:
    """Below MIN_NORMAL held-out clips a discriminant is noise: the model alone (or, without a
    model, equal weights) whatever the pseudo-anomalies say."""
    from edge_agent.scoring.fusion import MIN_NORMAL

    normal, pseudo = _scores(np.random.default_rng(8), [0.0, 3.0, 3.0], n=MIN_NORMAL - 1)
    assert choose_weights(normal, pseudo, KINDS, 0.0, 0.5).weights == (1.0, 0.0, 0.0)
    assert choose_weights(normal[1:], pseudo[1:], KINDS[1:], 0.0, 0.5).weights == (1.0, 1.0)
    normal, pseudo = _scores(np.random.default_rng(8), [0.0, 3.0, 3.0], n=MIN_NORMAL)
    assert choose_weights(normal, pseudo, KINDS, 0.0, 0.5).weights != (1.0, 0.0, 0.0)


def test_the_models_of_an_ensemble_share_their_group_weight() -> None:
    rng = np.random.default_rng(5)
    normal, pseudo = _scores(rng, [1.5, 1.5, 0.0, 0.0])
    ch = choose_weights(normal, pseudo, ["model", "model", "bands", "rhythm"], 0.3, 0.5)
    assert ch.groups == ("model", "bands", "rhythm")
    assert ch.weights[0] == ch.weights[1] == ch.group_weights[0] / 2
    assert ch.weights[3] < 0.1


def test_extra_rows_are_scored_in_the_fold_that_never_saw_their_origin() -> None:
    """A perturbed copy is compared with references that exclude the clip it was made from:
    an exact copy therefore scores like its origin's held-out score, not 0."""
    rng = np.random.default_rng(6)
    src, tgt = rng.normal(size=(30, 8)), rng.normal(size=(6, 8))
    cfg = BackendConfig()

    def fs(s: np.ndarray, t: np.ndarray, h: np.ndarray) -> np.ndarray:
        return fit_component(s, t, cfg).distances(h)

    both = np.concatenate([src, tgt])
    origin = np.array([0, 5, 31, 35, -1])
    extra = np.concatenate([both[origin[:4]], rng.normal(size=(1, 8))])
    held, held_x = cross_fit_with_extra(src, tgt, extra, origin, fs)
    np.testing.assert_allclose(held, cross_fit_scores(src, tgt, fs))  # normal rows unchanged
    np.testing.assert_allclose(held_x[:4], held[origin[:4]])
    assert held_x[:4].min() > 0.05
    with pytest.raises(BackendError, match="pseudo origins"):
        cross_fit_with_extra(src, tgt, extra, np.array([0, 1, 2, 3, 36]), fs)


def test_fit_section_decides_weights_per_section_from_pseudo_anomalies() -> None:
    """Component 0 (the model) moves its pseudo-anomalies far from the normal clips, component
    1 does not move them at all: the fit gives component 1 little weight, stores them in
    the section, and its threshold is the percentile of the fused held-out scores."""
    rng = np.random.default_rng(7)
    n_src, n_tgt, m = 40, 8, 48
    a = 1.0 + 0.2 * rng.normal(size=(n_src + n_tgt, 16))  # a tight cloud of normal sound
    b = 1.0 + 0.2 * rng.normal(size=(n_src + n_tgt, 12))
    origin = np.arange(m) % (n_src + n_tgt)
    pa = a[origin] + 0.5 * rng.normal(size=(m, 16))  # far from every normal clip
    pb = 1.0 + 0.2 * rng.normal(size=(m, 12))  # just more normal-looking clips
    pseudo = PseudoSet([pa, pb], origin)
    fit = fit_section(
        [a[:n_src], b[:n_src]],
        [a[n_src:], b[n_src:]],
        BackendConfig(),
        pseudo=pseudo,
        kinds=["model", "bands"],
    )
    assert fit.choice is not None and fit.choice.separation[0] > 0.9
    w = [c.weight for c in fit.backend.components]
    assert w[0] == 1.0 and w[1] < 0.35 and w == list(fit.choice.weights[:2])
    # the classical component's deviation score joins its group: the two share its weight
    assert fit.choice.groups == ("model", "bands")
    bands = fit.backend.components[1]
    assert bands.deviation == 1 and bands.dev_weight == fit.choice.weights[2] == bands.weight
    assert fit.backend.components[0].deviation == 0  # the learned model has none
    assert fit.backend.threshold == pytest.approx(np.percentile(fit.held_out, 90))
    # the weights are decided on the standardised scores whatever the transform; the choice's
    # separation is that of the section's own fused scores (through the transform)
    for transform in ("none", "softplus"):
        other = fit_section(
            [a[:n_src], b[:n_src]],
            [a[n_src:], b[n_src:]],
            BackendConfig(transform=transform),
            pseudo=pseudo,
            kinds=["model", "bands"],
        )
        assert other.choice is not None and other.choice.weights == fit.choice.weights
        assert other.choice.fused > 0.9 and fit.choice.fused > 0.9
    # fixed weighting, no pseudo-anomalies or no kinds: the given weights (with kinds, the
    # classical component's shared half and half with its deviation score)
    for kw in ({"pseudo": pseudo, "kinds": ["model", "bands"]}, {"pseudo": pseudo}, {}):
        config = BackendConfig(weighting="fixed") if "kinds" in kw else BackendConfig()
        fixed = fit_section(
            [a[:n_src], b[:n_src]], [a[n_src:], b[n_src:]], config, weights=[1.0, 0.5], **kw
        )
        got = [(c.weight, c.dev_weight) for c in fixed.backend.components]
        assert got == ([(1.0, 0.0), (0.25, 0.25)] if "kinds" in kw else [(1.0, 0.0), (0.5, 0.0)])
        assert fixed.choice is None


def test_backend_config_reads_old_bundles_as_fixed_and_checks_fields() -> None:
    assert BackendConfig.from_dict({"density_k": 3}).weighting == "fixed"
    assert BackendConfig.from_dict(BackendConfig().to_dict()).weighting == "pseudo"
    with pytest.raises(BackendError, match="weighting"):
        BackendConfig(weighting="vote")  # type: ignore[arg-type]
    with pytest.raises(BackendError, match="anchor"):
        BackendConfig(anchor=1.5)
    with pytest.raises(BackendError, match="ridge"):
        BackendConfig(ridge=-0.1)
    with pytest.raises(BackendError, match="pseudo_count"):
        BackendConfig(pseudo_count=-1)


def test_backend_config_reads_the_plan_of_an_older_bundle_and_checks_its_kinds() -> None:
    """A bundle written before the wobble joined the plan names no pseudo_kinds (and, older
    still, no pseudo_count): its calibrate and enrol refit with the 48 copies of six kinds its
    export made; today's config round-trips its seven kinds through a manifest's list."""
    old = BackendConfig.from_dict({"weighting": "pseudo"})
    assert old.pseudo_count == 48 and old.pseudo_kinds == FIRST_KINDS
    assert "wobble" not in old.pseudo_kinds
    today = BackendConfig()
    assert today.pseudo_kinds == PSEUDO_KINDS and today.pseudo_count == DEFAULT_COUNT == 56
    stored = {**today.to_dict(), "pseudo_kinds": list(today.pseudo_kinds)}  # as YAML reads it
    assert BackendConfig.from_dict(stored) == today
    for bad in ((), ("tone", "tone"), ("tone", "hum"), "tone"):
        with pytest.raises(BackendError, match="pseudo_kinds"):
            BackendConfig(pseudo_kinds=bad)  # type: ignore[arg-type]
    for bad_stored in ("tone", 7, None):  # read from a manifest: one line naming the field
        with pytest.raises(BackendError, match="pseudo_kinds"):
            BackendConfig.from_dict({**today.to_dict(), "pseudo_kinds": bad_stored})


def test_gaussian_surprise_matches_the_normal_tail_everywhere() -> None:
    """-ln P(Z > z) to 1e-9 relative from z = -40 to far in the tail (scipy as the
    reference), never negative, never -0.0, finite far beyond any standardised score."""
    z = np.concatenate([np.linspace(-40.0, 40.0, 4001), [29.99, 30.0, 30.01, 1e3, 1e8, -1e8]])
    got = gaussian_surprise(z)
    np.testing.assert_allclose(got, -log_ndtr(-z), rtol=1e-9, atol=1e-300)
    assert np.all(np.isfinite(got)) and not np.any(np.signbit(got))
    assert gaussian_surprise(np.zeros((2, 3))).shape == (2, 3)
    assert float(gaussian_surprise(np.zeros(1))[0]) == pytest.approx(math.log(2.0))


def test_the_transform_shapes_the_reported_separation_not_the_weights() -> None:
    """The weights come from the standardised scores whatever the transform; `fused` is the
    AUC of the row-weighted sum of the transformed scores, as the section fuses them."""
    rng = np.random.default_rng(3)
    normal = [rng.normal(size=40) for _ in range(3)]
    pseudo = [rng.normal(size=48) + shift for shift in (1.5, 0.3, 0.0)]
    pseudo[1][:6] += 6.0  # one view hears a few copies loudly
    kinds = ["model", "bands", "bands"]
    plain = choose_weights(normal, pseudo, kinds, 0.3, 20.0)
    transforms: tuple[Transform, ...] = ("none", "softplus", "surprise")
    for transform in transforms:
        ch = choose_weights(normal, pseudo, kinds, 0.3, 20.0, transform)
        assert ch.weights == plain.weights
        w = np.asarray(ch.weights)[:, None]
        expected = auc(
            (w * [evidence(x, transform) for x in normal]).sum(axis=0),
            (w * [evidence(x, transform) for x in pseudo]).sum(axis=0),
        )
        assert ch.fused == pytest.approx(expected, abs=1e-12)
    # without a transform: the group weights on the groups' mean scores, as before
    gw = np.asarray(plain.group_weights)
    g_norm = np.stack([normal[0], (normal[1] + normal[2]) / 2])
    g_pseudo = np.stack([pseudo[0], (pseudo[1] + pseudo[2]) / 2])
    assert plain.fused == pytest.approx(auc(gw @ g_norm, gw @ g_pseudo), abs=1e-12)
    surprise = choose_weights(normal, pseudo, kinds, 0.3, 20.0, "surprise")
    assert surprise.fused != plain.fused  # the loud view counts more through the surprise
