"""`edge-agent check`: the self-test on this device in one line, `--bench` figures and the
BENCHMARKS.md row, and a refusal as one `error:` line (run as a user runs it)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from selftest_helpers import DEMO_BUNDLE, perturbed_copy, without_self_test

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}


def check(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge_agent.cli", "check", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=ENV,
    )


def test_check_passes_here_in_one_line() -> None:
    """No --bundle and no --config: the shipped demo bundle."""
    out = check("--runtime", "ai_edge_litert")
    assert out.returncode == 0, out.stderr
    (line,) = out.stdout.splitlines()
    assert re.match(
        r"self-test passed: ai_edge_litert [0-9.]+ without XNNPACK on this x86_64 CPU "
        r"with .* \(from /proc/cpuinfo\): embedding cosine 1\.0000\d",
        line,
    ), line
    assert f"[bundle {DEMO_BUNDLE} version 1 (v1-" in line
    xnn = check("--runtime", "ai_edge_litert", "--xnnpack")
    assert xnn.returncode == 0 and "ai_edge_litert" in xnn.stdout
    assert " with XNNPACK on this x86_64 CPU" in xnn.stdout


def test_bench_prints_ms_per_window_rss_and_a_row() -> None:
    out = check("--bench", "--windows", "3", "--runtime", "ai_edge_litert")
    assert out.returncode == 0, out.stderr
    _, bench, row = out.stdout.splitlines()
    m = re.match(
        r"bench: 3 windows of 10 s through ai_edge_litert [0-9.]+ without XNNPACK, 1 "
        r"thread: ([0-9.]+) ms per window \(median; 90th percentile ([0-9.]+) ms\), "
        r"peak RSS ([0-9]+) MB$",
        bench,
    )
    assert m, bench
    median, p90, rss = (float(g) for g in m.groups())
    assert 0 < median <= p90 < 10_000 and 30 < rss < 4000
    cells = [c.strip() for c in row.split("|")[1:-1]]
    assert row.startswith('row for BENCHMARKS.md ("Your device"): |') and len(cells) == 9
    assert cells[1] == "x86_64" and cells[4] == "1" and float(cells[5]) == median


def test_check_says_when_a_bundle_has_no_reference(tmp_path: Path) -> None:
    root = without_self_test(tmp_path / "bundle")
    out = check("--bundle", str(root), "--runtime", "ai_edge_litert")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"self-test: bundle {root} version 1 (v1-")
    assert "has no self-test reference (exported before it existed)" in out.stdout


def test_check_refuses_other_numbers_in_one_error_line(tmp_path: Path) -> None:
    """Every runtime installed here (ai-edge-litert, TensorFlow's) computes the true numbers,
    which this bundle does not expect: one `error:` line, exit 2, naming what was tried."""
    root = perturbed_copy(tmp_path / "bundle")
    out = check("--bundle", str(root))
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.count("\n") == 1 and out.stderr.startswith("error: ")
    assert "self-test failed: ai_edge_litert" in out.stderr
    assert "also tried: tflite_runtime without XNNPACK: ModuleNotFoundError" in out.stderr


def test_check_takes_the_bundle_and_tflite_settings_from_a_config(tmp_path: Path) -> None:
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(
        f"bundle: {DEMO_BUNDLE}\nsection: fan_section_00\n"
        "tflite:\n  runtime: ai_edge_litert\n  xnnpack: true\n"
    )
    out = check("--config", str(cfg))
    assert out.returncode == 0, out.stderr
    assert "ai_edge_litert" in out.stdout and " with XNNPACK" in out.stdout
    out = check("--config", str(cfg), "--no-xnnpack")  # the flag overrides the config
    assert out.returncode == 0, out.stderr
    assert "without XNNPACK" in out.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("tflite:\n  runtime: onnx\n")
    out = check("--config", str(bad))
    assert out.returncode == 2 and out.stderr.count("\n") == 1
    assert (
        "tflite.runtime: expected one of auto, ai_edge_litert, tflite_runtime, tensorflow"
        in out.stderr
    )
