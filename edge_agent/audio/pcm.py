"""Sample conversions every audio path shares: integer PCM to float, several channels to one.

WAV files (`audio.read_wav`), raw PCM on stdin (`sources.stdin`) and PortAudio blocks
(`sources.device`) arrive as integers or with several channels. Converting them here, once,
means a sample has the same float value whichever way it reached the model.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from edge_agent.arrays import FloatArray


def to_float(data: NDArray[Any]) -> FloatArray:
    """Integer PCM (any width) or float samples -> float32 in [-1, 1).

    Signed integers are divided by 2^(bits-1), so full scale maps to [-1, 1); 8-bit WAV is
    unsigned and centred on 128 first. Raises ValueError for any other sample type.
    """
    if data.dtype.kind == "f":
        return data.astype(np.float32, copy=False)
    if data.dtype == np.uint8:
        return ((data.astype(np.float32) - 128.0) / 128.0).astype(np.float32)
    if data.dtype.kind == "i":
        scale = float(2 ** (8 * data.dtype.itemsize - 1))
        return (data.astype(np.float32) / scale).astype(np.float32)
    raise ValueError(f"unsupported sample type {data.dtype}")


def to_mono(frames: NDArray[Any], channel: int | None = None) -> FloatArray:
    """(frames, channels) float samples -> (frames,) float32: one 0-based channel, or the mean
    of all channels. The caller checks that `channel` exists (it knows what to call the input
    in the error)."""
    x = np.asarray(frames, dtype=np.float32)
    if channel is not None:
        return np.array(x[:, channel], dtype=np.float32)
    if x.shape[1] == 1:
        return np.array(x[:, 0], dtype=np.float32)
    mono: FloatArray = x.mean(axis=1, dtype=np.float32)
    return mono
