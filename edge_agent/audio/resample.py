"""Streaming polyphase resampling that is continuous across blocks.

A live microphone delivers audio in blocks; resampling each block on its own
(`scipy.signal.resample_poly(block)`) zero-pads both ends of every block and puts a click
every 0.1 s into the stream, which the spectrum branch of the model would see as an anomaly.
`StreamResampler` keeps the filter's input history between calls, so the concatenation of
its outputs equals `resample_poly` applied to the whole stream at once (same Kaiser-windowed
FIR, same zero-phase alignment), up to the last few samples, which `flush()` emits at the end
of a finite stream.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
from numpy.typing import NDArray

from edge_agent.arrays import FloatArray


def design_filter(up: int, down: int) -> NDArray[np.float64]:
    """The anti-aliasing FIR `scipy.signal.resample_poly` uses (Kaiser beta 5, gain `up`)."""
    import scipy.signal  # ~50 MB resident: only a device that refuses 16 kHz needs it

    max_rate = max(up, down)
    half_len = 10 * max_rate
    h = scipy.signal.firwin(2 * half_len + 1, 1.0 / max_rate, window=("kaiser", 5.0))
    return np.asarray(h, dtype=np.float64) * up


class StreamResampler:
    """Resample an unbounded float32 stream from `rate_in` to `rate_out` block by block.

    Output sample n is `sum_k h[k] * xup[n*down + half_len - k]` where `xup` is the input
    upsampled by zero insertion: the definition `resample_poly` uses, so the result does not
    depend on how the input was cut into blocks. Work per output sample is one dot product
    with one polyphase branch of the filter (`ceil(len(h) / up)` taps).
    """

    def __init__(self, rate_in: int, rate_out: int) -> None:
        if rate_in <= 0 or rate_out <= 0:
            raise ValueError(f"sample rates must be positive, got {rate_in} -> {rate_out}")
        ratio = Fraction(rate_out, rate_in)
        self.rate_in = rate_in
        self.rate_out = rate_out
        self.up = ratio.numerator
        self.down = ratio.denominator
        self.passthrough = self.up == self.down == 1
        h = design_filter(self.up, self.down) if not self.passthrough else np.ones(1)
        self.half_len = (len(h) - 1) // 2
        self.taps = -(-len(h) // self.up)
        padded = np.zeros(self.taps * self.up)
        padded[: len(h)] = h
        # branches[p, i] = h[p + up*i]: the taps that meet input x[j0 - i] for phase p.
        self._branches = padded.reshape(self.taps, self.up).T.copy()
        # Input history; _offset is the absolute input index of _buf[0] (starts negative:
        # the stream is preceded by zeros, as in resample_poly).
        self._buf = np.zeros(self.taps, dtype=np.float64)
        self._offset = -self.taps
        self.n_in = 0
        self.n_out = 0
        self._flushed = False

    def process(self, x: NDArray[np.floating]) -> FloatArray:
        """Feed the next input samples; return every output sample that is now complete."""
        x = np.asarray(x, dtype=np.float32).reshape(-1)
        if self.passthrough:
            self.n_in += x.size
            self.n_out += x.size
            return x.copy()
        self._buf = np.concatenate([self._buf, x.astype(np.float64)])
        self.n_in += x.size
        # Output n needs inputs up to floor((n*down + half_len) / up) <= n_in - 1.
        last = (self.up * self.n_in - 1 - self.half_len) // self.down
        return self._emit(last)

    def flush(self) -> FloatArray:
        """End of a finite stream: emit the tail so the total length is ceil(n_in*up/down)."""
        if self.passthrough or self._flushed:
            return np.zeros(0, dtype=np.float32)
        self._flushed = True
        total = -(-self.n_in * self.up // self.down)
        self._buf = np.concatenate([self._buf, np.zeros(self.taps + 1)])
        return self._emit(total - 1)

    def _emit(self, last: int) -> FloatArray:
        n = np.arange(self.n_out, last + 1, dtype=np.int64)
        if n.size == 0:
            return np.zeros(0, dtype=np.float32)
        m = n * self.down + self.half_len
        phase = m % self.up
        j0 = m // self.up - self._offset  # buffer position of the newest input each output uses
        windows = np.lib.stride_tricks.sliding_window_view(self._buf, self.taps)
        # windows[j0 - taps + 1] holds x[j0-taps+1 .. j0]; the branch runs newest-first.
        segs = windows[j0 - self.taps + 1][:, ::-1]
        y = np.einsum("ij,ij->i", segs, self._branches[phase])
        self.n_out = int(last) + 1
        # Keep only the history that future outputs can still reach.
        next_m = self.n_out * self.down + self.half_len
        keep_from = next_m // self.up - self.taps + 1 - self._offset
        if keep_from > 0:
            self._buf = self._buf[keep_from:]
            self._offset += keep_from
        out: FloatArray = y.astype(np.float32)
        return out
