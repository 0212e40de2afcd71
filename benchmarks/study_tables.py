"""The tables the scoring studies print: per row, mixed AUC per family, mean, worst, pAUC;
and a leave-one-family-out choice among rows.

Shared by `component_candidates.py` and `deviation_scoring.py`: both score the cached cells of
`quality.py` (family x size x seed) under several rows (systems, candidates, variants) and
decide between rows the same way, on the families not scored. `parser` and `cells` are the
options every study over that cache takes (`fusion_study.py` too).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import quality as q

Results = dict[str, dict[str, list[tuple[float, float]]]]
"""row -> family -> (mixed AUC, mixed pAUC) per seed, %."""
CellScores = Callable[[str, int, int], tuple[Sequence[Any], Mapping[str, np.ndarray]]]
"""(family, size, seed) -> the cell's test clips and, per row, their scores."""


def parser(description: str | None, sizes: str = "30,10") -> argparse.ArgumentParser:
    """The options of a study over quality.py's cache: where it is and which cells."""
    ap = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawTextHelpFormatter
    )
    ap.add_argument("--out", type=Path, required=True, help="benchmarks/quality.py's --out")
    ap.add_argument("--families", default=",".join(q.FAMILIES))
    ap.add_argument("--sizes", default=sizes, help="source training clips per section")
    ap.add_argument("--seeds", default="0,1,2")
    return ap


def cells(args: argparse.Namespace) -> tuple[list[str], list[int], list[int]]:
    """(families, sizes, seeds) of `parser`'s options."""
    return (
        [f for f in args.families.split(",") if f],
        [int(x) for x in args.sizes.split(",")],
        [int(x) for x in args.seeds.split(",")],
    )


StudyCell = Callable[[Path, str, int, int], tuple[Sequence[Any], Mapping[str, np.ndarray]]]
"""(quality.py's --out, family, size, seed) -> the cell's test clips and, per row, their scores."""


def studied(
    description: str | None, argv: list[str] | None, score: StudyCell
) -> Iterator[tuple[list[str], int, Results]]:
    """The main loop of a study over quality.py's cache: `parser`'s options parsed from `argv`,
    library noise quieted, and per size (families, size, every cell of that size scored by
    `score` into one Results), for the study to report."""
    args = parser(description).parse_args(argv)
    from model_build import quiet

    quiet.configure(verbose=False)
    fams, sizes, seeds = cells(args)
    for size in sizes:
        yield fams, size, collect(fams, size, seeds, lambda f, n, s: score(args.out, f, n, s))


def collect(fams: Sequence[str], size: int, seeds: Sequence[int], score: CellScores) -> Results:
    """Every (family, seed) cell of one size scored into one Results, a progress line each."""
    res: Results = {}
    for fam in fams:
        for seed in seeds:
            test, scores = score(fam, size, seed)
            add(res, fam, test, scores)
            print(f"{fam} n{size} s{seed} done", file=sys.stderr, flush=True)
    return res


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


def report(
    res: Results, fams: Sequence[str], size: int, choices: Mapping[str, str], base: str, what: str
) -> None:
    """Print one size's table and, with more than one family, the leave-one-family-out choice
    of `what` among `choices` (name -> row) against the `base` row."""
    print(f"\nN = {size}: mixed AUC, mean over seeds (pAUC mixed: its mean over families)")
    print("\n".join(table(res, fams)))
    if len(fams) > 1:
        print(f"\nLeave-one-family-out choice {what} (mixed AUC):")
        print("\n".join(lofo(res, fams, choices, base)))
