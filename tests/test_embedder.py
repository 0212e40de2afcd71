"""edge_agent.scoring.embedder: runtime selection (proven, not imported), inputs mapped by name."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge_agent.bundle.load import load_bundle
from edge_agent.errors import BundleError, RuntimeUnavailableError
from edge_agent.scoring.embedder import (
    PROBE_MODEL,
    Embedder,
    check_flatbuffer,
    select_runtime,
    tensor_feature_name,
)
from edge_agent.scoring.frontend import DEFAULT_SPEC as SPEC
from edge_agent.scoring.frontend import spectrogram, spectrum


def _wave(seed: int = 0) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal(160_000)).astype(np.float32)


def test_default_runtime_is_litert_and_tensorflow_stays_unimported(bundle_dir: Path) -> None:
    code = (
        "import sys; from edge_agent.runtime.scorer import Scorer; "
        f"s = Scorer.from_bundle({str(bundle_dir)!r}); "
        "import numpy as np; s.score(np.zeros(160000, np.float32), s.bundle.sections[0]); "
        "print(s.runtime_name, 'tensorflow' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["ai_edge_litert", "False"]


def test_unavailable_runtimes_give_one_clear_error() -> None:
    with pytest.raises(RuntimeUnavailableError) as exc:
        select_runtime(("tflite_runtime", "no_such_runtime"))  # type: ignore[arg-type]
    msg = str(exc.value)
    assert "tflite_runtime" in msg and "pip install ai-edge-litert" in msg and "\n" not in msg


def test_fallback_moves_on_to_the_next_working_runtime() -> None:
    rt = select_runtime(("tflite_runtime", "ai_edge_litert"))
    assert rt.name == "ai_edge_litert"


def test_tensor_names_map_to_features() -> None:
    assert tensor_feature_name("serving_default_spectrum:0") == "spectrum"
    assert tensor_feature_name("spectrogram") == "spectrogram"


def test_inputs_are_mapped_by_name_not_position(bundle_dir: Path) -> None:
    b = load_bundle(bundle_dir)
    e = Embedder(b.model_path, ["spectrogram", "spectrum"], threads=1)
    # the converter puts spectrum first; the embedder still takes (spectrogram, spectrum)
    assert min(e.layout, key=lambda x: x["index"])["name"] == "spectrum"
    w = _wave()
    a = e.embed(spectrogram(w, SPEC), spectrum(w, SPEC))
    swapped = Embedder(b.model_path, ["spectrum", "spectrogram"], threads=1)
    assert np.allclose(swapped.embed(spectrum(w, SPEC), spectrogram(w, SPEC)), a, atol=1e-6)
    assert a.shape == (256,) and np.all(np.isfinite(a))
    other = e.embed(spectrogram(_wave(1), SPEC), spectrum(_wave(1), SPEC))
    assert not np.allclose(other, a, atol=1e-3)


def test_threads_do_not_change_the_result(bundle_dir: Path) -> None:
    b = load_bundle(bundle_dir)
    w = _wave(2)
    feats = spectrogram(w, SPEC), spectrum(w, SPEC)
    one = Embedder(b.model_path, b.input_names, threads=1).embed(*feats)
    two = Embedder(b.model_path, b.input_names, threads=2)
    assert two.threads == 2
    assert np.allclose(two.embed(spectrogram(w, SPEC), spectrum(w, SPEC)), one, atol=1e-4)
    again = two.embed(spectrogram(w, SPEC), spectrum(w, SPEC))
    assert np.array_equal(again, two.embed(spectrogram(w, SPEC), spectrum(w, SPEC)))


def test_wrong_input_names_and_garbage_models(bundle_dir: Path, tmp_path: Path) -> None:
    b = load_bundle(bundle_dir)
    with pytest.raises(BundleError, match="do not match expected"):
        Embedder(b.model_path, ["logmel128", "spectrum"])
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"not a model at all")
    with pytest.raises(BundleError, match="not a TFLite model"):
        check_flatbuffer(bad)
    with pytest.raises(BundleError, match="not a TFLite model"):
        Embedder(bad)
    cut = tmp_path / "cut.tflite"
    cut.write_bytes(PROBE_MODEL[:200])
    with pytest.raises(BundleError, match="cannot load it"):
        Embedder(cut, ["x"])
    with pytest.raises(RuntimeUnavailableError, match="threads"):
        Embedder(b.model_path, b.input_names, threads=0)


def test_one_embedding_at_a_time_when_threads_share_an_interpreter(bundle_dir: Path) -> None:
    """A reload's self-test runs on the scoring worker's interpreter when the model is the
    same (edge_agent.runtime.scorer): concurrent calls give each caller its own window's
    embedding, exactly as one after the other."""
    import threading

    b = load_bundle(bundle_dir)
    emb = Embedder(b.model_path, b.input_names)
    waves = [_wave(s) for s in range(4)]
    feats = [(spectrogram(w, SPEC), spectrum(w, SPEC)) for w in waves]
    alone = [emb.embed(*f) for f in feats]
    got: dict[tuple[int, int], np.ndarray] = {}

    def run(i: int) -> None:
        for r in range(25):
            got[i, r] = emb.embed(*feats[i])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(got) == 100
    assert all(np.array_equal(v, alone[i]) for (i, _), v in got.items())
