"""Options `model-build` commands share, declared once (the device's shared ones are in
`edge_agent.commands.options`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edge_agent.commands.options import Quiet, Verbose

__all__ = ["Classical", "DataRoots", "DataRootsOrRun", "Method", "Quiet", "Run", "Seed",
           "Verbose"]

DataRoots = Annotated[
    list[Path], typer.Option("--data", help="DCASE data root (repeatable).")
]
DataRootsOrRun = Annotated[
    list[Path] | None,
    typer.Option("--data", help="DCASE data root (repeatable) (default: the run's own data "
                 "roots).", show_default=False),
]
Run = Annotated[Path, typer.Argument(help="Run directory written by `model-build train`.")]
Method = Annotated[
    str | None,
    typer.Option("--method", help="Table 6 scoring method, cosine or gmm: train records it in "
                 "the run, evaluate uses the recorded one unless given (default: train: cosine; "
                 "evaluate: the run's).", show_default=False),
]
Classical = Annotated[
    bool,
    typer.Option("--classical/--no-classical", help="The classical band statistics and rhythm "
                 "as components beside the learned model (the hybrid export ships; evaluate "
                 "reports it next to the learned model alone)."),
]
Seed = Annotated[
    int, typer.Option("--seed", help="Random seed: the same seed and options give the same "
                      "output (train: model k uses seed + k).")
]
Strict = Annotated[
    bool, typer.Option("--strict/--no-strict",
                       help="Stop at the first file under train/ or test/ that cannot be used "
                       "(unreadable, or a name outside the DCASE layout); default: warn, "
                       "name it, count it and go on.")
]
RecipeName = Annotated[
    str | None, typer.Option("--recipe", help="Backend and components of a named recipe: "
                             "default (local density + classical components) or paper "
                             "(k-means + target clips, cosine, no classical); default: the "
                             "recipe the run was trained with. --backend/--classical override.",
                             show_default=False)
]
