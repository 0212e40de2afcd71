"""edge_agent.bundle: versioned layout, verification, and one-line errors for bad bundles."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from edge_agent.backend import SectionBackend
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


def test_loaded_bundle_describes_itself(bundle_dir: Path) -> None:
    b = load_bundle(bundle_dir)
    assert b.version == 1 and (bundle_dir / "current").read_text().strip() == "1"
    m = b.manifest
    assert m["format_version"] == 1
    assert m["quantization"] in ("float32", "float16", "dynamic", "int8")
    assert b.input_names == ["spectrogram", "spectrum"]
    assert b.input_shapes == {"spectrogram": [1, 311, 513, 1], "spectrum": [1, 80000, 1]}
    assert sorted(e["index"] for e in m["inputs"]) == [0, 1]
    assert m["embedding_dim"] == 256 and m["class_names"] and m["training"]["n_train_clips"] > 0
    assert set(m["files"]) == {MODEL, BACKEND}
    assert m["files"][MODEL] == sha256_file(b.model_path)
    assert b.sections == sorted(b.backends) and len(b.sections) >= 2
    for s in b.sections:
        refs = b.backend(s).references
        assert np.allclose(np.linalg.norm(refs, axis=1), 1.0, atol=1e-5)
        assert np.isfinite(b.backend(s).threshold)


def test_new_versions_keep_the_old_ones_for_rollback(bundle_dir: Path, tmp_path: Path) -> None:
    root, vdir = _copy(bundle_dir, tmp_path)
    b1 = load_bundle(root)
    changed = {s: SectionBackend(bk.references, bk.n_source, bk.threshold + 1.0)
               for s, bk in b1.backends.items()}
    manifest = {k: v for k, v in b1.manifest.items() if k not in ("version", "files", "created")}
    v2 = write_bundle(root, vdir / MODEL, changed, manifest)
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
    write_bundle(root, vdir / MODEL, changed, manifest, activate=False)
    assert current_version(root) == 1 and list_versions(root) == [1, 2, 3]
    assert prune(root, keep=1) == [2] and list_versions(root) == [1, 3]


def test_backend_file_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    refs = rng.standard_normal((5, 8)).astype(np.float32)
    refs /= np.linalg.norm(refs, axis=1, keepdims=True)
    bk = {"fan_section_00": SectionBackend(refs, 3, 0.25)}
    save_backends(tmp_path / "b.npz", bk)
    back = load_backends(tmp_path / "b.npz")
    assert np.array_equal(back["fan_section_00"].references, refs)
    assert back["fan_section_00"].n_source == 3 and back["fan_section_00"].threshold == 0.25


@pytest.mark.parametrize("target", [MODEL, BACKEND])
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
    data = (vdir / MODEL).read_bytes()
    (vdir / MODEL).write_bytes(data[:1000])
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
    for e in m["inputs"]:
        if e["name"] == "spectrum":
            e["shape"] = [1, 40000, 1]
    _rewrite_manifest(vdir, inputs=m["inputs"])
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
    (vdir / MODEL).write_bytes(b"garbage")
    wav = tmp_path / "x.wav"
    from edge_agent.audio import write_wav

    write_wav(wav, np.zeros(160_000, np.float32), 16000)
    with pytest.raises(SystemExit) as exc:
        edge_main(["score", str(wav), "--bundle", str(root)])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "checksum mismatch" in err and "\n" not in err
