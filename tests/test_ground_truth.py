"""model_build.data.ground_truth: the official evaluation layout (anonymous test names, the
evaluator's ground_truth_data/ and ground_truth_domain/ folders), read strictly."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from dcase_layouts import official_eval_set, write_clip

from model_build.data.dataset import scan
from model_build.data.ground_truth import GroundTruthError


def test_labels_and_domains_come_from_their_own_folders(tmp_path: Path) -> None:
    """The domain file must not overwrite the labels: both files are named identically."""
    truth = official_eval_set(tmp_path)
    clips = {(c.machine, c.path.name): c for c in scan([tmp_path]) if c.split == "test"}
    assert len(clips) == 24
    for machine, rows in truth.items():
        for r in rows:
            c = clips[(machine, r.name)]
            assert c.is_anomaly == r.anomaly, r
            assert c.domain == ("target" if r.target else "source"), r
    # the same anonymous name in two machine types is two clips, not a conflict
    fan, valve = clips[("fan", "section_03_0000.wav")], clips[("valve", "section_03_0000.wav")]
    assert fan.path != valve.path


def test_ground_truth_outside_the_data_root(tmp_path: Path) -> None:
    """An evaluator checkout next to the data, passed as truth_roots."""
    official_eval_set(tmp_path / "eval")
    shutil.move(tmp_path / "eval" / "truth", tmp_path / "evaluator")
    unlabelled = [c for c in scan([tmp_path / "eval"]) if c.split == "test"]
    assert all(c.label is None and c.domain is None for c in unlabelled)  # submission only
    labelled = [
        c
        for c in scan([tmp_path / "eval"], truth_roots=[tmp_path / "evaluator"])
        if c.split == "test"
    ]
    assert sum(c.is_anomaly for c in labelled) == 12
    assert {c.domain for c in labelled} == {"source", "target"}


def test_training_scans_ignore_ground_truth(tmp_path: Path) -> None:
    official_eval_set(tmp_path)
    (tmp_path / "truth/ground_truth_data/ground_truth_fan_section_03_test.csv").write_text("junk\n")
    assert {c.split for c in scan([tmp_path], splits=("train",))} == {"train"}


def _error(root: Path) -> str:
    with pytest.raises(GroundTruthError) as exc:
        scan([root])
    message = str(exc.value)
    assert "\n" not in message
    return message


def test_a_test_clip_without_a_label_is_an_error(tmp_path: Path) -> None:
    official_eval_set(tmp_path)
    write_clip(tmp_path / "fan/test/section_03_0012.wav", 500.0, seed=0)
    msg = _error(tmp_path)
    assert msg.startswith(str(tmp_path / "fan/test/section_03_0012.wav"))
    assert "without a label" in msg and "ground_truth_fan_section_03_test.csv" in msg


def test_a_missing_domain_file_is_an_error(tmp_path: Path) -> None:
    official_eval_set(tmp_path)
    (tmp_path / "truth/ground_truth_domain/ground_truth_valve_section_03_test.csv").unlink()
    msg = _error(tmp_path)
    assert "valve/test/section_03_0000.wav: test clip without a domain" in msg
    assert "ground_truth_domain/" in msg


def test_a_name_in_two_files_is_an_error(tmp_path: Path) -> None:
    official_eval_set(tmp_path)
    copy = tmp_path / "more" / "ground_truth_fan_section_03_test.csv"
    copy.parent.mkdir()
    copy.write_text("section_03_0000.wav,0\n")
    msg = _error(tmp_path)
    assert "section_03_0000.wav is listed also in" in msg
    assert str(copy) in msg and "ground_truth_data" in msg


def test_a_name_twice_in_one_file_is_an_error(tmp_path: Path) -> None:
    official_eval_set(tmp_path)
    f = tmp_path / "truth/ground_truth_domain/ground_truth_fan_section_03_test.csv"
    f.write_text(f.read_text() + "section_03_0001.wav,1\n")
    assert _error(tmp_path) == f"{f}: section_03_0001.wav is listed twice"


def test_a_csv_that_does_not_match_the_clips_is_an_error(tmp_path: Path) -> None:
    official_eval_set(tmp_path)
    (tmp_path / "fan/test/section_03_0005.wav").unlink()
    msg = _error(tmp_path)
    assert "lists section_03_0005.wav" in msg and "does not match the clips" in msg


@pytest.mark.parametrize(
    ("row", "why"),
    [
        ("section_03_0000.wav,2", "expected <clip>.wav,0|1"),
        ("section_03_0000.wav,1,target", "expected <clip>.wav,0|1"),
        ("section_03_0000.wav,anomaly", "expected <clip>.wav,0|1"),
        ("section_04_0000.wav,1", "is not a clip name of section_03"),
    ],
)
def test_malformed_rows_name_the_file_and_line(tmp_path: Path, row: str, why: str) -> None:
    official_eval_set(tmp_path)
    f = tmp_path / "truth/ground_truth_data/ground_truth_valve_section_03_test.csv"
    f.write_text(row + "\n" + f.read_text())
    msg = _error(tmp_path)
    assert msg.startswith(f"{f}: line 1: ") and why in msg


def test_a_header_line_is_accepted(tmp_path: Path) -> None:
    official_eval_set(tmp_path)
    for sub, head in (("data", "file,label"), ("domain", "file,domain")):
        f = tmp_path / f"truth/ground_truth_{sub}/ground_truth_fan_section_03_test.csv"
        f.write_text(head + "\n" + f.read_text())
    assert sum(c.is_anomaly for c in scan([tmp_path])) == 12


def test_ground_truth_contradicting_a_clip_name_is_an_error(tmp_path: Path) -> None:
    """Dev-set names carry their label; a CSV that says otherwise is not silently believed."""
    write_clip(tmp_path / "fan/train/section_00_source_train_normal_0000.wav", 400, 0)
    write_clip(tmp_path / "fan/test/section_00_source_test_normal_0001.wav", 400, 1)
    gt = tmp_path / "gt/ground_truth_fan_section_00_test.csv"
    gt.parent.mkdir()
    gt.write_text("section_00_source_test_normal_0001.wav,1\n")
    assert "says section_00_source_test_normal_0001.wav is anomaly, its name says normal" in (
        _error(tmp_path)
    )


def test_the_attributes_folder_of_2023_is_not_ground_truth(tmp_path: Path) -> None:
    official_eval_set(tmp_path)
    attrs = tmp_path / "truth/ground_truth_attributes/ground_truth_fan_section_03_test.csv"
    attrs.parent.mkdir()
    attrs.write_text("section_03_source_test_normal_0000_a_1.wav,section_03_0000\n")
    assert sum(c.is_anomaly for c in scan([tmp_path])) == 12


def test_ground_truth_of_sections_not_scanned_is_ignored(tmp_path: Path) -> None:
    """An evaluator checkout lists every machine type; evaluating one of them is fine."""
    official_eval_set(tmp_path)
    clips = scan([tmp_path / "fan"], truth_roots=[tmp_path / "truth"])
    assert {c.machine for c in clips} == {"fan"} and sum(c.is_anomaly for c in clips) == 6


def test_evaluate_stops_with_one_line_naming_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Checked before any model loads: no run is needed to see the error."""
    from model_build.cli import main

    official_eval_set(tmp_path / "eval")
    bad = tmp_path / "eval/truth/ground_truth_domain/ground_truth_fan_section_03_test.csv"
    bad.write_text("section_03_0000.wav,source\n")
    with pytest.raises(SystemExit) as exc:
        main(["evaluate", str(tmp_path / "no-run"), "--data", str(tmp_path / "eval")])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    why = "line 1: expected <clip>.wav,0|1, got 'section_03_0000.wav,source'"
    assert err == f"error: {bad}: {why}\n"
