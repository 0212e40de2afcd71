"""Teach it: what operators' "not a fault" answers buy on a shifted domain (BENCHMARKS.md).

    nice .venv/bin/python benchmarks/feedback.py --out runs/feedback
    nice .venv/bin/python benchmarks/feedback.py --out runs/feedback --families harmonic \
        --rules refit --answers 0,1,5

Per generator family of the quality suite (`model_build.synth`: harmonic, broadband, cyclic;
4 machine types x 3 sections, 30 source and 70 target training clips, 25 test clips per
domain and label per section; every step cached under --out):

1. A training view (symlinks): the source clips and the first 10 target clips of each section,
   and all test clips. `model-build train` (the shipped defaults) on it, then `model-build
   export --domains source`: a bundle without target references, i.e. a plant whose machines
   run in a condition (the target domain) that nobody calibrated the model to.
2. The plant: each section's other 60 target clips, in order, are its normal sound after the
   shift. Scored by the bundle's current version, every `--votes` windows above the threshold
   are one false alarm. Its voting windows are kept as the agent keeps them (the real
   `EvidenceStore.keep`: a clip and its sidecar) and answered "not a fault" through
   `edge_agent.adaptation.feedback.apply_answer` (what `edge-agent feedback` and the Home
   Assistant buttons run: a new bundle version through the adaptation service); the stream goes
   on with the new version, until N answers or its end (a quiet plant gives fewer answers).
3. After 0, 1, 2, 3, 5 and 10 answers per section, on the test clips (none of them ever
   answered): the false-alarm rate (normal clips above the threshold) of the target and the
   source domain, detection (anomalous clips above it) per domain (the means over the 12
   sections), and AUC (harmonic mean over sections, paper view), per threshold rule
   (`feedback.threshold_rule`: refit, max, keep).
4. Beside it: `calibrate` with each section's 10 target training clips (rule max): what a
   planned calibration gives.

Scores are the device path's: every clip embedded once with the bundle's TFLite model
(`Scorer.embed`); each version's backend scores the embeddings (answers never change the
model). Nothing is tuned on the test clips.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

BIN = Path(sys.executable).parent
FAMILIES = ("harmonic", "broadband", "cyclic")
DATA_SEED = 21
SOURCE_TRAIN = 30
TARGET_TRAIN = 70
TARGET_REFS = 10  # target clips in the training view (and for the calibrate comparison)
TEST_PER_LABEL = 25
RULES = ("refit", "max", "keep")
CHECKPOINTS = (0, 1, 2, 3, 5, 10)


def run(cmd: list[str]) -> str:
    """Run a CLI, echo the command, fail loudly on a non-zero exit."""
    print("$", " ".join(cmd[:8]) + (" ..." if len(cmd) > 8 else ""), file=sys.stderr, flush=True)
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed ({r.returncode}):\n{r.stderr[-2000:]}")
    return r.stdout


def data(out: Path, family: str) -> Path:
    from model_build.synth.core import SynthConfig, generate

    root = out / "data" / family
    if (root / "synth.json").exists():
        return root
    t = time.perf_counter()
    generate(
        SynthConfig(
            seed=DATA_SEED,
            family=family,
            sections=3,
            source_train=SOURCE_TRAIN,
            target_train=TARGET_TRAIN,
            test_per_label=TEST_PER_LABEL,
        ),
        root,
        workers=2,
    )
    print(f"data {family}: {time.perf_counter() - t:.0f} s", file=sys.stderr, flush=True)
    return root


def is_pool(name: str) -> bool:
    """A target training clip beyond the first TARGET_REFS: the plant's stream."""
    p = name.split("_")  # section_XX_domain_split_label_NNNN_...
    return p[2] == "target" and p[3] == "train" and int(p[5]) >= TARGET_REFS


def view(out: Path, family: str, root: Path) -> Path:
    """Symlinks of everything but the stream (see the module docstring)."""
    dst = out / "views" / family
    if (dst / ".done").exists():
        return dst
    for mdir in sorted(p for p in root.iterdir() if p.is_dir()):
        for split in ("train", "test"):
            folder = dst / mdir.name / split
            folder.mkdir(parents=True, exist_ok=True)
            for f in sorted((mdir / split).glob("*.wav")):
                if not is_pool(f.name) and not (folder / f.name).exists():
                    (folder / f.name).symlink_to(f.resolve())
    (dst / ".done").write_text("")
    return dst


def bundle(out: Path, family: str, train_view: Path) -> Path:
    b = out / "bundles" / family
    if (b / "current").exists():
        return b
    r = out / "runs" / family
    run([str(BIN / "model-build"), "train", "--data", str(train_view), "--out", str(r), "--quiet"])
    shutil.rmtree(b, ignore_errors=True)
    run(
        [
            str(BIN / "model-build"),
            "export",
            str(r),
            "--out",
            str(b),
            "--data",
            str(train_view),
            "--domains",
            "source",
        ]
    )
    return b


