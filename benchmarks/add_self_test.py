"""Add the device self-test to an existing bundle version in place, without retraining.

    .venv/bin/python benchmarks/add_self_test.py edge_agent/demo/bundle \
        --reference edge_agent/demo/clips/01_normal.wav edge_agent/demo/clips/*.wav

`model-build export` writes the self-test (edge_agent.runtime.selftest) into every new
version; a version exported before it existed (the shipped demo bundle was) gets it here:
the same `model_build.export.self_test` on the version's own models and backend, with
REFERENCE as the device's test window and the other WAVs for the tolerance. Only the new
`self_test.npz`, the manifest's `files` and `self_test` entries and `manifest.sha256` change:
the models and backend.npz stay byte for byte, so every score the version gives stays too
(the demo's in README.md). A signed version is refused: its signature covers the manifest,
so re-export and sign it instead.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from edge_agent.audio.files import load_clip
from edge_agent.bundle.load import load_bundle
from edge_agent.bundle.manifest import MANIFEST, SELF_TEST, sha256_file, write_manifest_digest
from edge_agent.bundle.signing import SIGNATURE
from edge_agent.errors import EdgeAgentError
from edge_agent.jsonsafe import dumps
from edge_agent.runtime.scorer import Scorer
from model_build.export import self_test


def add_self_test(bundle: Path, reference: Path, waves: list[Path], replace: bool) -> Path:
    """Write the self-test into `bundle`'s current version; returns the version folder."""
    b = load_bundle(bundle)
    vdir = b.path
    if (vdir / SIGNATURE).exists():
        raise EdgeAgentError(f"{vdir}: signed; its manifest cannot change (re-export it)")
    if "self_test" in b.manifest and not replace:
        raise EdgeAgentError(f"{vdir}: already has a self-test (--replace to redo it)")
    scorer = Scorer.from_loaded(b, check=False)
    ref = load_clip(reference, b.spec)
    data, entry = self_test(
        scorer, b.backends, ref, [load_clip(p, b.spec) for p in waves if p != reference]
    )
    (vdir / SELF_TEST).write_bytes(data)
    manifest = json.loads((vdir / MANIFEST).read_text())
    manifest["files"][SELF_TEST] = sha256_file(vdir / SELF_TEST)
    manifest["self_test"] = entry
    (vdir / MANIFEST).write_text(dumps(manifest, MANIFEST, indent=2, sort_keys=True) + "\n")
    write_manifest_digest(vdir)
    check = Scorer.from_bundle(bundle)  # loads, verifies, and passes its own self-test
    assert check.self_test is not None and check.self_test.passed
    print(
        f"{vdir}: self-test added ({check.self_test.numbers()}); tolerance "
        f"{json.dumps({k: v for k, v in entry.items() if k != 'measured'})}, measured "
        f"{json.dumps(entry['measured'])}"
    )
    return vdir


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("bundle", type=Path)
    p.add_argument("--reference", type=Path, required=True, help="the device's test window")
    p.add_argument("waves", type=Path, nargs="*", help="more WAVs for the tolerance")
    p.add_argument("--replace", action="store_true")
    args = p.parse_intermixed_args(argv)
    try:
        add_self_test(args.bundle, args.reference, args.waves, args.replace)
    except EdgeAgentError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
