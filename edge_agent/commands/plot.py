"""edge_agent.commands.plot: moved from edge_agent.runtime.offline."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge_agent.errors import EdgeAgentError


@dataclass(frozen=True)
class Series:
    """One file's windowed scores for the plot."""

    label: str
    section: str
    starts: list[float]  # window start, seconds into the file (scored windows only)
    scores: list[float]
    threshold: float
    faults: list[float] = field(default_factory=list)  # starts of sensor-fault windows


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
    fig, axes = plt.subplots(len(series), 1, figsize=(10, 2.6 * len(series) + 0.6), squeeze=False)
    for ax, s in zip(axes[:, 0], series, strict=True):
        t = np.asarray(s.starts) / 60.0
        y = np.asarray(s.scores)
        ax.plot(t, y, marker=".", lw=1, label="score (one window)")
        ax.axhline(
            s.threshold, color="tab:red", ls="--", lw=1, label=f"threshold {s.threshold:.3f}"
        )
        above = y > s.threshold
        if above.any():
            ax.plot(t[above], y[above], "o", color="tab:red", ms=4, label="above threshold")
        if s.faults:
            ax.plot(
                np.asarray(s.faults) / 60.0,
                np.full(len(s.faults), s.threshold),
                "x",
                color="tab:gray",
                ms=6,
                label="sensor fault (not scored)",
            )
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
