"""edge_agent.runtime.scorer: a reload shares the running interpreter only where the model is
the very same (verified bytes, inputs, threads, runtime), and scores as a fresh one would."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from edge_agent.bundle.load import load_bundle
from edge_agent.bundle.versions import write_adapted_version
from edge_agent.commands.demo import load_demo
from edge_agent.runtime.scorer import Scorer


def _demo_copy(tmp_path: Path) -> tuple[Path, str]:
    root = tmp_path / "bundle"
    shutil.copytree(load_demo().bundle, root)
    return root, sorted(load_bundle(root).sections)[0]


def _wave(seed: int = 0) -> np.ndarray:
    return (0.05 * np.random.default_rng(seed).standard_normal(160_000)).astype(np.float32)


def test_a_new_version_with_the_same_model_shares_the_interpreter(tmp_path: Path) -> None:
    root, section = _demo_copy(tmp_path)
    running = Scorer.from_bundle(root)
    v1 = load_bundle(root)
    write_adapted_version(v1, v1.backends, "calibration", {"clips": 0})  # as calibrate writes it
    new = Scorer.from_bundle(root, running=running)
    assert new.bundle.model_version != running.bundle.model_version
    assert new.self_test is not None and new.self_test.passed  # checked like any version
    (shared,) = new.model_embedders()
    assert shared is running.model_embedders()[0]
    # one copy of the model's bytes: the new version keeps the running one's (equal) bytes
    (name,) = new.bundle.model_files
    assert new.bundle.model_content[name] is running.bundle.model_content[name]
    fresh = Scorer.from_bundle(root)
    assert fresh.model_embedders()[0] is not shared
    w = _wave()
    assert new.score(w, section).score == fresh.score(w, section).score


def test_nothing_is_shared_for_another_model_threads_or_unverified_bytes(
    tmp_path: Path, bundle_dir: Path
) -> None:
    root, _ = _demo_copy(tmp_path)
    running = Scorer.from_bundle(root)
    (interpreter,) = running.model_embedders()
    other = Scorer.from_bundle(bundle_dir, running=running)  # another network's bytes
    assert all(e is not interpreter for e in other.model_embedders())
    two_threads = Scorer.from_bundle(root, threads=2, running=running)
    assert two_threads.model_embedders()[0] is not interpreter
    # read from the files without verification: what is on disk may have changed since
    unverified = Scorer.from_bundle(root, verify=False, running=running)
    assert unverified.model_embedders()[0] is not interpreter
    again = Scorer.from_bundle(root, running=unverified)
    assert again.model_embedders()[0] is not unverified.model_embedders()[0]
