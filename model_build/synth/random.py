"""Synthetic family "random": machines drawn from broad random priors, not designed by hand.

Why a fourth family: the first three families (harmonic, broadband, cyclic) are physical models
that one person wrote with particular machines and faults in mind, and the defaults were chosen
on them. A default tuned to three hand-made worlds can fit their author's taste rather than
machines in general (issue 19: on held-out data the fusion that the three families favoured
made things worse). This family does not model a machine: every section is ONE draw from a
broad prior over the ingredients machine sounds are made of, and every fault is a draw from a
broad prior over what can change, so no single feature can be tuned to it.

A section's machine (`make_section`; all drawn once from the seed):

* 0-3 harmonic series, fundamental log-uniform in 15-400 Hz, 3-20 harmonics each with a
  random spectral slope and a random per-harmonic level pattern;
* 1-5 resonances (centre log-uniform in 100-7000 Hz, Q log-uniform in 0.7-20) shaping a noise
  floor whose colour is a random slope in -6..+2 dB/octave, at a random tone-to-noise ratio;
* a random amplitude modulation (0.5-40 Hz, depth 0-0.6) and a small random frequency
  wander;
* with probability 0.4 an event train (period 0.2-2 s) of damped clicks at a random resonance.

Attributes `spd_<x>_ld_<y>`: the speed factor scales every frequency and the event rate, the
load tilts the harmonic slope and raises the noise.

Anomalies (kind uniform, severity in [0.05, 1] skewed towards subtle; each has its own random
parameters): ``tone`` (a new stationary tone anywhere), ``harmonics`` (a random subset of
harmonics changes level by up to 12 dB), ``resonance`` (one resonance moves by up to 30 %),
``modulation`` (the modulation's rate and depth change), ``bursts`` (band-limited noise
bursts), ``impacts`` (periodic or random impacts), ``instability`` (a frequency wobble of the
series), ``timing`` (events jittered or dropped; machines without events get the wobble).

Domain shifts (section index modulo 3): ``speed`` (the target runs at speeds absent from the
source: the whole tonal spectrum moves), ``channel`` (another microphone: a random tilt and
three random peaking filters of up to +-8 dB), ``background`` (another background type at a
higher level).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.fft
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
    slow_wander,
)

MACHINES = ("alpha", "beta", "gamma", "delta")
SHIFTS = ("speed", "channel", "background")
KINDS = (
    "tone",
    "harmonics",
    "resonance",
    "modulation",
    "bursts",
    "impacts",
    "instability",
    "timing",
)
ANOMALY_KINDS: dict[str, tuple[str, ...]] = dict.fromkeys(MACHINES, KINDS)
MAX_SERIES = 3
MAX_RES = 5


def _attr_values(shift: str) -> tuple[list[str], list[str]]:
    src = [f"spd_{s}_ld_{ld}" for s in ("0.90", "1.00", "1.10") for ld in (0, 1, 2)]
    if shift == "speed":
        tgt = [f"spd_{s}_ld_{ld}" for s in ("1.30", "1.40") for ld in (1, 2)]
    else:
        tgt = [f"spd_1.00_ld_{ld}" for ld in (0, 2)]
    return src, tgt


def make_section(seed: int, machine: str, index: int) -> Section:
    """One draw from the prior: every number the section's sound is made from."""
    rng = np.random.default_rng([seed, machine_code(machine), index, 999])
    shift = SHIFTS[index % len(SHIFTS)]
    p: dict[str, float] = {
        "n_series": float(rng.integers(0, MAX_SERIES + 1)),
        "n_res": float(rng.integers(1, MAX_RES + 1)),
    }
    if p["n_series"] == 0 and rng.uniform() < 0.5:  # most machines hum or whine somewhere
        p["n_series"] = 1.0
    for k in range(MAX_SERIES):
        p[f"f0_{k}"] = float(np.exp(rng.uniform(np.log(15), np.log(400))))
        p[f"nh_{k}"] = float(rng.integers(3, 21))
        p[f"slope_{k}"] = float(rng.uniform(-6.0, 0.0))  # dB per harmonic
        p[f"level_{k}"] = float(rng.uniform(-10.0, 0.0))
        p[f"pattern_{k}"] = float(rng.integers(0, 2**31))  # per-harmonic level pattern
    for k in range(MAX_RES):
        p[f"fc_{k}"] = float(np.exp(rng.uniform(np.log(100), np.log(7000))))
        p[f"q_{k}"] = float(np.exp(rng.uniform(np.log(0.7), np.log(20))))
        p[f"rg_{k}"] = float(rng.uniform(0.2, 1.0))
    p |= {
        "colour": float(rng.uniform(-6.0, 2.0)),  # dB / octave
        "tnr_db": float(rng.uniform(-20.0, 10.0)),
        "am_rate": float(np.exp(rng.uniform(np.log(0.5), np.log(40)))),
        "am_depth": float(rng.uniform(0.0, 0.6)),
        "fm_depth": float(rng.uniform(0.0, 0.004)),
        "events": float(rng.uniform() < 0.4),
        "ev_period": float(rng.uniform(0.2, 2.0)),
        "ev_fc": float(np.exp(rng.uniform(np.log(300), np.log(6000)))),
        "ev_decay": float(rng.uniform(0.002, 0.03)),
        "ev_level": float(rng.uniform(0.3, 1.5)),
        "snr_db": float(rng.uniform(6.0, 16.0)),
        # domain shift strengths
        "target_snr_drop_db": float(rng.uniform(5.0, 9.0)),
        "tilt_db_per_oct": float(rng.choice([-1, 1]) * rng.uniform(1.5, 4.0)),
        "peq_seed": float(rng.integers(0, 2**31)),
    }
    src, tgt = _attr_values(shift)
    return Section(machine, index, shift, p, tuple(src), tuple(tgt))


