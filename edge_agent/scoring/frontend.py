"""The one frontend spec: features computed identically for training and on the device.

The paper (Wilkinghoff, ICASSP 2023, section 2.1) feeds two representations of a 10 s,
16 kHz clip to two sub-networks:

* branch A: magnitude STFT (Hann window 1024, hop 512, no padding -> 311 frames x 513 bins)
  with temporal mean normalisation (per frequency bin, subtract the mean over the clip's
  frames, like cepstral mean normalisation);
* branch B: magnitude of the FFT of the whole clip, first 80 000 bins (DC up to just below
  Nyquist).

This module is pure numpy (+ scipy's pocketfft via `edge_agent.scoring.fft`; no TensorFlow);
`model_build.training.tf_frontend` implements the same spec in TensorFlow for training and a test
proves the two agree numerically.
The window is the *periodic* Hann window, which is what `tf.signal.stft` uses by default.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from edge_agent.arrays import FloatArray
from edge_agent.scoring.fft import rfft

SAMPLE_RATE = 16_000
"""The paper's (and DCASE's) audio rate: the default spec's, and what `edge-agent devices` and
`record` use where no bundle says otherwise. Everything that scores takes the rate from the
bundle's spec instead."""


@dataclass(frozen=True)
class FrontendSpec:
    """Parameters of both input representations; stored in every bundle manifest."""

    sample_rate: int = SAMPLE_RATE
    clip_seconds: float = 10.0
    n_fft: int = 1024
    hop: int = 512
    spectrum_bins: int = 80_000
    temporal_norm: bool = True

    @property
    def clip_samples(self) -> int:
        return round(self.sample_rate * self.clip_seconds)

    @property
    def n_frames(self) -> int:
        return 1 + (self.clip_samples - self.n_fft) // self.hop

    @property
    def n_bins(self) -> int:
        return self.n_fft // 2 + 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "sample_rate": self.sample_rate,
            "clip_seconds": self.clip_seconds,
            "n_fft": self.n_fft,
            "hop": self.hop,
            "spectrum_bins": self.spectrum_bins,
            "temporal_norm": self.temporal_norm,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FrontendSpec:
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown frontend parameter(s): {sorted(unknown)}")
        return cls(**data)


DEFAULT_SPEC = FrontendSpec()


def periodic_hann(n: int) -> FloatArray:
    """Periodic Hann window (as `tf.signal.hann_window(n, periodic=True)`)."""
    k = np.arange(n, dtype=np.float64)
    return (0.5 - 0.5 * np.cos(2.0 * np.pi * k / n)).astype(np.float32)


def _check_clip(wave: NDArray[Any], spec: FrontendSpec) -> NDArray[np.float32]:
    x = np.asarray(wave, dtype=np.float32)
    if x.shape[-1] != spec.clip_samples:
        raise ValueError(
            f"expected clips of {spec.clip_samples} samples ({spec.clip_seconds} s at "
            f"{spec.sample_rate} Hz), got {x.shape[-1]}"
        )
    return x


def framed_magnitude(
    x: NDArray[Any], n_fft: int, hop: int, n_frames: int | None = None
) -> FloatArray:
    """|STFT| of `x` (..., n_samples) with a periodic Hann window and no padding: frames
    `n_fft` long, `hop` apart (the first `n_frames` of them when given) -> (..., frames,
    n_fft // 2 + 1). The frontend's and the spectral stability's (a finer one) alike.

    Frames are strided views (no copy) and the FFT is scipy's pocketfft over the last axis
    (`edge_agent.scoring.fft`), which is ~4x faster than numpy's on this workload.
    """
    frames = np.lib.stride_tricks.sliding_window_view(x, n_fft, axis=-1)[..., ::hop, :]
    frames = frames[..., :n_frames, :] * periodic_hann(n_fft)
    mag: FloatArray = np.abs(rfft(frames, axis=-1)).astype(np.float32)
    return mag


def stft_magnitude(wave: NDArray[Any], spec: FrontendSpec) -> FloatArray:
    """|STFT| (periodic Hann window, no padding): (..., clip_samples) -> (..., n_frames, n_bins)."""
    return framed_magnitude(_check_clip(wave, spec), spec.n_fft, spec.hop, spec.n_frames)


def temporal_normalise(mag: FloatArray, spec: FrontendSpec) -> FloatArray:
    """Subtract every bin's mean over the frames when the spec asks for it."""
    if spec.temporal_norm:
        normed: FloatArray = mag - mag.mean(axis=-2, keepdims=True)
        return normed
    return mag


def spectrogram(wave: NDArray[Any], spec: FrontendSpec) -> FloatArray:
    """Branch A input: magnitude STFT, optionally temporal-mean normalised.

    `wave` has shape (..., clip_samples); the result has shape (..., n_frames, n_bins).
    """
    return temporal_normalise(stft_magnitude(wave, spec), spec)


def spectrum(wave: NDArray[Any], spec: FrontendSpec) -> FloatArray:
    """Branch B input: magnitude of the whole clip's FFT, first `spectrum_bins` bins."""
    x = _check_clip(wave, spec)
    mag: FloatArray = np.abs(rfft(x, axis=-1)[..., : spec.spectrum_bins]).astype(np.float32)
    return mag


Feature = Callable[[NDArray[Any], FrontendSpec], FloatArray]

FEATURES: Mapping[str, Feature] = {"spectrogram": spectrogram, "spectrum": spectrum}
"""Model input name -> the numpy function computing it: THE table. A bundle names its model's
inputs; the device, export and evaluation look them up here (TensorFlow has its twin in
`model_build.training.tf_frontend.TF_FEATURES`)."""


def model_inputs(wave: NDArray[Any], names: Sequence[str], spec: FrontendSpec) -> list[FloatArray]:
    """The named model inputs of one clip or a batch, in the order of `names`."""
    return [FEATURES[name](wave, spec) for name in names]
