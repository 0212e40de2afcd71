"""`edge-agent feedback ANSWER`: answer an alarm, `not-a-fault` or `confirmed`
(`edge_agent.adaptation.feedback`).

The command applies the answer itself, on the two files it changes: the alarm clip's sidecar
in the evidence folder, and for `not-a-fault` a new bundle version (the alarm's voting windows
join the section's normal references, the threshold is re-derived; `edge-agent calibrate
--rollback` undoes it). So it works whether the agent runs or not, without a broker: a running
agent reloads the version as it reloads a calibration, and publishes the answer to Home
Assistant from the sidecar. Which alarm: `--alarm FILE` (from `edge-agent evidence list`), else
the machine's latest (`--monitor` with several machines).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from edge_agent.commands import options as opt
from edge_agent.commands.evidence import Folder
from edge_agent.commands.runner import fields_as_flags


@fields_as_flags(answer="ANSWER")
def feedback_cmd(
    answer: Annotated[str, typer.Argument(help="not-a-fault or confirmed.", metavar="ANSWER")],
    alarm: Annotated[
        str | None,
        typer.Option(
            "--alarm",
            help="The alarm's clip file (edge-agent evidence list); "
            "default: the machine's latest alarm.",
            show_default=False,
        ),
    ] = None,
    config: opt.Config = None,
    bundle: opt.Bundle = None,
    monitor: opt.MonitorName = None,
    folder: Folder = None,
    threads: opt.Threads = None,
    json_out: opt.Json = False,
) -> None:
    """Answer an alarm: not-a-fault (teach the machine's normal) or confirmed (label it)."""
    from edge_agent.adaptation.feedback import apply_answer, find_clip, parse_answer
    from edge_agent.adaptation.service import Teach
    from edge_agent.commands.overrides import Flags, agent_config, required_monitor, trust
    from edge_agent.errors import ConfigError

    ans = parse_answer(answer)
    cfg = agent_config(config, Flags(bundle=bundle, threads=threads))
    where = folder if folder is not None else cfg.evidence.folder
    if not where:
        raise ConfigError(
            "evidence.folder: not set (give --config with an `evidence:` folder, or --folder)"
        )
    name = monitor
    if alarm is None and (cfg.monitors or cfg.section):
        name = required_monitor(cfg, monitor).name
    clip = find_clip(Path(where), name, alarm)
    out = apply_answer(
        cfg.bundle or None,
        clip,
        ans,
        trust(cfg),
        Teach(cfg.feedback.max_references, cfg.feedback.threshold_rule),
        "cli",
        cfg.threads,
    )
    if json_out:
        typer.echo(
            json.dumps(
                {
                    "alarm": out.clip.path.name,
                    "monitor": out.clip.monitor,
                    "repeated": out.repeated,
                    "answer": out.record,
                },
                indent=1,
            )
        )
        return
    typer.echo(out.summary())
    if out.change is not None:
        typer.echo(f"undo: edge-agent calibrate --bundle {cfg.bundle} --rollback")
