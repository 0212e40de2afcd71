"""The classical embeddings of the spectrogram (numpy): band statistics, rhythm, dynamics,
modulation power, comodulation, the fine spectrum, the spectral stability and the onset rhythm.

Why a hand-made embedding next to the learned one. The paper's spectrogram branch sees the
STFT AFTER temporal mean normalisation, which removes every bin's average over the clip: a
steady change of the machine's spectral balance (a darker flow noise, a new steady hiss or
tone) is subtracted away by design. The spectrum branch sees it in principle, but on a plant's
amount of data (tens to hundreds of clips) it rarely learns to. Time statistics of the log
spectrogram capture exactly that balance, cost ~0.3 ms on top of the STFT the device computes
anyway, and need no training; the backend scores them like any embedding and fuses the
normalised scores with the learned ones (edge_agent.scoring.backend), so the hybrid keeps the
classical detector's strengths where the learned one is blind.

Band statistics (`band_stats`): the |STFT| power of each frame pooled into `n_bands`
log-spaced bands (from bin 2, ~31 Hz, up to Nyquist; every band at least one bin wide),
log-compressed, then the mean and the standard deviation of each band over the clip's frames:
a (2 * bands,) vector.

Rhythm (`rhythm`): presses, sliders, robots and valves work in cycles, and many of their
faults are temporal (an irregular or slowed cycle, a missed or added event). Neither the band
statistics nor a network trained to tell attribute classes apart see timing well. The
normalised autocorrelation of the log-energy envelope of a few broad frequency ranges, at
every frame lag up to `max_lag_s` seconds, describes the cycle: its peaks sit at the period
and its multiples, and an irregular machine has lower, smeared peaks.

Dynamics (`dynamics`): how each band's level moves, at every time scale from one frame to a
second. For `bands` log-spaced bands (as band statistics) and each frame lag d in `lags`, the
mean absolute change of the band's log power between frames d apart: the structure function
of the band's envelope, a classic descriptor of sound texture. A steady hum has small values
at every lag; a rattling bearing, a flapping belt or a loose cover raise the short lags of
the bands it excites; a slow surge raises the long lags. Band statistics keep only the mean
and the overall spread of each band, so a fault that keeps both and changes how fast the
level moves (a new roughness, a modulation, a smoother or choppier flow) is invisible to
them, and the learned spectrogram branch sees it only as far as its training task needed
to. Measured on five generator families (BENCHMARKS.md "A third classical component"): the
best single component on the suite's mean, and the fused system gains on every family.

Modulation power (`modulation`), comodulation (`comodulation`) and the fine spectrum
(`fine_spectrum`): at which pace each band's level swings, which bands swing together, and the
spectrum's peaks finer than a band (their class docstrings say what each sees). Each alone is
weaker than the dynamics; beside the four components before them they add what those miss
(slow wobbles, beating, a new independent source, a line that moves by a few bins), and the
per-section weighting (edge_agent.scoring.fusion) gives them little weight where they do not
separate a machine's sounds. Chosen leave-one-family-out as a set (BENCHMARKS.md "Three more
classical components"): +1.1 on the suite's mean, +2.7 on its worst family, no family
more than 0.1 lower.

Spectral stability (`stability`): how much the fine spectrum of each band changes from one
moment to the next. The only component made from the window's samples rather than the
frontend's |STFT|: it needs lines resolved to ~4 Hz (a 4096-point STFT), where the frontend's
1024 points give 16 Hz. A wobble, a frequency instability or a line turning to noise moves the
fine spectrum between frames while every band's level, movement and time-mean spectrum stay as
they were (BENCHMARKS.md "Spectral stability").

Onset rhythm (`onsets`): the rhythm's ranges and lags, autocorrelating each range's onset
strength (the rise of its log energy from one frame to the next) instead of the envelope
itself. An envelope swells and fades over a cycle, so its autocorrelation has broad peaks that
a few per cent of timing scatter hardly lowers; the onset strength is near zero between
events, so its peaks are as sharp as the events: a 10 ms scatter of a click train's times
lowers them two and a half times as much. It hears an irregular, slowed or stuttering cycle
that the rhythm half hears (BENCHMARKS.md "Onset rhythm"). The two read the same range
energies, computed once per window (`SharedInput`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import numpy as np
from numpy.typing import NDArray

from edge_agent.scoring.frontend import FrontendSpec, framed_magnitude, stft_magnitude

DEFAULT_BANDS = 64
LOG_EPS = 1e-10


def band_edges(spec: FrontendSpec, n_bands: int = DEFAULT_BANDS) -> NDArray[np.int64]:
    """Bin indices of the band edges: log-spaced from bin 2 to `n_bins`, duplicates merged
    (the low bands would otherwise be narrower than one bin)."""
    if n_bands < 1:
        raise ValueError(f"bands: expected >= 1, got {n_bands}")
    return np.unique(np.round(np.geomspace(2, spec.n_bins, n_bands + 1)).astype(np.int64))


def band_log_power(mag: NDArray[Any], edges: NDArray[np.int64]) -> NDArray[np.float32]:
    """(..., n_frames, len(edges) - 1) log mean power of each band in every |STFT| frame of
    `mag` (..., n_frames, n_bins)."""
    # float32 throughout: 7x faster than float64 on a Pi-class core, same features to 1e-6
    power = np.square(mag, dtype=np.float32)
    sums = np.add.reduceat(power, edges[:-1], axis=-1)[..., : len(edges) - 1]
    out: NDArray[np.float32] = np.log(
        sums / np.diff(edges).astype(np.float32) + np.float32(LOG_EPS)
    )
    return out


def band_stats_from_magnitude(mag: NDArray[Any], edges: NDArray[np.int64]) -> NDArray[np.float32]:
    """(..., 2 * (len(edges) - 1)) [time-mean, time-std] of log band power of |STFT| frames
    `mag` (..., n_frames, n_bins)."""
    return band_stats_from_bands(band_log_power(mag, edges))


def band_stats_from_bands(bands: NDArray[np.float32]) -> NDArray[np.float32]:
    """`band_stats_from_magnitude` from the log band powers (..., n_frames, n_bands)."""
    out: NDArray[np.float32] = np.concatenate(
        [bands.mean(axis=-2), bands.std(axis=-2)], axis=-1
    ).astype(np.float32)
    return out


def band_stats(
    wave: NDArray[Any], spec: FrontendSpec, n_bands: int = DEFAULT_BANDS
) -> NDArray[np.float32]:
    """The classical embedding of one clip (or a batch) of `spec.clip_samples` samples."""
    return band_stats_from_magnitude(stft_magnitude(wave, spec), band_edges(spec, n_bands))


RHYTHM_RANGES_HZ: tuple[tuple[float, float], ...] = (
    (50.0, 500.0),
    (500.0, 2000.0),
    (2000.0, 5000.0),
    (5000.0, 8000.0),
)
RHYTHM_MAX_LAG_S = 4.0


def rhythm_bins(spec: FrontendSpec, ranges_hz: Sequence[Sequence[float]]) -> list[tuple[int, int]]:
    """STFT bin slices of the frequency ranges (at least one bin each, within the spectrum)."""
    hz_per_bin = spec.sample_rate / spec.n_fft
    out = []
    for lo, hi in ranges_hz:
        a = min(int(lo / hz_per_bin), spec.n_bins - 1)
        out.append((a, max(a + 1, min(int(hi / hz_per_bin), spec.n_bins))))
    return out


def rhythm_lags(spec: FrontendSpec, max_lag_s: float = RHYTHM_MAX_LAG_S) -> int:
    """Frame lags the rhythm covers (at least 1, fewer than the clip's frames)."""
    return max(1, min(round(max_lag_s * spec.sample_rate / spec.hop), spec.n_frames - 1))


def range_log_energy(mag: NDArray[Any], bins: Sequence[tuple[int, int]]) -> NDArray[np.float64]:
    """(..., len(bins), n_frames) log energy of every range's bins per frame, from |STFT|
    frames `mag` (..., n_frames, n_bins): the envelopes the rhythm and the onsets read."""
    power = np.square(mag, dtype=np.float32)  # float32: see band_stats_from_magnitude
    return np.stack(
        [np.log(power[..., a:b].sum(axis=-1, dtype=np.float64) + LOG_EPS) for a, b in bins], axis=-2
    )


def envelope_acf(env: NDArray[np.float64], lags: int) -> NDArray[np.float32]:
    """(..., rows * lags) normalised autocorrelation (lags 1..`lags`, lag 0 = 1) of every
    mean-removed row of `env` (..., rows, n_frames), row-major."""
    n = env.shape[-1]
    env = env - env.mean(axis=-1, keepdims=True)
    spec2 = np.abs(np.fft.rfft(env, 2 * n, axis=-1)) ** 2
    ac = np.fft.irfft(spec2, axis=-1)[..., : lags + 1]
    acf = ac[..., 1:] / np.maximum(ac[..., :1], 1e-12)
    out: NDArray[np.float32] = acf.reshape(*acf.shape[:-2], -1).astype(np.float32)
    return out


def rhythm_from_magnitude(
    mag: NDArray[Any], bins: Sequence[tuple[int, int]], lags: int
) -> NDArray[np.float32]:
    """(..., len(bins) * lags) autocorrelation (lags 1..`lags`, lag 0 = 1) of every range's
    mean-removed log-energy envelope, from |STFT| frames `mag` (..., n_frames, n_bins)."""
    return envelope_acf(range_log_energy(mag, bins), lags)


def onsets_from_magnitude(
    mag: NDArray[Any], bins: Sequence[tuple[int, int]], lags: int
) -> NDArray[np.float32]:
    """(..., len(bins) * lags) autocorrelation (lags 1..`lags`) of every range's onset
    strength: the rise of its log energy from one frame to the next (falls count zero)."""
    return onsets_from_energy(range_log_energy(mag, bins), lags)


def onsets_from_energy(env: NDArray[np.float64], lags: int) -> NDArray[np.float32]:
    """`onsets_from_magnitude` from the ranges' log energies (..., ranges, n_frames)."""
    return envelope_acf(np.maximum(np.diff(env, axis=-1), 0.0), lags)


def rhythm(
    wave: NDArray[Any],
    spec: FrontendSpec,
    ranges_hz: Sequence[Sequence[float]] = RHYTHM_RANGES_HZ,
    max_lag_s: float = RHYTHM_MAX_LAG_S,
) -> NDArray[np.float32]:
    """The rhythm embedding of one clip (or a batch) of `spec.clip_samples` samples."""
    return rhythm_from_magnitude(
        stft_magnitude(wave, spec), rhythm_bins(spec, ranges_hz), rhythm_lags(spec, max_lag_s)
    )


DYNAMICS_BANDS = 32
DYNAMICS_LAGS: tuple[int, ...] = (1, 2, 4, 8, 16, 32)
"""Frame lags of the dynamics: 32 ms to 1 s at the default hop, an octave apart."""


def dynamics_from_magnitude(
    mag: NDArray[Any], edges: NDArray[np.int64], lags: Sequence[int]
) -> NDArray[np.float32]:
    """(..., len(lags) * (len(edges) - 1)) mean |change| of every band's log power between
    frames `lag` apart, lag by lag, from |STFT| frames `mag` (..., n_frames, n_bins)."""
    return dynamics_from_bands(band_log_power(mag, edges), lags)


def dynamics_from_bands(bands: NDArray[np.float32], lags: Sequence[int]) -> NDArray[np.float32]:
    """`dynamics_from_magnitude` from the log band powers (..., n_frames, n_bands)."""
    parts = [np.abs(bands[..., d:, :] - bands[..., :-d, :]).mean(axis=-2) for d in lags]
    out: NDArray[np.float32] = np.concatenate(parts, axis=-1).astype(np.float32)
    return out


def dynamics(
    wave: NDArray[Any],
    spec: FrontendSpec,
    n_bands: int = DYNAMICS_BANDS,
    lags: Sequence[int] = DYNAMICS_LAGS,
) -> NDArray[np.float32]:
    """The dynamics embedding of one clip (or a batch) of `spec.clip_samples` samples."""
    return dynamics_from_magnitude(stft_magnitude(wave, spec), band_edges(spec, n_bands), lags)


MODULATION_BANDS = 32
MODULATION_OCTAVES = 6
MODULATION_LOWEST_HZ = 0.25
"""The modulation spectrum's octaves: 0.25-0.5 Hz up to 8-16 Hz (6 octaves)."""
MODULATION_EPS = 1e-6


def modulation_bins(spec: FrontendSpec, lowest_hz: float, octaves: int) -> list[NDArray[np.bool_]]:
    """Per octave [lowest * 2^k, lowest * 2^(k+1)) Hz, the envelope-spectrum bins it holds;
    ValueError naming the field when an octave holds none (too slow for a window, or above
    the frame rate's Nyquist)."""
    freqs = np.fft.rfftfreq(spec.n_frames, d=spec.hop / spec.sample_rate)
    out = []
    for k in range(octaves):
        lo, hi = lowest_hz * 2**k, lowest_hz * 2 ** (k + 1)
        sel = (freqs >= lo) & (freqs < hi)
        if not sel.any():
            raise ValueError(
                f"octaves: the octave {lo:g}-{hi:g} Hz holds no envelope frequency of a "
                f"{spec.n_frames}-frame window at {spec.sample_rate / spec.hop:g} frames/s"
            )
        out.append(sel)
    return out


def modulation_from_magnitude(
    mag: NDArray[Any], edges: NDArray[np.int64], octaves: Sequence[NDArray[np.bool_]]
) -> NDArray[np.float32]:
    """(..., len(octaves) * (len(edges) - 1)) log mean power of every band's log-power
    envelope in each octave of modulation frequency, octave by octave, from |STFT| frames
    `mag` (..., n_frames, n_bins)."""
    return modulation_from_bands(band_log_power(mag, edges), octaves)


def modulation_from_bands(
    bands: NDArray[np.float32], octaves: Sequence[NDArray[np.bool_]]
) -> NDArray[np.float32]:
    """`modulation_from_magnitude` from the log band powers (..., n_frames, n_bands)."""
    b64 = bands.astype(np.float64)
    env = b64 - b64.mean(axis=-2, keepdims=True)
    power = np.abs(np.fft.rfft(env, axis=-2)) ** 2
    parts = [np.log(power[..., sel, :].mean(axis=-2) + MODULATION_EPS) for sel in octaves]
    out: NDArray[np.float32] = np.concatenate(parts, axis=-1).astype(np.float32)
    return out


COMODULATION_BANDS = 32
COMODULATION_GROUPS = 16


def comodulation_from_magnitude(
    mag: NDArray[Any], edges: NDArray[np.int64], groups: int
) -> NDArray[np.float32]:
    """(..., groups * (groups - 1) / 2) correlations between the log-power envelopes of
    `groups` merged neighbouring bands (the upper triangle, row by row), from |STFT| frames
    `mag` (..., n_frames, n_bins). A band whose level never moves (digital silence)
    correlates 0 with every other, never NaN."""
    return comodulation_from_bands(band_log_power(mag, edges), groups)


def comodulation_from_bands(bands: NDArray[np.float32], groups: int) -> NDArray[np.float32]:
    """`comodulation_from_magnitude` from the log band powers (..., n_frames, n_bands)."""
    b64 = bands.astype(np.float64)
    env = np.stack([g.mean(axis=-1) for g in np.array_split(b64, groups, axis=-1)], axis=-1)
    env = env - env.mean(axis=-2, keepdims=True)
    cov = np.einsum("...tf,...tg->...fg", env, env)
    sd = np.sqrt(np.diagonal(cov, axis1=-2, axis2=-1))
    denom = sd[..., :, None] * sd[..., None, :]
    corr = np.divide(cov, denom, out=np.zeros_like(cov), where=denom > 1e-12)
    rows, cols = np.triu_indices(groups, 1)
    out: NDArray[np.float32] = corr[..., rows, cols].astype(np.float32)
    return out


FINE_SPECTRUM_WIDTH = 9
FINE_SPECTRUM_FIRST_BIN = 2
"""As the bands: bins 0-1 (DC, ~16 Hz) carry no machine sound a microphone takes reliably."""


def fine_spectrum_from_magnitude(mag: NDArray[Any], width: int) -> NDArray[np.float32]:
    """(..., n_bins - 2) the time-mean log power spectrum minus its `width`-bin moving mean
    (edges repeated): the peaks and notches finer than a band, from bin 2, from |STFT|
    frames `mag` (..., n_frames, n_bins)."""
    # the log in float32 (8x faster than float64 on this x86; features equal to 2e-8), the
    # mean over frames in float64
    logp = np.log(np.square(mag, dtype=np.float32) + np.float32(LOG_EPS))
    ms = logp.mean(axis=-2, dtype=np.float64)
    half = width // 2
    padded = np.concatenate(
        [np.repeat(ms[..., :1], half, axis=-1), ms, np.repeat(ms[..., -1:], half, axis=-1)], axis=-1
    )
    csum = np.cumsum(np.concatenate([np.zeros_like(ms[..., :1]), padded], axis=-1), axis=-1)
    env = (csum[..., width:] - csum[..., :-width]) / width
    out: NDArray[np.float32] = (ms - env)[..., FINE_SPECTRUM_FIRST_BIN:].astype(np.float32)
    return out


STABILITY_N_FFT = 4096
STABILITY_HOP = 1024
STABILITY_BANDS = 12
STABILITY_LOWEST_HZ = 100.0
STABILITY_HIGHEST_HZ = 7000.0
STABILITY_LAGS = (1, 2, 4)
STABILITY_EPS = 1e-6


STABILITY_BLOCK = 32
"""Frames of the stability's |STFT| computed at once (`stability_from_wave`)."""


def stability_edges(
    sample_rate: int, n_fft: int, bands: int, lowest_hz: float, highest_hz: float
) -> NDArray[np.int64]:
    """Bin edges of `bands` log-spaced bands from `lowest_hz` to `highest_hz` of an `n_fft`
    STFT, duplicates merged (no band narrower than one bin)."""
    hz = np.geomspace(lowest_hz, highest_hz, bands + 1)
    return np.unique(np.round(hz / sample_rate * n_fft).astype(np.int64))


def stability_from_wave(
    wave: NDArray[Any], n_fft: int, hop: int, edges: NDArray[np.int64], lags: Sequence[int]
) -> NDArray[np.float32]:
    """(..., bands * lags) per band and frame lag d: log(1 - the mean cosine similarity of the
    band's |STFT| in frames d apart) of `wave` (..., n_samples); band-major. A steady line or
    noise keeps its fine spectrum (similarity near 1, a low value); a line that wobbles,
    wanders or turns to noise lowers the similarity at the lags of its movement."""
    x = np.asarray(wave, dtype=np.float32)
    frames = 1 + (x.shape[-1] - n_fft) // hop
    reach = max(lags)
    sims: list[list[NDArray[np.float32]]] = [[] for _ in lags]
    # frame blocks of STABILITY_BLOCK (and the `reach` frames after each, for the pairs that
    # straddle blocks): a whole window's 4096-point |STFT| at once held ~6 MB of transients,
    # most of a window's peak memory; each pair's similarity is the same either way
    for first in range(0, frames, STABILITY_BLOCK):
        last = min(first + STABILITY_BLOCK, frames)
        end = min(last + reach, frames)
        piece = x[..., first * hop : (end - 1) * hop + n_fft]
        _block_similarities(piece, n_fft, hop, edges, lags, last - first, sims)
    out = []
    for per_lag in sims:
        sim = np.concatenate(per_lag, axis=-2).mean(axis=-2, dtype=np.float64)
        out.append(np.log(1.0 - sim + STABILITY_EPS))
    # band-major: (..., bands, lags) flattened
    return np.stack(out, axis=-1).reshape(*x.shape[:-1], -1).astype(np.float32)


def _block_similarities(
    piece: NDArray[np.float32],
    n_fft: int,
    hop: int,
    edges: NDArray[np.int64],
    lags: Sequence[int],
    owned: int,
    sims: list[list[NDArray[np.float32]]],
) -> None:
    """Append to `sims[i]` the per-band cosine similarities of the frame pairs (t, t + lags[i])
    whose first frame t is one of the block's first `owned` frames of `piece`."""
    mag = framed_magnitude(piece, n_fft, hop)[..., edges[0] : edges[-1]]
    n = mag.shape[-2]
    # per band: sums over its bins (reduceat), float32 products (2x faster than float64; the
    # similarities agree to 1e-6), the mean over frame pairs (the caller) in float64
    starts = edges[:-1] - edges[0]
    norm = np.sqrt(np.add.reduceat(mag * mag, starts, axis=-1)) + np.float32(1e-12)
    for i, d in enumerate(lags):
        pairs = min(owned, n - d)
        if pairs <= 0:
            continue
        a, b = mag[..., :pairs, :], mag[..., d : d + pairs, :]
        dot = np.add.reduceat(a * b, starts, axis=-1)
        sims[i].append(dot / (norm[..., :pairs, :] * norm[..., d : d + pairs, :]))


@dataclass(frozen=True)
class SharedInput:
    """An intermediate of a window's |STFT| that several components read: the log band powers
    on the same edges (dynamics, modulation power, comodulation), the log energies of the same
    ranges (rhythm, onsets). The scorer's WindowFeatures makes it once per window per `key`."""

    key: str
    """Equal keys, equal arrays: the kind of intermediate and its parameters."""
    make: Callable[[NDArray[Any]], NDArray[Any]]
    """The intermediate of a window's |STFT| (..., n_frames, n_bins)."""


def bands_input(edges: NDArray[np.int64]) -> SharedInput:
    """The log band powers on `edges` (`band_log_power`) as a shared input."""
    return SharedInput(f"bands:{edges.tobytes().hex()}", lambda mag: band_log_power(mag, edges))


def ranges_input(bins: Sequence[tuple[int, int]]) -> SharedInput:
    """The log energies of the ranges `bins` (`range_log_energy`) as a shared input."""
    key = f"ranges:{[(int(a), int(b)) for a, b in bins]}"
    return SharedInput(key, lambda mag: range_log_energy(mag, bins))


@dataclass(frozen=True)
class ClassicalFeature:
    """One classical component as the bundle describes it: a function of a window's |STFT|."""

    entry: dict[str, Any]
    """The manifest entry (kind, parameters, dim)."""
    fn: Callable[[NDArray[Any]], NDArray[np.float32]]
    """The feature of a window's |STFT| (..., n_frames, n_bins), or with `wave` of its
    samples (..., clip_samples)."""
    dim: int
    shared: SharedInput | None = None
    """The intermediate of the |STFT| it is made of, when other components read it too (None:
    made from the |STFT| alone)."""
    from_shared: Callable[[NDArray[Any]], NDArray[np.float32]] | None = None
    """The same feature from that intermediate, so the components on it share one per window
    (the scorer's WindowFeatures keeps it); `fn` = this of `shared.make(mag)`."""
    wave: bool = False
    """`fn` reads the window's samples, not the frontend's |STFT| (a finer resolution)."""


class ClassicalKind(Protocol):
    """A classical component kind: its typed parameters, read from a manifest entry (one
    ValueError naming the field when they are wrong), and the feature they make."""

    kind: ClassVar[str]

    @classmethod
    def from_entry(cls, entry: Mapping[str, Any]) -> ClassicalKind: ...

    def to_entry(self) -> dict[str, Any]: ...

    def feature(self, spec: FrontendSpec) -> ClassicalFeature: ...


def _int_field(entry: Mapping[str, Any], field: str, least: int) -> int:
    """`entry[field]` as an integer >= `least`; ValueError naming the field otherwise."""
    n = entry.get(field)
    if not isinstance(n, int) or isinstance(n, bool) or n < least:
        raise ValueError(f"{field}: expected an integer >= {least}, got {n!r}")
    return n


@dataclass(frozen=True)
class Bands:
    """Band statistics: time-mean and time-std of the log power of `bands` log-spaced bands."""

    kind: ClassVar[str] = "bands"
    bands: int = DEFAULT_BANDS
    """Log-spaced bands from ~31 Hz to Nyquist (merged where narrower than one bin)."""

    @classmethod
    def from_entry(cls, entry: Mapping[str, Any]) -> Bands:
        return cls(_int_field(entry, "bands", 1))

    def to_entry(self) -> dict[str, Any]:
        return {"kind": self.kind, "bands": self.bands}

    def feature(self, spec: FrontendSpec) -> ClassicalFeature:
        edges = band_edges(spec, self.bands)
        dim = 2 * (len(edges) - 1)
        return ClassicalFeature(
            {**self.to_entry(), "dim": dim},
            lambda mag: band_stats_from_magnitude(mag, edges),
            dim,
            bands_input(edges),
            band_stats_from_bands,
        )


@dataclass(frozen=True)
class Rhythm:
    """Rhythm: autocorrelation of the log-energy envelope of broad frequency ranges."""

    kind: ClassVar[str] = "rhythm"
    ranges_hz: tuple[tuple[float, float], ...] = RHYTHM_RANGES_HZ
    """The frequency ranges whose envelopes are autocorrelated, [low, high] Hz each."""
    max_lag_s: float = RHYTHM_MAX_LAG_S
    """The longest lag (seconds): the slowest cycle the component describes."""

    @classmethod
    def from_entry(cls, entry: Mapping[str, Any]) -> Rhythm:
        ranges = entry.get("ranges_hz")
        lag_s = entry.get("max_lag_s")
        if not (
            isinstance(ranges, list)
            and ranges
            and all(isinstance(r, list) and len(r) == 2 and 0 <= r[0] < r[1] for r in ranges)
        ):
            raise ValueError(f"ranges_hz: expected a list of [low, high] Hz pairs, got {ranges!r}")
        if not isinstance(lag_s, int | float) or isinstance(lag_s, bool) or lag_s <= 0:
            raise ValueError(f"max_lag_s: expected a positive number, got {lag_s!r}")
        return cls(tuple((float(lo), float(hi)) for lo, hi in ranges), float(lag_s))

    def to_entry(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "ranges_hz": [list(r) for r in self.ranges_hz],
            "max_lag_s": self.max_lag_s,
        }

    def feature(self, spec: FrontendSpec) -> ClassicalFeature:
        bins, lags = rhythm_bins(spec, self.ranges_hz), rhythm_lags(spec, self.max_lag_s)
        dim = len(bins) * lags
        return ClassicalFeature(
            {**self.to_entry(), "dim": dim},
            lambda mag: rhythm_from_magnitude(mag, bins, lags),
            dim,
            ranges_input(bins),
            lambda env: envelope_acf(env, lags),
        )


@dataclass(frozen=True)
class Onsets:
    """Onset rhythm: autocorrelation of the onset strength of broad frequency ranges.

    The rhythm autocorrelates each range's log-energy envelope: a cycle's slow swell gives
    broad peaks, which a few per cent of timing scatter hardly lowers. The onset strength (the
    rise of the envelope from one frame to the next, falls counted as zero) is near zero
    between events and peaks at each one, so its autocorrelation has sharp peaks at the
    intervals between events: an irregular, slowed or stuttering cycle, a missed or added
    event smears, moves or lowers them (BENCHMARKS.md "Onset rhythm")."""

    kind: ClassVar[str] = "onsets"
    ranges_hz: tuple[tuple[float, float], ...] = RHYTHM_RANGES_HZ
    """The frequency ranges whose onsets are autocorrelated, [low, high] Hz each (the
    rhythm's)."""
    max_lag_s: float = RHYTHM_MAX_LAG_S
    """The longest lag (seconds): the longest interval between events described."""

    @classmethod
    def from_entry(cls, entry: Mapping[str, Any]) -> Onsets:
        rhythm = Rhythm.from_entry(entry)  # the same two fields, checked alike
        return cls(rhythm.ranges_hz, rhythm.max_lag_s)

    def to_entry(self) -> dict[str, Any]:
        return {**Rhythm(self.ranges_hz, self.max_lag_s).to_entry(), "kind": self.kind}

    def feature(self, spec: FrontendSpec) -> ClassicalFeature:
        # one frame fewer than the rhythm's envelope: the onsets are its differences
        bins = rhythm_bins(spec, self.ranges_hz)
        lags = min(rhythm_lags(spec, self.max_lag_s), max(1, spec.n_frames - 2))
        dim = len(bins) * lags
        return ClassicalFeature(
            {**self.to_entry(), "dim": dim},
            lambda mag: onsets_from_magnitude(mag, bins, lags),
            dim,
            ranges_input(bins),
            lambda env: onsets_from_energy(env, lags),
        )


@dataclass(frozen=True)
class Dynamics:
    """Dynamics: mean |change| of each band's log power over frame lags (module docstring)."""

    kind: ClassVar[str] = "dynamics"
    bands: int = DYNAMICS_BANDS
    """Log-spaced bands from ~31 Hz to Nyquist (merged where narrower than one bin)."""
    lags: tuple[int, ...] = DYNAMICS_LAGS
    """Frame lags (one hop each: 32 ms at the default frontend), each shorter than a window."""

    @classmethod
    def from_entry(cls, entry: Mapping[str, Any]) -> Dynamics:
        n, lags = _int_field(entry, "bands", 1), entry.get("lags")
        if not (
            isinstance(lags, list)
            and lags
            and all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in lags)
        ):
            raise ValueError(f"lags: expected a list of frame lags >= 1, got {lags!r}")
        return cls(n, tuple(lags))

    def to_entry(self) -> dict[str, Any]:
        return {"kind": self.kind, "bands": self.bands, "lags": list(self.lags)}

    def feature(self, spec: FrontendSpec) -> ClassicalFeature:
        if max(self.lags) >= spec.n_frames:
            raise ValueError(
                f"lags: expected lags shorter than a window's {spec.n_frames} frames, "
                f"got {max(self.lags)}"
            )
        edges, lags = band_edges(spec, self.bands), self.lags
        dim = len(lags) * (len(edges) - 1)
        return ClassicalFeature(
            {**self.to_entry(), "dim": dim},
            lambda mag: dynamics_from_magnitude(mag, edges, lags),
            dim,
            bands_input(edges),
            lambda bands: dynamics_from_bands(bands, lags),
        )


