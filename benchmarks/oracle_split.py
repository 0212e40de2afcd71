"""How much of the per-section hindsight oracle is real? Choose on half the test clips, score
the other half.

    nice .venv/bin/python benchmarks/oracle_split.py --out runs/quality --sizes 30,10

`fusion_study.py`'s `oracle` row picks, per section, the group weighting (each of the model and
the classical components at 0, 1/2 or 1: 3^7 - 1 candidates) with the best AUC on that
section's TEST clips, and scores those same clips with it. It is a ceiling for any rule over
the same scores, and it was read as the headroom left in the weighting (81.1 against 76.6 for
the shipped rule at N = 30). But a maximum over two thousand candidates on ~100 labelled clips
also picks noise. This study splits each section's test clips in two halves (stratified by
label and domain, a seeded draw per section), picks the weighting on one half and scores the
other, both ways round, so the pick never sees the clips it is scored on:

- `rule`: the shipped per-section rule (anchor 0.3, ridge 20; normal clips and pseudo-anomalies
  only, no labels);
- `fixed`: every component weighs 1 (cosine and deviation scores half each);
- `model`: the learned model alone;
- `best of three`: per section, the one of `rule`, `fixed` and `model` that is best on the
  picking half (what a plant with about 25 labelled faults per section could choose);
- `oracle, picked on the other half`: the best of all candidates on the picking half;
- `oracle, hindsight`: the best candidate on the scored half itself (the `oracle` row's
  method, on half the clips).

Every row is scored on the same halves: per section, the mixed AUC of the scored half (both
domains' normal clips against both domains' faults); per cell the harmonic mean over sections
and over the two directions; mean over seeds. Reads the cells `fusion_study.py` cached (it
computes the missing ones from quality.py's cache).
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edge_agent.scoring.pseudo import DEFAULT_COUNT

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fusion_study as fs
import study_tables as st

RULE = (0.3, fs.SHIPPED_RIDGE)
ROWS = (
    "rule",
    "fixed",
    "model",
    "best of three",
    "oracle, picked on the other half",
    "oracle, hindsight",
)


def halves(labels: np.ndarray, target: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A boolean mask of half the clips, stratified by (label, domain)."""
    mask = np.zeros(labels.size, bool)
    for lab in (False, True):
        for dom in (False, True):
            idx = np.flatnonzero((labels == lab) & (target == dom))
            mask[rng.permutation(idx)[: idx.size // 2]] = True
    return mask


def harmonic(values: Sequence[float]) -> float:
    v = np.maximum(np.asarray(values, np.float64), 1e-9)
    return float(v.size / np.sum(1.0 / v))


def section_aucs(
    cell: dict[str, Any], sec: str, rows: Sequence[str], seed: int
) -> list[dict[str, float]]:
    """Per direction of the split: each row's AUC on the scored half of one section."""
    from edge_agent.scoring.fusion import choose_weights, groups_of

    test = cell["test"]
    idx = cell[f"{sec}|test_idx"]
    labels = np.array([test[i].is_anomaly for i in idx])
    target = np.array([test[i].domain == "target" for i in idx])
    zt = cell[f"{sec}|test"]
    n_groups = len(groups_of(rows))
    cands = np.stack(
        [
            fs.expand(w, rows)
            for w in itertools.product((0.0, 0.5, 1.0), repeat=n_groups)
            if max(w) > 0
        ]
    )
    rule = np.asarray(
        choose_weights(
            list(cell[f"{sec}|normal"]), list(cell[f"{sec}|pseudo"]), rows, *RULE
        ).weights
    )
    fixed = fs.expand(np.ones(n_groups), rows)
    model = fs.expand(np.eye(n_groups)[0], rows)
    named = np.stack([rule, fixed, model])
    rng = np.random.default_rng([seed, *sec.encode()])
    first = halves(labels, target, rng)

    def aucs(weights: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return fs.row_aucs((weights @ zt)[:, mask], labels[mask])

    out = []
    for pick, score in ((first, ~first), (~first, first)):
        on_pick, on_score = aucs(cands, pick), aucs(cands, score)
        three_pick, three_score = aucs(named, pick), aucs(named, score)
        out.append(
            {
                "rule": float(three_score[0]),
                "fixed": float(three_score[1]),
                "model": float(three_score[2]),
                "best of three": float(three_score[int(np.argmax(three_pick))]),
                "oracle, picked on the other half": float(on_score[int(np.argmax(on_pick))]),
                "oracle, hindsight": float(on_score.max()),
            }
        )
    return out


def cell_scores(cell: dict[str, Any], rows: Sequence[str], seed: int) -> dict[str, float]:
    """Per row: the harmonic mean over sections and both directions, %."""
    per: dict[str, list[float]] = {r: [] for r in ROWS}
    for key in cell:
        if key.endswith("|normal"):
            for d in section_aucs(cell, key.split("|")[0], rows, seed):
                for r in ROWS:
                    per[r].append(d[r])
    return {r: 100 * harmonic(v) for r, v in per.items()}


def main(argv: list[str] | None = None) -> int:
    args = st.parser(__doc__).parse_args(argv)
    from edge_agent.scoring.backend import BackendConfig
    from model_build import quiet

    quiet.configure(verbose=False)
    fams, sizes, seeds = st.cells(args)
    deviation = BackendConfig().deviation
    rows = fs.row_kinds(fs.CLASSICAL, deviation)
    for n in sizes:
        res: dict[str, dict[str, list[float]]] = {r: {} for r in ROWS}
        for fam in fams:
            for seed in seeds:
                cell = fs.section_scores(
                    args.out, fam, n, seed, DEFAULT_COUNT, "default", fs.CLASSICAL, deviation
                )
                for r, v in cell_scores(cell, rows, seed).items():
                    res[r].setdefault(fam, []).append(v)
                print(f"{fam} n{n} s{seed} done", file=sys.stderr, flush=True)
        print(f"\nN = {n}: AUC on the scored half (%), seeds {','.join(map(str, seeds))}\n")
        print("| row | " + " | ".join(fams) + " | mean | worst |")
        print("|---|" + "---|" * (len(fams) + 2))
        for r in ROWS:
            vals = [float(np.mean(res[r][f])) for f in fams]
            print(
                f"| {r} | "
                + " | ".join(f"{v:.1f}" for v in vals)
                + f" | {np.mean(vals):.1f} | {min(vals):.1f} |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
