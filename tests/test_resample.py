"""Streaming resampler: block-size independent and equal to one-shot resample_poly."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import scipy.signal

from edge_agent.audio.resample import StreamResampler


@pytest.mark.parametrize("rate_in", [8000, 22050, 32000, 44100, 48000])
def test_streaming_equals_one_shot_for_any_block_sizes(rate_in: int) -> None:
    rng = np.random.default_rng(rate_in)
    x = rng.standard_normal(rate_in * 2).astype(np.float32)
    f = Fraction(16000, rate_in)
    ref = scipy.signal.resample_poly(x.astype(np.float64), f.numerator, f.denominator)
    rs = StreamResampler(rate_in, 16000)
    out, pos = [], 0
    while pos < x.size:
        n = int(rng.integers(1, 4000)) if pos > 200 else 1  # single samples at the start too
        out.append(rs.process(x[pos : pos + n]))
        pos += n
    streamed = np.concatenate(out)
    assert streamed.size < ref.size  # the tail waits for future input...
    np.testing.assert_allclose(streamed, ref[: streamed.size], atol=1e-5)
    y = np.concatenate([streamed, rs.flush()])  # ...until the stream ends
    assert y.dtype == np.float32 and y.size == ref.size == 32000
    np.testing.assert_allclose(y, ref, atol=1e-5)
    assert rs.flush().size == 0


def test_per_block_resample_poly_would_click_but_streaming_does_not() -> None:
    """The reason this module exists: block-wise resample_poly distorts every block edge."""
    t = np.arange(48000) / 48000
    x = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    ref = scipy.signal.resample_poly(x, 1, 3)
    drift = np.concatenate([scipy.signal.resample_poly(b, 1, 3) for b in np.split(x, 30)])
    assert drift.size == 16020  # 1600-sample blocks: each rounds its length up
    naive = np.concatenate([scipy.signal.resample_poly(b, 1, 3) for b in np.split(x, 32)])
    rs = StreamResampler(48000, 16000)
    streamed = np.concatenate([rs.process(b) for b in np.split(x, 30)] + [rs.flush()])
    assert naive.size == streamed.size == 16000
    assert np.abs(naive - ref).max() > 0.05
    assert np.abs(streamed - ref).max() < 1e-5


def test_passthrough_and_bad_rates() -> None:
    rs = StreamResampler(16000, 16000)
    x = np.arange(10, dtype=np.float32)
    np.testing.assert_array_equal(rs.process(x), x)
    assert rs.n_out == 10 and rs.flush().size == 0
    with pytest.raises(ValueError, match="positive"):
        StreamResampler(0, 16000)
