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
    method: Annotated[str, typer.Option("--method", help="Backend: cosine (paper) or gmm.")
                      ] = "cosine",
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
    from ..data import scan
    from ..evaluate import (
        BackendConfig,
        evaluate_embedder,
        evaluation_record,
        record_evaluation,
        split_clips,
        write_json,
    )

    config = BackendConfig(method=method, variant=variant, percentile=percentile)
    clips = scan(data)  # cheap checks first: a bad root fails before TensorFlow loads
    split_clips(clips)
    from ..runs import load_run  # imports TensorFlow: only here

    text, payload = evaluate_embedder(load_run(run), clips, config, out, plots)
    payload = {"run": str(run), "data": [str(d) for d in data], **payload}
    if out is not None:
        write_json(out / METRICS_FILE, payload)
    if json_out:
        print(json.dumps(payload, indent=2, default=str))
    else:
        print(text)
    record_evaluation(run, evaluation_record(payload))
