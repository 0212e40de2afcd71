"""The paper's ablations (Tables 3-6) rerun on the synthetic DCASE-layout data, printed next
to the paper's numbers with the direction of every effect compared.

    nice .venv/bin/python benchmarks/ablations.py --out runs/ablations          # default
    nice .venv/bin/python benchmarks/ablations.py --out runs/ablations --tables 6
    nice .venv/bin/python benchmarks/ablations.py --out runs/full --width 1 --epochs 10 \
        --source-train 100 --test 25 --machines fan,gearbox,bearing,valve

What it does (every trained run and every embedding cached under --out, so a rerun or an
interrupted run resumes):

1. writes a synthetic data set (`model_build.synth`, harmonic family, one section per kind of
   domain shift);
2. trains one network per system of the selected tables (`model_build.training.train.train_run`):
   Table 3 bias terms x trainable centres, Table 4 spectrum / log-mel / spectrogram alone and
   their embeddings added while training (`ModelConfig.combine="add"`), Table 5 without
   temporal normalisation; "paper" is the paper's network (the last column of Tables 3-5);
   Table 4's "concatenate after training" joins the spectrum-only and spectrogram-only
   networks' embeddings (`model_build.training.runs.ConcatenatedRuns` does the same for `evaluate`);
3. scores every system with the paper's backend (`PAPER_BACKEND`: k-means + target clips,
   cosine distance), and for Table 6 the paper network with the cosine and the GMM backend,
   each from the source model, the target model, their sum, and the joint model;
4. prints per table the harmonic means over sections (paper view, %) beside the paper's dev
   set means, then each effect the paper reports (e.g. "no bias terms") as the change in
   AUC per domain, the paper's and ours, and whether the two agree in sign.

The default is sized for a 2-core CPU (width 0.25, 2 machine types x 3 sections, 30 + 5
training clips per section; BENCHMARKS.md has its run time); the synthetic set is small and
each system is trained once, so an effect of a point or two is within the noise: read the
directions of the large effects, not the decimals.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

# The backends' matrices are small (a GMM fits 16 256x256 covariances): BLAS threads only
# contend with TensorFlow's and each other on a busy box (one fit took 22 s instead of 1.6 s).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from paper_tables import COMPARISONS, PAPER, TITLES

DOMAINS = ("source", "target", "mixed")
TRAINED: dict[str, dict[str, Any]] = {  # system -> ModelConfig fields (besides width)
    "paper": {},
    "bias_trainable": {"bias": True, "trainable_centres": True},
    "bias_fixed": {"bias": True},
    "trainable": {"trainable_centres": True},
    "spectrum": {"inputs": "spectrum"},
    "logmel": {"inputs": "logmel128"},
    "spectrogram": {"inputs": "spectrogram"},
    "add": {"combine": "add"},
    "spectrogram_no_tn": {"inputs": "spectrogram", "temporal_norm": False},
    "no_tn": {"temporal_norm": False},
}
CONCATENATED = {"concat_after": ("spectrogram", "spectrum")}
VARIANTS = ("source", "target", "sum", "joint")


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="cache and result folder")
    ap.add_argument("--tables", default="3,4,5,6", help="which tables (comma-separated)")
    ap.add_argument("--width", type=float, default=0.25, help="network width (paper: 1.0)")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0, help="training seed")
    ap.add_argument("--data-seed", type=int, default=7)
    ap.add_argument("--machines", default="fan,gearbox")
    ap.add_argument("--sections", type=int, default=3)
    ap.add_argument("--source-train", type=int, default=30)
    ap.add_argument("--target-train", type=int, default=5)
    ap.add_argument("--test", type=int, default=10, help="test clips per domain and label")
    return ap.parse_args(argv)


def systems_of(tables: Sequence[str]) -> list[str]:
    """Every system the selected tables show (the trained ones and the derived ones)."""
    names: list[str] = []
    for t in tables:
        names += [s for s in PAPER[t] if s not in names]
    return names


def trained_needed(tables: Sequence[str]) -> list[str]:
    need: list[str] = []
    for s in systems_of(tables):
        parts = CONCATENATED.get(s, (s,)) if s in TRAINED or s in CONCATENATED else ("paper",)
        need += [p for p in parts if p not in need]
    return need


def ensure_data(args: argparse.Namespace) -> Path:
    from model_build.synth.core import SynthConfig, generate

    root: Path = args.out / "data"
    done = root / ".complete"
    if not done.exists():
        cfg = SynthConfig(seed=args.data_seed, machines=tuple(args.machines.split(",")),
                          sections=args.sections, source_train=args.source_train,
                          target_train=args.target_train, test_per_label=args.test)
        cfg.check()
        generate(cfg, root, workers=2)
        done.write_text("ok\n")
    return root


def train_system(name: str, data: Path, args: argparse.Namespace) -> Path:
    """The paper's network (`PAPER_MODEL`: no FeatEx) at --width, one switch changed."""
    from model_build.training.model import PAPER_MODEL
    from model_build.training.train import TrainConfig, train_run

    run: Path = args.out / "runs" / name
    cfg = replace(PAPER_MODEL, width=args.width, **TRAINED[name])
    tcfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, seed=args.seed,
                       verbose=False)
    return train_run([data], run, cfg, tcfg)


