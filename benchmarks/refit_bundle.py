"""Refit a bundle version's backends through today's device path, without retraining.

    .venv/bin/python benchmarks/refit_bundle.py edge_agent/demo/bundle \
        --data /tmp/edge-agent-demo-build/data --out /tmp/demo-refit \
        --reference edge_agent/demo/clips/01_normal.wav --classical today

Why: a bundle is fitted on the embeddings its export computed. When the device's default path
changes (here: TFLite's own kernels instead of XNNPACK, and per-section component weights
from pseudo-anomalies, `weighting: pseudo`), an older bundle still scores, within its
self-test tolerance, but no longer exactly as fitted. This writes a NEW bundle (version 1
under `--out`) with the SAME model files, frontend, components, audio profiles and provenance,
and everything that depends on the device path redone exactly as `model-build export` does it
today (`model_build.export`): the backends refitted on the training clips under `--data`
(the section's normal clips only; no label is read), with the default backend settings
(`BackendConfig()`), the self-test's expected embeddings and tolerance. The demo's
training set is synthetic and seeded, so `benchmarks/build_demo.sh`'s `model-build synth`
line regenerates it bit for bit.

`--classical today` also replaces the version's classical components with today's
(`edge_agent.scoring.classical.DEFAULT_CLASSICAL`: export's), so a bundle made before a
classical component was added gets it without retraining (the demo bundle got `dynamics`
so); the default keeps the version's own.

Then replace the old version with the new one (`rm -r edge_agent/demo/bundle/versions/1 &&
cp -r /tmp/demo-refit/versions/1 edge_agent/demo/bundle/versions/`). A signed version is
refused (re-export and sign it instead).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from edge_agent.audio.files import load_clip
from edge_agent.bundle.layout import resolve
from edge_agent.bundle.load import load_bundle
from edge_agent.bundle.manifest import MANIFEST, SELF_TEST
from edge_agent.bundle.signing import SIGNATURE
from edge_agent.bundle.versions import write_bundle
from edge_agent.errors import EdgeAgentError
from edge_agent.runtime.scorer import Scorer
from edge_agent.scoring.backend import BackendConfig
from edge_agent.scoring.classical import classical_features
from model_build.data.dataset import scan
from model_build.export import fit_on_device

KEPT = ("frontend", "components", "class_names", "quantization", "training", "evaluation")


def refit(
    bundle: Path,
    data: list[Path],
    out: Path,
    reference: Path | None = None,
    today_classical: bool = False,
) -> Path:
    """Write the refitted copy of `bundle`'s current version as version 1 of `out`; the
    self-test's window is `reference` when given (the demo's: its first shipped clip, which
    tests and `edge-agent check` users can hold the stored window against), else export's
    (the first training clip). `today_classical`: today's classical components instead of
    the version's."""
    _, vdir = resolve(bundle, None)
    if (vdir / SIGNATURE).exists():
        raise EdgeAgentError(f"{vdir}: signed; its manifest cannot change (re-export it)")
    if out.exists():
        raise EdgeAgentError(f"{out}: exists; give a new folder")
    old = json.loads((vdir / MANIFEST).read_text())
    clips = [c for c in scan(data, splits=("train",)) if c.split == "train"]
    missing = sorted(set(old["sections"]) - {c.section_id for c in clips})
    if missing:
        raise EdgeAgentError(f"{', '.join(map(str, data))}: no training clips of {missing}")
    clips = [c for c in clips if c.section_id in old["sections"]]
    config = BackendConfig()
    manifest = {k: old[k] for k in KEPT if k in old}
    manifest["backend"] = config.to_dict()
    models = {c["file"]: vdir / c["file"] for c in old["components"] if c["kind"] == "model"}
    spec = load_bundle(bundle).spec
    if today_classical:
        manifest["components"] = [
            *(c for c in old["components"] if c["kind"] == "model"),
            *(f.entry for f in classical_features(spec)),
        ]
    with tempfile.TemporaryDirectory() as tmp:
        backends, data_st = fit_on_device(
            Path(tmp) / "draft",
            models,
            manifest,
            clips,
            spec,
            config,
            progress=True,
            reference=None if reference is None else load_clip(reference, spec),
        )
    manifest["profiles"] = old["profiles"]
    new = write_bundle(out, models, backends, manifest, extra={SELF_TEST: data_st})
    check = Scorer.from_bundle(out)  # loads, verifies, and passes its own self-test
    assert check.self_test is not None and check.self_test.passed
    for sid, b in sorted(backends.items()):
        weights = ", ".join(f"{c.weight:.2f}" for c in b.components)
        print(f"{sid}: threshold {b.threshold:.4f}; component weights {weights}")
    print(f"{new}: refitted on {len(clips)} training clips ({check.self_test.numbers()})")
    return new


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("bundle", type=Path)
    p.add_argument("--data", type=Path, action="append", required=True, help="training set root")
    p.add_argument("--out", type=Path, required=True, help="a new folder for the refitted bundle")
    p.add_argument("--reference", type=Path, help="the self-test's window (default: export's)")
    p.add_argument(
        "--classical",
        choices=("kept", "today"),
        default="kept",
        help="the version's classical components, or today's (export's) defaults",
    )
    args = p.parse_args(argv)
    try:
        refit(args.bundle, args.data, args.out, args.reference, args.classical == "today")
    except EdgeAgentError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
