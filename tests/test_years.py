"""Each DCASE year is scored by its own rules and its submission files are named its way.

Mock data sets in each year's layout (tests/dcase_layouts.py) go through scan -> a real
embedder -> backends -> the submission CSVs; each year's official figures are then recomputed
from nothing but those CSV files and that year's ground truth, with the definitions of that
year's official evaluator (dcase2020_task2_evaluator: per machine id AUC/pAUC, arithmetic
mean per machine type; dcase2021_task2_evaluator: per machine type, section and domain,
harmonic means floored at machine epsilon), using scikit-learn and scipy rather than
model_build.evaluation, and must agree with what evaluate reports. (2022-2024:
tests/test_submission.py.)
"""

from __future__ import annotations

import csv
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.stats
from dcase_layouts import BandEmbedder, official_eval_set, write_2020, write_2021
from sklearn import metrics

from edge_agent.errors import FieldError
from edge_agent.scoring.backend import PAPER_BACKEND
from model_build.data.dataset import scan_layout
from model_build.data.ground_truth import GroundTruthError
from model_build.evaluation.evaluate import evaluate_embedder

MAX_FPR = 0.1
EPS = sys.float_info.epsilon


def _sorted_rows(path: Path) -> list[list[str]]:
    with path.open(newline="") as fh:
        return sorted(csv.reader(fh))


def evaluator_2020(team: Path, eval_data_list: Path) -> dict[str, dict[str, tuple[float, float]]]:
    """dcase2020_task2_evaluator's computation: per machine type and id, the labels of the
    list rows of that machine whose file name holds the id, in list order, against the
    score file's rows sorted by name."""
    with eval_data_list.open(newline="") as fh:
        rows = list(csv.reader(fh))
    machines = [r[0] for r in rows if len(r) == 1]
    out: dict[str, dict[str, tuple[float, float]]] = {}
    for machine in machines:
        out[machine] = {}
        for path in sorted(team.glob(f"anomaly_score_{machine}_id*")):
            machine_id = re.findall(r"id_[0-9][0-9]", path.name)[0]
            y_true, inside = [], False
            for r in rows:
                if len(r) == 1:
                    inside = r[0] == machine
                elif inside and machine_id in r[0]:
                    y_true.append(float(r[2]))
            y_pred = [float(r[1]) for r in _sorted_rows(path)]
            assert len(y_true) == len(y_pred)
            out[machine][machine_id.split("_")[1]] = (
                metrics.roc_auc_score(y_true, y_pred),
                metrics.roc_auc_score(y_true, y_pred, max_fpr=MAX_FPR),
            )
    return out


def evaluator_2021(team: Path, truth: Path) -> tuple[dict[str, tuple[float, float]], float, float]:
    """dcase2021_task2_evaluator's computation: per (machine, section, domain) AUC and pAUC
    over that domain's files; harmonic means over all of them (floored at epsilon)."""
    per: dict[str, tuple[float, float]] = {}
    for gt_path in sorted((truth / "ground_truth_data").glob("ground_truth_*.csv")):
        stem = gt_path.name.removeprefix("ground_truth_")  # fan_section_00_source_test.csv
        gt = _sorted_rows(gt_path)
        score = _sorted_rows(team / f"anomaly_score_{stem}")
        decision = _sorted_rows(team / f"decision_result_{stem}")
        assert [r[0] for r in gt] == [r[0] for r in score] == [r[0] for r in decision]
        y_true = [float(r[1]) for r in gt]
        y_pred = [float(r[1]) for r in score]
        per[stem.removesuffix("_test.csv")] = (
            metrics.roc_auc_score(y_true, y_pred),
            metrics.roc_auc_score(y_true, y_pred, max_fpr=MAX_FPR),
        )
    values = np.maximum(np.array(list(per.values())), EPS)
    return per, float(scipy.stats.hmean(values[:, 0])), float(scipy.stats.hmean(values[:, 1]))


