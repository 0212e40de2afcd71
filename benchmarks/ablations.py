r"""The paper's ablations (Tables 3-7) rerun on synthetic DCASE-layout data, printed next to
the paper's own figures with the direction of every effect compared.

    nice .venv/bin/python benchmarks/ablations.py --out runs/ablations              # default
    nice .venv/bin/python benchmarks/ablations.py --out runs/ablations --tables 6
    nice .venv/bin/python benchmarks/ablations.py --out runs/quick --quick --tables 7
    nice .venv/bin/python benchmarks/ablations.py --out runs/ablations --trainings 5
    nice .venv/bin/python benchmarks/ablations.py --out runs/full --width 1 \
        --batch-size 64 --source-train 100 --test 25 --machines fan,gearbox,bearing,valve

Every network is the paper's recipe (`model_build.training.recipes.PAPER`: no FeatEx, no
augmentation, no minimum step count, nothing added after the paper) with one switch changed
and the CPU-sized settings below (width, epochs, batch size). What it does (every trained run
and every embedding cached under --out, keyed by everything that decides it, so a rerun or an
interrupted run resumes and a changed setting retrains):

1. writes a synthetic data set (`model_build.synth`, harmonic family, one section per kind of
   domain shift);
2. trains `--trainings` networks (seeds seed, seed + 1, ...) per system of the selected
   tables (`model_build.training.train.train_run`): Table 3 bias terms x trainable centres,
   Table 4 spectrum / log-mel / spectrogram alone and their embeddings added while training
   (`ModelConfig.combine="add"`), Table 5 without temporal normalisation, Table 7 the
   "standard design choices" (log-mel input, trainable centres, bias terms; GMM backend);
   "paper" is the paper's network (the last column of Tables 3-5, the presented system of
   Table 7); Table 4's "concatenate after training" joins the spectrum-only and
   spectrogram-only networks' embeddings (`model_build.training.runs.ConcatenatedRuns`
   does the same for `evaluate`);
3. scores every system with the paper's backend (`PAPER_BACKEND`: k-means + target clips,
   cosine distance); Table 6 the paper network with the cosine and the GMM backend, each from
   the source model, the target model, their sum and the joint model; Table 7's standard
   system with the joint GMM;
4. prints per table the harmonic means over sections (paper view, %: AUC and pAUC per
   domain; mean +- std over the trainings when there are several) beside the paper's own
   figures (its dev-set means over five trainings of the full network on DCASE 2022), then
   each effect the paper reports (e.g. "no bias terms") as the change in AUC per domain, the
   paper's and ours, and whether the two agree in sign.

Progress goes to stderr while it trains and embeds (a line per epoch in a log). The default
is sized for a 2-core CPU (width 0.25, 2 machine types x 3 sections, 30 + 5 training clips per
section, 10 epochs of batch 16); `--quick` is smaller still (BENCHMARKS.md has both run
times). The synthetic set is small, so an effect of a point or two is within the noise: read
the directions of the large effects, not the decimals, and use `--trainings 5` (the paper's
count) before trusting a small one.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

# The backends' matrices are small (a GMM fits 16 256x256 covariances): BLAS threads only
# contend with TensorFlow's and each other on a busy box (one fit took 22 s instead of 1.6 s).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from paper_tables import COMPARISONS, PAPER, TITLES

DOMAINS = ("source", "target", "mixed")
METRICS = ("auc", "pauc")
TRAINED: dict[str, dict[str, Any]] = {  # system -> ModelConfig fields changed from the recipe
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
    "standard": {"inputs": "logmel128", "bias": True, "trainable_centres": True},
}
CONCATENATED = {"concat_after": ("spectrogram", "spectrum")}
SCORED_BY = {"standard": ("gmm", "joint")}
"""Trained systems not scored by the cosine joint backend: (method, variant)."""
QUICK = {
    "width": 0.25,
    "epochs": 6,
    "batch_size": 16,
    "machines": "fan,gearbox",
    "sections": 3,
    "source_train": 20,
    "target_train": 5,
    "test": 8,
}
"""`--quick`: about half the default's training work per network (see BENCHMARKS.md)."""


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="cache and result folder")
    ap.add_argument("--tables", default="3,4,5,6,7", help="which tables (comma-separated)")
    ap.add_argument(
        "--trainings",
        type=int,
        default=1,
        help="networks trained per system (seeds seed..seed+N-1); the tables show "
        "mean +- std over them (the paper: 5)",
    )
    ap.add_argument(
        "--quick",
        action="store_true",
        help="the smaller size: "
        + ", ".join(f"{k}={v}" for k, v in QUICK.items())
        + " (flags given explicitly still win)",
    )
    ap.add_argument(
        "--width", type=float, default=None, help="network width (paper: 1.0; default 0.25)"
    )
    ap.add_argument("--epochs", type=int, default=None, help="epochs (paper: 10; default 10)")
    ap.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="batch size (paper: 64; default 16 for the small set)",
    )
    ap.add_argument("--seed", type=int, default=0, help="training seed of the first network")
    ap.add_argument("--data-seed", type=int, default=7)
    ap.add_argument("--machines", default=None, help="default fan,gearbox")
    ap.add_argument("--sections", type=int, default=None, help="default 3")
    ap.add_argument("--source-train", type=int, default=None, help="default 30")
    ap.add_argument("--target-train", type=int, default=None, help="default 5")
    ap.add_argument(
        "--test", type=int, default=None, help="test clips per domain and label (default 10)"
    )
    args = ap.parse_args(argv)
    full = {
        "width": 0.25,
        "epochs": 10,
        "batch_size": 16,
        "machines": "fan,gearbox",
        "sections": 3,
        "source_train": 30,
        "target_train": 5,
        "test": 10,
    }
    for key, value in (QUICK if args.quick else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.trainings < 1:
        ap.error("--trainings: expected at least 1")
    return args


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


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:10]