def embeddings(name: str, run: Path, train: list[Any], test: list[Any],
               out: Path) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) embeddings of the run's first model, cached."""
    cache = out / "embeddings" / f"{name}.npz"
    if cache.exists():
        z = np.load(cache)
        return z["train"], z["test"]
    from model_build.training.runs import load_run

    r = load_run(run)
    tr, te = r.embed_clips(train)[0], r.embed_clips(test)[0]
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, train=tr, test=te)
    return tr, te


def summary(test: list[Any], scores: np.ndarray) -> dict[str, dict[str, float | None]]:
    from model_build.evaluation.evaluate import evaluate_scores

    sm = evaluate_scores(test, scores).summary
    return {"auc": dict(sm.auc), "pauc": dict(sm.pauc)}


def score_all(tables: Sequence[str], embs: dict[str, tuple[np.ndarray, np.ndarray]],
              train: list[Any], test: list[Any]) -> dict[str, dict[str, Any]]:
    """system -> harmonic means (paper view), every system scored by the paper's backend."""
    from edge_agent.errors import choice
    from edge_agent.scoring.backend import COSINE_VARIANTS, PAPER_BACKEND
    from model_build.evaluation.evaluate import backend_scores
    from model_build.evaluation.gmm import gmm_scores

    out: dict[str, dict[str, Any]] = {}
    for s in systems_of(tables):
        if s in TRAINED or s in CONCATENATED:
            parts = CONCATENATED.get(s, (s,))
            tr = np.concatenate([embs[p][0] for p in parts], axis=-1)
            te = np.concatenate([embs[p][1] for p in parts], axis=-1)
            out[s] = summary(test, backend_scores(tr, train, te, test, PAPER_BACKEND).scores)
            continue
        kind, variant = s.split("_")
        cfg = replace(PAPER_BACKEND, variant=choice("variant", variant, COSINE_VARIANTS))
        tr, te = embs["paper"]
        bs = (gmm_scores([tr], train, [te], test, cfg) if kind == "gmm"
              else backend_scores(tr, train, te, test, cfg))
        out[s] = summary(test, bs.scores)
    return out


def _pct(v: float | None) -> str:
    return "    -" if v is None else f"{100 * v:5.1f}"


def format_table(table: str, ours: dict[str, dict[str, Any]]) -> str:
    head = (f"{'system':<18} {'ours: AUC src':>13} {'tgt':>5} {'mix':>5} {'pAUC mix':>8}   "
            f"{'paper dev: AUC src':>18} {'tgt':>5} {'mix':>5} {'pAUC mix':>8}")
    lines = [f"== {TITLES[table]}", head, "-" * len(head)]
    for s, paper in PAPER[table].items():
        o, p = ours[s], paper["dev"]
        lines.append(
            f"{s:<18} {_pct(o['auc']['source']):>13} {_pct(o['auc']['target']):>5} "
            f"{_pct(o['auc']['mixed']):>5} {_pct(o['pauc']['mixed']):>8}   "
            f"{p['source'][0]:>18.1f} {p['target'][0]:>5.1f} {p['mixed'][0]:>5.1f} "
            f"{p['mixed'][1]:>8.1f}"
        )
    return "\n".join(lines)


