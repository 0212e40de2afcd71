"""`model-build`: synthetic data, training, evaluation and export.

TensorFlow is imported inside the commands that need it, so `model-build --help` and
`model-build synth` start fast.
"""

from __future__ import annotations

import typer

from edge_agent.cli_support import run_app

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Build the anomalous-sound model: synth, train, evaluate, export.",
)


@app.callback()
def _group() -> None:
    """Keep `model-build <command>` a command group even while only one command exists."""


# --- commands (each registered from its own module) ---
from .evaluate import evaluate_cmd  # noqa: E402

app.command("evaluate")(evaluate_cmd)

from .export import export_cmd  # noqa: E402

app.command("export")(export_cmd)

from .synth import synth_cmd  # noqa: E402

app.command("synth")(synth_cmd)

from .train import train_cmd  # noqa: E402

app.command("train")(train_cmd)


def main(argv: list[str] | None = None) -> None:
    run_app(app, argv)


if __name__ == "__main__":
    main()
