"""Pure adaptation maths (edge_agent.adaptation.sections): calibrated, enrolled and taught
sections."""

from __future__ import annotations

import numpy as np
import pytest

from edge_agent.adaptation.sections import calibrated_section, enrolled_section, taught_section
from edge_agent.errors import FieldError
from edge_agent.scoring.backend import (
    PAPER_BACKEND,
    BackendConfig,
    BackendError,
    SectionBackend,
    fit_component,
    fit_section,
    l2_normalise,
)
from edge_agent.scoring.pseudo import PseudoSet

D, D2 = 32, 12
CONFIG = BackendConfig()


def unit(
    rng: np.random.Generator,
    n: int,
    dim: int = D,
    centre: np.ndarray | None = None,
    spread: float = 1.0,
) -> np.ndarray:
    c = np.zeros(dim) if centre is None else centre
    return l2_normalise(c + spread * rng.standard_normal((n, dim)))


@pytest.fixture
def old() -> SectionBackend:
    """Two components (a model and the band statistics), 40 source + 3 target clips."""
    rng = np.random.default_rng(0)
    return fit_section(
        [unit(rng, 40), unit(rng, 40, D2)], [unit(rng, 3), unit(rng, 3, D2)], CONFIG
    ).backend


def test_replace_keeps_source_rows_bit_for_bit_and_swaps_the_target_rows(
    old: SectionBackend,
) -> None:
    rng = np.random.default_rng(1)
    new = [rng.standard_normal((10, D)), rng.standard_normal((10, D2))]
    b = calibrated_section(old, new, CONFIG).backend
    for c_old, c_new, e in zip(old.components, b.components, new, strict=True):
        assert c_new.n_source == 40 and c_new.references.shape[0] == 50
        assert c_new.references[:40].tobytes() == c_old.references[:40].tobytes()
        np.testing.assert_allclose(c_new.references[40:], l2_normalise(e), atol=5e-4)  # float16
        assert c_new.references.dtype == np.float32


def test_append_keeps_the_old_target_rows_too(old: SectionBackend) -> None:
    rng = np.random.default_rng(1)
    new = [rng.standard_normal((4, D)), rng.standard_normal((4, D2))]
    b = calibrated_section(old, new, CONFIG, mode="append").backend
    c0 = b.components[0]
    assert c0.references.shape == (47, D)
    assert c0.references[:43].tobytes() == old.components[0].references.tobytes()


def test_calibration_is_the_fit_of_export_on_the_kept_references(old: SectionBackend) -> None:
    """Calibrate refits with fit_section itself: the same references, densities, normalisers
    and held-out scores as fitting the section afresh on (old source rows, new clips)."""
    rng = np.random.default_rng(5)
    new = [unit(rng, 8), unit(rng, 8, D2)]
    cal = calibrated_section(old, new, CONFIG, rule="target")
    src = [c.references[: c.n_source] for c in old.components]
    fresh = fit_section(src, new, CONFIG, keep_source=True)
    for a, b in zip(cal.backend.components, fresh.backend.components, strict=True):
        np.testing.assert_array_equal(a.density, b.density)
        assert (a.mean, a.std) == (b.mean, b.std)
    np.testing.assert_allclose(cal.held_out_scores, fresh.held_out_target)
    # held out: no new clip is scored against itself (its distance would be 0)
    assert np.all(cal.held_out_scores > fresh.backend.score(new))


def test_threshold_rules(old: SectionBackend) -> None:
    rng = np.random.default_rng(3)
    centre, centre2 = 5 * rng.standard_normal(D), 5 * rng.standard_normal(D2)
    near = [unit(rng, 10, D, centre, 0.05), unit(rng, 10, D2, centre2, 0.05)]  # tight
    cal = calibrated_section(old, near, CONFIG, percentile=90.0)
    assert cal.held_out_threshold == pytest.approx(np.percentile(cal.held_out_scores, 90))
    refit = fit_section(
        [c.references[: c.n_source] for c in old.components], near, CONFIG, keep_source=True
    ).backend.threshold
    assert cal.threshold == pytest.approx(max(refit, cal.held_out_threshold))  # rule max
    tgt = calibrated_section(old, near, CONFIG, rule="target")
    assert tgt.threshold == pytest.approx(cal.held_out_threshold)
    rec = cal.record()
    assert rec["old_threshold"] == old.threshold and rec["new_threshold"] == cal.threshold
    assert rec["threshold_rule"] == "max" and len(rec["held_out_scores"]) == 10


