"""The detection-quality suite: three synthetic families x a data-size sweep x seeds, with the
classical floor and the paper's single-model recipe beside the shipped system.

    nice .venv/bin/python benchmarks/quality.py --out runs/quality            # everything
    nice .venv/bin/python benchmarks/quality.py --out runs/quality --quick    # iteration

What it does (every step cached under --out, so an interrupted run resumes):

1. writes one data set per generator family (model_build.synth: `harmonic`, `broadband`,
   `cyclic`; 4 machine types x 3 sections, 300 source + 10 target training clips and 25 test
   clips per domain and label per section) and, per size N of the sweep, a view of it that
   holds the first N source training clips of every section (targets and tests unchanged);
2. per (family, size, seed) and system:
   * `floor`: the classical floor, time-mean + time-std of the log spectrogram scored by the
     paper's backend (model_build.evaluation.baseline);
   * `paper`: the paper's recipe, one model (width 1.0, 10 epochs, batch 64, no FeatEx), the
     paper's backend (k-means + target clips, cosine distance);
   * `default`: what `model-build train` + `model-build export` ship by default (the model
     and training defaults, `--runs` models, the default backend, the classical components);
   * ablation systems by name (`--systems`, see SYSTEMS);
   trains with `model_build.training.train.train_run`, embeds train and test clips with the float
   Keras models (`model_build.training.runs`), scores with
   `model_build.evaluation.evaluate.backend_scores`;
3. prints and writes (OUT/report.md, OUT/results.json) DCASE harmonic means over sections
   (paper view: per domain AUC/pAUC, "mixed" = both domains), mean +- std over seeds, per
   family and size, the mean over families, and the default's margin over the floor.

Nothing is tuned on the test clips: data seeds, sizes and recipes are fixed before training.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from edge_agent.scoring.backend import PAPER_BACKEND, BackendConfig, view_weights
from edge_agent.scoring.classical import DEFAULT_CLASSICAL
from edge_agent.scoring.pseudo import FIRST_KINDS

FAMILIES = ("harmonic", "broadband", "cyclic", "random", "texture")
SIZES = (10, 30, 100, 300)
DEFAULT_SIZE = 100
SEEDS = (0, 1, 2)
DATA_SEED = 11
TARGET_TRAIN = 10
TEST_PER_LABEL = 25
DOMAINS = ("source", "target", "mixed")
REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"


@dataclass(frozen=True)
class Recipe:
    """A learned system: how its models are trained and how their embeddings are scored."""

    model: dict[str, Any] = field(default_factory=dict)  # ModelConfig overrides
    train: dict[str, Any] = field(default_factory=dict)  # TrainConfig overrides
    runs: int | None = None  # models (None: model_build's default ensemble size; 0: none)
    backend: BackendConfig = field(default_factory=BackendConfig)
    classical: tuple[str, ...] = tuple(e["kind"] for e in DEFAULT_CLASSICAL)  # kinds used

    def classical_entries(self) -> list[dict[str, Any]]:
        from edge_agent.scoring.classical import DEFAULT_CLASSICAL

        return [dict(e) for e in DEFAULT_CLASSICAL if e["kind"] in self.classical]

    @property
    def n_runs(self) -> int:
        from model_build.training.train import DEFAULT_RUNS

        return DEFAULT_RUNS if self.runs is None else self.runs

    def training(self) -> dict[str, Any]:
        """The resolved model and training configuration (today's defaults + overrides)."""
        from model_build.training.model import ModelConfig
        from model_build.training.train import TrainConfig

        train = asdict(TrainConfig(**self.train))
        for k in ("seed", "runs", "verbose", "strict"):
            train.pop(k)
        # switches added after models were cached: absent while off, so the cache stays valid
        for k, off in (("average", 0.0), ("perturb_classes", 0.0)):
            if train.get(k) == off:
                train.pop(k)
        return {"model": ModelConfig(**self.model).to_dict(), "train": train, "runs": self.n_runs}

    def training_key(self) -> str:
        """Identifies the trained models: recipes that train alike share them, and a change
        of the product's defaults retrains instead of reusing stale models."""
        return _digest(self.training())

    def scoring_key(self) -> str:
        """Identifies a cell's scores: the models, the backend settings and classical
        components, and the code that fits and fuses the backend (a change of how the backend
        scores, under the same settings, re-scores instead of reading stale cells)."""
        return _digest(
            {
                "training": self.training() if self.n_runs else {},
                "backend": self.backend.to_dict(),
                "classical": self.classical_entries(),
                "backend_code": backend_code(),
            }
        )


def backend_code() -> str:
    """A digest of the modules that turn cached embeddings into scores (the pseudo-anomalies'
    plan among them)."""
    from edge_agent.scoring import backend, fusion, pseudo

    h = hashlib.sha256()
    for module in (backend, fusion, pseudo):
        h.update(Path(str(module.__file__)).read_bytes())
    return h.hexdigest()[:12]


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:12]


