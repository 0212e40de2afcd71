"""Pure adaptation maths (edge_agent.adapt): calibrated and enrolled sections."""

from __future__ import annotations

import numpy as np
import pytest

from edge_agent.adapt import (
    calibrated_section,
    enrolled_section,
    held_out_target_scores,
)
from edge_agent.backend import BackendError, SectionBackend, cosine_scores, l2_normalise
from edge_agent.errors import FieldError

D = 32


def unit(rng: np.random.Generator, n: int, centre: np.ndarray | None = None,
         spread: float = 1.0) -> np.ndarray:
    c = np.zeros(D) if centre is None else centre
    return l2_normalise(c + spread * rng.standard_normal((n, D)))


@pytest.fixture
def old() -> SectionBackend:
    rng = np.random.default_rng(0)
    refs = np.concatenate([unit(rng, 16), unit(rng, 3)])
    return SectionBackend(refs, 16, 0.3)


def test_replace_keeps_source_rows_bit_for_bit_and_swaps_the_target_rows(
    old: SectionBackend,
) -> None:
    new = np.random.default_rng(1).standard_normal((10, D))
    cal = calibrated_section(old, new)
    b = cal.backend
    assert b.n_source == 16 and b.references.shape == (26, D)
    assert b.references[:16].tobytes() == old.references[:16].tobytes()
    np.testing.assert_allclose(b.references[16:], l2_normalise(new), atol=1e-7)
    assert b.references.dtype == np.float32


def test_append_keeps_the_old_target_rows_too(old: SectionBackend) -> None:
    new = np.random.default_rng(1).standard_normal((4, D))
    b = calibrated_section(old, new, mode="append").backend
    assert b.references.shape == (23, D)
    assert b.references[:19].tobytes() == old.references.tobytes()


def test_held_out_scores_never_score_a_clip_against_itself(old: SectionBackend) -> None:
    rng = np.random.default_rng(2)
    new = unit(rng, 5, centre=5 * rng.standard_normal(D), spread=0.3)
    held = calibrated_section(old, new).held_out_scores
    src = old.references[:16]
    for i in range(5):
        others = np.concatenate([src, np.delete(new, i, 0)])
        assert held[i] == pytest.approx(float(cosine_scores(new[i], others)[0]), abs=1e-6)
        assert held[i] > 1e-3  # in-sample it would be 0
    # a duplicated clip is the other copy's nearest reference: 0, as it should be
    dup = np.concatenate([new, new[:1]])
    assert held_out_target_scores(src, dup)[0] == pytest.approx(0.0, abs=1e-6)


def test_threshold_rules(old: SectionBackend) -> None:
    rng = np.random.default_rng(3)
    near = unit(rng, 10, centre=5 * rng.standard_normal(D), spread=0.05)  # tight new condition
    cal = calibrated_section(old, near, percentile=90.0)
    assert cal.held_out_threshold == pytest.approx(np.percentile(cal.held_out_scores, 90))
    assert cal.held_out_threshold < old.threshold
    assert cal.threshold == old.threshold  # max rule: never lower than before
    tgt = calibrated_section(old, near, rule="target")
    assert tgt.threshold == pytest.approx(cal.held_out_threshold)
    far = unit(rng, 10)  # a spread-out condition: its held-out scores decide
    wide = calibrated_section(old, far)
    assert wide.threshold == pytest.approx(wide.held_out_threshold)
    assert wide.held_out_threshold > old.threshold
    rec = wide.record()
    assert rec["old_threshold"] == 0.3 and rec["new_threshold"] == wide.threshold
    assert rec["threshold_rule"] == "max" and len(rec["held_out_scores"]) == 10


def test_calibrate_errors(old: SectionBackend) -> None:
    with pytest.raises(FieldError, match=r"^mode: expected one of replace, append"):
        calibrated_section(old, np.ones((3, D)), mode="merge")  # type: ignore[arg-type]
    with pytest.raises(FieldError, match=r"^rule: expected one of max, target"):
        calibrated_section(old, np.ones((3, D)), rule="min")  # type: ignore[arg-type]
    with pytest.raises(BackendError, match=r"expected \(N>0, 32\)"):
        calibrated_section(old, np.ones((3, D + 1)))
    with pytest.raises(BackendError, match=r"expected \(N>0"):
        calibrated_section(old, np.zeros((0, D)))
    with pytest.raises(BackendError, match="NaN"):
        calibrated_section(old, np.full((3, D), np.nan))
    with pytest.raises(BackendError, match="single clip"):
        calibrated_section(SectionBackend(old.references[16:], 0, 0.1), np.ones((1, D)))


def test_enrolled_section_is_the_paper_backend_on_the_new_clips() -> None:
    rng = np.random.default_rng(4)
    emb = unit(rng, 30)
    b = enrolled_section(emb)
    assert b.n_source == 16 and b.references.shape == (16, D)  # no target rows
    assert np.isfinite(b.threshold)
    # cross-fitted: above the in-sample percentile, which is biased low
    assert b.threshold > np.percentile(cosine_scores(emb, b.references), 90)
    assert enrolled_section(emb[:10]).n_source == 10  # fewer clips than clusters
    with pytest.raises(BackendError, match="at least 10 normal clips, got 9"):
        enrolled_section(emb[:9])
