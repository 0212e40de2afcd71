"""edge_agent.bundle: versioned layout, verification, and one-line errors for bad bundles."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge_agent.backend import PAPER_BACKEND, BackendConfig, fit_section
from edge_agent.bundle import (
    BACKEND,
    MANIFEST,
    MODEL,
    current_version,
    list_versions,
    load_backends,
    load_bundle,
    prune,
    save_backends,
    set_current,
    sha256_file,
    write_bundle,
)
from edge_agent.cli import main as edge_main
from edge_agent.errors import BundleError
from edge_agent.scorer import Scorer


def _copy(bundle_dir: Path, tmp_path: Path) -> tuple[Path, Path]:
    dst = tmp_path / "b"
    shutil.copytree(bundle_dir, dst)
    return dst, dst / "versions" / str(current_version(dst))


def _rewrite_manifest(vdir: Path, **changes: object) -> None:
    m = json.loads((vdir / MANIFEST).read_text())
    m.update(changes)
    (vdir / MANIFEST).write_text(json.dumps(m))


MODEL0 = "model_0.tflite"


def test_loaded_bundle_describes_itself(bundle_dir: Path) -> None:
    b = load_bundle(bundle_dir)
    assert b.version == 1 and (bundle_dir / "current").read_text().strip() == "1"
    m = b.manifest
    assert m["format_version"] == 2
    assert m["quantization"] in ("float32", "float16", "dynamic", "int8")
    assert [c["kind"] for c in b.components] == ["model", "bands", "rhythm"]
    assert b.model_files == [MODEL0] and b.model_path == b.path / MODEL0
    assert b.input_names == ["spectrogram", "spectrum"]
    assert b.input_shapes == {"spectrogram": [1, 311, 513, 1], "spectrum": [1, 80000, 1]}
    assert sorted(e["index"] for e in b.components[0]["inputs"]) == [0, 1]
    assert [c["dim"] for c in b.components] == [256, 106, 500]
    assert m["class_names"] and m["training"]["n_train_clips"] > 0
    assert b.backend_config == BackendConfig()
    assert set(m["files"]) == {MODEL0, BACKEND}
    assert m["files"][MODEL0] == sha256_file(b.model_path)
    assert b.sections == sorted(b.backends) and len(b.sections) >= 2
    for s in b.sections:
        bk = b.backend(s)
        assert len(bk.components) == 3 and bk.fusion == "sum"
        for c in bk.components:
            assert np.allclose(np.linalg.norm(c.references, axis=1), 1.0, atol=5e-4)  # float16
            assert np.all(c.density > 0) and c.std > 0
        assert np.isfinite(bk.threshold)


def test_new_versions_keep_the_old_ones_for_rollback(bundle_dir: Path, tmp_path: Path) -> None:
    root, vdir = _copy(bundle_dir, tmp_path)
    b1 = load_bundle(root)
    changed = {s: replace(bk, threshold=bk.threshold + 1.0) for s, bk in b1.backends.items()}
    manifest = {k: v for k, v in b1.manifest.items() if k not in ("version", "files", "created")}
    models = {MODEL0: vdir / MODEL0}
    v2 = write_bundle(root, models, changed, manifest)
    assert v2.name == "2" and list_versions(root) == [1, 2] and current_version(root) == 2
    b2 = load_bundle(root)
    s = b2.sections[0]
    assert b2.backend(s).threshold == pytest.approx(b1.backend(s).threshold + 1.0)
    set_current(root, 1)  # rollback
    assert load_bundle(root).backend(s).threshold == pytest.approx(b1.backend(s).threshold)
    assert load_bundle(root, version=2).version == 2
    assert load_bundle(v2).version == 2  # a version directory loads on its own too
    assert not [p for p in (root / "versions").iterdir() if p.name.startswith(".tmp")]
    with pytest.raises(BundleError, match="no version 7"):
        set_current(root, 7)
    write_bundle(root, models, changed, manifest, activate=False)
    with pytest.raises(BundleError, match="components name model files"):
        write_bundle(root, {"other.tflite": vdir / MODEL0}, changed, manifest)
    assert current_version(root) == 1 and list_versions(root) == [1, 2, 3]
    assert prune(root, keep=1) == [2] and list_versions(root) == [1, 3]


def test_backend_file_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    fit = fit_section([rng.standard_normal((12, 8)), rng.standard_normal((12, 5))],
                      [rng.standard_normal((3, 8)), rng.standard_normal((3, 5))])
    save_backends(tmp_path / "b.npz", {"fan_section_00": fit.backend})
    back = load_backends(tmp_path / "b.npz")["fan_section_00"]
    assert back.threshold == fit.backend.threshold and back.fusion == "sum"
    for a, b in zip(back.components, fit.backend.components, strict=True):
        assert np.array_equal(a.references, b.references) and a.n_source == b.n_source
        assert np.array_equal(a.density, b.density) and (a.mean, a.std) == (b.mean, b.std)
    x = [rng.standard_normal((4, 8)), rng.standard_normal((4, 5))]
    np.testing.assert_array_equal(back.score(x), fit.backend.score(x))


def test_format_1_bundles_still_load_as_one_paper_component(
    bundle_dir: Path, tmp_path: Path
) -> None:
    """A bundle an older agent exported: model.tflite, references/n_source/threshold."""
    root, vdir = _copy(bundle_dir, tmp_path)
    b = load_bundle(root)
    (vdir / MODEL0).rename(vdir / MODEL)
    old = {s: {"references": bk.components[0].references, "n_source":
               np.asarray(bk.components[0].n_source), "threshold": np.asarray(0.3)}
           for s, bk in b.backends.items()}
    arrays: dict[str, Any] = {f"{s}::{k}": v for s, d in old.items() for k, v in d.items()}
    np.savez(vdir / BACKEND, **arrays)
    m = json.loads((vdir / MANIFEST).read_text())
    comp = m.pop("components")[0]
    m.update(format_version=1, inputs=comp["inputs"], input_order=comp["input_order"],
             embedding_dim=256, backend={"method": "cosine"},
             files={MODEL: sha256_file(vdir / MODEL), BACKEND: sha256_file(vdir / BACKEND)})
    (vdir / MANIFEST).write_text(json.dumps(m))
    v1 = load_bundle(root)
    assert v1.model_files == [MODEL] and v1.backend_config == PAPER_BACKEND
    s = v1.sections[0]
    assert v1.backend(s).threshold == 0.3 and len(v1.backend(s).components) == 1
    scorer = Scorer.from_bundle(root)
    w = np.random.default_rng(0).standard_normal(160_000).astype(np.float32) * 0.05
    emb = scorer.embed(w)
    assert len(emb) == 1
    expected = 1.0 - float((old[s]["references"] @ emb[0]).max())  # the paper's raw score
    assert scorer.score(w, s).score == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize("target", [MODEL0, BACKEND])
def test_truncated_or_altered_files_fail_the_checksum(
    bundle_dir: Path, tmp_path: Path, target: str
) -> None:
    root, vdir = _copy(bundle_dir, tmp_path)
    data = (vdir / target).read_bytes()
    (vdir / target).write_bytes(data[: len(data) // 2])
    with pytest.raises(BundleError, match=f"{target}: checksum mismatch"):
        load_bundle(root)
    (vdir / target).write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(BundleError, match="checksum mismatch"):
        load_bundle(root)


def test_truncated_model_without_verification_is_still_a_bundle_error(
    bundle_dir: Path, tmp_path: Path
) -> None:
    root, vdir = _copy(bundle_dir, tmp_path)
    data = (vdir / MODEL0).read_bytes()
    (vdir / MODEL0).write_bytes(data[:1000])
    with pytest.raises(BundleError):
        Scorer.from_bundle(root, verify=False)


def test_unknown_format_version(bundle_dir: Path, tmp_path: Path) -> None:
    root, vdir = _copy(bundle_dir, tmp_path)
    _rewrite_manifest(vdir, format_version=99)
    with pytest.raises(BundleError, match="unknown format_version 99"):
        load_bundle(root)


def test_missing_section(bundle_dir: Path, tmp_path: Path) -> None:
    root, vdir = _copy(bundle_dir, tmp_path)
    b = load_bundle(root)
    with pytest.raises(BundleError, match="no section 'nope_section_09'"):
        b.backend("nope_section_09")
    dropped = b.sections[0]
    save_backends(vdir / BACKEND, {s: bk for s, bk in b.backends.items() if s != dropped})
    files = {**b.manifest["files"], BACKEND: sha256_file(vdir / BACKEND)}
    _rewrite_manifest(vdir, files=files)
    with pytest.raises(BundleError, match=f"missing section\\(s\\) {dropped}"):
        load_bundle(root)


def test_model_whose_input_shapes_do_not_match_the_manifest(
    bundle_dir: Path, tmp_path: Path
) -> None:
    root, vdir = _copy(bundle_dir, tmp_path)
    m = json.loads((vdir / MANIFEST).read_text())
    for e in m["components"][0]["inputs"]:
        if e["name"] == "spectrum":
            e["shape"] = [1, 40000, 1]
    _rewrite_manifest(vdir, components=m["components"])
    with pytest.raises(BundleError, match="input spectrum has shape \\[1, 80000, 1\\], manifest"):
        Scorer.from_bundle(root)


def test_not_a_bundle(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="bundle not found"):
        load_bundle(tmp_path / "missing")
    with pytest.raises(BundleError, match="not a bundle"):
        load_bundle(tmp_path)


def test_cli_reports_a_bad_bundle_in_one_line(
    bundle_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root, vdir = _copy(bundle_dir, tmp_path)
    (vdir / MODEL0).write_bytes(b"garbage")
    wav = tmp_path / "x.wav"
    from edge_agent.audio import write_wav

    write_wav(wav, np.zeros(160_000, np.float32), 16000)
    with pytest.raises(SystemExit) as exc:
        edge_main(["score", str(wav), "--bundle", str(root)])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "checksum mismatch" in err and "\n" not in err
