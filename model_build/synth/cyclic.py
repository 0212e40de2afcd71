"""Synthetic family "cyclic": machines that work in strokes and cycles.

Why a third family: sliders, presses, robots and small rail vehicles sound like a rhythm of
events (motor runs, impacts, clicks) rather than a steady spectrum. Their faults are mostly
temporal (an irregular cycle, a missed or extra event, a slowdown) or live only in some
phases of the cycle (a squeal while moving, grinding under load), so clip-level spectral
statistics see little of them, and the domain shifts are of another kind too (cycle rate,
room acoustics, a busy background full of other machines' transients).

Machines:

* slider: forward and backward strokes with a motor whine whose pitch follows a trapezoidal
  velocity profile, lead-screw noise while moving, end-stop clicks; `vel_<mm/s>_len_<mm>`.
* press: per stroke a hydraulic rumble ramp, a heavy impact (low thud + high ring) and a
  release hiss; `spm_<strokes/min>_force_<kN>`.
* robot: a program of servo moves (whine at a per-move pitch with harmonics), pauses and
  gripper clicks; `prog_<NN>_spd_<pct>`.
* railcar: wheel sets clacking over rail joints, rolling noise, a motor whine; `spd_<n>_cars_<n>`.

Anomalies (severity in [0.05, 1], skewed towards subtle):

* ``timing_jitter``: cycle/event times scattered by up to ~12 % of the period;
* ``missing_cycle``: one or more cycles or events left out (a stall);
* ``extra_impact``: knocks that do not belong to the cycle (a flat wheel is periodic);
* ``slowdown``: the rate drops by up to 25 % over part of the clip;
* ``squeal``: a narrowband squeal during motion phases only;
* ``grind``: high-frequency noise during motion phases only;
* ``wobble``: the motor whine amplitude-modulated at 6-15 Hz (a worn gear).

Domain shifts (section index modulo 3):

* 0 ``rate``: the target domain runs at cycle rates absent from source;
* 1 ``room``: another room: strong early reflections and a longer reverberation, a low-pass;
* 2 ``transients``: the target background is busy with other machines' knocks and beeps.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
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
    impacts,
    machine_code,
    resonance,
    rms,
    shaped_noise,
)

MACHINES = ("slider", "press", "robot", "railcar")
SHIFTS = ("rate", "room", "transients")
ANOMALY_KINDS: dict[str, tuple[str, ...]] = {
    "slider": ("timing_jitter", "squeal", "grind", "extra_impact", "slowdown"),
    "press": ("timing_jitter", "missing_cycle", "extra_impact", "grind", "slowdown"),
    "robot": ("wobble", "squeal", "missing_cycle", "timing_jitter", "grind"),
    "railcar": ("extra_impact", "squeal", "slowdown", "wobble", "missing_cycle"),
}


def _attr_values(machine: str, shift: str) -> tuple[list[str], list[str]]:
    op = shift == "rate"
    if machine == "slider":
        src = [f"vel_{v}_len_{n}" for v in (200, 250, 300) for n in (300, 400)]
        tgt = [f"vel_{v}_len_{n}" for v in ((380, 420) if op else (250,)) for n in (300, 500)]
    elif machine == "press":
        src = [f"spm_{s}_force_{f}" for s in (30, 36, 42) for f in (80, 120)]
        tgt = [f"spm_{s}_force_{f}" for s in ((54, 60) if op else (36,)) for f in (120, 160)]
    elif machine == "robot":
        src = [f"prog_{p:02d}_spd_{s}" for p in (0, 1, 2) for s in (80, 100)]
        tgt = [
            f"prog_{p:02d}_spd_{s}"
            for p in ((1,) if not op else (1, 2))
            for s in ((130, 150) if op else (80, 120))
        ]
    else:
        src = [f"spd_{s}_cars_{c}" for s in (4, 5, 6) for c in (2, 3)]
        tgt = [f"spd_{s}_cars_{c}" for s in ((8, 9) if op else (5,)) for c in (3, 4)]
    return src, tgt


def make_section(seed: int, machine: str, index: int) -> Section:
    """Fixed properties of one section, drawn once from (seed, machine, index)."""
    rng = np.random.default_rng([seed, machine_code(machine), index, 999])
    shift = SHIFTS[index % len(SHIFTS)]
    p: dict[str, float] = {
        "whine": float(rng.uniform(500, 1400)),
        "screw": float(rng.uniform(2000, 5000)),
        "click": float(rng.uniform(1500, 4000)),
        "thud": float(rng.uniform(60, 150)),
        "ring": float(rng.uniform(2000, 4500)),
        "rail_len": float(rng.uniform(0.8, 1.4)),
        "squeal": float(rng.uniform(1500, 5000)),
        "snr_db": float(rng.uniform(6.0, 14.0)),
        # domain shift strengths
        "rt60": float(rng.uniform(0.7, 1.3)),
        "reflection_ms": float(rng.uniform(3.0, 12.0)),
        "lowpass_hz": float(rng.uniform(3000, 6000)),
        "transient_rate": float(rng.uniform(1.0, 3.0)),
    }
    src, tgt = _attr_values(machine, shift)
    return Section(machine, index, shift, p, tuple(src), tuple(tgt))


def _parse(attrs: str) -> dict[str, float]:
    parts = attrs.split("_")
    return {k: float(v) for k, v in zip(parts[::2], parts[1::2], strict=True)}


# ---------------------------------------------------------------- the cycle schedule


def cycle_starts(rng: np.random.Generator, period: float, kind: str | None, sev: float) -> F64:
    """Start times (s) of the cycles in the clip, with the temporal anomalies applied.

    Normal clips keep a 1 % timing scatter; ``slowdown`` stretches the period by up to 25 %
    from a random point on; ``timing_jitter`` scatters starts by up to 12 % of the period;
    ``missing_cycle`` drops 1-3 of them.
    """
    t = -rng.uniform(0, period)
    slow_from = rng.uniform(1.0, 6.0)
    starts: list[float] = []
    while t < 10.0:
        starts.append(t)
        stretch = 1.0
        if kind == "slowdown" and t > slow_from:
            stretch = 1.0 + 0.25 * sev
        t += period * stretch * (1.0 + rng.normal(0, 0.01))
    s = np.asarray(starts)
    if kind == "timing_jitter":
        s = s + rng.normal(0, 0.12 * sev * period, s.size)
    if kind == "missing_cycle" and s.size > 2:
        inside = np.flatnonzero((s > 0) & (s < 9.0))
        k = min(inside.size, 1 + int(2.5 * sev))
        if k:
            s = np.delete(s, rng.choice(inside, k, replace=False))
    return s


def _gate(starts: Iterable[float], offset: float, dur: float) -> F64:
    """1 inside [start + offset, start + offset + dur) of every cycle, smoothed edges."""
    g = np.zeros(N)
    for s in starts:
        i0, i1 = int((s + offset) * FS), int((s + offset + dur) * FS)
        i0, i1 = max(0, i0), min(N, i1)
        if i1 > i0:
            g[i0:i1] = 1.0
    return np.convolve(g, np.ones(320) / 320, mode="same")


def _whine(gate: F64, f0: float, rng: np.random.Generator, wobble: float = 0.0) -> F64:
    """A motor whine whose pitch follows the gate (speed) with two harmonics."""
    t = np.arange(N) / FS
    f_inst = f0 * (0.3 + 0.7 * gate)
    ph = 2 * np.pi * np.cumsum(f_inst) / FS + rng.uniform(0, 6.3)
    x = np.sin(ph) + 0.4 * np.sin(2 * ph) + 0.2 * np.sin(3 * ph)
    if wobble:
        x *= 1.0 + wobble * np.sin(2 * np.pi * rng.uniform(6, 15) * t)
    return np.asarray(x * gate)


# ---------------------------------------------------------------- machines


def _slider(
    rng: np.random.Generator, p: dict[str, float], a: dict[str, float], kind: str | None, sev: float
) -> tuple[F64, F64, F64]:
    stroke = a["len"] / a["vel"]
    period = 2 * stroke + 0.6
    starts = cycle_starts(rng, period, kind, sev)
    fwd, back = _gate(starts, 0.0, stroke), _gate(starts, stroke + 0.3, stroke)
    moving = np.clip(fwd + back, 0, 1)
    f0 = p["whine"] * a["vel"] / 250
    whine = _whine(moving, f0, rng, 0.0)
    screw = shaped_noise(rng, lambda f: resonance(f, p["screw"], 2.0)) * moving * 0.3
    ends = np.concatenate([starts + stroke, starts + 2 * stroke + 0.3])
    clicks = impacts(ends, p["click"], 0.004, rng.uniform(0.6, 1.0, ends.size), rng)
    normal = whine + screw + 0.8 * clicks
    return normal, moving, starts


def _press(
    rng: np.random.Generator, p: dict[str, float], a: dict[str, float], kind: str | None, sev: float
) -> tuple[F64, F64, F64]:
    period = 60.0 / a["spm"]
    starts = cycle_starts(rng, period, kind, sev)
    ramp = _gate(starts, 0.0, 0.6 * period) * np.clip(
        (np.arange(N) / FS - 0.0) % period / (0.6 * period), 0, 1
    )
    rumble = shaped_noise(rng, lambda f: 1.0 / np.maximum(f, 40.0) * resonance(f, 120.0, 1.0))
    force = a["force"] / 100.0
    hits = starts + 0.6 * period
    amp = force * rng.uniform(0.8, 1.0, hits.size)
    thud = impacts(hits, p["thud"], 0.05, amp, rng)
    ring = impacts(hits, p["ring"], 0.02, 0.3 * amp, rng)
    hiss = (
        shaped_noise(rng, lambda f: resonance(f, 5000.0, 1.0))
        * _gate(starts, 0.65 * period, 0.2 * period)
        * 0.15
    )
    normal = 0.3 * rumble * ramp + thud / max(rms(thud), 1e-12) * 0.5 + ring * 2 + hiss
    return normal, _gate(starts, 0.0, 0.6 * period), starts


def _robot(
    rng: np.random.Generator, p: dict[str, float], a: dict[str, float], kind: str | None, sev: float
) -> tuple[F64, F64, F64]:
    prog = np.random.default_rng([int(a["prog"]), 23])
    n_moves = int(prog.integers(3, 6))
    durs = prog.uniform(0.3, 0.9, n_moves) * 100 / a["spd"]
    pauses = prog.uniform(0.1, 0.4, n_moves)
    pitches = prog.uniform(0.6, 1.6, n_moves)
    period = float(durs.sum() + pauses.sum())
    starts = cycle_starts(rng, period, kind, sev)
    wobble = 0.5 * sev if kind == "wobble" else 0.0
    whine = np.zeros(N)
    moving = np.zeros(N)
    offset = 0.0
    for d, q, pitch in zip(durs, pauses, pitches, strict=True):
        g = _gate(starts, offset, d)
        whine += _whine(g, p["whine"] * pitch * a["spd"] / 100, rng, wobble)
        moving += g
        offset += d + q
    clicks = impacts(starts + offset - 0.05, p["click"], 0.003, 0.8, rng)
    normal = whine + 0.6 * clicks
    return normal, np.clip(moving, 0, 1), starts


def _railcar(
    rng: np.random.Generator, p: dict[str, float], a: dict[str, float], kind: str | None, sev: float
) -> tuple[F64, F64, F64]:
    period = p["rail_len"] / (a["spd"] * 0.25)
    starts = cycle_starts(rng, period, kind, sev)
    axle = 0.12 / (a["spd"] * 0.25)
    times = np.concatenate(
        [starts + k * axle * 3 + j * axle for k in range(int(a["cars"])) for j in range(2)]
    )
    clacks = impacts(times, p["click"] * 0.7, 0.006, rng.uniform(0.6, 1.0, times.size), rng)
    rolling = shaped_noise(rng, lambda f: resonance(f, 400.0, 0.8)) * 0.2
    moving = np.ones(N)
    wobble = 0.5 * sev if kind == "wobble" else 0.0
    motor = 0.3 * _whine(moving, p["whine"] * a["spd"] / 5, rng, wobble)
    normal = clacks + rolling + motor
    return normal, moving, starts


MACHINE_MODELS = {"slider": _slider, "press": _press, "robot": _robot, "railcar": _railcar}


def _machine(
    rng: np.random.Generator, sec: Section, attrs: dict[str, float], kind: str | None, sev: float
) -> tuple[F64, F64]:
    """(normal part, anomaly part) of one clip. Temporal anomalies live in the normal
    part's schedule (a retimed machine is not a machine plus something)."""
    p = sec.params
    normal, moving, _ = MACHINE_MODELS[sec.machine](rng, p, attrs, kind, sev)
    scale = rms(normal)
    anom = np.zeros(N)
    if kind == "extra_impact":
        if sec.machine == "railcar":  # a flat wheel: once per wheel turn
            times = np.arange(rng.uniform(0, 0.5), 10.0, rng.uniform(0.3, 0.6))
        else:
            times = rng.uniform(0, 10, 1 + int(4 * sev))
        sig = impacts(times, rng.uniform(800, 3000), 0.01, 1.0, rng)
        anom = 1.5 * sev * scale * sig / rms(sig) * min(1.0, np.sqrt(times.size / 10))
    elif kind == "squeal":
        t = np.arange(N) / FS
        f = p["squeal"] * (1 + 0.005 * np.sin(2 * np.pi * 5 * t))
        sig = np.sin(2 * np.pi * np.cumsum(f) / FS) * moving
        anom = 0.6 * sev * scale * sig / max(rms(sig), 1e-12)
    elif kind == "grind":
        sig = shaped_noise(rng, lambda f: ((f > 3000) & (f < 7800)).astype(np.float64) + 1e-3)
        sig = sig * moving
        anom = 0.8 * sev * scale * sig / max(rms(sig), 1e-12)
    return normal, anom


