"""`edge-agent run`: the agent itself, with the config file's values overridden by flags."""

from __future__ import annotations

from typing import Annotated

import typer

from . import options as opt
from .overrides import Flags, agent_config


def run_cmd(
    paths: opt.Paths = None,
    config: opt.Config = None,
    device: opt.Device = None,
    from_files: opt.FromFiles = False,
    stdin: opt.Stdin = False,
    channel: opt.Channel = None,
    bundle: opt.Bundle = None,
    section: opt.Section = None,
    threads: opt.Threads = None,
    realtime: Annotated[
        bool | None,
        typer.Option("--realtime/--fast", help="File replay pace.", show_default=False),
    ] = None,
    json_out: opt.Json = False,
    quiet: opt.Quiet = False,
) -> None:
    """Listen, score 10-second windows, raise alarms; runs until the source ends or SIGTERM.

    --json: the events as JSON lines on stdout and JSON log lines on stderr.
    """
    import sys

    from ..agent import Agent, setup_logging
    from ..config import require_agent_fields

    flags = Flags(bundle=bundle, section=section, threads=threads, device=device,
                  from_files=from_files, paths=tuple(paths or ()), stdin=stdin, channel=channel,
                  realtime=realtime, json=json_out, quiet=quiet)
    cfg = require_agent_fields(agent_config(config, flags))
    setup_logging(cfg.log.json, cfg.log.level)
    agent = Agent(cfg, stdin=sys.stdin.buffer if cfg.source.kind == "stdin" else None)
    raise typer.Exit(agent.run())
