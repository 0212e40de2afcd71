"""`model-build evaluate`: DCASE tables of a trained run (`model_build.evaluation.evaluate` does
the work)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from edge_agent.commands import options as opt
from edge_agent.commands.runner import fields_as_flags
from model_build.commands.options import DataRoots, Run, Verbose

METRICS_FILE = "metrics.json"


@fields_as_flags()
def evaluate_cmd(
    run: Run,
    data: DataRoots,
    json_out: opt.Json = False,
    out: Annotated[
        Path | None,
        typer.Option("--out", help=f"Folder for {METRICS_FILE}, the DCASE submission CSVs and "
                     "plots (one subfolder per scorer).", show_default=False),
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
    method: Annotated[
        str | None, typer.Option("--method", help="cosine or gmm (Table 6); default: the "
                                 "run's `train --backend`.", show_default=False)
    ] = None,
    variant: Annotated[
        str, typer.Option("--variant", help="Table 6: scores from the joint, source-only or "
                          "target-only references/mixture, or the sum of both domains'.")
    ] = "joint",
    plots: Annotated[
        bool, typer.Option("--plots/--no-plots",
                           help="Write ROC and histogram PNGs (last scorer only).")
    ] = True,
    concat: Annotated[
        list[Path] | None,
        typer.Option("--concat", help="Table 4, concatenate after training: runs whose "
                     "embeddings are joined to RUN's (repeatable).", show_default=False),
    ] = None,
    ground_truth: Annotated[
        list[Path] | None,
        typer.Option("--ground-truth", help="Folder with the official ground-truth CSVs (an "
                     "evaluator checkout), besides those under --data (repeatable).",
                     show_default=False),
    ] = None,
    verbose: Verbose = False,
) -> None:
    """Embed train and test clips, fit the backends, print DCASE tables, write JSON/CSV/plots.

    --json: all metrics as one JSON object on stdout instead of the tables.
    """
    from dataclasses import replace

    from edge_agent.errors import choice
    from edge_agent.scoring.backend import COSINE_VARIANTS, Variant
    from model_build import quiet
    from model_build.data.dataset import scan
    from model_build.evaluation.baseline import ClassicalEmbedder
    from model_build.evaluation.evaluate import (
        BACKENDS,
        METHODS,
        evaluate_embedder,
        evaluation_record,
        first_shot,
        record_evaluation,
        split_clips,
        write_json,
    )

    quiet.configure(verbose)
    named = BACKENDS[choice("backend", backend, tuple(BACKENDS))]
    checked_variant: Variant = choice("variant", variant, COSINE_VARIANTS)
    config = replace(named, percentile=percentile, variant=checked_variant)
    if method is not None:
        choice("method", method, METHODS)
    # cheap checks first: a bad root or bad ground truth fails before TensorFlow loads
    clips = scan(data, truth_roots=ground_truth or ())
    _, test = split_clips(clips)
    quiet.tensorflow()
    from model_build.training.runs import ConcatenatedRuns, load_run

    r = load_run(run)
    embedder = ConcatenatedRuns([r, *map(load_run, concat)]) if concat else r
    checked_method = choice("method", method or r.config.backend, METHODS)
    text, payload = evaluate_embedder(
        embedder, clips, config, out, plots, ClassicalEmbedder(r.spec) if classical else None,
        checked_method, progress=True,
    )
    unseen = first_shot(test, r.classes)
    payload = {"run": str(run), "data": [str(d) for d in data],
               "concat": [str(c) for c in concat or ()], "first_shot": unseen, **payload}
    if unseen:
        text += ("\n\nfirst-shot (machine types the network never saw in training): "
                 + ", ".join(unseen))
    if out is not None:
        write_json(out / METRICS_FILE, payload)
    if json_out:
        print(json.dumps(payload, indent=2, default=str))
    else:
        print(text)
    record_evaluation(run, evaluation_record(payload))