@dataclass(frozen=True)
class Modulation:
    """Modulation power: how strongly each band's level swings at each pace, 0.25-16 Hz.

    Per band (as the dynamics), the power spectrum of the log-power envelope over the window,
    averaged in octaves of modulation frequency and log-compressed. The dynamics say how far
    a level moves within a lag; this says at which pace it swings, so a slow wobble, a belt's
    flap or a beating pair of tones shows as a peak in its octave even where the mean change
    is the same. Chosen with the next two by leave-one-family-out (BENCHMARKS.md "Three more
    classical components")."""

    kind: ClassVar[str] = "modulation"
    bands: int = MODULATION_BANDS
    """Log-spaced bands from ~31 Hz to Nyquist (merged where narrower than one bin)."""
    octaves: int = MODULATION_OCTAVES
    """Octaves of modulation frequency, from `lowest_hz` up."""
    lowest_hz: float = MODULATION_LOWEST_HZ
    """The lower edge of the slowest octave (Hz); every octave must hold an envelope bin."""

    @classmethod
    def from_entry(cls, entry: Mapping[str, Any]) -> Modulation:
        n, k = _int_field(entry, "bands", 1), _int_field(entry, "octaves", 1)
        lo = entry.get("lowest_hz")
        if not isinstance(lo, int | float) or isinstance(lo, bool) or not lo > 0:
            raise ValueError(f"lowest_hz: expected a positive number, got {lo!r}")
        return cls(n, k, float(lo))

    def to_entry(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "bands": self.bands,
            "octaves": self.octaves,
            "lowest_hz": self.lowest_hz,
        }

    def feature(self, spec: FrontendSpec) -> ClassicalFeature:
        edges = band_edges(spec, self.bands)
        octaves = modulation_bins(spec, self.lowest_hz, self.octaves)
        dim = len(octaves) * (len(edges) - 1)
        return ClassicalFeature(
            {**self.to_entry(), "dim": dim},
            lambda mag: modulation_from_magnitude(mag, edges, octaves),
            dim,
            bands_input(edges),
            lambda bands: modulation_from_bands(bands, octaves),
        )


