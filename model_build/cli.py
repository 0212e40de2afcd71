"""`model-build`: synthetic data, training, evaluation and export. This file only registers them.

Each command lives in `model_build.commands` and imports TensorFlow inside itself when it needs
it, so `model-build --help` and `model-build synth` start fast.
"""

from __future__ import annotations

import typer

from edge_agent.commands.runner import run_app
from model_build.commands.evaluate import evaluate_cmd
from model_build.commands.export import export_cmd
from model_build.commands.keygen import keygen_cmd
from model_build.commands.sign import sign_cmd
from model_build.commands.synth import synth_cmd
from model_build.commands.train import train_cmd

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Build the anomalous-sound model: synth, train, evaluate, export; sign bundles.",
)


@app.callback()
def _group() -> None:
    """Keep `model-build <command>` a command group even while only one command exists."""


app.command("evaluate")(evaluate_cmd)
app.command("export")(export_cmd)
app.command("keygen")(keygen_cmd)
app.command("sign")(sign_cmd)
app.command("synth")(synth_cmd)
app.command("train")(train_cmd)


def main(argv: list[str] | None = None) -> None:
    run_app(app, argv)


if __name__ == "__main__":
    main()
