"""Score a long recording window by window, and draw the scores over time (`score --plot`).

Every file is cut into windows of the bundle's clip length starting every `hop` seconds (the
last partial window is dropped; a file shorter than one window is one looped window), each
window is checked like the agent checks it (`health.assess_window`) and, when the sensor was
fine, scored through the device path; `plot_series` draws the scores with the section's
threshold and marks the sensor-fault windows. matplotlib is imported only here and only then
(the `plot` extra), so a Pi that never plots does not need it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .audio import file_windows
from .errors import EdgeAgentError, FieldError
from .health import HealthReport, HealthSettings, assess_window
from .scorer import Scorer, WindowScore
from .windows import check_hop


@dataclass(frozen=True)
class Series:
    """One file's windowed scores for the plot."""

    label: str
    section: str
    starts: list[float]  # window start, seconds into the file (scored windows only)
    scores: list[float]
    threshold: float
    faults: list[float] = field(default_factory=list)  # starts of sensor-fault windows


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
    scorer: Scorer, path: Path, section: str, hop_s: float, channel: int | None,
    health: HealthSettings = HealthSettings(),
) -> Iterator[WindowResult]:
    """Every `hop_s`-spaced window of one file, streamed (`audio.file_windows`): judged by the
    agent's health check (`health.assess_window`) and scored only when it passes, so a window
    is a sensor fault here exactly when `edge-agent run` would call it one."""
    spec = scorer.spec
    hop = max(1, round(check_hop(hop_s) * spec.sample_rate))
    for fw in file_windows(path, spec, hop, channel):
        h = assess_window(fw.window, health)
        yield WindowResult(fw.start_s, h, scorer.score(fw.window.samples, section) if h.ok
                           else None)


def pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend, or a one-line error naming the extra."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise EdgeAgentError(
            "--plot needs matplotlib: pip install 'listening-monitor[plot]' "
            "(or pip install matplotlib)"
        ) from None
    return plt


def plot_series(series: Sequence[Series], out: Path) -> None:
    """Score over time per file, its threshold dashed, windows above it marked."""
    plt = pyplot()
    fig, axes = plt.subplots(len(series), 1, figsize=(10, 2.6 * len(series) + 0.6),
                             squeeze=False)
    for ax, s in zip(axes[:, 0], series, strict=True):
        t = np.asarray(s.starts) / 60.0
        y = np.asarray(s.scores)
        ax.plot(t, y, marker=".", lw=1, label="score (one window)")
        ax.axhline(s.threshold, color="tab:red", ls="--", lw=1,
                   label=f"threshold {s.threshold:.3f}")
        above = y > s.threshold
        if above.any():
            ax.plot(t[above], y[above], "o", color="tab:red", ms=4, label="above threshold")
        if s.faults:
            ax.plot(np.asarray(s.faults) / 60.0, np.full(len(s.faults), s.threshold), "x",
                    color="tab:gray", ms=6, label="sensor fault (not scored)")
        ax.set_title(f"{s.label}  ({s.section})", fontsize=9)
        ax.set_ylabel("anomaly score")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
    axes[-1, 0].set_xlabel("minutes into the recording (window start)")
    fig.tight_layout()
    try:
        fig.savefig(out, dpi=110)
    except OSError as exc:
        raise EdgeAgentError(f"{out}: cannot write the plot ({exc.strerror})") from None
    finally:
        plt.close(fig)