@dataclass(frozen=True)
class Comodulation:
    """Comodulation: which parts of the spectrum rise and fall together.

    The log-power envelopes of `bands` bands merged into `groups` neighbouring groups, and
    their correlations over the window. One source (a motor, a flow) moves all of its bands
    together; a new, independent source (a rub, a leak, a loose part) breaks those
    correlations while every band's level and movement may stay as they were."""

    kind: ClassVar[str] = "comodulation"
    bands: int = COMODULATION_BANDS
    """Log-spaced bands from ~31 Hz to Nyquist (merged where narrower than one bin)."""
    groups: int = COMODULATION_GROUPS
    """Neighbouring bands are averaged into this many groups (2 or more, at most the bands)."""

    @classmethod
    def from_entry(cls, entry: Mapping[str, Any]) -> Comodulation:
        return cls(_int_field(entry, "bands", 1), _int_field(entry, "groups", 2))

    def to_entry(self) -> dict[str, Any]:
        return {"kind": self.kind, "bands": self.bands, "groups": self.groups}

    def feature(self, spec: FrontendSpec) -> ClassicalFeature:
        edges, groups = band_edges(spec, self.bands), self.groups
        if groups > len(edges) - 1:
            raise ValueError(
                f"groups: expected at most the {len(edges) - 1} bands there are, got {groups}"
            )
        dim = groups * (groups - 1) // 2
        return ClassicalFeature(
            {**self.to_entry(), "dim": dim},
            lambda mag: comodulation_from_magnitude(mag, edges, groups),
            dim,
            bands_input(edges),
            lambda bands: comodulation_from_bands(bands, groups),
        )


