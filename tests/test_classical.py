"""edge_agent.scoring.classical: the band statistics, rhythm, dynamics, modulation power,
comodulation, fine spectrum, spectral stability and onset rhythm the device computes next to
the learned model."""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import numpy as np
import pytest

from edge_agent.scoring.classical import (
    DEFAULT_CLASSICAL,
    KINDS,
    Onsets,
    Stability,
    band_edges,
    band_log_power,
    band_stats,
    band_stats_from_magnitude,
    bands_input,
    classical_feature,
    classical_features,
    comodulation_from_magnitude,
    dynamics,
    fine_spectrum_from_magnitude,
    modulation_bins,
    modulation_from_magnitude,
    ranges_input,
    rhythm,
    rhythm_bins,
    stability_edges,
)
from edge_agent.scoring.frontend import DEFAULT_SPEC, stft_magnitude

T = np.arange(160_000) / 16_000
STABLE: dict[str, Any] = Stability().to_entry()
EVERY_KIND = [kind().to_entry() for kind in KINDS.values()]
"""Every classical kind with its default parameters (the shipped set and the others)."""


def test_band_edges_are_log_spaced_strictly_increasing_and_cover_the_spectrum() -> None:
    edges = band_edges(DEFAULT_SPEC, 64)
    assert edges[0] == 2 and edges[-1] == DEFAULT_SPEC.n_bins
    assert np.all(np.diff(edges) >= 1)
    widths = np.diff(edges)
    assert widths[-1] > 20 * widths[0]  # log spacing: high bands are far wider
    assert len(edges) - 1 == 53  # the narrowest low bands merge into one-bin bands
    with pytest.raises(ValueError, match="bands"):
        band_edges(DEFAULT_SPEC, 0)


def test_band_stats_match_a_plain_numpy_reference() -> None:
    x = (0.05 * np.random.default_rng(0).standard_normal(160_000)).astype(np.float32)
    f = band_stats(x, DEFAULT_SPEC)
    edges = band_edges(DEFAULT_SPEC)
    win = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(1024) / 1024)
    frames = np.stack([x[i * 512 : i * 512 + 1024] * win for i in range(311)])
    power = np.abs(np.fft.rfft(frames, axis=-1)) ** 2
    bands = np.log(np.stack([power[:, a:b].mean(1) for a, b in pairwise(edges)], 1) + 1e-10)
    np.testing.assert_allclose(f, np.r_[bands.mean(0), bands.std(0)], rtol=1e-4, atol=1e-4)
    batch = band_stats(np.stack([x, 2 * x]), DEFAULT_SPEC)
    assert batch.shape == (2, 106)
    # a gain of 2 adds log(4) to every band mean and leaves the stds alone
    np.testing.assert_allclose(batch[1, :53] - batch[0, :53], np.log(4.0), atol=1e-3)
    np.testing.assert_allclose(batch[1, 53:], batch[0, 53:], atol=1e-3)


def test_a_tone_raises_its_band_and_a_burst_raises_the_time_spread() -> None:
    noise = (0.01 * np.random.default_rng(1).standard_normal(160_000)).astype(np.float32)
    base = band_stats(noise, DEFAULT_SPEC)
    edges = band_edges(DEFAULT_SPEC)
    tone_bin = 1000 * 1024 // 16_000  # 1 kHz
    band = int(np.searchsorted(edges, tone_bin, side="right") - 1)
    tone = band_stats(noise + 0.05 * np.sin(2 * np.pi * 1000 * T).astype(np.float32), DEFAULT_SPEC)
    rise = tone[:53] - base[:53]
    assert int(np.argmax(rise)) == band and rise[band] > 3.0
    burst = noise.copy()
    burst[80_000:84_000] += 0.5 * np.random.default_rng(2).standard_normal(4000).astype(np.float32)
    assert np.all(band_stats(burst, DEFAULT_SPEC)[53:] > base[53:])


def test_silence_gives_finite_features_and_magnitude_input_is_shared() -> None:
    z = np.zeros(160_000, np.float32)
    f = band_stats(z, DEFAULT_SPEC)
    assert np.all(np.isfinite(f)) and np.allclose(f[:53], np.log(1e-10))
    x = np.random.default_rng(3).standard_normal(160_000).astype(np.float32)
    np.testing.assert_array_equal(
        band_stats(x, DEFAULT_SPEC),
        band_stats_from_magnitude(stft_magnitude(x, DEFAULT_SPEC), band_edges(DEFAULT_SPEC)),
    )


