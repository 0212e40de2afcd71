"""`model-build train`: a named recipe (`--recipe default|paper`) on one or more DCASE data
roots (`model_build.training.train`); a flag given on the command line overrides the recipe."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from edge_agent.commands.runner import fields_as_flags
from model_build.commands.options import (
    DataRoots,
    Method,
    Quiet,
    RecipeName,
    Seed,
    Strict,
    Verbose,
)
from model_build.training.recipes import DEFAULT, PAPER
from model_build.training.train import DEFAULT_RUNS

_D, _P = DEFAULT, PAPER


def _both(field: str, model: bool = True) -> str:
    """`default 0.5, paper 1.0`: a recipe-governed flag's value in each recipe."""
    d, p = (_D.model, _P.model) if model else (_D.train, _P.train)
    return f"default recipe: {getattr(d, field)}, paper: {getattr(p, field)}"


@fields_as_flags()
def train_cmd(
    data: DataRoots,
    out: Annotated[
        Path, typer.Option("--out", help="Run directory to write (resumed if it exists).")
    ],
    recipe: RecipeName = None,
    epochs: Annotated[
        int | None,
        typer.Option(
            "--epochs", min=1, help=f"Epochs ({_both('epochs', False)}).", show_default=False
        ),
    ] = None,
    batch_size: Annotated[
        int | None,
        typer.Option(
            "--batch-size",
            min=1,
            help=f"Batch size ({_both('batch_size', False)}).",
            show_default=False,
        ),
    ] = None,
    learning_rate: Annotated[
        float | None,
        typer.Option(
            "--learning-rate",
            help=f"Adam learning rate ({_both('learning_rate', False)}).",
            show_default=False,
        ),
    ] = None,
    width: Annotated[
        float | None,
        typer.Option(
            "--width",
            help=f"Channel multiplier, 1.0 = the paper's network ({_both('width')}).",
            show_default=False,
        ),
    ] = None,
    seed: Seed = 0,
    runs: Annotated[
        int, typer.Option("--runs", min=1, help="Models to train (an ensemble: model_<k> dirs).")
    ] = DEFAULT_RUNS,
    resume: Annotated[
        bool, typer.Option("--resume/--no-resume", help="Continue an existing run in --out.")
    ] = True,
    strict: Strict = False,
    inputs: Annotated[
        str | None,
        typer.Option(
            "--inputs",
            help="Table 4: spectrogram | spectrum | logmel128 | both (both recipes: both).",
            show_default=False,
        ),
    ] = None,
    combine: Annotated[
        str | None,
        typer.Option(
            "--combine",
            help="Table 4, with --inputs both: concat (the "
            "paper) or add the branches' embeddings while training.",
            show_default=False,
        ),
    ] = None,
    bias: Annotated[
        bool | None,
        typer.Option(
            "--bias/--no-bias",
            help="Table 3: bias terms in every layer (both recipes: no).",
            show_default=False,
        ),
    ] = None,
    trainable_centres: Annotated[
        bool | None,
        typer.Option(
            "--trainable-centres/--no-trainable-centres",
            help="Table 3: train the AdaCos centres (both recipes: no).",
            show_default=False,
        ),
    ] = None,
    temporal_norm: Annotated[
        bool | None,
        typer.Option(
            "--temporal-norm/--no-temporal-norm",
            help="Table 5: temporal mean normalisation of the STFT (both recipes: yes).",
            show_default=False,
        ),
    ] = None,
    method: Method = None,
    featex: Annotated[
        bool | None,
        typer.Option(
            "--featex/--no-featex",
            help=f"FeatEx: the feature-exchange self-supervised task ({_both('featex')}).",
            show_default=False,
        ),
    ] = None,
    min_steps: Annotated[
        int | None,
        typer.Option(
            "--min-steps",
            min=0,
            help="At least this many optimiser "
            f"steps, for small data sets ({_both('min_steps', False)}).",
            show_default=False,
        ),
    ] = None,
    augment: Annotated[
        bool | None,
        typer.Option(
            "--augment/--no-augment",
            help=f"Random time shift and gain of every clip ({_both('augment', False)}).",
            show_default=False,
        ),
    ] = None,
    average: Annotated[
        float | None,
        typer.Option(
            "--average",
            min=0.0,
            max=1.0,
            help="Final weights = mean of the last fraction of the "
            "epochs' weights (checkpoint averaging; 0 = the last "
            f"epoch's) ({_both('average', False)}).",
            show_default=False,
        ),
    ] = None,
    perturb_classes: Annotated[
        float | None,
        typer.Option(
            "--perturb-classes",
            min=0.0,
            help="Add this fraction of the clips to every epoch as perturbed copies (a tone, "
            "a band, impulses, speed, modulation, a stutter), each kind a class of its own per "
            f"section (0 = off) ({_both('perturb_classes', False)}).",
            show_default=False,
        ),
    ] = None,
    quiet: Quiet = False,
    verbose: Verbose = False,
) -> None:
    """Train the embedding network(s) on the training clips of one or more DCASE roots.

    Progress goes to stderr: a line redrawn in place on a terminal, plain lines (about one
    every 30 s and one per epoch) in a log.
    """
    from dataclasses import replace

    from edge_agent.errors import choice
    from model_build import quiet as library_output
    from model_build.data.clip import DatasetError
    from model_build.training.model import COMBINES, INPUTS
    from model_build.training.recipes import recipe as named
    from model_build.training.train import train_run

    library_output.configure(verbose)

    for root in data:
        if not root.is_dir():
            raise DatasetError(f"{root}: not a directory (expected a DCASE data root)")
    base = named(recipe or DEFAULT.name)
    model_flags: dict[str, Any] = {
        "width": width,
        "bias": bias,
        "trainable_centres": trainable_centres,
        "inputs": None if inputs is None else choice("inputs", inputs, INPUTS),
        "combine": None if combine is None else choice("combine", combine, COMBINES),
        "temporal_norm": temporal_norm,
        "backend": None if method is None else choice("method", method, ("cosine", "gmm")),
        "featex": featex,
    }
    train_flags: dict[str, Any] = {
        "epochs": epochs,
        "batch_size": batch_size,
        "learning_rate": learning_rate,
        "min_steps": min_steps,
        "augment": augment,
        "average": average,
        "perturb_classes": perturb_classes,
    }
    cfg = replace(base.model, **{k: v for k, v in model_flags.items() if v is not None})
    tcfg = replace(
        base.train_config(seed=seed, runs=runs, strict=strict, verbose=not quiet),
        **{k: v for k, v in train_flags.items() if v is not None},
    )
    library_output.tensorflow()
    train_run(list(data), out, cfg, tcfg, resume=resume, recipe=base.name)
    print(f"run written to {out}")