def embed_all(out: Path, family: str, scorer: Any, clips: list[Any]) -> list[np.ndarray]:
    """One (N, D_i) array per component, cached per family."""
    from edge_agent.audio.files import load_clip
    from edge_agent.runtime.scorer import stack_embeddings

    cache = out / "emb" / f"{family}.npz"
    keys = [str(c.path) for c in clips]
    if cache.exists():
        z = np.load(cache, allow_pickle=False)
        if list(z["keys"]) == keys:
            return [z[f"c{i}"] for i in range(len(scorer.dims))]
    t = time.perf_counter()
    embs = stack_embeddings(
        [scorer.embed(load_clip(c.path, scorer.spec)) for c in clips], scorer.dims
    )
    cache.parent.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, Any] = {f"c{i}": e for i, e in enumerate(embs)}
    np.savez(cache, keys=np.array(keys), **arrays)
    print(
        f"embedded {len(clips)} clips in {time.perf_counter() - t:.0f} s",
        file=sys.stderr,
        flush=True,
    )
    return embs


def rows(embs: list[np.ndarray], idx: list[int]) -> list[np.ndarray]:
    return [e[idx] for e in embs]


def measure(test: list[Any], scores: np.ndarray, thr: dict[str, float]) -> dict[str, float]:
    """False-alarm and detection rates per domain (mean over sections), AUC per domain."""
    from model_build.evaluation.evaluate import evaluate_scores

    out: dict[str, float] = {}
    secs = sorted(thr)
    for dom in ("source", "target"):
        fa, det = [], []
        for s in secs:
            sel = [i for i, c in enumerate(test) if c.section_id == s and c.domain == dom]
            above = scores[sel] > thr[s]
            lab = np.array([test[i].is_anomaly for i in sel])
            fa.append(float(above[~lab].mean()))
            det.append(float(above[lab].mean()))
        out[f"fa_{dom}"], out[f"det_{dom}"] = float(np.mean(fa)), float(np.mean(det))
    summary = evaluate_scores(test, scores).summary
    for d in ("source", "target", "mixed"):
        v = summary.auc.get(d)
        out[f"auc_{d}"] = float("nan") if v is None else float(v)
    return out


@dataclass(frozen=True)
class Plant:
    """One section's stream after the shift: its clips, their embeddings, when it starts."""

    section: str
    clips: list[Any]
    embs: list[np.ndarray]
    epoch0: float


def teach_section(
    root: Path, ev: Path, plant: Plant, rule: Any, votes: int, max_answers: int, spec: Any
) -> list[Any]:
    """Answer false alarms of the plant's section from its stream; the section's backend after
    0..N answers (index = answers given; shorter when the stream ran out of false alarms)."""
    from edge_agent.adaptation.feedback import apply_answer, find_clip
    from edge_agent.adaptation.service import Teach, Trust
    from edge_agent.audio.files import load_clip
    from edge_agent.bundle.load import load_bundle
    from edge_agent.config.runtime import EvidenceSettings
    from edge_agent.runtime.evidence import EvidenceStore, HeardWindow

    sec, stream, stream_embs, epoch0 = plant.section, plant.clips, plant.embs, plant.epoch0
    b = load_bundle(root)
    backends = [b.backend(sec)]
    heard: list[HeardWindow] = []
    for i, clip in enumerate(stream):
        if len(backends) > max_answers:
            break
        be = backends[-1]
        s = float(be.score([e[i] for e in stream_embs])[0])
        if s <= be.threshold:
            continue
        heard.append(
            HeardWindow(load_clip(clip.path, spec), epoch0 + 10.0 * i, i, s, be.threshold, True)
        )
        if len(heard) < votes:
            continue
        store = EvidenceStore(
            EvidenceSettings(
                folder=str(ev),
                max_clips=100_000,
                max_megabytes=100_000.0,
                min_free_megabytes=0.0,
                compression="wav",
            ),
            spec.sample_rate,
            "bench",
        )
        store.keep(sec, heard, epoch0 + 10.0 * i, b.model_version, section=sec)
        store.close()
        heard = []
        out = apply_answer(root, find_clip(ev, sec), "not_a_fault", Trust(), Teach(64, rule), "cli")
        assert out.change is not None
        backends.append(load_bundle(root).backend(sec))
    return backends