def _truth_2021_from_names(root: Path, out: Path) -> Path:
    """The 2021 evaluator's ground-truth files for a dev set (labels from the names)."""
    for m in sorted(p for p in root.iterdir() if p.is_dir()):
        for dom in ("source", "target"):
            for f in sorted((m / f"{dom}_test").glob("*.wav")):
                xx = f.name.split("_")[1]
                name = f"ground_truth_{m.name}_section_{xx}_{dom}_test.csv"
                gt = out / "ground_truth_data" / name
                gt.parent.mkdir(parents=True, exist_ok=True)
                with gt.open("a") as fh:
                    fh.write(f"{f.name},{int('_anomaly_' in f.name)}\n")
    return out


def test_2020_eval_set_scores_per_machine_id_as_the_2020_evaluator(tmp_path: Path) -> None:
    root = tmp_path / "eval2020"
    write_2020(root, evaluation=True)
    layout = scan_layout([root])
    assert layout.year() == "2020"
    _, payload = evaluate_embedder(
        BandEmbedder(),
        layout.clips,
        PAPER_BACKEND,
        out_dir=tmp_path / "teams",
        plots=False,
        year="2020",
    )
    team = tmp_path / "teams" / "model_0"
    assert sorted(p.name for p in team.iterdir()) == [
        "anomaly_score_ToyCar_id_00.csv",
        "anomaly_score_ToyCar_id_02.csv",
        "anomaly_score_fan_id_00.csv",
        "anomaly_score_fan_id_02.csv",
    ]  # 2020: no decisions
    theirs = evaluator_2020(team, root / "eval_data_list.csv")
    off = payload["results"]["model_0"]["official"]
    assert off["year"] == "2020" and off["score"] is None
    for machine, ids in theirs.items():
        for xx, (auc, pauc) in ids.items():
            ours = off["rows"][f"{machine}_id_{xx}"]
            assert (ours["AUC"], ours["pAUC"]) == pytest.approx((auc, pauc), abs=1e-12)
        average = np.mean(list(ids.values()), axis=0)  # the evaluator's "Average" line
        assert [off["machines"][machine]["AUC"], off["machines"][machine]["pAUC"]] == (
            pytest.approx(list(average), abs=1e-12)
        )
    assert 0.5 < off["machines"]["fan"]["AUC"] < 1.0  # a ranking, not a trivial one


def test_2020_dev_set_is_2020_and_tables_name_machine_ids(tmp_path: Path) -> None:
    root = tmp_path / "dev2020"
    write_2020(root, machines=("pump",), ids=("04",))
    layout = scan_layout([root])
    text, payload = evaluate_embedder(
        BandEmbedder(), layout.clips, PAPER_BACKEND, plots=False, year=layout.year()
    )
    assert payload["year"] == "2020"
    assert "pump_id_04" in text and "official DCASE 2020 figures" in text
    assert "2020 had no single score" in text


def test_eval_data_list_problems_are_one_line_errors(tmp_path: Path) -> None:
    root = tmp_path / "eval2020"
    write_2020(root, machines=("fan",), ids=("00",), evaluation=True)
    listing = root / "eval_data_list.csv"
    good = listing.read_text()
    listing.write_text(good.replace(",1\n", ",7\n", 1))
    with pytest.raises(GroundTruthError, match=r"eval_data_list\.csv: line 3: expected"):
        scan_layout([root])
    listing.write_text(good.replace("anomaly_id_00_00000001.wav,1", "normal_id_00_00000001.wav,1"))
    with pytest.raises(GroundTruthError, match="label 1 but the labelled name says normal"):
        scan_layout([root])
    listing.unlink()  # without it: scored nowhere, and the table says what is needed
    layout = scan_layout([root])
    text, _ = evaluate_embedder(
        BandEmbedder(), layout.clips, PAPER_BACKEND, plots=False, year=layout.year()
    )
    assert (
        "not scored: fan_section_00 (no ground truth: put the challenge's eval_data_list.csv"
    ) in text


