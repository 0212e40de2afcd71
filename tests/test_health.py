"""Sensor health: levels in dBFS, silence, clipping, overflow and non-finite samples."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edge_agent.config.runtime import HealthSettings
from edge_agent.errors import ConfigError
from edge_agent.runtime.health import (
    CLIPPING,
    FLOOR_DBFS,
    NON_FINITE,
    OVERFLOW,
    SILENCE,
    assess,
    assess_window,
)
from edge_agent.runtime.windows import Window

RATE = 16000


def sine(amp: float, seconds: float = 1.0) -> np.ndarray:
    t = np.arange(round(seconds * RATE)) / RATE
    return (amp * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)


def test_levels_of_a_sine_and_a_healthy_window() -> None:
    r = assess(sine(0.5))
    assert r.rms_dbfs == pytest.approx(20 * np.log10(0.5 / np.sqrt(2)), abs=0.01)  # -9.03
    assert r.peak_dbfs == pytest.approx(20 * np.log10(0.5), abs=0.01)
    assert r.ok and r.faults == () and r.clipped_fraction == 0.0
    assert json.loads(json.dumps(r.to_dict()))["ok"] is True


def test_dead_microphone_is_silence_and_digital_zero_is_finite() -> None:
    zero = assess(np.zeros(RATE, np.float32))
    assert zero.faults == (SILENCE,) and not zero.ok
    assert zero.rms_dbfs == FLOOR_DBFS and zero.peak_dbfs == FLOOR_DBFS
    hiss = np.random.default_rng(0).normal(0, 1e-4, RATE).astype(np.float32)  # ~ -80 dBFS
    assert assess(hiss).faults == (SILENCE,)
    assert assess(hiss, HealthSettings(silence_dbfs=-90.0)).ok  # threshold is configurable
    quiet_machine = np.random.default_rng(1).normal(0, 3e-3, RATE).astype(np.float32)  # -50
    assert assess(quiet_machine).ok


def test_clipping_needs_more_than_the_allowed_fraction() -> None:
    x = sine(0.5)
    x[:10] = 1.0  # 0.06 % of samples at full scale: a transient, not a fault
    assert assess(x).ok
    overdriven = np.clip(sine(2.0), -1.0, 1.0)
    r = assess(overdriven)
    assert CLIPPING in r.faults and r.clipped_fraction > 0.3
    assert r.peak_dbfs == pytest.approx(0.0, abs=1e-6)
    assert assess(overdriven, HealthSettings(clip_fraction=0.7)).ok


def test_overflow_and_non_finite_windows() -> None:
    win = Window(sine(0.3, 10.0), 0.0, 0, overflow=True)
    assert assess_window(win).faults == (OVERFLOW,)
    assert assess_window(win, HealthSettings(overflow_is_fault=False)).ok
    x = sine(0.3)
    x[5] = np.nan
    r = assess(x)
    assert r.faults == (NON_FINITE,) and np.isfinite(r.rms_dbfs)
    assert assess(np.zeros(0, np.float32)).faults == (SILENCE,)


def test_settings_are_validated() -> None:
    with pytest.raises(ConfigError, match=r"health\.clip_level"):
        HealthSettings(clip_level=1.5)
    with pytest.raises(ConfigError, match=r"health\.clip_fraction"):
        HealthSettings(clip_fraction=-0.1)
    with pytest.raises(ConfigError, match=r"health\.silence_dbfs"):
        HealthSettings(silence_dbfs=6.0)


def test_a_constant_dc_level_is_silence_not_a_loud_sound() -> None:
    """A sensor or ADC stuck at one value delivers no sound: the RMS is taken without the
    mean, so `run` and `score` both call it a sensor fault instead of scoring it."""
    stuck = assess(np.full(RATE, 0.4, np.float32))
    assert stuck.faults == (SILENCE,) and stuck.rms_dbfs == FLOOR_DBFS
    assert stuck.peak_dbfs == pytest.approx(20 * np.log10(0.4), abs=0.01)
    biased = assess(sine(0.5) + np.float32(0.2))  # real sound on a DC offset: fine
    assert biased.ok and biased.rms_dbfs == pytest.approx(20 * np.log10(0.5 / np.sqrt(2)), abs=0.01)
