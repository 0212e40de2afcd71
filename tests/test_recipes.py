"""The paper's recipe is one named configuration: it pins every setting, every script and
command that means it uses it, and `model-build train --recipe paper` trains it (flags on the
command line still win), with its progress on stderr as plain lines in a log."""

from __future__ import annotations

import json
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from edge_agent.scoring.backend import PAPER_BACKEND
from model_build.training.model import ModelConfig
from model_build.training.recipes import PAPER, RECIPES, RUN_FIELDS, TRAIN_FIELDS, recipe
from model_build.training.train import TrainConfig

REPO = Path(__file__).resolve().parents[1]

PAPERS_OWN = {  # ../shared/notes/paper-to-code.md
    "width": 1.0,
    "bias": False,
    "bn_center": False,
    "trainable_centres": False,
    "n_subclusters": 16,
    "inputs": "both",
    "combine": "concat",
    "temporal_norm": True,
    "backend": "cosine",
    "featex": False,
}


def test_the_paper_recipe_pins_every_setting() -> None:
    """A field added to ModelConfig or TrainConfig later must be decided for the paper's
    recipe here, or the recipe would silently follow the product's new default."""
    assert {f.name for f in fields(ModelConfig)} == set(PAPERS_OWN)
    assert PAPER.model.to_dict() == PAPERS_OWN
    assert {f.name for f in fields(TrainConfig)} == set(TRAIN_FIELDS) | set(RUN_FIELDS)
    assert {k: getattr(PAPER.train, k) for k in TRAIN_FIELDS} == {
        "epochs": 10,
        "batch_size": 64,
        "learning_rate": 1e-3,
        "min_steps": 0,
        "augment": False,
        "average": 0.0,
        "perturb_classes": 0.0,
    }
    assert (PAPER.backend, PAPER.classical) == ("paper", False)
    assert set(RECIPES) == {"default", "paper"}
    assert recipe("default").model == ModelConfig() and recipe("default").train == TrainConfig()
    from model_build.training.model import PAPER_MODEL  # the network-only twin (test_model)

    assert PAPER.model == PAPER_MODEL


def test_an_unknown_recipe_is_a_field_error() -> None:
    from edge_agent.errors import FieldError

    with pytest.raises(FieldError, match="expected one of default, paper, got 'papr'"):
        recipe("papr")


def test_the_quality_suite_trains_the_same_paper_recipe() -> None:
    sys.path.insert(0, str(REPO / "benchmarks"))
    import quality

    resolved = quality.PAPER.training()
    assert resolved["model"] == PAPER.model.to_dict()
    # a switch is left out while off (cache keys)
    train = {"average": 0.0, "perturb_classes": 0.0, **resolved["train"]}
    assert {k: train[k] for k in TRAIN_FIELDS} == PAPER.describe()["train"]
    assert set(resolved["train"]) <= set(TRAIN_FIELDS) | set(RUN_FIELDS)
    assert quality.PAPER.backend == PAPER_BACKEND and quality.PAPER.classical == ()


@pytest.mark.slow
def test_train_recipe_paper_then_evaluate_uses_its_backend(
    tiny_dcase_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from model_build.cli import main
    from model_build.training.runs import read_meta

    out = tmp_path / "run"
    with pytest.raises(SystemExit) as exc:
        main(
            [
                "train",
                "--recipe",
                "paper",
                "--data",
                str(tiny_dcase_root),
                "--out",
                str(out),
                "--width",
                "0.25",
                "--epochs",
                "1",
                "--batch-size",
                "4",
            ]
        )
    assert exc.value.code in (0, None)
    captured = capsys.readouterr()
    assert captured.out.strip() == f"run written to {out}"  # progress is not on stdout
    assert "model 1/1 epoch 1/1" in captured.err and "loss" in captured.err
    assert "\r" not in captured.err and "\x1b" not in captured.err  # stderr is not a tty
    meta = read_meta(out)
    assert meta["recipe"] == "paper"
    assert meta["config"] == {**PAPERS_OWN, "width": 0.25}  # the flag won, nothing else moved
    assert (
        meta["train"]["augment"],
        meta["train"]["min_steps"],
        meta["train"]["epochs"],
        meta["train"]["batch_size"],
    ) == (False, 0, 1, 4)

    with pytest.raises(SystemExit) as exc:
        main(["evaluate", str(out), "--data", str(tiny_dcase_root), "--no-plots", "--json"])
    payload = json.loads(capsys.readouterr().out)
    assert payload["recipe"] == "paper" and payload["system"] == "model_0"  # no classical
    assert payload["backend"]["references"] == PAPER_BACKEND.references
    with pytest.raises(SystemExit) as exc:
        main(
            [
                "evaluate",
                str(out),
                "--data",
                str(tiny_dcase_root),
                "--no-plots",
                "--backend",
                "default",
                "--classical",
            ]
        )
    text = capsys.readouterr().out
    assert text.startswith("recipe paper: backend default, classical components on")
    assert "== system" in text
