"""One-sided evidence: what each standardised score passes through before it is fused.

    nice .venv/bin/python benchmarks/evidence_study.py --out runs/quality --sizes 30,10

The backend fuses each component's standardised score z (its cross-fitted normal clips: mean
0, spread 1) with the per-section weights of edge_agent.scoring.fusion. Summed as they are, a
clip that one component finds MORE typical than its normal clips (z = -2) cancels another
component's evidence of a fault (z = +2), though a fault usually moves one or two views and
leaves the others where they were. Rows (`BackendConfig.transform`, edge_agent.scoring.backend
`evidence`):

- `none`: z as it is (the system before);
- `softplus`: ln(1 + e^z), about 0 below -2 and about z above 2;
- `surprise`: -ln P(Z > z), Z standard normal (Fisher's combination of one-sided p-values
  when summed): about 0 below -2, growing like z^2 / 2, so one component far outside its
  normal spread outweighs several a little above theirs;
- `X, weights decided on X`: the rule's discriminant fitted on the transformed scores of the
  held-out normal clips and pseudo-anomalies too (the shipped rule decides on z itself);
- `fixed weights, X`: every group weighs 1 (not the product's rule: it is kept for the
  held-out sets of issue 19; here for what the transform does without the rule);
- `X, + a deaf component (...)`: a tenth component that hears nothing, as a view that does not
  separate a machine's sounds would on data we did not make: log-normal scores (skewed like a
  distance, with a heavy tail), drawn independently of the clip, standardised like the others;
  at the weight the rule gives it, or forced to weigh 1 (a rule fooled into trusting it). A
  transform that lets such a view's tail outvote the others loses more here.

Each is scored on the cached cells of `fusion_study.section_scores` (the shipped components,
their deviation scores, the 56 planned pseudo-anomalies) under the shipped rule (the
backend's anchor and ridge). Prints the mixed AUC per family (mean over seeds), the mean and
the worst family, pAUC, and the leave-one-family-out choice among the three transforms.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fusion_study as fs
import study_tables as st

from edge_agent.scoring.backend import BackendConfig
from edge_agent.scoring.fusion import TRANSFORMS, Transform, choose_weights, evidence
from edge_agent.scoring.pseudo import DEFAULT_COUNT, section_seed

BEFORE = "none (shipped before)"


def _label(t: str) -> str:
    return BEFORE if t == "none" else t


def _cell_scores(out: Path, fam: str, size: int, seed: int) -> tuple[Sequence[Any], dict[str, Any]]:
    cfg = BackendConfig()
    rows = fs.row_kinds(fs.CLASSICAL, cfg.deviation)
    cell = fs.section_scores(
        out, fam, size, seed, DEFAULT_COUNT, "default", fs.CLASSICAL, cfg.deviation
    )
    test = cell["test"]
    fixed = fs.expand(np.ones(len(set(rows))), rows)
    scores: dict[str, np.ndarray] = {}

    def put(label: str, idx: np.ndarray, s: np.ndarray) -> None:
        scores.setdefault(label, np.full(len(test), np.nan))[idx] = s

    for key in cell:
        if not key.endswith("|normal"):
            continue
        sec = key.split("|")[0]
        zn, zp, zt = cell[f"{sec}|normal"], cell[f"{sec}|pseudo"], cell[f"{sec}|test"]
        idx = cell[f"{sec}|test_idx"]
        w = np.asarray(choose_weights(list(zn), list(zp), rows, cfg.anchor, cfg.ridge).weights)
        deaf = _with_deaf(zn, zp, zt, section_seed(sec, seed))
        wd = np.asarray(
            choose_weights(
                list(deaf[0]), list(deaf[1]), (*rows, "deaf"), cfg.anchor, cfg.ridge
            ).weights
        )
        forced = np.concatenate([w, [1.0]])
        for name in TRANSFORMS:
            t = cast(Transform, name)
            et = evidence(zt, t)
            put(_label(name), idx, w @ et)
            put(f"fixed weights, {name}", idx, fixed @ et)
            ed = evidence(deaf[2], t)
            put(f"{name}, + a deaf component (the rule's weight)", idx, wd @ ed)
            put(f"{name}, + a deaf component (weight 1)", idx, forced @ ed)
            if name != "none":
                en, ep = evidence(zn, t), evidence(zp, t)
                w2 = choose_weights(list(en), list(ep), rows, cfg.anchor, cfg.ridge).weights
                put(f"{name}, weights decided on {name}", idx, np.asarray(w2) @ et)
    return test, scores


def _with_deaf(
    zn: np.ndarray, zp: np.ndarray, zt: np.ndarray, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The rows of normal clips, pseudo-anomalies and test clips with one more row: log-normal
    scores independent of the clips, standardised by the normal clips' as the backend does."""
    rng = np.random.default_rng(seed)
    draws = [np.asarray(rng.lognormal(0.0, 1.0, z.shape[1])) for z in (zn, zp, zt)]
    mean, spread = float(draws[0].mean()), float(draws[0].std())
    rows = (
        np.vstack([z, ((d - mean) / spread)[None]])
        for z, d in zip((zn, zp, zt), draws, strict=True)
    )
    a, b, c = rows
    return a, b, c


def main(argv: list[str] | None = None) -> int:
    for fams, size, res in st.studied(__doc__, argv, _cell_scores):
        choices = {t: _label(t) for t in TRANSFORMS}
        st.report(res, fams, size, choices, BEFORE, "of the transform")
    return 0


if __name__ == "__main__":
    sys.exit(main())
