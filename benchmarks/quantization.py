"""Quantisation table: per export mode, embedding cosine to the float Keras models, AUC/pAUC
per domain on held-out test clips, model size and device latency (BENCHMARKS.md).

    nice .venv/bin/python benchmarks/quantization.py RUN --data ROOT [--out DIR] [--md FILE]

Every mode goes through the real export (every model of the run + the classical components,
backends refitted on the device path) and is scored through
`model_build.export.BundleEmbedder` (numpy frontend + TFLite, what the device runs). The float
Keras row scores the run's own models + the same classical components with the same backend
code (each section's weights decided from the float model's embeddings of the same
pseudo-anomalies), so the difference between rows is what the quantisation did to the shipped
system.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from edge_agent.bundle.manifest import QUANTIZE_MODES
from edge_agent.scoring.backend import BackendConfig, view_weights
from model_build.data.dataset import scan
from model_build.evaluation.baseline import ClassicalEmbedder
from model_build.evaluation.evaluate import (
    backend_scores,
    evaluate_scores,
    joined_waves,
    pseudo_sets,
    split_clips,
)
from model_build.export import BundleEmbedder, export_run
from model_build.training.runs import load_run


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return np.asarray((a * b).sum(1))


def _row(name: str, ev_summary: object, extra: dict[str, str]) -> str:
    auc = getattr(ev_summary, "auc")  # noqa: B009
    pauc = getattr(ev_summary, "pauc")  # noqa: B009

    def f(v: float | None) -> str:
        return "-" if v is None else f"{100 * v:.2f}"

    cells = [
        name,
        extra["cos"],
        *(f(auc.get(d)) for d in ("source", "target", "mixed")),
        *(f(pauc.get(d)) for d in ("source", "target", "mixed")),
        extra["size"],
        extra["ms"],
    ]
    return "| " + " | ".join(cells) + " |"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--data", type=Path, action="append", required=True)
    ap.add_argument("--out", type=Path, default=None, help="where bundles go (default: temp)")
    ap.add_argument("--modes", default=",".join(QUANTIZE_MODES))
    ap.add_argument("--calibration", type=int, default=200)
    ap.add_argument("--md", type=Path, default=None, help="also write the table here")
    args = ap.parse_args()
    from model_build import quiet

    quiet.configure(verbose=False)  # our table, not the converter's lines
    quiet.tensorflow()  # its import lines (oneDNN, absl) captured now
    clips = scan(args.data)
    train, test = split_clips(clips)
    run = load_run(args.run)
    t0 = time.perf_counter()
    k_tr, k_te = list(run.embed_clips(train)), list(run.embed_clips(test))
    k_ms = 1000 * (time.perf_counter() - t0) / (len(train) + len(test))
    cls = ClassicalEmbedder(run.spec)
    c_tr, c_te = cls.embed_clips(train), cls.embed_clips(test)
    kinds = ["model"] * len(k_tr) + cls.kinds
    config = BackendConfig()  # export's default: weights decided per section
    pseudo = pseudo_sets(joined_waves(run, cls), train, run.spec, config)
    ev = evaluate_scores(
        test,
        backend_scores(
            k_tr + c_tr, train, k_te + c_te, test, config, view_weights(kinds), pseudo, kinds
        ).scores,
    )
    header = (
        "| model | cosine to Keras mean / min | AUC source | AUC target | AUC mixed | "
        "pAUC source | pAUC target | pAUC mixed | size MB | ms / window (embed, 1 thr) |"
    )
    lines = [
        header,
        "|" + "---|" * 10,
        _row("float Keras", ev.summary, {"cos": "1 / 1", "size": "-", "ms": f"{k_ms:.1f}"}),
    ]
    out = args.out or Path(tempfile.mkdtemp(prefix="quant-"))
    n_models = len(k_tr)
    for mode in args.modes.split(","):
        vdir = export_run(args.run, out / mode, mode, data=args.data, calibration=args.calibration)
        emb = BundleEmbedder(vdir, threads=1)
        t0 = time.perf_counter()
        d_te = emb.embed_clips(test)
        ms = 1000 * (time.perf_counter() - t0) / len(test)
        d_tr = emb.embed_clips(train)
        cos = np.concatenate([_cos(d, k) for d, k in zip(d_te[:n_models], k_te, strict=True)])
        d_pseudo = pseudo_sets(emb.embed_waves, train, emb.spec, config)
        ev = evaluate_scores(
            test,
            backend_scores(
                d_tr, train, d_te, test, config, emb.weights, d_pseudo, emb.kinds
            ).scores,
        )
        size = sum(p.stat().st_size for p in emb.scorer.bundle.model_paths) / 1e6
        lines.append(
            _row(
                mode,
                ev.summary,
                {
                    "cos": f"{cos.mean():.4f} / {cos.min():.4f}",
                    "size": f"{size:.2f}",
                    "ms": f"{ms:.1f}",
                },
            )
        )
        print(lines[-1], flush=True)
    table = "\n".join(lines)
    print(table)
    if args.md:
        args.md.write_text(table + "\n")


if __name__ == "__main__":
    main()