def _clicks(period_s: float, jitter_s: float = 0.0, seed: int = 0) -> np.ndarray:
    """Clicks (2 kHz bursts) every `period_s` seconds over low noise, optionally jittered."""
    rng = np.random.default_rng(seed)
    x = 0.001 * rng.standard_normal(160_000)
    t = 0.1
    while t < 9.9:
        i = int((t + rng.normal(0, jitter_s)) * 16_000) if jitter_s else int(t * 16_000)
        i = max(0, min(i, 160_000 - 800))
        x[i : i + 800] += np.sin(2 * np.pi * 2000 * np.arange(800) / 16_000) * np.hanning(800)
        t += period_s
    return x.astype(np.float32)


def test_rhythm_peaks_at_the_cycle_period_and_irregular_cycles_lower_the_peaks() -> None:
    lags = 125
    r = rhythm(_clicks(0.8), DEFAULT_SPEC)
    assert r.shape == (4 * lags,)
    mid = r[lags : 2 * lags]  # 500-2000 Hz holds the 2 kHz click's energy (its lower half)
    period_frames = round(0.8 * 16_000 / 512)  # 25
    peak = int(np.argmax(mid[10:40])) + 10 + 1  # lag index -> lag in frames
    assert abs(peak - period_frames) <= 1
    jittered = rhythm(_clicks(0.8, jitter_s=0.08), DEFAULT_SPEC)[lags : 2 * lags]
    assert jittered[3 * period_frames - 1] < mid[3 * period_frames - 1] - 0.2
    assert rhythm_bins(DEFAULT_SPEC, [[50, 500]]) == [(3, 32)]


