"""Score each classical component a second way: its largest per-feature deviation.

    nice .venv/bin/python benchmarks/deviation_scoring.py --out runs/quality --sizes 30,10
    nice .venv/bin/python benchmarks/deviation_scoring.py --out runs/quality --space l2

The study behind the backend's deviation score (`BackendConfig.deviation`; BENCHMARKS.md "The
deviation score"), kept as the record of the choice. The backend scored every component by the
cosine distance of a window's feature vector to the section's normal references alone
(edge_agent.scoring.backend). A fault that moves a FEW of a component's features (one band's
modulation at one pace, a few fine-spectrum bins) moves a 180- or 511-dim vector little in
angle. The classical answer is to compare every feature with its own normal range: the
deviation score of a window is the mean of its K largest |x_d - mean_d| / spread_d over the
features d (mean and spread of the section's normal training clips; the spread floored at a
tenth of the component's median spread, so a feature that never moves cannot dominate).
`pool`: one mean and spread from all normal clips; `min`: the smaller of the scores against
the source clips' and against the target clips' (with as many source clips) statistics, so a
target clip is not far just for its domain.

Reads what quality.py and fusion_study.py cached under --out (the default recipe's models,
the classical features, the pseudo-anomalies). Each deviation score is cross-fitted and
standardised exactly as a backend component (`backend.cross_fit_with_extra`, the held-out
normal scores' mean and spread), and fused under the shipped rule (anchor 0.3, ridge 20)
beside the cosine scores alone (the `cosine only` row: `fusion_study.section_scores` with
`deviation=0`, the system before the deviation score): `grouped` puts each deviation score in
its cosine twin's group (the rule weighs the pair's mean), `separate` gives it a group of its
own. Leave-one-family-out: for each family, the variant with the best mean over the other
families, reported on the one left out. `--space`: the features as computed (`raw`, what the
backend ships: K = 1, `min`, `grouped`), L2-normalised (`l2`: what a bundle's references alone
keep), or L2-normalised with the log of their length as one more feature (`l2norm`).
"""

from __future__ import annotations

import itertools
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_agent.scoring.pseudo import DEFAULT_COUNT

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fusion_study as fs
import quality as q
import study_tables as st

RULE = (0.3, fs.SHIPPED_RIDGE)
FOLDS = 5


@dataclass(frozen=True)
class Variant:
    """One way to score and fuse the deviations."""

    k: int
    """The K largest per-feature deviations averaged."""
    mode: str
    """`pool` or `min` (module docstring)."""
    pairing: str
    """`grouped` or `separate` (module docstring)."""

    @property
    def name(self) -> str:
        return f"K={self.k} {self.mode} {self.pairing}"


VARIANTS = tuple(
    Variant(k, m, p)
    for k, m, p in itertools.product((1, 3), ("pool", "min"), ("grouped", "separate"))
)


