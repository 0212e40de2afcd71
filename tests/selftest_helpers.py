"""Copies of the shipped demo bundle whose self-test expects other numbers than this machine's.

On x86 every runtime computes the demo model's embeddings as the exporting machine did, so the
refusal of issue 24 (a CPU whose XNNPACK kernels compute other numbers) is reproduced the other
way round: the EXPECTED embedding in `self_test.npz` is turned away from the true one by a
chosen cosine, and the manifest's checksums are made to match, so the bundle loads and only
the self-test can tell. (The arm64 check, deploy/arm64-check.sh, shows the real thing under
QEMU's default CPU model.)
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from edge_agent.bundle.manifest import MANIFEST, SELF_TEST, sha256_file, write_manifest_digest

REPO = Path(__file__).resolve().parents[1]
DEMO_BUNDLE = REPO / "edge_agent" / "demo" / "bundle"
SECTION = "fan_section_00"


def turned(e: np.ndarray, cosine: float, seed: int = 0) -> np.ndarray:
    """`e` turned to the given cosine with itself (same norm), towards a random direction."""
    r = np.random.default_rng(seed).standard_normal(e.shape)
    r -= (r @ e) / (e @ e) * e
    r *= np.linalg.norm(e) / np.linalg.norm(r)
    out: np.ndarray = (cosine * e + np.sqrt(1 - cosine**2) * r).astype(np.float32)
    return out


def perturbed_self_test(vdir: Path, cosine: float = 0.8) -> bytes:
    """The bytes of `vdir`'s self_test.npz with the model's expected embedding turned."""
    import io

    with np.load(vdir / SELF_TEST) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["embedding_0"] = turned(arrays["embedding_0"].astype(np.float64), cosine)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def perturbed_copy(dest: Path, cosine: float = 0.8) -> Path:
    """A copy of the demo bundle at `dest` whose self-test expects a model embedding at
    `cosine` to what any runtime here computes; checksums consistent. Returns `dest`."""
    shutil.copytree(DEMO_BUNDLE, dest)
    vdir = dest / "versions" / "1"
    (vdir / SELF_TEST).write_bytes(perturbed_self_test(vdir, cosine))
    manifest = json.loads((vdir / MANIFEST).read_text())
    manifest["files"][SELF_TEST] = sha256_file(vdir / SELF_TEST)
    (vdir / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    write_manifest_digest(vdir)
    return dest


def without_self_test(dest: Path) -> Path:
    """A copy of the demo bundle at `dest` as it was exported before the self-test existed."""
    shutil.copytree(DEMO_BUNDLE, dest)
    vdir = dest / "versions" / "1"
    (vdir / SELF_TEST).unlink()
    manifest = json.loads((vdir / MANIFEST).read_text())
    del manifest["files"][SELF_TEST], manifest["self_test"]
    (vdir / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    write_manifest_digest(vdir)
    return dest
