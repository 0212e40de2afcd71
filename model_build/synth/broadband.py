"""Synthetic family "broadband": flow and friction machines whose sound is mostly noise.

Why a second family: the "harmonic" family (model_build.synth) is built from tonal machines
whose faults are narrowband or fine-frequency, where a learned embedding of the full-clip
spectrum shines. Plants also run pumps, compressors, blowers and belts whose sound is broadband
noise shaped by resonances, and whose faults mostly change the clip's overall spectral
balance: exactly where time-mean/std statistics of a log spectrogram are strong. A quality
suite that only had the first kind would flatter the learned system.

Machines (each clip: random phases, per-clip load/level scatter, slow drift):

* pump: shaft 1x/2x and a weak vane-pass tone over flow noise through pipe resonances;
  attributes `flow_<l/min>_pres_<bar>` (flow sets level and tilt, pressure the resonances).
* compressor: piston pulsation (10-25 Hz) amplitude-modulating broadband noise, pulsation
  harmonics; attributes `rpm_<n>_tank_<bar>`.
* blower: aerodynamic noise whose spectral peak follows the speed, weak blade pass, a damper
  resonance; attributes `spd_<pct>_damper_<pct>`.
* conveyor: low rolling noise, soft roller thumps, a high gear whine; attributes
  `spd_<m/min>_load_<kg>`.

Anomalies (severity in [0.05, 1], skewed towards subtle):

* ``cavitation``: crackling high-frequency noise (balance + impulsive);
* ``clog``: the flow spectrum darkens and its main resonance moves down (balance);
* ``bearing_wear``: high-frequency hiss amplitude-modulated at a bearing rate (balance);
* ``imbalance`` / ``misalignment``: 1x or 2x shaft tones and their harmonics grow (narrowband);
* ``belt_squeal``: intermittent narrowband squeal bursts (narrowband + temporal);
* ``seal_leak``: a steady narrow hiss band above 4 kHz (narrowband noise);
* ``rattle``: sparse loose-part impacts (impulsive).

Domain shifts (section index modulo 3):

* 0 ``load``: the target domain runs at flows/pressures/speeds absent from source, which moves
  the NORMAL sound's level and balance (a false-alarm trap for balance statistics);
* 1 ``distance``: the target microphone is further away: lower machine-to-background ratio,
  high-frequency air absorption and room reverberation;
* 2 ``neighbour``: in the target domain a neighbouring machine (its own harmonics and noise)
  is audible.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.fft
import scipy.signal
from numpy.typing import NDArray

from model_build.synth.core import (
    F64,
    FS,
    ClipInfo,
    ClipJob,
    N,
    Section,
    background,
    background_events,
    draw_clip,
    finish_clip,
    harmonic_series,
    impacts,
    machine_code,
    phase_of,
    pink,
    resonance,
    rms,
    shaped_noise,
    slow_wander,
)

MACHINES = ("pump", "compressor", "blower", "conveyor")
SHIFTS = ("load", "distance", "neighbour")
ANOMALY_KINDS: dict[str, tuple[str, ...]] = {
    "pump": ("cavitation", "clog", "imbalance", "seal_leak", "rattle"),
    "compressor": ("clog", "bearing_wear", "imbalance", "seal_leak", "rattle"),
    "blower": ("imbalance", "belt_squeal", "clog", "bearing_wear", "rattle"),
    "conveyor": ("belt_squeal", "bearing_wear", "misalignment", "rattle", "cavitation"),
}


def _attr_values(machine: str, shift: str) -> tuple[list[str], list[str]]:
    """Attribute strings per domain; a load shift gives the target values of its own."""
    op = shift == "load"
    if machine == "pump":
        src = [f"flow_{f}_pres_{p}" for f in (100, 140, 180) for p in (2, 3)]
        tgt = [f"flow_{f}_pres_{p}" for f in ((240, 280) if op else (140,)) for p in (3, 5)]
    elif machine == "compressor":
        src = [f"rpm_{r}_tank_{t}" for r in (900, 1050, 1200) for t in (6, 8)]
        tgt = [f"rpm_{r}_tank_{t}" for r in ((1400, 1500) if op else (1050,)) for t in (8, 10)]
    elif machine == "blower":
        src = [f"spd_{s}_damper_{d}" for s in (50, 60, 70) for d in (30, 60)]
        tgt = [f"spd_{s}_damper_{d}" for s in ((85, 95) if op else (60,)) for d in (60, 90)]
    else:
        src = [f"spd_{s}_load_{w}" for s in (20, 25, 30) for w in (0, 40)]
        tgt = [f"spd_{s}_load_{w}" for s in ((38, 42) if op else (25,)) for w in (40, 80)]
    return src, tgt


def make_section(seed: int, machine: str, index: int) -> Section:
    """Fixed properties of one section, drawn once from (seed, machine, index)."""
    rng = np.random.default_rng([seed, machine_code(machine), index, 999])
    shift = SHIFTS[index % len(SHIFTS)]
    p: dict[str, float] = {
        "res1": float(rng.uniform(300, 1200)),
        "res2": float(rng.uniform(1500, 4000)),
        "q1": float(rng.uniform(1.5, 4.0)),
        "tilt": float(rng.uniform(-2.0, 1.0)),  # dB/octave of the flow noise
        "vanes": float(rng.integers(5, 8)),
        "whine": float(rng.uniform(1800, 3200)),
        "bearing_rate": float(rng.uniform(4.0, 9.0)),
        "leak_freq": float(rng.uniform(4500, 7000)),
        "snr_db": float(rng.uniform(6.0, 14.0)),
        # domain shift strengths
        "target_snr_drop_db": float(rng.uniform(5.0, 9.0)),
        "absorb_hz": float(rng.uniform(2500, 5000)),
        "rt60": float(rng.uniform(0.4, 1.0)),
        "neighbour_f0": float(rng.uniform(35, 90)),
        "neighbour_db": float(rng.uniform(-12, -6)),
    }
    src, tgt = _attr_values(machine, shift)
    return Section(machine, index, shift, p, tuple(src), tuple(tgt))


def _parse(attrs: str) -> dict[str, float]:
    parts = attrs.split("_")
    return {k: float(v) for k, v in zip(parts[::2], parts[1::2], strict=True)}


def _tilted(f: F64, db_per_oct: float) -> F64:
    return np.asarray(10 ** (db_per_oct * np.log2(np.maximum(f, 50.0) / 1000.0) / 20))


# ---------------------------------------------------------------- anomalies, pure functions


def _band_noise(rng: np.random.Generator, lo: float, hi: float) -> F64:
    return shaped_noise(rng, lambda f: ((f > lo) & (f < hi)).astype(np.float64) + 1e-3)


def _cavitation(rng: np.random.Generator, sev: float, scale: float) -> F64:
    """Crackle: high-band noise gated by dense random bursts."""
    hiss = _band_noise(rng, rng.uniform(2000, 3500), 7500.0)
    gate = np.zeros(N)
    n_bursts = int(rng.integers(60, 200))
    starts = rng.integers(0, N - 800, n_bursts)
    lengths = rng.integers(80, 800, n_bursts)
    for s, n in zip(starts, lengths, strict=True):
        gate[s : s + n] += np.hanning(n)
    gate = 0.3 + gate / (gate.max() + 1e-12)
    out: F64 = 0.9 * sev * scale * hiss * gate / rms(hiss * gate)
    return out


def _bearing_wear(rng: np.random.Generator, sev: float, scale: float, rate: float) -> F64:
    hiss = _band_noise(rng, 3500.0, 7800.0)
    t = np.arange(N) / FS
    env = 1.0 + 0.7 * np.sin(2 * np.pi * rate * t + rng.uniform(0, 6.3))
    return 0.8 * sev * scale * hiss * env / rms(hiss * env)


def _squeal(rng: np.random.Generator, sev: float, scale: float) -> F64:
    t = np.arange(N) / FS
    out = np.zeros(N)
    f0 = rng.uniform(1000, 4000)
    for _ in range(int(rng.integers(2, 6))):
        dur = rng.uniform(0.2, 1.0)
        i0 = int(rng.uniform(0, 10 - dur) * FS)
        n = int(dur * FS)
        vib = 1 + 0.01 * np.sin(2 * np.pi * rng.uniform(4, 9) * t[:n])
        out[i0 : i0 + n] += np.hanning(n) * np.sin(2 * np.pi * f0 * np.cumsum(vib) / FS)
    return 1.2 * sev * scale * out / (rms(out) + 1e-12) * 0.5


def _leak(rng: np.random.Generator, sev: float, scale: float, freq: float) -> F64:
    hiss = shaped_noise(rng, lambda f: resonance(f, freq, 12.0))
    return 0.5 * sev * scale * hiss


def _rattle(rng: np.random.Generator, sev: float, scale: float) -> F64:
    n = int(rng.integers(3, 12))
    sig = impacts(
        np.sort(rng.uniform(0, 10, n)),
        rng.uniform(1500, 5000),
        0.005,
        rng.uniform(0.5, 1.0, n),
        rng,
    )
    out: F64 = 3.0 * sev * scale * sig / rms(sig) * np.sqrt(n / 12)
    return out


# ---------------------------------------------------------------- machines


@dataclass(frozen=True)
class _OperatingPoint:
    """What a machine's attributes set: shaft rate, level, flow-noise shape, tonal part."""

    shaft: float
    level: float
    res1: float
    tilt: float
    mults: list[float]
    amps: list[float]


