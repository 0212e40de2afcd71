"""The submission CSVs that `evaluate --out` writes, scored the way the challenge scores them.

An evaluation set in the official layout (anonymous test names, the evaluator's
ground_truth_data/ and ground_truth_domain/ folders) goes through scan -> embed -> backends ->
CSVs. The official score is then recomputed from nothing but those CSV files and the
ground-truth files, with the DCASE 2022 evaluator's own definitions (rows aligned by sorted
file name; AUC(source) = source normal clips + ALL anomalous clips of the section, AUC(target)
likewise; pAUC (max FPR 0.1) over all clips of the section; the score is the harmonic mean of
all AUC(source), AUC(target) and pAUC values, each floored at machine epsilon), using
scikit-learn and scipy, not model_build.evaluation.metrics, and must agree with what evaluate
reports.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.stats
from dcase_layouts import BandEmbedder, official_eval_set
from sklearn import metrics

from edge_agent.scoring.backend import PAPER_BACKEND
from model_build.data.dataset import scan
from model_build.evaluation.evaluate import evaluate_embedder

MAX_FPR = 0.1


def _rows(path: Path) -> list[list[str]]:
    with path.open(newline="") as fh:
        return sorted(csv.reader(fh))  # the evaluator sorts every file by clip name


def official_score(team_dir: Path, truth_dir: Path) -> tuple[float, dict[str, float]]:
    """dcase2022_task2_evaluator's computation, on the files alone."""
    values: list[float] = []
    per_section: dict[str, float] = {}
    for gt_path in sorted((truth_dir / "ground_truth_data").glob("ground_truth_*_test.csv")):
        stem = gt_path.name.removeprefix("ground_truth_")  # <machine>_section_XX_test.csv
        gt = _rows(gt_path)
        dom = _rows(truth_dir / "ground_truth_domain" / gt_path.name)
        score = _rows(team_dir / f"anomaly_score_{stem}")
        decision = _rows(team_dir / f"decision_result_{stem}")
        names = [r[0] for r in gt]
        assert [r[0] for r in dom] == [r[0] for r in score] == [r[0] for r in decision] == names
        y_true = np.array([float(r[1]) for r in gt])
        y_domain = np.array([int(r[1]) for r in dom])
        y_pred = np.array([float(r[1]) for r in score])
        assert {int(r[1]) for r in decision} <= {0, 1}
        section_values = []
        for domain_idx in (0, 1):
            keep = (y_domain == domain_idx) | (y_true != 0)
            section_values.append(metrics.roc_auc_score(y_true[keep], y_pred[keep]))
        section_values.append(metrics.roc_auc_score(y_true, y_pred, max_fpr=MAX_FPR))
        values += section_values
        per_section[stem.removesuffix("_test.csv")] = section_values[0]
    floored = np.maximum(np.array(values), sys.float_info.epsilon)
    return float(scipy.stats.hmean(floored)), per_section


@pytest.mark.parametrize("config", [PAPER_BACKEND, None], ids=["paper-backend", "default"])
def test_submission_csvs_score_as_the_challenge_scores_them(tmp_path: Path, config: object) -> None:
    root = tmp_path / "eval"
    official_eval_set(root, machines=("fan", "valve", "ToyCar"), n_test=16)
    clips = scan([root])
    kwargs = {} if config is None else {"config": config}
    _, payload = evaluate_embedder(
        BandEmbedder(),
        clips,
        out_dir=tmp_path / "teams",
        plots=False,
        **kwargs,  # type: ignore[arg-type]
    )
    team = tmp_path / "teams" / "model_0"
    score, auc_source = official_score(team, root / "truth")
    result = payload["results"]["model_0"]
    assert result["summary"]["official_score"] == pytest.approx(score, abs=1e-12)
    for m in result["sections"]:
        assert m["official_auc_source"] == pytest.approx(auc_source[m["section"]], abs=1e-12)
    # the set is easy but not trivial: the score means something
    assert 0.5 < score < 1.0
    # the challenge's source AUC differs from the paper view's (all anomalies vs source ones)
    assert result["summary"]["auc"]["source"] is not None


def test_decision_csvs_follow_the_thresholds(tmp_path: Path) -> None:
    root = tmp_path / "eval"
    official_eval_set(root, machines=("fan",), n_test=16)
    _, payload = evaluate_embedder(
        BandEmbedder(), scan([root]), out_dir=tmp_path / "out", plots=False
    )
    threshold = payload["results"]["model_0"]["thresholds"]["fan_section_03"]
    scores = dict(_rows(tmp_path / "out/model_0/anomaly_score_fan_section_03_test.csv"))
    decisions = dict(_rows(tmp_path / "out/model_0/decision_result_fan_section_03_test.csv"))
    assert len(scores) == 16 and scores.keys() == decisions.keys()
    assert all(int(decisions[n]) == int(float(s) > threshold) for n, s in scores.items())