def _parse(attrs: str) -> tuple[float, float]:
    parts = attrs.split("_")
    d = dict(zip(parts[::2], parts[1::2], strict=True))
    return float(d["spd"]), float(d["ld"])


def _freqs() -> F64:
    return np.asarray(np.fft.rfftfreq(N, 1.0 / FS), dtype=np.float64)


def _noise_floor(
    rng: np.random.Generator, p: dict[str, float], res_scale: dict[int, float], load: float
) -> F64:
    """Coloured noise through the section's resonances (one resonance may be moved)."""
    f = _freqs()
    n_res = int(p["n_res"])

    def shape(f: F64) -> F64:
        col = 10 ** ((p["colour"] + 0.5 * load) * np.log2(np.maximum(f, 30.0) / 1000.0) / 20)
        res = 0.15 + sum(
            p[f"rg_{k}"] * resonance(f, p[f"fc_{k}"] * res_scale.get(k, 1.0), p[f"q_{k}"])
            for k in range(n_res)
        )
        return np.asarray(col * res)

    spec = rng.standard_normal(f.size) + 1j * rng.standard_normal(f.size)
    y = scipy.fft.irfft(spec * shape(f), N)
    return np.asarray(y / (np.std(y) + 1e-12))


def _series(
    rng: np.random.Generator,
    p: dict[str, float],
    k: int,
    speed: float,
    load: float,
    fm: F64,
    changed: dict[int, float],
) -> F64:
    """Harmonic series k: levels from its slope, the load and its fixed pattern."""
    t_ph = 2 * np.pi * np.cumsum(p[f"f0_{k}"] * speed * (1.0 + fm)) / FS
    nh = int(p[f"nh_{k}"])
    pattern = np.random.default_rng(int(p[f"pattern_{k}"])).normal(0, 4.0, nh)
    out = np.zeros(N)
    top = FS / 2 * 0.95
    for h in range(nh):
        if p[f"f0_{k}"] * speed * (h + 1) > top:
            break
        db = p[f"level_{k}"] + (p[f"slope_{k}"] + 1.0 * load) * h + pattern[h]
        db += changed.get(h, 0.0) + rng.normal(0, 1.0)
        out += 10 ** (db / 20) * np.sin((h + 1) * t_ph + rng.uniform(0, 2 * np.pi))
    return out


