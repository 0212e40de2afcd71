"""Where `calibrate`, `enrol` and `record` get their clips: the files of `--files`, or live
capture from the configured device, with progress on stderr (`edge_agent.adaptation.clips` does the
work).

`--monitor X` of a config whose monitors share one device opens that device exactly as
`edge-agent run` does (`shared_capture`: the capture group's lanes, so the same channel count)
and cuts the clips from X's lane. Why: opened with fewer channels (channel k needs k+1), a
multi-channel interface can map its channels differently (PulseAudio remaps 4 channels to a
3-channel layout), and the wiring check of docs/monitors.md recorded silence on channel 2 that
`run` hears.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_agent.adaptation.clips import Clip, Progress, capture_clips, file_clips
from edge_agent.config.agent import AgentConfig
from edge_agent.config.monitors import capture_groups
from edge_agent.config.sources import SourceSettings
from edge_agent.runtime.scorer import Scorer
from edge_agent.scoring.frontend import FrontendSpec
from edge_agent.sources import open_source


@dataclass(frozen=True)
class SharedCapture:
    """A device several monitors share, as `run` opens it, and the lane of the one wanted."""

    source: SourceSettings  # the capture group's source (`config.monitors.capture_groups`)
    lanes: tuple[int | None, ...]  # every monitor's channel on the device, as run opens it
    lane: int  # the index of the wanted monitor in `lanes`


def shared_capture(full: AgentConfig, monitor: str | None) -> SharedCapture | None:
    """The capture `monitor` shares with other monitors of `full` (the whole config, before
    `--monitor` picked one machine), or None when it has a source of its own."""
    if monitor is None or not full.monitors:
        return None
    for g in capture_groups(full.monitors):
        names = [m.name for m in g.monitors]
        if monitor in names and len(names) > 1:
            return SharedCapture(g.source, g.lanes, names.index(monitor))
    return None


def collect_clips(
    cfg: AgentConfig,
    spec: FrontendSpec,
    count: int,
    skip_unreadable: bool,
    retries: int,
    quiet: bool,
    shared: SharedCapture | None = None,
) -> list[Clip]:
    """All files of the files source, or `count` clips captured live, of `spec`'s length
    (`shared`: from that lane of a device opened as `run` opens it)."""
    progress = Progress(spec.sample_rate, enabled=not quiet)
    if cfg.source.kind == "files":
        return file_clips(
            cfg.source.files,
            spec,
            cfg.health,
            progress,
            skip_unreadable,
            channel=cfg.source.channel,
        )
    where = cfg.source.device or "the default input"
    if cfg.source.channel is not None:
        where = f"{where} channel {cfg.source.channel}"
    seconds = count * spec.clip_seconds
    progress.note(
        f"capturing {count} clips of {spec.clip_seconds:g} s from {where} ({seconds:g} s)"
    )
    if shared is None:
        return capture_clips(cfg.source, spec, count, cfg.health, progress, retries)
    src = open_source(shared.source, spec.sample_rate, lanes=shared.lanes)
    return capture_clips(
        cfg.source, spec, count, cfg.health, progress, retries, source=src, lane=shared.lane
    )


def embed_progress(scorer: Scorer, quiet: bool) -> Callable[[int, int], None]:
    """A progress line per embedded clip (`adaptation.service.Progress`): on a Pi embedding is
    seconds of work after the recording."""
    progress = Progress(scorer.spec.sample_rate, enabled=not quiet)
    return lambda i, n: progress.note(f"embedding clip {i}/{n}")


def progress_note(scorer: Scorer, quiet: bool) -> Callable[[str], None]:
    """A progress line before a long step (`adaptation.service.Note`: embedding the
    pseudo-anomalies that weigh the components)."""
    return Progress(scorer.spec.sample_rate, enabled=not quiet).note


def clip_origin(cfg: AgentConfig) -> dict[str, Any]:
    """Where the clips came from, for the manifest record of a calibration or enrolment."""
    if cfg.source.kind == "files":
        return {"files": [str(Path(f).resolve()) for f in cfg.source.files]}
    return {"device": cfg.source.device, "kind": cfg.source.kind}
