"""Where the errors are: AUC per fault severity (or kind), per family of the quality suite.

    nice .venv/bin/python benchmarks/by_severity.py --out runs/quality

Every synthetic fault carries the severity its generator drew (model_build.synth: 0.05-1, most
of them mild; `synth.json` records it per clip). Reads the cached study cells of
`benchmarks/fusion_study.py` (N = 30 by default, 3 seeds) and, per family, scores the test clips
with the learned model alone, the dynamics alone and the shipped rule, then computes per
section the AUC of the normal test clips against the faulty ones of each severity band (both
domains together), averaged over sections and seeds. Prints the share of faults in each band
beside it. What it says: whether a family's shortfall is mild faults nobody hears or clear
faults a component misses. `--by kind`: the same per fault kind (every severity together).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fusion_study as fs
import quality as q

BANDS = ((0.0, 0.2), (0.2, 0.4), (0.4, 0.7), (0.7, 1.0))
"""Severity bands (the upper edge of the last one included)."""
RULES = ("model", "dynamics", f"lda@0.3/{fs.SHIPPED_RIDGE:g}")
MIN_FAULTS = 3
"""A section's band enters the mean only with at least this many faulty test clips."""


def _band(sev: np.ndarray, lo: float, hi: float) -> np.ndarray:
    mask: np.ndarray = (sev >= lo) & ((sev < hi) | (hi >= 1.0))
    return mask


def faults_of(out: Path, fam: str) -> dict[str, tuple[float, str]]:
    """File name -> (drawn severity, fault kind) of every faulty clip of the family's data."""
    meta = json.loads((out / "data" / fam / "synth.json").read_text())
    return {
        Path(c["file"]).name: (float(c["severity"]), str(c["kind"]))
        for c in meta["clips"]
        if c.get("severity") is not None
    }


def kind_table(out: Path, fam: str, size: int, seeds: list[int]) -> dict[str, dict[str, float]]:
    """{fault kind: {rule: mean AUC of the normal test clips against that kind's faults}}."""
    from edge_agent.scoring.fusion import auc

    info = faults_of(out, fam)
    rules = fs.rules(("model", *fs.CLASSICAL))
    per: dict[str, dict[str, list[float]]] = {}
    for seed in seeds:
        cell = fs.section_scores(out, fam, size, seed, 48)
        test = cell["test"]
        for key in (k for k in cell if k.endswith("|normal")):
            sec = key.split("|")[0]
            idx = cell[f"{sec}|test_idx"]
            lab = np.array([test[i].is_anomaly for i in idx])
            kind = np.array([info.get(Path(test[i].path).name, (0.0, ""))[1] for i in idx])
            for name in RULES:
                w = rules[name](cell[f"{sec}|normal"], cell[f"{sec}|pseudo"])
                scores = w @ cell[f"{sec}|test"]
                for k in sorted(set(kind[lab])):
                    hit = lab & (kind == k)
                    if hit.sum() >= MIN_FAULTS:
                        per.setdefault(k, {}).setdefault(name, []).append(
                            100 * auc(scores[~lab], scores[hit])
                        )
    return {k: {r: float(np.mean(v)) for r, v in rules_.items()} for k, rules_ in per.items()}


def family_table(out: Path, fam: str, size: int, seeds: list[int]) -> dict[str, Any]:
    """{rule: [mean AUC per band]} and the share of the test faults per band."""
    from edge_agent.scoring.fusion import auc

    sev_of = {name: sev for name, (sev, _) in faults_of(out, fam).items()}
    rules = fs.rules(("model", *fs.CLASSICAL))
    per: dict[str, list[list[float]]] = {r: [[] for _ in BANDS] for r in RULES}
    faults: list[float] = []
    for seed in seeds:
        cell = fs.section_scores(out, fam, size, seed, 48)
        test = cell["test"]
        for key in cell:
            if not key.endswith("|normal"):
                continue
            sec = key.split("|")[0]
            idx = cell[f"{sec}|test_idx"]
            lab = np.array([test[i].is_anomaly for i in idx])
            sev = np.array([sev_of.get(Path(test[i].path).name, 0.0) for i in idx])
            if seed == seeds[0]:
                faults.extend(sev[lab])
            for name in RULES:
                w = rules[name](cell[f"{sec}|normal"], cell[f"{sec}|pseudo"])
                scores = w @ cell[f"{sec}|test"]
                for b, (lo, hi) in enumerate(BANDS):
                    hit = lab & _band(sev, lo, hi)
                    if hit.sum() >= MIN_FAULTS:
                        per[name][b].append(100 * auc(scores[~lab], scores[hit]))
    f = np.asarray(faults)
    return {
        "auc": {r: [float(np.mean(v)) if v else float("nan") for v in per[r]] for r in RULES},
        "share": [float(100 * _band(f, lo, hi).mean()) for lo, hi in BANDS],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="benchmarks/quality.py's --out")
    ap.add_argument("--families", default=",".join(q.FAMILIES))
    ap.add_argument("--size", type=int, default=30)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--by", choices=("severity", "kind"), default="severity")
    args = ap.parse_args(argv)
    from model_build import quiet

    quiet.configure(verbose=False)
    seeds = [int(s) for s in args.seeds.split(",")]
    if args.by == "kind":
        print("| family | fault kind | " + " | ".join(RULES) + " |")
        print("|---|---|" + "---|" * len(RULES))
        for fam in (f for f in args.families.split(",") if f):
            for k, row in sorted(kind_table(args.out, fam, args.size, seeds).items()):
                print(f"| {fam} | {k} | " + " | ".join(f"{row[r]:.1f}" for r in RULES) + " |")
        return 0
    head = " | ".join(f"severity {lo:g}-{hi:g}" for lo, hi in BANDS)
    print(f"| family | rule | {head} |")
    print("|---|---|" + "---|" * len(BANDS))
    for fam in (f for f in args.families.split(",") if f):
        t = family_table(args.out, fam, args.size, seeds)
        print(
            f"| {fam} | share of the faults | "
            + " | ".join(f"{s:.0f} %" for s in t["share"])
            + " |"
        )
        for name in RULES:
            print(f"| | {name} | " + " | ".join(f"{v:.1f}" for v in t["auc"][name]) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
