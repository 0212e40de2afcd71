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

from .arrays import FloatArray
from .errors import ConfigError, FieldError
from .frontend import FrontendSpec
from .settings import bounded, check_fields, field_problem
from .sources.base import Block

MIN_HOP_SECONDS = 0.1
"""The shortest hop: what a device can score. A window costs ~10 ms of CPU on one x86 core
and, by arithmetic, ~100 ms on a Pi-class core (BENCHMARKS.md, device latency): a hop under
0.1 s asks for more windows a second than such a core scores, so the queue overflows and
windows are dropped, while every window is a 640 kB copy of audio (a hop of one sample cut
1600 windows from each block: 1 GB of RSS and 36 000 `windows_dropped` events in 25 s). A
0.1 s hop already scores every sample 100 times; nothing finer adds evidence."""


@dataclass(frozen=True)
class WindowSettings:
    """The `windows:` section of the agent's YAML.

    Bounds without a bundle: both durations positive and finite, the hop between
    MIN_HOP_SECONDS (what a device can score, see there) and a day (one window a day is
    already a sampling, not monitoring; the cap keeps `hop * rate` an exact integer). With
    the bundle (`samples`): the length must be the bundle's clip length and the hop at least
    one sample (a hop that rounds to 0 samples would cut the same window for ever; only a
    bundle below 5 Hz could get there past the floor). A hop longer than the window is
    valid: the samples in between are not scored. `score --hop` is checked against the same
    bounds (`settings.field_problem`).
    """

    seconds: float | None = bounded(None, gt=0)  # window length; unset = the bundle's clip length
    hop: float = bounded(  # seconds between window starts (10 = disjoint)
        10.0, ge=MIN_HOP_SECONDS, le=86400)

    def __post_init__(self) -> None:
        check_fields(self, "windows")

    def samples(self, spec: FrontendSpec) -> tuple[int, int]:
        """(window length, hop) in samples at the bundle's rate; the length is the bundle's clip
        length. Raises ConfigError (one line: the field, the value, what the bundle takes) on a
        length the model cannot take or a hop shorter than one sample."""
        if self.seconds is not None and round(self.seconds * spec.sample_rate) != (
            spec.clip_samples
        ):
            raise ConfigError(
                f"windows.seconds: the bundle's model takes {spec.clip_seconds:g} s windows, "
                f"got {self.seconds:g} (leave it unset)"
            )
        hop = round(self.hop * spec.sample_rate)
        if hop < 1:
            raise ConfigError(
                f"windows.hop: {self.hop:g} s is less than one sample at the bundle's "
                f"{spec.sample_rate} Hz (expected at least {1 / spec.sample_rate:g} s)"
            )
        return spec.clip_samples, hop


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
