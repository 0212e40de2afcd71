"""`model-build export`: one trained model as a device bundle (`model_build.export`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edge_agent.commands.runner import fields_as_flags

from .options import Run


@fields_as_flags(model_index="--model")
def export_cmd(
    run: Run,
    out: Annotated[
        Path, typer.Option("--out", help="Bundle directory (a new version is added).")
    ],
    quantize: Annotated[
        str | None, typer.Option("--quantize", help="float32 | float16 | dynamic (default) | "
                                 "int8.", show_default=False)
    ] = None,
    data: Annotated[
        list[Path] | None,
        typer.Option("--data", help="Training data root(s); default: the run's own data roots.",
                     show_default=False),
    ] = None,
    model_index: Annotated[
        int, typer.Option("--model", help="Which model of the run (ensemble member).")
    ] = 0,
    calibration: Annotated[
        int, typer.Option("--calibration", help="int8 only: number of calibration clips.")
    ] = 200,
    domains: Annotated[
        str, typer.Option("--domains", help="Backend clips: all (source + target) | source "
                          "(calibrate on site).")
    ] = "all",
) -> None:
    """Export one trained model as a TFLite bundle; the backend is refitted on the device path."""
    from ..export import DEFAULT_MODE, export_run, manifest_of

    mode = quantize or DEFAULT_MODE
    vdir = export_run(run, out, mode, data or (), model_index, calibration, domains)
    size = (vdir / "model.tflite").stat().st_size
    n = len(manifest_of(vdir)["sections"])
    print(f"wrote {vdir} ({mode}, {size / 1e6:.2f} MB, {n} sections)")
