"""Pseudo-anomalies: perturbed copies of a section's own normal clips (pure numpy).

Why. A plant has no labelled anomalies, yet the backend must decide how much each component
(the learned embedding, band statistics, rhythm) counts for THIS machine
(edge_agent.scoring.fusion).
What it can do is hold out some normal clips and ask each component how far it puts them from
copies of the same clips with a plausible fault painted on: a component whose normal scores
already scatter as much as a small tone or a boosted band moves them does not separate this
machine's sounds and should not vote. The copies are made from the section's own clips, so
they carry its real background, level and domain spread.

Kinds (each drawn over a range from hard to see to obvious, so that a component's separation
reflects its sensitivity and not one fixed size):

* ``tone``: a stationary tone, 50-7500 Hz, 40 to 10 dB below the clip;
* ``band``: one band (a third to one octave, centred 80-7000 Hz) boosted or cut by 2-10 dB;
* ``impulses``: a train of damped clicks (1-20 per second, periodic or random);
* ``speed``: the clip played 0.5-5 % faster or slower (every frequency and rate moves);
* ``modulation``: an amplitude modulation at 0.5-30 Hz, depth 5-50 %;
* ``stutter``: 1-3 short stretches of the clip repeated (a timing glitch), cross-faded;
* ``wobble``: the clip's speed swung periodically, 1-10 Hz, by 0.2-2 % (an unsteady drive, a
  worn gear): every line wobbles in frequency while no level changes. Without it no copy
  moves the spectral stability (edge_agent.scoring.classical.Stability), and the weighting
  gave that component little weight exactly where it hears the most (BENCHMARKS.md "Where
  the last points are").

The plan a bundle was fitted with is its backend's `pseudo_kinds` and `pseudo_count`, so a
device refits (calibrate, enrol) an older bundle with the copies its export made.

Every perturbation is a function of (wave, its own random generator): `plan` decides which clip
gets which kind with which seed, so the build side (export, evaluate) and the device
(calibrate, enrol) make the same copies of the same clips.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from edge_agent.arrays import AnyFloatArray

KINDS = ("tone", "band", "impulses", "speed", "modulation", "stutter", "wobble")
"""The default plan's kinds, in the order `plan` rotates them."""
FIRST_KINDS = KINDS[:6]
"""The plan before `wobble` joined it (48 copies): bundles whose backend names no
`pseudo_kinds` were fitted with it, and refit with it."""
DEFAULT_COUNT = 56
"""Pseudo-anomalies per section, 8 of each kind: enough that a component's separation (an AUC
over ~40 held-out normal clips and these) is not decided by a handful of draws, few enough that
the device embeds them in seconds."""

F32 = NDArray[np.float32]
F64 = NDArray[np.float64]


class PlanSettings(Protocol):
    """Where a plan's settings live: the backend's config (edge_agent.scoring.backend
    .BackendConfig, stored in the bundle), so every side draws the plan the bundle names."""

    @property
    def pseudo_count(self) -> int: ...
    @property
    def pseudo_kinds(self) -> tuple[str, ...]: ...
    @property
    def seed(self) -> int: ...


@dataclass(frozen=True)
class PseudoSet:
    """A section's pseudo-anomalies as every component embeds them (the backend's fit weighs
    the components by them)."""

    embeddings: Sequence[AnyFloatArray]
    """One (M, D_i) array per component, in component order."""
    origin: NDArray[np.integer]
    """(M,) the normal clip each was made from (source rows, then target rows), -1: none."""


@dataclass(frozen=True)
class Planned:
    """One pseudo-anomaly: which normal clip it copies (index into the section's normal clips,
    source clips first, then target clips), which perturbation, and its random seed."""

    origin: int
    kind: str
    seed: int


def section_seed(section: str, seed: int = 0) -> int:
    """A stable per-section seed (Python's `hash` is salted per process; crc32 is not)."""
    return zlib.crc32(section.encode()) ^ (seed & 0xFFFFFFFF)


