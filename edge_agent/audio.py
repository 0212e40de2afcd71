"""Audio files: WAV in as mono float32 clips of exactly the spec's length, WAV out, folders in.

Policy (documented in the README, applied everywhere a file is read):

* formats: PCM 8/16/24/32-bit and IEEE float WAV, including WAVE_FORMAT_EXTENSIBLE headers
  (MIMII's 8-channel files); integers are scaled to [-1, 1).
* channels: mixed down by averaging, or one chosen channel (`channel=N`, 0-based).
* sample rate: anything else is resampled to the spec's rate (16 kHz) with a polyphase filter.
* length: longer clips keep their first `spec.clip_seconds` (10 s; DCASE 2023 ToyCar/ToyTrain
  are 12 s); shorter clips of at least `min_seconds` are looped (tiled) up to it, because
  machine sounds are mostly stationary and zero padding would put silence into the spectrum;
  anything shorter is refused.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .arrays import FloatArray
from .errors import AudioFileError
from .frontend import FrontendSpec
from .pcm import to_float, to_mono

MIN_SECONDS = 1.0


def resample(x: FloatArray, rate_in: int, rate_out: int) -> FloatArray:
    """Polyphase resampling along the last axis (exact rational ratio)."""
    if rate_in == rate_out:
        return x
    import scipy.signal  # ~50 MB resident: only when a file is not at 16 kHz

    ratio = Fraction(rate_out, rate_in)
    y = scipy.signal.resample_poly(x, ratio.numerator, ratio.denominator, axis=-1)
    return np.asarray(y, dtype=np.float32)


def read_wav(path: str | Path, channel: int | None = None) -> tuple[FloatArray, int]:
    """Read a WAV file as mono float32 at its own rate. Raises AudioFileError."""
    p = Path(path)
    if not p.is_file():
        raise AudioFileError(p, "file not found")
    import scipy.io.wavfile  # imported here: a capture-only device never loads scipy.io

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", scipy.io.wavfile.WavFileWarning)
            rate, data = scipy.io.wavfile.read(p)
    except Exception as exc:  # scipy raises ValueError/EOFError/struct.error on bad files
        raise AudioFileError(p, f"not a readable WAV file ({exc})") from exc
    try:
        x = to_float(np.asarray(data))
    except ValueError as exc:
        raise AudioFileError(p, str(exc)) from exc
    if x.ndim == 2:
        n_ch = x.shape[1]
        if channel is not None and not 0 <= channel < n_ch:
            raise AudioFileError(p, f"channel {channel} requested but the file has {n_ch}")
        x = to_mono(x, channel)
    elif channel not in (None, 0):
        raise AudioFileError(p, f"channel {channel} requested but the file is mono")
    if x.size == 0:
        raise AudioFileError(p, "file contains no samples")
    if not np.all(np.isfinite(x)):
        raise AudioFileError(p, "file contains NaN or infinite samples")
    return x.astype(np.float32, copy=False), int(rate)


def fit_length(
    x: FloatArray, n: int, min_samples: int, source: str | Path = "<array>"
) -> FloatArray:
    """Apply the length policy: crop to the first n samples, or loop a short clip."""
    if x.shape[-1] >= n:
        return np.ascontiguousarray(x[..., :n])
    if x.shape[-1] < min_samples:
        raise AudioFileError(
            source, f"too short: {x.shape[-1]} samples, need at least {min_samples}"
        )
    reps = -(-n // x.shape[-1])
    return np.ascontiguousarray(np.tile(x, reps)[..., :n])


def load_clip(
    path: str | Path,
    spec: FrontendSpec,
    channel: int | None = None,
    min_seconds: float = MIN_SECONDS,
) -> FloatArray:
    """Load one file as exactly `spec.clip_samples` float32 samples at `spec.sample_rate`."""
    x, rate = read_wav(path, channel)
    x = resample(x, rate, spec.sample_rate)
    return fit_length(x, spec.clip_samples, int(min_seconds * spec.sample_rate), path)


def write_wav(path: str | Path, x: NDArray[Any], rate: int) -> None:
    """Write 16-bit PCM (the DCASE format); values are clipped to [-1, 1]."""
    import scipy.io.wavfile

    pcm = np.clip(np.asarray(x, dtype=np.float64), -1.0, 1.0 - 1.0 / 32768.0)
    scipy.io.wavfile.write(Path(path), rate, np.round(pcm * 32768.0).astype(np.int16))


def expand_files(entries: Sequence[str | Path]) -> list[Path]:
    """WAV files as given, folders replaced by their .wav files (recursively, sorted).

    Raises AudioFileError naming an entry that does not exist or a folder without WAV files:
    a typo must not silently become "no audio".
    """
    out: list[Path] = []
    for entry in entries:
        p = Path(entry).expanduser()
        if p.is_dir():
            wavs = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() == ".wav")
            if not wavs:
                raise AudioFileError(p, "folder contains no .wav files")
            out.extend(wavs)
        elif p.is_file():
            out.append(p)
        else:
            raise AudioFileError(p, "no such file or folder")
    return out