def data_config(args: argparse.Namespace) -> Any:
    from model_build.synth.core import SynthConfig

    return SynthConfig(
        seed=args.data_seed,
        machines=tuple(args.machines.split(",")),
        sections=args.sections,
        source_train=args.source_train,
        target_train=args.target_train,
        test_per_label=args.test,
    )


def ensure_data(args: argparse.Namespace) -> Path:
    """The synthetic set, in a folder named after its configuration (a changed size writes
    a new set instead of reusing the old one)."""
    from model_build.synth.core import generate

    cfg = data_config(args)
    cfg.check()
    root: Path = args.out / f"data-{_digest(asdict(cfg))}"
    done = root / ".complete"
    if not done.exists():
        print(f"writing the synthetic set to {root}", file=sys.stderr, flush=True)
        generate(cfg, root, workers=2, progress=True)
        done.write_text("ok\n")
    return root


def configs(name: str, args: argparse.Namespace) -> tuple[Any, Any]:
    """(ModelConfig, TrainConfig): the paper's recipe at the CPU size, one switch changed."""
    from model_build.training.recipes import PAPER as RECIPE

    cfg = replace(RECIPE.model, width=args.width, **TRAINED[name])
    tcfg = RECIPE.train_config(
        epochs=args.epochs,
        batch_size=args.batch_size,
        seed=args.seed,
        runs=args.trainings,
        verbose=True,
    )
    return cfg, tcfg


def run_dir(name: str, data: Path, args: argparse.Namespace) -> Path:
    """Where system `name` is trained: keyed by its network, its training (the trainings
    count aside: more trainings extend the same run) and its data."""
    cfg, tcfg = configs(name, args)
    train = {k: v for k, v in asdict(tcfg).items() if k not in ("runs", "verbose")}
    key = _digest({"model": cfg.to_dict(), "train": train, "data": data.name})
    path: Path = args.out / "runs" / f"{name}-{key}"
    return path


def train_system(name: str, data: Path, args: argparse.Namespace) -> Path:
    from model_build.training.train import train_run

    cfg, tcfg = configs(name, args)
    return train_run([data], run_dir(name, data, args), cfg, tcfg, recipe="paper")


def embeddings(
    name: str, run: Path, train: list[Any], test: list[Any], trainings: int
) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) embeddings of the run's first `trainings` models, (n, N, D), cached."""
    cache = run / f"embeddings-{trainings}.npz"
    if cache.exists():
        z = np.load(cache)
        return z["train"], z["test"]
    from model_build.evaluation.evaluate import embed_with_progress
    from model_build.training.runs import load_run

    r = load_run(run)
    r.models = r.models[:trainings]
    tr = np.asarray(embed_with_progress(r, train, f"embedding {name}, train", True))
    te = np.asarray(embed_with_progress(r, test, f"embedding {name}, test", True))
    np.savez(cache, train=tr, test=te)
    return tr, te