def test_calibrate_errors(old: SectionBackend) -> None:
    ok = [np.ones((3, D)), np.ones((3, D2))]
    with pytest.raises(FieldError, match=r"^mode: expected one of replace, append"):
        calibrated_section(old, ok, CONFIG, mode="merge")  # type: ignore[arg-type]
    with pytest.raises(FieldError, match=r"^rule: expected one of max, target"):
        calibrated_section(old, ok, CONFIG, rule="min")  # type: ignore[arg-type]
    with pytest.raises(BackendError, match=r"expected \(N>0, 32\)"):
        calibrated_section(old, [np.ones((3, D + 1)), ok[1]], CONFIG)
    with pytest.raises(BackendError, match=r"expected \(N>0"):
        calibrated_section(old, [np.zeros((0, D)), np.zeros((0, D2))], CONFIG)
    with pytest.raises(BackendError, match="NaN"):
        calibrated_section(old, [np.full((3, D), np.nan), ok[1]], CONFIG)
    with pytest.raises(BackendError, match="1 embedding sets for 2 components"):
        calibrated_section(old, ok[:1], CONFIG)
    lone = SectionBackend((fit_component(np.zeros((0, D)), np.eye(D)[:1], CONFIG),), 0.1)
    with pytest.raises(BackendError, match="single clip"):
        calibrated_section(lone, [np.ones((1, D))], CONFIG)


def test_enrolled_section_is_the_backend_fitted_on_the_new_clips() -> None:
    rng = np.random.default_rng(4)
    emb = [unit(rng, 30), unit(rng, 30, D2)]
    b = enrolled_section(emb, CONFIG)
    assert [c.n_source for c in b.components] == [30, 30]  # every clip, no target rows
    assert np.isfinite(b.threshold)
    # cross-fitted: above the in-sample percentile, which is biased low
    assert b.threshold > np.percentile(b.score(emb), 90)
    paper = enrolled_section([emb[0]], PAPER_BACKEND)
    assert paper.components[0].n_source == 16  # k-means centres with the paper's backend
    with pytest.raises(BackendError, match="at least 10 normal clips, got 9"):
        enrolled_section([e[:9] for e in emb], CONFIG)


# --- taught: an operator answered "not a fault" (edge_agent.adaptation.feedback) ---


@pytest.fixture
def machine() -> tuple[SectionBackend, np.ndarray, np.ndarray]:
    """(a section whose normal sound is one tight cluster per component: 40 source + 3 target
    clips, and the two centres): a sound away from the centres is unknown to it."""
    rng = np.random.default_rng(10)
    c1, c2 = rng.standard_normal(D), rng.standard_normal(D2)
    fit = fit_section(
        [unit(rng, 40, D, c1, 0.3), unit(rng, 40, D2, c2, 0.3)],
        [unit(rng, 3, D, c1, 0.3), unit(rng, 3, D2, c2, 0.3)],
        CONFIG,
    )
    return fit.backend, c1, c2


