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
    """Validate FILE against its bundle and print the effective configuration (secrets masked).

    Refuses exactly what `edge-agent run --config FILE` refuses at start (the same validator:
    `config.read_config` and `config.check_start`), as one `error: ...` line, exit 2. With
    `trusted_keys`, a bundle version none of them vouches for is refused too
    (edge_agent.bundle.signing).
    """
    from edge_agent.bundle.load import load_bundle
    from edge_agent.bundle.signing import load_trust
    from edge_agent.config.load import dump, load_config
    from edge_agent.runtime.start import check_start

    cfg = load_config(file)
    check_start(cfg, load_bundle(cfg.bundle, trusted=load_trust(cfg.trusted_keys,
                                                              cfg.state_folder)),
                probe=True)
    typer.echo(dump(cfg), nl=False)
