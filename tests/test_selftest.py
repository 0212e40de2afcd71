"""edge_agent.runtime.selftest: the device refuses a runtime or CPU that computes other numbers
than the bundle was made with, in one line, at start, at every reload and for a fleet release;
a bundle without the reference still loads and says so once.

The wrong numbers are reproduced on x86 with a deliberately turned EXPECTED embedding
(selftest_helpers); the arm64 check (deploy/arm64-check.sh) shows the real case under QEMU's
default arm64 CPU model.
"""

from __future__ import annotations

import logging
import re
import shutil
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from collect_sink import Collect
from selftest_helpers import (
    DEMO_BUNDLE,
    SECTION,
    perturbed_copy,
    perturbed_self_test,
    without_self_test,
)
from waiting import wait_until

from edge_agent.agent import Agent
from edge_agent.audio.files import load_clip
from edge_agent.bundle.load import load_bundle
from edge_agent.bundle.manifest import SELF_TEST, sha256_file
from edge_agent.bundle.versions import write_adapted_version, write_bundle
from edge_agent.config.load import load_config
from edge_agent.errors import BundleError
from edge_agent.fleet.install import check_candidate
from edge_agent.fleet.messages import FleetError, Release
from edge_agent.runtime import selftest
from edge_agent.runtime.scorer import Scorer
from edge_agent.runtime.selftest import (
    FLOORS,
    MARGIN,
    SelfTestError,
    cpu_description,
    load_reference,
    tolerance,
)
from edge_agent.scoring.embedder import RuntimeRequest, load_runtime

LITERT = RuntimeRequest(("ai_edge_litert",))  # one runtime: no TensorFlow child in these tests
DEMO_CLIP = DEMO_BUNDLE.parent / "clips" / "01_normal.wav"


def test_the_demo_bundle_passes_its_self_test_here() -> None:
    """The shipped bundle carries its reference (01_normal.wav as 16-bit PCM) and this machine
    reproduces it: with the kernels it was fitted with (TFLite's own, the default) every
    component's cosine ~1; with XNNPACK's within the tolerance."""
    xnn = Scorer.from_bundle(
        DEMO_BUNDLE, request=RuntimeRequest(("ai_edge_litert",), xnnpack=True)
    ).self_test
    assert xnn is not None and xnn.passed
    assert xnn.min_cosine > 0.999 and xnn.score_difference < xnn.reference.max_score_difference
    scorer = Scorer.from_bundle(DEMO_BUNDLE, request=LITERT)
    assert not scorer.runtime.xnnpack
    result = scorer.self_test
    assert result is not None and result.passed
    ref = result.reference
    assert np.abs(ref.wave - load_clip(DEMO_CLIP, scorer.spec)).max() <= 1 / 32768
    assert len(result.cosines) == len(scorer.bundle.components) and result.min_cosine > 0.9999
    assert ref.min_cosine == 0.998 and 0.1 <= ref.max_score_difference < 0.2
    assert result.score_difference < 0.01
    # the expected score is the bundle's own backend on the expected embeddings, and it is
    # what this machine scores the reference window as, before the backend's transform (the
    # Gaussian surprise: the agent's score is that function of the same components' scores)
    expected, got = result.scores[SECTION]
    backend = scorer.bundle.backend(SECTION)
    assert backend.transform == "surprise"
    per = backend.component_scores([e[None] for e in scorer.embed(ref.wave)])
    standardised = replace(backend, transform="none").score(
        [e[None] for e in scorer.embed(ref.wave)]
    )
    assert got == pytest.approx(float(standardised[0]), abs=1e-6)
    assert float(np.sum(per)) == pytest.approx(scorer.score(ref.wave, SECTION).score, abs=1e-6)
    assert expected == pytest.approx(got, abs=0.01)
    assert set(result.scores) == set(scorer.bundle.sections)


def test_other_numbers_are_refused_in_one_line(tmp_path: Path) -> None:
    root = perturbed_copy(tmp_path / "bundle", cosine=0.8)
    with pytest.raises(SelfTestError) as exc:
        Scorer.from_bundle(root, request=RuntimeRequest(("ai_edge_litert",), xnnpack=True))
    msg = str(exc.value)
    assert "\n" not in msg and "self-test failed" in msg
    assert re.search(r"ai_edge_litert [0-9.]+ with XNNPACK on this x86_64 CPU with .*avx", msg)
    assert "(from /proc/cpuinfo)" in msg
    assert re.search(
        r"embedding cosine 0\.(?:79|80)\d+ to the reference \(component 0; needs >= "
        r"0\.99800\)",
        msg,
    ), msg
    assert "tflite: {runtime: tflite_runtime}" in msg and "tflite: {xnnpack: false}" in msg
    assert "edge-agent check --runtime tflite_runtime" in msg
    # the same bundle with TFLite's own kernels (the default): still not the expected numbers,
    # and XNNPACK is not named as a way out
    with pytest.raises(SelfTestError, match="without XNNPACK") as own:
        Scorer.from_bundle(root, request=LITERT)
    assert "xnnpack" not in str(own.value).lower().replace("without xnnpack", "")


