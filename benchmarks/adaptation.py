"""On-device adaptation: what `edge-agent calibrate` and `edge-agent enrol` buy (BENCHMARKS.md).

    nice .venv/bin/python benchmarks/adaptation.py --run RUN --data ROOT --heldout HROOT \
        [--out DIR] [--ns 10,30,100] [--draws 5] [--md FILE]

RUN was trained (`model-build train`) on ROOT, a set from `model-build synth`; HROOT is a
`model-build synth --machines <other>` set of a machine type RUN never saw (its training
clips are the enrolment pool, its test clips the evaluation).

1. Calibration. `model-build export RUN --domains source` writes a bundle WITHOUT target
   references (what a site has before anyone calibrated). Then, per section, the real
   `edge-agent calibrate --files` with the section's ten target-domain training clips, once per
   threshold rule (max = default, target). AUC/pAUC per domain (paper view, harmonic mean over
   sections, `model_build.evaluation.evaluate.evaluate_scores` / `model_build.evaluation.metrics`)
   on ROOT's test clips before vs after, and the decision threshold's false-alarm rate (normal test
   clips above it) and detection rate (anomalous test clips above it) per domain.
2. Enrolment. For N in --ns and --draws random draws of N clips from HROOT's training clips:
   the real `edge-agent enrol --files`, then AUC/pAUC on HROOT's test clips, and the threshold
   (mean, std over draws) with its false-alarm rate on held-out normal clips (the training
   clips not drawn + the normal test clips of the source domain; target normal test clips
   separately) and detection rate on the anomalous test clips.

Scores are the device path's: every test clip is embedded once with the bundle's TFLite model
(`edge_agent.runtime.scorer.Scorer.embed`, numpy frontend, `load_clip`), and each bundle version's
backend scores that embedding (`Scorer.score` = `score_embedding(embed(wave))`; calibration
and enrolment never change the model, only the backend).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from edge_agent.audio.files import load_clip
from edge_agent.bundle.load import load_bundle
from edge_agent.runtime.scorer import Scorer, stack_embeddings
from model_build.data.clip import Clip
from model_build.data.dataset import scan
from model_build.evaluation.evaluate import evaluate_scores

BIN = Path(sys.executable).parent


def run(cmd: list[str]) -> str:
    """Run a CLI, echo the command, fail loudly on a non-zero exit."""
    print("$", " ".join(cmd[:8]) + (" ..." if len(cmd) > 8 else ""), file=sys.stderr)
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed ({r.returncode}):\n{r.stderr[-2000:]}")
    return r.stdout


def embed(scorer: Scorer, clips: list[Clip]) -> list[np.ndarray]:
    """One (N, D_i) array per bundle component (models, band statistics, rhythm)."""
    return stack_embeddings(
        [scorer.embed(load_clip(c.path, scorer.spec)) for c in clips], scorer.dims
    )


def scores_for(
    bundle: Path, clips: list[Clip], emb: list[np.ndarray]
) -> tuple[np.ndarray, dict[str, float]]:
    """(scores of the clips with the bundle's current backends, threshold per section)."""
    b = load_bundle(bundle)
    out = np.empty(len(clips))
    for i, c in enumerate(clips):
        out[i] = float(b.backend(c.section_id).score([e[i] for e in emb])[0])
    return out, {s: b.backend(s).threshold for s in {c.section_id for c in clips}}


def rates(clips: list[Clip], scores: np.ndarray, thr: dict[str, float]) -> dict[str, float]:
    """False-alarm and detection rates of the thresholds, per domain."""
    above = np.array([s > thr[c.section_id] for c, s in zip(clips, scores, strict=True)])
    out = {}
    for dom in ("source", "target"):
        n = np.array([c.domain == dom and not c.is_anomaly for c in clips])
        a = np.array([c.domain == dom and c.is_anomaly for c in clips])
        out[f"fa_{dom}"] = float(above[n].mean()) if n.any() else float("nan")
        out[f"det_{dom}"] = float(above[a].mean()) if a.any() else float("nan")
    return out


def metrics(clips: list[Clip], scores: np.ndarray) -> dict[str, float | None]:
    s = evaluate_scores(clips, scores).summary
    return {
        f"{k}_{d}": (None if v.get(d) is None else float(v[d]))  # type: ignore[arg-type]
        for k, v in (("auc", s.auc), ("pauc", s.pauc))
        for d in ("source", "target", "mixed")
    }


def pct(v: float | None) -> str:
    return "-" if v is None or not np.isfinite(v) else f"{100 * v:.2f}"


def calibration_part(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    base = out / "bundle_source_only"
    run(
        [
            str(BIN / "model-build"),
            "export",
            str(args.run),
            "--out",
            str(base),
            "--data",
            str(args.data),
            "--domains",
            "source",
        ]
    )
    clips = scan([args.data])
    test = [c for c in clips if c.split == "test"]
    sections = sorted({c.section_id for c in test})
    scorer = Scorer.from_bundle(base)
    t0 = time.perf_counter()
    emb = embed(scorer, test)
    print(f"embedded {len(test)} test clips in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    rows: dict[str, Any] = {}
    s, thr = scores_for(base, test, emb)
    rows["before (source-only bundle)"] = {**metrics(test, s), **rates(test, s, thr)}
    for rule in ("max", "target"):
        b = out / f"bundle_calibrated_{rule}"
        shutil.rmtree(b, ignore_errors=True)
        shutil.copytree(base, b)
        for sec in sections:
            files = sorted(
                str(c.path)
                for c in clips
                if c.split == "train" and c.section_id == sec and c.domain == "target"
            )
            run(
                [
                    str(BIN / "edge-agent"),
                    "calibrate",
                    "--bundle",
                    str(b),
                    "--section",
                    sec,
                    "--threshold-rule",
                    rule,
                    "--quiet",
                    "--files",
                    *files,
                ]
            )
        s, thr = scores_for(b, test, emb)
        rows[f"after calibrate (10 target clips/section, rule {rule})"] = {
            **metrics(test, s),
            **rates(test, s, thr),
        }
    return {"sections": sections, "n_test": len(test), "rows": rows}


def enrol_part(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    base = out / "bundle_source_only"
    clips = scan([args.heldout])
    pool = [c for c in clips if c.split == "train" and c.label == "normal"]
    test = [c for c in clips if c.split == "test"]
    sections = sorted({c.section_id for c in pool})
    if len(sections) != 1:
        raise SystemExit(f"--heldout: expected one section, got {sections}")
    sec = sections[0]
    if sec in load_bundle(base).sections:
        raise SystemExit(f"--heldout: {sec} is in the bundle already (not a held-out machine)")
    scorer = Scorer.from_bundle(base)
    emb_pool, emb_test = embed(scorer, pool), embed(scorer, test)
    test_normal_src = [i for i, c in enumerate(test) if c.domain == "source" and not c.is_anomaly]
    test_normal_tgt = [i for i, c in enumerate(test) if c.domain == "target" and not c.is_anomaly]
    test_anom = [i for i, c in enumerate(test) if c.is_anomaly]
    b = out / "bundle_enrol"
    rng = np.random.default_rng(0)
    result: dict[str, Any] = {"section": sec, "pool": len(pool), "n_test": len(test), "by_n": {}}
    for n in args.ns:
        if n > len(pool):
            print(f"skip N={n}: only {len(pool)} training clips", file=sys.stderr)
            continue
        draws = []
        for _ in range(args.draws):
            pick = np.sort(rng.choice(len(pool), size=n, replace=False))
            shutil.rmtree(b, ignore_errors=True)
            shutil.copytree(base, b)
            run(
                [
                    str(BIN / "edge-agent"),
                    "enrol",
                    "--bundle",
                    str(b),
                    "--section",
                    sec,
                    "--quiet",
                    "--files",
                    *(str(pool[i].path) for i in pick),
                ]
            )
            backend = load_bundle(b).backend(sec)
            s_test = backend.score(emb_test).astype(np.float64)
            rest = np.setdiff1d(np.arange(len(pool)), pick)
            s_rest = (
                backend.score([e[rest] for e in emb_pool]).astype(np.float64)
                if rest.size
                else np.zeros(0)
            )
            held_src = np.concatenate([s_rest, s_test[test_normal_src]])
            t = backend.threshold
            draws.append(
                {
                    "threshold": t,
                    **metrics(test, s_test),
                    "fa_source": float((held_src > t).mean()),
                    "fa_target": float((s_test[test_normal_tgt] > t).mean()),
                    "det": float((s_test[test_anom] > t).mean()),
                    "n_held_out_source_normals": int(held_src.size),
                }
            )
        agg = {}
        for k in draws[0]:
            v = np.array([d[k] for d in draws if d[k] is not None], dtype=np.float64)
            agg[k] = (float(v.mean()), float(v.std()))
        result["by_n"][n] = {"draws": draws, "mean_std": agg}
    return result


def markdown(cal: dict[str, Any], enr: dict[str, Any], args: argparse.Namespace) -> str:
    lines = [
        (
            f"Calibration: {len(cal['sections'])} sections ({', '.join(cal['sections'])}), "
            f"{cal['n_test']} test clips; paper-view AUC/pAUC (%), harmonic mean over sections; "
            "FA = normal test clips above the threshold, det = anomalous test clips above it."
        ),
        "",
        (
            "| bundle | AUC src | AUC tgt | AUC mixed | pAUC src | pAUC tgt | pAUC mixed "
            "| FA src | FA tgt | det src | det tgt |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in cal["rows"].items():
        cells = [pct(r[f"{k}_{d}"]) for k in ("auc", "pauc") for d in ("source", "target", "mixed")]
        cells += [pct(r[k]) for k in ("fa_source", "fa_target", "det_source", "det_target")]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += [
        "",
        (
            f"Enrolment of {enr['section']} (a machine type the run never saw), {args.draws} "
            f"random draws of N clips from its {enr['pool']} normal training clips; "
            f"{enr['n_test']} test clips. Mean +- std over draws. FA src = held-out "
            "source-condition normals (undrawn training clips + source normal test clips) above "
            "the threshold; FA tgt = target normal test clips above it; det = anomalous test "
            "clips above it."
        ),
        "",
        "| N | AUC src | AUC tgt | AUC mixed | pAUC mixed | threshold | FA src | FA tgt | det |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for n, r in enr["by_n"].items():

        def f(k: str, scale: float = 100.0, digits: int = 1, ms: Any = r["mean_std"]) -> str:
            m, s = ms[k]
            return f"{scale * m:.{digits}f} +- {scale * s:.{digits}f}"

        lines.append(
            f"| {n} | {f('auc_source')} | {f('auc_target')} | {f('auc_mixed')} | "
            f"{f('pauc_mixed')} | {f('threshold', 1.0, 4)} | {f('fa_source')} | "
            f"{f('fa_target')} | {f('det')} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--data", type=Path, required=True, help="the run's synthetic set")
    ap.add_argument(
        "--heldout",
        type=Path,
        required=True,
        help="synth set of a machine type the run was not trained on (1 section)",
    )
    ap.add_argument("--out", type=Path, default=Path("adaptation_bench"))
    ap.add_argument("--ns", type=lambda s: [int(x) for x in s.split(",")], default=[10, 30, 100])
    ap.add_argument("--draws", type=int, default=5)
    ap.add_argument("--md", type=Path, default=None, help="also write the tables here")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    cal = calibration_part(args, args.out)
    enr = enrol_part(args, args.out)
    md = markdown(cal, enr, args)
    print(md)
    (args.out / "adaptation.json").write_text(
        json.dumps({"calibration": cal, "enrolment": enr}, indent=1, default=float)
    )
    if args.md:
        args.md.write_text(md)
    print(f"done in {time.perf_counter() - t0:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
