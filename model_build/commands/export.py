"""`model-build export`: a trained run as a device bundle (`model_build.export`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edge_agent.commands.runner import fields_as_flags
from model_build.commands.options import (
    Classical,
    DataRootsOrRun,
    RecipeName,
    Run,
    Strict,
    Verbose,
)


@fields_as_flags(models="--model")
def export_cmd(
    run: Run,
    out: Annotated[Path, typer.Option("--out", help="Bundle directory (a new version is added).")],
    quantize: Annotated[
        str | None,
        typer.Option(
            "--quantize", help="float32 | float16 | dynamic (default) | int8.", show_default=False
        ),
    ] = None,
    data: DataRootsOrRun = None,
    models: Annotated[
        list[int] | None,
        typer.Option(
            "--model",
            help="Which model(s) of the run (repeatable; default: all, an ensemble).",
            show_default=False,
        ),
    ] = None,
    calibration: Annotated[
        int, typer.Option("--calibration", help="int8 only: number of calibration clips.")
    ] = 200,
    domains: Annotated[
        str,
        typer.Option(
            "--domains", help="Backend clips: all (source + target) | source (calibrate on site)."
        ),
    ] = "all",
    recipe: RecipeName = None,
    backend: Annotated[
        str | None,
        typer.Option(
            "--backend",
            help="Backend: default (k-NN references + local "
            "density) or paper (k-means + target clips, raw cosine "
            "distance); default: the recipe's.",
            show_default=False,
        ),
    ] = None,
    classical: Classical = None,
    strict: Strict = False,
    sign_key: Annotated[
        Path | None,
        typer.Option(
            "--sign-key",
            help="Sign the new version with this Ed25519 private key "
            "(model-build keygen); devices with trusted_keys load only signed "
            "bundles.",
            show_default=False,
        ),
    ] = None,
    verbose: Verbose = False,
) -> None:
    """Export a trained run as a TFLite bundle; the backend is refitted on the device path."""
    from edge_agent.bundle.signing import load_private_key
    from model_build import quiet

    if sign_key is not None:
        load_private_key(sign_key)  # a wrong key fails now, not after the conversion
    from model_build.training.recipes import recipe as named_recipe
    from model_build.training.recipes import recipe_of_run
    from model_build.training.runs import read_meta

    quiet.configure(verbose)
    chosen = named_recipe(recipe) if recipe is not None else recipe_of_run(read_meta(run))
    quiet.tensorflow()
    from model_build.export import DEFAULT_MODE, export_run, manifest_of

    mode = quantize or DEFAULT_MODE
    vdir = export_run(
        run,
        out,
        mode,
        data=data or (),
        models=models or None,
        calibration=calibration,
        domains=domains,
        backend=backend or chosen.backend,
        classical=chosen.classical if classical is None else classical,
        progress=True,
        sign_key=sign_key,
        strict=strict,
    )
    m = manifest_of(vdir)
    size = sum((vdir / c["file"]).stat().st_size for c in m["components"] if c["kind"] == "model")
    print(
        f"wrote {vdir} ({mode}, {len(m['components'])} components, {size / 1e6:.2f} MB of "
        f"models, {len(m['sections'])} sections{', signed' if sign_key else ''})"
    )
