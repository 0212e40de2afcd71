"""Options `model-build` commands share, declared once (the device's shared ones are in
`edge_agent.commands.options`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

DataRoots = Annotated[
    list[Path], typer.Option("--data", help="DCASE data root (repeatable).")
]
Run = Annotated[Path, typer.Argument(help="Run directory written by `model-build train`.")]
Verbose = Annotated[
    bool, typer.Option("--verbose", help="Show TensorFlow, absl and converter output (off by "
                       "default: only this program's lines).")
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