def test_onsets_peak_at_the_event_interval_and_hear_a_timing_scatter_the_rhythm_hardly_does() -> (
    None
):
    """A click every 0.8 s: both the rhythm and the onsets peak at the interval (25 frames).
    A 10 ms scatter of the clicks' times (1 % of the interval) lowers the rhythm's peak a
    little, the onsets' (sharp: near zero between events) by much more."""
    onsets = Onsets().feature(DEFAULT_SPEC)
    lags, at = 125, round(0.8 * 16_000 / 512) - 1  # lag 25 frames -> index 24

    def both(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mid = slice(lags, 2 * lags)  # 500-2000 Hz: the clicks' range
        return rhythm(x, DEFAULT_SPEC)[mid], onsets.fn(stft_magnitude(x, DEFAULT_SPEC))[mid]

    assert onsets.dim == 4 * lags
    r, o = both(_clicks(0.8))
    assert int(np.argmax(o[10:40])) + 10 == at
    rj, oj = both(_clicks(0.8, jitter_s=0.01))
    assert o[at] - oj[at] > 0.1
    assert o[at] - oj[at] > 2 * (r[at] - rj[at])
    # the same fields as the rhythm's, checked alike
    assert Onsets.from_entry(Onsets().to_entry()) == Onsets()


def test_classical_entries_validate_and_describe_their_dims() -> None:
    feats = classical_features(DEFAULT_SPEC)
    assert [f.entry["kind"] for f in feats] == [e["kind"] for e in DEFAULT_CLASSICAL]
    assert [f.dim for f in feats] == [106, 500, 180, 180, 120, 511, 36, 500]
    x = np.random.default_rng(4).standard_normal(160_000).astype(np.float32)
    mag = stft_magnitude(x, DEFAULT_SPEC)
    np.testing.assert_array_equal(feats[1].fn(mag), rhythm(x, DEFAULT_SPEC))
    np.testing.assert_array_equal(feats[2].fn(mag), dynamics(x, DEFAULT_SPEC))
    cases: list[tuple[dict[str, Any], str]] = [
        ({"kind": "bands", "bands": 0}, "bands"),
        ({"kind": "dynamics", "bands": 32, "lags": []}, "lags"),
        ({"kind": "dynamics", "bands": 32, "lags": [1, 0]}, "lags"),
        ({"kind": "dynamics", "bands": 32, "lags": [1, True]}, "lags"),
        ({"kind": "dynamics", "bands": 32, "lags": [1, 311]}, "lags"),
        ({"kind": "dynamics", "bands": -1, "lags": [1]}, "bands"),
        ({"kind": "rhythm", "ranges_hz": [[5, 1]], "max_lag_s": 4}, "ranges_hz"),
        ({"kind": "rhythm", "ranges_hz": [[5, 10]], "max_lag_s": -1}, "max_lag_s"),
        ({"kind": "onsets", "ranges_hz": [[5, 1]], "max_lag_s": 4}, "ranges_hz"),
        ({"kind": "onsets", "ranges_hz": [[5, 10]], "max_lag_s": 0}, "max_lag_s"),
        ({"kind": "modulation", "bands": 32, "octaves": 7, "lowest_hz": 0.25}, "octaves"),
        ({"kind": "modulation", "bands": 32, "octaves": 1, "lowest_hz": 0.01}, "octaves"),
        ({"kind": "modulation", "bands": 32, "octaves": 6, "lowest_hz": 0}, "lowest_hz"),
        ({"kind": "modulation", "bands": 0, "octaves": 6, "lowest_hz": 0.25}, "bands"),
        ({"kind": "comodulation", "bands": 32, "groups": 1}, "groups"),
        ({"kind": "comodulation", "bands": 8, "groups": 9}, "groups"),
        ({"kind": "comodulation", "bands": 32}, "groups"),
        ({"kind": "fine_spectrum", "width": 8}, "width"),
        ({"kind": "fine_spectrum", "width": 1}, "width"),
        ({"kind": "fine_spectrum", "width": 601}, "width"),
        ({"kind": "fine_spectrum", "width": 9.0}, "width"),
        ({**STABLE, "n_fft": 8}, "n_fft"),
        ({**STABLE, "n_fft": 160_001}, "n_fft"),
        ({**STABLE, "hop": 0}, "hop"),
        ({**STABLE, "bands": 0}, "bands"),
        ({**STABLE, "lowest_hz": -1}, "lowest_hz"),
        ({**STABLE, "highest_hz": 9000.0}, "highest_hz"),
        ({**STABLE, "highest_hz": 50.0}, "highest_hz"),
        ({**STABLE, "lags": [1, 0]}, "lags"),
        ({**STABLE, "lags": [1, 153]}, "lags"),
        ({**STABLE, "lags": "1"}, "lags"),
        ({"kind": "mfcc"}, "kind"),
    ]
    for bad, field in cases:
        with pytest.raises(ValueError, match=field):
            classical_feature(bad, DEFAULT_SPEC)


def _am_noise(rate_hz: float, depth: float, seed: int = 5) -> np.ndarray:
    """White noise whose level switches between (1 - depth) and (1 + depth) at `rate_hz`
    (a square-wave modulation; depth 0: steady)."""
    noise = 0.05 * np.random.default_rng(seed).standard_normal(160_000)
    return (noise * (1 + depth * np.sign(np.sin(2 * np.pi * rate_hz * T + 0.1)))).astype(np.float32)


def test_dynamics_match_a_plain_numpy_reference() -> None:
    x = _am_noise(2.0, 0.5)
    f = dynamics(x, DEFAULT_SPEC, 32, (1, 4))
    edges = band_edges(DEFAULT_SPEC, 32)
    win = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(1024) / 1024)
    frames = np.stack([x[i * 512 : i * 512 + 1024] * win for i in range(311)])
    power = np.abs(np.fft.rfft(frames.astype(np.float64), axis=-1)) ** 2
    bands = np.log(np.stack([power[:, a:b].mean(1) for a, b in pairwise(edges)], 1) + 1e-10)
    ref = np.r_[np.abs(bands[1:] - bands[:-1]).mean(0), np.abs(bands[4:] - bands[:-4]).mean(0)]
    np.testing.assert_allclose(f, ref, rtol=1e-3, atol=1e-3)
    mag = stft_magnitude(x, DEFAULT_SPEC)
    np.testing.assert_allclose(band_log_power(mag, edges), bands, rtol=1e-3, atol=1e-3)
    assert dynamics(np.stack([x, x]), DEFAULT_SPEC).shape == (2, 180)


