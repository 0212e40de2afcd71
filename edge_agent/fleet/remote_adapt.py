"""The remote `tune` and `calibrate` commands: new bundle versions written on the device.

Both are the local commands' service (edge_agent.adaptation.service: the same steps and
record, a version written by `bundle.versions.write_adapted_version`, its origin carried and
sealed by this device), so `rollback` undoes them and a device with trusted keys loads them;
here only the arguments are checked and the reply built; the agent's
bundle poll then hot-reloads it, and the reply says whether it runs it (waited for, up to
`fleet.health_timeout_seconds`).

- `tune` (`monitor`, `false_alarms_per_day`, optional `exclude_alarm_periods`, `min_windows`,
  `min_hours`, `allow_anomalous_history`): `edge-agent tune` over the monitor's score history
  (the same windows: `tuning.replay_windows`, which refuses a mostly anomalous history; its
  notes on the timeline come back as `history_notes`), with the agent's own alarm rule and
  hop (from its status: edge_agent.fleet.control.MonitorStatus). No confirmation: the
  command is the confirmation; a threshold that does not change writes nothing.
- `calibrate` (`monitor`, optional `files`, `mode`, `percentile`, `rule`): `edge-agent
  calibrate` from clips recorded on the device by `record` (the recordings folder; `files`
  names some of them, default: all of that monitor's), so an operator can record the new
  condition and calibrate to it without logging in. Files are names inside the recordings
  folder only: a remote command cannot make the agent read other files. The calibrated
  section's new references and threshold serve every monitor scored by that section: the
  reply's `shared_with` names the other monitors that change with it (and `tune`'s too).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edge_agent.adaptation.service import (
    DecisionRule,
    Trust,
    TuneRequest,
    plan_tune,
    write_tuning,
)
from edge_agent.errors import choice
from edge_agent.fleet.args import Args
from edge_agent.fleet.context import Context, recordings_of
from edge_agent.fleet.control import MonitorStatus
from edge_agent.fleet.install import wait_running
from edge_agent.fleet.messages import FleetError


def _monitor_status(ctx: Context, name: str) -> MonitorStatus:
    """The agent's MonitorStatus of `name` (its alarm rule, hop and score history)."""
    ms = ctx.control.status()["monitors"].get(name)
    if ms is None:
        raise FleetError(f"tune: the agent has no monitor {name}")
    return ms


def shared_with(monitors: dict[str, str], name: str) -> list[str]:
    """The other monitors scored by `name`'s section: a section's backend is one for all of
    them, so calibrating or tuning it for `name` changes theirs too."""
    return sorted(m for m, s in monitors.items() if s == monitors[name] and m != name)


def _finish(ctx: Context, vdir_name: str, before: str) -> dict[str, Any]:
    """Wait for the agent to run the new version; the reply's common part."""
    from edge_agent.bundle.load import load_bundle

    root = ctx.control.bundle_root()
    expected = load_bundle(root, verify=False, version=int(vdir_name)).model_version
    ok = wait_running(ctx.control.running_version, expected, ctx.settings.health_timeout_seconds)
    return {
        "version": int(vdir_name),
        "model_version_before": before,
        "model_version": expected,
        "running": ctx.control.running_version(),
        "healthy": ok,
    }


def _trust(ctx: Context) -> Trust:
    return Trust(ctx.trusted, ctx.seal_key())


