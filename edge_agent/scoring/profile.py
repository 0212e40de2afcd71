"""The audio profile of a section: what the training audio sounded like, in a few numbers.

Why. The scores depend on the audio chain: a resampler that cuts everything above 6 kHz, a
gain 12 dB too low, a microphone that clips or a noisy preamplifier move every window away
from the normal references, and healthy machines alarm. Nothing in a score says so. The
bundle therefore carries, per section, a compact profile of the normal training clips
(`model-build export`; refreshed on the device by calibrate and enrol from their clips), and
the agent compares live audio with it (`edge_agent.runtime.hearing`) and explains alarms
against it (`edge_agent.scoring.explain`).

What is measured (and why each): all from the |STFT| the scorer computes anyway (1024/512 at
16 kHz: 15.6 Hz bins, 32 ms frames), plus, for the profile and explanations only, envelopes
of the whole-window FFT:

* the spectral shape: per STFT bin, 10 log10 of the mean power minus the window's total (so a
  gain change does not move it): a cut band shows as bins tens of dB below normal, a new tone
  as one bin above it;
* the level (RMS dBFS), the peak and crest factor and the share of clipped samples (from the
  sensor health check): a quiet input, a limiter, clipping;
* per band (`BANDS` log-spaced bands from ~31 Hz, about third octaves), the noise floor (10th
  percentile of the frame powers, relative to the total): hiss from a preamplifier raises it,
  noise suppression in a USB microphone lowers it;
* for explanations: per bin the fluctuation over frames (a wandering, frequency-modulated
  tone), per band the impulsiveness (kurtosis of the band's envelope: knocks) and the strongest
  envelope modulation (depth and rate: a beat, a damaged tooth), and the periodicity of four
  broad ranges (rhythm: a cycle that became irregular, slowed or lost an event).

The profile stores, per measure, the median over the section's clips and a robust spread
(half the 16-84 percentile distance, floored), so that a live value is judged in "normal
spreads"; `null` holds, per kind of explanation, how large the strongest such deviation is on
the normal clips themselves (95th percentile), so that the kinds can be compared: the profile
is therefore built in edge_agent.scoring.explain (`build_profile`, `profile_from_waves`), which
knows the kinds.

`WindowSummary` (`summarise`) is the cheap part, computed for every scored window from the
|STFT| (about 0.3 ms on one x86 core: benchmarks/hearing_cost.py); `ClipDetail` (`detail`) the
rest, computed only for profiles (export, calibrate, enrol) and alarms.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
from numpy.typing import NDArray

from edge_agent.arrays import FloatArray
from edge_agent.errors import FieldError
from edge_agent.scoring.fft import rfft
from edge_agent.scoring.frontend import FrontendSpec, stft_magnitude

PROFILE_VERSION = 1
BANDS = 24
"""Log-spaced bands from STFT bin 2 (~31 Hz at 16 kHz) to Nyquist: about third octaves."""
RHYTHM_HZ: tuple[tuple[float, float], ...] = (
    (50.0, 500.0),
    (500.0, 2000.0),
    (2000.0, 5000.0),
    (5000.0, 8000.0),
)
"""The broad ranges whose periodicity is measured (the classical rhythm component's)."""
RHYTHM_LAGS_S = (0.25, 4.0)
"""Periods looked for: from a quarter second (faster is a modulation) to 4 s."""
ENVELOPE_RATE = 400.0
"""Hz: band envelopes are measured at about this rate (repetition rates up to ~200 Hz)."""
MIN_SPREAD_DB = 1.0
"""The smallest spread a dB measure gets: a section of near-identical clips must not make a
0.1 dB change look like 30 normal spreads."""
EPS = 1e-12
KINDS = ("tonal", "level", "impulsive", "modulation", "band_shift", "rhythm")
"""What an alarm's explanation can name (edge_agent.scoring.explain)."""


def db(x: NDArray[Any] | float) -> Any:
    """10 log10 with a floor (power ratios)."""
    return 10.0 * np.log10(np.maximum(x, EPS))


@dataclass(frozen=True)
class Layout:
    """Where the measures live for a frontend spec: band edges (STFT bins), bin frequencies."""

    spec: FrontendSpec
    edges: NDArray[np.int64]  # (bands + 1,) STFT bin edges
    freqs: NDArray[np.float64]  # (n_bins,) Hz of each STFT bin
    rhythm: tuple[tuple[int, int], ...]  # STFT bin slices of RHYTHM_HZ

    @property
    def n_bands(self) -> int:
        return len(self.edges) - 1

    @property
    def hz_per_bin(self) -> float:
        return self.spec.sample_rate / self.spec.n_fft

    @property
    def edges_hz(self) -> list[float]:
        return [round(float(e) * self.hz_per_bin, 1) for e in self.edges]

    def band_hz(self, b: int) -> tuple[float, float]:
        return float(self.edges[b]) * self.hz_per_bin, float(self.edges[b + 1]) * self.hz_per_bin


@lru_cache(maxsize=8)
def layout(spec: FrontendSpec) -> Layout:
    n = spec.n_bins
    edges = np.unique(np.round(np.geomspace(2, n, BANDS + 1)).astype(np.int64))
    hz = spec.sample_rate / spec.n_fft
    rhythm = []
    for lo, hi in RHYTHM_HZ:
        a = min(int(lo / hz), n - 1)
        rhythm.append((a, max(a + 1, min(int(hi / hz), n))))
    return Layout(spec, edges, np.arange(n, dtype=np.float64) * hz, tuple(rhythm))


# ---------------------------------------------------------------- every window (cheap)


@dataclass(frozen=True)
class WindowSummary:
    """What the hearing check keeps of one window (see module docstring)."""

    shape_db: FloatArray  # (n_bins,) mean power per bin relative to the window's total, dB
    floor_db: FloatArray  # (bands,) 10th percentile of frame band power relative to total, dB
    rms_dbfs: float
    peak_dbfs: float
    clipped_fraction: float

    @property
    def crest_db(self) -> float:
        return self.peak_dbfs - self.rms_dbfs


def summarise(
    mag: NDArray[Any],
    spec: FrontendSpec,
    rms_dbfs: float,
    peak_dbfs: float,
    clipped_fraction: float,
) -> WindowSummary:
    """The window's summary from its |STFT| `mag` (n_frames, n_bins) and its levels (the sensor
    health check's). float32 throughout: this runs for every window."""
    lay = layout(spec)
    power = np.square(mag, dtype=np.float32)
    mean = power.mean(axis=0)
    total = float(mean.sum()) + EPS
    shape = db(mean / np.float32(total)).astype(np.float32)
    bands = np.add.reduceat(power, lay.edges[:-1], axis=1)[:, : lay.n_bands]
    k = max(0, int(0.1 * (bands.shape[0] - 1)))
    floor = np.partition(bands, k, axis=0)[k] / np.diff(lay.edges).astype(np.float32)
    floor_db = db(floor / np.float32(total)).astype(np.float32)
    return WindowSummary(
        shape, floor_db, float(rms_dbfs), float(peak_dbfs), float(clipped_fraction)
    )


# ---------------------------------------------------------------- profiles and alarms


@dataclass(frozen=True)
class ClipDetail:
    """The measures of one window that profiles and explanations use (module docstring)."""

    summary: WindowSummary
    prom_db: FloatArray  # (n_bins,) how far each bin of the mean spectrum stands out of its
    # +-8 neighbours (dB): tones
    fluct_db: FloatArray  # (n_bins,) std over frames of each bin's dB level: wavering tones
    band_db: FloatArray  # (bands,) steady band level relative to the steady total, tones
    # flattened, dB: the median-over-frames spectrum, so knocks do not count
    events: FloatArray  # (bands,) knocks in the band's envelope (count)
    kurt_db: FloatArray  # (bands,) 10 log10 envelope kurtosis (3 dB: noise; knocks: more)
    mod_db: FloatArray  # (bands,) strongest envelope modulation depth, dB (20 log10 depth)
    mod_hz: FloatArray  # (bands,) its rate
    rhythm_peak: FloatArray  # (ranges,) highest envelope autocorrelation at 0.25-4 s lags
    rhythm_lag_s: FloatArray  # (ranges,) its lag
    centroid: float  # log2 Hz: power-weighted centre of the steady, tone-flattened spectrum
    frames_db: FloatArray = field(repr=False)  # (n_frames, bands) band power per frame, dB
    bin_frames_db: NDArray[np.float16] = field(repr=False)  # (n_frames, n_bins) per-bin
    # frame power, dB (float16: 0.03 dB at -60 dB is plenty, and it is the largest part)
    envelopes: tuple[FloatArray, ...] = field(repr=False, default=())  # per band, ~400 Hz
    envelope_rate: tuple[float, ...] = ()
    event_times: tuple[FloatArray, ...] = field(repr=False, default=())  # per band, s
    steady_db: FloatArray = field(repr=False, default_factory=lambda: np.zeros(0, np.float32))


def sliding_median(x: NDArray[Any], half: int) -> NDArray[np.float64]:
    """The median of each element's +-`half` neighbourhood (edges repeated)."""
    pad = np.pad(np.asarray(x, np.float64), half, mode="edge")
    return np.asarray(
        np.median(np.lib.stride_tricks.sliding_window_view(pad, 2 * half + 1), axis=1)
    )


def events(env: NDArray[Any], rate: float) -> NDArray[np.float64]:
    """Times (s) of an envelope's knocks: peaks above median + 8 MAD (and twice the median),
    at least 40 ms apart."""
    e = np.asarray(env, np.float64)
    med = float(np.median(e))
    mad = float(np.median(np.abs(e - med))) + 1e-20
    above = np.flatnonzero(e > max(med + 8 * mad, 2 * med))
    times: list[float] = []
    gap = max(1, int(0.04 * rate))
    i = 0
    while i < above.size:
        j = i
        while j + 1 < above.size and above[j + 1] - above[j] <= gap:
            j += 1
        seg = above[i : j + 1]
        times.append(float(seg[np.argmax(e[seg])]) / rate)
        i = j + 1
    return np.asarray(times)


def _band_envelopes(wave: NDArray[Any], lay: Layout) -> tuple[list[FloatArray], list[float]]:
    """Each band's power envelope (|analytic signal|^2 of the band, averaged down to about
    ENVELOPE_RATE), from ONE FFT of the whole window: the band's bins shifted to 0 Hz and
    inverse-transformed at a length that covers them (the envelope's own rate)."""
    x = np.asarray(wave, dtype=np.float32)  # complex64 spectrum: half the memory of float64
    n = x.size
    spec = rfft(x)
    per_hz = n / lay.spec.sample_rate  # FFT bins per Hz
    envs, rates = [], []
    for b in range(lay.n_bands):
        lo_hz, hi_hz = lay.band_hz(b)
        lo = min(int(lo_hz * per_hz), spec.size - 1)
        hi = min(spec.size, max(lo + 1, int(hi_hz * per_hz)))
        width = hi - lo
        m = 1 << max(11, math.ceil(math.log2(width)))
        z = np.zeros(m, np.complex128)
        z[:width] = spec[lo:hi]
        e = np.abs(np.fft.ifft(z)) ** 2  # m samples over the window: rate m / seconds
        rate = m * lay.spec.sample_rate / n
        step = max(1, int(rate // ENVELOPE_RATE))
        e = e[: (e.size // step) * step].reshape(-1, step).mean(axis=1)
        envs.append(e.astype(np.float32))
        rates.append(rate / step)
    return envs, rates


def _modulation(env: FloatArray, rate: float) -> tuple[float, float, float]:
    """(10 log10 kurtosis of the envelope's amplitude, strongest modulation depth in dB, its
    rate): depth = amplitude of the envelope's strongest spectral line (0.5 Hz up) over its
    mean, so a 100 % sinusoidal power modulation is 0 dB."""
    e = env.astype(np.float64)
    mean = float(e.mean()) + EPS
    kurt = float(np.mean(e * e) / mean**2)  # E|z|^4 / (E|z|^2)^2: 2 for Gaussian noise
    spec = np.abs(np.fft.rfft(e - mean)) * 2.0 / (e.size * mean)
    lo = max(1, int(0.5 * e.size / rate))
    if spec.size <= lo + 1:
        return float(db(kurt)), -60.0, 0.0
    k = lo + int(np.argmax(spec[lo:]))
    return float(db(kurt)), float(20 * np.log10(max(spec[k], 1e-3))), k * rate / e.size


def _rhythm(power: NDArray[np.float32], lay: Layout) -> tuple[FloatArray, FloatArray]:
    """Per broad range: the highest normalised autocorrelation of the log-energy envelope at
    lags RHYTHM_LAGS_S, and that lag (seconds)."""
    frame_s = lay.spec.hop / lay.spec.sample_rate
    n = power.shape[0]
    lo = max(1, round(RHYTHM_LAGS_S[0] / frame_s))
    hi = min(n - 2, round(RHYTHM_LAGS_S[1] / frame_s))
    peaks, lags = [], []
    for a, c in lay.rhythm:
        env = np.log(power[:, a:c].sum(axis=1, dtype=np.float64) + 1e-10)
        # a 5-frame median: a knock (1-2 frames) is not part of the cycle
        env = np.median(
            np.lib.stride_tricks.sliding_window_view(np.pad(env, 2, mode="edge"), 5), axis=1
        )
        env -= env.mean()
        ac = np.fft.irfft(np.abs(np.fft.rfft(env, 2 * n)) ** 2)[: hi + 1]
        ac = ac / max(ac[0], EPS)
        if hi <= lo:
            peaks.append(0.0)
            lags.append(0.0)
            continue
        k = lo + int(np.argmax(ac[lo : hi + 1]))
        peaks.append(float(ac[k]))
        lags.append(k * frame_s)
    return np.asarray(peaks, np.float32), np.asarray(lags, np.float32)


def detail(
    wave: NDArray[Any],
    spec: FrontendSpec,
    rms_dbfs: float,
    peak_dbfs: float,
    clipped_fraction: float,
    mag: NDArray[Any] | None = None,
) -> ClipDetail:
    """Every measure of one window (`mag`: its |STFT| when already computed)."""
    lay = layout(spec)
    if mag is None:
        mag = stft_magnitude(wave, spec)
    summary = summarise(mag, spec, rms_dbfs, peak_dbfs, clipped_fraction)
    power = np.square(mag, dtype=np.float32)
    total = float(power.mean(axis=0).sum()) + EPS
    bands = np.add.reduceat(power, lay.edges[:-1], axis=1)[:, : lay.n_bands]
    frames_db = db(bands / np.float32(total)).astype(np.float32)
    bin_frames = db(power / np.float32(total)).astype(np.float32)
    fluct = bin_frames.std(axis=0).astype(np.float32)
    bin_frames16 = bin_frames.astype(np.float16)
    del bin_frames
    shape = summary.shape_db.astype(np.float64)
    prom = (shape - sliding_median(shape, 8)).astype(np.float32)
    half = power.shape[0] // 2
    steady = np.partition(power, half, axis=0)[half].astype(np.float64)
    steady_db = db(steady / (steady.sum() + EPS))
    flat = np.minimum(steady_db, sliding_median(steady_db, 8) + 3.0)  # tones flattened
    band_db = np.asarray(
        [np.mean(flat[lay.edges[b] : lay.edges[b + 1]]) for b in range(lay.n_bands)], np.float32
    )
    envs, rates = _band_envelopes(wave, lay)
    mods = [_modulation(e, r) for e, r in zip(envs, rates, strict=True)]
    times = tuple(events(e, r) for e, r in zip(envs, rates, strict=True))
    peaks, lags = _rhythm(power, lay)
    lin = np.power(10.0, flat / 10)
    f = np.maximum(lay.freqs, lay.hz_per_bin)
    centroid = float(np.sum(lin * np.log2(f)) / (lin.sum() + EPS))
    return ClipDetail(
        summary,
        prom,
        fluct,
        band_db,
        np.asarray([t.size for t in times], np.float32),
        np.asarray([m[0] for m in mods], np.float32),
        np.asarray([m[1] for m in mods], np.float32),
        np.asarray([m[2] for m in mods], np.float32),
        peaks,
        lags,
        centroid,
        frames_db,
        bin_frames16,
        tuple(envs),
        tuple(rates),
        tuple(t.astype(np.float32) for t in times),
        steady_db.astype(np.float32),
    )


# ---------------------------------------------------------------- the profile


@dataclass(frozen=True)
class Stat:
    """A measure over a section's normal clips, per element: the median, a robust spread and
    the 95th percentile (`hi`: what normal clips reach, but rarely pass)."""

    med: FloatArray
    spread: FloatArray
    hi: FloatArray

    @classmethod
    def of(cls, values: NDArray[Any], floor: float = MIN_SPREAD_DB) -> Stat:
        v = np.asarray(values, np.float64)
        p16, p50, p84, p95 = np.percentile(v, [16, 50, 84, 95], axis=0)
        spread = np.maximum((p84 - p16) / 2.0, floor)
        return cls(
            np.asarray(p50, np.float32), np.asarray(spread, np.float32), np.asarray(p95, np.float32)
        )

    def z(self, x: NDArray[Any]) -> NDArray[np.float64]:
        """Normal spreads from the median, element by element."""
        return np.asarray((np.asarray(x, np.float64) - self.med) / self.spread, np.float64)

    def z_at(self, x: float, i: int) -> float:
        """Normal spreads of value `x` of element `i`."""
        return float((x - float(self.med[i])) / float(self.spread[i]))

    def to_dict(self) -> dict[str, list[float]]:
        return {"med": _round(self.med), "spread": _round(self.spread), "hi": _round(self.hi)}


def _round(x: NDArray[Any], digits: int = 2) -> list[float]:
    return [round(float(v), digits) for v in np.ravel(x)]


STATS = (
    "shape",
    "prom",
    "fluct",
    "floor",
    "band",
    "events",
    "kurt",
    "mod",
    "rhythm_peak",
    "rhythm_lag",
)
"""The per-element measures of a profile, in `to_dict` order (their lengths: `_lengths`)."""


@dataclass(frozen=True)
class AudioProfile:
    """A section's normal audio (module docstring). Stored in the bundle manifest under
    `profiles.<section>` (`to_dict`); `from_dict` checks every field."""

    spec: FrontendSpec
    n_clips: int
    origin: str  # "export", "calibration", "enrolment", "demo": what made it
    level_dbfs: tuple[float, float, float]  # p10, p50, p90 of the clips' RMS level
    crest_db: tuple[float, float, float]  # p10, p50, p90 of peak - RMS
    clipped_fraction: float  # the largest share of clipped samples in one clip
    edge_hz: float  # the highest frequency the training audio has content at
    centroid: Stat  # (1,)
    stats: Mapping[str, Stat]  # STATS -> per-bin / per-band / per-range measures
    null: Mapping[str, tuple[float, float]]  # KINDS -> median and 95th percentile of the
    # strongest deviation of that kind on the normal clips (edge_agent.scoring.explain)

    @property
    def layout(self) -> Layout:
        return layout(self.spec)

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": PROFILE_VERSION,
            "n_clips": self.n_clips,
            "origin": self.origin,
            "bands_hz": self.layout.edges_hz,
            "level_dbfs": [round(v, 2) for v in self.level_dbfs],
            "crest_db": [round(v, 2) for v in self.crest_db],
            "clipped_fraction": round(self.clipped_fraction, 6),
            "edge_hz": round(self.edge_hz, 1),
            "centroid": self.centroid.to_dict(),
            **{name: self.stats[name].to_dict() for name in STATS},
            "null": {
                k: [round(float(v[0]), 3), round(float(v[1]), 3)] for k, v in self.null.items()
            },
        }

    @classmethod
    def from_dict(cls, data: Any, spec: FrontendSpec) -> AudioProfile:
        """The profile in `data` (a manifest's `profiles.<section>`), or a FieldError naming
        the field (`shape.med: expected 513 finite numbers, got 12 values`)."""
        if not isinstance(data, dict):
            raise FieldError("", f"expected an object, got {type(data).__name__}")
        if data.get("version") != PROFILE_VERSION:
            raise FieldError(
                "version",
                f"expected {PROFILE_VERSION}, got "
                f"{data.get('version')!r} (another agent version wrote it)",
            )
        lay = layout(spec)
        if data.get("bands_hz") != lay.edges_hz:
            raise FieldError("bands_hz", "not the bands of this bundle's frontend")
        lengths = _lengths(lay)
        stats = {name: _stat(data.get(name), name, n) for name, n in lengths.items()}
        null = data.get("null")
        if not (
            isinstance(null, dict)
            and set(null) == set(KINDS)
            and all(
                isinstance(v, list) and len(v) == 2 and all(map(_finite, v)) for v in null.values()
            )
        ):
            raise FieldError(
                "null", f"expected [median, 95th percentile] for each of {', '.join(KINDS)}"
            )
        return cls(
            spec,
            _int(data, "n_clips"),
            str(data.get("origin", "")),
            _triple(data, "level_dbfs"),
            _triple(data, "crest_db"),
            _number(data, "clipped_fraction"),
            _number(data, "edge_hz"),
            _stat(data.get("centroid"), "centroid", 1),
            stats,
            {k: (float(v[0]), float(v[1])) for k, v in null.items()},
        )


def _lengths(lay: Layout) -> dict[str, int]:
    n, b, r = lay.spec.n_bins, lay.n_bands, len(lay.rhythm)
    return {
        "shape": n,
        "prom": n,
        "fluct": n,
        "floor": b,
        "band": b,
        "events": b,
        "kurt": b,
        "mod": b,
        "rhythm_peak": r,
        "rhythm_lag": r,
    }


def _finite(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _number(data: Mapping[str, Any], key: str) -> float:
    v = data.get(key)
    if not _finite(v):
        raise FieldError(key, f"expected a finite number, got {v!r}")
    return float(v)  # type: ignore[arg-type]


def _int(data: Mapping[str, Any], key: str) -> int:
    v = data.get(key)
    if not (isinstance(v, int) and not isinstance(v, bool) and v >= 1):
        raise FieldError(key, f"expected an integer >= 1, got {v!r}")
    return v


def _triple(data: Mapping[str, Any], key: str) -> tuple[float, float, float]:
    v = data.get(key)
    if not (isinstance(v, list) and len(v) == 3 and all(map(_finite, v))):
        raise FieldError(key, f"expected 3 finite numbers (p10, p50, p90), got {v!r}")
    return float(v[0]), float(v[1]), float(v[2])


def _stat(v: Any, name: str, n: int) -> Stat:
    if not isinstance(v, dict):
        raise FieldError(name, "expected an object with med, spread and hi")
    out = []
    for part in ("med", "spread", "hi"):
        x = v.get(part)
        if not (isinstance(x, list) and len(x) == n and all(map(_finite, x))):
            got = f"{len(x)} values" if isinstance(x, list) else repr(x)
            raise FieldError(f"{name}.{part}", f"expected {n} finite numbers, got {got}")
        out.append(np.asarray(x, np.float32))
    if np.any(out[1] <= 0):
        raise FieldError(f"{name}.spread", "expected numbers > 0")
    return Stat(out[0], out[1], out[2])


def content_edge(shape_db: NDArray[Any], lay: Layout) -> float:
    """The highest frequency with content: the top of the last run of bins within 60 dB of
    the spectrum's 95th percentile bin (a resampled or band-limited input sits 60-100 dB
    lower above its cut)."""
    s = np.asarray(shape_db, np.float64)
    ref = float(np.percentile(s, 95))
    alive = np.flatnonzero(s > ref - 60.0)
    return float(lay.freqs[alive[-1]] + lay.hz_per_bin / 2) if alive.size else 0.0


def wave_levels(wave: NDArray[Any], clip_level: float = 0.999) -> tuple[float, float, float]:
    """(RMS dBFS without the mean, peak dBFS, share of samples at or above `clip_level`): the
    sensor health check's levels (edge_agent.runtime.health), for callers without one."""
    x = np.asarray(wave, np.float64)
    rms = float(np.sqrt(np.mean((x - x.mean()) ** 2)))
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    clipped = float(np.count_nonzero(np.abs(x) >= clip_level)) / max(1, x.size)
    return (
        max(-120.0, 20 * math.log10(rms)) if rms > 0 else -120.0,
        max(-120.0, 20 * math.log10(peak)) if peak > 0 else -120.0,
        clipped,
    )
