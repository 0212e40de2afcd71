"""The spectral stability beside a pseudo-anomaly that exercises it: the next default, measured.

    nice .venv/bin/python benchmarks/stability_pseudo.py --out runs/quality --sizes 30,10

`stability_variants.py` shows the spectral stability (edge_agent.scoring.classical.Stability)
alone far above the system with it on the texture family: the per-section rule weighs a
component by how far it moves the section's pseudo-anomalies, and none of the six kinds planned
then (edge_agent.scoring.pseudo.FIRST_KINDS) moves a line's frequency to and fro, which is what
the stability sees. It measured the change that made the wobble a planned kind and the stability
a default component, so it pins the plan before it (48 copies of the six kinds); quality.py's
`previous` and `default` systems measure the two defaults as shipped. This study adds `EXTRA`
copies of the `wobble` kind per section (a periodic speed swing, pseudo.PERTURB) to the 48
planned ones, scores every component on both
sets exactly as the backend fits it (`fusion_study.component_z`: cross-fitted, each copy in
the fold of its origin, with the deviation scores), and fuses under the shipped rule (anchor
0.3, ridge 20):

- `seven`: the shipped components (the model and six classical), the 48 planned copies (the
  shipped system);
- `seven + wobble copies`, `eight (+ stability)`, `eight + wobble copies`;
- every single component alone (its cosine and deviation scores half each; the model's cosine).

Prints the mixed AUC per family (mean over seeds), the mean and worst family, and the
leave-one-family-out choice among the four systems, then `eight + wobble copies` minus the best
single component per family (issue 19's rule: never more than 0.5 below it). Reads what
`quality.py`, `fusion_study.py` and `stability_variants.py` cached under --out; the wobble copies'
features are computed here (the trained run reloaded per cell for the model's).
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from edge_agent.scoring.pseudo import FIRST_KINDS

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fusion_study as fs
import quality as q
import stability_variants as sv
import study_tables as st

EXTRA = 8
"""Wobble copies per section: as many as each planned kind has (48 over 6 kinds)."""
RULE = (0.3, fs.SHIPPED_RIDGE)
SYSTEMS = {
    "seven (shipped)": (7, False),
    "seven + wobble copies": (7, True),
    "eight (+ stability)": (8, False),
    "eight + wobble copies": (8, True),
}
"""Row -> (components: the shipped seven, or with the stability as the eighth; with the wobble
copies added to the planned pseudo-anomalies)."""
KINDS = ("model", *fs.CLASSICAL, "stability")


def _wobble_copies(
    run: Any, train: list[Any], members: np.ndarray, sec_seed: int, seed: int
) -> tuple[np.ndarray, list[np.ndarray]]:
    """(origins, per component (the model, the six classical, the stability) the features of
    `EXTRA` wobble copies of the section's normal clips (`members`: their rows in `train`))."""
    from edge_agent.audio.files import load_clip
    from edge_agent.scoring.classical import Stability, classical_features
    from edge_agent.scoring.frontend import DEFAULT_SPEC, stft_magnitude
    from edge_agent.scoring.pseudo import Planned, perturb

    rng = np.random.default_rng([sec_seed, 77])
    origins = rng.permutation(len(members))[:EXTRA]
    seeds = rng.integers(0, 2**31, origins.size)
    waves = np.stack(
        [
            perturb(
                load_clip(train[members[o]].path, DEFAULT_SPEC),
                Planned(int(o), "wobble", int(s)),
                DEFAULT_SPEC.sample_rate,
            )
            for o, s in zip(origins, seeds, strict=True)
        ]
    )
    feats = classical_features(DEFAULT_SPEC)
    mags = [stft_magnitude(w, DEFAULT_SPEC) for w in waves]
    classical = [np.stack([f.fn(m) for m in mags]) for f in feats]
    stability = Stability().feature(DEFAULT_SPEC).fn(waves)
    return origins, [run.embed_waves(waves)[0], *classical, stability]


def _cell_scores(out: Path, fam: str, size: int, seed: int) -> tuple[list[Any], dict[str, Any]]:
    from edge_agent.scoring.backend import BackendConfig
    from edge_agent.scoring.fusion import choose_weights
    from edge_agent.scoring.pseudo import section_seed
    from model_build.evaluation.scores import section_rows
    from model_build.training.runs import load_run

    recipe = q.SYSTEMS["default"]
    assert recipe is not None
    view = out / "views" / f"{fam}_n{size}"
    cell = fs.section_scores(out, fam, size, seed, 48, "default", sv.BASE, 1, kinds=FIRST_KINDS)
    train, test = list(cell["train"]), list(cell["test"])
    tr, te, _ = q.learned_embeddings(out, fam, size, seed, recipe, view, train, test)
    cls = q.classical_embeddings(out, fam, [*train, *test], "classical")
    plans = q.pseudo_plans(train, 48, seed, FIRST_KINDS)
    store = sv.features(out, fam, train, test, plans)

    def stab(keys: list[str]) -> np.ndarray:
        return np.stack([store[f"{k}#{sv.DEFAULTS}"] for k in keys]).astype(np.float64)

    keys = [q._cache_key(c.path) for c in [*train, *test]]  # noqa: SLF001
    st_all = stab(keys)
    n_tr = len(train)
    trs = [tr[0], *[c[:n_tr] for c in cls], st_all[:n_tr]]
    tes = [te[0], *[c[n_tr:] for c in cls], st_all[n_tr:]]
    pseudo = q.pseudo_features(out, fam, size, seed, recipe, train, 48, FIRST_KINDS)
    run = load_run(out / "runs" / fam / f"n{size}" / recipe.training_key() / f"s{seed}")
    config = replace(BackendConfig(), seed=seed)
    scores: dict[str, np.ndarray] = {}

    def put(label: str, idx: np.ndarray, values: np.ndarray) -> None:
        scores.setdefault(label, np.full(len(test), np.nan))[idx] = values

    for sec, (members, items) in plans.items():
        idx = cell[f"{sec}|test_idx"]
        src, tgt = section_rows(train, sec)
        origins, lrn, pcls = pseudo[sec]
        pst = stab([q._pseudo_key(train[members[it.origin]], it) for it in items])  # noqa: SLF001
        planned = [lrn[0], *pcls, pst]
        w_origins, wobble = _wobble_copies(run, train, members, section_seed(sec, seed), seed)
        both = [np.concatenate([a, b]) for a, b in zip(planned, wobble, strict=True)]
        both_origins = np.concatenate([origins, w_origins])
        # per set of copies, per component: [normal, pseudo, test] z-scores of the cosine,
        # then (classical components) of the deviation score
        per_set: dict[bool, list[list[np.ndarray]]] = {}
        for with_wobble, (pe, org) in ((False, (planned, origins)), (True, (both, both_origins))):
            per_set[with_wobble] = [
                fs.component_z(trs[c][src], trs[c][tgt], pe[c], org, [tes[c][idx]], config, c > 0)
                for c in range(len(KINDS))
            ]
        for c, kind in enumerate(KINDS):
            zc = per_set[False][c]
            put(f"{kind} alone", idx, zc[2] if c == 0 else 0.5 * (zc[2] + zc[5]))
        for label, (n_comp, with_wobble) in SYSTEMS.items():
            zs = per_set[with_wobble][:n_comp]
            kinds = (*KINDS[:n_comp], *KINDS[1:n_comp])
            normal = [zc[0] for zc in zs] + [zc[3] for zc in zs[1:]]
            pseudo_z = [zc[1] for zc in zs] + [zc[4] for zc in zs[1:]]
            test_z = [zc[2] for zc in zs] + [zc[5] for zc in zs[1:]]
            w = choose_weights(normal, pseudo_z, kinds, *RULE).weights
            put(label, idx, np.asarray(w) @ np.vstack(test_z))
    import keras

    keras.backend.clear_session()
    return test, scores


def main(argv: list[str] | None = None) -> int:
    for fams, size, res in st.studied(__doc__, argv, _cell_scores):
        st.report(res, fams, size, {s: s for s in SYSTEMS}, "seven (shipped)", "among the systems")
        mean = st.mean_auc(res, fams)
        print("\n`eight + wobble copies` minus the best single component, per family:")
        for f in fams:
            best = max(KINDS, key=lambda k: mean[f"{k} alone"][f])
            margin = mean["eight + wobble copies"][f] - mean[f"{best} alone"][f]
            print(f"- {f}: {margin:+.1f} ({best})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