def test_dynamics_see_a_modulation_that_leaves_band_statistics_alone() -> None:
    """The fault band statistics cannot see: the same two levels in the same proportion,
    switching at another pace. Every band's time-mean and time-std stay within 0.4 (of a
    spread of ~2.3), and dynamics tell the two apart by lag: the 2 Hz switching changes the
    level over 4-8 frames (128-256 ms, within its 250 ms half cycle), the 0.25 Hz one over
    32 frames (1 s)."""
    slow, fast = _am_noise(0.25, 0.8), _am_noise(2.0, 0.8)
    bs, bf = band_stats(slow, DEFAULT_SPEC, 32), band_stats(fast, DEFAULT_SPEC, 32)
    assert np.abs(bs - bf).max() < 0.4
    lags = (1, 2, 4, 8, 16, 32)
    ds = dynamics(slow, DEFAULT_SPEC, 32, lags).reshape(len(lags), -1)
    df = dynamics(fast, DEFAULT_SPEC, 32, lags).reshape(len(lags), -1)
    assert np.all(df[2:4] > ds[2:4] + 1.0)
    assert np.all(ds[5] > df[5] + 0.4)
    steady = dynamics(_am_noise(1.0, 0.0), DEFAULT_SPEC, 32, lags).reshape(len(lags), -1)
    assert np.all(ds[2:] > steady[2:]) and np.all(df[:4] > steady[:4])
    # a gain changes no dynamics: they are differences of log powers
    np.testing.assert_allclose(
        dynamics(3 * fast, DEFAULT_SPEC), dynamics(fast, DEFAULT_SPEC), atol=1e-3
    )


def test_silence_and_a_batch_give_the_same_finite_features_for_every_kind() -> None:
    """Digital silence (a muted input) must score, not poison the backend with NaN: a band
    that never moves has no envelope and no correlation. A batch is the windows one by one.
    Each kind (the shipped ones and the others) gets what it reads: the |STFT|, or (`wave`)
    the samples."""
    feats = classical_features(DEFAULT_SPEC, EVERY_KIND)
    zeros = np.zeros(160_000, np.float32)
    x = np.random.default_rng(6).standard_normal((2, 160_000)).astype(np.float32)
    silent, mag = stft_magnitude(zeros, DEFAULT_SPEC), stft_magnitude(x, DEFAULT_SPEC)
    assert [f.entry["kind"] for f in feats if f.wave] == ["stability"]
    for f in feats:
        quiet, batch = (zeros, x) if f.wave else (silent, mag)
        assert f.fn(quiet).shape == (f.dim,) and np.all(np.isfinite(f.fn(quiet))), f.entry
        np.testing.assert_allclose(f.fn(batch)[1], f.fn(batch[1]), rtol=1e-5, atol=1e-5)


def _wobbling_tones(wobble: float, seed: int = 8) -> np.ndarray:
    """Three steady tones (450, 1210, 2730 Hz) over faint noise; with `wobble`, each tone's
    frequency swings by that fraction at 5 Hz (a worn gear, an unsteady drive)."""
    rng = np.random.default_rng(seed)
    x = 0.01 * rng.standard_normal(T.size)
    for f0 in (450.0, 1210.0, 2730.0):
        inst = f0 * (1 + wobble * np.sin(2 * np.pi * 5.0 * T))
        x += 0.1 * np.sin(2 * np.pi * np.cumsum(inst) / 16_000 + rng.uniform(0, 6.3))
    return x.astype(np.float32)


def test_stability_matches_a_plain_numpy_reference() -> None:
    """Per band and lag, log(1 - mean cosine similarity of frames d apart), float64 loops."""
    x = _wobbling_tones(0.003)
    f = Stability(n_fft=2048, hop=512, bands=6, lags=(1, 3)).feature(DEFAULT_SPEC)
    edges = stability_edges(16_000, 2048, 6, 100.0, 7000.0)
    win = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(2048) / 2048)
    n = 1 + (160_000 - 2048) // 512
    frames = np.stack([x[i * 512 : i * 512 + 2048] * win for i in range(n)]).astype(np.float64)
    mag = np.abs(np.fft.rfft(frames, axis=-1))
    ref = []
    for a, b in pairwise(edges):
        band = mag[:, a:b]
        for d in (1, 3):
            sims = [
                band[t] @ band[t + d] / (np.linalg.norm(band[t]) * np.linalg.norm(band[t + d]))
                for t in range(n - d)
            ]
            ref.append(np.log(1 - np.mean(sims) + 1e-6))
    np.testing.assert_allclose(f.fn(x), ref, rtol=1e-3, atol=1e-3)
    assert f.dim == 12


