"""Synthetic family "texture": faults that keep every band's energy and domain shifts that move
the whole spectrum.

Why a fifth family: in the other families most faults add energy somewhere (a tone, a hiss, an
impact) or move it between bands, which is what band statistics of a log spectrogram measure.
Real faults are often subtler: a bearing's tone becomes a narrow noise band of the same power,
a harmonic splits into two close lines that beat, a speed becomes unsteady, a phase-locked
pulse train loses its lock. None of that changes a band's mean energy, and the time-mean
statistics a classical detector relies on see (almost) nothing, while the domain shifts of
this family move the WHOLE spectrum (speed, a strong tilt, a resampling mismatch) and so move
exactly those statistics for normal sound. A fusion rule that gives band statistics a fixed
weight loses here; one that looks at the section's own data should not.

Machines (tonal, with per-clip level, load and noise scatter of a few dB):

* spindle: a high fundamental (100-250 Hz) with 8 harmonics, light noise, a weak shaft AM;
* turbine: a blade-pass series over strong flow noise, amplitude-modulated at the shaft rate;
* motor: twice the mains frequency, slot harmonics with sidebands, fan noise;
* mixer: a low-rate (8-20 Hz) phase-locked pulse train (a comb of harmonics) over noise.

Anomalies (severity in [0.05, 1] skewed towards subtle; the band energies stay within a
fraction of a dB of the normal clip's):

* ``line_to_noise``: one strong line becomes narrowband noise of the same power (2-10 Hz wide,
  inside one STFT bin);
* ``beating``: one line splits into two lines 0.3-3 Hz apart with the same total power;
* ``wobble``: a small frequency modulation (0.1-0.8 %) of the whole series at 2-8 Hz;
* ``dephase``: the lines' phases wander (a phase-locked comb loses its pulse shape);
* ``am_rate``: the amplitude modulation runs at another rate, same depth.

Domain shifts (section index modulo 3), each moving the whole spectrum of the target domain:
``speed`` (the target runs 25-35 % faster than the source's middle speed), ``tilt`` (another
channel, +-4..6 dB/octave), ``resample`` (a sample rate mismatch: every frequency, noise and
background included, scaled by 0.86-0.94).
"""

from __future__ import annotations

import numpy as np
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
    machine_code,
    pink,
    resonance,
    rms,
    shaped_noise,
    slow_wander,
)

MACHINES = ("spindle", "turbine", "motor", "mixer")
SHIFTS = ("speed", "tilt", "resample")
_KINDS = ("line_to_noise", "beating", "wobble", "dephase", "am_rate")
ANOMALY_KINDS: dict[str, tuple[str, ...]] = dict.fromkeys(MACHINES, _KINDS)


def _attr_values(shift: str) -> tuple[list[str], list[str]]:
    src = [f"rate_{r}_load_{ld}" for r in (90, 100, 110) for ld in (1, 2)]
    if shift == "speed":
        tgt = [f"rate_{r}_load_{ld}" for r in (125, 135) for ld in (1, 2)]
    else:
        tgt = [f"rate_100_load_{ld}" for ld in (1, 2)]
    return src, tgt


def make_section(seed: int, machine: str, index: int) -> Section:
    rng = np.random.default_rng([seed, machine_code(machine), index, 999])
    shift = SHIFTS[index % len(SHIFTS)]
    base = {"spindle": (100, 250), "turbine": (40, 80), "motor": (50, 60), "mixer": (8, 20)}
    lo, hi = base[machine]
    p: dict[str, float] = {
        "f0": float(rng.choice([50.0, 60.0]) if machine == "motor" else rng.uniform(lo, hi)),
        "order": float(rng.integers(5, 13)),  # turbine blades, motor slots / 10
        "res1": float(rng.uniform(400, 2500)),
        "res2": float(rng.uniform(2500, 6000)),
        "noise_db": float(rng.uniform(-14, -4)),
        "am_rate": float(rng.uniform(3.0, 12.0)),
        "am_depth": float(rng.uniform(0.15, 0.4)),
        "pattern": float(rng.integers(0, 2**31)),
        "snr_db": float(rng.uniform(8.0, 16.0)),
        "tilt": float(rng.choice([-1, 1]) * rng.uniform(4.0, 6.0)),
        "resample": float(rng.uniform(0.86, 0.94)),
    }
    src, tgt = _attr_values(shift)
    return Section(machine, index, shift, p, tuple(src), tuple(tgt))


