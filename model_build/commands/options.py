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