@dataclass(frozen=True)
class FineSpectrum:
    """Fine spectrum: the clip's peaks and notches narrower than a band.

    The time-mean log power spectrum minus its own moving mean over `width` bins. Bands
    average a new tone, a shifted harmonic or a moved resonance together with its
    neighbours; here a line that moves by a few bins, or appears within a band without
    changing its power much, stands out, while an overall change of level or tilt cancels."""

    kind: ClassVar[str] = "fine_spectrum"
    width: int = FINE_SPECTRUM_WIDTH
    """Bins of the moving mean that is subtracted (odd, 3 or more)."""

    @classmethod
    def from_entry(cls, entry: Mapping[str, Any]) -> FineSpectrum:
        w = _int_field(entry, "width", 3)
        if w % 2 == 0:
            raise ValueError(f"width: expected an odd number of bins, got {w}")
        return cls(w)

    def to_entry(self) -> dict[str, Any]:
        return {"kind": self.kind, "width": self.width}

    def feature(self, spec: FrontendSpec) -> ClassicalFeature:
        if self.width >= spec.n_bins:
            raise ValueError(f"width: expected fewer than {spec.n_bins} bins, got {self.width}")
        width, dim = self.width, spec.n_bins - FINE_SPECTRUM_FIRST_BIN
        return ClassicalFeature(
            {**self.to_entry(), "dim": dim},
            lambda mag: fine_spectrum_from_magnitude(mag, width),
            dim,
        )


