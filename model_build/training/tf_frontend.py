"""TensorFlow twin of `edge_agent.scoring.frontend`: the same features, computed inside the
training graph.

Training mixes raw waveforms (mixup) and only then computes features, so the frontend has to
run in TensorFlow on a batch. The device computes features with the numpy frontend;
tests/test_tf_frontend.py proves both agree. `logmel` exists only for the paper's input
ablation (Table 4: 128 log-mel bins); it is not part of the exportable spec.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import tensorflow as tf

from edge_agent.scoring.frontend import FrontendSpec

LOGMEL_BINS = 128
_LOG_EPS = 1e-6


def _check(waves: tf.Tensor, spec: FrontendSpec) -> tf.Tensor:
    waves = tf.convert_to_tensor(waves, dtype=tf.float32)
    if waves.shape.rank != 2 or waves.shape[-1] not in (None, spec.clip_samples):
        raise ValueError(f"expected waves of shape (batch, {spec.clip_samples}), got {waves.shape}")
    return waves


def _stft_mag(waves: tf.Tensor, spec: FrontendSpec) -> tf.Tensor:
    """|STFT|, periodic Hann window, no padding: (batch, n_frames, n_bins)."""
    return tf.abs(
        tf.signal.stft(
            waves,
            frame_length=spec.n_fft,
            frame_step=spec.hop,
            fft_length=spec.n_fft,
            window_fn=tf.signal.hann_window,
            pad_end=False,
        )
    )


def _temporal_norm(x: tf.Tensor, spec: FrontendSpec) -> tf.Tensor:
    if spec.temporal_norm:
        return x - tf.reduce_mean(x, axis=1, keepdims=True)
    return x


def spectrogram(waves: tf.Tensor, spec: FrontendSpec) -> tf.Tensor:
    """Branch A input, (batch, n_frames, n_bins): |STFT|, optionally temporal-mean normalised."""
    return _temporal_norm(_stft_mag(_check(waves, spec), spec), spec)


def spectrum(waves: tf.Tensor, spec: FrontendSpec) -> tf.Tensor:
    """Branch B input, (batch, spectrum_bins): |rfft| of the whole clip, first bins."""
    return tf.abs(tf.signal.rfft(_check(waves, spec)))[:, : spec.spectrum_bins]


def logmel(waves: tf.Tensor, spec: FrontendSpec, n_mels: int = LOGMEL_BINS) -> tf.Tensor:
    """Ablation input, (batch, n_frames, n_mels): log of the mel-weighted power STFT."""
    power = tf.square(_stft_mag(_check(waves, spec), spec))
    weights = tf.signal.linear_to_mel_weight_matrix(
        num_mel_bins=n_mels,
        num_spectrogram_bins=spec.n_bins,
        sample_rate=spec.sample_rate,
        lower_edge_hertz=0.0,
        upper_edge_hertz=spec.sample_rate / 2,
    )
    return _temporal_norm(tf.math.log(tf.tensordot(power, weights, 1) + _LOG_EPS), spec)


TF_FEATURES: Mapping[str, Callable[[tf.Tensor, FrontendSpec], tf.Tensor]] = {
    "spectrogram": spectrogram,
    "spectrum": spectrum,
    "logmel128": logmel,
}
"""Model input name -> the TensorFlow function computing it (the twin of
`edge_agent.scoring.frontend.FEATURES`, plus the log-mel ablation input)."""
