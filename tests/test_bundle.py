"""edge_agent.bundle: versioned layout, verification, and one-line errors for bad bundles."""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from selftest_helpers import DEMO_BUNDLE

from edge_agent.bundle.layout import current_version, list_versions
from edge_agent.bundle.load import load_backends, load_bundle, save_backends
from edge_agent.bundle.manifest import (
    BACKEND,
    MANIFEST,
    MANIFEST_DIGEST,
    MODEL,
    SELF_TEST,
    model_components,
    sha256_file,
    write_manifest_digest,
)
from edge_agent.bundle.versions import prune, set_current, write_adapted_version, write_bundle
from edge_agent.cli import main as edge_main
from edge_agent.errors import BundleError
from edge_agent.jsonsafe import compact_number_lists
from edge_agent.runtime.scorer import Scorer
from edge_agent.scoring.backend import PAPER_BACKEND, BackendConfig, fit_section


def _copy(bundle_dir: Path, tmp_path: Path) -> tuple[Path, Path]:
    dst = tmp_path / "b"
    shutil.copytree(bundle_dir, dst)
    return dst, dst / "versions" / str(current_version(dst))


def _rewrite_manifest(vdir: Path, **changes: object) -> None:
    """Edit the manifest AND its digest, as a (buggy) tool that writes bundles would: what is
    then refused is the content, not the checksum."""
    m = json.loads((vdir / MANIFEST).read_text())
    m.update(changes)
    (vdir / MANIFEST).write_text(json.dumps(m))
    write_manifest_digest(vdir)


MODEL0 = "model_0.tflite"


def test_loaded_bundle_describes_itself(bundle_dir: Path) -> None:
    b = load_bundle(bundle_dir)
    assert b.version == 1 and (bundle_dir / "current").read_text().strip() == "1"
    m = b.manifest
    assert m["format_version"] == 2
    assert m["quantization"] in ("float32", "float16", "dynamic", "int8")
    assert [c["kind"] for c in b.components] == [
        "model",
        "bands",
        "rhythm",
        "dynamics",
        "modulation",
        "comodulation",
        "fine_spectrum",
        "stability",
        "onsets",
    ]
    assert b.model_files == [MODEL0] and b.model_path == b.path / MODEL0
    assert b.input_names == ["spectrogram", "spectrum"]
    assert b.input_shapes == {"spectrogram": [1, 311, 513, 1], "spectrum": [1, 80000, 1]}
    assert sorted(e["index"] for e in model_components(b.components)[0]["inputs"]) == [0, 1]
    assert [c["dim"] for c in b.components] == [256, 106, 500, 180, 180, 120, 511, 36, 500]
    assert m["class_names"] and m["training"]["n_train_clips"] > 0
    assert b.backend_config == BackendConfig()
    assert set(m["files"]) == {MODEL0, BACKEND, SELF_TEST}  # the device self-test's window
    assert m["self_test"]["file"] == SELF_TEST and 0 < m["self_test"]["min_cosine"] < 1
    assert m["files"][MODEL0] == sha256_file(b.model_path)
    assert b.sections == sorted(b.backends) and len(b.sections) >= 2
    for s in b.sections:
        bk = b.backend(s)
        assert len(bk.components) == len(b.components) == 9 and bk.fusion == "sum"
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
    fit = fit_section(
        [rng.standard_normal((12, 8)), rng.standard_normal((12, 5))],
        [rng.standard_normal((3, 8)), rng.standard_normal((3, 5))],
    )
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
    old = {
        s: {
            "references": bk.components[0].references,
            "n_source": np.asarray(bk.components[0].n_source),
            "threshold": np.asarray(0.3),
        }
        for s, bk in b.backends.items()
    }
    arrays: dict[str, Any] = {f"{s}::{k}": v for s, d in old.items() for k, v in d.items()}
    np.savez(vdir / BACKEND, **arrays)
    m = json.loads((vdir / MANIFEST).read_text())
    comp = m.pop("components")[0]
    m.pop("self_test")  # format 1 predates the device self-test
    m.update(
        format_version=1,
        inputs=comp["inputs"],
        input_order=comp["input_order"],
        embedding_dim=256,
        backend={"method": "cosine"},
        files={MODEL: sha256_file(vdir / MODEL), BACKEND: sha256_file(vdir / BACKEND)},
    )
    (vdir / MANIFEST).write_text(json.dumps(m))
    (vdir / MANIFEST_DIGEST).unlink()  # format-1 bundles predate the manifest's own digest
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
    from edge_agent.audio.files import write_wav

    write_wav(wav, np.zeros(160_000, np.float32), 16000)
    with pytest.raises(SystemExit) as exc:
        edge_main(["score", str(wav), "--bundle", str(root)])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "checksum mismatch" in err and "\n" not in err


