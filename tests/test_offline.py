"""`edge-agent score --plot`: windowed scores of a long recording, and the PNG."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import run_cli

from edge_agent.audio.files import read_wav, write_wav
from edge_agent.commands.demo import load_demo
from edge_agent.runtime.offline import window_starts


def test_window_starts_cover_full_windows_only() -> None:
    assert window_starts(100, 30, 10) == [0, 10, 20, 30, 40, 50, 60, 70]
    assert window_starts(100, 30, 40) == [0, 40]
    assert window_starts(20, 30, 10) == [0]  # shorter than a window: one (looped) window
    assert window_starts(30, 30, 10) == [0]


@pytest.fixture(scope="module")
def long_wav(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    """The demo's first 3 normal and first 3 faulty clips back to back: one 60 s recording."""
    demo = load_demo()
    clips = demo.paths[:3] + demo.paths[demo.n_normal : demo.n_normal + 3]
    x = np.concatenate([read_wav(p)[0] for p in clips])
    out = tmp_path_factory.mktemp("long") / "press_section_00_recording.wav"
    write_wav(out, x, 16000)
    return out, clips


def test_plot_scores_every_window_and_matches_single_clip_scores(
    long_wav: tuple[Path, list[Path]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("matplotlib")
    wav, clips = long_wav
    demo = load_demo()
    png = tmp_path / "scores.png"
    code, out, err = run_cli(
        capsys,
        *[
            "score",
            str(wav),
            "--bundle",
            str(demo.bundle),
            "--section",
            demo.section,
            "--plot",
            str(png),
            "--hop",
            "10",
            "--json",
        ],
    )
    assert code == 0, err
    (verdict,) = [json.loads(line) for line in out.splitlines()]  # one object per file
    rows = verdict["windows"]
    assert [r["start_s"] for r in rows] == [0.0, 10.0, 20.0, 30.0, 40.0, 50.0]
    assert verdict["score"] == max(r["score"] for r in rows)  # the file's verdict: the max
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.stat().st_size > 10_000  # a drawn figure, not an empty canvas

    # hop 10 s aligns windows with the original clips: the same scores as scoring each clip.
    code, out, err = run_cli(
        capsys,
        *[
            "score",
            *map(str, clips),
            "--bundle",
            str(demo.bundle),
            "--section",
            demo.section,
            "--json",
        ],
    )
    assert code == 0, err
    single = [json.loads(line)["score"] for line in out.splitlines()]
    assert np.allclose([r["score"] for r in rows], single, atol=1e-4)


def test_plot_with_overlap_counts_windows(
    long_wav: tuple[Path, list[Path]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("matplotlib")
    wav, _ = long_wav
    demo = load_demo()
    code, out, err = run_cli(
        capsys,
        *[
            "score",
            str(wav),
            "--bundle",
            str(demo.bundle),
            "--section",
            demo.section,
            "--plot",
            str(tmp_path / "p.png"),
            "--hop",
            "2.5",
        ],
    )
    assert code == 0, err
    lines = [ln for ln in out.splitlines() if ".wav@" in ln]
    assert len(lines) == 21  # (60 - 10) / 2.5 + 1
    assert lines[1].endswith("@2.5s")
    assert f"wrote {tmp_path / 'p.png'}" in out


def test_plot_without_matplotlib_is_one_line_error(
    long_wav: tuple[Path, list[Path]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    wav, _ = long_wav
    demo = load_demo()
    code, _out, err = run_cli(
        capsys,
        *["score", str(wav), "--bundle", str(demo.bundle), "--plot", str(tmp_path / "p.png")],
    )
    assert code == 2
    assert err.strip().splitlines() == [
        (
            "error: --plot needs matplotlib: pip install 'listening-monitor[plot]' "
            "(or pip install matplotlib)"
        )
    ]
    assert not (tmp_path / "p.png").exists()


def test_plot_rejects_non_positive_hop(
    long_wav: tuple[Path, list[Path]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("matplotlib")
    wav, _ = long_wav
    demo = load_demo()
    code, _, err = run_cli(
        capsys,
        *[
            "score",
            str(wav),
            "--bundle",
            str(demo.bundle),
            "--plot",
            str(tmp_path / "p.png"),
            "--hop",
            "0",
        ],
    )
    assert code == 2
    assert err.startswith("error: --hop: expected a number in [0.1, 86400], got 0")