def test_taught_windows_join_the_target_rows_and_then_score_low(
    machine: tuple[SectionBackend, np.ndarray, np.ndarray],
) -> None:
    """The answered windows' embeddings are appended after the old target rows (source rows
    bit for bit), and a window like them scores below the threshold where it scored above."""
    old, c1, c2 = machine
    rng = np.random.default_rng(7)
    n1, n2 = c1 + 0.6 * rng.standard_normal(D), c2 + 0.6 * rng.standard_normal(D2)
    answered = [unit(rng, 5, D, n1, 0.3), unit(rng, 5, D2, n2, 0.3)]  # an unknown sound
    again = [unit(rng, 4, D, n1, 0.3), unit(rng, 4, D2, n2, 0.3)]  # the same sound later
    t = taught_section(old, answered, CONFIG, max_references=64)
    for c_old, c_new in zip(old.components, t.backend.components, strict=True):
        assert c_new.n_source == 40 and c_new.references.shape[0] == 48
        assert c_new.references[:43].tobytes() == c_old.references.tobytes()
    assert (t.added, t.dropped, t.n_target) == (5, 0, 8)
    before = old.score(again) - old.threshold
    after = t.backend.score(again) - t.backend.threshold
    assert np.all(before > 0), "the sound alarmed before the answer"
    assert np.all(after < 0), "the same sound is normal after it"
    assert t.record()["references_added"] == 5 and t.record()["threshold_rule"] == "refit"


def test_taught_references_are_bounded_oldest_first(old: SectionBackend) -> None:
    rng = np.random.default_rng(8)
    b = old
    batches = [[unit(rng, 3), unit(rng, 3, D2)] for _ in range(3)]
    for batch in batches:  # 3 old targets + 9 answered windows, at most 5 kept
        t = taught_section(b, batch, CONFIG, max_references=5)
        b = t.backend
    assert (t.n_target, t.dropped) == (5, 3)  # the third answer: 5 + 3 - 5 dropped
    c = b.components[0]
    assert c.n_source == 40 and c.references.shape[0] == 45
    assert c.references[:40].tobytes() == old.components[0].references[:40].tobytes()
    newest = np.concatenate([batches[1][0], batches[2][0]])[-5:]
    np.testing.assert_allclose(c.references[40:], l2_normalise(newest), atol=5e-4)


def test_taught_threshold_rules(machine: tuple[SectionBackend, np.ndarray, np.ndarray]) -> None:
    """refit: the section's percentile; max: never below the answered windows' held-out
    percentile; keep: the old threshold and normalisers, the references alone change."""
    old = machine[0]
    rng = np.random.default_rng(9)
    far = [unit(rng, 4), unit(rng, 4, D2)]  # four unlike sounds, each far from all
    refit = taught_section(old, far, CONFIG, 64, "refit")
    top = taught_section(old, far, CONFIG, 64, "max")
    keep = taught_section(old, far, CONFIG, 64, "keep")
    assert refit.threshold == refit.refit_threshold
    assert top.threshold == max(top.refit_threshold, top.answered_threshold)
    assert top.answered_threshold > top.refit_threshold  # a spread-out sound: max raises it
    assert keep.threshold == old.threshold
    for c_old, c_keep in zip(old.components, keep.backend.components, strict=True):
        assert (c_keep.mean, c_keep.std) == (c_old.mean, c_old.std)
        assert c_keep.references.shape[0] == c_old.references.shape[0] + 4
    with pytest.raises(FieldError, match="threshold_rule: expected one of refit, max, keep"):
        taught_section(old, far, CONFIG, 64, "target")  # type: ignore[arg-type]
    with pytest.raises(BackendError, match="max_references: expected >= 1"):
        taught_section(old, far, CONFIG, 0)
    with pytest.raises(BackendError, match=r"feedback: expected \(N>0, 32\) embeddings"):
        taught_section(old, [np.zeros((2, 5)), np.zeros((2, D2))], CONFIG, 64)


def _clips_and_copies(
    rng: np.random.Generator, n: int, m: int = 48
) -> tuple[list[np.ndarray], PseudoSet]:
    """`n` new clips in two components and `m` copies of them: the model's copies move far
    from every clip, the band statistics' copies are just more normal-looking clips."""
    a = 1.0 + 0.2 * rng.normal(size=(n, D))
    b = 1.0 + 0.2 * rng.normal(size=(n, D2))
    origin = np.arange(m) % n
    pa = a[origin] + 0.5 * rng.normal(size=(m, D))
    pb = 1.0 + 0.2 * rng.normal(size=(m, D2))
    return [a, b], PseudoSet([pa, pb], origin)