def plan(
    n_clips: int, count: int = DEFAULT_COUNT, seed: int = 0, kinds: Sequence[str] = KINDS
) -> list[Planned]:
    """`count` pseudo-anomalies over `n_clips` normal clips: every clip is used before any is
    used twice (so every cross-fitting fold gets its share), `kinds` rotate in a shuffled
    order."""
    unknown = [k for k in kinds if k not in PERTURB]
    if unknown:
        raise ValueError(f"pseudo-anomaly kind: expected one of {tuple(PERTURB)}, got {unknown}")
    if n_clips < 1 or count < 1 or not kinds:
        return []
    rng = np.random.default_rng([seed, n_clips, 7])
    origins = np.concatenate([rng.permutation(n_clips) for _ in range(-(-count // n_clips))])
    order = np.concatenate([rng.permutation(len(kinds)) for _ in range(-(-count // len(kinds)))])
    seeds = rng.integers(0, 2**31, count)
    return [Planned(int(origins[i]), kinds[int(order[i])], int(seeds[i])) for i in range(count)]


def _rms(x: F64) -> float:
    return float(np.sqrt(np.mean(x * x)) + 1e-12)


def _loguniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def _tone(x: F64, rng: np.random.Generator, sr: int) -> F64:
    f = _loguniform(rng, 50.0, min(7500.0, 0.47 * sr))
    level = 10 ** (rng.uniform(-40.0, -10.0) / 20)
    t = np.arange(x.size) / sr
    out: F64 = x + level * _rms(x) * np.sqrt(2) * np.sin(2 * np.pi * f * t + rng.uniform(0, 6.3))
    return out


def _band(x: F64, rng: np.random.Generator, sr: int) -> F64:
    fc = _loguniform(rng, 80.0, min(7000.0, 0.45 * sr))
    width = rng.uniform(1 / 3, 1.0)  # octaves
    gain_db = rng.choice([-1.0, 1.0]) * rng.uniform(2.0, 10.0)
    f = np.fft.rfftfreq(x.size, 1.0 / sr)
    octs = np.abs(np.log2(np.maximum(f, 1.0) / fc)) / (width / 2)
    shape = np.where(octs < 1.0, 0.5 * (1 + np.cos(np.pi * np.minimum(octs, 1.0))), 0.0)
    out: F64 = np.fft.irfft(np.fft.rfft(x) * 10 ** (gain_db * shape / 20), x.size)
    return out


def _impulses(x: F64, rng: np.random.Generator, sr: int) -> F64:
    rate = rng.uniform(1.0, 20.0)
    dur = x.size / sr
    if rng.uniform() < 0.5:
        times = np.arange(rng.uniform(0, 1 / rate), dur, 1 / rate)
        times = times + rng.normal(0, 0.02 / rate, times.size)
    else:
        times = np.sort(rng.uniform(0, dur, max(1, int(rate * dur))))
    fc = _loguniform(rng, 300.0, min(7000.0, 0.45 * sr))
    decay = rng.uniform(0.001, 0.01)
    kernel_t = np.arange(int(6 * decay * sr) + 1) / sr
    kernel = np.exp(-kernel_t / decay) * np.sin(2 * np.pi * fc * kernel_t)
    train = np.zeros(x.size)
    idx = np.round(times * sr).astype(int)
    np.add.at(train, idx[(idx >= 0) & (idx < x.size)], 1.0)
    n = x.size + kernel.size - 1
    size = 1 << (n - 1).bit_length()
    clicks = np.fft.irfft(np.fft.rfft(train, size) * np.fft.rfft(kernel, size), size)[: x.size]
    level = 10 ** (rng.uniform(-35.0, -10.0) / 20)
    return x + level * _rms(x) * clicks / _rms(clicks)


def _speed(x: F64, rng: np.random.Generator, sr: int) -> F64:
    factor = 1.0 + rng.choice([-1.0, 1.0]) * _loguniform(rng, 0.005, 0.05)
    c = (x.size - 1) / 2
    pos = c + (np.arange(x.size) - c) * factor
    last = x.size - 1
    pos = np.abs(pos)  # mirrored at both ends: no discontinuity where the copy runs out
    pos = np.where(pos > last, 2 * last - pos, pos)
    out: F64 = np.interp(pos, np.arange(x.size), x)
    return out


def _wobble(x: F64, rng: np.random.Generator, sr: int) -> F64:
    """Read the clip at a periodically swinging speed: 1 + depth * cos(2 pi rate t)."""
    rate = _loguniform(rng, 1.0, 10.0)
    depth = _loguniform(rng, 0.002, 0.02)
    t = np.arange(x.size) / sr
    swing = depth / (2 * np.pi * rate) * np.sin(2 * np.pi * rate * t + rng.uniform(0, 2 * np.pi))
    last = x.size - 1
    pos = np.abs((t + swing) * sr)  # mirrored at both ends, as `_speed`
    pos = np.where(pos > last, 2 * last - pos, pos)
    return _cubic(x, pos)


def _cubic(x: F64, pos: F64) -> F64:
    """`x` read at fractional positions `pos` (Catmull-Rom): linear interpolation softens the
    top octave by a position-dependent amount (white noise 6 % quieter; with this, 3-4 %),
    which a swinging speed turns into a level modulation of its own."""
    i = np.floor(pos).astype(np.int64)
    f = pos - i
    last = x.size - 1
    a, b, c, d = (x[np.clip(i + k, 0, last)] for k in (-1, 0, 1, 2))
    out: F64 = b + 0.5 * f * (c - a + f * (2 * a - 5 * b + 4 * c - d + f * (3 * (b - c) + d - a)))
    return out


def _modulation(x: F64, rng: np.random.Generator, sr: int) -> F64:
    rate = _loguniform(rng, 0.5, 30.0)
    depth = rng.uniform(0.05, 0.5)
    t = np.arange(x.size) / sr
    return x * (1.0 + depth * np.sin(2 * np.pi * rate * t + rng.uniform(0, 6.3)))


def _stutter(x: F64, rng: np.random.Generator, sr: int) -> F64:
    y = x.copy()
    fade = max(2, int(0.005 * sr))
    ramp = np.linspace(0.0, 1.0, fade)
    for _ in range(int(rng.integers(1, 4))):
        seg = int(rng.uniform(0.05, 0.5) * sr)
        if seg + 2 * fade >= y.size // 2:
            continue
        i0 = int(rng.integers(fade, y.size - 2 * seg - fade))
        piece = y[i0 : i0 + seg].copy()
        rest = y[i0 + seg : y.size - seg].copy()
        out = np.concatenate([y[: i0 + seg], piece, rest])
        # cross-fade both joins so the repeat adds no click of its own
        j = i0 + seg
        out[j : j + fade] = y[j : j + fade] * (1 - ramp) + piece[:fade] * ramp
        k = j + seg
        out[k : k + fade] = piece[seg - fade : seg] * (1 - ramp) + rest[:fade] * ramp
        y = out[: y.size]
    return y


PERTURB: dict[str, Callable[[F64, np.random.Generator, int], F64]] = {
    "tone": _tone,
    "band": _band,
    "impulses": _impulses,
    "speed": _speed,
    "modulation": _modulation,
    "stutter": _stutter,
    "wobble": _wobble,
}
"""Every kind `perturb` paints (a plan may hold any of them; the default plan holds all)."""


def perturb(wave: NDArray[np.floating], item: Planned, sample_rate: int) -> F32:
    """The pseudo-anomalous copy of `wave` that `item` describes (same length, float32)."""
    if item.kind not in PERTURB:
        raise ValueError(
            f"pseudo-anomaly kind: expected one of {tuple(PERTURB)}, got {item.kind!r}"
        )
    x = np.asarray(wave, dtype=np.float64).reshape(-1)
    y = PERTURB[item.kind](x, np.random.default_rng([item.seed, 31]), sample_rate)
    out: F32 = np.clip(y, -1.0, 1.0).astype(np.float32)
    return out


EmbedBatch = Callable[[F32], Sequence[NDArray[np.floating]]]
"""(M, samples) waves -> one (M, D_i) array per component."""


def pseudo_embeddings(
    waves_of: Callable[[int], NDArray[np.floating]],
    items: Sequence[Planned],
    embed: EmbedBatch,
    sample_rate: int,
    batch: int = 16,
) -> list[NDArray[np.float64]]:
    """Embed the planned copies: `waves_of(i)` gives normal clip i's wave (read once per
    batch, never all clips at once: a DCASE section has a thousand), `embed` embeds a batch."""
    parts: list[list[NDArray[np.float64]]] = []
    for i in range(0, len(items), batch):
        chunk = items[i : i + batch]
        waves = np.stack([perturb(waves_of(it.origin), it, sample_rate) for it in chunk])
        parts.append([np.asarray(e, dtype=np.float64) for e in embed(waves)])
    if not parts:
        return []
    return [np.concatenate([p[c] for p in parts], axis=0) for c in range(len(parts[0]))]


def section_pseudo(
    section: str,
    n_clips: int,
    waves_of: Callable[[int], NDArray[np.floating]],
    embed: EmbedBatch,
    sample_rate: int,
    config: PlanSettings,
) -> PseudoSet:
    """THE pseudo-anomalies of a section whose normal clips (source first, then target) are
    `waves_of(0..n_clips-1)`, planned as the backend `config` says (its `pseudo_count`,
    `pseudo_kinds` and `seed`): export, evaluate, calibrate and enrol all call this, so each
    side perturbs the same clips the same way and only the embedder differs."""
    items = plan(
        n_clips, config.pseudo_count, section_seed(section, config.seed), config.pseudo_kinds
    )
    return PseudoSet(
        pseudo_embeddings(waves_of, items, embed, sample_rate),
        np.asarray([it.origin for it in items], dtype=np.int64),
    )