def summary(test: list[Any], scores: np.ndarray) -> dict[str, dict[str, float | None]]:
    from model_build.evaluation.evaluate import evaluate_scores

    sm = evaluate_scores(test, scores).summary
    return {"auc": dict(sm.auc), "pauc": dict(sm.pauc)}


def _scores(
    kind: str, variant: str, tr: np.ndarray, train: list[Any], te: np.ndarray, test: list[Any]
) -> np.ndarray:
    from edge_agent.errors import choice
    from edge_agent.scoring.backend import COSINE_VARIANTS, PAPER_BACKEND
    from model_build.evaluation.evaluate import backend_scores
    from model_build.evaluation.gmm import gmm_scores

    cfg = replace(PAPER_BACKEND, variant=choice("variant", variant, COSINE_VARIANTS))
    bs = (
        gmm_scores([tr], train, [te], test, cfg)
        if kind == "gmm"
        else backend_scores(tr, train, te, test, cfg)
    )
    return bs.scores


def score_all(
    tables: Sequence[str],
    embs: dict[str, tuple[np.ndarray, np.ndarray]],
    train: list[Any],
    test: list[Any],
) -> dict[str, list[dict[str, Any]]]:
    """system -> one summary (harmonic means, paper view) per training."""
    out: dict[str, list[dict[str, Any]]] = {}
    for s in systems_of(tables):
        if s in TRAINED or s in CONCATENATED:
            parts = CONCATENATED.get(s, (s,))
            kind, variant = SCORED_BY.get(s, ("cosine", "joint"))
        else:
            parts = ("paper",)
            kind, variant = s.split("_")
        n = min(len(embs[p][0]) for p in parts)
        out[s] = []
        for k in range(n):
            tr = np.concatenate([embs[p][0][k] for p in parts], axis=-1)
            te = np.concatenate([embs[p][1][k] for p in parts], axis=-1)
            out[s].append(summary(test, _scores(kind, variant, tr, train, te, test)))
    return out


def mean_std(runs: Sequence[dict[str, Any]]) -> dict[str, dict[str, tuple[float, float] | None]]:
    """metric -> domain -> (mean, std) over the trainings in %, None where undefined."""
    out: dict[str, dict[str, tuple[float, float] | None]] = {}
    for metric in METRICS:
        out[metric] = {}
        for dom in DOMAINS:
            vals = [r[metric][dom] for r in runs if r[metric][dom] is not None]
            out[metric][dom] = (
                (100 * float(np.mean(vals)), 100 * float(np.std(vals))) if vals else None
            )
    return out


def _cell(v: tuple[float, float] | None, spread: bool) -> str:
    if v is None:
        return "-"
    return f"{v[0]:.1f}+-{v[1]:.1f}" if spread else f"{v[0]:.1f}"


def format_table(table: str, ours: dict[str, list[dict[str, Any]]]) -> str:
    """Ours (AUC and pAUC per domain) beside the paper's own dev figures."""
    n = max(len(v) for s, v in ours.items() if s in PAPER[table])
    spread = n > 1
    w = 10 if spread else 8
    short = {"source": "src", "target": "tgt", "mixed": "mix"}
    cols = [f"AUC {short[d]}" for d in DOMAINS] + [f"pAUC {short[d]}" for d in DOMAINS]
    head = (
        f"{'system':<18} "
        + " ".join(f"{c:>{w}}" for c in cols)
        + "   | "
        + " ".join(f"{c:>8}" for c in cols)
    )
    runs = f"mean +- std over {n} trainings" if spread else "one training"
    title = (
        f"ours: synthetic set, {runs}   | the paper's own figures: DCASE 2022 dev, "
        "mean of 5 trainings"
    )
    lines = [f"== {TITLES[table]}", title, head, "-" * len(head)]
    for s, paper in PAPER[table].items():
        o, p = mean_std(ours[s]), paper["dev"]
        mine = [_cell(o[m][d], spread) for m in METRICS for d in DOMAINS]
        theirs = [p[d][i] for i in range(2) for d in DOMAINS]
        lines.append(
            f"{s:<18} "
            + " ".join(f"{c:>{w}}" for c in mine)
            + "   | "
            + " ".join(f"{v:>8.1f}" for v in theirs)
        )
    return "\n".join(lines)


