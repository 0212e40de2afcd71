"""`edge-agent record`: normal clips from the device, filed in the DCASE layout for training.

Recordings made on site are the training data of the next model, so they are written where
`model-build train --data OUT` finds them and with the names `model_build.data.dataset.scan` parses
(`edge_agent.audio.dcase`):

    OUT/<machine>/train/section_XX_<domain>_train_normal_NNNN[_<attrs>].wav

16-bit PCM WAV in the DCASE format (16 kHz, exactly 160 000 samples: the clip the model sees).
NNNN continues after the highest index already there for that section and domain, so
recording sessions add to a folder instead of overwriting it. Each file is written under a
temporary name and renamed when complete: an interrupted recording leaves no truncated clip for
training. The level check of `edge_agent.adaptation.clips` applies: silent, clipped or overflowing
clips are captured again, never filed as "normal". `--files` converts existing recordings (any rate,
first 10 s) into the layout the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edge_agent.commands import options as opt
from edge_agent.commands.overrides import Flags, agent_config, required_section
from edge_agent.commands.runner import fields_as_flags


@fields_as_flags()
def record_cmd(
    out: Annotated[Path, typer.Argument(help="Data root (DCASE layout is written inside).")],
    paths: opt.Paths = None,
    section: opt.Section = None,
    domain: Annotated[str, typer.Option("--domain", help="source | target.")] = "source",
    attrs: Annotated[
        str, typer.Option("--attrs", help="Attribute string, e.g. spd_1200_load_1.")
    ] = "",
    count: opt.Count = 10,
    config: opt.Config = None,
    device: opt.Device = None,
    from_files: opt.FromFiles = False,
    channel: opt.Channel = None,
    monitor: opt.MonitorName = None,
    skip_unreadable: opt.SkipUnreadable = False,
    retries: opt.Retries = 3,
    quiet: opt.Quiet = False,
) -> None:
    """Record normal clips into OUT/<machine>/train/ with DCASE names (for model-build train).

    --section: the section to file the clips under (default: the config's).
    """
    from edge_agent.audio.dcase import (
        check_attrs,
        check_domain,
        parse_section_id,
        write_train_clips,
    )
    from edge_agent.commands.clip_input import collect_clips, shared_capture
    from edge_agent.scoring.frontend import DEFAULT_SPEC

    cfg = agent_config(
        config,
        Flags(
            section=section,
            device=device,
            from_files=from_files,
            paths=tuple(paths or ()),
            channel=channel,
            monitor=monitor,
        ),
    )
    sec = required_section(cfg)
    parse_section_id(sec)  # every check before minutes of recording, not after
    check_domain(domain)
    check_attrs(attrs)
    spec = DEFAULT_SPEC  # the DCASE format: what model-build train reads, whatever the bundle
    clips = collect_clips(
        cfg,
        spec,
        count,
        skip_unreadable,
        retries,
        quiet,
        shared_capture(agent_config(config, Flags()), monitor) if monitor else None,
    )
    written = write_train_clips(
        out, sec, domain, attrs, [c.samples for c in clips], spec.sample_rate
    )
    print(f"recorded {len(written)} clips: {written[0]} .. {written[-1].name}")
