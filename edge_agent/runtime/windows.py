"""Cut the block stream into the windows the model scores, as long as the bundle's clips.

The model was trained on 10 s clips (the paper's DCASE data), so the agent scores windows of
the bundle's clip length (`spec.clip_samples`). The default hop is 10 s: consecutive windows
are disjoint, each sample is scored once (a Pi spends its CPU on one inference per 10 s, a low
duty cycle that avoids thermal throttling), and a k-of-n alarm rule then counts independent
evidence instead of the same sound seen twice. Set `hop` smaller (e.g. 5 s) for faster
reaction at twice the CPU, or larger than the window to score only part of the time.

`Windower` keeps a linear buffer of pending samples with absolute sample indices: no sample
is lost or duplicated between blocks whatever their sizes, and each window carries the
wall-clock time of its first sample (derived from the block that contains it) and whether
an input overflow (a gap in the audio) falls inside it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge_agent.arrays import FloatArray
from edge_agent.config.fields import field_problem
from edge_agent.config.runtime import WindowSettings
from edge_agent.errors import FieldError
from edge_agent.sources.base import Block


def check_hop(seconds: float) -> float:
    """`seconds`, or a FieldError("hop") when a hop given outside the config (`score --hop`)
    is not finite or is outside `windows.hop`'s bounds (the same words as the config's)."""
    problem = field_problem(WindowSettings, "hop", seconds)
    if problem is not None:
        raise FieldError("hop", problem)
    return seconds


@dataclass(frozen=True)
class Window:
    """One window of consecutive samples ready for scoring."""

    samples: FloatArray  # (spec.clip_samples,) float32
    t_start: float  # wall clock of the first sample
    index: int  # 0, 1, 2... in the order windows were produced
    overflow: bool = False  # samples were lost somewhere inside this window
    source_info: str = ""  # source_info of the block holding the first sample


class Windower:
    """Push blocks, get the windows they complete: `length` samples every `hop` samples."""

    def __init__(self, length: int, hop: int, rate: int) -> None:
        if length <= 0 or hop <= 0:
            raise ValueError(f"window length and hop must be positive, got {length}, {hop}")
        self.rate = rate
        self.length, self.hop = length, hop
        self._buf = np.zeros(2 * self.length + 4 * rate, dtype=np.float32)
        self._buf_start = 0  # absolute index of _buf[0]
        self._fill = 0  # valid samples in _buf
        self._total = 0  # samples pushed so far
        self._next = 0  # absolute index of the next window's first sample
        self._anchors: list[tuple[int, float, str]] = []  # (block start, t_start, source_info)
        self._gaps: list[int] = []  # absolute indices with lost samples just before them
        self.windows = 0
        self.overflow_windows = 0

    def push(self, block: Block) -> list[Window]:
        """Append a block; return the windows completed by it (possibly none, possibly several)."""
        x = np.asarray(block.samples, dtype=np.float32).reshape(-1)
        if block.overflow:
            self._gaps.append(self._total)
        if x.size:
            self._anchors.append((self._total, block.t_start, block.source_info))
        self._append(x)
        out: list[Window] = []
        while self._next + self.length <= self._total:
            out.append(self._cut())
            self._next += self.hop
        self._discard()
        return out

    def _append(self, x: FloatArray) -> None:
        start = self._total
        self._total += x.size
        # Samples before the next window start are never needed (hop > length skips them).
        skip = max(0, self._next - start)
        x = x[skip:]
        if x.size == 0:
            if self._fill == 0:
                self._buf_start = self._total
            return
        if self._fill == 0:
            self._buf_start = start + skip
        if self._fill + x.size > self._buf.size:
            grown = np.zeros(max(2 * self._buf.size, self._fill + x.size), dtype=np.float32)
            grown[: self._fill] = self._buf[: self._fill]
            self._buf = grown
        self._buf[self._fill : self._fill + x.size] = x
        self._fill += x.size

    def _cut(self) -> Window:
        lo = self._next - self._buf_start
        samples = self._buf[lo : lo + self.length].copy()
        anchor = self._anchors[0]
        for a in self._anchors:
            if a[0] <= self._next:
                anchor = a
            else:
                break
        t_start = anchor[1] + (self._next - anchor[0]) / self.rate
        end = self._next + self.length
        overflow = any(self._next < g < end for g in self._gaps)
        window = Window(samples, t_start, self.windows, overflow, anchor[2])
        self.windows += 1
        if overflow:
            self.overflow_windows += 1
        return window

    def _discard(self) -> None:
        """Drop samples, anchors and gaps that no future window can reach."""
        drop = min(self._next - self._buf_start, self._fill)
        if drop > 0:
            self._buf[: self._fill - drop] = self._buf[drop : self._fill]
            self._fill -= drop
            self._buf_start += drop
        if self._fill == 0:
            self._buf_start = max(self._next, self._total)
        keep = 0
        for i, a in enumerate(self._anchors):
            if a[0] <= self._next:
                keep = i
        del self._anchors[:keep]
        self._gaps = [g for g in self._gaps if g > self._next]