# ---------------------------------------------------------------- channel


def _room(rng: np.random.Generator, x: F64, p: dict[str, float]) -> F64:
    """Early reflections (a comb), a long reverberation tail and a low-pass."""
    rt = p["rt60"] * rng.uniform(0.9, 1.1)
    tt = np.arange(int(rt * FS)) / FS
    ir = 0.5 * rng.standard_normal(tt.size) * np.exp(-6.9 * tt / rt)
    ir[0] = 6.0
    d = int(p["reflection_ms"] * FS / 1000)
    ir[d] += 4.0
    ir[2 * d] += 2.0
    ir /= np.sqrt(np.sum(ir**2))
    b, a = scipy.signal.butter(2, p["lowpass_hz"] / (FS / 2))
    y = scipy.signal.lfilter(b, a, x)
    return np.asarray(scipy.signal.fftconvolve(y, ir)[:N])


def _busy_background(rng: np.random.Generator, p: dict[str, float]) -> F64:
    """Other machines' knocks and forklift-like beeps, about `transient_rate` per second."""
    n = int(rng.poisson(p["transient_rate"] * 10))
    out = np.zeros(N)
    t = np.arange(N) / FS
    for _ in range(n):
        if rng.uniform() < 0.7:
            out += rng.uniform(0.3, 1.0) * impacts(
                np.array([rng.uniform(0, 10)]), rng.uniform(150, 2500), 0.03, 1.0, rng
            )
        else:
            i0 = int(rng.integers(0, N - 4000))
            beep = np.zeros(N)
            beep[i0 : i0 + 4000] = np.sin(2 * np.pi * rng.uniform(2000, 3000) * t[:4000])
            out += 0.3 * beep
    return out


def render(job: ClipJob, sec: Section) -> tuple[NDArray[np.float32], ClipInfo]:
    """The waveform of one clip and its record. Deterministic for the job."""
    d = draw_clip(job, sec, ANOMALY_KINDS)
    rng, attrs, kind, sev = d.rng, d.attrs, d.kind, d.severity
    p = sec.params
    normal, anom = _machine(rng, sec, _parse(attrs), kind, sev)
    scale = rms(normal)
    x = (normal + anom) / scale
    target = job.domain == "target"
    snr = p["snr_db"] + rng.uniform(-4, 4)
    x = x + 10 ** (-snr / 20) * background(rng, "pink", 50.0) + background_events(rng)
    if sec.shift == "transients" and target:
        x = x + _busy_background(rng, p)
    if sec.shift == "room" and target:
        x = _room(rng, x, p)
    return finish_clip(rng, x, job, attrs, kind, sev, snr)
