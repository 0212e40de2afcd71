"""Detection quality on a documented synthetic set: our system vs the classical baseline.

    nice .venv/bin/python benchmarks/quality.py --out runs/quality [--width 1.0] [--epochs 10]

1. `model-build synth` with the flags below (skipped when OUT/data already holds the set);
2. `model-build train` of the paper's network (default width 1.0, the paper's 10 epochs,
   batch 64, Adam, sub-cluster AdaCos, mixup) on its training split, on the CPU;
3. `model-build evaluate`'s code path for the trained run AND for the classical baseline
   (time-mean + time-std of the log spectrogram, model_build/baseline.py) with the SAME
   backend (per-section k-means + target embeddings, min cosine distance);
4. prints DCASE-style harmonic means per domain for both, the difference, and the wall time of
   each step; writes everything to OUT/quality.json.

The figures in README.md / BENCHMARKS.md come from this script; nothing here is tuned on the
test split (the synthetic set's seed and sizes are fixed before training).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

SYNTH_FLAGS: dict[str, Any] = {
    "seed": 1,
    "machines": ("fan", "gearbox", "bearing", "valve"),
    "sections": 3,
    "source_train": 100,
    "target_train": 10,
    "test_per_label": 50,
}
DOMAINS = ("source", "target", "mixed")


def _summary(payload: dict[str, Any], name: str) -> dict[str, Any]:
    summary = payload["results"][name]["summary"]
    return {"auc": summary["auc"], "pauc": summary["pauc"], "official": summary["official_score"]}


def _row(label: str, s: dict[str, Any]) -> str:
    cells = [f"{100 * s['auc'][d]:6.2f}" for d in DOMAINS] + [
        f"{100 * s['pauc'][d]:6.2f}" for d in DOMAINS
    ]
    return f"| {label} | " + " | ".join(cells) + f" | {100 * s['official']:6.2f} |"


def main(argv: list[str] | None = None) -> int:  # noqa: PLR0915 -- the script, step by step
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="folder for data, run and results")
    ap.add_argument("--data", type=Path, default=None, help="use this DCASE root instead of synth")
    ap.add_argument("--width", type=float, default=1.0, help="channel multiplier (1.0 = paper)")
    ap.add_argument("--epochs", type=int, default=10, help="training epochs (paper: 10)")
    ap.add_argument("--batch-size", type=int, default=64, help="batch size (paper: 64)")
    ap.add_argument("--runs", type=int, default=1, help="models to train (ensemble)")
    ap.add_argument("--seed", type=int, default=0, help="training seed")
    args = ap.parse_args(argv)

    from model_build.baseline import BaselineEmbedder
    from model_build.data import scan
    from model_build.evaluate import evaluate_embedder
    from model_build.model import ModelConfig
    from model_build.runs import load_run
    from model_build.synth import SynthConfig, generate
    from model_build.train import TrainConfig, train_run

    args.out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    data = args.data or args.out / "data"
    if args.data is None and not (data / "synth.json").exists():
        t = time.perf_counter()
        generate(SynthConfig(**SYNTH_FLAGS), data, workers=2)
        timings["synth_s"] = time.perf_counter() - t
    clips = scan([data])
    n_train = sum(c.split == "train" for c in clips)
    n_test = sum(c.split == "test" for c in clips)

    run = args.out / f"run_w{args.width:g}_e{args.epochs}_s{args.seed}"
    t = time.perf_counter()
    train_run(
        [data], run, ModelConfig(width=args.width),
        TrainConfig(epochs=args.epochs, batch_size=args.batch_size, seed=args.seed,
                    runs=args.runs, verbose=False),
    )
    timings["train_s"] = time.perf_counter() - t

    t = time.perf_counter()
    _, ours = evaluate_embedder(load_run(run), clips, plots=False)
    timings["evaluate_ours_s"] = time.perf_counter() - t
    t = time.perf_counter()
    _, base = evaluate_embedder(BaselineEmbedder(), clips, plots=False)
    timings["evaluate_baseline_s"] = time.perf_counter() - t

    ours_name = "ensemble" if args.runs > 1 else "model_0"
    rows = {"ours": _summary(ours, ours_name), "baseline": _summary(base, "model_0")}
    if args.runs > 1:  # the paper's reporting: mean (and std) of the single models
        spread = ours["across_models"]
        for stat in ("mean", "std"):
            rows[f"ours_single_{stat}"] = {
                "auc": {d: spread[f"auc_{d}"][stat] for d in DOMAINS},
                "pauc": {d: spread[f"pauc_{d}"][stat] for d in DOMAINS},
                "official": spread["official_score"][stat],
            }
    result = {
        "data": str(data),
        "synth": {k: list(v) if isinstance(v, tuple) else v for k, v in SYNTH_FLAGS.items()}
        if args.data is None else None,
        "n_train_clips": n_train,
        "n_test_clips": n_test,
        "width": args.width,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "runs": args.runs,
        "run": str(run),
        "timings_s": timings,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "harmonic_means": rows,
        "ours_sections": ours["results"][ours_name]["sections"],
        "baseline_sections": base["results"]["model_0"]["sections"],
    }
    (args.out / "quality.json").write_text(json.dumps(result, indent=2) + "\n")

    print(f"data: {data} ({n_train} training clips, {n_test} test clips)")
    print(f"model: width {args.width}, {args.epochs} epochs, batch {args.batch_size}, "
          f"{args.runs} run(s)")
    print("| system | AUC source | AUC target | AUC mixed | pAUC source | pAUC target | "
          "pAUC mixed | official |")
    print("|---|---|---|---|---|---|---|---|")
    for label, s in rows.items():
        print(_row(label, s))
    for d in DOMAINS:
        delta = 100 * (rows["ours"]["auc"][d] - rows["baseline"]["auc"][d])
        print(f"AUC {d}: ours - baseline = {delta:+.2f} points")
    print("time: " + ", ".join(f"{k} {v:.0f}" for k, v in timings.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
