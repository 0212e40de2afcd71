"""`edge-agent tune --false-alarms-per-day X`: set a section's threshold from a false-alarm budget.

A plant engineer's question is "how often will it cry wolf?". The agent records every window's
score (`edge_agent.runtime.history`); this command replays the agent's own k-of-n rule over that
recorded normal operation (`edge_agent.adaptation.tuning`) and picks the lowest threshold that
would have raised at most X alarms per recorded day. It shows the evidence first (recorded span,
windows, the current threshold and its replayed alarms/day, the new one and its alarms/day, each
with its 95 % range: a rate from a few hours is a guess, and a history shorter than a day is a
`warning:` naming its hours) and the detection cost (how many of the last day's windows above
the current threshold would still be flagged; with `evidence.folder`, how many of the kept alarm
clips would not have alarmed), and asks before writing (`--yes`: do not ask; `--dry-run`: only
show).

The result is a NEW bundle version written like `edge-agent calibrate`'s
(`bundle.write_adapted_version`, kind `tuning`): the same models, every section's backend
unchanged except this section's threshold, `parent_version` set; `current` is swapped
atomically and a running agent reloads between windows. `--rollback` makes the parent version
current again (`bundle.rollback`, the same as `calibrate --rollback`).

The history and the rule come from the agent's config (`--config`): `history.folder` /
`outbox.path` (where the file is), `windows.hop`, `decision.k` / `n` / `clear_after`. A config
with `decision.threshold` set is refused: that override would hide the tuned bundle threshold.
So is a history in which most windows were anomalous when recorded (a fault all along: the
tuned threshold would hide it) unless `--allow-anomalous-history`; records with implausible
timestamps and a clock that went back are `warning:` lines (`tuning.replay_windows`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from edge_agent.commands import options as opt
from edge_agent.commands.overrides import (
    Flags,
    agent_config,
    required_bundle,
    required_monitor,
    sharing_note,
    trust,
)

if TYPE_CHECKING:
    from edge_agent.config.agent import AgentConfig
    from edge_agent.config.monitors import MonitorSettings

RECENT_SECONDS = 86400.0
""""Recent windows": those of the last recorded day."""


def _target(cfg: AgentConfig, monitor: str | None, budget: float | None) -> MonitorSettings:
    """The monitor to tune, or the one-line error: no budget given, unknown monitor, or a
    config threshold that overrides the bundle's (tuning the bundle would change nothing)."""
    from edge_agent.errors import ConfigError

    mon = required_monitor(cfg, monitor)
    if budget is None:
        raise ConfigError("--false-alarms-per-day: required (or --rollback)")
    if mon.decision.threshold is not None:
        raise ConfigError(
            f"decision.threshold: {mon.decision.threshold} in the config "
            "overrides the bundle's threshold, so tuning the bundle would change "
            "nothing; remove it first"
        )
    return mon