def test_stability_sees_a_wobble_the_time_mean_spectrum_and_the_dynamics_hardly_do() -> None:
    """A 0.5 % frequency wobble at 5 Hz (2-14 Hz swings): every band's level stays put and
    the time-mean spectrum moves by a fraction of a bin, but the fine spectrum of the bands
    holding the tones changes between frames 64-256 ms apart. Steady tones (another noise
    draw) stay where the first steady clip is. A gain changes nothing."""
    f = Stability().feature(DEFAULT_SPEC)
    steady, again = f.fn(_wobbling_tones(0.0)), f.fn(_wobbling_tones(0.0, seed=9))
    wobbly = f.fn(_wobbling_tones(0.005))
    moved = wobbly - steady
    np.testing.assert_allclose(again, steady, atol=0.3)
    assert moved.max() > 4.0 and np.sort(moved)[-3:].min() > 3.0
    np.testing.assert_allclose(f.fn(4 * _wobbling_tones(0.005)), wobbly, atol=1e-3)
    dyn = dynamics(_wobbling_tones(0.005), DEFAULT_SPEC) - dynamics(
        _wobbling_tones(0.0), DEFAULT_SPEC
    )
    assert np.abs(dyn).max() < 0.1 * moved.max()
    edges = stability_edges(16_000, 4096, 12, 100.0, 7000.0)
    assert edges[0] == round(100 / 16_000 * 4096) and edges[-1] == round(7000 / 16_000 * 4096)
    assert np.all(np.diff(edges) >= 1)


def _modulated_bands(rates_hz: tuple[float, float], seed: int = 7) -> np.ndarray:
    """Low noise (<1 kHz) and high noise (>3 kHz), each switched in level at its own rate."""
    from scipy.signal import butter, sosfilt

    rng = np.random.default_rng(seed)
    out = np.zeros(160_000)
    for rate, sos in zip(
        rates_hz,
        (
            butter(4, 1000, "low", fs=16_000, output="sos"),
            butter(4, 3000, "high", fs=16_000, output="sos"),
        ),
        strict=True,
    ):
        level = 1 + 0.8 * np.sign(np.sin(2 * np.pi * rate * T + rng.uniform(0, 6)))
        out += sosfilt(sos, 0.05 * rng.standard_normal(160_000)) * level
    return out.astype(np.float32)


