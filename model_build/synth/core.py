"""A synthetic machine-sound data set in the DCASE Task 2 layout, hard enough to rank systems.

No real data set can be downloaded where the product is built and tested, so `model-build synth`
writes its own: `OUT/<machine>/{train,test}/section_XX_<domain>_<split>_<label>_NNNN_<attrs>.wav`
(16 kHz, 10 s, 16-bit PCM) plus `OUT/synth.json` (parameters, seed, per-section domain shift,
per-clip anomaly kind and severity). Every clip has its own random generator seeded from
(seed, machine, section, domain, split, label, index), so files are bit-identical for the same
seed and flags, whatever the order or the number of worker processes.

Machine models (physically inspired, all with random phases, slow speed drift and per-clip
load/level variation so normal clips of one section differ a lot):

* fan: shaft rotation (rpm attribute) and blade-pass harmonics (blades x shaft rate) with
  sidebands at the shaft rate, broadband flow noise shaped by duct resonances, level rising
  with speed. Attributes `spd_<rpm>_load_<n>`.
* gearbox: gear-mesh harmonics (teeth x shaft rate) with shaft-rate sidebands, a weak shaft
  1x/2x, a structural resonance excited by noise; the load (`wt`) raises mesh amplitudes.
  Attributes `volt_<v>_wt_<g>` (voltage sets the speed).
* bearing: a broadband structural resonance (its frequency depends on the microphone location
  attribute) excited by rolling noise, weak shaft harmonics. Attributes `vel_<v>_loc_<L>`.
* valve: an event pattern (`pat_<NN>`): solenoid clicks (short damped resonances) at open and
  close, flow hiss and mains hum while open, repeated with timing jitter. Attributes
  `pat_<NN>_cyc_<ms>`.

Anomaly kinds (severity drawn in [0.05, 1] and skewed towards subtle, amplitude ~ severity):

* ``extra_harmonic``: a weak tone at a non-integer multiple of the shaft rate (fan, gearbox,
  bearing);
* ``shifted_harmonic``: one harmonic moved off the harmonic series by a fraction of an STFT
  bin (only a fine frequency resolution sees it) (fan, gearbox);
* ``jitter``: speed instability, a few-Hz frequency modulation of the whole harmonic series
  (fan, gearbox);
* ``tooth_sideband``: a damaged tooth, a once-per-revolution amplitude modulation of the mesh
  harmonics (gearbox);
* ``outer_race`` / ``inner_race``: weak periodic impacts at the ball-pass frequency exciting a
  high resonance, inner race modulated by the shaft (bearing);
* ``rattle``: sparse loose-part impacts (all machines);
* ``missing_event`` / ``extra_event`` / ``leak``: valve events left out or added, a weak
  whistle while the valve is closed (valve).

Domain shifts, one per section (section index modulo 3):

* 0 ``operating_point``: the target domain runs at speeds (or patterns) absent from source;
* 1 ``background``: the target domain has another background noise type at a higher level;
* 2 ``microphone``: the target domain is recorded through another microphone and room
  (spectral tilt, a peaking EQ and reverberation).

Why it is hard. Nuisances dominate the clip-level log-spectrum statistics a classical
baseline uses: level (+-6 dB), signal-to-background ratio, background type and transient
background events (knocks, bursts) vary from clip to clip inside a section, load changes
harmonic amplitudes by several dB, and speed drifts. Anomalies are small in energy but
structured (narrowband, fine-frequency, periodic), which a learned embedding with a 0.1 Hz
full-clip spectrum can pick out and a time-mean/std of a 1024-point log-spectrogram mostly
cannot. Target-domain training data are only 10 clips per section.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.fft
import scipy.signal
from numpy.typing import NDArray

from edge_agent.audio.dcase import clip_name, section_id
from edge_agent.audio.files import write_wav
from edge_agent.errors import FieldError
from edge_agent.scoring.frontend import DEFAULT_SPEC

FS = DEFAULT_SPEC.sample_rate  # the DCASE format, which the frontend's default spec is
N = DEFAULT_SPEC.clip_samples
F64 = NDArray[np.float64]
MACHINE_TYPES = ("fan", "gearbox", "bearing", "valve")
SHIFTS = ("operating_point", "background", "microphone")
ANOMALY_KINDS: dict[str, tuple[str, ...]] = {
    "fan": ("extra_harmonic", "shifted_harmonic", "jitter", "rattle"),
    "gearbox": ("tooth_sideband", "shifted_harmonic", "jitter", "extra_harmonic", "rattle"),
    "bearing": ("outer_race", "inner_race", "extra_harmonic", "rattle"),
    "valve": ("missing_event", "extra_event", "leak", "rattle"),
}
# Anomaly amplitude relative to the machine's own RMS at severity 1 (the difficulty knob).
ANOMALY_GAIN = 1.3
# rng keys: every machine name of every family has its own code (harmonic keeps 0..3, so its
# files stay bit-identical to the ones written before the other families existed)
_MACHINE_CODE = {m: i for i, m in enumerate(MACHINE_TYPES)}
_MACHINE_CODE |= {m: 10 + i for i, m in enumerate(("pump", "compressor", "blower", "conveyor"))}
_MACHINE_CODE |= {m: 20 + i for i, m in enumerate(("slider", "press", "robot", "railcar"))}
_MACHINE_CODE |= {m: 30 + i for i, m in enumerate(("alpha", "beta", "gamma", "delta"))}
_MACHINE_CODE |= {m: 40 + i for i, m in enumerate(("spindle", "turbine", "motor", "mixer"))}
FAMILIES = ("harmonic", "broadband", "cyclic", "random", "texture")
_DOMAINS = ("source", "target")
_SPLITS = ("train", "test")
_LABELS = ("normal", "anomaly")


class SynthError(FieldError):
    """Bad generator arguments (unknown machine type, negative sizes...), naming the field."""


@dataclass(frozen=True)
class SynthConfig:
    """Everything that determines the generated files (together with the code version)."""

    seed: int = 0
    machines: tuple[str, ...] | None = None  # None: every machine type of the family
    sections: int = 3
    source_train: int = 100
    target_train: int = 10
    test_per_label: int = 50  # per domain and label: 4x this many test clips per section
    family: str = "harmonic"  # which generator (see FAMILIES and `family`)

    @property
    def machine_types(self) -> tuple[str, ...]:
        return family(self.family).machines if self.machines is None else self.machines

    def check(self) -> None:
        if self.family not in FAMILIES:
            raise SynthError(
                "family", f"expected one of {', '.join(FAMILIES)}, got {self.family!r}"
            )
        known = family(self.family).machines
        unknown = [m for m in self.machine_types if m not in known]
        if unknown or not self.machine_types:
            raise SynthError(
                "machines",
                f"expected some of {', '.join(known)} "
                f"(family {self.family}), got {list(self.machine_types)}",
            )
        if len(set(self.machine_types)) != len(self.machine_types):
            raise SynthError("machines", f"duplicate machine type in {list(self.machine_types)}")
        if not 1 <= self.sections <= 99:
            raise SynthError("sections", f"expected 1..99, got {self.sections}")
        for name in ("source_train", "target_train", "test_per_label"):
            if getattr(self, name) < 0:
                raise SynthError(name, "expected >= 0")
        if self.source_train + self.target_train == 0:
            raise SynthError("source_train", "need at least one training clip (with target_train)")


@dataclass(frozen=True)
class ClipJob:
    """One file to write: where it goes and what is in it."""

    machine: str
    section: int
    domain: str
    split: str
    label: str
    index: int
    seed: int

    @property
    def rng_key(self) -> list[int]:
        return [
            self.seed,
            _MACHINE_CODE[self.machine],
            self.section,
            _DOMAINS.index(self.domain),
            _SPLITS.index(self.split),
            _LABELS.index(self.label),
            self.index,
        ]


@dataclass
class ClipInfo:
    """What synth.json records per clip (the file name carries the rest)."""

    file: str
    attrs: str
    kind: str | None = None
    severity: float | None = None
    nuisance: dict[str, float] = field(default_factory=dict)


# ---------------------------------------------------------------- signal helpers (pure)


def _freqs() -> F64:
    return np.fft.rfftfreq(N, 1.0 / FS).astype(np.float64)


def shaped_noise(rng: np.random.Generator, shape: Callable[[F64], F64]) -> F64:
    """White noise coloured by an amplitude response |H(f)| in the frequency domain, unit RMS."""
    spec = rng.standard_normal(N // 2 + 1) + 1j * rng.standard_normal(N // 2 + 1)
    y = scipy.fft.irfft(spec * shape(_freqs()), N)
    return np.asarray(y / (np.std(y) + 1e-12), dtype=np.float64)


def resonance(f: F64, fc: float, q: float) -> F64:
    """Magnitude of a second-order resonance at fc with quality q."""
    return np.asarray(1.0 / np.sqrt(1.0 + (q * (f / fc - fc / np.maximum(f, 1.0))) ** 2))


def pink(f: F64) -> F64:
    return np.asarray(1.0 / np.sqrt(np.maximum(f, 20.0)))


def slow_wander(rng: np.random.Generator, depth: float, fmax: float = 0.5) -> F64:
    """A smooth random curve (sum of slow sinusoids) with RMS ~ depth."""
    t = np.arange(N) / FS
    out = np.zeros(N)
    for _ in range(4):
        out += np.sin(2 * np.pi * rng.uniform(0.03, fmax) * t + rng.uniform(0, 2 * np.pi))
    return depth * out / 2.0


def harmonic_series(
    phase: F64, amps: Sequence[float], mults: Sequence[float], rng: np.random.Generator
) -> F64:
    """sum_k a_k sin(m_k * phase + random phase_k): tones that follow the instantaneous speed."""
    out = np.zeros(N)
    for a, m in zip(amps, mults, strict=True):
        if a:
            out += a * np.sin(m * phase + rng.uniform(0, 2 * np.pi))
    return out


def phase_of(f_inst: F64) -> F64:
    return np.asarray(2 * np.pi * np.cumsum(f_inst) / FS)


def impacts(
    times_s: F64,
    fc: float,
    decay_s: float,
    amp: F64 | float,
    rng: np.random.Generator,
    phase: float | None = None,
) -> F64:
    """Damped resonances (fc Hz, time constant decay_s) starting at the given times."""
    n = N
    out = np.zeros(n)
    idx = np.round(np.asarray(times_s) * FS).astype(int)
    amps = np.broadcast_to(np.asarray(amp, dtype=float), idx.shape)
    keep = (idx >= 0) & (idx < n)
    np.add.at(out, idx[keep], amps[keep])
    length = int(6 * decay_s * FS) + 1
    tt = np.arange(length) / FS
    if phase is None:
        phase = float(rng.uniform(0, 2 * np.pi))
    kernel = np.exp(-tt / decay_s) * np.sin(2 * np.pi * fc * tt + phase)
    return np.asarray(scipy.signal.fftconvolve(out, kernel)[:n])


def severity_draw(rng: np.random.Generator) -> float:
    """Severity in [0.05, 1], skewed so that many anomalies are subtle."""
    return float(0.05 + 0.95 * rng.uniform() ** 1.7)


def rms(x: F64) -> float:
    return float(np.sqrt(np.mean(x * x)) + 1e-12)


def machine_code(machine: str) -> int:
    """The machine's number in every clip's random key (unique across families)."""
    return _MACHINE_CODE[machine]


# ---------------------------------------------------------------- sections


@dataclass(frozen=True)
class Section:
    """Fixed properties of one machine/section, drawn once from the seed."""

    machine: str
    index: int
    shift: str
    params: dict[str, float]
    source_attrs: tuple[str, ...]
    target_attrs: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _attr_values(machine: str, shift: str) -> tuple[list[str], list[str]]:
    """Attribute strings per domain; an operating-point shift gives target values of its own."""
    op = shift == "operating_point"
    if machine == "fan":
        src = [f"spd_{v}_load_{ld}" for v in (1200, 1260, 1320) for ld in (1, 2, 3)]
        tgt = [f"spd_{v}_load_{ld}" for v in ((1500, 1560) if op else (1260,)) for ld in (1, 3)]
    elif machine == "gearbox":
        src = [f"volt_{v}_wt_{w}" for v in ("1.0", "1.1", "1.2") for w in (0, 50, 100)]
        tgt = [f"volt_{v}_wt_{w}" for v in (("1.4", "1.5") if op else ("1.1",)) for w in (50, 150)]
    elif machine == "bearing":
        src = [f"vel_{v}_loc_{loc}" for v in (10, 12, 14) for loc in "AB"]
        tgt = [f"vel_{v}_loc_{loc}" for v in ((18, 20) if op else (12,)) for loc in "AB"]
    else:
        src = [f"pat_{p:02d}_cyc_{c}" for p in (0, 1, 2) for c in (1800, 2000)]
        tgt = [f"pat_{p:02d}_cyc_{c}" for p in ((3, 4) if op else (1,)) for c in (1600, 2000)]
    return src, tgt


def make_section(seed: int, machine: str, index: int) -> Section:
    rng = np.random.default_rng([seed, _MACHINE_CODE[machine], index, 999])
    shift = SHIFTS[index % len(SHIFTS)]
    p: dict[str, float] = {
        "blades": float(rng.integers(5, 10)),
        "teeth": float(rng.integers(17, 31)),
        "res1": float(rng.uniform(600, 1800)),
        "res2": float(rng.uniform(2500, 5000)),
        "bearing_res": float(rng.uniform(2500, 4500)),
        "bpfo": float(rng.uniform(3.0, 4.5)),
        "bpfi": float(rng.uniform(5.0, 6.5)),
        "click_freq": float(rng.uniform(1500, 4000)),
        "hum": float(rng.choice([50.0, 60.0])),
        "decay": float(rng.uniform(0.15, 0.35)),
        "snr_db": float(rng.uniform(4.0, 10.0)),
        # domain shift strengths
        "target_snr_drop_db": float(rng.uniform(4.0, 8.0)),
        "tilt_db_per_oct": float(rng.uniform(-3.0, 3.0)),
        "peq_freq": float(rng.uniform(400, 3000)),
        "peq_gain_db": float(rng.choice([-1, 1]) * rng.uniform(6, 10)),
        "rt60": float(rng.uniform(0.3, 0.8)),
    }
    src, tgt = _attr_values(machine, shift)
    return Section(machine, index, shift, p, tuple(src), tuple(tgt))


def _parse_attrs(attrs: str) -> dict[str, str]:
    parts = attrs.split("_")
    return dict(zip(parts[::2], parts[1::2], strict=True))


# ---------------------------------------------------------------- machine models


@dataclass
class Anomaly:
    kind: str | None
    severity: float

    @property
    def amp(self) -> float:
        return ANOMALY_GAIN * self.severity


def _rattle(rng: np.random.Generator, a: Anomaly) -> F64:
    n = int(rng.integers(3, 12))
    times = np.sort(rng.uniform(0, 10, n))
    sig = impacts(times, rng.uniform(2000, 6000), 0.004, rng.uniform(0.5, 1.0, n), rng)
    out: F64 = a.amp * 3.0 * sig / rms(sig) * np.sqrt(n / 12)
    return out


def _rotating(
    rng: np.random.Generator, sec: Section, attrs: dict[str, str], a: Anomaly, mesh: bool
) -> tuple[F64, F64]:
    """Fan (blade pass) or gearbox (gear mesh): returns (normal part, anomaly part)."""
    p = sec.params
    if mesh:
        shaft = 15.0 * float(attrs["volt"])
        load = 0.5 + float(attrs["wt"]) / 100.0
        order = p["teeth"]
    else:
        shaft = float(attrs["spd"]) / 60.0
        load = 0.5 + 0.25 * float(attrs["load"])
        order = p["blades"]
    shaft *= 1.0 + rng.normal(0, 0.004)  # operating point scatter between clips
    drift = slow_wander(rng, 0.002)
    anom = np.zeros(N)
    fm = np.zeros(N)
    if a.kind == "jitter":
        rate = rng.uniform(2.0, 8.0)
        t = np.arange(N) / FS
        fm = 0.025 * a.severity * np.sin(2 * np.pi * rate * t) + slow_wander(
            rng, 0.004 * a.severity, 4.0
        )
    f_inst = shaft * (1.0 + drift + fm)
    ph = phase_of(f_inst)
    n_h = 6
    amps = [load * 0.8**k * 10 ** (rng.normal(0, 3) / 20) for k in range(n_h)]
    mults = [order * (k + 1) for k in range(n_h)]
    tones = harmonic_series(ph, amps, mults, rng)
    # shaft-rate sidebands and weak shaft harmonics
    side = harmonic_series(
        ph,
        [0.15 * x for x in amps[:3]] * 2,
        [order * (k + 1) + s for s in (-1, 1) for k in range(3)],
        rng,
    )
    shaft_h = harmonic_series(ph, [0.1, 0.05], [1.0, 2.0], rng)

    def noise_shape(f: F64) -> F64:
        return pink(f) * (0.3 + resonance(f, p["res1"], 3.0) + 0.6 * resonance(f, p["res2"], 5.0))

    flow = shaped_noise(rng, noise_shape)
    tones_rms = rms(tones)
    flow *= tones_rms * (0.5 if mesh else 0.8) * 10 ** (rng.normal(0, 2) / 20) * shaft / 20.0
    normal = tones + side + tones_rms * shaft_h + flow
    scale = rms(normal)
    if a.kind == "extra_harmonic":
        m = order * rng.integers(1, 4) + rng.choice([-0.5, 0.5]) * rng.uniform(0.3, 0.7) * order
        anom = a.amp * scale * np.sqrt(2) * np.sin(m * ph + rng.uniform(0, 6.3))
    elif a.kind == "shifted_harmonic":
        k = int(rng.integers(0, 3))
        df = rng.choice([-1, 1]) * rng.uniform(1.0, 6.0)  # Hz, below one 15.6 Hz STFT bin
        t = np.arange(N) / FS
        # the harmonic is replaced by a copy that is off the series by df Hz
        orig = amps[k] * np.sin(mults[k] * ph + rng.uniform(0, 6.3))
        moved = amps[k] * np.sin(mults[k] * ph + 2 * np.pi * df * t + rng.uniform(0, 6.3))
        anom = min(1.0, 2 * a.severity) * (moved - orig) * 0.5
    elif a.kind == "tooth_sideband":
        env = np.maximum(0.0, np.cos(ph + rng.uniform(0, 6.3))) ** 8  # one tooth per turn
        anom = 2.0 * a.severity * ANOMALY_GAIN * 2 * (env - env.mean()) * tones
    elif a.kind == "rattle":
        anom = scale * _rattle(rng, a)
    return normal, anom


def _bearing(
    rng: np.random.Generator, sec: Section, attrs: dict[str, str], a: Anomaly
) -> tuple[F64, F64]:
    p = sec.params
    shaft = float(attrs["vel"]) * 2.0 * (1.0 + rng.normal(0, 0.004))
    res = p["bearing_res"] * (1.0 if attrs["loc"] == "A" else 0.8)
    ph = phase_of(shaft * (1.0 + slow_wander(rng, 0.002)))
    rolling = shaped_noise(
        rng, lambda f: pink(f) * (0.2 + resonance(f, res, 4.0) + 0.5 * resonance(f, p["res1"], 2.0))
    )
    rolling *= 10 ** (rng.normal(0, 2) / 20)
    tones = harmonic_series(ph, [0.3, 0.15, 0.08], [1.0, 2.0, 3.0], rng)
    normal = rolling + tones * 10 ** (rng.normal(0, 3) / 20)
    scale = rms(normal)
    anom = np.zeros(N)
    if a.kind in ("outer_race", "inner_race"):
        bpf = shaft * (p["bpfo"] if a.kind == "outer_race" else p["bpfi"])
        times = np.arange(rng.uniform(0, 1 / bpf), 10.0, 1 / bpf)
        times = times + rng.normal(0, 0.0005, times.size)  # slip
        amp: F64 = np.ones(times.size)
        if a.kind == "inner_race":
            amp = 0.5 + 0.5 * np.cos(2 * np.pi * shaft * times)
        sig = impacts(times, res * 1.3, 0.0015, amp, rng)
        anom = 0.7 * a.amp * scale * sig / rms(sig)
    elif a.kind == "extra_harmonic":
        m = rng.uniform(1.3, 7.7)
        anom = a.amp * scale * np.sqrt(2) * np.sin(m * ph)
    elif a.kind == "rattle":
        anom = scale * _rattle(rng, a)
    return normal, anom


def _valve(
    rng: np.random.Generator, sec: Section, attrs: dict[str, str], a: Anomaly
) -> tuple[F64, F64]:
    p = sec.params
    pat = int(attrs["pat"])
    cycle = float(attrs["cyc"]) / 1000.0
    # pattern: (open time, close time) within a cycle, fixed per pattern number
    prng = np.random.default_rng([pat, 17])
    n_open = 1 + pat % 2
    opens = np.sort(prng.uniform(0.05, 0.6, n_open)) * cycle
    durs = prng.uniform(0.1, 0.3, n_open) * cycle
    start = rng.uniform(0, cycle)
    events: list[float] = []
    gates = np.zeros(N)
    t0 = -start
    while t0 < 10.0:
        for o, d in zip(opens, durs, strict=True):
            to = t0 + o + rng.normal(0, 0.01)
            tc = to + d + rng.normal(0, 0.01)
            events += [to, tc]
            i0, i1 = max(0, int(to * FS)), min(N, int(tc * FS))
            if i1 > i0:
                gates[i0:i1] = 1.0
        t0 += cycle
    ev = np.asarray(events)
    ev = ev[(ev >= 0) & (ev < 10.0)]
    gates = np.convolve(gates, np.ones(160) / 160, mode="same")
    click_amps = rng.uniform(0.7, 1.0, ev.size)
    click_phase = float(rng.uniform(0, 2 * np.pi))
    clicks = impacts(ev, p["click_freq"], 0.006, click_amps, rng, click_phase)
    hiss = shaped_noise(rng, lambda f: resonance(f, p["res2"], 1.5)) * gates * 0.15
    t = np.arange(N) / FS
    hum = gates * 0.05 * (np.sin(2 * np.pi * p["hum"] * t) + 0.5 * np.sin(4 * np.pi * p["hum"] * t))
    normal = clicks + (hiss + hum) * 10 ** (rng.normal(0, 2) / 20)
    scale = rms(normal)
    anom = np.zeros(N)
    if a.kind == "missing_event" and ev.size:
        k = min(ev.size, 1 + int(a.severity * 2.5))
        drop = rng.choice(ev.size, k, replace=False)
        anom = -impacts(ev[drop], p["click_freq"], 0.006, click_amps[drop], rng, click_phase)
    elif a.kind == "extra_event":
        k = 1 + int(a.severity * 2.5)
        times = rng.uniform(0, 10, k)
        anom = impacts(
            times,
            p["click_freq"] * rng.uniform(0.9, 1.1),
            0.006,
            rng.uniform(0.3, 0.7, k) * (0.3 + 0.7 * a.severity),
            rng,
        )
    elif a.kind == "leak":
        fw = rng.uniform(2000, 6000)
        whistle = np.sin(2 * np.pi * fw * t * (1 + slow_wander(rng, 0.001)))
        anom = 0.5 * a.amp * scale * np.sqrt(2) * whistle * (1.0 - gates)
    elif a.kind == "rattle":
        anom = scale * _rattle(rng, a)
    return normal, anom


def machine_sound(
    rng: np.random.Generator, sec: Section, attrs: str, a: Anomaly
) -> tuple[F64, F64]:
    """(normal part, anomaly part) of one clip of the machine, before background and mic."""
    d = _parse_attrs(attrs)
    if sec.machine == "fan":
        return _rotating(rng, sec, d, a, mesh=False)
    if sec.machine == "gearbox":
        return _rotating(rng, sec, d, a, mesh=True)
    if sec.machine == "bearing":
        return _bearing(rng, sec, d, a)
    return _valve(rng, sec, d, a)


# ---------------------------------------------------------------- background and channel


def background(rng: np.random.Generator, kind: str, hum: float) -> F64:
    """Unit-RMS background of a given type, slowly varying in level."""
    t = np.arange(N) / FS
    if kind == "pink":
        x = shaped_noise(rng, pink)
    elif kind == "rumble":  # traffic / HVAC: brown-ish noise with mains hum
        x = shaped_noise(rng, lambda f: 1.0 / np.maximum(f, 30.0))
        x += 0.5 * np.sin(2 * np.pi * hum * t) + 0.3 * np.sin(2 * np.pi * 3 * hum * t)
    else:  # "babble": band-limited noise with syllable-rate modulation
        x = shaped_noise(rng, lambda f: resonance(f, 700.0, 0.7))
        x *= 1.0 + 0.8 * slow_wander(rng, 1.0, 5.0)
    x *= 1.0 + slow_wander(rng, 0.3, 0.2)
    return x / rms(x)


def background_events(rng: np.random.Generator) -> F64:
    """0-3 transient events in the plant (knocks, bursts): a nuisance inside normal data."""
    out = np.zeros(N)
    for _ in range(int(rng.integers(0, 4))):
        if rng.uniform() < 0.5:
            ev = impacts(
                np.array([rng.uniform(0, 10)]),
                rng.uniform(200, 3000),
                rng.uniform(0.01, 0.08),
                1.0,
                rng,
            )
        else:
            i0 = int(rng.integers(0, N - 8000))
            length = int(rng.integers(1600, 8000))
            ev = np.zeros(N)
            ev[i0 : i0 + length] = rng.standard_normal(length) * np.hanning(length)
        out += rng.uniform(0.5, 2.0) * ev / (rms(ev) + 1e-12) * 0.1
    return out


def microphone(rng: np.random.Generator, x: F64, p: dict[str, float]) -> F64:
    """Another microphone and room: spectral tilt, a peaking EQ, exponential-decay reverb."""
    f = _freqs()
    octaves = np.log2(np.maximum(f, 50.0) / 1000.0)
    eq = 10 ** (p["tilt_db_per_oct"] * octaves / 20)
    eq *= 10 ** (p["peq_gain_db"] * resonance(f, p["peq_freq"], 2.0) / 20)
    y = scipy.fft.irfft(scipy.fft.rfft(x) * eq, N)
    rt = p["rt60"] * rng.uniform(0.9, 1.1)
    n_ir = int(rt * FS)
    tt = np.arange(n_ir) / FS
    ir = rng.standard_normal(n_ir) * np.exp(-6.9 * tt / rt)
    ir[0] = 8.0
    ir /= np.sqrt(np.sum(ir**2))
    return np.asarray(scipy.signal.fftconvolve(y, ir)[:N])


# ---------------------------------------------------------------- one clip


@dataclass(frozen=True)
class ClipDraw:
    """What every family draws first for a clip, in this order from the job's own generator
    (the order is part of the data: the same job gives the same clip): its attributes, and
    for an anomaly its kind and severity."""

    rng: np.random.Generator
    attrs: str
    kind: str | None
    severity: float


def draw_clip(job: ClipJob, sec: Section, anomaly_kinds: dict[str, tuple[str, ...]]) -> ClipDraw:
    """The clip's generator and first draws (`ClipDraw`); `anomaly_kinds`: the family's kinds
    per machine type."""
    rng = np.random.default_rng(job.rng_key)
    pool = sec.source_attrs if job.domain == "source" else sec.target_attrs
    attrs = str(pool[int(rng.integers(len(pool)))])
    kind: str | None = None
    sev = 0.0
    if job.label == "anomaly":
        kinds = anomaly_kinds[sec.machine]
        kind = str(kinds[int(rng.integers(len(kinds)))])
        sev = severity_draw(rng)
    return ClipDraw(rng, attrs, kind, sev)


def render(job: ClipJob, sec: Section) -> tuple[NDArray[np.float32], ClipInfo]:
    """The waveform of one clip and its record. Deterministic for the job."""
    d = draw_clip(job, sec, ANOMALY_KINDS)
    rng, attrs, kind, sev = d.rng, d.attrs, d.kind, d.severity
    p = sec.params
    normal, anom = machine_sound(rng, sec, attrs, Anomaly(kind, sev))
    scale = rms(normal)
    m = (normal + anom) / scale
    target = job.domain == "target"
    bg_kind = "pink"
    snr = p["snr_db"] + rng.uniform(-5, 5)
    if sec.shift == "background" and target:
        bg_kind = ("rumble", "babble")[int(p["blades"]) % 2]
        snr -= p["target_snr_drop_db"]
    bg = background(rng, bg_kind, p["hum"])
    x = m + 10 ** (-snr / 20) * bg + background_events(rng)
    if sec.shift == "microphone" and target:
        x = microphone(rng, x, p)
    return finish_clip(rng, x, job, attrs, kind, sev, snr)


def finish_clip(
    rng: np.random.Generator,
    x: F64,
    job: ClipJob,
    attrs: str,
    kind: str | None,
    sev: float,
    snr: float,
) -> tuple[NDArray[np.float32], ClipInfo]:
    """Every family's last step: a random recording gain (+-6 dB around -26 dBFS RMS), a
    peak limit below full scale, and the clip's DCASE file name and record."""
    gain_db = rng.uniform(-6, 6)
    x = x * (0.05 * 10 ** (gain_db / 20) / rms(x))
    peak = float(np.max(np.abs(x)))
    if peak > 0.9:
        x *= 0.9 / peak
    name = clip_name(f"{job.section:02d}", job.domain, job.split, job.label, job.index, attrs)
    info = ClipInfo(
        f"{job.machine}/{job.split}/{name}",
        attrs,
        kind,
        round(sev, 4) if kind else None,
        {"snr_db": round(snr, 2), "gain_db": round(gain_db, 2)},
    )
    return x.astype(np.float32), info