FIXED = BackendConfig(weighting="fixed")
"""The default backend with the fixed weights shipped before issue 19 (every kind weighs 1)."""


def _paper() -> Recipe:
    """`model_build.training.recipes.PAPER` (the one definition of the paper's recipe) as a
    single-model system of this suite, whatever the product's defaults become."""
    from model_build.training.recipes import PAPER as RECIPE
    from model_build.training.recipes import TRAIN_FIELDS

    return Recipe(
        RECIPE.model.to_dict(),
        {k: getattr(RECIPE.train, k) for k in TRAIN_FIELDS},
        runs=1,
        backend=PAPER_BACKEND,
        classical=(),
    )


PAPER = _paper()
"""The paper's single-model recipe."""

SYSTEMS: dict[str, Recipe | None] = {
    "floor": None,
    "paper": PAPER,
    "default": Recipe(),
    # ablations of the default, one switch each (BENCHMARKS.md "What each part does");
    # scoring-only ones reuse the default's trained models and cost seconds
    "default-no-classical": Recipe(classical=()),
    "default-fixed": Recipe(backend=FIXED),
    "bands-only": Recipe(runs=0, classical=("bands",)),
    "rhythm-only": Recipe(runs=0, classical=("rhythm",)),
    "default-no-rhythm": Recipe(classical=("bands", "dynamics")),
    "default-no-dynamics": Recipe(classical=("bands", "rhythm")),
    "default-no-density": Recipe(backend=BackendConfig(density_k=0)),
    "default-no-deviation": Recipe(backend=BackendConfig(deviation=0)),
    "default-density1": Recipe(backend=BackendConfig(density_k=1)),
    "default-density10": Recipe(backend=BackendConfig(density_k=10)),
    "default-paper-backend": Recipe(backend=PAPER_BACKEND, classical=()),
    "classical-only": Recipe(runs=0, backend=FIXED),
    "default-no-featex": Recipe(model={"featex": False}),
    "default-width1": Recipe(model={"width": 1.0}),
    "default-no-augment": Recipe(train={"augment": False}),
    "default-x3": Recipe(runs=3),
    # seed stability (issue 19): checkpoint averaging over the last half of the epochs, and a
    # quarter-width network
    "default-avg": Recipe(train={"average": 0.5}),
    "default-width025": Recipe(model={"width": 0.25}),
    # more optimiser steps on small data: N = 30 is 480 clips, 8 steps an epoch, 80 in all
    "default-steps240": Recipe(train={"min_steps": 240}),
    # self-supervised classes: perturbed copies of the training clips as classes of their own
    "default-perturb05": Recipe(train={"perturb_classes": 0.5}),
    # the default before the spectral stability and the wobble copies (issue 19, seventh
    # session): six classical components, 48 copies of six kinds
    "previous": Recipe(
        backend=BackendConfig(pseudo_count=48, pseudo_kinds=FIRST_KINDS, transform="none"),
        classical=tuple(
            e["kind"] for e in DEFAULT_CLASSICAL if e["kind"] not in ("stability", "onsets")
        ),
    ),
    # the stability with a deviation score, as every other classical component has
    "default-stability-deviation": Recipe(backend=BackendConfig(no_deviation=())),
    "default-no-stability": Recipe(
        classical=tuple(e["kind"] for e in DEFAULT_CLASSICAL if e["kind"] != "stability")
    ),
    # the default before the onset rhythm (issue 19, eighth session): seven classical
    # components; and the onset rhythm with a deviation score
    "default-no-onsets": Recipe(
        classical=tuple(e["kind"] for e in DEFAULT_CLASSICAL if e["kind"] != "onsets")
    ),
    "default-onsets-deviation": Recipe(backend=BackendConfig(no_deviation=("stability",))),
    # the standardised scores fused as they are (the default before 2026-12-05's ninth
    # session), and through softplus instead of the Gaussian surprise
    "default-no-transform": Recipe(backend=BackendConfig(transform="none")),
    "default-softplus": Recipe(backend=BackendConfig(transform="softplus")),
    # the deviation score's K (the mean of the K largest per-feature |z|) under the surprise
    "default-deviation2": Recipe(backend=BackendConfig(deviation=2)),
    "default-deviation4": Recipe(backend=BackendConfig(deviation=4)),
}