def test_a_small_turn_within_the_tolerance_passes(tmp_path: Path) -> None:
    """A turn the size of a kernel difference (cosine 0.9995 > 0.998) is not a refusal."""
    root = perturbed_copy(tmp_path / "bundle", cosine=0.9995)
    result = Scorer.from_bundle(root, request=LITERT).self_test
    assert result is not None and result.passed and result.min_cosine < 0.9999


def test_the_agent_refuses_to_start_with_other_numbers(tmp_path: Path) -> None:
    root = perturbed_copy(tmp_path / "bundle")
    cfg = load_config(
        None,
        {
            "bundle": str(root),
            "section": SECTION,
            "source.kind": "files",
            "source.files": [str(DEMO_CLIP)],
            "log.stdout": False,
            "tflite.runtime": "ai_edge_litert",
        },
    )
    with pytest.raises(SelfTestError, match="self-test failed"):
        Agent(cfg, sinks=[])


def test_a_reload_into_other_numbers_keeps_the_running_version(tmp_path: Path) -> None:
    """The agent runs the demo; a new version whose self-test fails here appears: the reload
    is refused with a one-line reload_failed event, the running model keeps scoring."""
    root = tmp_path / "bundle"
    shutil.copytree(DEMO_BUNDLE, root)
    v1 = load_bundle(root)
    cfg = load_config(
        None,
        {
            "bundle": str(root),
            "section": SECTION,
            "source.kind": "files",
            "source.files": [str(DEMO_CLIP)],
            "source.loop": True,
            "log.stdout": False,
            "reload_poll_seconds": 0.1,
            "tflite.runtime": "ai_edge_litert",
        },
    )
    c = Collect()
    agent = Agent(cfg, sinks=[c])
    t = threading.Thread(target=agent.run, kwargs={"install_signals": False})
    t.start()
    try:
        assert wait_until(lambda: len(c.kind("score")) >= 1)
        manifest = {
            k: v for k, v in v1.manifest.items() if k not in ("version", "files", "created")
        }
        write_bundle(
            root,
            {n: v1.path / n for n in v1.model_files},
            v1.backends,
            manifest,
            extra={SELF_TEST: perturbed_self_test(v1.path)},
        )

        def failed() -> list[dict[str, object]]:
            return [e for e in c.kind("health") if e.get("event") == "reload_failed"]

        assert wait_until(lambda: bool(failed()))
        n = len(c.kind("score"))
        assert wait_until(lambda: len(c.kind("score")) >= n + 2)  # still scoring
    finally:
        agent.stop()
        t.join(30)
    assert not t.is_alive()
    (event,) = failed()
    assert "self-test failed" in str(event["error"]) and "\n" not in str(event["error"])
    assert agent.counters["reloads"] == 0
    assert {e["model_version"] for e in c.kind("score")} == {v1.model_version}


def test_the_fleet_refuses_a_release_whose_self_test_fails_here(tmp_path: Path) -> None:
    root = perturbed_copy(tmp_path / "bundle")
    vdir = root / "versions" / "1"
    b = load_bundle(root)
    release = Release(
        "r1",
        "presses",
        "0" * 64,
        1,
        1,
        ("0" * 64,),
        None,
        "all",
        b.model_version,
        sha256_file(vdir / "manifest.json"),
        time.time(),
    )
    with pytest.raises(FleetError) as exc:
        check_candidate(vdir, release, [], True, [SECTION], b.spec.clip_samples, LITERT)
    assert "release r1: " in str(exc.value) and "self-test failed" in str(exc.value)
    good = DEMO_BUNDLE / "versions" / "1"
    ok = Release(
        "r2",
        "presses",
        "0" * 64,
        1,
        1,
        ("0" * 64,),
        None,
        "all",
        load_bundle(DEMO_BUNDLE).model_version,
        sha256_file(good / "manifest.json"),
        time.time(),
    )
    assert (
        check_candidate(good, ok, [], True, [SECTION], b.spec.clip_samples, LITERT).model_version
        == ok.model_version
    )