def tune(ctx: Context, raw: dict[str, Any]) -> dict[str, Any]:
    a = Args(
        "tune",
        raw,
        (
            "monitor",
            "false_alarms_per_day",
            "exclude_alarm_periods",
            "min_windows",
            "min_hours",
            "allow_anomalous_history",
        ),
    )
    monitors = ctx.control.monitors()
    name, section = a.monitor(monitors)
    budget = a.number("false_alarms_per_day", ge=0)
    exclude = a.flag("exclude_alarm_periods")
    allow_anomalous = a.flag("allow_anomalous_history")
    min_windows = a.integer("min_windows", 50, ge=1)
    min_hours = a.number("min_hours", 1.0, ge=0)
    ms = _monitor_status(ctx, name)
    if ms["threshold_override"] is not None:
        raise FleetError(
            f"tune: monitor {name} has decision.threshold "
            f"{ms['threshold_override']} in its config, which overrides the "
            "bundle's threshold; tuning the bundle would change nothing"
        )
    if not ms["history"]:
        raise FleetError(f"tune: monitor {name} keeps no score history (history.enabled)")
    before = ctx.control.running_version()
    trust = _trust(ctx)
    rule = DecisionRule(ms["k"], ms["n"], ms["clear_after"], ms["hop_seconds"])
    plan = plan_tune(
        ctx.control.bundle_root(),
        TuneRequest(
            section,
            Path(ms["history"]),
            rule,
            budget,
            exclude,
            allow_anomalous,
            min_windows,
            min_hours,
        ),
        trust,
    )
    t = plan.tuning
    out: dict[str, Any] = {
        "monitor": name,
        "section": section,
        "shared_with": shared_with(monitors, name),
        "old_threshold": plan.old_threshold,
        "new_threshold": t.threshold,
        "alarms_per_day_old": t.current_alarms_per_day,
        "alarms_per_day_new": t.alarms_per_day,
        "history_windows": t.windows,
        "history_days": t.days,
        "history_notes": list(plan.history.notes),
        "alarms_per_day_range_old": list(t.per_day_range(t.current_alarms)),
        "alarms_per_day_range_new": list(t.per_day_range(t.alarms)),  # 95 % Poisson
        "warning": t.short_history(),
    }
    change = write_tuning(plan, trust, origin={"remote": True})
    if change is None:
        return {**out, "changed": False, "version": plan.bundle.version, "model_version": before}
    return {**out, "changed": True, **_finish(ctx, change.vdir.name, before)}


def calibrate(ctx: Context, raw: dict[str, Any]) -> dict[str, Any]:
    from edge_agent.adaptation import service
    from edge_agent.adaptation.clips import Progress, enough_clips, file_clips
    from edge_agent.adaptation.sections import CALIBRATE_CLIPS, MODES, THRESHOLD_RULES

    a = Args("calibrate", raw, ("monitor", "files", "mode", "percentile", "rule"))
    monitors = ctx.control.monitors()
    name, section = a.monitor(monitors)
    how = service.Calibration(
        choice("calibrate: args.mode", a.string("mode", "replace"), MODES),
        a.number("percentile", 90.0, gt=0, le=100),
        choice("calibrate: args.rule", a.string("rule", "max"), THRESHOLD_RULES),
    )
    names = a.names("files")
    if names is None:
        paths = recordings_of(ctx.recordings, name)
        if not paths:
            raise FleetError(
                f"calibrate: no recordings of monitor {name} on this device "
                "(send `record` commands first)"
            )
    else:
        paths = [ctx.recordings / f for f in names]
        missing = [p.name for p in paths if not p.is_file()]
        if missing:
            raise FleetError(f"calibrate: no recording(s) {', '.join(missing)} in {ctx.recordings}")
    before = ctx.control.running_version()
    trust = _trust(ctx)
    scorer = service.open_scorer(ctx.control.bundle_root(), trust)
    scorer.bundle.backend(section)
    clips = file_clips(
        paths, scorer.spec, progress=Progress(scorer.spec.sample_rate, enabled=False)
    )
    change = service.calibrate(
        scorer,
        section,
        [c.samples for c in clips],
        trust,
        how,
        origin={"files": [p.name for p in paths], "remote": True},
    )
    return {
        "monitor": name,
        "section": section,
        "shared_with": shared_with(monitors, name),
        "clips": len(clips),
        "warning": enough_clips(len(clips), CALIBRATE_CLIPS, "calibrate", scorer.spec.clip_seconds),
        "old_threshold": change.old_threshold,
        "new_threshold": change.new_threshold,
        **_finish(ctx, change.vdir.name, before),
    }