def tune_cmd(
    false_alarms_per_day: Annotated[
        float | None,
        typer.Option(
            "--false-alarms-per-day",
            help="Alarm budget: at most this many alarms per day of recorded normal operation.",
            show_default=False,
        ),
    ] = None,
    config: opt.Config = None,
    bundle: opt.Bundle = None,
    section: opt.Section = None,
    monitor: opt.MonitorName = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Write without asking.")] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show the replay only; write nothing.")
    ] = False,
    exclude_alarms: Annotated[
        bool,
        typer.Option(
            "--exclude-alarm-periods",
            help="Leave out windows recorded while "
            "the agent was in alarm (a history with a real failure in it).",
        ),
    ] = False,
    min_windows: Annotated[
        int,
        typer.Option("--min-windows", min=1, help="Refuse a history with fewer scored windows."),
    ] = 50,
    min_hours: Annotated[
        float,
        typer.Option(
            "--min-hours",
            min=0.0,
            help="Refuse a history covering less time (scored windows x hop).",
        ),
    ] = 1.0,
    allow_anomalous: Annotated[
        bool,
        typer.Option(
            "--allow-anomalous-history",
            help="Tune even when most windows "
            "were anomalous when recorded (only if the machine was healthy "
            "and the old threshold far too low).",
        ),
    ] = False,
    do_rollback: Annotated[
        bool, typer.Option("--rollback", help="Restore the previous bundle version and exit.")
    ] = False,
) -> None:
    """Threshold from a false-alarm budget over the recorded score history; or --rollback."""
    from edge_agent.adaptation import service
    from edge_agent.runtime.history import history_path

    cfg = agent_config(config, Flags(bundle=bundle, section=section))
    root = required_bundle(cfg)
    if do_rollback:
        before, after = service.undo(root, trust(cfg))  # never into a version it would refuse
        print(f"rolled back {root}: current version {before} -> {after}")
        return
    mon = _target(cfg, monitor, false_alarms_per_day)
    sec = mon.section
    assert false_alarms_per_day is not None  # _target said so
    d = mon.decision
    path = history_path(cfg.history, cfg.outbox.path, mon.name)
    checked = trust(cfg)
    plan = service.plan_tune(
        root,
        service.TuneRequest(
            sec,
            Path(path),
            service.DecisionRule(d.k, d.n, d.clear_after, cfg.windows.hop),
            false_alarms_per_day,
            exclude_alarms,
            allow_anomalous,
            min_windows,
            min_hours,
        ),
        checked,
    )
    h, t = plan.history, plan.tuning
    for odd in h.notes:
        typer.echo(f"warning: {path}: {odd}", err=True)
    flagged, still = plan.recent_flags(RECENT_SECONDS)
    print(
        f"history {path}: {h.recorded} windows recorded over {h.span_hours:.1f} h "
        f"({h.recorded - h.scores.size} left out: sensor faults"
        f"{', alarm periods' if exclude_alarms else ''}"
        f"{', implausible timestamps' if h.undated else ''}); {t.windows} scored windows = "
        f"{t.days * 24:.1f} h at hop {cfg.windows.hop:g} s"
    )
    print(f"rule: {d.k} of {d.n} windows raise, {d.clear_after} normal clear")
    now_lo, now_hi = t.per_day_range(t.current_alarms)
    new_lo, new_hi = t.per_day_range(t.alarms)
    print(
        f"current threshold {t.current_threshold:.5f}: {t.current_alarms} alarms replayed "
        f"= {t.current_alarms_per_day:.2f}/day (95 %: {now_lo:.2f}-{now_hi:.2f})"
    )
    print(
        f"new threshold     {t.threshold:.5f}: {t.alarms} alarms replayed "
        f"= {t.alarms_per_day:.2f}/day (95 %: {new_lo:.2f}-{new_hi:.2f}; budget "
        f"{false_alarms_per_day:g}/day)"
        + (" [the lowest candidate: the history's median score]" if t.at_minimum else "")
    )
    short = t.short_history()
    if short:
        typer.echo(f"warning: {path}: {short}", err=True)
    print(
        f"detection cost: last day {flagged} windows above the current threshold, {still} of "
        "them still above the new one"
    )
    if cfg.evidence.folder is not None:
        cost = service.evidence_cost(
            cfg.evidence.folder, sec, mon.name if cfg.monitors else None, d.k, t.threshold
        )
        print(
            f"detection cost: {len(cost.lost)} of {cost.clips} kept alarm clips of {sec} "
            f"({cfg.evidence.folder}) would not have alarmed at the new threshold (fewer "
            f"than {d.k} of their windows above it)"
            + (
                f": {', '.join(cost.lost[:5])}{' ...' if len(cost.lost) > 5 else ''}"
                if cost.lost
                else ""
            )
        )
    if dry_run:
        print("dry run: nothing written")
        return
    if not plan.changes:
        print("threshold unchanged: nothing written")
        return
    note = sharing_note(cfg, mon.name if cfg.monitors else None)
    if note:
        print(note)
    if not yes and not typer.confirm(
        f"write a new version of {root} with {sec} threshold {t.threshold:.5f}?", default=False
    ):
        print("nothing written")
        raise typer.Exit(1)
    change = service.write_tuning(plan, checked, origin={"monitor": mon.name})
    assert change is not None  # plan.changes
    print(
        f"tuned {sec}: threshold {change.old_threshold:.5f} -> {change.new_threshold:.5f}; "
        f"bundle version {change.version_from} -> {change.version} (undo: edge-agent tune "
        f"--bundle {root} --rollback)"
    )
