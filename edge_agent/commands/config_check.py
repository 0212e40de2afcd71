"""`edge-agent config check`: validate a config file and show what the agent would run with."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

config_app = typer.Typer(no_args_is_help=True, help="Validate agent configuration files.")


@config_app.command("check")
def config_check_cmd(
    file: Annotated[Path, typer.Argument(help="Agent YAML config.")],
) -> None:
    """Validate FILE and print the effective configuration (secrets masked)."""
    from ..config import dump, load_config

    typer.echo(dump(load_config(file)), nl=False)
