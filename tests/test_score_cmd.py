"""`edge-agent score`: device-path scores of WAV files, equal to evaluate's for the same bundle."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from edge_agent.bundle import load_bundle
from edge_agent.cli import main as edge_main
from model_build.data import scan
from model_build.evaluate import backend_scores
from model_build.export import BundleEmbedder
from model_build.runs import load_run

TOLERANCE = 1e-5  # float32 device scores vs evaluate's float64 backend on the same embeddings


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        edge_main(argv)
    out = capsys.readouterr()
    return int(exc.value.code or 0), out.out, out.err


def test_real_dcase_clips_score_through_the_device_path(
    bundle_dir: Path, capsys: pytest.CaptureFixture[str], real_data: Callable[[str], Path]
) -> None:
    sections = load_bundle(bundle_dir).sections
    machines = {s.split("_section_")[0] for s in sections}
    real = real_data("dcase2023-dev-mixed")
    files = sorted(p for p in real.glob("*.wav") if p.name.split("_")[0] in machines)
    if not files:
        pytest.skip("no real clip of a machine type the test bundle knows")
    code, out, _ = _run(["score", *map(str, files), "--bundle", str(bundle_dir), "--json"], capsys)
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and len(rows) == len(files)
    for f, r in zip(files, rows, strict=True):
        assert r["section"] == f"{f.name.split('_')[0]}_section_00"
        # standardised fused score: finite, and the decision is score > threshold
        assert np.isfinite(r["score"]) and np.isfinite(r["threshold"])
        assert r["anomalous"] == (r["score"] > r["threshold"])


def test_scores_equal_evaluate_scores_for_the_same_bundle(
    bundle_dir: Path, trained_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    roots = [Path(p) for p in load_run(trained_run).meta["data"]]
    clips = scan(roots)
    train = [c for c in clips if c.split == "train"]
    test = [c for c in clips if c.split == "test"]
    argv = ["score", *map(str, roots), "--bundle", str(bundle_dir), "--json", "--threads", "2"]
    code, out, _ = _run(argv, capsys)
    assert code == 0
    rows = {Path(r["file"]): r for r in map(json.loads, out.splitlines())}
    # evaluate's pure scoring function on the bundle's (device-path) embeddings
    emb = BundleEmbedder(bundle_dir)
    ev = backend_scores(emb.embed_clips(train), train, emb.embed_clips(test), test)
    got = np.array([rows[Path(c.path)]["score"] for c in test])
    assert np.allclose(got, ev.scores, atol=TOLERANCE, rtol=0)
    b = load_bundle(bundle_dir)
    for c in test:
        r = rows[Path(c.path)]
        assert r["section"] == c.section_id and r["model_version"] == b.model_version
        assert r["threshold"] == pytest.approx(ev.thresholds[c.section_id], abs=TOLERANCE)
        assert r["anomalous"] == (r["score"] > r["threshold"])


def test_table_output_and_section_option(
    bundle_dir: Path, trained_run: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    roots = [Path(p) for p in load_run(trained_run).meta["data"]]
    clip = next(c for c in scan(roots) if c.split == "test")
    sections = load_bundle(bundle_dir).sections
    code, out, _ = _run(["score", str(clip.path), "--bundle", str(bundle_dir)], capsys)
    lines = out.splitlines()
    assert code == 0 and lines[0].split()[:3] == ["score", "threshold", "decision"]
    assert lines[1].split()[2] in ("ANOMALY", "normal") and clip.section_id in lines[1]
    other = next(s for s in sections if s != clip.section_id)
    code, out, _ = _run(
        ["score", str(clip.path), "--bundle", str(bundle_dir), "--section", other, "--json"],
        capsys,
    )
    assert code == 0 and json.loads(out)["section"] == other
    code, _, err = _run(
        ["score", str(clip.path), "--bundle", str(bundle_dir), "--section", "nope"], capsys
    )
    assert code == 2 and "no section 'nope'" in err
    plain = tmp_path / "recording.wav"
    plain.write_bytes(Path(clip.path).read_bytes())
    code, _, err = _run(["score", str(plain), "--bundle", str(bundle_dir)], capsys)
    assert code == 2 and "error: --section: needed for" in err and "no section_XX" in err
    code, _, err = _run(["score", str(tmp_path / "gone.wav"), "--bundle", str(bundle_dir)], capsys)
    assert code == 2 and err.startswith("error: ") and "no such file" in err