@dataclass(frozen=True)
class Deviation:
    """How a deviation score is computed (module docstring): the backend's own functions
    (`feature_stats`, `deviation_stats`, `feature_deviation`) on the clips' features, in
    float64 (the backend reads them from its float16 references)."""

    k: int
    mode: str
    space: str = "raw"

    def score(self, source: np.ndarray, target: np.ndarray, held: np.ndarray) -> np.ndarray:
        """(N,) the mean of the k largest |z| of each row of `held` against the normal
        clips `source` and `target`."""
        from edge_agent.scoring.backend import deviation_stats, feature_deviation, feature_stats

        if self.space != "raw":
            source, target, held = (self._space(x) for x in (source, target, held))
        rows = np.vstack([source, target])
        stats = (
            (feature_stats(rows),) if self.mode == "pool" else deviation_stats(rows, len(source))
        )
        return feature_deviation(held, stats, self.k)

    def _space(self, x: np.ndarray) -> np.ndarray:
        """`x` L2-normalised (`l2`), with the log of its length as one more feature (`l2norm`)."""
        from edge_agent.scoring.backend import l2_normalise

        extra = int(self.space == "l2norm")
        if not len(x):
            return np.zeros((0, x.shape[1] + extra))
        u = l2_normalise(x).astype(np.float64)
        if extra:
            u = np.hstack([u, np.log(np.linalg.norm(x, axis=1) + 1e-12)[:, None]])
        return u

    def component_z(
        self,
        train: tuple[np.ndarray, np.ndarray],
        pseudo: tuple[np.ndarray, np.ndarray],
        test: np.ndarray,
        seed: int,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Standardised scores of the held-out normal clips, the pseudo-anomalies (features,
        origins) and the test clips, cross-fitted as a backend component is."""
        from edge_agent.scoring.backend import _spread, cross_fit_with_extra

        def fit_score(a: Any, b: Any, h: Any) -> Any:
            return self.score(a, b, h)

        h, hx = cross_fit_with_extra(*train, *pseudo, fit_score, FOLDS, seed)
        mean, std = float(h.mean()), _spread(h)
        full = self.score(*train, test)
        return (h - mean) / std, (hx - mean) / std, (full - mean) / std


def cell_scores(
    out: Path, fam: str, size: int, seed: int, space: str = "raw"
) -> tuple[list[Any], dict[str, np.ndarray]]:
    """Per row of the table, the test clips' scores of one (family, size, seed) cell."""
    from edge_agent.scoring.fusion import choose_weights
    from model_build.evaluation.scores import section_rows

    kinds = ("model", *fs.CLASSICAL)
    cell = fs.section_scores(out, fam, size, seed, DEFAULT_COUNT, "default", fs.CLASSICAL)
    train, test = list(cell["train"]), list(cell["test"])
    feats = q.classical_embeddings(out, fam, [*train, *test], "classical")
    recipe = q.SYSTEMS["default"]
    assert recipe is not None
    pseudo = q.pseudo_features(out, fam, size, seed, recipe, train, DEFAULT_COUNT)
    scores: dict[str, np.ndarray] = {}

    def put(label: str, idx: np.ndarray, v: np.ndarray) -> None:
        scores.setdefault(label, np.full(len(test), np.nan))[idx] = v

    for sec, (origins, _, pcls) in pseudo.items():
        idx = cell[f"{sec}|test_idx"]
        zn, zp, zt = cell[f"{sec}|normal"], cell[f"{sec}|pseudo"], cell[f"{sec}|test"]
        src, tgt = section_rows(train, sec)
        put(
            "cosine only",
            idx,
            np.asarray(choose_weights(list(zn), list(zp), kinds, *RULE).weights) @ zt,
        )
        for k, mode in sorted({(v.k, v.mode) for v in VARIANTS}):
            dev = []
            for i, f in enumerate(feats):
                tr, te = f[: len(train)], f[len(train) :][idx]
                how = Deviation(k, mode, space)
                dev.append(how.component_z((tr[src], tr[tgt]), (pcls[i], origins), te, seed))
            for kind, d in zip(fs.CLASSICAL, dev, strict=True):
                put(f"{kind} deviation alone, K={k} {mode}", idx, d[2])
            for pairing in ("grouped", "separate"):
                extra = (
                    fs.CLASSICAL if pairing == "grouped" else tuple(f"{c}~" for c in fs.CLASSICAL)
                )
                ch = choose_weights(
                    [*zn, *[d[0] for d in dev]],
                    [*zp, *[d[1] for d in dev]],
                    (*kinds, *extra),
                    *RULE,
                )
                put(
                    Variant(k, mode, pairing).name,
                    idx,
                    np.asarray(ch.weights) @ np.vstack([zt, *[d[2] for d in dev]]),
                )
    return test, scores


def main(argv: list[str] | None = None) -> int:
    ap = st.parser(__doc__)
    ap.add_argument(
        "--space",
        choices=("raw", "l2", "l2norm"),
        default="raw",
        help="the features as computed, L2-normalised, or L2-normalised with their log norm",
    )
    args = ap.parse_args(argv)
    from model_build import quiet

    quiet.configure(verbose=False)
    fams, sizes, seeds = st.cells(args)
    for size in sizes:
        res = st.collect(
            fams, size, seeds, lambda f, n, s: cell_scores(args.out, f, n, s, args.space)
        )
        print(f"\nN = {size}: mixed AUC, mean over seeds (pAUC mixed: its mean over families)")
        print("\n".join(st.table(res, fams)))
        if len(fams) > 1:
            print("\nLeave-one-family-out choice of the variant (mixed AUC):")
            choices = {v.name: v.name for v in VARIANTS}
            print("\n".join(st.lofo(res, fams, choices, "cosine only")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
