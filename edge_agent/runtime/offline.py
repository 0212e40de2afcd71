"""Score a long recording window by window, and draw the scores over time (`score --plot`).

Every file is cut into windows of the bundle's clip length starting every `hop` seconds (the
last partial window is dropped; a file shorter than one window is one looped window), each
window is checked like the agent checks it (`health.assess_window`) and, when the sensor was
fine, scored through the device path; `plot_series` draws the scores with the section's
threshold and marks the sensor-fault windows. matplotlib is imported only here and only then
(the `plot` extra), so a Pi that never plots does not need it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_agent.arrays import FloatArray
from edge_agent.audio.files import MIN_SECONDS, WavStream, fit_length
from edge_agent.config.runtime import HealthSettings
from edge_agent.errors import FieldError
from edge_agent.runtime.health import HealthReport, assess_window
from edge_agent.runtime.scorer import Scorer, WindowScore
from edge_agent.runtime.windows import Window, check_hop
from edge_agent.scoring.frontend import FrontendSpec


def window_starts(n_samples: int, window: int, hop: int) -> list[int]:
    """Start samples of the full windows of a recording (one window when it is shorter)."""
    if hop <= 0:
        raise FieldError("hop", f"expected a positive number of seconds, got {hop}")
    if n_samples <= window:
        return [0]
    return list(range(0, n_samples - window + 1, hop))


@dataclass(frozen=True)
class WindowResult:
    """One window of a file: its health and, when the sensor was fine, its score."""

    start_s: float  # seconds into the file
    health: HealthReport
    score: WindowScore | None  # None: a sensor fault, not scored (as the agent does)


def score_windows(
    scorer: Scorer,
    path: Path,
    section: str,
    hop_s: float,
    channel: int | None,
    health: HealthSettings = HealthSettings(),
) -> Iterator[WindowResult]:
    """Every `hop_s`-spaced window of one file, streamed (`audio.file_windows`): judged by the
    agent's health check (`health.assess_window`) and scored only when it passes, so a window
    is a sensor fault here exactly when `edge-agent run` would call it one."""
    spec = scorer.spec
    hop = max(1, round(check_hop(hop_s) * spec.sample_rate))
    for fw in file_windows(path, spec, hop, channel):
        h = assess_window(fw.window, health)
        yield WindowResult(
            fw.start_s, h, scorer.score(fw.window.samples, section) if h.ok else None
        )


@dataclass(frozen=True)
class FileWindow:
    """One window of a file: `spec.clip_samples` samples starting `start_s` into the file."""

    start_s: float
    window: Window  # index = 0, 1, 2... within the file; t_start = start_s
    looped: bool = False  # the file is shorter than a window: it was looped up to one


def file_windows(
    path: str | Path,
    spec: FrontendSpec,
    hop: int,
    channel: int | None = None,
    min_seconds: float = MIN_SECONDS,
) -> Iterator[FileWindow]:
    """Every full window of a file, `hop` samples apart (at `spec.sample_rate`), streamed.

    Cut by the agent's `Windower`, so `score` sees the windows `run` would; memory holds about
    two windows whatever the file's length. The last partial window is dropped; a file
    shorter than one window is one window, looped up to length (the `load_clip` policy).
    """
    from edge_agent.runtime.windows import Windower
    from edge_agent.sources.base import Block

    rate = spec.sample_rate
    n = spec.clip_samples
    if hop <= 0:
        raise FieldError("hop", f"expected a positive number of samples, got {hop}")
    windower = Windower(n, hop, rate)
    head: list[FloatArray] = []  # the first window's samples, kept in case the file is short
    pos = 0
    any_window = False
    for b in WavStream(path, channel, rate).blocks():
        if not any_window:
            head.append(b)
        for w in windower.push(Block(b, pos / rate, False, str(path))):
            any_window = True
            yield FileWindow(w.index * hop / rate, w)
        if any_window:
            head = []
        pos += b.size
    if not any_window:
        x = fit_length(np.concatenate(head), n, int(min_seconds * rate), path)
        yield FileWindow(0.0, Window(x, 0.0, 0, False, str(path)), looped=True)
