"""The tables the scoring studies print: per row, mixed AUC per family, mean, worst, pAUC;
and a leave-one-family-out choice among rows.

Shared by `component_candidates.py` and `deviation_scoring.py`: both score the cached cells of
`quality.py` (family x size x seed) under several rows (systems, candidates, variants) and
decide between rows the same way, on the families not scored.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import quality as q

Results = dict[str, dict[str, list[tuple[float, float]]]]
"""row -> family -> (mixed AUC, mixed pAUC) per seed, %."""


def add(res: Results, fam: str, test: Sequence[Any], scores: Mapping[str, np.ndarray]) -> None:
    """One cell's rows (test scores per row) into `res`."""
    for label, sc in scores.items():
        r = q.summary(test, sc)
        res.setdefault(label, {}).setdefault(fam, []).append(
            (100 * r["auc"]["mixed"], 100 * r["pauc"]["mixed"])
        )


def mean_auc(res: Results, fams: Sequence[str]) -> dict[str, dict[str, float]]:
    """row -> family -> mixed AUC, mean over seeds."""
    return {lab: {f: float(np.mean([a for a, _ in v[f]])) for f in fams} for lab, v in res.items()}


def table(res: Results, fams: Sequence[str]) -> list[str]:
    """Markdown: per row, mixed AUC per family (mean over seeds), their mean and worst, and
    mixed pAUC (mean over seeds and families)."""
    mean = mean_auc(res, fams)
    lines = [
        "| row | " + " | ".join(fams) + " | mean | worst | pAUC |",
        "|---|" + "---|" * (len(fams) + 3),
    ]
    for label, per in res.items():
        vals = [mean[label][f] for f in fams]
        pauc = np.mean([np.mean([p for _, p in per[f]]) for f in fams])
        lines.append(
            f"| {label} | "
            + " | ".join(f"{v:.1f}" for v in vals)
            + f" | {np.mean(vals):.1f} | {min(vals):.1f} | {pauc:.1f} |"
        )
    return lines


def lofo(res: Results, fams: Sequence[str], choices: Mapping[str, str], base: str) -> list[str]:
    """Markdown: for each family, the choice (name -> its row) with the best mean mixed AUC
    over the OTHER families, and its row on the family left out next to the `base` row."""
    mean = mean_auc(res, fams)
    lines = [
        "| left out | chosen on the others | base | with it | gain |",
        "|---|---|---|---|---|",
    ]
    for f in fams:
        others = [g for g in fams if g != f]
        pick = max(choices, key=lambda c: np.mean([mean[choices[c]][g] for g in others]))
        b, w = mean[base][f], mean[choices[pick]][f]
        lines.append(f"| {f} | {pick} | {b:.1f} | {w:.1f} | {w - b:+.1f} |")
    return lines