def _operating_point(m: str, p: dict[str, float], a: dict[str, float]) -> _OperatingPoint:
    if m == "pump":
        return _OperatingPoint(
            24.0 + a["pres"] * 0.8,
            a["flow"] / 140.0,
            p["res1"] * (1 + 0.05 * (a["pres"] - 3)),
            p["tilt"] + 0.01 * (a["flow"] - 140),
            [1.0, 2.0, p["vanes"]],
            [0.15, 0.08, 0.12],
        )
    if m == "compressor":
        return _OperatingPoint(
            a["rpm"] / 60.0,
            0.6 + a["tank"] / 20.0,
            p["res1"],
            p["tilt"] - 0.5,
            [1.0, 2.0, 3.0, 4.0],
            [0.3, 0.2, 0.12, 0.08],
        )
    if m == "blower":
        return _OperatingPoint(
            a["spd"] / 4.0,
            (a["spd"] / 60.0) ** 2,
            p["res1"] * a["spd"] / 60.0,
            p["tilt"] + 0.05 * (a["damper"] - 60) / 10,
            [1.0, p["vanes"]],
            [0.05, 0.1],
        )
    shaft = a["spd"] / 3.0  # conveyor
    return _OperatingPoint(
        shaft,
        0.7 + a["load"] / 100.0,
        p["res1"] * 0.5,
        p["tilt"] - 1.5,
        [p["whine"] / shaft],
        [0.06],
    )