@dataclass(frozen=True)
class Stability:
    """Spectral stability: how much each band's fine spectrum changes between moments.

    Per band (`bands` log-spaced from `lowest_hz` to `highest_hz`) and frame lag d in `lags`,
    log(1 - the mean cosine similarity of the band's |STFT| in frames d apart), from an
    `n_fft`-point STFT of the window's samples (hop `hop`). The time-mean fine spectrum keeps
    a line's average place and the dynamics its level's movement; neither sees the line
    itself wobble by a few Hz at a few Hz, wander, or turn to noise, which this does."""

    kind: ClassVar[str] = "stability"
    n_fft: int = STABILITY_N_FFT
    """STFT length (samples): 4096 at 16 kHz resolves lines ~4 Hz apart."""
    hop: int = STABILITY_HOP
    """STFT hop (samples): one frame lag is 64 ms at 16 kHz."""
    bands: int = STABILITY_BANDS
    """Log-spaced bands (merged where narrower than one bin)."""
    lowest_hz: float = STABILITY_LOWEST_HZ
    """The lower edge of the lowest band (Hz)."""
    highest_hz: float = STABILITY_HIGHEST_HZ
    """The upper edge of the highest band (Hz, at most half the sample rate)."""
    lags: tuple[int, ...] = STABILITY_LAGS
    """Frame lags compared (hops): 1, 2, 4 are 64-256 ms, a wobble's half period at 2-8 Hz."""

    @classmethod
    def from_entry(cls, entry: Mapping[str, Any]) -> Stability:
        n_fft, hop = _int_field(entry, "n_fft", 16), _int_field(entry, "hop", 1)
        bands, lags = _int_field(entry, "bands", 1), entry.get("lags")
        lo, hi = entry.get("lowest_hz"), entry.get("highest_hz")
        for name, v in (("lowest_hz", lo), ("highest_hz", hi)):
            if not isinstance(v, int | float) or isinstance(v, bool) or not v > 0:
                raise ValueError(f"{name}: expected a positive number, got {v!r}")
        assert isinstance(lo, int | float) and isinstance(hi, int | float)
        if not lo < hi:
            raise ValueError(f"highest_hz: expected more than lowest_hz ({lo}), got {hi}")
        if not (
            isinstance(lags, list)
            and lags
            and all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in lags)
        ):
            raise ValueError(f"lags: expected a list of frame lags >= 1, got {lags!r}")
        return cls(n_fft, hop, bands, float(lo), float(hi), tuple(lags))

    def to_entry(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "n_fft": self.n_fft,
            "hop": self.hop,
            "bands": self.bands,
            "lowest_hz": self.lowest_hz,
            "highest_hz": self.highest_hz,
            "lags": list(self.lags),
        }

    def feature(self, spec: FrontendSpec) -> ClassicalFeature:
        if self.n_fft > spec.clip_samples:
            raise ValueError(
                f"n_fft: expected at most a window's {spec.clip_samples} samples, got {self.n_fft}"
            )
        if self.highest_hz > spec.sample_rate / 2:
            raise ValueError(
                f"highest_hz: expected at most half the sample rate ({spec.sample_rate / 2:g}), "
                f"got {self.highest_hz:g}"
            )
        frames = 1 + (spec.clip_samples - self.n_fft) // self.hop
        if max(self.lags) >= frames:
            raise ValueError(
                f"lags: expected lags shorter than a window's {frames} frames, got {max(self.lags)}"
            )
        edges = stability_edges(
            spec.sample_rate, self.n_fft, self.bands, self.lowest_hz, self.highest_hz
        )
        n_fft, hop, lags = self.n_fft, self.hop, self.lags
        dim = (len(edges) - 1) * len(lags)
        return ClassicalFeature(
            {**self.to_entry(), "dim": dim},
            lambda wave: stability_from_wave(wave, n_fft, hop, edges, lags),
            dim,
            wave=True,
        )