# --- reliability: non-finite numbers, wrong types, the manifest's own checksum ---------------
# These use the shipped demo bundle (a real exported bundle, no training needed).


@pytest.fixture
def demo_copy(tmp_path: Path) -> tuple[Path, Path]:
    """(root, version directory) of a private copy of the shipped demo bundle."""
    from edge_agent.commands.demo import load_demo

    return _copy(load_demo().bundle, tmp_path)


def _rewrite_backend(vdir: Path, section: str, key: str, value: Any) -> None:
    """Set one raw array of backend.npz (as a corrupt or hand-made file would hold it), keeping
    the manifest's checksums consistent so the CONTENT is what load refuses."""
    with np.load(vdir / BACKEND) as z:
        arrays = {k: z[k] for k in z.files}
    arrays[f"{section}::{key}"] = value
    np.savez(vdir / BACKEND, **arrays)
    m = json.loads((vdir / MANIFEST).read_text())
    _rewrite_manifest(vdir, files={**m["files"], BACKEND: sha256_file(vdir / BACKEND)})


@pytest.mark.parametrize(
    ("key", "value", "words"),
    [
        ("threshold", np.asarray(np.nan), "threshold: expected a finite number, got nan"),
        ("threshold", np.asarray(np.inf), "threshold: expected a finite number, got inf"),
        ("c0.mean", np.asarray(np.nan), "c0.mean (normaliser): expected a finite number"),
        ("c1.std", np.asarray(np.inf), "c1.std (normaliser): expected a finite number"),
        ("c2.weight", np.asarray(-np.inf), "c2.weight: expected a finite number"),
        ("c1.density", None, "c1.density: expected"),
        ("c0.references", None, "c0.references: expected finite numbers"),
    ],
)
def test_non_finite_backend_numbers_refuse_the_bundle(
    demo_copy: tuple[Path, Path], key: str, value: Any, words: str
) -> None:
    """A NaN threshold never alarms, a NaN normaliser makes every score NaN: refused at load,
    naming the file, the section and the field."""
    root, vdir = demo_copy
    b = load_bundle(root)
    sec = b.sections[1]
    if value is None:  # an array field: poison one element
        with np.load(vdir / BACKEND) as z:
            value = z[f"{sec}::{key}"].copy()
        value.flat[3] = np.inf if key.endswith("density") else np.nan
    _rewrite_backend(vdir, sec, key, value)
    with pytest.raises(BundleError) as exc:
        load_bundle(root)
    msg = str(exc.value)
    assert msg.startswith(f"{vdir / BACKEND}: section {sec}: {key}") and words in msg
    assert "\n" not in msg


def test_non_finite_numbers_are_refused_when_writing_a_version(
    demo_copy: tuple[Path, Path],
) -> None:
    """export, calibrate and enrol write through save_backends / write_bundle: a section fitted on
    a single clip (threshold +inf: could never alarm) or a NaN record fails there, not later."""
    root, _ = demo_copy
    b = load_bundle(root)
    sec = b.sections[0]
    never = {**b.backends, sec: replace(b.backend(sec), threshold=float("inf"))}
    with pytest.raises(BundleError, match=f"section {sec}: threshold: .*fewer than 2 normal"):
        write_adapted_version(b, never, "calibration", {"section": sec})
    with pytest.raises(
        BundleError,
        match=r"manifest.json: adaptations\[0\].old_threshold, "
        r"calibration.old_threshold: NaN or infinite",
    ):
        write_adapted_version(b, b.backends, "calibration", {"old_threshold": float("nan")})
    assert list_versions(root) == [1]  # nothing half-written is left behind
    assert not [p for p in (root / "versions").iterdir() if p.name.startswith(".tmp")]