# ---------------------------------------------------------------- data


def family_data(out: Path, family: str, max_size: int) -> Path:
    from model_build.synth.core import SynthConfig, generate

    root = out / "data" / family
    meta = root / "synth.json"
    if meta.exists() and json.loads(meta.read_text())["config"]["source_train"] >= max_size:
        return root
    t = time.perf_counter()
    generate(
        SynthConfig(
            seed=DATA_SEED,
            family=family,
            sections=3,
            source_train=max_size,
            target_train=TARGET_TRAIN,
            test_per_label=TEST_PER_LABEL,
        ),
        root,
        workers=2,
    )
    print(f"data {family}: {time.perf_counter() - t:.0f} s", flush=True)
    return root


def size_view(out: Path, family: str, root: Path, size: int) -> Path:
    """Symlinks: the first `size` source training clips per section, all targets and tests."""
    dst = out / "views" / f"{family}_n{size}"
    if (dst / ".done").exists():
        return dst
    for mdir in sorted(p for p in root.iterdir() if p.is_dir()):
        for split in ("train", "test"):
            folder = dst / mdir.name / split
            folder.mkdir(parents=True, exist_ok=True)
            for f in sorted((mdir / split).glob("*.wav")):
                parts = f.name.split("_")  # section_XX_domain_split_label_NNNN_...
                if split == "train" and parts[2] == "source" and int(parts[5]) >= size:
                    continue
                link = folder / f.name
                if not link.exists():
                    link.symlink_to(f.resolve())
    (dst / ".done").write_text("")
    return dst


# ---------------------------------------------------------------- cached embeddings


def _cache_key(path: Path) -> str:
    return str(path.resolve())


def add_missing_features(
    store: dict[str, Any], key: str, wave: np.ndarray, feats: Sequence[Any]
) -> None:
    """`store[key#i]` = classical component i's features of `wave`, for the i not stored yet
    (a component added to the default set computes its own; the |STFT| only when one needs it)."""
    from edge_agent.scoring.frontend import DEFAULT_SPEC, stft_magnitude

    mag = None
    for i, f in enumerate(feats):
        if f"{key}#{i}" in store:
            continue
        if not f.wave and mag is None:
            mag = stft_magnitude(wave, DEFAULT_SPEC)
        store[f"{key}#{i}"] = f.fn(wave if f.wave else mag)


