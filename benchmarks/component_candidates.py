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

`--base shipped` asks the next question: each candidate as a FIFTH component, next to the
shipped four (the dynamics among them) under the shipped rule (anchor 0.3, ridge 20).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fusion_study as fs
import quality as q

from edge_agent.scoring.classical import band_edges, band_log_power, dynamics_from_magnitude
from edge_agent.scoring.frontend import DEFAULT_SPEC

cache_key = q._cache_key  # noqa: SLF001 -- quality.py's cache keys, shared on purpose
pseudo_key = q._pseudo_key  # noqa: SLF001 -- so the clips' features are keyed alike

SEARCH_RULE = (0.3, 0.5)
"""(anchor, ridge) of the rule shipped when the candidates were compared."""
BASES = {
    "search": (("model", "bands", "rhythm"), SEARCH_RULE),
    "shipped": (("model", "bands", "rhythm", "dynamics"), (0.3, fs.SHIPPED_RIDGE)),
}
"""--base: the components beside each candidate and the (anchor, ridge) of their rule."""
EDGES = band_edges(DEFAULT_SPEC, 32)
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


def modulation_power(mag: np.ndarray) -> np.ndarray:
    """Per band: log power of the envelope's spectrum in 6 octaves, 0.25-16 Hz."""
    lam = _log_bands(mag)
    spec = np.abs(np.fft.rfft(lam - lam.mean(axis=0), axis=0)) ** 2
    fr = np.fft.rfftfreq(lam.shape[0], d=DEFAULT_SPEC.hop / DEFAULT_SPEC.sample_rate)
    octaves = [(0.25 * 2**k, 0.5 * 2**k) for k in range(6)]
    return np.concatenate(
        [np.log(spec[(fr >= a) & (fr < b)].mean(axis=0) + 1e-6) for a, b in octaves]
    )


def envelope_correlation(mag: np.ndarray) -> np.ndarray:
    """Correlations between the envelopes of 16 merged bands (upper triangle)."""
    lam = _log_bands(mag)
    e16 = np.stack([g.mean(axis=1) for g in np.array_split(lam, 16, axis=1)], axis=1)
    corr: np.ndarray = np.corrcoef(e16.T)[np.triu_indices(16, 1)]
    return corr


def moments(mag: np.ndarray) -> np.ndarray:
    """Per band: skewness and log kurtosis of the log band power over frames."""
    lam = _log_bands(mag)
    zc = (lam - lam.mean(axis=0)) / (lam.std(axis=0) + 1e-6)
    return np.concatenate([(zc**3).mean(axis=0), np.log((zc**4).mean(axis=0))])


def fine_spectrum(mag: np.ndarray) -> np.ndarray:
    """The time-mean log spectrum minus its 9-bin local mean (peaks over the envelope)."""
    ms = np.log(np.square(mag, dtype=np.float64) + LOG_EPS).mean(axis=0)
    env = np.convolve(np.pad(ms, 4, mode="edge"), np.ones(9) / 9, mode="valid")
    out: np.ndarray = (ms - env)[2:]
    return out


CANDIDATES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "dynamics (lags 1-32, shipped)": lambda m: dynamics_from_magnitude(
        m, EDGES, (1, 2, 4, 8, 16, 32)
    ),
    "dynamics, lags 1-8": lambda m: dynamics_from_magnitude(m, EDGES, (1, 2, 4, 8)),
    "flatness + impulsiveness + flux": shape,
    "modulation power": modulation_power,
    "envelope correlation": envelope_correlation,
    "skewness + kurtosis": moments,
    "fine spectrum": fine_spectrum,
}


