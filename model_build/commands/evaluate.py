"""`model-build evaluate`: DCASE tables of a trained run (`model_build.evaluation.evaluate` does
the work)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from edge_agent.commands import options as opt
from edge_agent.commands.runner import fields_as_flags
from model_build.commands.options import (
    Classical,
    DataRoots,
    Method,
    RecipeName,
    Run,
    Strict,
    Verbose,
)

METRICS_FILE = "metrics.json"


@fields_as_flags()
def evaluate_cmd(
    run: Run,
    data: DataRoots,
    json_out: opt.Json = False,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help=f"Folder for {METRICS_FILE}, the DCASE submission CSVs and "
            "plots (one subfolder per scorer).",
            show_default=False,
        ),
    ] = None,
    percentile: opt.Percentile = 90.0,
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
    year: Annotated[
        str,
        typer.Option(
            "--year",
            help="Score by the rules of this DCASE year (2020: per "
            "machine id; 2021: per section and domain; 2022-2024: per section, "
            "official AUC source/target) and name the submission files so; "
            "auto: read it from the layout.",
        ),
    ] = "auto",
    strict: Strict = False,
    method: Method = None,
    variant: Annotated[
        str,
        typer.Option(
            "--variant",
            help="Table 6: scores from the joint, source-only or "
            "target-only references/mixture, or the sum of both domains'.",
        ),
    ] = "joint",
    plots: Annotated[
        bool,
        typer.Option("--plots/--no-plots", help="Write ROC and histogram PNGs (last scorer only)."),
    ] = True,
    concat: Annotated[
        list[Path] | None,
        typer.Option(
            "--concat",
            help="Table 4, concatenate after training: runs whose "
            "embeddings are joined to RUN's (repeatable).",
            show_default=False,
        ),
    ] = None,
    ground_truth: Annotated[
        list[Path] | None,
        typer.Option(
            "--ground-truth",
            help="Folder with the official ground-truth CSVs (an "
            "evaluator checkout), besides those under --data (repeatable).",
            show_default=False,
        ),
    ] = None,
    verbose: Verbose = False,
) -> None:
    """Embed train and test clips, fit the backends, print DCASE tables, write JSON/CSV/plots.

    --json: all metrics as one JSON object on stdout instead of the tables. Files under
    train/ or test/ that are not clips of the layout are named on stderr and counted under the
    tables (metrics.json: `ignored_files`); --strict stops at the first one.
    """
    from dataclasses import replace

    from edge_agent.errors import choice
    from edge_agent.scoring.backend import COSINE_VARIANTS, Variant
    from model_build import quiet
    from model_build.data.dataset import scan_layout
    from model_build.data.years import rules_of
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
    from model_build.training.recipes import recipe as named_recipe
    from model_build.training.recipes import recipe_of_run
    from model_build.training.runs import read_meta

    quiet.configure(verbose)
    if recipe is not None:
        named_recipe(recipe)
    if backend is not None:
        choice("backend", backend, tuple(BACKENDS))
    checked_variant: Variant = choice("variant", variant, COSINE_VARIANTS)
    if method is not None:
        choice("method", method, METHODS)
    if year != "auto":
        rules_of(year)
    # cheap checks first: a bad root or bad ground truth fails before TensorFlow loads
    layout = scan_layout(data, truth_roots=ground_truth or (), strict=strict)
    layout.warn()
    clips = layout.clips
    rules = layout.year(year)
    _, test = split_clips(clips)
    chosen = named_recipe(recipe) if recipe is not None else recipe_of_run(read_meta(run))
    named = BACKENDS[backend or chosen.backend]
    with_classical = chosen.classical if classical is None else classical
    config = replace(named, percentile=percentile, variant=checked_variant)
    quiet.tensorflow()
    from model_build.training.runs import ConcatenatedRuns, load_run

    r = load_run(run)
    embedder = ConcatenatedRuns([r, *map(load_run, concat)]) if concat else r
    checked_method = choice("method", method or r.config.backend, METHODS)
    text, payload = evaluate_embedder(
        embedder,
        clips,
        config,
        out,
        plots,
        ClassicalEmbedder(r.spec) if with_classical else None,
        checked_method,
        progress=True,
        year=rules,
    )
    unseen = first_shot(test, r.classes)
    payload = {
        "run": str(run),
        "data": [str(d) for d in data],
        "concat": [str(c) for c in concat or ()],
        "first_shot": unseen,
        "recipe": chosen.name,
        "ignored_files": [str(p) for p in layout.ignored],
        **payload,
    }
    text = (
        _heading(chosen.name, backend or chosen.backend, with_classical, rules, year != "auto")
        + text
    )
    if unseen:
        text += "\n\nfirst-shot (machine types the network never saw in training): " + ", ".join(
            unseen
        )
    text += f"\n\ndata: {layout.summary()}"
    if out is not None:
        write_json(out / METRICS_FILE, payload)
    if json_out:
        print(json.dumps(payload, indent=2, default=str))
    else:
        print(text)
    record_evaluation(run, evaluation_record(payload))


def _heading(recipe: str, backend: str, classical: bool, year: str, given: bool) -> str:
    """The line above the tables: which system is scored and by which year's rules, so a
    pasted table says how it was made."""
    rule_name = "2022-2024" if year == "2022" else year
    return (
        f"recipe {recipe}: backend {backend}, classical components "
        f"{'on' if classical else 'off'}; DCASE {rule_name} rules "
        f"({'given' if given else 'from the layout'})\n\n"
    )