def classical_embeddings(
    out: Path, family: str, clips: Sequence[Any], kind: str
) -> list[np.ndarray]:
    """Per-clip classical features, cached per family by file: `floor` (baseline) or
    `classical` (the shipped classical components)."""
    from edge_agent.audio.files import load_clip
    from edge_agent.scoring.classical import classical_features
    from edge_agent.scoring.frontend import DEFAULT_SPEC
    from model_build.evaluation.baseline import baseline_features

    cache = out / "features" / f"{family}_{kind}.npz"
    store: dict[str, Any] = dict(np.load(cache)) if cache.exists() else {}
    feats = classical_features(DEFAULT_SPEC)
    n = 1 if kind == "floor" else len(feats)
    todo = [c for c in clips if any(_cache_key(c.path) + f"#{i}" not in store for i in range(n))]
    for c in todo:
        wave = load_clip(c.path, DEFAULT_SPEC)
        if kind == "floor":
            store[_cache_key(c.path) + "#0"] = baseline_features(wave, DEFAULT_SPEC)
        else:
            add_missing_features(store, _cache_key(c.path), wave, feats)
    if todo:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, **store)
    return [np.stack([store[_cache_key(c.path) + f"#{i}"] for c in clips]) for i in range(n)]


def learned_embeddings(
    out: Path,
    family: str,
    size: int,
    seed: int,
    recipe: Recipe,
    view: Path,
    train: Sequence[Any],
    test: Sequence[Any],
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """(n_models, N_train, D), (n_models, N_test, D) Keras embeddings, training if needed."""
    import keras

    from model_build.training.model import ModelConfig
    from model_build.training.runs import load_run, read_meta
    from model_build.training.train import TrainConfig, train_run

    runs = recipe.n_runs
    tag = recipe.training_key()
    emb_file = out / "emb" / family / f"n{size}" / tag / f"s{seed}.npz"
    if emb_file.exists():
        z = np.load(emb_file, allow_pickle=False)
        return z["train"], z["test"], json.loads(str(z["info"]))
    run = out / "runs" / family / f"n{size}" / tag / f"s{seed}"
    (run.parent / "recipe.json").parent.mkdir(parents=True, exist_ok=True)
    (run.parent / "recipe.json").write_text(json.dumps(recipe.training(), indent=1))
    t = time.perf_counter()
    train_run(
        [view],
        run,
        ModelConfig(**recipe.model),
        TrainConfig(**{**recipe.train, "seed": 100 * seed, "runs": runs, "verbose": False}),
    )
    t_train = time.perf_counter() - t
    r = load_run(run)
    t = time.perf_counter()
    tr, te = r.embed_clips(list(train)), r.embed_clips(list(test))
    info = {
        "train_s": t_train,
        "embed_s": time.perf_counter() - t,
        "epochs": [m["epochs_done"] for m in read_meta(run)["models"]],
    }
    emb_file.parent.mkdir(parents=True, exist_ok=True)
    np.savez(emb_file, train=tr, test=te, info=json.dumps(info))
    keras.backend.clear_session()
    return tr, te, info


# ---------------------------------------------------------------- cached pseudo-anomalies


def pseudo_plans(
    train: Sequence[Any], count: int, seed: int, kinds: Sequence[str] | None = None
) -> dict[str, tuple[np.ndarray, list[Any]]]:
    """Per section: (rows of its normal clips in `train`, source first; the planned copies),
    exactly as model_build.evaluation.evaluate.pseudo_sets / scoring.pseudo.section_pseudo plan
    them (`kinds`: the plan's, default the product's)."""
    from edge_agent.scoring.pseudo import KINDS, plan, section_seed
    from model_build.evaluation.scores import section_rows

    out = {}
    for sec in sorted({c.section_id for c in train}):
        src, tgt = section_rows(train, sec)
        rows = np.concatenate([src, tgt])
        if rows.size >= 2:
            out[sec] = (
                rows,
                plan(int(rows.size), count, section_seed(sec, seed), kinds or KINDS),
            )
    return out


def _pseudo_key(clip: Any, item: Any) -> str:
    return f"{_cache_key(clip.path)}#{item.kind}#{item.seed}"


def pseudo_features(
    out: Path,
    family: str,
    size: int,
    seed: int,
    recipe: Recipe | None,
    train: Sequence[Any],
    count: int,
    kinds: Sequence[str] | None = None,
) -> dict[str, tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]]:
    """Per section: (origins, learned pseudo embeddings per model, classical pseudo features
    per classical component), cached: classical per family by (clip, kind, seed), learned in
    the cell's embedding file under the plan's count and kinds (the trained run is reloaded
    when they are missing)."""
    from edge_agent.scoring.classical import classical_features
    from edge_agent.scoring.frontend import DEFAULT_SPEC
    from edge_agent.scoring.pseudo import FIRST_KINDS, KINDS

    kinds = tuple(kinds or KINDS)
    plans = pseudo_plans(train, count, seed, kinds)
    # the six-kind plan's entries were cached before plans had a choice of kinds
    plan_key = f"pseudo_{count}" + ("" if kinds == FIRST_KINDS else "_" + "+".join(kinds))
    order = [(sec, j) for sec, (_, items) in plans.items() for j in range(len(items))]
    n_feats = len(classical_features(DEFAULT_SPEC))
    ccache = out / "features" / f"{family}_pseudo.npz"
    cstore: dict[str, Any] = dict(np.load(ccache)) if ccache.exists() else {}
    emb_file = None
    learned = None
    if recipe is not None and recipe.n_runs:
        emb_file = out / "emb" / family / f"n{size}" / recipe.training_key() / f"s{seed}.npz"
        learned = dict(np.load(emb_file, allow_pickle=False)).get(plan_key)
    need_c = [
        (sec, j)
        for sec, j in order
        if _pseudo_key(train[plans[sec][0][plans[sec][1][j].origin]], plans[sec][1][j])
        + f"#{n_feats - 1}"
        not in cstore
    ]
    if need_c or (learned is None and emb_file is not None):
        run_dir = None
        if learned is None and recipe is not None and emb_file is not None:
            run_dir = out / "runs" / family / f"n{size}" / recipe.training_key() / f"s{seed}"
        fresh = _embed_pseudo(
            plans, train, order if run_dir is not None else need_c, cstore, run_dir
        )
        if need_c:
            ccache.parent.mkdir(parents=True, exist_ok=True)
            np.savez(ccache, **cstore)
        if fresh is not None and emb_file is not None:
            learned = fresh
            z = dict(np.load(emb_file, allow_pickle=False))
            z[plan_key] = learned
            np.savez(emb_file, **z)
    result = {}
    pos = 0
    for sec, (rows, items) in plans.items():
        origins = np.asarray([it.origin for it in items], dtype=np.int64)
        keys = [_pseudo_key(train[rows[it.origin]], it) for it in items]
        cls = [np.stack([cstore[k + f"#{c}"] for k in keys]) for c in range(n_feats)]
        lrn = [] if learned is None else list(learned[:, pos : pos + len(items)])
        pos += len(items)
        result[sec] = (origins, lrn, cls)
    return result