def test_a_bundle_without_the_reference_loads_and_says_so_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = without_self_test(tmp_path / "bundle")
    selftest._said_no_reference.clear()  # once per PROCESS: this test starts the count  # noqa: SLF001 -- the test observes or drives an internal the API keeps private
    with caplog.at_level(logging.WARNING, logger="edge_agent"):
        first = Scorer.from_bundle(root, request=LITERT)
        Scorer.from_bundle(root, request=LITERT)
    assert first.self_test is None and load_reference(first.bundle) is None
    said = [r.getMessage() for r in caplog.records if "no self-test reference" in r.getMessage()]
    assert len(said) == 1 and str(root) in said[0] and "re-export" in said[0]
    assert first.score(load_clip(DEMO_CLIP, first.spec), SECTION).score == pytest.approx(
        Scorer.from_bundle(DEMO_BUNDLE, request=LITERT)
        .score(load_clip(DEMO_CLIP, first.spec), SECTION)
        .score,
        abs=1e-6,
    )


def test_an_adapted_version_carries_the_self_test(tmp_path: Path) -> None:
    """calibrate/enrol/tune write a new backend with the same models: the self-test file
    travels unchanged and its expected score follows the new backend."""
    import dataclasses

    root = tmp_path / "bundle"
    shutil.copytree(DEMO_BUNDLE, root)
    b = load_bundle(root)
    old = b.backend(SECTION)
    moved = dataclasses.replace(old, threshold=old.threshold + 1.0)
    vdir = write_adapted_version(b, {**b.backends, SECTION: moved}, "tuning", {"section": SECTION})
    new = load_bundle(root)
    assert new.path == vdir and new.manifest["self_test"] == b.manifest["self_test"]
    assert new.manifest["files"][SELF_TEST] == b.manifest["files"][SELF_TEST]
    result = Scorer.from_bundle(root, request=LITERT).self_test
    assert result is not None and result.passed


def test_a_tampered_self_test_file_fails_its_checksum(tmp_path: Path) -> None:
    root = tmp_path / "bundle"
    shutil.copytree(DEMO_BUNDLE, root)
    f = root / "versions" / "1" / SELF_TEST
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0xFF
    f.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=f"{SELF_TEST}: checksum mismatch"):
        load_bundle(root)


def test_the_tolerance_is_the_kernel_difference_times_the_margin_with_floors() -> None:
    """The export's quantisation check: the demo model through XNNPACK and through TFLite's
    own kernels differ a little (dynamic quantisation); identical paths give the floors."""
    b = load_bundle(DEMO_BUNDLE)
    xnn = Scorer.from_loaded(b, runtime=load_runtime("ai_edge_litert", True), check=False)
    own = Scorer.from_loaded(b, runtime=load_runtime("ai_edge_litert", False), check=False)
    waves = [load_clip(p, b.spec) for p in sorted(DEMO_CLIP.parent.glob("*.wav"))[:4]]
    min_cos, max_score, measured = tolerance(xnn.embed, own.embed, waves, b.backends)
    kernel = 1 - measured["kernel_cosine_min"]
    assert 0 < kernel < 1e-3 and measured["windows"] == 4
    assert min_cos == pytest.approx(1 - max(FLOORS[0], MARGIN * kernel), abs=1e-6)
    assert max_score == pytest.approx(
        max(FLOORS[1], MARGIN * measured["kernel_score_difference_max"]), abs=5e-5
    )
    same = tolerance(xnn.embed, xnn.embed, waves[:1], b.backends)
    assert same[:2] == (1 - FLOORS[0], FLOORS[1])


def test_cpu_description_names_the_kernels_features(tmp_path: Path) -> None:
    pi = tmp_path / "cpuinfo"
    pi.write_text(
        "processor\t: 0\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 "
        "atomics fphp asimdhp cpuid asimddp sve sve2 i8mm bf16 sme\n"
        "CPU part\t: 0xd40\n\nModel\t\t: test board\n"
    )
    assert cpu_description(pi).startswith(
        "aarch64 CPU with asimd asimddp asimdhp fphp i8mm bf16 sve sve2 sme (from "
    )
    (tmp_path / "old").write_text("processor\t: 0\nFeatures\t: fp asimd crc32 cpuid\n")
    assert "aarch64 CPU with asimd (from" in cpu_description(tmp_path / "old")
    assert "(no " in cpu_description(tmp_path / "missing")
