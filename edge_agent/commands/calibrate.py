"""`edge-agent calibrate`: adapt a section to a new condition from ten normal clips.

When a machine's settings or surroundings change (the paper's target domain), ten clips of the
new condition are captured from the microphone (or read with `--files`), embedded with the
bundle's OWN TFLite model through the one device path (`Scorer.embed`), and become the
section's target reference vectors; the threshold is recomputed from leave-one-out scores
(`edge_agent.adaptation.sections`). No training, no TensorFlow.

The result is a NEW bundle version (`bundle.write_adapted_version`: same model.tflite, new
backend.npz, manifest with a `calibration` record and `parent_version`), written complete and
then activated by an atomic swap of `current`; a killed calibration leaves the old version
current and intact. A running agent notices the new `current` and reloads between windows.

`--rollback` points `current` back at the version the current one was made from
(`parent_version`), or, for an exported version, at the next lower version number.
"""

from __future__ import annotations

from typing import Annotated

import typer

from edge_agent.commands import options as opt
from edge_agent.commands.overrides import (
    Flags,
    agent_config,
    required_bundle,
    required_section,
    sharing_note,
    trust,
)
from edge_agent.commands.runner import fields_as_flags


@fields_as_flags(rule="--threshold-rule")
def calibrate_cmd(
    paths: opt.Paths = None,
    bundle: opt.Bundle = None,
    section: opt.Section = None,
    config: opt.Config = None,
    device: opt.Device = None,
    from_files: opt.FromFiles = False,
    channel: opt.Channel = None,
    monitor: opt.MonitorName = None,
    count: opt.Count = 10,
    mode: Annotated[
        str,
        typer.Option(
            "--mode", help="replace: new clips replace the target references; append: add."
        ),
    ] = "replace",
    rule: Annotated[
        str,
        typer.Option(
            "--threshold-rule",
            help="max: max(old, held-out percentile); target: held-out percentile only.",
        ),
    ] = "max",
    percentile: opt.Percentile = 90.0,
    skip_unreadable: opt.SkipUnreadable = False,
    retries: opt.Retries = 3,
    do_rollback: Annotated[
        bool, typer.Option("--rollback", help="Restore the previous bundle version and exit.")
    ] = False,
    threads: opt.Threads = None,
    quiet: opt.Quiet = False,
) -> None:
    """Calibrate a section to a new condition (target domain) from normal clips; or --rollback."""
    from edge_agent.adaptation import service
    from edge_agent.adaptation.clips import enough_clips
    from edge_agent.adaptation.sections import CALIBRATE_CLIPS, MODES, THRESHOLD_RULES
    from edge_agent.commands.clip_input import (
        clip_origin,
        collect_clips,
        embed_progress,
        progress_note,
        shared_capture,
    )
    from edge_agent.errors import choice

    full = agent_config(config, Flags(bundle=bundle)) if monitor else None  # all machines
    note = sharing_note(full, monitor) if full is not None else None
    cfg = agent_config(
        config,
        Flags(
            bundle=bundle,
            section=section,
            threads=threads,
            device=device,
            from_files=from_files,
            paths=tuple(paths or ()),
            channel=channel,
            monitor=monitor,
        ),
    )
    root = required_bundle(cfg)
    if do_rollback:
        before, after = service.undo(root, trust(cfg))  # never into a version it would refuse
        print(f"rolled back {root}: current version {before} -> {after}")
        return
    sec = required_section(cfg)
    if note:
        print(note)
    how = service.Calibration(
        choice("mode", mode, MODES),
        percentile,  # before the recording
        choice("rule", rule, THRESHOLD_RULES),
    )
    checked = trust(cfg)
    # verified (signed, with trusted_keys); an unknown section fails now
    scorer = service.open_scorer(root, checked, cfg.threads)
    scorer.bundle.backend(sec)
    clips = collect_clips(
        cfg,
        scorer.spec,
        count,
        skip_unreadable,
        retries,
        quiet,
        shared_capture(full, monitor) if full is not None else None,
    )
    warning = enough_clips(len(clips), CALIBRATE_CLIPS, "calibrate", scorer.spec.clip_seconds)
    if warning:
        typer.echo(warning, err=True)
    change = service.calibrate(
        scorer,
        sec,
        [c.samples for c in clips],
        checked,
        how,
        origin=clip_origin(cfg),
        progress=embed_progress(scorer, quiet),
        note=progress_note(scorer, quiet),
    )
    print(
        f"calibrated {sec} with {len(clips)} clips ({mode}): threshold "
        f"{change.old_threshold:.5f} -> {change.new_threshold:.5f}; bundle version "
        f"{change.version_from} -> {change.version} (undo: edge-agent calibrate --bundle "
        f"{root} --rollback)"
    )