def _embed_pseudo(
    plans: dict[str, tuple[np.ndarray, list[Any]]],
    train: Sequence[Any],
    todo: Sequence[tuple[str, int]],
    cstore: dict[str, Any],
    run_dir: Path | None,
) -> np.ndarray | None:
    """Paint the copies in `todo`, add their missing classical features to `cstore`, and with
    `run_dir` embed them with that trained run ((n_models, M, D) in `todo`'s order)."""
    from edge_agent.audio.files import load_clip
    from edge_agent.scoring.classical import classical_features
    from edge_agent.scoring.frontend import DEFAULT_SPEC
    from edge_agent.scoring.pseudo import perturb

    feats = classical_features(DEFAULT_SPEC)
    run = None
    if run_dir is not None:
        from model_build.training.runs import load_run

        run = load_run(run_dir)
    embs = []
    for i in range(0, len(todo), 16):
        waves = []
        for sec, j in todo[i : i + 16]:
            rows, items = plans[sec]
            clip = train[rows[items[j].origin]]
            waves.append(
                perturb(load_clip(clip.path, DEFAULT_SPEC), items[j], DEFAULT_SPEC.sample_rate)
            )
            add_missing_features(cstore, _pseudo_key(clip, items[j]), waves[-1], feats)
        if run is not None:
            embs.append(run.embed_waves(np.stack(waves)))
    if run is None:
        return None
    import keras

    keras.backend.clear_session()
    return np.concatenate(embs, axis=1)


