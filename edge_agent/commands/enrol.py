"""`edge-agent enrol`: add a section for a machine the model never saw, from N normal clips.

The embedding model is used as it is (it learned machine sounds in general; the paper's
auxiliary task is what makes its embeddings useful beyond the training machines). The N clips
are embedded through the device path and become the new section's SOURCE domain: k-means
centres fitted on the device (`backend.fit_section`, numpy only) and a cross-fitted
threshold, exactly the rule `model-build export` applies to the training sections. The other
sections are copied unchanged into a new bundle version (`bundle.write_adapted_version`);
`edge-agent calibrate --rollback` undoes an enrolment too.

At least `adapt.MIN_ENROL_CLIPS` (10) clips are required; BENCHMARKS.md "On-device
adaptation" shows how the threshold and the false alarm rate settle as N grows.
"""

from __future__ import annotations

from typing import Annotated

import typer

from edge_agent.commands import options as opt
from edge_agent.commands.overrides import Flags, agent_config, required_bundle, trust
from edge_agent.commands.runner import fields_as_flags


@fields_as_flags()
def enrol_cmd(
    paths: opt.Paths = None,
    bundle: opt.Bundle = None,
    section: opt.Section = None,
    count: opt.Count = 30,
    config: opt.Config = None,
    device: opt.Device = None,
    from_files: opt.FromFiles = False,
    channel: opt.Channel = None,
    monitor: opt.MonitorName = None,
    replace: Annotated[
        bool, typer.Option("--replace", help="Overwrite a section that already exists.")
    ] = False,
    percentile: opt.Percentile = 90.0,
    skip_unreadable: opt.SkipUnreadable = False,
    retries: opt.Retries = 3,
    threads: opt.Threads = None,
    quiet: opt.Quiet = False,
) -> None:
    """Enrol a new machine: a section fitted on the device from N normal clips.

    --section names the NEW section (a config's `section:` is the one the agent listens to).
    """
    from edge_agent.adaptation import service
    from edge_agent.adaptation.clips import enough_clips
    from edge_agent.adaptation.sections import ENROL_CLIPS, MIN_ENROL_CLIPS
    from edge_agent.audio.dcase import parse_section_id
    from edge_agent.commands.clip_input import (
        clip_origin,
        collect_clips,
        embed_progress,
        progress_note,
        shared_capture,
    )
    from edge_agent.errors import BundleError, FieldError

    cfg = agent_config(
        config,
        Flags(
            bundle=bundle,
            threads=threads,
            device=device,
            from_files=from_files,
            paths=tuple(paths or ()),
            channel=channel,
            monitor=monitor,
        ),
    )
    root = required_bundle(cfg)
    if section is None:
        raise FieldError("section", "required (the new section, e.g. press_section_00)")
    parse_section_id(section)
    if cfg.source.kind != "files" and count < MIN_ENROL_CLIPS:
        raise FieldError("count", f"need at least {MIN_ENROL_CLIPS} clips, got {count}")
    checked = trust(cfg)
    scorer = service.open_scorer(root, checked, cfg.threads)
    if section in scorer.bundle.backends and not replace:  # before the recording, not after
        raise BundleError(
            f"{root}: section {section!r} already exists; pass --replace to "
            "refit it (or calibrate it with edge-agent calibrate)"
        )
    clips = collect_clips(
        cfg,
        scorer.spec,
        count,
        skip_unreadable,
        retries,
        quiet,
        shared_capture(agent_config(config, Flags(bundle=bundle)), monitor) if monitor else None,
    )
    warning = enough_clips(len(clips), ENROL_CLIPS, "enrol", scorer.spec.clip_seconds)
    if warning and len(clips) >= MIN_ENROL_CLIPS:  # below it, service.enrol refuses
        typer.echo(warning, err=True)
    change = service.enrol(
        scorer,
        section,
        [c.samples for c in clips],
        checked,
        percentile,
        replace,
        origin=clip_origin(cfg),
        progress=embed_progress(scorer, quiet),
        note=progress_note(scorer, quiet),
    )
    print(
        f"enrolled {section} from {len(clips)} clips: {change.record['n_references']} "
        f"references, threshold {change.new_threshold:.5f}; bundle version "
        f"{change.version_from} -> {change.version} (undo: edge-agent calibrate --bundle "
        f"{root} --rollback)"
    )
