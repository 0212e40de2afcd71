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