def _flow(
    rng: np.random.Generator,
    m: str,
    p: dict[str, float],
    op: _OperatingPoint,
    shaft: float,
    res1: float,
    tilt: float,
) -> F64:
    """The machine's broadband flow/friction noise (compressor pulsation, conveyor thumps)."""
    q1, res2 = p["q1"], p["res2"]
    flow = shaped_noise(
        rng,
        lambda f: (
            pink(f)
            * _tilted(f, tilt)
            * (0.4 + resonance(f, res1, q1) + 0.5 * resonance(f, res2, 3.0))
        ),
    )
    t = np.arange(N) / FS
    if m == "compressor":  # piston pulsation modulates the flow noise
        puls = 1.0 + 0.6 * np.sin(2 * np.pi * shaft * t + rng.uniform(0, 6.3))
        flow *= puls**2 / np.sqrt(np.mean(puls**4))
    if m == "conveyor":  # soft roller thumps
        period = 2.0 / shaft * 8
        times = np.arange(rng.uniform(0, period), 10.0, period)
        flow += (
            0.6
            * impacts(times, rng.uniform(120, 250), 0.03, 1.0, rng)
            / max(1e-12, np.sqrt(len(times) / 10.0) * 4)
        )
    return flow


def _anomaly(
    rng: np.random.Generator,
    kind: str | None,
    sev: float,
    scale: float,
    shaft: float,
    ph: F64,
    p: dict[str, float],
) -> F64:
    if kind in ("imbalance", "misalignment"):
        base = 1.0 if kind == "imbalance" else 2.0
        extra = harmonic_series(ph, [1.0, 0.5, 0.25], [base * k for k in (1, 2, 3)], rng)
        return 0.6 * sev * scale * extra / rms(extra)
    makers: dict[str, Callable[[], F64]] = {
        "cavitation": lambda: _cavitation(rng, sev, scale),
        "bearing_wear": lambda: _bearing_wear(rng, sev, scale, shaft * p["bearing_rate"] / 4),
        "belt_squeal": lambda: _squeal(rng, sev, scale),
        "seal_leak": lambda: _leak(rng, sev, scale, p["leak_freq"]),
        "rattle": lambda: _rattle(rng, sev, scale),
    }
    return makers[kind]() if kind in makers else np.zeros(N)


