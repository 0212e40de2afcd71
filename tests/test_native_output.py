"""Output a person can read: library noise captured at the file-descriptor level, progress
bars on stderr, and the commands' own lines only (`--verbose` brings the noise back)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from edge_agent.scoring.native_output import (
    XNNPACK_LINE,
    drop_everything,
    native_output,
    not_xnnpack,
)
from model_build import quiet
from model_build.progress import Progress

REPO = Path(__file__).resolve().parents[1]
NOISE = (
    "oneDNN",
    "absl",
    "XNNPACK",
    "Saved artifact",
    "TensorSpec",
    "tf_tfl_flatbuffer",
    "SavedModel",
    "cpu_feature_guard",
)


def test_native_writes_are_filtered_and_the_rest_written_back(
    capfd: pytest.CaptureFixture[str],
) -> None:
    with native_output(keep=not_xnnpack):
        os.write(2, f"{XNNPACK_LINE}\nreal problem\n".encode())
    assert capfd.readouterr().err == "real problem\n"
    with native_output(keep=drop_everything, fds=(1, 2)):
        os.write(1, b"loader notice\n")
        os.write(2, b"W0000 converter notice\n")
    assert capfd.readouterr() == ("", "")


def test_everything_captured_comes_back_when_the_block_fails(
    capfd: pytest.CaptureFixture[str],
) -> None:
    def convert() -> None:
        os.write(2, b"E0000 the reason it failed\n")
        raise RuntimeError("conversion failed")

    with pytest.raises(RuntimeError), native_output(keep=drop_everything):
        convert()
    assert "the reason it failed" in capfd.readouterr().err


def test_no_temporary_folder_means_output_passes_through(
    capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sandbox without a writable temporary folder must not break model loading."""
    import tempfile

    def refuse() -> None:
        raise OSError("read-only file system")

    monkeypatch.setattr(tempfile, "TemporaryFile", refuse)
    with native_output(keep=drop_everything):
        os.write(2, b"runtime notice\n")
    assert capfd.readouterr().err == "runtime notice\n"


def test_verbose_leaves_library_output_alone(capfd: pytest.CaptureFixture[str]) -> None:
    try:
        quiet.configure(verbose=True)
        with quiet.converter_output():
            os.write(2, b"converter notice\n")
        assert capfd.readouterr().err == "converter notice\n"
        quiet.configure(verbose=False)
        with quiet.converter_output():
            os.write(2, b"converter notice\n")
        assert capfd.readouterr().err == ""
    finally:
        quiet.configure(verbose=True)


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_in_a_log_writes_a_line_per_tenth() -> None:
    log = io.StringIO()
    with Progress(1000, "embedding test clips", stream=log) as bar:
        for _ in range(1000):
            bar.update()
    lines = log.getvalue().splitlines()
    assert len(lines) == 10
    assert lines[0].startswith("embedding test clips") and " 100/1000 " in lines[0]
    assert "1000/1000" in lines[-1] and "[########################]" in lines[-1]


def test_progress_on_a_terminal_redraws_one_line() -> None:
    tty = _Tty()
    with Progress(3, "converting models", stream=tty, unit="models") as bar:
        bar.update(3)
    out = tty.getvalue()
    assert out.startswith("\r") and out.endswith("\n") and out.count("\n") == 1
    assert "3/3" in out and "models/s" in out


def test_disabled_progress_is_silent() -> None:
    log = io.StringIO()
    with Progress(5, "x", enabled=False, stream=log) as bar:
        bar.update(5)
    assert log.getvalue() == ""


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    return subprocess.run(
        [
            sys.executable,
            "-c",
            ("import sys; from model_build.cli import main; main(sys.argv[1:])"),
            *args,
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=600,
    )


def test_export_prints_its_own_lines_only(trained_run: Path, tmp_path: Path) -> None:
    """`model-build export` printed ~111 lines, one of them ours; now ours and progress."""
    proc = _cli("export", str(trained_run), "--out", str(tmp_path / "bundle"))
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout + proc.stderr
    assert not [n for n in NOISE if n in text], text
    assert proc.stdout.strip().splitlines() == [proc.stdout.strip()]
    assert proc.stdout.startswith("wrote ")
    err = proc.stderr.splitlines()
    # progress only: conversion, embedding, and the sections' pseudo-anomalies (their weights)
    assert err and all(
        ln.startswith(("converting models", "embedding train clips", "pseudo-anomalies"))
        for ln in err
    ), err


def test_agent_scoring_prints_no_xnnpack_line(bundle_dir: Path) -> None:
    clip = REPO / "edge_agent/demo/clips/01_normal.wav"
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "from edge_agent.cli import main; main()",
            "score",
            str(clip),
            "--bundle",
            str(bundle_dir),
            "--section",
            "fan_section_00",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert XNNPACK_LINE not in proc.stderr and proc.stderr == ""
    assert "fan_section_00" in proc.stdout