def test_modulation_power_peaks_in_the_octave_of_the_swing_and_matches_numpy() -> None:
    """A level switched 3 times a second puts its envelope power in the 2-4 Hz octave
    (index 3 of 0.25-0.5, 0.5-1, 1-2, 2-4, 4-8, 8-16 Hz), a steady noise nowhere."""
    edges = band_edges(DEFAULT_SPEC, 32)
    octaves = modulation_bins(DEFAULT_SPEC, 0.25, 6)
    nb = len(edges) - 1
    swing = modulation_from_magnitude(
        stft_magnitude(_am_noise(3.0, 0.8), DEFAULT_SPEC), edges, octaves
    )
    steady = modulation_from_magnitude(
        stft_magnitude(_am_noise(3.0, 0.0), DEFAULT_SPEC), edges, octaves
    )
    gain = (swing - steady).reshape(6, nb)
    assert np.all(gain.argmax(axis=0) == 3) and np.all(gain[3] > 2.0)
    assert np.all(np.abs(gain[:2]) < 2.0)  # the slow octaves hold no more than noise
    # the reference: the envelope's periodogram averaged per octave, written out
    bands = band_log_power(stft_magnitude(_am_noise(3.0, 0.8), DEFAULT_SPEC), edges).astype(float)
    env = bands - bands.mean(axis=0)
    freqs = np.arange(env.shape[0] // 2 + 1) * (16_000 / 512) / env.shape[0]
    power = np.abs(np.fft.rfft(env, axis=0)) ** 2
    ref = [
        np.log(power[(freqs >= 0.25 * 2**k) & (freqs < 0.5 * 2**k)].mean(0) + 1e-6)
        for k in range(6)
    ]
    np.testing.assert_allclose(swing, np.concatenate(ref), rtol=1e-4, atol=1e-4)


def test_comodulation_tells_bands_that_move_together_from_bands_that_do_not() -> None:
    """The same band levels and swings; only whether low and high move in step differs."""
    edges = band_edges(DEFAULT_SPEC, 32)
    groups = 16
    rows, cols = np.triu_indices(groups, 1)
    together = _modulated_bands((2.0, 2.0), seed=7)  # same rate: in step over the clip
    apart = _modulated_bands((2.0, 2.7), seed=7)
    ct = comodulation_from_magnitude(stft_magnitude(together, DEFAULT_SPEC), edges, groups)
    ca = comodulation_from_magnitude(stft_magnitude(apart, DEFAULT_SPEC), edges, groups)
    # a low group (~200-500 Hz) against a high one (>4 kHz)
    pair = int(np.flatnonzero((rows == 7) & (cols == 14))[0])
    assert abs(ct[pair]) > 0.3 and abs(ct[pair]) > abs(ca[pair]) + 0.2
    bands = band_log_power(stft_magnitude(apart, DEFAULT_SPEC), edges).astype(float)
    env = np.stack([g.mean(1) for g in np.array_split(bands, groups, axis=1)], axis=1)
    np.testing.assert_allclose(ca, np.corrcoef(env.T)[rows, cols], atol=1e-5)


def test_fine_spectrum_shows_a_weak_tone_and_ignores_gain_and_tilt() -> None:
    """A tone 30 dB under the noise per bin hardly moves a band; the fine spectrum peaks at
    its bin. A gain (x3) changes nothing; a gentle tilt almost nothing."""
    rng = np.random.default_rng(8)
    noise = 0.05 * rng.standard_normal(160_000)
    tone_bin = 200
    tone = noise + 0.02 * np.sin(2 * np.pi * tone_bin * 16_000 / 1024 * T)
    fs = [
        fine_spectrum_from_magnitude(stft_magnitude(w.astype(np.float32), DEFAULT_SPEC), 9)
        for w in (noise, tone)
    ]
    rise = fs[1] - fs[0]
    assert int(np.argmax(rise)) == tone_bin - 2 and rise[tone_bin - 2] > 1.0
    np.testing.assert_allclose(
        fine_spectrum_from_magnitude(stft_magnitude(3 * tone.astype(np.float32), DEFAULT_SPEC), 9),
        fs[1],
        atol=1e-4,
    )
    ms = np.log(
        stft_magnitude(tone.astype(np.float32), DEFAULT_SPEC).astype(float) ** 2 + 1e-10
    ).mean(0)
    ref = ms - np.convolve(np.pad(ms, 4, mode="edge"), np.ones(9) / 9, mode="valid")
    np.testing.assert_allclose(fs[1], ref[2:], atol=1e-5)


def test_a_window_computes_each_shared_input_once_and_every_feature_as_alone() -> None:
    """The device path (the scorer's WindowFeatures): the dynamics, modulation power and
    comodulation read the same 32 bands, the rhythm and the onsets the same range energies,
    each computed once per window; each component's vector is the one its feature computes
    from the |STFT| (or, the stability, the samples) alone."""
    from edge_agent.runtime.scorer import ClassicalEmbedder, WindowFeatures

    x = _am_noise(2.0, 0.5)
    window = WindowFeatures(x, DEFAULT_SPEC)
    for f in classical_features(DEFAULT_SPEC, EVERY_KIND):
        alone = f.fn(x if f.wave else stft_magnitude(x, DEFAULT_SPEC))
        np.testing.assert_array_equal(ClassicalEmbedder(f).embed_features(window), alone)
    keys: dict[str, list[str]] = {}
    for f in classical_features(DEFAULT_SPEC):
        if f.shared is not None:
            keys.setdefault(f.shared.key, []).append(f.entry["kind"])
    assert sorted(keys.values()) == [
        ["bands"],
        ["dynamics", "modulation", "comodulation"],
        ["rhythm", "onsets"],
    ]
    bands32 = bands_input(band_edges(DEFAULT_SPEC, 32))
    first = window.shared(bands32)
    assert window.shared(bands_input(band_edges(DEFAULT_SPEC, 32))) is first  # kept, not redone
    assert window.shared(bands_input(band_edges(DEFAULT_SPEC, 64))) is not first
    ranges = ranges_input(rhythm_bins(DEFAULT_SPEC, Onsets().ranges_hz))
    assert window.shared(ranges) is window.shared(
        ranges_input(rhythm_bins(DEFAULT_SPEC, Onsets().ranges_hz))
    )


def test_a_manifest_may_hold_a_stability_component_and_bad_fields_are_named() -> None:
    """A bundle's component list with the stability (not in the default export) is accepted
    as written by `to_entry` plus its dim; a bad field is refused in one line naming it."""
    from edge_agent.bundle.manifest import check_components
    from edge_agent.errors import BundleError

    model = {"kind": "model", "file": "model_0.tflite", "inputs": [], "input_order": []}
    entry = {**STABLE, "dim": Stability().feature(DEFAULT_SPEC).dim}
    check_components([model, entry], {"model_0.tflite"}, "manifest.json")
    with pytest.raises(BundleError, match=r"components\[1\].*lags"):
        check_components([model, {**entry, "lags": [0]}], {"model_0.tflite"}, "manifest.json")
