"""Whether and which spectral stability to add: variants as an eighth component, five families.

    nice .venv/bin/python benchmarks/stability_variants.py --out runs/quality --sizes 30,10

The study behind the `stability` classical component (edge_agent.scoring.classical.Stability;
BENCHMARKS.md "Spectral stability"; in the default set since the wobble joined the pseudo-anomaly
plan). It measured the choice on the plan of its time, which it pins (48 copies of
pseudo.FIRST_KINDS). Reads what
`benchmarks/quality.py` and `benchmarks/fusion_study.py` cached under --out (the default
recipe's models and the standardised scores of the seven components shipped before it: the
model and six classical components, each with its deviation score) and, per variant, computes
the stability features of the training, test and pseudo-anomaly clips with the shipped
function (`stability_from_wave`, cached per family), their cosine and deviation scores exactly
as the backend fits a component (`fusion_study.component_z`), and the system with the variant
as an eighth component under the shipped rule (anchor 0.3, ridge 20; the two scores share the
component's group). Prints per variant the mixed AUC of the variant alone and of the system
with it, per family, with the mean and the worst family, and the leave-one-family-out choice
among none and the variants (for each family, the one with the best mean over the OTHER
families, reported on the family left out next to the system without any). Read the variant
alone beside the system with it: where it is far above, the per-section rule gives it too
little weight.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

from edge_agent.scoring.pseudo import FIRST_KINDS

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fusion_study as fs
import quality as q
import study_tables as st

from edge_agent.scoring.classical import Stability

BASE = ("bands", "rhythm", "dynamics", "modulation", "comodulation", "fine_spectrum")
"""The classical components shipped before the stability."""
RULE = (0.3, fs.SHIPPED_RIDGE)
DEFAULTS = "4096 / 1024, lags 1-4 (the defaults)"
VARIANTS: dict[str, Stability] = {
    DEFAULTS: Stability(),
    "2048 / 512, lags 1-4": Stability(n_fft=2048, hop=512),
    "8192 / 2048, lags 1-4": Stability(n_fft=8192, hop=2048),
    "4096 / 1024, lags 1-16": Stability(lags=(1, 2, 4, 8, 16)),
}
"""STFT length / hop (samples at 16 kHz) and frame lags of each variant."""
NONE = "(none: the seven components before)"


def features(
    out: Path, fam: str, train: list[Any], test: list[Any], plans: dict[str, Any]
) -> dict[str, np.ndarray]:
    """Every variant's features of the train, test and planned pseudo-anomaly clips, keyed
    `<clip key>#<variant>`, cached per family."""
    from edge_agent.audio.files import load_clip
    from edge_agent.scoring.frontend import DEFAULT_SPEC
    from edge_agent.scoring.pseudo import perturb

    fns = {name: v.feature(DEFAULT_SPEC).fn for name, v in VARIANTS.items()}
    cache = out / "features" / f"{fam}_stability_variants.npz"
    store: dict[str, Any] = dict(np.load(cache)) if cache.exists() else {}
    n0 = len(store)
    jobs = [(q._cache_key(c.path), c, None) for c in [*train, *test]]  # noqa: SLF001
    for rows, items in plans.values():
        jobs += [
            (q._pseudo_key(train[rows[it.origin]], it), train[rows[it.origin]], it)  # noqa: SLF001
            for it in items
        ]
    for key, clip, item in jobs:
        if any(f"{key}#{name}" not in store for name in fns):
            wave = load_clip(clip.path, DEFAULT_SPEC)
            if item is not None:
                wave = perturb(wave, item, DEFAULT_SPEC.sample_rate)
            for name, fn in fns.items():
                if f"{key}#{name}" not in store:
                    store[f"{key}#{name}"] = fn(wave)
    if len(store) != n0:
        np.savez(cache, **store)
    return store


def _cell_scores(out: Path, fam: str, size: int, seed: int) -> tuple[list[Any], dict[str, Any]]:
    """One cell's test clips and, per row, their scores: the seven components, each variant
    alone (its cosine and deviation scores, half each) and the seven with it."""
    from dataclasses import replace

    from edge_agent.scoring.backend import BackendConfig
    from edge_agent.scoring.fusion import choose_weights
    from model_build.evaluation.scores import section_rows

    cell = fs.section_scores(out, fam, size, seed, 48, "default", BASE, 1, kinds=FIRST_KINDS)
    rows = fs.row_kinds(BASE, 1)
    train, test = list(cell["train"]), list(cell["test"])
    plans = q.pseudo_plans(train, 48, seed, FIRST_KINDS)
    store = features(out, fam, train, test, plans)
    config = replace(BackendConfig(), seed=seed)
    scores: dict[str, np.ndarray] = {}

    def put(label: str, idx: np.ndarray, values: np.ndarray) -> None:
        scores.setdefault(label, np.full(len(test), np.nan))[idx] = values

    for sec, (members, items) in plans.items():
        idx = cell[f"{sec}|test_idx"]
        zn, zp, zt = cell[f"{sec}|normal"], cell[f"{sec}|pseudo"], cell[f"{sec}|test"]
        w = choose_weights(list(zn), list(zp), rows, *RULE).weights
        put(NONE, idx, np.asarray(w) @ zt)
        src, tgt = section_rows(train, sec)
        origins = np.asarray([it.origin for it in items])
        for name in VARIANTS:

            def rows_of(keys: list[str], name: str = name) -> np.ndarray:
                return np.stack([store[f"{k}#{name}"] for k in keys]).astype(np.float64)

            tr = rows_of([q._cache_key(c.path) for c in train])  # noqa: SLF001
            te = rows_of([q._cache_key(test[i].path) for i in idx])  # noqa: SLF001
            pe = rows_of([q._pseudo_key(train[members[it.origin]], it) for it in items])  # noqa: SLF001
            z = fs.component_z(tr[src], tr[tgt], pe, origins, [te], config, True)
            # z: cosine (normal, pseudo, test), then deviation (normal, pseudo, test)
            kinds = (*rows, "stability", "stability")
            ch = choose_weights([*zn, z[0], z[3]], [*zp, z[1], z[4]], kinds, *RULE)
            put(f"system + {name}", idx, np.asarray(ch.weights) @ np.vstack([zt, z[2], z[5]]))
            put(f"{name} alone", idx, 0.5 * (z[2] + z[5]))
    return test, scores


def main(argv: list[str] | None = None) -> int:
    for fams, size, res in st.studied(__doc__, argv, _cell_scores):
        choices = {"none": NONE, **{v: f"system + {v}" for v in VARIANTS}}
        st.report(res, fams, size, choices, NONE, "of the variant")
    return 0


if __name__ == "__main__":
    sys.exit(main())
