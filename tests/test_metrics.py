"""model_build.evaluation.metrics against scikit-learn (the reference DCASE evaluators use it)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats
from sklearn.metrics import roc_auc_score
from sklearn.metrics import roc_curve as sk_roc_curve

from model_build.evaluation.metrics import (
    MetricError,
    auc,
    hmean,
    pauc,
    roc_curve,
    section_metrics,
    summarise,
)


def _cases(seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(60):
        n = int(rng.integers(2, 80))
        y = rng.integers(0, 2, n)
        y[0], y[-1] = 0, 1  # both classes always present
        if i % 3 == 0:  # heavy ties
            s = rng.integers(0, 4, n).astype(float)
        elif i % 3 == 1:
            s = rng.normal(size=n) + 0.8 * y
        else:
            s = np.round(rng.normal(size=n), 1)
        out.append((y, s))
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auc_and_pauc_match_sklearn_including_ties(seed: int) -> None:
    for y, s in _cases(seed):
        assert auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
        for max_fpr in (0.1, 0.05, 0.5):
            assert pauc(y, s, max_fpr) == pytest.approx(
                roc_auc_score(y, s, max_fpr=max_fpr), abs=1e-12
            )


def test_roc_curve_points_match_sklearn() -> None:
    y, s = _cases(5)[0]
    fpr, tpr, thr = roc_curve(y, s)
    sf, st, sthr = sk_roc_curve(y, s, drop_intermediate=False)
    np.testing.assert_allclose(fpr, sf)
    np.testing.assert_allclose(tpr, st)
    np.testing.assert_allclose(thr[1:], sthr[1:])


def test_perfect_reversed_and_constant_scores() -> None:
    y = np.array([0, 0, 0, 1, 1])
    s = np.array([0.1, 0.2, 0.3, 0.8, 0.9])
    assert auc(y, s) == 1.0 and pauc(y, s) == 1.0
    assert auc(y, -s) == 0.0
    assert pauc(y, -s) == pytest.approx(roc_auc_score(y, -s, max_fpr=0.1))
    assert auc(y, np.zeros(5)) == 0.5
    assert pauc(y, np.zeros(5)) == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("y", "s", "msg"),
    [
        ([0, 0, 0], [1.0, 2.0, 3.0], "both normal"),
        ([1, 1], [1.0, 2.0], "both normal"),
        ([0, 1], [1.0, np.nan], "finite"),
        ([0, 1, 1], [1.0, 2.0], "equal length"),
    ],
)
def test_degenerate_inputs_raise_a_clear_error(y: list[int], s: list[float], msg: str) -> None:
    with pytest.raises(MetricError, match=msg):
        auc(y, s)


def test_pauc_rejects_bad_max_fpr() -> None:
    with pytest.raises(MetricError, match="max_fpr"):
        pauc([0, 1], [0.0, 1.0], max_fpr=0.0)


def test_hmean() -> None:
    assert hmean([0.5, 1.0]) == pytest.approx(2 / (2 + 1))
    assert hmean([0.9, None, 0.9]) == pytest.approx(0.9)
    assert hmean([0.0, 0.8]) == 0.0
    assert hmean([None]) is None


def _section(seed: int = 0) -> tuple[np.ndarray, list[str], np.ndarray]:
    rng = np.random.default_rng(seed)
    dom = ["source"] * 100 + ["target"] * 100
    y = np.r_[np.zeros(50), np.ones(50), np.zeros(50), np.ones(50)].astype(int)
    s = rng.normal(size=200) + 1.0 * y
    s[150:] -= 0.8  # target anomalies look more normal: the two views differ
    return y, dom, s


def test_section_metrics_paper_and_official_views_match_sklearn_subsets() -> None:
    y, dom, s = _section()
    d = np.array(dom)
    m = section_metrics("fan_section_00", y, dom, s)
    for name in ("source", "target"):
        sel = d == name
        assert m.auc[name] == pytest.approx(roc_auc_score(y[sel], s[sel]))
        assert m.pauc[name] == pytest.approx(roc_auc_score(y[sel], s[sel], max_fpr=0.1))
    assert m.auc["mixed"] == pytest.approx(roc_auc_score(y, s))
    assert m.pauc["mixed"] == pytest.approx(roc_auc_score(y, s, max_fpr=0.1))
    # official DCASE 2022: domain normals vs ALL anomalies; pAUC over the whole section
    off_s = (d == "source") | (y == 1)
    off_t = (d == "target") | (y == 1)
    assert m.official_auc_source == pytest.approx(roc_auc_score(y[off_s], s[off_s]))
    assert m.official_auc_target == pytest.approx(roc_auc_score(y[off_t], s[off_t]))
    assert m.official_pauc == pytest.approx(roc_auc_score(y, s, max_fpr=0.1))
    assert m.official_auc_source != pytest.approx(m.auc["source"])
    assert m.counts == {
        "source_normal": 50,
        "source_anomaly": 50,
        "target_normal": 50,
        "target_anomaly": 50,
    }


def test_section_without_target_anomalies_has_no_target_paper_metric() -> None:
    y, dom, s = _section()
    keep = ~((np.array(dom) == "target") & (y == 1))
    m = section_metrics("s", y[keep], list(np.array(dom)[keep]), s[keep])
    assert m.auc["target"] is None and m.pauc["target"] is None
    assert m.official_auc_target is not None  # target normals vs the source anomalies


def test_section_metrics_needs_both_classes() -> None:
    with pytest.raises(MetricError, match="valve_section_01"):
        section_metrics("valve_section_01", [0, 0], ["source", "target"], [0.1, 0.2])


def test_summary_harmonic_means_and_official_score() -> None:
    ms = [section_metrics(f"fan_section_0{i}", *_section(i)) for i in range(3)]
    summ = summarise(ms)
    for dom in ("source", "target", "mixed"):
        vals = np.array([m.auc[dom] for m in ms])
        assert summ.auc[dom] == pytest.approx(len(vals) / np.sum(1 / vals))
    off = np.array(
        [v for m in ms for v in (m.official_auc_source, m.official_auc_target, m.official_pauc)]
    )
    assert summ.official_score == pytest.approx(9 / np.sum(1 / off))
    assert summ.n_sections == 3


def test_per_machine_type_harmonic_means_as_the_reference_prints_them() -> None:
    """'mean AUC for category X' = hmean of X's sections' AUCs; 'mean of AUC and pAUC' = their
    mean (wilkinghoff/icassp2023 main.py); machine types whose names contain '_' work too."""
    names = ["fan_section_00", "fan_section_01", "robotic_arm_section_00"]
    ms = [section_metrics(n, *_section(i)) for i, n in enumerate(names)]
    per = summarise(ms).machines
    assert list(per) == ["fan", "robotic_arm"]
    fan_auc = [m.auc["mixed"] for m in ms[:2]]
    fan_pauc = [m.pauc["mixed"] for m in ms[:2]]
    assert per["fan"]["auc"] == pytest.approx(scipy.stats.hmean(fan_auc))
    assert per["fan"]["pauc"] == pytest.approx(scipy.stats.hmean(fan_pauc))
    a, p = per["fan"]["auc"], per["fan"]["pauc"]
    assert a is not None and p is not None and per["fan"]["mean"] == pytest.approx((a + p) / 2)
    assert per["robotic_arm"]["auc"] == pytest.approx(ms[2].auc["mixed"])
