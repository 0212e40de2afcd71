"""Which classical component to add: candidates scored as a fourth component, five families.

    nice .venv/bin/python benchmarks/component_candidates.py --out runs/quality

Reads what `benchmarks/quality.py` and `benchmarks/fusion_study.py` cached under --out (the
default recipe's models, N = 30, seeds 0-2, and every section's standardised scores of the
model, band statistics and rhythm) and, per candidate, computes its features of the training,
test and pseudo-anomaly clips (numpy, from each clip's |STFT|; cached), its standardised scores
exactly as the backend fits a component (`fusion_study.component_z`), and the system with it
as a fourth component under the rule shipped when the search ran (anchor 0.3, ridge 0.5).
Prints, per candidate, the mixed AUC (DCASE harmonic mean over sections, mean over seeds) of
the candidate alone and of the system with it, per family, with the mean and the worst family.
This is how the dynamics component (edge_agent.scoring.classical) was chosen; the others are
what did not make it (BENCHMARKS.md "A third classical component").

`--base four` asks the next question: each candidate as a FIFTH component, next to the
four shipped until 2026-12-05 (model, bands, rhythm, dynamics) under the shipped rule
(anchor 0.3, ridge 20). `--combos` adds SETS of candidates beside those four (`COMBOS`) and
decides leave-one-family-out: for each family, the set with the best mean over the OTHER
families, reported on the one left out next to the four alone. Modulation power, comodulation
(envelope correlation) and the fine spectrum were added so (BENCHMARKS.md "Three more
classical components"); `--sizes 10` repeats it with ten clips a section.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edge_agent.scoring.pseudo import DEFAULT_COUNT

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fusion_study as fs
import quality as q
import study_tables as st

from edge_agent.scoring.classical import (
    Comodulation,
    FineSpectrum,
    Modulation,
    band_edges,
    band_log_power,
    dynamics_from_magnitude,
)
from edge_agent.scoring.frontend import DEFAULT_SPEC

cache_key = q._cache_key  # noqa: SLF001 -- quality.py's cache keys, shared on purpose
pseudo_key = q._pseudo_key  # noqa: SLF001 -- so the clips' features are keyed alike

SEARCH_RULE = (0.3, 0.5)
"""(anchor, ridge) of the rule shipped when the candidates were compared."""
BASES = {
    "search": (("model", "bands", "rhythm"), SEARCH_RULE),
    "four": (("model", "bands", "rhythm", "dynamics"), (0.3, fs.SHIPPED_RIDGE)),
}
"""--base: the components beside each candidate and the (anchor, ridge) of their rule."""
COMBOS: dict[str, tuple[str, ...]] = {
    "+ modulation": ("modulation power",),
    "+ modulation + fine": ("modulation power", "fine spectrum"),
    "+ modulation + comodulation": ("modulation power", "envelope correlation"),
    "+ modulation + comodulation + fine (shipped)": (
        "modulation power",
        "envelope correlation",
        "fine spectrum",
    ),
    "+ all six candidates": (
        "dynamics, lags 1-8",
        "flatness + impulsiveness + flux",
        "modulation power",
        "envelope correlation",
        "skewness + kurtosis",
        "fine spectrum",
    ),
}
"""--combos: sets of candidates added together beside the --base components."""
EDGES = band_edges(DEFAULT_SPEC, 32)
MODULATION = Modulation().feature(DEFAULT_SPEC)
COMODULATION = Comodulation().feature(DEFAULT_SPEC)
FINE_SPECTRUM = FineSpectrum().feature(DEFAULT_SPEC)
"""Three candidates of the search became shipped components (2026-12-05): their features are
the device's own functions, so the search's figures and the shipped system's agree."""
LOG_EPS = 1e-10


def _log_bands(mag: np.ndarray) -> np.ndarray:
    return band_log_power(mag, EDGES).astype(np.float64)


def shape(mag: np.ndarray) -> np.ndarray:
    """Per band: spectral flatness (log arithmetic / geometric mean), impulsiveness (mean of
    the 16 loudest frames minus the median) and flux (mean |frame-to-frame change|)."""
    lp = np.log(np.square(mag, dtype=np.float64) + LOG_EPS)
    width = np.diff(EDGES)
    gm = np.add.reduceat(lp, EDGES[:-1], axis=-1)[:, : len(EDGES) - 1] / width
    lam = _log_bands(mag)
    flat = (lam - gm).mean(axis=0)
    imp = np.sort(lam, axis=0)[-16:].mean(axis=0) - np.median(lam, axis=0)
    flux = np.abs(np.diff(lam, axis=0)).mean(axis=0)
    return np.concatenate([flat, imp, flux])


def moments(mag: np.ndarray) -> np.ndarray:
    """Per band: skewness and log kurtosis of the log band power over frames."""
    lam = _log_bands(mag)
    zc = (lam - lam.mean(axis=0)) / (lam.std(axis=0) + 1e-6)
    return np.concatenate([(zc**3).mean(axis=0), np.log((zc**4).mean(axis=0))])


CANDIDATES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "dynamics (lags 1-32, shipped)": lambda m: dynamics_from_magnitude(
        m, EDGES, (1, 2, 4, 8, 16, 32)
    ),
    "dynamics, lags 1-8": lambda m: dynamics_from_magnitude(m, EDGES, (1, 2, 4, 8)),
    "flatness + impulsiveness + flux": shape,
    "modulation power": MODULATION.fn,
    "envelope correlation": COMODULATION.fn,
    "skewness + kurtosis": moments,
    "fine spectrum": FINE_SPECTRUM.fn,
}