# ---------------------------------------------------------------- scoring


def summary(test: Sequence[Any], scores: np.ndarray) -> dict[str, Any]:
    from model_build.evaluation.evaluate import evaluate_scores

    ev = evaluate_scores(test, scores)
    return {
        "auc": ev.summary.auc,
        "pauc": ev.summary.pauc,
        "official": ev.summary.official_score,
        "sections": {m.section: m.auc["mixed"] for m in ev.sections},
    }


def run_system(
    out: Path,
    family: str,
    size: int,
    seed: int,
    name: str,
    view: Path,
    train: Sequence[Any],
    test: Sequence[Any],
) -> dict[str, Any]:
    """One cell: the system's harmonic means on the view's test clips (cached)."""
    from model_build.evaluation.evaluate import backend_scores

    recipe = SYSTEMS[name]
    key = recipe.scoring_key() if recipe is not None else "floor"
    cell = out / "cells" / family / f"n{size}" / key / f"s{seed}.json"
    if cell.exists():
        return dict(json.loads(cell.read_text()))
    t = time.perf_counter()
    info: dict[str, Any] = {}
    kinds: list[str] = []
    if recipe is None:
        emb = classical_embeddings(out, family, [*train, *test], "floor")[0]
        trs, tes = [emb[: len(train)]], [emb[len(train) :]]
        config = replace(PAPER_BACKEND, seed=seed)
    else:
        trs, tes = [], []
        if recipe.n_runs:
            tr, te, info = learned_embeddings(out, family, size, seed, recipe, view, train, test)
            trs, tes, kinds = list(tr), list(te), ["model"] * len(tr)
        cls = classical_embeddings(out, family, [*train, *test], "classical")
        for entry, c in zip(DEFAULT_CLASSICAL, cls, strict=True):
            if entry["kind"] in recipe.classical:
                trs.append(c[: len(train)])
                tes.append(c[len(train) :])
                kinds.append(entry["kind"])
        config = replace(recipe.backend, seed=seed)
    pseudo = None
    if recipe is not None and config.weighting == "pseudo" and len(set(kinds)) > 1:
        from edge_agent.scoring.pseudo import PseudoSet

        feats = pseudo_features(
            out, family, size, seed, recipe, train, config.pseudo_count, config.pseudo_kinds
        )
        wanted = [i for i, e in enumerate(DEFAULT_CLASSICAL) if e["kind"] in recipe.classical]
        pseudo = {
            sec: PseudoSet([*lrn, *[cls[i] for i in wanted]], origins)
            for sec, (origins, lrn, cls) in feats.items()
        }
    bs = backend_scores(
        trs,
        train,
        tes,
        test,
        config,
        view_weights(kinds) if recipe is not None else None,
        pseudo,
        kinds if recipe is not None else None,
    )
    result = {
        **summary(test, bs.scores),
        "info": info,
        "score_s": time.perf_counter() - t,
        "weights": {
            sec: [round(c.weight, 4) for c in b.components] for sec, b in bs.backends.items()
        },
        "deviation_weights": {
            sec: [round(c.dev_weight, 4) for c in b.components] for sec, b in bs.backends.items()
        },
    }
    cell.parent.mkdir(parents=True, exist_ok=True)
    cell.write_text(json.dumps(result))
    return result


# ---------------------------------------------------------------- report


def _ms(values: Sequence[float]) -> str:
    v = 100 * np.asarray(values, dtype=np.float64)
    return f"{v.mean():5.1f} +- {v.std():3.1f}" if len(v) > 1 else f"{v.mean():5.1f}"