def _machine(
    rng: np.random.Generator, sec: Section, attrs: dict[str, float], kind: str | None, sev: float
) -> tuple[F64, F64]:
    """(normal part, anomaly part) of one clip of the section's machine."""
    p = sec.params
    op = _operating_point(sec.machine, p, attrs)
    shaft = op.shaft * (1.0 + rng.normal(0, 0.005))
    level = op.level * 10 ** (rng.normal(0, 1.5) / 20)
    res1, tilt = op.res1, op.tilt
    if kind == "clog":
        res1 *= 1.0 - 0.35 * sev
        tilt -= 3.0 * sev
    flow = _flow(rng, sec.machine, p, op, shaft, res1, tilt) * level
    ph = phase_of(shaft * (1.0 + slow_wander(rng, 0.003)))
    amps = [a * level * 10 ** (rng.normal(0, 2) / 20) for a in op.amps]
    normal = flow + harmonic_series(ph, amps, op.mults, rng)
    return normal, _anomaly(rng, kind, sev, rms(normal), shaft, ph, p)


# ---------------------------------------------------------------- channel


def _far_microphone(rng: np.random.Generator, x: F64, p: dict[str, float]) -> F64:
    """Air absorption (a gentle low-pass) and room reverberation."""
    f = np.fft.rfftfreq(N, 1.0 / FS)
    lp = 1.0 / np.sqrt(1.0 + (f / p["absorb_hz"]) ** 4)
    y = scipy.fft.irfft(scipy.fft.rfft(x) * lp, N)
    rt = p["rt60"] * rng.uniform(0.9, 1.1)
    tt = np.arange(int(rt * FS)) / FS
    ir = rng.standard_normal(tt.size) * np.exp(-6.9 * tt / rt)
    ir[0] = 4.0
    ir /= np.sqrt(np.sum(ir**2))
    return np.asarray(scipy.signal.fftconvolve(y, ir)[:N])


def _neighbour(rng: np.random.Generator, p: dict[str, float]) -> F64:
    """Another machine nearby: its own harmonic series and noise, unit RMS."""
    f0 = p["neighbour_f0"] * (1 + rng.normal(0, 0.01))
    ph = phase_of(np.full(N, f0))
    tones = harmonic_series(ph, [1.0, 0.6, 0.4, 0.3, 0.2], [1, 2, 3, 4, 5], rng)
    noise = shaped_noise(rng, lambda f: resonance(f, 900.0, 1.0))
    x = tones / rms(tones) + 0.7 * noise
    return x / rms(x)


def render(job: ClipJob, sec: Section) -> tuple[NDArray[np.float32], ClipInfo]:
    """The waveform of one clip and its record. Deterministic for the job."""
    d = draw_clip(job, sec, ANOMALY_KINDS)
    rng, attrs, kind, sev = d.rng, d.attrs, d.kind, d.severity
    p = sec.params
    normal, anom = _machine(rng, sec, _parse(attrs), kind, sev)
    x = (normal + anom) / rms(normal)
    target = job.domain == "target"
    snr = p["snr_db"] + rng.uniform(-4, 4)
    if sec.shift == "distance" and target:
        snr -= p["target_snr_drop_db"]
    x = x + 10 ** (-snr / 20) * background(rng, "pink", 50.0) + background_events(rng)
    if sec.shift == "neighbour" and target:
        x = x + 10 ** (p["neighbour_db"] / 20) * _neighbour(rng, p)
    if sec.shift == "distance" and target:
        x = _far_microphone(rng, x, p)
    return finish_clip(rng, x, job, attrs, kind, sev, snr)
