"""Where `calibrate`, `enrol` and `record` get their clips: the files of `--files`, or live
capture from the configured device, with progress on stderr (`edge_agent.clips` does the work).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..arrays import FloatArray
from ..backend import PseudoSet
from ..clips import Clip, Progress, capture_clips, file_clips
from ..config import AgentConfig
from ..frontend import FrontendSpec
from ..pseudo import section_pseudo
from ..scorer import Scorer, stack_embeddings


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


def embed_clips(scorer: Scorer, clips: list[Clip], quiet: bool) -> list[FloatArray]:
    """Device-path embeddings of the clips, one (N, D_i) array per bundle component (its
    models and classical features), with a progress line per clip: on a Pi this is seconds of
    work after the recording."""
    progress = Progress(scorer.spec.sample_rate, enabled=not quiet)
    out = []
    for i, c in enumerate(clips, 1):
        out.append(scorer.embed(c.samples))
        progress.note(f"embedding clip {i}/{len(clips)}")
    return stack_embeddings(out, scorer.dims)


def clips_pseudo(scorer: Scorer, clips: list[Clip], section: str, quiet: bool) -> (
    PseudoSet | None
):
    """The pseudo-anomalies of the new clips (edge_agent.pseudo.section_pseudo: the copies
    export makes of its training clips), embedded through the device path, when the bundle
    decides component weights per section (`weighting: pseudo`) and has more than one kind of
    component; else None (the weights stay as they are)."""
    config = scorer.bundle.backend_config
    if config.weighting != "pseudo" or len(set(scorer.bundle.kinds)) < 2 or len(clips) < 2:
        return None
    progress = Progress(scorer.spec.sample_rate, enabled=not quiet)
    progress.note(f"embedding {config.pseudo_count} pseudo-anomalies (perturbed copies of the "
                  "clips) to weigh the components")
    return section_pseudo(section, len(clips), lambda i: clips[i].samples, scorer.embed_many,
                          scorer.spec.sample_rate, config.pseudo_count, config.seed)


def clip_origin(cfg: AgentConfig) -> dict[str, Any]:
    """Where the clips came from, for the manifest record of a calibration or enrolment."""
    if cfg.source.kind == "files":
        return {"files": [str(Path(f).resolve()) for f in cfg.source.files]}
    return {"device": cfg.source.device, "kind": cfg.source.kind}
