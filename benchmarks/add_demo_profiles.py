"""Add audio profiles to the shipped demo bundle's existing version, without changing a score.

    .venv/bin/python benchmarks/add_demo_profiles.py [--bundle edge_agent/demo/bundle]

The demo bundle was exported before bundles carried audio profiles (edge_agent.scoring.profile),
and retraining it would change its scores (CPU training is not bit-reproducible, and README's
demo output is checked by tests/test_readme.py). A profile depends only on the training audio,
so this script regenerates the demo's training clips exactly (model_build.synth with the
parameters benchmarks/build_demo.sh passes; seeded and bit-identical to the files the export
read, 16-bit quantised as they were written), builds each section's profile the way
`model-build export` does, and writes them into the version's manifest.json (the `profiles`
field) and its manifest.sha256. The model and backend files are not touched: the model_version
(a digest of those files) and every score stay the same. A version that already has profiles is
refused unless --force.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from edge_agent.audio.files import to_pcm16
from edge_agent.bundle.layout import resolve
from edge_agent.bundle.manifest import MANIFEST, write_manifest_digest
from edge_agent.jsonsafe import compact_number_lists
from edge_agent.scoring.explain import profile_from_waves
from edge_agent.scoring.frontend import FrontendSpec

REPO = Path(__file__).resolve().parents[1]
# benchmarks/build_demo.sh: model-build synth --seed 0 --machines fan,gearbox --sections 2
#   --source-train 120 --target-train 10
SEED, MACHINES, SECTIONS, SOURCE_TRAIN, TARGET_TRAIN = 0, ("fan", "gearbox"), 2, 120, 10


def training_waves(machine: str, section: int) -> list[np.ndarray]:
    """The section's training clips as the export read them (16-bit WAV -> float)."""
    from model_build.synth.core import ClipJob, family

    fam = family("harmonic")
    sec = fam.make_section(SEED, machine, section)
    plan = [("source", SOURCE_TRAIN), ("target", TARGET_TRAIN)]
    out = []
    for domain, n in plan:
        for i in range(n):
            wave, _ = fam.render(ClipJob(machine, section, domain, "train", "normal", i, SEED), sec)
            out.append(to_pcm16(wave).astype(np.float32) / 32768.0)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bundle", type=Path, default=REPO / "edge_agent" / "demo" / "bundle")
    ap.add_argument("--force", action="store_true", help="replace existing profiles")
    a = ap.parse_args(argv)
    _, vdir = resolve(a.bundle)
    path = vdir / MANIFEST
    manifest = json.loads(path.read_text())
    if manifest.get("profiles") and not a.force:
        print(f"{path}: has profiles already (--force to replace them)", file=sys.stderr)
        return 1
    spec = FrontendSpec.from_dict(manifest["frontend"])
    profiles = {}
    for section in manifest["sections"]:
        machine, _, number = section.partition("_section_")
        waves = training_waves(machine, int(number))
        profiles[section] = profile_from_waves(waves, spec, "export").to_dict()
        print(f"{section}: {len(waves)} clips", file=sys.stderr, flush=True)
    manifest["profiles"] = profiles
    path.write_text(compact_number_lists(json.dumps(manifest, indent=2, sort_keys=True)) + "\n")
    write_manifest_digest(vdir)
    print(f"{path}: profiles of {', '.join(profiles)} added")
    return 0


if __name__ == "__main__":
    sys.exit(main())