def features(
    out: Path, fam: str, train: list[Any], test: list[Any], plans: dict[str, Any]
) -> dict[str, np.ndarray]:
    """Every candidate's features of the train, test and planned pseudo-anomaly clips, keyed
    `<clip key>#<candidate>`, cached per family."""
    from edge_agent.audio.files import load_clip
    from edge_agent.scoring.frontend import stft_magnitude
    from edge_agent.scoring.pseudo import perturb

    cache = out / "features" / f"{fam}_candidates.npz"
    store: dict[str, Any] = dict(np.load(cache)) if cache.exists() else {}
    n0 = len(store)
    jobs = [(cache_key(c.path), c, None) for c in [*train, *test]]
    for rows, items in plans.values():
        jobs += [
            (pseudo_key(train[rows[it.origin]], it), train[rows[it.origin]], it) for it in items
        ]
    for key, clip, item in jobs:
        if any(f"{key}#{name}" not in store for name in CANDIDATES):
            wave = load_clip(clip.path, DEFAULT_SPEC)
            if item is not None:
                wave = perturb(wave, item, DEFAULT_SPEC.sample_rate)
            mag = stft_magnitude(wave, DEFAULT_SPEC)
            for name, fn in CANDIDATES.items():
                store[f"{key}#{name}"] = fn(mag).astype(np.float32)
    if len(store) != n0:
        np.savez(cache, **store)
    return store


def main(argv: list[str] | None = None) -> int:
    from dataclasses import replace

    from edge_agent.scoring.backend import BackendConfig
    from edge_agent.scoring.fusion import choose_weights
    from model_build.evaluation.scores import section_rows

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="benchmarks/quality.py's --out")
    ap.add_argument("--families", default=",".join(q.FAMILIES))
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument(
        "--base",
        choices=tuple(BASES),
        default="search",
        help="search: the three components of the search; shipped: today's four",
    )
    args = ap.parse_args(argv)
    from model_build import quiet

    quiet.configure(verbose=False)
    fams = [f for f in args.families.split(",") if f]
    base, (anchor, ridge) = BASES[args.base]
    res: dict[str, dict[str, list[float]]] = {}
    for fam in fams:
        for seed in (int(x) for x in args.seeds.split(",")):
            cell = fs.section_scores(args.out, fam, 30, seed, 48, "default", base[1:])
            train, test = list(cell["train"]), list(cell["test"])
            plans = q.pseudo_plans(train, 48, seed)
            store = features(args.out, fam, train, test, plans)
            config = replace(BackendConfig(), seed=seed)
            scores: dict[str, np.ndarray] = {}
            for sec, (rows, items) in plans.items():
                idx = cell[f"{sec}|test_idx"]
                zn, zp, zt = cell[f"{sec}|normal"], cell[f"{sec}|pseudo"], cell[f"{sec}|test"]
                src, tgt = section_rows(train, sec)
                origins = np.asarray([it.origin for it in items])
                w = choose_weights(list(zn), list(zp), base, anchor, ridge).weights
                scores.setdefault("(none: the system before)", np.full(len(test), np.nan))[idx] = (
                    np.asarray(w) @ zt
                )
                for name in CANDIDATES:
                    tr = np.stack([store[f"{cache_key(c.path)}#{name}"] for c in train])
                    te = np.stack([store[f"{cache_key(test[i].path)}#{name}"] for i in idx])
                    pe = np.stack(
                        [store[f"{pseudo_key(train[rows[it.origin]], it)}#{name}"] for it in items]
                    )
                    en, ep, et = fs.component_z(tr[src], tr[tgt], pe, origins, [te], config)
                    scores.setdefault(f"{name} alone", np.full(len(test), np.nan))[idx] = et
                    ch = choose_weights([*zn, en], [*zp, ep], (*base, "new"), anchor, ridge)
                    scores.setdefault(f"system + {name}", np.full(len(test), np.nan))[idx] = (
                        np.asarray(ch.weights) @ np.vstack([zt, et])
                    )
            for label, s in scores.items():
                auc = 100 * q.summary(test, s)["auc"]["mixed"]
                res.setdefault(label, {}).setdefault(fam, []).append(auc)
            print(f"{fam} s{seed} done", file=sys.stderr, flush=True)
    print("| candidate | " + " | ".join(fams) + " | mean | worst |")
    print("|---|" + "---|" * (len(fams) + 2))
    for label, per in res.items():
        vals = [float(np.mean(per[f])) for f in fams if f in per]
        print(
            f"| {label} | "
            + " | ".join(f"{v:.1f}" for v in vals)
            + f" | {np.mean(vals):.1f} | {np.min(vals):.1f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
