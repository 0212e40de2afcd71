"""Sensor health of one window: is the microphone delivering usable audio?

A dead or unplugged microphone produces (near) silence, an overdriven one clips, and an
input overflow leaves a gap in the audio. None of these says anything about the machine,
and the anomaly score of such a window is meaningless (silence is far from every normal
embedding and would raise a false alarm). The decision layer therefore reports these as
sensor faults instead of scoring them as machine anomalies.

Levels are dBFS of the float32 signal: 20*log10(RMS) and 20*log10(max |x|), so a full-scale
sine has an RMS level of -3 dBFS and a peak of 0 dBFS; digital silence is reported as
`FLOOR_DBFS` (-120) instead of -inf so the value stays JSON-serialisable. The RMS is taken
after removing the window's mean: a constant (DC) signal, a microphone or ADC stuck at one
value, is silence, not a loud sound.

`edge-agent run` and `edge-agent score` both judge windows with `assess_window`, so a window
is a sensor fault (not scored) in one exactly when it is in the other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from edge_agent.config.runtime import HealthSettings
from edge_agent.runtime.windows import Window

FLOOR_DBFS = -120.0

Fault = Literal["silence", "clipping", "overflow", "non_finite"]
SILENCE: Fault = "silence"
CLIPPING: Fault = "clipping"
OVERFLOW: Fault = "overflow"
NON_FINITE: Fault = "non_finite"


@dataclass(frozen=True)
class HealthReport:
    """Levels of a window and the sensor faults found in it (empty = ok)."""

    rms_dbfs: float
    peak_dbfs: float
    clipped_fraction: float
    faults: tuple[Fault, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.faults

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "faults": list(self.faults),
            "rms_dbfs": round(self.rms_dbfs, 2),
            "peak_dbfs": round(self.peak_dbfs, 2),
            "clipped_fraction": self.clipped_fraction,
        }


def to_dbfs(value: float) -> float:
    """20*log10(value) with a floor at FLOOR_DBFS."""
    if value <= 0.0 or not np.isfinite(value):
        return FLOOR_DBFS
    return max(FLOOR_DBFS, 20.0 * float(np.log10(value)))


def assess(
    samples: NDArray[Any], settings: HealthSettings = HealthSettings(), overflow: bool = False
) -> HealthReport:
    """Levels and faults of one window of float samples in [-1, 1]."""
    x = np.asarray(samples, dtype=np.float64).reshape(-1)
    if x.size == 0:
        return HealthReport(FLOOR_DBFS, FLOOR_DBFS, 0.0, (SILENCE,))
    faults: list[Fault] = []
    if not np.all(np.isfinite(x)):
        faults.append(NON_FINITE)
        x = np.nan_to_num(x, nan=0.0, posinf=1.0, neginf=-1.0)
    ac = x - x.mean()  # a DC offset carries no sound: a stuck sensor is as dead as a silent one
    rms = float(np.sqrt(np.mean(ac * ac)))
    mag = np.abs(x)
    peak = float(mag.max())
    clipped = float(np.count_nonzero(mag >= settings.clip_level)) / x.size
    rms_dbfs = to_dbfs(rms)
    if rms_dbfs < settings.silence_dbfs:
        faults.append(SILENCE)
    if clipped > settings.clip_fraction:
        faults.append(CLIPPING)
    if overflow and settings.overflow_is_fault:
        faults.append(OVERFLOW)
    return HealthReport(rms_dbfs, to_dbfs(peak), clipped, tuple(faults))


def assess_window(window: Window, settings: HealthSettings = HealthSettings()) -> HealthReport:
    """`assess` on a window (its samples and overflow flag)."""
    return assess(window.samples, settings, window.overflow)
