"""`model-build train`: the paper's recipe on one or more DCASE data roots
(`model_build.training.train`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, get_args

import typer

from edge_agent.commands.runner import fields_as_flags
from model_build.commands.options import DataRoots, Method, Quiet, Seed, Verbose
from model_build.training.model import ModelConfig
from model_build.training.train import DEFAULT_RUNS, TrainConfig

_MODEL = ModelConfig()
_TRAIN = TrainConfig()


@fields_as_flags()
def train_cmd(
    data: DataRoots,
    out: Annotated[
        Path, typer.Option("--out", help="Run directory to write (resumed if it exists).")
    ],
    epochs: Annotated[
        int, typer.Option("--epochs", min=1, help="Epochs (paper: 10).")
    ] = _TRAIN.epochs,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, help="Batch size (paper: 64).")
    ] = 64,
    learning_rate: Annotated[
        float, typer.Option("--learning-rate", help="Adam learning rate.")
    ] = 1e-3,
    width: Annotated[
        float, typer.Option("--width", help="Channel multiplier (1.0 = the paper's network).")
    ] = _MODEL.width,
    seed: Seed = 0,
    runs: Annotated[
        int, typer.Option("--runs", min=1, help="Models to train (an ensemble: model_<k> dirs).")
    ] = DEFAULT_RUNS,
    resume: Annotated[
        bool, typer.Option("--resume/--no-resume", help="Continue an existing run in --out.")
    ] = True,
    strict: Annotated[
        bool, typer.Option("--strict/--no-strict",
                           help="Stop at the first unreadable file (default: skip).")
    ] = False,
    inputs: Annotated[
        str, typer.Option("--inputs", help="Table 4: spectrogram | spectrum | logmel128 | both.")
    ] = "both",
    combine: Annotated[
        str, typer.Option("--combine", help="Table 4, with --inputs both: concat (the paper) "
                          "or add the branches' embeddings while training.")
    ] = _MODEL.combine,
    bias: Annotated[
        bool, typer.Option("--bias/--no-bias", help="Ablation: bias terms in every layer.")
    ] = False,
    trainable_centres: Annotated[
        bool, typer.Option("--trainable-centres/--no-trainable-centres",
                           help="Ablation: train the AdaCos centres.")
    ] = False,
    temporal_norm: Annotated[
        bool, typer.Option("--temporal-norm/--no-temporal-norm",
                           help="Temporal mean normalisation of the STFT.")
    ] = True,
    method: Method = None,
    featex: Annotated[
        bool, typer.Option("--featex/--no-featex",
                           help="FeatEx: the feature-exchange self-supervised task.")
    ] = _MODEL.featex,
    min_steps: Annotated[
        int, typer.Option("--min-steps", min=0,
                          help="At least this many optimiser steps (small data sets).")
    ] = _TRAIN.min_steps,
    augment: Annotated[
        bool, typer.Option("--augment/--no-augment",
                           help="Random time shift and gain of every clip.")
    ] = _TRAIN.augment,
    average: Annotated[
        float, typer.Option("--average", min=0.0, max=1.0,
                            help="Final weights = mean of the last fraction of the epochs' "
                            "weights (checkpoint averaging; 0 = the last epoch's).")
    ] = _TRAIN.average,
    quiet: Quiet = False,
    verbose: Verbose = False,
) -> None:
    """Train the embedding network(s) on the training clips of one or more DCASE roots."""
    from edge_agent.errors import choice
    from model_build import quiet as library_output
    from model_build.data.clip import DatasetError
    from model_build.training.model import COMBINES, INPUTS, Backend
    from model_build.training.train import train_run

    library_output.configure(verbose)

    for root in data:
        if not root.is_dir():
            raise DatasetError(f"{root}: not a directory (expected a DCASE data root)")
    cfg = ModelConfig(width=width, bias=bias, trainable_centres=trainable_centres,
                      inputs=choice("inputs", inputs, INPUTS),
                      combine=choice("combine", combine, COMBINES), temporal_norm=temporal_norm,
                      backend=choice("method", method or "cosine", get_args(Backend)),
                      featex=featex)
    tcfg = TrainConfig(epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
                       seed=seed, runs=runs, strict=strict, verbose=not quiet,
                       min_steps=min_steps, augment=augment, average=average)
    library_output.tensorflow()
    train_run(list(data), out, cfg, tcfg, resume=resume)
    print(f"run written to {out}")