@pytest.mark.parametrize("evaluation", [False, True], ids=["dev", "eval"])
def test_2021_scores_per_section_and_domain_as_the_2021_evaluator(
    tmp_path: Path, evaluation: bool
) -> None:
    root = tmp_path / "data2021"
    write_2021(root, evaluation=evaluation)
    truth = root / "truth" if evaluation else _truth_2021_from_names(root, tmp_path / "truth")
    layout = scan_layout([root], truth_roots=[truth])
    assert layout.year() == "2021"
    text, payload = evaluate_embedder(
        BandEmbedder(),
        layout.clips,
        PAPER_BACKEND,
        out_dir=tmp_path / "teams",
        plots=False,
        year="2021",
    )
    team = tmp_path / "teams" / "model_0"
    names = sorted(p.name for p in team.iterdir())
    assert "anomaly_score_gearbox_section_01_target_test.csv" in names
    assert "decision_result_fan_section_00_source_test.csv" in names and len(names) == 16
    per, h_auc, h_pauc = evaluator_2021(team, truth)
    off = payload["results"]["model_0"]["official"]
    assert len(off["rows"]) == len(per) == 8
    for key, (auc, pauc) in per.items():  # "fan_section_00_source"
        ours = off["rows"][key.rsplit("_", 1)[0] + " " + key.rsplit("_", 1)[1]]
        assert (ours["AUC"], ours["pAUC"]) == pytest.approx((auc, pauc), abs=1e-12)
    every = np.maximum(np.array(list(per.values())).ravel(), EPS)
    assert off["score"] == pytest.approx(float(scipy.stats.hmean(every)), abs=1e-12)
    assert h_auc >= off["score"] >= h_pauc or h_pauc >= off["score"] >= h_auc
    assert payload["results"]["model_0"]["summary"]["official_score"] == off["score"]
    assert "official DCASE 2021 score" in text and "fan_section_01 target" in text


def test_2022_tables_print_the_official_auc_per_section(tmp_path: Path) -> None:
    root = tmp_path / "eval2022"
    official_eval_set(root, machines=("fan",), n_test=16)
    layout = scan_layout([root])
    assert layout.year() == "2022"
    text, payload = evaluate_embedder(
        BandEmbedder(), layout.clips, PAPER_BACKEND, plots=False, year=layout.year()
    )
    section = payload["results"]["model_0"]["sections"][0]
    head = next(ln for ln in text.splitlines() if ln.startswith("section"))
    assert head.split()[-4:] == ["off", "src", "off", "tgt"]
    row = next(ln for ln in text.splitlines() if ln.startswith("fan_section_03"))
    assert row.split()[-2:] == [
        f"{100 * section['official_auc_source']:.2f}",
        f"{100 * section['official_auc_target']:.2f}",
    ]
    assert "official DCASE 2022-2024 score" in text


def test_year_from_the_layout_or_given_and_mixed_years_refused(tmp_path: Path) -> None:
    write_2020(tmp_path / "y2020", machines=("fan",), ids=("00",))
    write_2021(tmp_path / "y2021", machines=("fan",), sections=("00",))
    official_eval_set(tmp_path / "y2022", machines=("valve",))
    years = {
        y: scan_layout([tmp_path / f"y{y}"], truth_roots=[tmp_path / f"y{y}" / "truth"])
        for y in ("2020", "2021", "2022")
    }
    assert {y: lay.year() for y, lay in years.items()} == {
        "2020": "2020",
        "2021": "2021",
        "2022": "2022",
    }
    assert years["2022"].year("2024") == "2022" and years["2022"].year("2021") == "2021"
    mixed = scan_layout(
        [tmp_path / "y2020", tmp_path / "y2022"], truth_roots=[tmp_path / "y2022" / "truth"]
    )
    with pytest.raises(FieldError, match="the data mix challenge years"):
        mixed.year()
    assert mixed.year("2022") == "2022"
    with pytest.raises(FieldError, match="expected one of 2020, 2021, 2022, 2023, 2024"):
        mixed.year("2019")