def report(
    results: dict[str, Any],
    families: Sequence[str],
    sizes: Sequence[int],
    systems: Sequence[str],
    seeds: Sequence[int],
) -> str:
    """Markdown: per family and size, mixed AUC (and source/target, pAUC) mean +- std."""
    lines = []

    def cell(fam: str, n: int, sysname: str, key: str, dom: str) -> list[float]:
        return [
            results[fam][str(n)][sysname][str(s)][key][dom]
            for s in seeds
            if str(s) in results.get(fam, {}).get(str(n), {}).get(sysname, {})
        ]

    head = "| family | N | " + " | ".join(systems) + " | default - floor |"
    for key, title in (("auc", "AUC"), ("pauc", "pAUC")):
        for dom in DOMAINS:
            lines += [
                (
                    f"\n{title} {dom} (%, harmonic mean over sections, mean +- std over "
                    f"{len(seeds)} seeds)\n"
                ),
                head,
                "|---|---|" + "---|" * (len(systems) + 1),
            ]
            for n in sizes:
                for fam in [*families, "mean"]:
                    row = []
                    for s in systems:
                        if fam == "mean":
                            per_seed = [
                                np.mean(
                                    [results[f][str(n)][s][str(sd)][key][dom] for f in families]
                                )
                                for sd in seeds
                                if all(
                                    str(sd) in results.get(f, {}).get(str(n), {}).get(s, {})
                                    for f in families
                                )
                            ]
                        else:
                            per_seed = cell(fam, n, s, key, dom)
                        row.append(_ms(per_seed) if per_seed else "-")
                    d = "-"
                    if "default" in systems and "floor" in systems:
                        fams = families if fam == "mean" else [fam]
                        try:
                            diff = [
                                np.mean(
                                    [
                                        results[f][str(n)]["default"][str(sd)][key][dom]
                                        - results[f][str(n)]["floor"][str(sd)][key][dom]
                                        for f in fams
                                    ]
                                )
                                for sd in seeds
                            ]
                            d = f"{100 * np.mean(diff):+5.1f}"
                        except KeyError:
                            pass
                    lines.append(f"| {fam} | {n} | " + " | ".join(row) + f" | {d} |")
    return "\n".join(lines)


# ---------------------------------------------------------------- real clips (smoke)


def real_smoke(out: Path, results_seed_run: Path | None) -> str:
    """The shipped system's components on the real DCASE 2023 sample clips: per machine type,
    the backend fitted on its two training clips (weights decided from their pseudo-anomalies,
    as export does) scores its test clips. Too few clips for AUC claims: it shows that real
    audio (12 s clips included) goes through every stage."""
    folder = REAL / "dcase2023-dev-mixed"
    if not folder.is_dir():
        return "real clips: not available (../shared/data/real absent), skipped"
    from edge_agent.scoring.frontend import DEFAULT_SPEC
    from model_build.data.dataset import scan
    from model_build.evaluation.baseline import ClassicalEmbedder
    from model_build.evaluation.evaluate import (
        backend_scores,
        joined_waves,
        pseudo_sets,
        split_clips,
    )

    root = out / "real"
    for f in sorted(folder.glob("*.wav")):
        machine, split, name = f.name.split("_", 2)
        (root / machine / split).mkdir(parents=True, exist_ok=True)
        link = root / machine / split / name
        if not link.exists():
            link.symlink_to(f)
    train, test = split_clips(scan([root]))
    cls = classical_embeddings(out, "real", [*train, *test], "classical")
    trs, tes = [c[: len(train)] for c in cls], [c[len(train) :] for c in cls]
    classical = ClassicalEmbedder(DEFAULT_SPEC)
    config = BackendConfig()
    if results_seed_run is not None:
        from model_build.training.runs import load_run

        r = load_run(results_seed_run)
        trs = list(r.embed_clips(train)) + trs
        tes = list(r.embed_clips(test)) + tes
        pseudo = pseudo_sets(joined_waves(r, classical), train, r.spec, config)
    else:
        pseudo = pseudo_sets(classical.embed_waves, train, DEFAULT_SPEC, config)
    kinds = ["model"] * (len(trs) - len(cls)) + [e["kind"] for e in DEFAULT_CLASSICAL]
    bs = backend_scores(trs, train, tes, test, config, view_weights(kinds), pseudo, kinds)
    rows = [
        "| clip | label | score | threshold | weights (" + " / ".join(dict.fromkeys(kinds)) + ") |",
        "|---|---|---|---|---|",
    ]
    for c, s in zip(test, bs.scores, strict=True):
        w = " / ".join(f"{x.weight:.2f}" for x in bs.backends[c.section_id].components)
        rows.append(
            f"| {c.machine}/{c.path.name} | {c.label} | {s:.2f} | "
            f"{bs.thresholds[c.section_id]:.2f} | {w} |"
        )
    return "\n".join(rows)


