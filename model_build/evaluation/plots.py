"""Evaluation plots: ROC curves per section and domain, score histograms per domain.

One PNG per section and kind, so a reviewer can open exactly the machine that looks wrong.
matplotlib runs with the Agg backend (no display on a build server); it is imported lazily so
importing `model_build.evaluation.evaluate` stays cheap.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from model_build.data.clip import Clip
from model_build.evaluation.metrics import MetricError, roc_curve

_COLOURS = {"source": "tab:blue", "target": "tab:orange", "mixed": "tab:gray"}


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _by_section(records: Sequence[Clip]) -> dict[str, NDArray[np.intp]]:
    out: dict[str, list[int]] = {}
    for i, c in enumerate(records):
        out.setdefault(c.section_id, []).append(i)
    return {k: np.asarray(v) for k, v in sorted(out.items())}


def plot_roc(
    out_dir: Path, records: Sequence[Clip], scores: NDArray[Any], max_fpr: float = 0.1
) -> list[Path]:
    """`roc_<section>.png` per labelled section: one curve per domain, the pAUC range shaded."""
    plt = _pyplot()
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for sec, idx in _by_section(records).items():
        clips = [records[i] for i in idx]
        if any(c.label is None for c in clips):
            continue
        y = np.array([c.is_anomaly for c in clips])
        if y.all() or not y.any():  # one class: no ROC curve exists
            continue
        dom = np.array([c.domain or "" for c in clips])
        s = np.asarray(scores, dtype=np.float64)[idx]
        fig, ax = plt.subplots(figsize=(4.5, 4.5))
        for d in ("source", "target", "mixed"):
            m = np.ones_like(y) if d == "mixed" else dom == d
            try:
                fpr, tpr, _ = roc_curve(y[m], s[m])
            except MetricError:
                continue
            ax.plot(fpr, tpr, color=_COLOURS[d], label=d, lw=1.5 if d == "mixed" else 1.0)
        ax.axvspan(0, max_fpr, color="0.9", zorder=0)
        ax.plot([0, 1], [0, 1], ":", color="0.6", lw=0.8)
        ax.set(
            xlabel="false positive rate",
            ylabel="true positive rate",
            title=sec,
            xlim=(0, 1),
            ylim=(0, 1.01),
        )
        ax.legend(loc="lower right")
        path = out_dir / f"roc_{sec}.png"
        fig.tight_layout()
        fig.savefig(path, dpi=80)
        plt.close(fig)
        written.append(path)
    return written


def plot_histograms(
    out_dir: Path,
    records: Sequence[Clip],
    scores: NDArray[Any],
    thresholds: Mapping[str, float] | None = None,
) -> list[Path]:
    """`hist_<section>.png` per section: normal vs anomalous scores per domain, threshold line."""
    plt = _pyplot()
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for sec, idx in _by_section(records).items():
        clips = [records[i] for i in idx]
        s = np.asarray(scores, dtype=np.float64)[idx]
        domains = sorted({c.domain or "unknown" for c in clips})
        fig, axes = plt.subplots(len(domains), 1, figsize=(5, 2.2 * len(domains)), squeeze=False)
        bins = np.linspace(s.min(), s.max() + 1e-9, 30)
        for ax, d in zip(axes[:, 0], domains, strict=True):
            for lab, colour in (("normal", "tab:green"), ("anomaly", "tab:red"), (None, "0.5")):
                v = [
                    x
                    for c, x in zip(clips, s, strict=True)
                    if (c.domain or "unknown") == d and c.label == lab
                ]
                if v:
                    ax.hist(v, bins=bins, alpha=0.6, color=colour, label=lab or "unlabelled")
            thr = (thresholds or {}).get(sec)
            if thr is not None and np.isfinite(thr):
                ax.axvline(thr, color="k", ls="--", lw=1, label="threshold")
            ax.set_title(f"{sec} ({d})", fontsize=9)
            ax.legend(fontsize=7)
        axes[-1, 0].set_xlabel("anomaly score")
        path = out_dir / f"hist_{sec}.png"
        fig.tight_layout()
        fig.savefig(path, dpi=80)
        plt.close(fig)
        written.append(path)
    return written
