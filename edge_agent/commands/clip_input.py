"""Where `calibrate`, `enrol` and `record` get their clips: the files of `--files`, or live
capture from the configured device, with progress on stderr (`edge_agent.adaptation.clips` does the
work).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from edge_agent.adaptation.clips import Clip, Progress, capture_clips, file_clips
from edge_agent.config.agent import AgentConfig
from edge_agent.runtime.scorer import Scorer
from edge_agent.scoring.frontend import FrontendSpec


def collect_clips(cfg: AgentConfig, spec: FrontendSpec, count: int, skip_refused: bool,
                  retries: int, quiet: bool) -> list[Clip]:
    """All files of the files source, or `count` clips captured live, of `spec`'s length."""
    progress = Progress(spec.sample_rate, enabled=not quiet)
    if cfg.source.kind == "files":
        return file_clips(cfg.source.files, spec, cfg.health, progress, skip_refused,
                          channel=cfg.source.channel)
    where = cfg.source.device or "the default input"
    seconds = count * spec.clip_seconds
    progress.note(f"capturing {count} clips of {spec.clip_seconds:g} s from {where} "
                  f"({seconds:g} s)")
    return capture_clips(cfg.source, spec, count, cfg.health, progress, retries)


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