def test_nan_in_the_manifest_is_not_json(demo_copy: tuple[Path, Path]) -> None:
    root, vdir = demo_copy
    text = (vdir / MANIFEST).read_text().replace('"clip_seconds": 10.0', '"clip_seconds": NaN')
    assert "NaN" in text
    (vdir / MANIFEST).write_text(text)
    write_manifest_digest(vdir)
    with pytest.raises(BundleError, match=r"manifest\.json: not valid JSON \(NaN is not valid"):
        load_bundle(root)


def test_a_bundle_path_that_is_a_file_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = tmp_path / "bundle.tar"
    f.write_bytes(b"not a folder")
    with pytest.raises(BundleError, match=r"bundle\.tar: is a file; expected a bundle directory"):
        load_bundle(f)
    wav = tmp_path / "x.wav"
    from edge_agent.audio.files import write_wav

    write_wav(wav, np.zeros(160_000, np.float32), 16000)
    with pytest.raises(SystemExit) as exc:
        edge_main(["score", str(wav), "--bundle", str(f)])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and err.startswith("error: ") and "is a file" in err
    assert "\n" not in err and "Traceback" not in err


def test_a_current_pointer_that_is_a_directory_is_a_bundle_error(
    demo_copy: tuple[Path, Path],
) -> None:
    root, _ = demo_copy
    (root / "current").unlink()
    (root / "current").mkdir()
    with pytest.raises(BundleError, match="current: unreadable"):
        load_bundle(root)


def _component(m: dict[str, Any], i: int, **changes: Any) -> list[dict[str, Any]]:
    comps = [dict(c) for c in m["components"]]
    comps[i].update(changes)
    return comps


@pytest.mark.parametrize(
    ("field", "make", "words"),
    [
        ("version", lambda m: "1", 'version: expected an integer >= 1, got a string "1"'),
        ("version", lambda m: True, "version: expected an integer >= 1, got true or false"),
        (
            "frontend",
            lambda m: {**m["frontend"], "n_fft": "1024"},
            'frontend.n_fft: expected an integer >= 1, got a string "1024"',
        ),
        (
            "frontend",
            lambda m: {**m["frontend"], "clip_seconds": -10},
            "frontend.clip_seconds: expected a finite number > 0, got a number -10",
        ),
        ("frontend", lambda m: [], "frontend: expected an object, got a list []"),
        (
            "backend",
            lambda m: {**m["backend"], "percentile": "90"},
            'backend.percentile: expected a finite number, got a string "90"',
        ),
        (
            "backend",
            lambda m: {**m["backend"], "pseudo_kinds": "tone"},
            'backend.pseudo_kinds: expected a list of strings, got a string "tone"',
        ),
        (
            "backend",
            lambda m: {**m["backend"], "no_deviation": "stability"},
            'backend.no_deviation: expected a list of strings, got a string "stability"',
        ),
        (
            "backend",
            lambda m: {**m["backend"], "pseudo_kinds": ["tone", "hum"]},
            "backend pseudo_kinds: expected distinct kinds among ('tone',",
        ),
        (
            "backend",
            lambda m: {**m["backend"], "transform": 1},
            "backend.transform: expected a string, got a number 1",
        ),
        (
            "backend",
            lambda m: {**m["backend"], "transform": "sigmoid"},
            "backend transform: expected one of ('none', 'softplus', 'surprise'), got 'sigmoid'",
        ),
        (
            "components",
            lambda m: _component(m, 0, input_order="spectrogram"),
            'components[0].input_order: expected a list of strings, got a string "spectrogram"',
        ),
        (
            "components",
            lambda m: _component(m, 0, inputs=[{"name": "spectrum", "shape": "80000"}]),
            "components[0].inputs[0].shape: expected a list of integers, got a string",
        ),
        (
            "components",
            lambda m: _component(m, 0, file="../model_0.tflite"),
            "components[0].file: expected a file name (no directories)",
        ),
        (
            "components",
            lambda m: _component(m, 2, ranges_hz=[["a", "b"]]),
            "components[2].ranges_hz: expected a non-empty list of [low, high] number pairs",
        ),
        (
            "components",
            lambda m: _component(m, 1, bands=64.5),
            "components[1].bands: expected an integer >= 1, got a number 64.5",
        ),
        (
            "components",
            lambda m: _component(m, 3, lags=[1, 0, 4]),
            "components[3].lags: expected a non-empty list of integers >= 1, got a list [1, 0, 4]",
        ),
        ("sections", lambda m: "fan_section_00", "sections: expected a list of strings"),
        (
            "files",
            lambda m: {**m["files"], BACKEND: 1234},
            "files: expected an object of file name -> sha256 hex digest",
        ),
        (
            "class_names",
            lambda m: [1, 2],
            "class_names: expected a list of strings, got a list [1, 2]",
        ),
        ("parent_version", lambda m: "1", "parent_version: expected an integer >= 1"),
    ],
)
def test_manifest_fields_of_the_wrong_type_are_named(
    demo_copy: tuple[Path, Path], field: str, make: Any, words: str
) -> None:
    root, vdir = demo_copy
    m = json.loads((vdir / MANIFEST).read_text())
    _rewrite_manifest(vdir, **{field: make(m)})
    with pytest.raises(BundleError) as exc:
        load_bundle(root)
    assert str(exc.value).startswith(f"{vdir / MANIFEST}: {words}"), str(exc.value)