@dataclass
class _Change:
    """What a fault changes in the machine itself (not an added sound)."""

    fm: F64
    harmonics: dict[int, dict[int, float]] = field(default_factory=dict)  # series -> dB
    res_scale: dict[int, float] = field(default_factory=dict)  # resonance -> factor
    am_rate: float = 0.0
    am_depth: float = 0.0


def _change(
    krng: np.random.Generator,
    kind: str | None,
    sev: float,
    p: dict[str, float],
    speed: float,
    fm: F64,
) -> _Change:
    """The fault's changes to the machine, drawn from the fault's own generator."""
    t = np.arange(N) / FS
    n_series = int(p["n_series"])
    ch = _Change(fm, am_rate=p["am_rate"], am_depth=p["am_depth"])
    if kind == "instability" or (kind == "timing" and not p["events"]):
        rate = krng.uniform(1.0, 10.0)
        ch.fm = fm + 0.02 * sev * np.sin(2 * np.pi * rate * t + krng.uniform(0, 6.3))
    elif kind == "harmonics" and n_series:
        k = int(krng.integers(n_series))
        audible = max(1, min(int(p[f"nh_{k}"]), int(0.95 * FS / 2 / (p[f"f0_{k}"] * speed))))
        hs = krng.choice(audible, size=min(audible, int(krng.integers(1, 4))), replace=False)
        ch.harmonics[k] = {int(h): float(krng.choice([-1, 1]) * 12 * sev) for h in hs}
    elif kind == "resonance":
        ch.res_scale[int(krng.integers(int(p["n_res"])))] = 1.0 + krng.choice([-1, 1]) * 0.3 * sev
    elif kind == "modulation":
        ch.am_rate *= float(np.exp(krng.choice([-1, 1]) * krng.uniform(0.3, 1.0)))
        ch.am_depth = float(np.clip(ch.am_depth + krng.choice([-1, 1]) * 0.5 * sev, 0.0, 0.9))
    return ch


def _added(krng: np.random.Generator, kind: str | None, sev: float, scale: float) -> F64:
    """The sound a fault adds (a tone, noise bursts, impacts), or silence."""
    t = np.arange(N) / FS
    if kind == "tone":
        f = float(np.exp(krng.uniform(np.log(60), np.log(7000))))
        out: F64 = 0.5 * sev * scale * np.sqrt(2) * np.sin(2 * np.pi * f * t + krng.uniform(0, 6.3))
        return out
    if kind == "bursts":
        lo = float(np.exp(krng.uniform(np.log(100), np.log(5000))))
        fr = _freqs()
        band = ((fr > lo) & (fr < lo * krng.uniform(1.5, 3.0))).astype(np.float64)
        spec = krng.standard_normal(fr.size) + 1j * krng.standard_normal(fr.size)
        y = scipy.fft.irfft(spec * band, N)
        gate = np.zeros(N)
        for _ in range(int(krng.integers(2, 8))):
            n = int(krng.uniform(0.05, 0.5) * FS)
            i0 = int(krng.integers(0, N - n))
            gate[i0 : i0 + n] += np.hanning(n)
        return np.asarray(
            1.5 * sev * scale * y * gate / (rms(y * gate) + 1e-12) * np.sqrt(gate.mean())
        )
    if kind == "impacts":
        if krng.uniform() < 0.5:
            rate = krng.uniform(2.0, 25.0)
            times = np.arange(krng.uniform(0, 1 / rate), 10.0, 1 / rate)
        else:
            times = np.sort(krng.uniform(0, 10, int(krng.integers(4, 20))))
        sig = impacts(
            times,
            float(np.exp(krng.uniform(np.log(500), np.log(7000)))),
            krng.uniform(0.001, 0.01),
            1.0,
            krng,
        )
        return np.asarray(
            1.2 * sev * scale * sig / (rms(sig) + 1e-12) * min(1.0, np.sqrt(times.size / 40))
        )
    return np.zeros(N)