def test_enrol_and_calibrate_decide_the_weights_from_the_new_clips_copies(
    old: SectionBackend,
) -> None:
    """With the copies of the new clips (origins index the new clips) and the components'
    kinds, the section's weights are decided again: the component that does not tell the
    copies from the clips gets little weight. Without them, the weights stay."""
    rng = np.random.default_rng(9)
    kinds = ["model", "bands"]
    emb, pseudo = _clips_and_copies(rng, 30)
    w = [c.weight for c in enrolled_section(emb, CONFIG, pseudo=pseudo, kinds=kinds).components]
    assert w[0] == 1.0 and w[1] < 0.35
    assert [c.weight for c in enrolled_section(emb, CONFIG, weights=[1.0, 0.5]).components] == [
        1.0,
        0.5,
    ]
    emb, pseudo = _clips_and_copies(rng, 12)
    cal = calibrated_section(old, emb, CONFIG, "append", pseudo=pseudo, kinds=kinds)
    w = [c.weight for c in cal.backend.components]
    assert w[0] == 1.0 and w[1] < 0.35
    assert [c.weight for c in calibrated_section(old, emb, CONFIG).backend.components] == [
        c.weight for c in old.components
    ]
    bad = PseudoSet(pseudo.embeddings, pseudo.origin + 12)  # not rows of the new clips
    with pytest.raises(BackendError, match="pseudo origins"):
        calibrated_section(old, emb, CONFIG, pseudo=bad, kinds=kinds)


def test_refits_recompute_the_deviation_scores_from_the_references_they_keep() -> None:
    """A section whose classical component has a deviation score: calibrate (weights kept)
    keeps its weight and recomputes its normaliser exactly as a fresh fit on the kept source
    references does; feedback's `keep` rule keeps the old deviation normaliser too; enrol gives
    the classical component one; and a section without one (an old bundle) stays without."""
    rng = np.random.default_rng(11)
    kinds = ["model", "bands"]
    fixed = BackendConfig(weighting="fixed")
    old = fit_section(
        [unit(rng, 40), unit(rng, 40, D2)],
        [unit(rng, 3), unit(rng, 3, D2)],
        fixed,
        weights=[1.0, 0.5],
        kinds=kinds,
        deviation=[0.0, 0.25],
    ).backend
    assert [(c.deviation, c.dev_weight) for c in old.components] == [(0, 0.0), (1, 0.25)]
    new = [unit(rng, 8), unit(rng, 8, D2)]
    cal = calibrated_section(old, new, fixed, rule="target").backend
    src = [c.references[: c.n_source] for c in old.components]
    lengths = [c.norms[: c.n_source] for c in old.components if c.norms is not None]
    fresh = fit_section(
        src, new, fixed, keep_source=lengths, weights=[1.0, 0.5], deviation=[0.0, 0.25]
    ).backend
    for a, b in zip(cal.components, fresh.components, strict=True):
        assert (a.deviation, a.dev_weight, a.dev_mean, a.dev_std) == (
            b.deviation,
            b.dev_weight,
            b.dev_mean,
            b.dev_std,
        )
    probe = [unit(rng, 5), unit(rng, 5, D2)]
    np.testing.assert_allclose(cal.score(probe), fresh.score(probe))
    keep = taught_section(old, [unit(rng, 3), unit(rng, 3, D2)], fixed, 64, "keep").backend
    k, o = keep.components[1], old.components[1]
    assert (k.deviation, k.dev_weight, k.dev_mean, k.dev_std) == (1, 0.25, o.dev_mean, o.dev_std)
    refit = taught_section(old, [unit(rng, 3), unit(rng, 3, D2)], fixed, 64).backend
    assert refit.components[1].deviation == 1 and refit.components[1].dev_mean != o.dev_mean
    enrolled = enrolled_section([unit(rng, 12), unit(rng, 12, D2)], fixed, kinds=kinds)
    assert [c.deviation for c in enrolled.components] == [0, 1]
    plain = fit_section(src, [unit(rng, 3), unit(rng, 3, D2)], fixed).backend  # no kinds
    recal = calibrated_section(plain, new, fixed).backend
    assert [c.deviation for c in recal.components] == [0, 0]
