"""`edge-agent run`: the agent itself, with the config file's values overridden by flags."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from edge_agent.commands import options as opt
from edge_agent.commands.overrides import Flags, agent_config

if TYPE_CHECKING:
    from edge_agent.events import Counters


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
    realtime: opt.Pace = None,
    skip_unreadable: opt.SkipUnreadable = False,
    json_out: opt.Json = False,
    quiet: opt.Quiet = False,
) -> None:
    """Listen, score 10-second windows, raise alarms; runs until the source ends or SIGTERM.

    --json: the events as JSON lines on stdout and JSON log lines on stderr.
    """
    import sys

    from edge_agent.agent import Agent, setup_logging
    from edge_agent.config.load import require_agent_fields

    flags = Flags(
        bundle=bundle,
        section=section,
        threads=threads,
        device=device,
        from_files=from_files,
        paths=tuple(paths or ()),
        stdin=stdin,
        channel=channel,
        realtime=realtime,
        skip_unreadable=skip_unreadable,
        json=json_out,
        quiet=quiet,
    )
    cfg = require_agent_fields(agent_config(config, flags))
    setup_logging(cfg.log.json, cfg.log.level)
    agent = Agent(cfg, stdin=sys.stdin.buffer if cfg.source.kind == "stdin" else None)
    code = agent.run()
    raise typer.Exit(code or failed_run(agent.counters))


def failed_run(counters: Counters) -> int:
    """1, with one `error:` line on stderr, when windows were cut and every one of them failed
    (`window_errors`): such a run scored nothing, and exit 0 would tell a script or a service
    manager that it worked. 0 otherwise (a window that is a sensor fault has not failed)."""
    errors, windows = counters["window_errors"], counters["windows"]
    if errors == 0 or errors < windows:
        return 0
    typer.echo(
        f"error: all {errors} windows failed (window_errors {errors}, scored "
        f"{counters['scored']}); the window_error lines above say why",
        err=True,
    )
    return 1