def _machine(
    rng: np.random.Generator, sec: Section, attrs: str, kind: str | None, sev: float
) -> tuple[F64, F64]:
    """(normal part, anomaly part); changes of the machine itself go into the 'normal' part
    of an anomalous clip, so the anomaly part holds only added sounds."""
    p = sec.params
    speed, load = _parse(attrs)
    speed *= 1.0 + rng.normal(0, 0.004)
    t = np.arange(N) / FS
    n_series = int(p["n_series"])
    krng = np.random.default_rng(rng.integers(2**63))  # the fault's own draws
    fm = slow_wander(rng, p["fm_depth"], 1.0)
    if kind == "harmonics" and not n_series:  # nothing tonal to change: a resonance moves
        kind = "resonance"
    ch = _change(krng, kind, sev, p, speed, fm)
    tonal = np.zeros(N)
    for k in range(n_series):
        tonal += _series(rng, p, k, speed, load, ch.fm, ch.harmonics.get(k, {}))
    noise = _noise_floor(rng, p, ch.res_scale, load)
    if n_series:
        noise *= rms(tonal) * 10 ** (-p["tnr_db"] / 20) * (1.0 + 0.3 * load)
    x = tonal + noise
    x *= 1.0 + ch.am_depth * np.sin(2 * np.pi * ch.am_rate * speed * t + rng.uniform(0, 6.3))
    if p["events"]:
        period = p["ev_period"] / speed
        ev_times = np.arange(rng.uniform(0, period), 10.0, period)
        ev_times = ev_times + rng.normal(0, 0.005 * period, ev_times.size)
        if kind == "timing":
            ev_times = ev_times + krng.normal(0, 0.15 * sev * period, ev_times.size)
            drop = krng.uniform(size=ev_times.size) < 0.3 * sev
            ev_times = ev_times[~drop]
        ev = impacts(ev_times, p["ev_fc"], p["ev_decay"], 1.0, rng)
        x = x + p["ev_level"] * rms(x) * ev / (rms(ev) + 1e-12)
    return x, _added(krng, kind, sev, rms(x))


def _channel(x: F64, p: dict[str, float]) -> F64:
    """Another microphone: a tilt and three peaking filters (fixed per section)."""
    f = _freqs()
    eq = 10 ** (p["tilt_db_per_oct"] * np.log2(np.maximum(f, 50.0) / 1000.0) / 20)
    prng = np.random.default_rng(int(p["peq_seed"]))
    for _ in range(3):
        fc = float(np.exp(prng.uniform(np.log(200), np.log(6000))))
        eq *= 10 ** (prng.uniform(-8, 8) * resonance(f, fc, prng.uniform(1.0, 4.0)) / 20)
    return np.asarray(scipy.fft.irfft(scipy.fft.rfft(x) * eq, N))


def render(job: ClipJob, sec: Section) -> tuple[NDArray[np.float32], ClipInfo]:
    """The waveform of one clip and its record. Deterministic for the job."""
    d = draw_clip(job, sec, ANOMALY_KINDS)
    rng, attrs, kind, sev = d.rng, d.attrs, d.kind, d.severity
    p = sec.params
    normal, anom = _machine(rng, sec, attrs, kind, sev)
    x = (normal + anom) / rms(normal)
    target = job.domain == "target"
    snr = p["snr_db"] + rng.uniform(-4, 4)
    bg_kind = "pink"
    if sec.shift == "background" and target:
        bg_kind = ("rumble", "babble")[int(p["pattern_0"]) % 2]
        snr -= p["target_snr_drop_db"]
    x = x + 10 ** (-snr / 20) * background(rng, bg_kind, 50.0) + background_events(rng)
    if sec.shift == "channel" and target:
        x = _channel(x, p)
    return finish_clip(rng, x, job, attrs, kind, sev, snr)