def features(
    out: Path,
    fam: str,
    train: list[Any],
    test: list[Any],
    plans: dict[str, Any],
    *,
    candidates: Mapping[str, Callable[[np.ndarray], np.ndarray]] | None = None,
    cache_name: str = "candidates",
) -> dict[str, np.ndarray]:
    """Every candidate's features (`candidates`, default `CANDIDATES`: functions of a clip's
    |STFT|) of the train, test and planned pseudo-anomaly clips, keyed `<clip key>#<candidate>`,
    cached per family in `<fam>_<cache_name>.npz`."""
    candidates = CANDIDATES if candidates is None else candidates
    from edge_agent.audio.files import load_clip
    from edge_agent.scoring.frontend import stft_magnitude
    from edge_agent.scoring.pseudo import perturb

    cache = out / "features" / f"{fam}_{cache_name}.npz"
    store: dict[str, Any] = dict(np.load(cache)) if cache.exists() else {}
    n0 = len(store)
    jobs = [(cache_key(c.path), c, None) for c in [*train, *test]]
    for rows, items in plans.values():
        jobs += [
            (pseudo_key(train[rows[it.origin]], it), train[rows[it.origin]], it) for it in items
        ]
    for key, clip, item in jobs:
        if any(f"{key}#{name}" not in store for name in candidates):
            wave = load_clip(clip.path, DEFAULT_SPEC)
            if item is not None:
                wave = perturb(wave, item, DEFAULT_SPEC.sample_rate)
            mag = stft_magnitude(wave, DEFAULT_SPEC)
            for name, fn in candidates.items():
                store[f"{key}#{name}"] = fn(mag).astype(np.float32)
    if len(store) != n0:
        np.savez(cache, **store)
    return store


def _cell_scores(
    out: Path,
    fam: str,
    size: int,
    seed: int,
    base: tuple[str, ...],
    rule: tuple[float, float],
    combos: bool,
) -> tuple[list[Any], dict[str, np.ndarray]]:
    """One cell's test clips and, per row of the tables, their test scores: the --base
    system, each candidate alone, the base with each candidate and (`combos`) with each set."""
    from dataclasses import replace

    from edge_agent.scoring.backend import BackendConfig
    from edge_agent.scoring.fusion import choose_weights
    from model_build.evaluation.scores import section_rows

    cell = fs.section_scores(out, fam, size, seed, DEFAULT_COUNT, "default", base[1:])
    train, test = list(cell["train"]), list(cell["test"])
    plans = q.pseudo_plans(train, DEFAULT_COUNT, seed)
    store = features(out, fam, train, test, plans)
    config = replace(BackendConfig(), seed=seed)
    scores: dict[str, np.ndarray] = {}

    def put(label: str, idx: np.ndarray, values: np.ndarray) -> None:
        scores.setdefault(label, np.full(len(test), np.nan))[idx] = values

    def fused(idx: np.ndarray, zs: Sequence[tuple[np.ndarray, ...]], label: str) -> None:
        kinds = (*base, *[f"new{i}" for i in range(len(zs) - len(base))])
        ch = choose_weights([z[0] for z in zs], [z[1] for z in zs], kinds, *rule)
        put(label, idx, np.asarray(ch.weights) @ np.vstack([z[2] for z in zs]))

    for sec, (rows, items) in plans.items():
        idx = cell[f"{sec}|test_idx"]
        zn, zp, zt = cell[f"{sec}|normal"], cell[f"{sec}|pseudo"], cell[f"{sec}|test"]
        src, tgt = section_rows(train, sec)
        origins = np.asarray([it.origin for it in items])
        have = [(zn[i], zp[i], zt[i]) for i in range(len(base))]
        fused(idx, have, "(none: the base system)")
        new: dict[str, tuple[np.ndarray, ...]] = {}
        for name in CANDIDATES:
            tr = np.stack([store[f"{cache_key(c.path)}#{name}"] for c in train])
            te = np.stack([store[f"{cache_key(test[i].path)}#{name}"] for i in idx])
            pe = np.stack(
                [store[f"{pseudo_key(train[rows[it.origin]], it)}#{name}"] for it in items]
            )
            new[name] = tuple(fs.component_z(tr[src], tr[tgt], pe, origins, [te], config))
            put(f"{name} alone", idx, new[name][2])
            fused(idx, [*have, new[name]], f"system + {name}")
        for label, names in COMBOS.items() if combos else ():
            fused(idx, [*have, *[new[n] for n in names]], f"system {label}")
    return test, scores


def main(argv: list[str] | None = None) -> int:
    ap = st.parser(__doc__, sizes="30")
    ap.add_argument(
        "--base",
        choices=tuple(BASES),
        default="search",
        help="search: the three components of the search; four: model, bands, rhythm, dynamics",
    )
    ap.add_argument(
        "--combos", action="store_true", help="also sets of candidates, leave-one-family-out"
    )
    args = ap.parse_args(argv)
    from model_build import quiet

    quiet.configure(verbose=False)
    fams, sizes, seeds = st.cells(args)
    base, rule = BASES[args.base]
    for size in sizes:
        res = st.collect(
            fams,
            size,
            seeds,
            lambda f, n, s: _cell_scores(args.out, f, n, s, base, rule, args.combos),
        )
        print(f"\nN = {size}: mixed AUC, mean over seeds (pAUC mixed: its mean over families)")
        print("\n".join(st.table(res, fams)))
        if args.combos and len(fams) > 1:
            print("\nLeave-one-family-out choice of the set (mixed AUC):")
            choices = {c: f"system {c}" for c in COMBOS}
            print("\n".join(st.lofo(res, fams, choices, "(none: the base system)")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