@dataclass(frozen=True)
class Family:
    """One generator family: its machines, shifts, anomaly kinds and renderer."""

    name: str
    machines: tuple[str, ...]
    shifts: tuple[str, ...]
    anomaly_kinds: dict[str, tuple[str, ...]]
    make_section: Callable[[int, str, int], Section]
    render: Callable[[ClipJob, Section], tuple[NDArray[np.float32], ClipInfo]]


def family(name: str) -> Family:
    """The generator family called `name` (the other families import this module's helpers,
    hence the import here)."""
    if name == "harmonic":
        return Family(name, MACHINE_TYPES, SHIFTS, ANOMALY_KINDS, make_section, render)
    if name not in FAMILIES:
        raise SynthError("family", f"expected one of {', '.join(FAMILIES)}, got {name!r}")
    mod = importlib.import_module(f"{__package__}.{name}")
    return Family(name, mod.MACHINES, mod.SHIFTS, mod.ANOMALY_KINDS, mod.make_section, mod.render)


def jobs_for(config: SynthConfig) -> list[ClipJob]:
    out = []
    for machine in config.machine_types:
        for s in range(config.sections):
            plan = [
                ("source", "train", "normal", config.source_train),
                ("target", "train", "normal", config.target_train),
            ]
            plan += [(d, "test", lab, config.test_per_label) for d in _DOMAINS for lab in _LABELS]
            for domain, split, label, n in plan:
                out += [ClipJob(machine, s, domain, split, label, i, config.seed) for i in range(n)]
    return out


