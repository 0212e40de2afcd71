"""edge_agent.runtime.probe: every TFLite runtime is tried in a child process, so a runtime that
crashes is an answer, not the end of the agent; the choice is cached per process; the shell
scripts' entry point says the same in one line with an exit code.

The crash is real: the child of the `tensorflow` runtime is given a `tensorflow` package that
dereferences a null pointer when imported (a real SIGSEGV, every time; TensorFlow's own
interpreter segfaults on a model cut in half only some of the time). Under arm64 emulation the
crash is ai-edge-litert's own (deploy/arm64-check.sh shows it).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from selftest_helpers import DEMO_BUNDLE, perturbed_copy

from edge_agent.bundle.load import load_bundle
from edge_agent.errors import BundleError, RuntimeUnavailableError
from edge_agent.runtime.probe import choose_runtime, try_runtime
from edge_agent.runtime.scorer import Scorer
from edge_agent.runtime.selftest import SelfTestError
from edge_agent.scoring.embedder import RuntimeRequest

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}


def truncated_copy(dest: Path) -> Path:
    """The demo bundle with its model cut in half (load it with verify=False)."""
    shutil.copytree(DEMO_BUNDLE, dest)
    model = dest / "versions" / "1" / "model_0.tflite"
    data = model.read_bytes()
    model.write_bytes(data[: len(data) // 2])
    return dest


def test_the_choice_is_made_in_a_child_and_kept_for_the_process() -> None:
    bundle = load_bundle(DEMO_BUNDLE)
    first = choose_runtime(bundle, RuntimeRequest(("ai_edge_litert",)))
    assert first.name == "ai_edge_litert" and not first.xnnpack and first.version
    t0 = time.monotonic()
    assert choose_runtime(bundle, RuntimeRequest(("ai_edge_litert",))) is first  # cached
    assert time.monotonic() - t0 < 0.05  # no child this time
    xnn = choose_runtime(bundle, RuntimeRequest(("ai_edge_litert",), xnnpack=True))
    assert xnn is not first and xnn.xnnpack and xnn.label.endswith(" with XNNPACK")


def crashing_tensorflow(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Children started from now on import a `tensorflow` that segfaults (PYTHONPATH comes
    before site-packages); this process never imports it."""
    package = folder / "tensorflow"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("import ctypes\nctypes.string_at(0)\n")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(folder), *sys.path]))


def test_a_crashing_runtime_is_named_and_the_next_one_tried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    crashing_tensorflow(tmp_path / "crash", monkeypatch)
    root = truncated_copy(tmp_path / "bundle")
    vdir = root / "versions" / "1"
    trial = try_runtime(vdir, "tensorflow", verify=False)
    assert trial.crashed and not trial.passed
    assert trial.detail == "crashed (SIGSEGV) loading or running the model"
    # this process is alive, and the next runtime gets its turn: it works, the MODEL does not,
    # so the bundle's own error is what a user sees, with the crash next to it; this
    # process never loads the model itself (it could crash here too)
    request = RuntimeRequest(("tensorflow", "ai_edge_litert"))
    with pytest.raises(BundleError) as exc:
        Scorer.from_bundle(root, verify=False, request=request)
    msg = str(exc.value)
    assert "model_0.tflite: the TFLite runtime cannot load it" in msg and "\n" not in msg
    assert "also tried: tensorflow without XNNPACK: crashed (SIGSEGV)" in msg


def test_no_runtime_at_all_is_one_line_naming_each() -> None:
    bundle = load_bundle(DEMO_BUNDLE)
    with pytest.raises(RuntimeUnavailableError) as exc:
        choose_runtime(bundle, RuntimeRequest(("tflite_runtime",)))
    msg = str(exc.value)
    assert msg.startswith("no TFLite runtime works (tflite_runtime without XNNPACK: ")
    assert "pip install ai-edge-litert" in msg and "\n" not in msg


def test_a_hung_child_is_given_up_after_its_bound() -> None:
    t0 = time.monotonic()
    trial = try_runtime(DEMO_BUNDLE / "versions" / "1", "ai_edge_litert", timeout=0.05)
    assert time.monotonic() - t0 < 10
    assert not trial.passed and trial.detail == "no answer within 0.05 s (hung)"


def test_wrong_numbers_are_not_a_pass(tmp_path: Path) -> None:
    root = perturbed_copy(tmp_path / "bundle")
    trial = try_runtime(root / "versions" / "1", "ai_edge_litert")
    assert not trial.passed and trial.wrong_numbers and "self-test failed" in trial.detail
    with pytest.raises(SelfTestError, match="self-test failed: ai_edge_litert"):
        choose_runtime(load_bundle(root), RuntimeRequest(("ai_edge_litert",)))


def _probe(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge_agent.runtime.probe", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=ENV,
    )


def test_the_scripts_entry_point_prints_the_runtime_or_one_line(tmp_path: Path) -> None:
    """What deploy/demo.sh and deploy/install.sh call: exit 0 and the runtime's name; 1 when
    none runs; 3 when one runs but computes other numbers on this CPU."""
    ok = _probe()
    assert (ok.returncode, ok.stdout, ok.stderr) == (0, "ai_edge_litert\n", "")
    none = _probe("--runtime", "tflite_runtime")
    assert none.returncode == 1 and none.stdout == ""
    assert none.stderr.startswith("error: no TFLite runtime works") and none.stderr.count("\n") == 1
    wrong = _probe(str(perturbed_copy(tmp_path / "bundle")), "--runtime", "ai_edge_litert")
    assert wrong.returncode == 3 and wrong.stderr.count("\n") == 1
    assert "self-test failed" in wrong.stderr
