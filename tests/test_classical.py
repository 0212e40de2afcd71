"""edge_agent.classical: the band statistics the device computes next to the learned model."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest

from edge_agent.classical import band_edges, band_stats, band_stats_from_magnitude
from edge_agent.frontend import DEFAULT_SPEC, stft_magnitude

T = np.arange(160_000) / 16_000


def test_band_edges_are_log_spaced_strictly_increasing_and_cover_the_spectrum() -> None:
    edges = band_edges(DEFAULT_SPEC, 64)
    assert edges[0] == 2 and edges[-1] == DEFAULT_SPEC.n_bins
    assert np.all(np.diff(edges) >= 1)
    widths = np.diff(edges)
    assert widths[-1] > 20 * widths[0]  # log spacing: high bands are far wider
    assert len(edges) - 1 == 53  # the narrowest low bands merge into one-bin bands
    with pytest.raises(ValueError, match="bands"):
        band_edges(DEFAULT_SPEC, 0)


def test_band_stats_match_a_plain_numpy_reference() -> None:
    x = (0.05 * np.random.default_rng(0).standard_normal(160_000)).astype(np.float32)
    f = band_stats(x, DEFAULT_SPEC)
    edges = band_edges(DEFAULT_SPEC)
    win = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(1024) / 1024)
    frames = np.stack([x[i * 512:i * 512 + 1024] * win for i in range(311)])
    power = np.abs(np.fft.rfft(frames, axis=-1)) ** 2
    bands = np.log(np.stack([power[:, a:b].mean(1) for a, b in pairwise(edges)], 1) + 1e-10)
    np.testing.assert_allclose(f, np.r_[bands.mean(0), bands.std(0)], rtol=1e-4, atol=1e-4)
    batch = band_stats(np.stack([x, 2 * x]), DEFAULT_SPEC)
    assert batch.shape == (2, 106)
    # a gain of 2 adds log(4) to every band mean and leaves the stds alone
    np.testing.assert_allclose(batch[1, :53] - batch[0, :53], np.log(4.0), atol=1e-3)
    np.testing.assert_allclose(batch[1, 53:], batch[0, 53:], atol=1e-3)


def test_a_tone_raises_its_band_and_a_burst_raises_the_time_spread() -> None:
    noise = (0.01 * np.random.default_rng(1).standard_normal(160_000)).astype(np.float32)
    base = band_stats(noise, DEFAULT_SPEC)
    edges = band_edges(DEFAULT_SPEC)
    tone_bin = 1000 * 1024 // 16_000  # 1 kHz
    band = int(np.searchsorted(edges, tone_bin, side="right") - 1)
    tone = band_stats(noise + 0.05 * np.sin(2 * np.pi * 1000 * T).astype(np.float32),
                      DEFAULT_SPEC)
    rise = tone[:53] - base[:53]
    assert int(np.argmax(rise)) == band and rise[band] > 3.0
    burst = noise.copy()
    burst[80_000:84_000] += 0.5 * np.random.default_rng(2).standard_normal(4000).astype(np.float32)
    assert np.all(band_stats(burst, DEFAULT_SPEC)[53:] > base[53:])


def test_silence_gives_finite_features_and_magnitude_input_is_shared() -> None:
    z = np.zeros(160_000, np.float32)
    f = band_stats(z, DEFAULT_SPEC)
    assert np.all(np.isfinite(f)) and np.allclose(f[:53], np.log(1e-10))
    x = np.random.default_rng(3).standard_normal(160_000).astype(np.float32)
    np.testing.assert_array_equal(
        band_stats(x, DEFAULT_SPEC),
        band_stats_from_magnitude(stft_magnitude(x, DEFAULT_SPEC), band_edges(DEFAULT_SPEC)),
    )