KINDS: dict[str, type[ClassicalKind]] = {
    k.kind: k
    for k in (Bands, Rhythm, Dynamics, Modulation, Comodulation, FineSpectrum, Stability, Onsets)
}
"""kind -> its parameters: the one table a new classical component is added to."""
CLASSICAL_KINDS = tuple(KINDS)


def classical_feature(entry: Mapping[str, Any], spec: FrontendSpec) -> ClassicalFeature:
    """The feature a manifest entry describes; ValueError naming the field when it is bad."""
    kind = KINDS.get(str(entry.get("kind")))
    if kind is None:
        raise ValueError(f"kind: expected one of {CLASSICAL_KINDS}, got {entry.get('kind')!r}")
    return kind.from_entry(entry).feature(spec)


DEFAULT_CLASSICAL: tuple[dict[str, Any], ...] = (
    Bands().to_entry(),
    Rhythm().to_entry(),
    Dynamics().to_entry(),
    Modulation().to_entry(),
    Comodulation().to_entry(),
    FineSpectrum().to_entry(),
    Stability().to_entry(),
    Onsets().to_entry(),
)
"""The classical components of the shipped system, in component order (a new one goes last:
benchmarks/quality.py caches features by their place here)."""


def classical_features(
    spec: FrontendSpec, entries: Sequence[Mapping[str, Any]] = DEFAULT_CLASSICAL
) -> list[ClassicalFeature]:
    return [classical_feature(e, spec) for e in entries]
