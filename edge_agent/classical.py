"""The classical embedding: band statistics of the log spectrogram (numpy, on the device).

Why a hand-made embedding next to the learned one. The paper's spectrogram branch sees the
STFT AFTER temporal mean normalisation, which removes every bin's average over the clip: a
steady change of the machine's spectral balance (a darker flow noise, a new steady hiss or
tone) is subtracted away by design. The spectrum branch sees it in principle, but on a plant's
amount of data (tens to hundreds of clips) it rarely learns to. Time statistics of the log
spectrogram capture exactly that balance, cost ~0.3 ms on top of the STFT the device computes
anyway, and need no training; the backend scores them like any embedding and fuses the
normalised scores with the learned ones (edge_agent.backend), so the hybrid keeps the
classical detector's strengths where the learned one is blind.

The features: the |STFT| power of each frame pooled into `n_bands` log-spaced bands (from
bin 2, ~31 Hz, up to Nyquist; every band at least one bin wide), log-compressed, then the
mean and the standard deviation of each band over the clip's frames: a (2 * bands,) vector.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from .frontend import FrontendSpec, stft_magnitude

DEFAULT_BANDS = 64
LOG_EPS = 1e-10


def band_edges(spec: FrontendSpec, n_bands: int = DEFAULT_BANDS) -> NDArray[np.int64]:
    """Bin indices of the band edges: log-spaced from bin 2 to `n_bins`, duplicates merged
    (the low bands would otherwise be narrower than one bin)."""
    if n_bands < 1:
        raise ValueError(f"bands: expected >= 1, got {n_bands}")
    edges = np.unique(np.round(np.geomspace(2, spec.n_bins, n_bands + 1)).astype(np.int64))
    return edges


def band_stats_from_magnitude(
    mag: NDArray[Any], edges: NDArray[np.int64]
) -> NDArray[np.float32]:
    """(..., 2 * (len(edges) - 1)) [time-mean, time-std] of log band power of |STFT| frames
    `mag` (..., n_frames, n_bins)."""
    power = np.square(np.asarray(mag, dtype=np.float64))
    sums = np.add.reduceat(power, edges[:-1], axis=-1)[..., : len(edges) - 1]
    bands = np.log(sums / np.diff(edges) + LOG_EPS)
    return np.concatenate([bands.mean(axis=-2), bands.std(axis=-2)], axis=-1).astype(np.float32)


def band_stats(
    wave: NDArray[Any], spec: FrontendSpec, n_bands: int = DEFAULT_BANDS
) -> NDArray[np.float32]:
    """The classical embedding of one clip (or a batch) of `spec.clip_samples` samples."""
    return band_stats_from_magnitude(stft_magnitude(wave, spec), band_edges(spec, n_bands))