def _lines(machine: str, p: dict[str, float], rate: float) -> tuple[list[float], list[float]]:
    """(frequencies, linear amplitudes) of the machine's lines at speed `rate` (1 = nominal)."""
    pattern = np.random.default_rng(int(p["pattern"])).normal(0, 3.0, 64)
    f0 = p["f0"] * rate
    if machine == "spindle":
        fs = [f0 * k for k in range(1, 9)]
        db = [-2.5 * k for k in range(8)]
    elif machine == "turbine":
        bpf = f0 * p["order"]
        fs = [f0, 2 * f0] + [bpf * k for k in range(1, 5)] + [bpf + s * f0 for s in (-1, 1)]
        db = [-12.0, -16.0, 0.0, -4.0, -8.0, -12.0, -14.0, -14.0]
    elif machine == "motor":  # mains is fixed; the slot lines follow the speed
        slot = 10 * p["order"] * rate * 10
        fs = [2 * p["f0"], 4 * p["f0"], slot, slot - 2 * p["f0"], slot + 2 * p["f0"], 2 * slot]
        db = [0.0, -8.0, -4.0, -12.0, -12.0, -10.0]
    else:  # mixer: a comb of the pulse rate, harmonics up to ~1.5 kHz
        n = int(min(60, 1500 // f0))
        fs = [f0 * k for k in range(1, n + 1)]
        db = [-0.1 * k for k in range(n)]
    amps = [10 ** ((d + pattern[i % 64]) / 20) for i, d in enumerate(db)]
    keep = [i for i, f in enumerate(fs) if 20 < f < 0.45 * FS]
    return [fs[i] for i in keep], [amps[i] for i in keep]


def _lowpass_noise(rng: np.random.Generator, bw: float) -> F64:
    """Unit-RMS noise band-limited to |f| < bw Hz (a slowly varying random signal)."""
    return shaped_noise(rng, lambda f: (f < bw).astype(np.float64) + 1e-4 * (f < 4 * bw))


def _parse(attrs: str) -> tuple[float, float]:
    parts = attrs.split("_")
    d = dict(zip(parts[::2], parts[1::2], strict=True))
    return float(d["rate"]) / 100.0, float(d["load"])


def _machine(
    rng: np.random.Generator, sec: Section, rate: float, load: float, kind: str | None, sev: float
) -> F64:
    """The machine's sound; a fault rewrites it (it adds no part of its own)."""
    p = sec.params
    t = np.arange(N) / FS
    krng = np.random.default_rng(rng.integers(2**63))
    rate *= 1.0 + rng.normal(0, 0.004)
    fs, amps = _lines(sec.machine, p, rate)
    amps = [a * 10 ** (rng.normal(0, 2.0) / 20) * (0.7 + 0.3 * load) for a in amps]
    drift = slow_wander(rng, 0.002)
    fm = np.zeros(N)
    if kind == "wobble":
        fm = (0.001 + 0.007 * sev) * np.sin(2 * np.pi * krng.uniform(2.0, 8.0) * t)
    locked = sec.machine == "mixer"
    phases = [0.0 if locked else float(rng.uniform(0, 2 * np.pi)) for _ in fs]
    strongest = int(np.argmax(amps))
    x = np.zeros(N)
    for i, (f, a) in enumerate(zip(fs, amps, strict=True)):
        mains = sec.machine == "motor" and i < 2
        ph = 2 * np.pi * np.cumsum(f * (1.0 + (0.0 if mains else 1.0) * (drift + fm))) / FS
        ph = ph + phases[i]
        if kind == "dephase":
            ph = ph + (0.5 + 2.5 * sev) * _lowpass_noise(krng, krng.uniform(0.5, 3.0))
        if kind == "line_to_noise" and i == strongest:
            bw = 2.0 + 8.0 * sev
            z = (_lowpass_noise(krng, bw / 2) + 1j * _lowpass_noise(krng, bw / 2)) / np.sqrt(2)
            mix = min(1.0, 0.3 + sev)  # part of the line's power turns into noise
            line = np.sqrt(1 - mix) * np.sin(ph) + np.sqrt(mix) * np.sqrt(2) * np.real(
                z * np.exp(1j * ph)
            )
            x += a * line
        elif kind == "beating" and i == strongest:
            d = 0.3 + 2.7 * sev
            x += (
                a
                / np.sqrt(2)
                * (np.sin(ph + np.pi * d * t) + np.sin(ph - np.pi * d * t + krng.uniform(0, 6.3)))
            )
        else:
            x += a * np.sin(ph)
    noise = shaped_noise(
        rng,
        lambda f: (
            pink(f) * (0.3 + resonance(f, p["res1"], 2.0) + 0.5 * resonance(f, p["res2"], 3.0))
        ),
    )
    x = x + rms(x) * 10 ** ((p["noise_db"] + rng.normal(0, 2.0) + 2 * load) / 20) * noise
    am_rate = p["am_rate"] * rate
    if kind == "am_rate":
        am_rate *= float(np.exp(krng.choice([-1, 1]) * (0.2 + 0.5 * sev)))
    depth = p["am_depth"] * (0.3 if sec.machine in ("motor", "mixer") else 1.0)
    return x * (1.0 + depth * np.sin(2 * np.pi * am_rate * t + rng.uniform(0, 6.3)))


def _tilt(x: F64, db_per_oct: float) -> F64:
    f = np.fft.rfftfreq(N, 1.0 / FS)
    eq = 10 ** (db_per_oct * np.log2(np.maximum(f, 50.0) / 1000.0) / 20)
    out: F64 = np.fft.irfft(np.fft.rfft(x) * eq, N)
    return out


def _resample(x: F64, factor: float) -> F64:
    """Every frequency times `factor` (< 1): the first N * factor samples stretched to N."""
    src = np.arange(N) * factor
    out: F64 = np.interp(src, np.arange(N), x)
    return out


def render(job: ClipJob, sec: Section) -> tuple[NDArray[np.float32], ClipInfo]:
    """The waveform of one clip and its record. Deterministic for the job."""
    d = draw_clip(job, sec, ANOMALY_KINDS)
    rng, attrs, kind, sev = d.rng, d.attrs, d.kind, d.severity
    p = sec.params
    rate, load = _parse(attrs)
    target = job.domain == "target"
    x = _machine(rng, sec, rate, load, kind, sev)
    x = x / rms(x)
    snr = p["snr_db"] + rng.uniform(-4, 4)
    x = x + 10 ** (-snr / 20) * background(rng, "pink", 50.0) + background_events(rng)
    if sec.shift == "tilt" and target:
        x = _tilt(x, p["tilt"])
    if sec.shift == "resample" and target:
        x = _resample(x, p["resample"])
    return finish_clip(rng, x, job, attrs, kind, sev, snr)
