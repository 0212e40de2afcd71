"""`model-build evaluate`: DCASE tables of a trained run (`model_build.evaluate` does the work)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from edge_agent.commands import options as opt
from edge_agent.commands.runner import fields_as_flags

from .options import DataRoots, Run

METRICS_FILE = "metrics.json"


@fields_as_flags()
def evaluate_cmd(
    run: Run,
    data: DataRoots,
    json_out: opt.Json = False,
    out: Annotated[
        Path | None,
        typer.Option("--out", help=f"Folder for {METRICS_FILE}, the submission CSVs and plots "
                     "(one subfolder per model).", show_default=False),
    ] = None,
    percentile: opt.Percentile = 90.0,
    backend: Annotated[
        str, typer.Option("--backend", help="Backend: default (k-NN references + local "
                          "density) or paper (k-means + target clips, raw cosine distance).")
    ] = "default",
    classical: Annotated[
        bool, typer.Option("--classical/--no-classical",
                           help="Also report the system with the classical components (what "
                           "export ships by default).")
    ] = True,
    method: Annotated[str, typer.Option("--method", help="Ablation: cosine backend or gmm "
                                        "(Table 6).")] = "cosine",
    variant: Annotated[
        str, typer.Option("--variant", help="Cosine references: joint, source, target, sum.")
    ] = "joint",
    plots: Annotated[
        bool, typer.Option("--plots/--no-plots",
                           help="Write ROC and histogram PNGs (last scorer only).")
    ] = True,
) -> None:
    """Embed train and test clips, fit the backends, print DCASE tables, write JSON/CSV/plots.

    --json: all metrics as one JSON object on stdout instead of the tables.
    """
    from dataclasses import replace

    from edge_agent.backend import COSINE_VARIANTS, Variant
    from edge_agent.errors import choice

    from ..baseline import ClassicalEmbedder
    from ..data import scan
    from ..evaluate import (
        BACKENDS,
        METHODS,
        evaluate_embedder,
        evaluation_record,
        record_evaluation,
        split_clips,
        write_json,
    )

    named = BACKENDS[choice("backend", backend, tuple(BACKENDS))]
    checked_variant: Variant = choice("variant", variant, COSINE_VARIANTS)
    config = replace(named, percentile=percentile, variant=checked_variant)
    checked_method = choice("method", method, METHODS)
    clips = scan(data)  # cheap checks first: a bad root fails before TensorFlow loads
    split_clips(clips)
    from ..runs import load_run  # imports TensorFlow: only here

    r = load_run(run)
    text, payload = evaluate_embedder(
        r, clips, config, out, plots, ClassicalEmbedder(r.spec) if classical else None,
        checked_method,
    )
    payload = {"run": str(run), "data": [str(d) for d in data], **payload}
    if out is not None:
        write_json(out / METRICS_FILE, payload)
    if json_out:
        print(json.dumps(payload, indent=2, default=str))
    else:
        print(text)
    record_evaluation(run, evaluation_record(payload))
