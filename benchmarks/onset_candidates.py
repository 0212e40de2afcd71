"""The onset rhythm and its variants, each beside the eight components shipped before it.

    nice .venv/bin/python benchmarks/onset_candidates.py --out runs/quality --sizes 30,10

Per fault kind (`by_severity.py --by kind`), the faults the shipped system missed most were
timing faults: a cycle's timing scattered or slowed (cyclic timing_jitter 64, slowdown 61),
events jittered or dropped (random timing 66), a valve event missing or added (harmonic 52),
while the rhythm ALONE heard the cyclic ones better than the system (72 and 67). The rhythm
autocorrelates each range's log-energy envelope, whose broad peaks a few per cent of timing
scatter hardly lowers. The candidates here autocorrelate the ONSET strength instead (the rise
of the log energy from one frame to the next; falls count zero), which is near zero between
events, so its peaks are as sharp as the events:

- `onset rhythm (shipped)`: edge_agent.scoring.classical.Onsets, the rhythm's four ranges and
  lags up to 4 s (the kind as shipped);
- `onset rhythm, 6 band groups, 2 s` / `..., 10 band groups, 4 s`: the onsets of the 32 log
  bands summed in 6 or 10 groups of neighbouring bands (finer ranges);
- `envelope autocorrelation, 6 band groups, 4 s`: the rhythm itself over the 6 groups, a
  control: a gain from finer ranges, not from the onsets, would show here;
- `strongest onsets`: per range, the 10 largest onset strengths (log, over the median): how
  many events and how strong, not when.

Each is scored exactly as the backend fits a classical component (`fusion_study.component_z`:
cross-fitted, the 56 planned pseudo-anomalies in the fold of their origin) and fused under the
shipped rule (anchor 0.3, ridge 20) as a ninth component beside the eight shipped before it
(the model and seven classical, with their deviation scores), with its cosine score alone
(`+ X`) or with its deviation score too (`+ X, deviation`); `nine + X` adds a variant as a
TENTH component beside the shipped nine. Prints the mixed AUC per family (mean over seeds),
the mean and the worst family, and the leave-one-family-out choice among the `+ X` rows.
Reads what `quality.py` and `fusion_study.py` cached under --out; the candidates' features of
the training, test and pseudo-anomaly clips are computed here (cached per family).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import component_candidates as cc
import fusion_study as fs
import quality as q
import study_tables as st

from edge_agent.scoring.classical import (
    LOG_EPS,
    Onsets,
    band_edges,
    band_log_power,
    envelope_acf,
    rhythm_bins,
)
from edge_agent.scoring.frontend import DEFAULT_SPEC
from edge_agent.scoring.pseudo import DEFAULT_COUNT

SHIPPED = "onset rhythm (shipped)"
BEFORE = tuple(k for k in fs.CLASSICAL if k != "onsets")
"""The classical components shipped before the onset rhythm."""
RULE = (0.3, fs.SHIPPED_RIDGE)
EDGES = band_edges(DEFAULT_SPEC, 32)
RANGES = rhythm_bins(DEFAULT_SPEC, Onsets().ranges_hz)
FRAMES_2S = round(2.0 * DEFAULT_SPEC.sample_rate / DEFAULT_SPEC.hop)
FRAMES_4S = round(4.0 * DEFAULT_SPEC.sample_rate / DEFAULT_SPEC.hop)


def _groups(mag: np.ndarray, groups: int) -> np.ndarray:
    """(groups, n_frames) the mean log power of `groups` runs of neighbouring bands."""
    bands = band_log_power(mag, EDGES).astype(np.float64)
    return np.stack([b.mean(axis=-1) for b in np.array_split(bands, groups, axis=-1)])


def _group_onsets(mag: np.ndarray, groups: int, lags: int) -> np.ndarray:
    bands = band_log_power(mag, EDGES).astype(np.float64)
    rise = np.maximum(np.diff(bands, axis=0), 0.0)
    return envelope_acf(
        np.stack([r.sum(axis=-1) for r in np.array_split(rise, groups, axis=-1)]), lags
    )


def _strongest(mag: np.ndarray) -> np.ndarray:
    out = []
    for a, b in RANGES:
        env = np.log(np.square(mag[:, a:b], dtype=np.float64).sum(axis=-1) + LOG_EPS)
        rise = np.sort(np.maximum(np.diff(env), 0.0))[::-1]
        out.append(np.log(rise[:10] + 1e-3) - np.log(np.median(rise) + 1e-3))
    return np.concatenate(out)


CANDIDATES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    SHIPPED: Onsets().feature(DEFAULT_SPEC).fn,
    "onset rhythm, 6 band groups, 2 s": lambda m: _group_onsets(m, 6, FRAMES_2S),
    "onset rhythm, 10 band groups, 4 s": lambda m: _group_onsets(m, 10, FRAMES_4S),
    "envelope autocorrelation, 6 band groups, 4 s": lambda m: envelope_acf(
        _groups(m, 6), FRAMES_4S
    ),
    "strongest onsets": _strongest,
}


def _cell_scores(out: Path, fam: str, size: int, seed: int) -> tuple[list[Any], dict[str, Any]]:
    from edge_agent.scoring.backend import BackendConfig
    from edge_agent.scoring.fusion import choose_weights
    from model_build.evaluation.scores import section_rows

    cell = fs.section_scores(out, fam, size, seed, DEFAULT_COUNT, "default", BEFORE, 1)
    train, test = list(cell["train"]), list(cell["test"])
    plans = q.pseudo_plans(train, DEFAULT_COUNT, seed)
    store = cc.features(
        out, fam, train, test, plans, candidates=CANDIDATES, cache_name="onset_candidates"
    )
    config = replace(BackendConfig(), seed=seed)
    kinds = fs.row_kinds(BEFORE, 1)
    scores: dict[str, np.ndarray] = {}

    def put(label: str, idx: np.ndarray, values: np.ndarray) -> None:
        scores.setdefault(label, np.full(len(test), np.nan))[idx] = values

    def fused(idx: np.ndarray, rows: list[Sequence[np.ndarray]], label: str) -> None:
        names = (*kinds, *[f"new{i}" for i in range(len(rows) - len(kinds))])
        w = choose_weights([r[0] for r in rows], [r[1] for r in rows], names, *RULE).weights
        put(label, idx, np.asarray(w) @ np.vstack([r[2] for r in rows]))

    for sec, (members, items) in plans.items():
        idx = cell[f"{sec}|test_idx"]
        zn, zp, zt = cell[f"{sec}|normal"], cell[f"{sec}|pseudo"], cell[f"{sec}|test"]
        src, tgt = section_rows(train, sec)
        origins = np.asarray([it.origin for it in items])
        eight: list[Sequence[np.ndarray]] = [(zn[i], zp[i], zt[i]) for i in range(len(kinds))]
        fused(idx, eight, "eight (shipped before)")
        z = {}
        for name in CANDIDATES:
            tr = np.stack([store[f"{q._cache_key(c.path)}#{name}"] for c in train])  # noqa: SLF001
            te = np.stack([store[f"{q._cache_key(test[i].path)}#{name}"] for i in idx])  # noqa: SLF001
            pe = np.stack(
                [store[f"{q._pseudo_key(train[members[it.origin]], it)}#{name}"] for it in items]  # noqa: SLF001
            )
            z[name] = fs.component_z(tr[src], tr[tgt], pe, origins, [te], config, True)
        shipped = z[SHIPPED]
        for name, zc in z.items():
            put(f"{name} alone", idx, 0.5 * (zc[2] + zc[5]))
            fused(idx, [*eight, zc[:3]], f"+ {name}")
            fused(idx, [*eight, zc[:3], zc[3:]], f"+ {name}, deviation")
            if name != SHIPPED:
                fused(idx, [*eight, shipped[:3], zc[:3]], f"nine + {name}")
    return test, scores


def main(argv: list[str] | None = None) -> int:
    for fams, size, res in st.studied(__doc__, argv, _cell_scores):
        choices = {n: f"+ {n}" for n in CANDIDATES}
        st.report(res, fams, size, choices, "eight (shipped before)", "the ninth component")
    return 0


if __name__ == "__main__":
    sys.exit(main())
