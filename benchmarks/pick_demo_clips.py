"""Pick the demo clips for `edge-agent demo` from a synthetic set's TEST split, and ship them.

    .venv/bin/python benchmarks/pick_demo_clips.py --data DATA --bundle BUNDLE \
        --section fan_section_00 --out edge_agent/demo

The rule is fixed before looking at any single score, so the demo does not show a best case:
- normal part: the first `--normal` source-domain NORMAL test clips of the section, in index
  order;
- faulty part: the first `--anomaly` source-domain ANOMALOUS test clips of the section, in index
  order, whose synthetic severity is at least `--min-severity` (the synthetic set draws
  severities in [0.05, 1], skewed towards subtle faults: a demo shows a clear fault, and the
  detection rate at that severity is measured and recorded next to the rate over all faults).

Everything is scored through the device path (`edge_agent.runtime.scorer.Scorer`: numpy frontend +
TFLite + the bundle's backend). The script records in `demo.json` the section's AUC, the share
of normal test windows above the bundle threshold (per-window false alarms) and the share of
faulty windows above it (all severities, and >= min severity), and it FAILS, rather than picks
other clips, when the chosen sequence would not show the demo's point (an alarm after the fault
starts, none before it) under the default 3-of-5 decision.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from edge_agent.audio.files import load_clip
from edge_agent.bundle.load import load_bundle
from edge_agent.config.runtime import DecisionSettings
from edge_agent.runtime.scorer import Scorer
from model_build.data.dataset import scan
from model_build.evaluation.metrics import auc


def main(argv: list[str] | None = None) -> int:  # noqa: PLR0915 -- the script, step by step
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--bundle", type=Path, required=True)
    ap.add_argument("--section", required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--normal", type=int, default=6)
    ap.add_argument("--anomaly", type=int, default=6)
    ap.add_argument("--min-severity", type=float, default=0.5)
    args = ap.parse_args(argv)

    meta = json.loads((args.data / "synth.json").read_text())
    info = {c["file"]: c for c in meta["clips"]}
    scorer = Scorer.from_bundle(args.bundle)
    sec = args.section
    thr = scorer.bundle.backend(sec).threshold
    test = sorted(
        (c for c in scan([args.data], splits=("test",)) if c.section_id == sec),
        key=lambda c: c.path.name,
    )
    if not test:
        print(f"error: no test clips of {sec} under {args.data}", file=sys.stderr)
        return 2
    rel = {c.path: c.path.relative_to(args.data).as_posix() for c in test}
    scores = {c.path: scorer.score(load_clip(c.path, scorer.spec), sec).score for c in test}

    def sev(c: Any) -> float:
        return float(info[rel[c.path]]["severity"] or 0.0)

    normal = [c for c in test if c.label == "normal"]
    faulty = [c for c in test if c.label == "anomaly"]
    strong = [c for c in faulty if sev(c) >= args.min_severity]
    y = [0] * len(normal) + [1] * len(faulty)
    s = [scores[c.path] for c in normal + faulty]
    stats = {
        "section_auc": round(100 * auc(y, s), 2),
        "threshold": round(thr, 6),
        "normal_windows_above_threshold": f"{sum(scores[c.path] > thr for c in normal)}"
        f"/{len(normal)}",
        "faulty_windows_above_threshold": f"{sum(scores[c.path] > thr for c in faulty)}"
        f"/{len(faulty)}",
        f"faulty_windows_above_threshold_severity_ge_{args.min_severity:g}": (
            f"{sum(scores[c.path] > thr for c in strong)}/{len(strong)}"
        ),
    }
    pick_n = [c for c in normal if c.domain == "source"][: args.normal]
    pick_a = [c for c in strong if c.domain == "source"][: args.anomaly]
    if len(pick_n) < args.normal or len(pick_a) < args.anomaly:
        print("error: not enough clips for the rule", file=sys.stderr)
        return 2

    # The demo's point under the default decision (k of the last n windows above threshold).
    d = DecisionSettings()
    flags = [scores[c.path] > thr for c in pick_n + pick_a]
    first_alarm = next(
        (i for i in range(len(flags)) if sum(flags[max(0, i - d.n + 1) : i + 1]) >= d.k), None
    )
    for c in pick_n + pick_a:
        mark = "ABOVE" if scores[c.path] > thr else ""
        print(f"{scores[c.path]:.4f} {thr:.4f} {mark:<5} sev={sev(c):.2f} {rel[c.path]}")
    print(json.dumps(stats, indent=1))
    if first_alarm is None or first_alarm < len(pick_n):
        print(
            f"error: the rule's clips would alarm at window {first_alarm} (fault starts at "
            f"{len(pick_n)}): this bundle does not make an honest demo",
            file=sys.stderr,
        )
        return 1

    out = args.out
    clips_dir = out / "clips"
    if clips_dir.exists():
        shutil.rmtree(clips_dir)
    clips_dir.mkdir(parents=True)
    entries = []
    for i, c in enumerate(pick_n + pick_a, 1):
        label = c.label
        name = f"{i:02d}_{'normal' if label == 'normal' else 'faulty'}.wav"
        shutil.copyfile(c.path, clips_dir / name)
        m = info[rel[c.path]]
        entries.append(
            {
                "file": name,
                "label": label,
                "source": rel[c.path],
                "kind": m["kind"],
                "severity": m["severity"],
            }
        )
    if (out / "bundle").exists():
        shutil.rmtree(out / "bundle")
    shutil.copytree(args.bundle, out / "bundle")
    load_bundle(out / "bundle", verify=True)
    doc = {
        "section": sec,
        "clips": entries,
        "info": {
            "built": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "built_by": "benchmarks/build_demo.sh",
            "synth": meta["config"],
            "selection": (
                f"first {args.normal} source normal test clips; first {args.anomaly} "
                f"source anomalous test clips with severity >= {args.min_severity:g}"
            ),
            "expected_first_alarm_window": first_alarm,
            "test_split_scores": stats,
            "scores": [round(scores[c.path], 6) for c in pick_n + pick_a],
        },
    }
    (out / "demo.json").write_text(json.dumps(doc, indent=1) + "\n")
    print(
        f"wrote {out}/demo.json, {len(entries)} clips, bundle "
        f"{sum(f.stat().st_size for f in (out / 'bundle').rglob('*') if f.is_file())} bytes"
    )
    print(
        f"scores mean: normal {np.mean([scores[c.path] for c in normal]):.4f}, "
        f"faulty {np.mean([scores[c.path] for c in faulty]):.4f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