CLEAR = 0.5
"""A paper effect smaller than this (AUC points, dev set) counts as no clear direction."""


def directions(
    tables: Sequence[str], ours: dict[str, dict[str, Any]]
) -> tuple[str, dict[str, int]]:
    """Each effect the paper reports, its AUC change per domain, the paper's and ours."""
    lines = [f"== direction of each effect: AUC change (points), paper dev -> ours "
             f"(agree: same sign; paper changes under {CLEAR} count as no direction)",
             f"{'effect':<61} {'source':>14} {'target':>14} {'mixed':>14}"]
    tally = {"agree": 0, "differ": 0, "unclear": 0}
    for table, effect, base, alt in COMPARISONS:
        if table not in tables:
            continue
        cells = []
        for dom in DOMAINS:
            p = PAPER[table][alt]["dev"][dom][0] - PAPER[table][base]["dev"][dom][0]
            a, b = ours[alt]["auc"][dom], ours[base]["auc"][dom]
            if a is None or b is None:
                cells.append(f"{p:+5.1f} ->   -  ")
                continue
            o = 100 * (a - b)
            verdict = "~" if abs(p) < CLEAR else ("=" if np.sign(p) == np.sign(o) else "x")
            if dom == "mixed":
                tally[{"~": "unclear", "=": "agree", "x": "differ"}[verdict]] += 1
            cells.append(f"{p:+5.1f} ->{o:+5.1f} {verdict}")
        lines.append(f"T{table} {effect:<58} " + " ".join(f"{c:>14}" for c in cells))
    lines.append(f"mixed-domain AUC: {tally['agree']} effects agree in direction, "
                 f"{tally['differ']} differ, {tally['unclear']} without a clear paper direction "
                 "(= agree, x differ, ~ paper effect too small)")
    return "\n".join(lines), tally


def main(argv: Sequence[str] | None = None) -> int:
    from model_build import quiet

    quiet.configure(verbose=False)
    quiet.tensorflow()
    from model_build.data.dataset import scan
    from model_build.evaluation.evaluate import split_clips

    args = parse(argv)
    tables = [t.strip() for t in args.tables.split(",") if t.strip()]
    unknown = [t for t in tables if t not in PAPER]
    if unknown:
        print(f"error: --tables: expected some of {', '.join(PAPER)}, got {unknown}",
              file=sys.stderr)
        return 2
    t0 = time.monotonic()
    args.out.mkdir(parents=True, exist_ok=True)
    data = ensure_data(args)
    train, test = split_clips(scan([data]))
    embs: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    need = trained_needed(tables)
    for i, name in enumerate(need):
        t1 = time.monotonic()
        run = train_system(name, data, args)
        embs[name] = embeddings(name, run, train, test, args.out)
        print(f"[{i + 1}/{len(need)}] {name}: {time.monotonic() - t1:.0f} s", file=sys.stderr)
    ours = score_all(tables, embs, train, test)
    text = "\n\n".join(format_table(t, ours) for t in tables)
    dirs, tally = directions(tables, ours)
    minutes = (time.monotonic() - t0) / 60
    report = (f"{text}\n\n{dirs}\n\n{len(train)} training and {len(test)} test clips, width "
              f"{args.width}, {args.epochs} epochs; {minutes:.1f} min")
    print(report)
    (args.out / "ablations.txt").write_text(report + "\n")
    (args.out / "ablations.json").write_text(json.dumps(
        {"args": {k: str(v) for k, v in vars(args).items()}, "ours": ours, "tally": tally,
         "minutes": minutes}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
