"""model_build.export: every quantisation mode converts, loads on the device runtime, and the
bundle's backend is fitted on the exported model's own (device-path) embeddings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge_agent.audio.files import load_clip
from edge_agent.bundle.layout import current_version, list_versions
from edge_agent.bundle.load import load_bundle
from edge_agent.bundle.manifest import QUANTIZE_MODES
from edge_agent.scoring.backend import fit_section
from edge_agent.scoring.classical import DEFAULT_CLASSICAL
from edge_agent.scoring.frontend import DEFAULT_SPEC
from model_build.cli import main as build_main
from model_build.data.clip import Clip
from model_build.data.dataset import scan
from model_build.evaluation.evaluate import pseudo_sets
from model_build.export import BundleEmbedder, export_run, keras_embed
from model_build.training.runs import load_run

# Minimum / mean cosine of the device embedding to the float Keras embedding, per mode
# (narrow model trained one epoch on a tiny set; the full-size figures are in BENCHMARKS.md).
MIN_COSINE = {"float32": 0.9999, "float16": 0.999, "dynamic": 0.95, "int8": 0.6}
MEAN_COSINE = {"float32": 0.9999, "float16": 0.9995, "dynamic": 0.98, "int8": 0.8}


@pytest.fixture(scope="module")
def exported(trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("export")
    return {m: export_run(trained_run, base / m, m, calibration=40) for m in QUANTIZE_MODES}


@pytest.fixture(scope="module")
def clips(trained_run: Path) -> list[Clip]:
    run = load_run(trained_run)
    return scan([Path(p) for p in run.meta["data"]])


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return np.asarray((a * b).sum(1))


@pytest.mark.slow  # converts the run in all four modes (the module's fixture)
def test_every_mode_matches_keras_within_its_tolerance(
    exported: dict[str, Path], trained_run: Path, clips: list[Clip]
) -> None:
    test = [c for c in clips if c.split == "test"][:12]
    waves = np.stack([load_clip(c.path, DEFAULT_SPEC) for c in test])
    run = load_run(trained_run)
    ref = keras_embed(run.models[0], waves, run.spec)
    sizes = {}
    for mode, vdir in exported.items():
        b = load_bundle(vdir)
        assert b.manifest["quantization"] == mode
        embedder = BundleEmbedder(vdir)  # its scorer ran the bundle's self-test
        st = embedder.scorer.self_test
        assert st is not None and st.passed and st.min_cosine > 0.9999
        entry = b.manifest["self_test"]
        assert entry["measured"]["windows"] == 8 and 0 < entry["min_cosine"] <= 0.998
        assert entry["max_score_difference"] >= 0.1
        dev = embedder.embed_clips(test)
        # the model, then band statistics, rhythm, dynamics, modulation, comodulation, fine
        # spectrum, spectral stability and onset rhythm
        assert [d.shape[1] for d in dev] == [256, 106, 500, 180, 180, 120, 511, 36, 500]
        assert all(d.shape[0] == 12 for d in dev)
        cos = _cos(dev[0], ref)
        assert cos.min() >= MIN_COSINE[mode], (mode, cos.min())
        assert cos.mean() >= MEAN_COSINE[mode], (mode, cos.mean())
        sizes[mode] = b.model_path.stat().st_size
    assert sizes["float16"] < 0.75 * sizes["float32"]
    assert sizes["dynamic"] < 0.5 * sizes["float32"] and sizes["int8"] < 0.5 * sizes["float32"]


def test_backend_is_refitted_on_the_exported_models_embeddings(
    exported: dict[str, Path], clips: list[Clip]
) -> None:
    vdir = exported["int8"]  # the mode whose embeddings differ most from Keras
    b = load_bundle(vdir)
    emb = BundleEmbedder(vdir)
    train = [c for c in clips if c.split == "train"]
    pseudo = pseudo_sets(emb.embed_waves, train, emb.spec, b.backend_config)
    for sec in b.sections:
        src = [c for c in train if c.section_id == sec and c.domain == "source"]
        tgt = [c for c in train if c.section_id == sec and c.domain == "target"]
        want = fit_section(
            emb.embed_clips(src),
            emb.embed_clips(tgt),
            b.backend_config,
            pseudo=pseudo[sec],
            kinds=b.kinds,
        ).backend
        got = b.backend(sec)
        for g, w in zip(got.components, want.components, strict=True):
            assert g.n_source == w.n_source
            assert np.allclose(g.references, w.references, atol=1e-5)
            assert (g.mean, g.std) == pytest.approx((w.mean, w.std), abs=1e-5)
            assert g.weight == w.weight
        assert got.threshold == pytest.approx(want.threshold, abs=1e-5)
        # the audio profile of the same clips (edge_agent.scoring.profile), checked at load
        profile = b.profile(sec)
        assert profile is not None and profile.origin == "export"
        assert profile.n_clips == len(src) + len(tgt)
    assert b.sections == sorted({c.section_id for c in train})


@pytest.mark.slow
def test_an_ensemble_exports_every_model_and_scores_their_fused_scores(
    trained_ensemble: Path, tmp_path: Path, clips: list[Clip]
) -> None:
    """Two models + the seven classical components: nine components, each scored and
    standardised on its own, the sum thresholded; `--model` picks members, `--no-classical`
    drops the classical ones."""
    from edge_agent.runtime.scorer import Scorer

    run = trained_ensemble
    vdir = export_run(run, tmp_path / "bundle")
    b = load_bundle(vdir)
    # the default classical set, the onset rhythm last
    assert [c["kind"] for c in b.components] == [
        "model",
        "model",
        *(e["kind"] for e in DEFAULT_CLASSICAL),
    ]
    assert b.components[-1]["kind"] == "onsets"
    assert b.model_files == ["model_0.tflite", "model_1.tflite"]
    # the two models share their group's weight (decided per section), each classical view
    # has its own, shared half and half with its deviation score (the stability and the onset
    # rhythm have none: BackendConfig.no_deviation); the largest group weight is 1
    for sec in b.sections:
        comps = b.backend(sec).components
        w = [c.weight for c in comps]
        assert all(c.deviation == 1 and c.dev_weight == c.weight for c in comps[2:-2])
        assert all(c.deviation == 0 and c.dev_weight == 0.0 for c in comps[-2:])
        assert w[0] == w[1] and max(2 * w[0], *(2 * x for x in w[2:-2]), *w[-2:]) == 1.0
    scorer = Scorer.from_bundle(vdir)
    test = [c for c in clips if c.split == "test"][:3]
    sec = test[0].section_id
    for c in test:
        wave = load_clip(c.path, scorer.spec)
        emb = scorer.embed(wave)
        parts = b.backend(sec).component_scores(list(emb))
        assert scorer.score(wave, sec).score == pytest.approx(float(sum(p[0] for p in parts)))
    one = load_bundle(export_run(run, tmp_path / "one", models=[1], classical=False))
    assert [c["kind"] for c in one.components] == ["model"]
    assert one.manifest["training"]["models"] == [1]
    wave = load_clip(test[0].path, scorer.spec)
    np.testing.assert_allclose(
        Scorer.from_bundle(one.path).embed(wave)[0], scorer.embed(wave)[1], atol=1e-5
    )  # the same member


def test_cli_adds_a_version_and_rejects_bad_modes(
    trained_run: Path,
    exported: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    root = exported["float16"].parent.parent
    with pytest.raises(SystemExit) as ok:
        build_main(["export", str(trained_run), "--out", str(root), "--quantize", "dynamic"])
    assert ok.value.code == 0
    assert "wrote" in capsys.readouterr().out
    assert list_versions(root) == [1, 2] and current_version(root) == 2
    assert load_bundle(root).manifest["quantization"] == "dynamic"
    assert load_bundle(root, version=1).manifest["quantization"] == "float16"
    with pytest.raises(SystemExit) as exc:
        build_main(["export", str(trained_run), "--out", str(tmp_path / "x"), "--quantize", "int4"])
    assert exc.value.code == 2
    assert "--quantize: expected one of" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
