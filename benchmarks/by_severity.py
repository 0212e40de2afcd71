"""Where the errors are: AUC per fault severity (or kind), per family of the quality suite.

    nice .venv/bin/python benchmarks/by_severity.py --out runs/quality

Every synthetic fault carries the severity its generator drew (model_build.synth: 0.05-1, most
of them mild; `synth.json` records it per clip). Reads the cached study cells of
`benchmarks/fusion_study.py` (N = 30 by default, 3 seeds) and, per family, scores the test clips
with the learned model alone, the dynamics alone (each with its deviation score) and the shipped
rule (its standardised scores summed as they are, as before the one-sided evidence, and as
shipped, each through the Gaussian surprise), then computes per
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

import numpy as np

from edge_agent.scoring.fusion import Transform
from edge_agent.scoring.pseudo import DEFAULT_COUNT

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fusion_study as fs
import quality as q

BANDS = ((0.0, 0.2), (0.2, 0.4), (0.4, 0.7), (0.7, 1.0))
"""Severity bands (the upper edge of the last one included; labels sort in band order)."""
SHIPPED_RULE = f"lda@0.3/{fs.SHIPPED_RIDGE:g}"
COLUMNS: tuple[tuple[str, int, str, Transform], ...] = (
    ("model", 1, "model", "none"),
    ("dynamics", 1, "dynamics", "none"),
    ("system, scores summed as they are", 1, SHIPPED_RULE, "none"),
    ("system (shipped: each score's Gaussian surprise)", 1, SHIPPED_RULE, "surprise"),
)
"""(column, the cells' `deviation`, the fusion_study rule scored in it, the transform of the
standardised test scores before they are weighted: `BackendConfig.transform`)."""
RULES = tuple(c[0] for c in COLUMNS)
MIN_FAULTS = 3
"""A section's group enters the mean only with at least this many faulty test clips."""


def band_of(severity: float) -> str:
    """The severity band a fault falls in, as its column label."""
    for lo, hi in BANDS:
        if lo <= severity < hi or (hi >= 1.0 and severity >= lo):
            return f"{lo:g}-{hi:g}"
    raise ValueError(f"severity {severity} outside {BANDS}")


def faults_of(out: Path, fam: str) -> dict[str, tuple[float, str]]:
    """File name -> (drawn severity, fault kind) of every faulty clip of the family's data."""
    meta = json.loads((out / "data" / fam / "synth.json").read_text())
    return {
        Path(c["file"]).name: (float(c["severity"]), str(c["kind"]))
        for c in meta["clips"]
        if c.get("severity") is not None
    }


def grouped_auc(
    out: Path, fam: str, size: int, seeds: list[int], by: str
) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    """Per group of faults (`by`: "severity" band or fault "kind"): {group: {rule: the mean
    over sections and seeds of the AUC of the normal test clips against the group's faulty
    ones}}, and each group's share of the test faults (%)."""
    from edge_agent.scoring.fusion import auc, evidence

    group = {
        name: band_of(sev) if by == "severity" else kind
        for name, (sev, kind) in faults_of(out, fam).items()
    }
    rules = {d: fs.rules(fs.row_kinds(fs.CLASSICAL, d)) for d in {c[1] for c in COLUMNS}}
    per: dict[str, dict[str, list[float]]] = {}
    faults: list[str] = []
    for seed in seeds:
        cells = {
            d: fs.section_scores(out, fam, size, seed, DEFAULT_COUNT, "default", fs.CLASSICAL, d)
            for d in rules
        }
        first = cells[COLUMNS[0][1]]
        test = first["test"]
        for key in (k for k in first if k.endswith("|normal")):
            sec = key.split("|")[0]
            idx = first[f"{sec}|test_idx"]
            lab = np.array([test[i].is_anomaly for i in idx])
            grp = np.array([group.get(Path(test[i].path).name, "") for i in idx])
            if seed == seeds[0]:
                faults.extend(grp[lab])
            for name, d, rule, transform in COLUMNS:
                cell = cells[d]
                w = rules[d][rule](cell[f"{sec}|normal"], cell[f"{sec}|pseudo"])
                scores = w @ evidence(cell[f"{sec}|test"], transform)
                for g in sorted(set(grp[lab])):
                    hit = lab & (grp == g)
                    if hit.sum() >= MIN_FAULTS:
                        per.setdefault(g, {}).setdefault(name, []).append(
                            100 * auc(scores[~lab], scores[hit])
                        )
    table = {g: {r: float(np.mean(v)) for r, v in rows.items()} for g, rows in per.items()}
    share = {g: 100 * faults.count(g) / max(len(faults), 1) for g in table}
    return table, share


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
    print(
        f"| family | {'fault kind' if args.by == 'kind' else 'severity'} | share | "
        + " | ".join(RULES)
        + " |"
    )
    print("|---|---|---|" + "---|" * len(RULES))
    for fam in (f for f in args.families.split(",") if f):
        table, share = grouped_auc(args.out, fam, args.size, seeds, args.by)
        for g, row in sorted(table.items()):
            cells = " | ".join(f"{row[r]:.1f}" for r in RULES)
            print(f"| {fam} | {g} | {share[g]:.0f} % | {cells} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
