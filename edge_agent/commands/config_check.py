"""`edge-agent config check`: validate a config file; say OK in one line, or show what the agent
would run with (`--show`).

Why one line: a passing check used to print the whole resolved config (about 90 lines) and
no verdict, so a person had to know that "no error line" meant OK, and a script had to
throw the output away. The resolved config is still there for whoever asks for it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

config_app = typer.Typer(no_args_is_help=True, help="Validate agent configuration files.")


@config_app.command("check")
def config_check_cmd(
    file: Annotated[Path, typer.Argument(help="Agent YAML config.")],
    show: Annotated[
        bool,
        typer.Option(
            "--show",
            help="Print the effective configuration (secrets masked) instead of the one OK line.",
        ),
    ] = False,
) -> None:
    """Validate FILE against its bundle; one `OK` line (--show: the effective configuration).

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
    bundle = load_bundle(cfg.bundle, trusted=load_trust(cfg.trusted_keys, cfg.state_folder))
    check_start(cfg, bundle, probe=True)
    if show:
        typer.echo(dump(cfg), nl=False)
        return
    machines = ", ".join(
        f"{m.name} ({m.section})" if m.name != m.section else m.name for m in cfg.monitor_list()
    )
    mqtt = f"MQTT {cfg.mqtt.host} as {cfg.mqtt.device_id}" if cfg.mqtt.enabled else "no MQTT"
    typer.echo(
        f"OK: {file}: {machines}; bundle version {bundle.version} "
        f"({bundle.model_version}); {mqtt} (--show prints the effective config)"
    )
