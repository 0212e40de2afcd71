"""The TensorFlow frontend (training) reproduces the numpy frontend (device).

Tolerance: max |tf - np| <= 1e-3 * max |np| per clip (float32 FFTs of two libraries).
Observed: ~1e-4 on temporal-normalised noise (the mean removes most of the magnitude, the
rounding error stays), ~4e-7 (spectrogram) and ~1e-7 (spectrum) on real DCASE clips. Checked
on synthetic noise and tones, both temporal-norm settings, and on real clips when the
`real_data` fixture finds them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from edge_agent.audio.files import load_clip
from edge_agent.scoring import frontend
from edge_agent.scoring.frontend import DEFAULT_SPEC
from model_build.training import tf_frontend

REL_TOL = 1e-3


def _synthetic() -> np.ndarray:
    rng = np.random.default_rng(1)
    t = np.arange(DEFAULT_SPEC.clip_samples) / DEFAULT_SPEC.sample_rate
    return np.stack(
        [
            0.1 * rng.standard_normal(t.size),
            0.5 * np.sin(2 * np.pi * 1000.0 * t) + 0.01 * rng.standard_normal(t.size),
        ]
    ).astype(np.float32)


def _rel_err(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


@pytest.mark.parametrize("temporal_norm", [True, False])
def test_spectrogram_matches_numpy(temporal_norm: bool) -> None:
    spec = replace(DEFAULT_SPEC, temporal_norm=temporal_norm)
    waves = _synthetic()
    got = np.asarray(tf_frontend.spectrogram(waves, spec))
    want = frontend.spectrogram(waves, spec)
    assert got.shape == want.shape == (2, 311, 513)
    for g, w in zip(got, want, strict=True):
        assert _rel_err(g, w) < REL_TOL
    if temporal_norm:
        assert np.allclose(got.mean(axis=1), 0.0, atol=1e-3 * np.abs(want).max())


def test_spectrum_matches_numpy() -> None:
    waves = _synthetic()
    got = np.asarray(tf_frontend.spectrum(waves, DEFAULT_SPEC))
    want = frontend.spectrum(waves, DEFAULT_SPEC)
    assert got.shape == want.shape == (2, 80_000)
    for g, w in zip(got, want, strict=True):
        assert _rel_err(g, w) < REL_TOL
    # the tone at 1 kHz lands on bin 1000 * 10 s = 10 000
    assert int(np.argmax(got[1])) == 10_000


def test_logmel_shape_and_finite() -> None:
    out = np.asarray(tf_frontend.logmel(_synthetic(), DEFAULT_SPEC))
    assert out.shape == (2, 311, 128) and np.isfinite(out).all()


def test_wrong_length_rejected() -> None:
    with pytest.raises(ValueError, match="160000"):
        tf_frontend.spectrum(np.zeros((1, 1000), np.float32), DEFAULT_SPEC)


def test_real_clips_match_numpy(real_data: Callable[[str], Path]) -> None:
    root = real_data("")
    files = sorted(root.rglob("*.wav"))[:4]
    if not files:
        pytest.skip(f"{root}: no real clips here")
    waves = np.stack([load_clip(f, DEFAULT_SPEC) for f in files])
    for tf_fn, np_fn in (
        (tf_frontend.spectrogram, frontend.spectrogram),
        (tf_frontend.spectrum, frontend.spectrum),
    ):
        got, want = np.asarray(tf_fn(waves, DEFAULT_SPEC)), np_fn(waves, DEFAULT_SPEC)
        for g, w, f in zip(got, want, files, strict=True):
            assert _rel_err(g, w) < REL_TOL, f