def test_a_missing_required_manifest_field_is_named(demo_copy: tuple[Path, Path]) -> None:
    root, vdir = demo_copy
    m = json.loads((vdir / MANIFEST).read_text())
    del m["components"][0]["input_order"]
    _rewrite_manifest(vdir, components=m["components"])
    with pytest.raises(BundleError, match=r"missing field 'components\[0\]\.input_order'"):
        load_bundle(root)


def test_schema_covers_every_frontend_and_backend_parameter() -> None:
    """A parameter added to FrontendSpec or BackendConfig must get a type in the schema."""
    from dataclasses import fields

    from edge_agent.bundle.manifest import BACKEND_SCHEMA, FRONTEND_SCHEMA
    from edge_agent.scoring.frontend import FrontendSpec

    assert set(FRONTEND_SCHEMA) == {f.name for f in fields(FrontendSpec)}
    assert set(BACKEND_SCHEMA) == {f.name for f in fields(BackendConfig)}


def test_the_manifest_itself_is_checksummed(demo_copy: tuple[Path, Path]) -> None:
    root, vdir = demo_copy
    digest = (vdir / MANIFEST_DIGEST).read_text()  # the shipped bundle has one
    assert digest == f"{sha256_file(vdir / MANIFEST)}  {MANIFEST}\n"  # `sha256sum -c` format
    # an edit that keeps the manifest valid (another quantization mode, say) is caught
    text = (vdir / MANIFEST).read_text()
    (vdir / MANIFEST).write_text(
        text.replace('"quantization": "dynamic"', '"quantization": "float32"')
    )
    with pytest.raises(
        BundleError, match=r"manifest\.json: checksum mismatch with manifest\.sha256"
    ):
        load_bundle(root)
    assert load_bundle(root, verify=False).manifest["quantization"] == "float32"
    (vdir / MANIFEST_DIGEST).write_text("garbage\n")
    with pytest.raises(BundleError, match=r"manifest\.sha256: expected '<sha256 hex>  manifest"):
        load_bundle(root)
    (vdir / MANIFEST_DIGEST).unlink()  # a version written before the digest existed
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep(logging.WARNING)
    logging.getLogger("edge_agent").addHandler(handler)
    try:
        for _ in range(3):  # loads (an agent polls and reloads): warned once, in one line
            assert load_bundle(root).manifest["quantization"] == "float32"
    finally:
        logging.getLogger("edge_agent").removeHandler(handler)
    (warning,) = [r.getMessage() for r in records]
    assert warning == (
        f"{vdir}: no manifest.sha256: the manifest itself is not checked, so an "
        "edit to it would load unnoticed (every version this agent writes has "
        "one: removed, or from an old release); re-export the bundle, or set "
        "trusted_keys"
    )


