"""Options `model-build` commands share, declared once (the device's shared ones are in
`edge_agent.commands.options`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edge_agent.commands.options import Quiet, Verbose

__all__ = [
    "Classical",
    "DataRoots",
    "DataRootsOrRun",
    "Method",
    "Quiet",
    "RecipeName",
    "Run",
    "Seed",
    "Strict",
    "Verbose",
]

DataRoots = Annotated[list[Path], typer.Option("--data", help="DCASE data root (repeatable).")]
DataRootsOrRun = Annotated[
    list[Path] | None,
    typer.Option(
        "--data",
        help="DCASE data root (repeatable) (default: the run's own data roots).",
        show_default=False,
    ),
]
Run = Annotated[Path, typer.Argument(help="Run directory written by `model-build train`.")]
Method = Annotated[
    str | None,
    typer.Option(
        "--method",
        help="Table 6 scoring method, cosine or gmm: train records it in "
        "the run, evaluate uses the recorded one unless given (default: train: cosine; "
        "evaluate: the run's).",
        show_default=False,
    ),
]
Classical = Annotated[
    bool | None,
    typer.Option(
        "--classical/--no-classical",
        help="The classical components (band statistics, rhythm, dynamics, modulation, "
        "comodulation, fine spectrum) beside the learned model (the hybrid export ships; evaluate "
        "reports it next to the learned model alone) (default: the recipe's).",
        show_default=False,
    ),
]
Seed = Annotated[
    int,
    typer.Option(
        "--seed",
        help="Random seed: the same seed and options give the same "
        "output (train: model k uses seed + k).",
    ),
]
Strict = Annotated[
    bool,
    typer.Option(
        "--strict/--no-strict",
        help="Stop at the first file under train/ or test/ that cannot be used "
        "(unreadable, or a name outside the DCASE layout); default: warn, "
        "name it, count it and go on.",
    ),
]
RecipeName = Annotated[
    str | None,
    typer.Option(
        "--recipe",
        help="A named system (model_build.training.recipes): default (what "
        "export ships: width 0.5, FeatEx, augmentation; local density + classical "
        "components) or paper (the paper's: width 1, no FeatEx, no augmentation, 10 "
        "epochs of 64; k-means + target clips, cosine, no classical). train builds and "
        "trains it, evaluate and export score with its backend and components; single "
        "flags override it (default: train: default; evaluate, export: the recipe the "
        "run was trained with).",
        show_default=False,
    ),
]
