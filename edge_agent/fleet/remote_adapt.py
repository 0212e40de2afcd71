"""The remote `tune` and `calibrate` commands: new bundle versions written on the device.

Both write a version exactly as their local commands do (`bundle.write_adapted_version`: the
same models, one section's backend changed, `parent_version` set, the signed origin carried
along), so `rollback` undoes them and a device with trusted keys still loads them; the agent's
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

import dataclasses
from typing import Any

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
    return {"version": int(vdir_name), "model_version_before": before, "model_version": expected,
            "running": ctx.control.running_version(), "healthy": ok}


def tune(ctx: Context, raw: dict[str, Any]) -> dict[str, Any]:
    from edge_agent.adaptation.tuning import replay_windows, tune_threshold
    from edge_agent.bundle.load import load_bundle
    from edge_agent.bundle.versions import write_adapted_version
    from edge_agent.runtime.history import read_history

    a = Args("tune", raw, ("monitor", "false_alarms_per_day", "exclude_alarm_periods",
                           "min_windows", "min_hours", "allow_anomalous_history"))
    monitors = ctx.control.monitors()
    name, section = a.monitor(monitors)
    budget = a.number("false_alarms_per_day", ge=0)
    exclude = a.flag("exclude_alarm_periods")
    allow_anomalous = a.flag("allow_anomalous_history")
    min_windows = a.integer("min_windows", 50, ge=1)
    min_hours = a.number("min_hours", 1.0, ge=0)
    ms = _monitor_status(ctx, name)
    if ms.get("threshold_override") is not None:
        raise FleetError(f"tune: monitor {name} has decision.threshold "
                         f"{ms['threshold_override']} in its config, which overrides the "
                         "bundle's threshold; tuning the bundle would change nothing")
    if not ms["history"]:
        raise FleetError(f"tune: monitor {name} keeps no score history (history.enabled)")
    before = ctx.control.running_version()
    b = load_bundle(ctx.control.bundle_root(), trusted=ctx.trusted)
    old = b.backend(section)
    h = replay_windows(read_history(ms["history"]), exclude, allow_anomalous)
    k, n, clear, hop = int(ms["k"]), int(ms["n"]), int(ms["clear_after"]), float(
        ms["hop_seconds"])
    t = tune_threshold(h.scores, hop=hop, k=k, n=n, clear_after=clear,
                       alarms_per_day=budget, current_threshold=old.threshold,
                       min_windows=min_windows, min_seconds=min_hours * 3600.0)
    out: dict[str, Any] = {
        "monitor": name, "section": section, "shared_with": shared_with(monitors, name),
        "old_threshold": old.threshold,
        "new_threshold": t.threshold, "alarms_per_day_old": t.current_alarms_per_day,
        "alarms_per_day_new": t.alarms_per_day, "history_windows": t.windows,
        "history_days": t.days, "history_notes": list(h.notes)}
    if t.threshold == old.threshold:
        return {**out, "changed": False, "version": b.version, "model_version": before}
    backends = {**b.backends, section: dataclasses.replace(old, threshold=t.threshold)}
    record = {"section": section, "false_alarms_per_day": budget,
              "old_threshold": old.threshold, "new_threshold": t.threshold,
              "replayed_alarms_old": t.current_alarms, "replayed_alarms_new": t.alarms,
              "history_windows": t.windows, "history_days": round(t.days, 6), "k": k, "n": n,
              "clear_after": clear, "hop": hop, "exclude_alarm_periods": exclude,
              "allow_anomalous_history": allow_anomalous, "remote": True}
    vdir = write_adapted_version(b, backends, "tuning", record, ctx.seal_key())
    return {**out, "changed": True, **_finish(ctx, vdir.name, before)}


def calibrate(ctx: Context, raw: dict[str, Any]) -> dict[str, Any]:
    from edge_agent.adaptation.clips import Progress, file_clips
    from edge_agent.adaptation.sections import MODES, THRESHOLD_RULES, calibrated_section
    from edge_agent.bundle.versions import write_adapted_version
    from edge_agent.runtime.scorer import Scorer, stack_embeddings

    a = Args("calibrate", raw, ("monitor", "files", "mode", "percentile", "rule"))
    monitors = ctx.control.monitors()
    name, section = a.monitor(monitors)
    mode = choice("calibrate: args.mode", a.string("mode", "replace"), MODES)
    rule = choice("calibrate: args.rule", a.string("rule", "max"), THRESHOLD_RULES)
    percentile = a.number("percentile", 90.0, gt=0, le=100)
    names = a.names("files")
    if names is None:
        paths = recordings_of(ctx.recordings, name)
        if not paths:
            raise FleetError(f"calibrate: no recordings of monitor {name} on this device "
                             "(send `record` commands first)")
    else:
        paths = [ctx.recordings / f for f in names]
        missing = [p.name for p in paths if not p.is_file()]
        if missing:
            raise FleetError(f"calibrate: no recording(s) {', '.join(missing)} in "
                             f"{ctx.recordings}")
    before = ctx.control.running_version()
    scorer = Scorer.from_bundle(ctx.control.bundle_root(), 1, trusted=ctx.trusted)
    old = scorer.bundle.backend(section)
    clips = file_clips(paths, scorer.spec, progress=Progress(scorer.spec.sample_rate,
                                                             enabled=False))
    embs = stack_embeddings([scorer.embed(c.samples) for c in clips], scorer.dims)
    cal = calibrated_section(old, embs, scorer.bundle.backend_config, mode, percentile, rule)
    backends = {**scorer.bundle.backends, section: cal.backend}
    record = {"section": section, "mode": mode, "n_clips": len(clips), "percentile": percentile,
              "files": [p.name for p in paths], "remote": True, **cal.record()}
    vdir = write_adapted_version(scorer.bundle, backends, "calibration", record,
                                 ctx.seal_key())
    return {"monitor": name, "section": section, "shared_with": shared_with(monitors, name),
            "clips": len(clips),
            "old_threshold": cal.old_threshold, "new_threshold": cal.threshold,
            **_finish(ctx, vdir.name, before)}