def test_every_new_version_gets_a_manifest_digest(demo_copy: tuple[Path, Path]) -> None:
    """calibrate / enrol (write_adapted_version) and export all write through write_bundle."""
    root, _ = demo_copy
    b = load_bundle(root)
    v2 = write_adapted_version(b, b.backends, "enrolment", {"section": b.sections[0]})
    assert (v2 / MANIFEST_DIGEST).read_text() == f"{sha256_file(v2 / MANIFEST)}  {MANIFEST}\n"
    assert load_bundle(root).version == 2 and load_bundle(root).manifest["parent_version"] == 1


def test_backend_whose_references_do_not_match_the_components_fails_at_load(
    demo_copy: tuple[Path, Path],
) -> None:
    root, vdir = demo_copy
    b = load_bundle(root)
    sec = b.sections[0]
    with np.load(vdir / BACKEND) as z:
        refs = z[f"{sec}::c1.references"][:, :100]
    _rewrite_backend(vdir, sec, "c1.references", refs)
    with pytest.raises(
        BundleError,
        match=f"section {sec} c1.references: 100-d, the manifest's component 1 gives 106-d",
    ):
        load_bundle(root)


def _unscorable_version(root: Path) -> Path:
    """A new version that loads (valid manifest, checksums, backend) but whose frontend makes
    40000-bin spectra, which the model's 80000-bin input cannot take: every window fails at
    scoring time."""
    b = load_bundle(root)
    manifest = {k: v for k, v in b.manifest.items() if k not in ("version", "files", "created")}
    manifest["frontend"] = {**manifest["frontend"], "spectrum_bins": 40_000}
    return write_bundle(root, {n: b.path / n for n in b.model_files}, b.backends, manifest)


def test_smoke_test_scores_a_window_or_says_why_not(demo_copy: tuple[Path, Path]) -> None:
    root, _ = demo_copy
    good = Scorer.from_bundle(root)
    sec = good.bundle.sections[0]
    ws = good.smoke_test(sec, good.spec.clip_samples)
    assert np.isfinite(ws.score) and ws.section == sec
    _unscorable_version(root)
    bad = Scorer.from_bundle(root)  # loads fine ...
    with pytest.raises(
        BundleError,
        match=f"section {sec}: cannot score a test window \\(ValueError: cannot reshape",
    ):
        bad.smoke_test(sec, bad.spec.clip_samples)  # ... but cannot score
    with pytest.raises(BundleError, match="no section 'nope_section_00'"):
        good.smoke_test("nope_section_00", good.spec.clip_samples)


def test_number_lists_in_a_manifest_stay_on_one_line() -> None:
    """The shipped demo's manifest (its audio profiles: ~20 000 numbers) is written with every
    list of numbers on one line, and reads back exactly; other structure stays indented."""
    text = (DEMO_BUNDLE / "versions" / "1" / "manifest.json").read_text()
    assert len(text.splitlines()) < 2000 and len(text) < 200_000
    assert json.loads(compact_number_lists(json.dumps(json.loads(text), indent=2))) == json.loads(
        text
    )
    doc = {"a": [1, -2.5, 3e-05], "b": {"c": ["x", "y"], "d": []}}
    out = compact_number_lists(json.dumps(doc, indent=2))
    assert '"a": [1, -2.5, 3e-05]' in out and json.loads(out) == doc
    assert '"x",\n' in out  # lists of strings keep one item per line
