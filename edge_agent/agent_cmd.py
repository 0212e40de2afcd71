"""`edge-agent run` and `edge-agent config check`: CLI flags override the YAML file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

config_app = typer.Typer(no_args_is_help=True, help="Validate agent configuration files.")


def config_check_cmd(
    file: Annotated[Path, typer.Argument(help="Agent YAML config.")],
) -> None:
    """Validate FILE and print the effective configuration (secrets masked)."""
    from .config import dump, load_config

    cfg = load_config(file)
    typer.echo(dump(cfg), nl=False)


config_app.command("check")(config_check_cmd)


def run_cmd(
    config: Annotated[Path | None, typer.Option("--config", "-c", help="Agent YAML.")] = None,
    device: Annotated[
        str | None, typer.Option(help="Input device (name, substring, index).")
    ] = None,
    files: Annotated[
        list[Path] | None, typer.Option("--files", help="Replay WAV files/folders.")
    ] = None,
    stdin: Annotated[bool, typer.Option("--stdin", help="Raw PCM on stdin.")] = False,
    bundle: Annotated[str | None, typer.Option(help="Model bundle folder.")] = None,
    section: Annotated[
        str | None, typer.Option(help="Bundle section, e.g. fan_section_00.")
    ] = None,
    realtime: Annotated[
        bool | None, typer.Option("--realtime/--fast", help="File replay pace.")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="JSON lines and JSON logs.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="No per-window lines on stdout.")] = False,
) -> None:
    """Listen, score 10-second windows, raise alarms; runs until the source ends or SIGTERM."""
    import sys

    from .agent import Agent, setup_logging
    from .config import load_config

    ov: dict[str, Any] = {}
    if device is not None:
        ov["source.kind"], ov["source.device"] = "device", device
    if files:
        ov["source.kind"], ov["source.files"] = "files", [str(f) for f in files]
    if stdin:
        ov["source.kind"] = "stdin"
    if bundle is not None:
        ov["bundle"] = bundle
    if section is not None:
        ov["section"] = section
    if realtime is not None:
        ov["source.realtime"] = realtime
    if json_out:
        ov["log.json"] = True
    if quiet:
        ov["log.stdout"] = False
    cfg = load_config(config, ov)
    setup_logging(cfg.log.json, cfg.log.level)
    agent = Agent(cfg, stdin=sys.stdin.buffer if cfg.source.kind == "stdin" else None)
    raise typer.Exit(agent.run())