def _write_one(args: tuple[ClipJob, Section, str, str]) -> ClipInfo:
    job, sec, root, fam = args
    wave, info = family(fam).render(job, sec)
    write_wav(Path(root) / info.file, wave, FS)
    return info


def generate(
    config: SynthConfig, out: Path, workers: int = 1, progress: bool = False
) -> dict[str, Any]:
    """Write the data set and synth.json under `out`; returns the synth.json content.
    `progress`: a progress bar on stderr (`model_build.progress`), clip by clip."""
    from model_build.progress import Progress

    config.check()
    fam = family(config.family)
    sections = {
        (m, s): fam.make_section(config.seed, m, s)
        for m in config.machine_types
        for s in range(config.sections)
    }
    for m in config.machine_types:
        for split in _SPLITS:
            (out / m / split).mkdir(parents=True, exist_ok=True)
    jobs = jobs_for(config)
    args = [(j, sections[(j.machine, j.section)], str(out), config.family) for j in jobs]
    infos: list[ClipInfo] = []
    with Progress(len(jobs), "writing clips", progress) as bar:
        if workers > 1 and len(jobs) > workers:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                for info in pool.map(_write_one, args, chunksize=16):
                    infos.append(info)
                    bar.update()
        else:
            for a in args:
                infos.append(_write_one(a))
                bar.update()
    meta = {
        "generator": "model_build.synth",
        "family": config.family,
        "config": {**asdict(config), "machines": list(config.machine_types)},
        "sample_rate": FS,
        "clip_samples": N,
        "anomaly_gain": ANOMALY_GAIN,
        "anomaly_kinds": {m: list(fam.anomaly_kinds[m]) for m in config.machine_types},
        "sections": {section_id(m, f"{s:02d}"): sec.to_json() for (m, s), sec in sections.items()},
        "clips": [asdict(i) for i in infos],
    }
    (out / "synth.json").write_text(json.dumps(meta, indent=1))
    return meta