def family_part(args: argparse.Namespace, family: str) -> dict[str, Any]:
    from edge_agent.adaptation import service
    from edge_agent.audio.files import load_clip
    from edge_agent.bundle.load import load_bundle
    from edge_agent.runtime.scorer import Scorer
    from model_build.data.dataset import scan

    out = args.out
    root = data(out, family)
    tv = view(out, family, root)
    base = bundle(out, family, tv)
    clips = scan([root])
    test = [c for c in clips if c.split == "test"]
    pool = [c for c in clips if c.split == "train" and is_pool(c.path.name)]
    refs = [
        c for c in clips if c.split == "train" and c.domain == "target" and not is_pool(c.path.name)
    ]
    scorer = Scorer.from_bundle(base)
    embs = embed_all(out, family, scorer, test + pool)
    n_test = len(test)  # embs: one (clips, D_i) array per component, test clips first
    te, pe = rows(embs, list(range(n_test))), rows(embs, list(range(n_test, n_test + len(pool))))
    sections = sorted({c.section_id for c in test})
    result: dict[str, Any] = {"sections": sections, "n_test": len(test), "rules": {}}

    def scores_of(backends: dict[str, Any]) -> tuple[np.ndarray, dict[str, float]]:
        sc = np.empty(len(test))
        for s in sections:
            idx = [i for i, c in enumerate(test) if c.section_id == s]
            sc[idx] = backends[s].score(rows(te, idx))
        return sc, {s: backends[s].threshold for s in sections}

    b0 = load_bundle(base)
    result["before"] = measure(test, *scores_of({s: b0.backend(s) for s in sections}))
    # a planned calibration with the 10 target clips of each section, for comparison
    cal = out / "work" / family / "calibrated"
    shutil.rmtree(cal, ignore_errors=True)
    shutil.copytree(base, cal)
    for s in sections:
        sc = Scorer.from_bundle(cal)
        waves = [load_clip(c.path, sc.spec) for c in refs if c.section_id == s]
        service.calibrate(sc, s, waves, service.Trust())
    bc = load_bundle(cal)
    result["calibrated"] = measure(test, *scores_of({s: bc.backend(s) for s in sections}))
    for rule in args.rules:
        work = out / "work" / family / rule
        shutil.rmtree(work, ignore_errors=True)
        shutil.copytree(base, work / "bundle")
        per_sec: dict[str, list[Any]] = {}
        t = time.perf_counter()
        for k, s in enumerate(sections):
            idx = [i for i, c in enumerate(pool) if c.section_id == s]
            plant = Plant(s, [pool[i] for i in idx], rows(pe, idx), 1.8e9 + 1e6 * k)
            per_sec[s] = teach_section(
                work / "bundle",
                work / "evidence",
                plant,
                rule,
                args.votes,
                max(args.answers),
                scorer.spec,
            )
        print(
            f"{family} {rule}: {sum(len(v) - 1 for v in per_sec.values())} answers in "
            f"{time.perf_counter() - t:.0f} s",
            file=sys.stderr,
            flush=True,
        )
        by_n = {}
        for n in args.answers:
            chosen = {s: v[min(n, len(v) - 1)] for s, v in per_sec.items()}
            given = float(np.mean([min(n, len(v) - 1) for v in per_sec.values()]))
            by_n[n] = {**measure(test, *scores_of(chosen)), "answers": given}
        result["rules"][rule] = by_n
    return result


def pct(v: float) -> str:
    return "-" if not np.isfinite(v) else f"{100 * v:.1f}"


def markdown(results: dict[str, Any], args: argparse.Namespace) -> str:
    fams = list(results)
    cols = ["FA tgt", "FA src", "det tgt", "det src", "AUC tgt", "AUC src"]
    keys = ["fa_target", "fa_source", "det_target", "det_source", "auc_target", "auc_source"]

    def mean(get: Any) -> dict[str, float]:
        return {k: float(np.mean([get(f)[k] for f in fams])) for k in keys}

    lines = [
        (
            f"Families: {', '.join(fams)} ({len(fams) * 12} sections); answers per section, "
            f"{args.votes} voting windows each; rates in % of test windows (mean over sections "
            "and families), AUC harmonic mean over sections, mean over families."
        ),
        "",
        "| bundle | answers given | " + " | ".join(cols) + " |",
        "|---|---|" + "---|" * len(cols),
    ]
    before = mean(lambda f: results[f]["before"])
    lines.append(
        "| source-only (no answers) | 0 | " + " | ".join(pct(before[k]) for k in keys) + " |"
    )
    for rule in args.rules:
        for n in args.answers:
            if n == 0:
                continue
            r = mean(lambda f, n=n, rule=rule: results[f]["rules"][rule][n])
            given = np.mean([results[f]["rules"][rule][n]["answers"] for f in fams])
            lines.append(
                f"| after {n} answer(s), rule {rule} | {given:.1f} | "
                + " | ".join(pct(r[k]) for k in keys)
                + " |"
            )
    cal = mean(lambda f: results[f]["calibrated"])
    lines.append(
        f"| calibrate, {TARGET_REFS} target clips (rule max) | - | "
        + " | ".join(pct(cal[k]) for k in keys)
        + " |"
    )
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("runs/feedback"))
    ap.add_argument("--families", type=lambda s: s.split(","), default=list(FAMILIES))
    ap.add_argument("--rules", type=lambda s: s.split(","), default=list(RULES))
    ap.add_argument(
        "--answers", type=lambda s: [int(x) for x in s.split(",")], default=list(CHECKPOINTS)
    )
    ap.add_argument("--votes", type=int, default=3, help="voting windows per alarm (decision.k)")
    ap.add_argument("--md", type=Path, default=None, help="also write the table here")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    results = {}
    for f in args.families:
        results[f] = family_part(args, f)
        (args.out / "feedback.json").write_text(json.dumps(results, indent=1, default=float))
    md = markdown(results, args)
    print(md)
    if args.md:
        args.md.write_text(md)
    print(f"done in {time.perf_counter() - t0:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
