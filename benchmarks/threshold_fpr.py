"""False alarms of the decision threshold on fresh normal clips: in-sample vs cross-fitted.

    .venv/bin/python benchmarks/threshold_fpr.py --seeds 3          # docs/evaluation.md's figures
    .venv/bin/python benchmarks/threshold_fpr.py --seeds 10 --backend paper

DCASE's rule puts the threshold at the 90th percentile of the normal training clips' scores,
so about 10 % of fresh normal clips should score above it. Scored in-sample (each clip
against a backend built from it) the scores are biased low and the threshold with them; the
cross-fitted threshold (`edge_agent.scoring.backend.fit_section`: every normal clip scored by
a backend fitted without it) is what every command uses. This measures both on synthetic
embeddings, numpy only: per seed, 990 source + 10 target normal training clips and 2 000
fresh normal clips (1 000 per domain), 256-d, drawn from a mixture of 8 Gaussian clusters per
domain (the target's shifted), L2-normalised as the backend does; prints the share of fresh
clips above each threshold per seed, per domain and overall.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

DIM, CLUSTERS = 256, 8


def draw(rng: np.random.Generator, centres: np.ndarray, n: int, spread: float) -> np.ndarray:
    """n clips around the given cluster centres (equal shares, Gaussian noise)."""
    idx = rng.integers(0, len(centres), n)
    return centres[idx] + spread * rng.standard_normal((n, centres.shape[1]))


def one_seed(seed: int, backend: str, percentile: float) -> dict[str, tuple[float, float]]:
    """domain -> (in-sample FPR, cross-fitted FPR) on fresh normal clips."""
    from edge_agent.scoring.backend import PAPER_BACKEND, BackendConfig, fit_section

    config = replace(
        PAPER_BACKEND if backend == "paper" else BackendConfig(), percentile=percentile
    )
    rng = np.random.default_rng(seed)
    src_c = rng.standard_normal((CLUSTERS, DIM))
    tgt_c = src_c + 0.8 * rng.standard_normal((CLUSTERS, DIM))  # the domain shift
    spread = 0.5
    train_s, train_t = draw(rng, src_c, 990, spread), draw(rng, tgt_c, 10, spread)
    fresh = {"source": draw(rng, src_c, 1000, spread), "target": draw(rng, tgt_c, 1000, spread)}
    fit = fit_section([train_s], [train_t], config)
    sb = fit.backend
    in_sample = sb.score([np.concatenate([train_s, train_t])])
    thr_in = float(np.percentile(in_sample, percentile))
    out = {}
    for dom, x in fresh.items():
        s = sb.score([x])
        out[dom] = (float(np.mean(s > thr_in)), float(np.mean(s > sb.threshold)))
    both = [np.concatenate([sb.score([x]) for x in fresh.values()])]
    out["all"] = (float(np.mean(both[0] > thr_in)), float(np.mean(both[0] > sb.threshold)))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=5, help="data sets drawn (seeds 0..N-1)")
    ap.add_argument("--backend", choices=("default", "paper"), default="default")
    ap.add_argument("--percentile", type=float, default=90.0)
    args = ap.parse_args(argv)
    asked = 100 - args.percentile
    print(
        f"false alarms on fresh normal clips (%), {asked:g} % asked for, backend "
        f"{args.backend}; in-sample / cross-fitted threshold"
    )
    print(f"{'seed':>4} {'source':>15} {'target':>15} {'all':>15}")
    for seed in range(args.seeds):
        r = one_seed(seed, args.backend, args.percentile)
        cells = [
            f"{100 * r[d][0]:6.1f} / {100 * r[d][1]:5.1f}" for d in ("source", "target", "all")
        ]
        print(f"{seed:>4} " + " ".join(f"{c:>15}" for c in cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