CLEAR = 0.5
"""A paper effect smaller than this (AUC points, dev set) counts as no clear direction."""


def directions(
    tables: Sequence[str], ours: dict[str, list[dict[str, Any]]]
) -> tuple[str, dict[str, int]]:
    """Each effect the paper reports, its AUC change per domain, the paper's and ours (mean
    over trainings)."""
    lines = [
        (
            f"== direction of each effect: AUC change (points), the paper's dev -> ours "
            f"(agree: same sign; paper changes under {CLEAR} count as no direction)"
        ),
        f"{'effect':<61} {'source':>14} {'target':>14} {'mixed':>14}",
    ]
    tally = {"agree": 0, "differ": 0, "unclear": 0}
    for table, effect, base, alt in COMPARISONS:
        if table not in tables:
            continue
        cells = []
        a_all, b_all = mean_std(ours[alt])["auc"], mean_std(ours[base])["auc"]
        for dom in DOMAINS:
            p = PAPER[table][alt]["dev"][dom][0] - PAPER[table][base]["dev"][dom][0]
            a, b = a_all[dom], b_all[dom]
            if a is None or b is None:
                cells.append(f"{p:+5.1f} ->   -  ")
                continue
            o = a[0] - b[0]
            verdict = "~" if abs(p) < CLEAR else ("=" if np.sign(p) == np.sign(o) else "x")
            if dom == "mixed":
                tally[{"~": "unclear", "=": "agree", "x": "differ"}[verdict]] += 1
            cells.append(f"{p:+5.1f} ->{o:+5.1f} {verdict}")
        lines.append(f"T{table} {effect:<58} " + " ".join(f"{c:>14}" for c in cells))
    lines.append(
        f"mixed-domain AUC: {tally['agree']} effects agree in direction, "
        f"{tally['differ']} differ, {tally['unclear']} without a clear paper direction "
        "(= agree, x differ, ~ paper effect too small)"
    )
    return "\n".join(lines), tally


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)  # before TensorFlow loads: a wrong flag fails at once
    tables = [t.strip() for t in args.tables.split(",") if t.strip()]
    unknown = [t for t in tables if t not in PAPER]
    if unknown:
        print(
            f"error: --tables: expected some of {', '.join(PAPER)}, got {unknown}", file=sys.stderr
        )
        return 2
    from model_build import quiet

    quiet.configure(verbose=False)
    quiet.tensorflow()
    from model_build.data.dataset import scan
    from model_build.evaluation.evaluate import split_clips

    t0 = time.monotonic()
    args.out.mkdir(parents=True, exist_ok=True)
    data = ensure_data(args)
    train, test = split_clips(scan([data]))
    embs: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    need = trained_needed(tables)
    for i, name in enumerate(need):
        t1 = time.monotonic()
        print(
            f"[{i + 1}/{len(need)}] {name}: {args.trainings} training(s)",
            file=sys.stderr,
            flush=True,
        )
        run = train_system(name, data, args)
        embs[name] = embeddings(name, run, train, test, args.trainings)
        print(
            f"[{i + 1}/{len(need)}] {name}: {time.monotonic() - t1:.0f} s",
            file=sys.stderr,
            flush=True,
        )
    ours = score_all(tables, embs, train, test)
    text = "\n\n".join(format_table(t, ours) for t in tables)
    dirs, tally = directions(tables, ours)
    minutes = (time.monotonic() - t0) / 60
    size = (
        f"{len(train)} training and {len(test)} test clips ({args.machines} x "
        f"{args.sections} sections), width {args.width}, {args.epochs} epochs of batch "
        f"{args.batch_size}, {args.trainings} training(s) per system"
        f"{' (--quick)' if args.quick else ''}; {minutes:.1f} min"
    )
    report = f"{text}\n\n{dirs}\n\n{size}"
    print(report)
    (args.out / "ablations.txt").write_text(report + "\n")
    (args.out / "ablations.json").write_text(
        json.dumps(
            {
                "args": {k: str(v) for k, v in vars(args).items()},
                "tables": tables,
                "ours": ours,
                "mean_std": {s: mean_std(v) for s, v in ours.items()},
                "tally": tally,
                "minutes": minutes,
            },
            indent=2,
        )
        + "\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