# ---------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="folder for data, runs and results")
    ap.add_argument(
        "--quick", action="store_true", help=f"one size ({30}) and one seed: ~1 h instead of many"
    )
    ap.add_argument("--families", default=",".join(FAMILIES))
    ap.add_argument("--sizes", default=None, help="comma-separated source clips per section")
    ap.add_argument("--seeds", default=None)
    ap.add_argument("--systems", default="floor,paper,default")
    ap.add_argument("--no-real", action="store_true", help="skip the real-clip smoke check")
    args = ap.parse_args(argv)
    families = [f for f in args.families.split(",") if f]
    sizes = (
        [int(s) for s in args.sizes.split(",")]
        if args.sizes
        else ([30] if args.quick else list(SIZES))
    )
    seeds = (
        [int(s) for s in args.seeds.split(",")]
        if args.seeds
        else ([0] if args.quick else list(SEEDS))
    )
    systems = [s for s in args.systems.split(",") if s]
    unknown = [s for s in systems if s not in SYSTEMS]
    if unknown:
        ap.error(f"--systems: unknown {unknown}; known: {', '.join(SYSTEMS)}")

    from model_build import quiet
    from model_build.data.dataset import scan
    from model_build.evaluation.evaluate import split_clips

    quiet.configure(verbose=False)  # our lines, not TensorFlow's start-up notices
    if any((r := SYSTEMS[s]) is not None and r.n_runs for s in systems):
        quiet.tensorflow()  # its import lines (oneDNN, absl) captured now, not mid-table
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    results: dict[str, Any] = {}
    # default size first, so the main table fills before the rest of the sweep
    order = sorted(sizes, key=lambda n: (n != DEFAULT_SIZE, n))
    for n in order:
        for fam in families:
            root = family_data(out, fam, max(sizes))
            view = size_view(out, fam, root, n)
            train, test = split_clips(scan([view]))
            for seed in seeds:
                for name in systems:
                    t = time.perf_counter()
                    res = run_system(out, fam, n, seed, name, view, train, test)
                    results.setdefault(fam, {}).setdefault(str(n), {}).setdefault(name, {})[
                        str(seed)
                    ] = res
                    print(
                        f"{fam:9s} n={n:<3d} seed {seed} {name:22s} mixed AUC "
                        f"{100 * res['auc']['mixed']:5.1f} pAUC {100 * res['pauc']['mixed']:5.1f}"
                        f"  ({time.perf_counter() - t:.0f} s)",
                        flush=True,
                    )
    text = report(results, families, sorted(sizes), systems, seeds)
    if not args.no_real:
        default = SYSTEMS["default"]
        model_run = next(
            iter(
                sorted((out / "runs" / families[0]).glob(f"n*/{default.training_key()}/s0"))
                if default
                else []
            ),
            None,
        )
        text += (
            "\n\nReal DCASE 2023 sample clips (smoke check, too few clips for AUC; "
            "backend fitted per machine type on its 2 training clips, "
            f"model: {model_run or 'none, classical components only'}):\n\n"
        )
        text += real_smoke(out, model_run)
    elapsed = time.perf_counter() - t0
    (out / "results.json").write_text(json.dumps(results, indent=1))
    (out / "report.md").write_text(text + f"\n\nwall time of this invocation: {elapsed:.0f} s\n")
    print(text)
    print(f"\nwall time of this invocation: {elapsed:.0f} s (cached cells cost nothing)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
