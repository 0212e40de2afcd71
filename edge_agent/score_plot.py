"""Score a long recording window by window, and draw the scores over time (`score --plot`).

Every file is cut into windows of the bundle's clip length starting every `hop` seconds (the
last partial window is dropped; a file shorter than one window is one looped window), each
window is scored through the device path, and `plot_series` draws the scores with the section's
threshold. matplotlib is imported only here and only then (the `plot` extra), so a Pi that
never plots does not need it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .audio import MIN_SECONDS, fit_length, read_wav, resample
from .errors import EdgeAgentError, FieldError
from .scorer import Scorer, WindowScore


@dataclass(frozen=True)
class Series:
    """One file's windowed scores for the plot."""

    label: str
    section: str
    starts: list[float]  # window start, seconds into the file
    scores: list[float]
    threshold: float


def window_starts(n_samples: int, window: int, hop: int) -> list[int]:
    """Start samples of the full windows of a recording (one window when it is shorter)."""
    if hop <= 0:
        raise FieldError("hop", f"expected a positive number of seconds, got {hop}")
    if n_samples <= window:
        return [0]
    return list(range(0, n_samples - window + 1, hop))


def score_windows(
    scorer: Scorer, path: Path, section: str, hop_s: float, channel: int | None
) -> tuple[list[float], list[WindowScore]]:
    """(start seconds, WindowScore) for every `hop_s`-spaced window of one file."""
    spec = scorer.spec
    x, rate = read_wav(path, channel)
    x = resample(x, rate, spec.sample_rate)
    n = spec.clip_samples
    starts = window_starts(x.size, n, round(hop_s * spec.sample_rate))
    results = []
    for st in starts:
        w = fit_length(x[st:st + n], n, int(MIN_SECONDS * spec.sample_rate), path)
        results.append(scorer.score(w, section))
    return [st / spec.sample_rate for st in starts], results


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
