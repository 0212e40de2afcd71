"""Named recipes: a whole system (network, training, backend) under one name.

`paper` is Wilkinghoff's ICASSP 2023 system as published: the full-width network without
FeatEx, 10 epochs of batch 64, Adam 1e-3, no augmentation, no checkpoint averaging and no
minimum step count (every
addition made after the paper's tables is off), scored by the paper's backend (k-means +
target clips, raw cosine distance) without the classical components. `default` is what
`model-build train` + `export` ship. Whatever the product's defaults become, `paper` stays the
paper's: every field of `ModelConfig` and every recipe field of `TrainConfig` is spelled out
here (tests/test_recipes.py fails when a new field is added and the paper recipe does not
pin it), so the ablation tables, the quality suite's `paper` system, the README and
BENCHMARKS.md mean the same thing by "the paper's recipe".

`model-build train --recipe paper` starts from it (flags given on the command line still
win, e.g. `--width 0.25` for a CPU-sized ablation); the name lands in run.json, and
`evaluate`/`export` then use the recipe's backend unless told otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

from edge_agent.errors import FieldError
from model_build.training.model import ModelConfig
from model_build.training.train import TrainConfig

TRAIN_FIELDS = (
    "epochs",
    "batch_size",
    "learning_rate",
    "min_steps",
    "augment",
    "average",
    "perturb_classes",
)
"""The TrainConfig fields a recipe decides (seed, runs, strict and verbose are per call)."""
RUN_FIELDS = ("seed", "runs", "strict", "verbose")


@dataclass(frozen=True)
class Recipe:
    """One named system: how its network is built and trained and how it is scored."""

    name: str
    model: ModelConfig
    train: TrainConfig
    backend: str  # model_build.evaluation.evaluate.BACKENDS key: "default" | "paper"
    classical: bool  # fuse the classical components (export's hybrid)
    about: str

    def train_config(self, **per_call: Any) -> TrainConfig:
        """The recipe's TrainConfig with the per-call fields (seed, runs, ...) set."""
        unknown = sorted(set(per_call) - {f.name for f in fields(TrainConfig)})
        if unknown:
            raise FieldError(unknown[0], "not a TrainConfig field")
        return replace(self.train, **per_call)

    def describe(self) -> dict[str, Any]:
        """What the recipe pins, JSON-able (run.json, benchmark reports)."""
        return {
            "name": self.name,
            "model": self.model.to_dict(),
            "train": {k: getattr(self.train, k) for k in TRAIN_FIELDS},
            "backend": self.backend,
            "classical": self.classical,
        }


PAPER = Recipe(
    name="paper",
    model=ModelConfig(
        width=1.0,
        bias=False,
        bn_center=False,
        trainable_centres=False,
        n_subclusters=16,
        inputs="both",
        combine="concat",
        temporal_norm=True,
        backend="cosine",
        featex=False,
    ),
    train=TrainConfig(
        epochs=10,
        batch_size=64,
        learning_rate=1e-3,
        min_steps=0,
        augment=False,
        average=0.0,
        perturb_classes=0.0,
    ),
    backend="paper",
    classical=False,
    about="the paper's system: width 1.0, no FeatEx, 10 epochs, batch 64, no augmentation; "
    "k-means + target clips, cosine distance, no classical components",
)
DEFAULT = Recipe(
    name="default",
    model=ModelConfig(),
    train=TrainConfig(),
    backend="default",
    classical=True,
    about="what export ships: width 0.5, FeatEx, augmentation; local-density backend fused "
    "with the classical components",
)
RECIPES: dict[str, Recipe] = {r.name: r for r in (DEFAULT, PAPER)}


def recipe(name: str) -> Recipe:
    """The recipe called `name`, or FieldError("recipe") naming the choices."""
    if name not in RECIPES:
        raise FieldError("recipe", f"expected one of {', '.join(RECIPES)}, got {name!r}")
    return RECIPES[name]


def recipe_of_run(meta: dict[str, Any]) -> Recipe:
    """The recipe a run was trained with (run.json `recipe`; older runs: `default`)."""
    return recipe(str(meta.get("recipe", DEFAULT.name)))
