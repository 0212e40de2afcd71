"""Why it alarmed: the voting windows against the section's normal audio profile, in words.

A score says how far a window is from normal, not what changed. When an alarm is raised (and
only then: `edge_agent.runtime.monitor`), the voting windows' measures
(`edge_agent.scoring.profile.detail`) are compared with the section's profile, one kind of
change at a time, each judged in the profile's normal spreads:

* ``tonal``: a narrow peak (a bin rising above its neighbours and above normal): a new or
  louder tone, a whistle, a squeal; where = its frequency, how much = dB above normal, when =
  the part of the window it sounds in;
* ``level``: a run of bands louder than normal relative to the rest (the median of the bins of
  each band, so a tone does not count): hiss, grinding, a broadband rise;
* ``impulsive``: a band's envelope more peaked than normal (kurtosis): knocks, rattles, impacts;
  with their count and, when regular, their repetition rate (from the event times, or from the
  envelope's spectrum when they are too fast to separate);
* ``modulation``: a band's envelope modulated more deeply than normal at one rate, or a bin
  fluctuating more than normal (a tone wavering in frequency);
* ``band_shift``: the spectral balance moved (the power-weighted centre frequency, once bands
  that simply got louder are set back to normal): a darker or brighter sound;
* ``rhythm``: a broad range's periodicity fell (an irregular cycle, a missed or added event)
  or its period changed (slower, faster).

Each kind's strongest deviation is divided by the 95th percentile of that kind's strongest
deviation on the section's own normal clips (`AudioProfile.null`), so the kinds compete on one
scale: "how much more unusual than normal clips ever are, in this respect". Over the voting
windows the kind with the largest ratio in any of them wins (not the mean: an alarm's first
voting windows are often borderline ones, and a fault that just started shows in the last);
the window where it is strongest gives where, when and how much. When no kind stands out
(every ratio below 1) the kind is ``unclear`` and the sentence says so rather than guess.
The runners-up are kept (`others`).

Cost: ~15 ms per voting window on one x86 core (the envelopes need one FFT of the window),
only when an alarm is raised. How often it names the right kind and band on the synthetic
families: BENCHMARKS.md "Why it alarmed" (benchmarks/explain_quality.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from edge_agent.scoring.frontend import FrontendSpec
from edge_agent.scoring.profile import (
    KINDS,
    AudioProfile,
    ClipDetail,
    Stat,
    content_edge,
    detail,
    layout,
    wave_levels,
)

UNCLEAR = "unclear"
NONE = -1e9
"""The score of a kind with nothing to measure in a window (no narrow peak, no cycle)."""
MIN_NULL_SCALE = 0.5
"""The smallest normal-tail width a kind's score is divided by (a kind that never varies on
normal clips must not turn a hair's change into a strong explanation)."""
FAST_HZ = 20.0
"""Envelope repetition faster than this is impacts (a buzz), slower a modulation."""
KNOCK_KURTOSIS = 5.0
"""Envelope kurtosis this many spreads past normal's 95th percentile: knocks (an 80 % deep
sinusoidal modulation reaches ~2, knocks twice a second 11)."""
NARROW_DB = 6.0
"""A tonal peak rises at least this much above the median of its +-8 neighbouring bins."""


@dataclass(frozen=True)
class Deviation:
    """The strongest deviation of one kind in one window: how many normal spreads from the
    median (`spreads`, for people), how far past what normal clips reach (`score`: spreads
    beyond the 95th percentile, for ranking), where (band_hz, freq_hz), how much (db), how
    often (rate_hz, events), when (time_s, share)."""

    kind: str
    spreads: float
    score: float = 0.0
    band_hz: tuple[float, float] = (0.0, 0.0)
    freq_hz: float | None = None
    db: float | None = None
    rate_hz: float | None = None
    events: int | None = None
    time_s: tuple[float, float] | None = None
    share: float | None = None  # of the window's frames it is present in
    words: str = ""  # the sentence part saying what and where
    strength: float = 0.0  # score / the profile's null for the kind


@dataclass(frozen=True)
class Explanation:
    """An alarm's explanation: `sentence` for people, the rest for machines (`to_dict`)."""

    kind: str
    sentence: str
    main: Deviation | None
    window: int | None = None
    others: tuple[str, ...] = field(default=())
    # the spectral shape of the window it names (WindowSummary.shape_db): the alarm's picture
    shape_db: NDArray[Any] | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "sentence": self.sentence}
        d = self.main
        if d is not None:
            out["band_hz"] = [round(d.band_hz[0], 1), round(d.band_hz[1], 1)]
            for key in ("freq_hz", "db", "rate_hz"):
                v = getattr(d, key)
                if v is not None:
                    out[key] = round(float(v), 2)
            out["spreads"] = round(d.spreads, 2)
            if d.events is not None:
                out["events"] = d.events
            if d.time_s is not None:
                out["time_s"] = [round(d.time_s[0], 2), round(d.time_s[1], 2)]
            if d.share is not None:
                out["share"] = round(d.share, 3)
        if self.window is not None:
            out["window"] = self.window
        if self.others:
            out["others"] = list(self.others)
        return out


def khz(f: float) -> str:
    """3100 -> '3.10 kHz', 250 -> '250 Hz'."""
    return f"{f / 1000:.2f} kHz" if f >= 1000 else f"{f:.0f} Hz"


def band_words(lo: float, hi: float) -> str:
    if hi >= 1000:
        return f"{lo / 1000:.1f}-{hi / 1000:.1f} kHz"
    return f"{lo:.0f}-{hi:.0f} Hz"


def _frame_s(p: AudioProfile) -> float:
    return p.spec.hop / p.spec.sample_rate


def _span(mask: NDArray[np.bool_], p: AudioProfile) -> tuple[tuple[float, float], float]:
    """(first and last time a frame of `mask` starts, s; the share of frames in it)."""
    idx = np.flatnonzero(mask)
    fs = _frame_s(p)
    if idx.size == 0:
        return (0.0, p.spec.clip_seconds), 0.0
    return (idx[0] * fs, idx[-1] * fs + p.spec.n_fft / p.spec.sample_rate), idx.size / mask.size


def _run(z: NDArray[Any], b: int, floor: float) -> tuple[int, int]:
    """The contiguous run of bands around `b` whose z stays at or above `floor`."""
    lo, hi = b, b
    while lo > 0 and z[lo - 1] >= floor:
        lo -= 1
    while hi < z.size - 1 and z[hi + 1] >= floor:
        hi += 1
    return lo, hi


def _past(st: Stat, x: NDArray[Any]) -> NDArray[np.float64]:
    """Spreads beyond what normal clips reach (their 95th percentile), element by element."""
    return np.asarray((np.asarray(x, np.float64) - st.hi) / st.spread, np.float64)


def _tonal(d: ClipDetail, p: AudioProfile) -> Deviation:
    lay = p.layout
    st = p.stats["prom"]
    # what normal clips reach at this bin or next to it (operating points move tones)
    ceiling = np.max(
        np.lib.stride_tricks.sliding_window_view(
            np.pad(st.hi.astype(np.float64), 2, mode="edge"), 5
        ),
        axis=1,
    )
    score = (d.prom_db - ceiling) / st.spread
    score[d.prom_db < NARROW_DB] = -np.inf
    score[:2] = -np.inf
    if not np.isfinite(score).any():
        return Deviation("tonal", 0.0, NONE)
    k = int(np.argmax(score))
    s = d.summary.shape_db.astype(np.float64)
    if 0 < k < s.size - 1:  # the live spectrum's own peak next to it
        k = k - 1 + int(np.argmax(s[k - 1 : k + 2]))
    off = 0.0
    if 0 < k < s.size - 1:
        a, b, c = s[k - 1], s[k], s[k + 1]
        den = a - 2 * b + c
        off = float(np.clip(0.5 * (a - c) / den, -0.5, 0.5)) if den < 0 else 0.0
    f = (k + off) * lay.hz_per_bin
    shape = p.stats["shape"]
    above = float(s[k] - shape.med[k])
    series = d.bin_frames_db[:, k]
    t, share = _span(series > shape.med[k] + 3 * shape.spread[k], p)
    words = f"a tone near {khz(f)}, {above:.0f} dB above normal"
    if share < 0.6:
        words += f", intermittent ({100 * share:.0f} % of the window)"
    return Deviation(
        "tonal",
        st.z_at(float(d.prom_db[k]), k),
        float(np.max(score)),
        (f - lay.hz_per_bin, f + lay.hz_per_bin),
        f,
        above,
        time_s=t,
        share=share,
        words=words,
    )


def _level(d: ClipDetail, p: AudioProfile) -> Deviation:
    lay = p.layout
    st = p.stats["band"]
    z = st.z(d.band_db)
    past = _past(st, d.band_db)
    b = int(np.argmax(past))
    lo, hi = _run(z, b, max(2.0, z[b] / 3))
    amount = float(np.median(d.band_db[lo : hi + 1] - st.med[lo : hi + 1]))
    f0, f1 = lay.band_hz(lo)[0], lay.band_hz(hi)[1]
    series = d.frames_db[:, lo : hi + 1].mean(axis=1)
    t, share = _span(series >= np.percentile(series, 95) - 3.0, p)
    wide = hi - lo + 1 >= 0.75 * lay.n_bands
    words = (
        f"a broadband rise of {amount:.0f} dB"
        if wide
        else f"the {band_words(f0, f1)} band {amount:.0f} dB louder than normal"
    )
    return Deviation(
        "level",
        float(z[b]),
        float(past[b]),
        (f0, f1),
        None,
        amount,
        time_s=t,
        share=share,
        words=words,
    )


def _band_shift(d: ClipDetail, p: AudioProfile) -> Deviation:
    lay = p.layout
    med, spread = float(p.centroid.med[0]), float(p.centroid.spread[0])
    zc = (d.centroid - med) / spread
    st = p.stats["band"]
    be = d.band_db - st.med
    b = int(np.argmin(be)) if zc < 0 else int(np.argmax(be))
    f0, f1 = lay.band_hz(b)
    way = "down (a darker sound)" if zc < 0 else "up (a brighter sound)"
    words = (
        f"the spectral balance moved {way}: its centre from {khz(2**med)} to "
        f"{khz(2**d.centroid)}, the {band_words(f0, f1)} band {be[b]:+.0f} dB"
    )
    return Deviation(
        "band_shift",
        float(abs(zc)),
        float(abs(zc)) - 2.0,
        (f0, f1),
        None,
        float(be[b]),
        words=words,
    )


def _impulsive(d: ClipDetail, p: AudioProfile) -> Deviation:
    lay = p.layout
    ev, ku, ms = p.stats["events"], p.stats["kurt"], p.stats["mod"]
    kpast = _past(ku, d.kurt_db)
    # impacts faster than FAST_HZ merge into a buzz: their envelope repeats at their rate
    fast = np.where((d.mod_hz >= FAST_HZ) & (kpast > -1.0), _past(ms, d.mod_db), -np.inf)
    past = np.maximum(np.maximum(_past(ev, d.events), kpast), fast)
    b = int(np.argmax(past))
    lo, hi = _run(past, b, max(0.0, past[b] / 2))
    f0, f1 = lay.band_hz(lo)[0], lay.band_hz(hi)[1]
    spreads = max(ev.z_at(float(d.events[b]), b), ku.z_at(float(d.kurt_db[b]), b))
    if not d.envelopes:
        return Deviation("impulsive", spreads, float(past[b]), (f0, f1), words="knocks")
    env = d.envelopes[b]
    times = d.event_times[b]
    n = int(times.size)
    peak_db = float(
        10 * np.log10(max(float(np.max(env)), 1e-20) / max(float(np.median(env)), 1e-20))
    )
    rate_hz: float | None = None
    if n >= 3:
        gaps = np.diff(times)
        if float(np.std(gaps)) < 0.25 * float(np.median(gaps)):
            rate_hz = 1.0 / float(np.median(gaps))
    if rate_hz is None and (
        fast[b] == past[b] or (ms.z_at(float(d.mod_db[b]), b) >= 3 and d.mod_hz[b] >= 2)
    ):
        rate_hz = float(d.mod_hz[b])
    what = f"knocks in {band_words(f0, f1)}, {peak_db:.0f} dB above the band's background"
    if rate_hz is not None:
        how = f", repeating every {1 / rate_hz:.2g} s ({rate_hz:.3g} per second)"
    elif n:
        how = f", {n} in the window at irregular times"
    else:
        how = ""
    t = (float(times[0]), float(times[-1])) if n else None
    return Deviation(
        "impulsive",
        spreads,
        float(past[b]),
        (f0, f1),
        None,
        peak_db,
        rate_hz,
        n or None,
        t,
        words=what + how,
    )


def _bin_rate(series: NDArray[Any], frame_s: float) -> float:
    x = np.asarray(series, np.float64) - float(np.mean(series))
    spec = np.abs(np.fft.rfft(x))
    lo = max(1, int(0.5 * x.size * frame_s))
    k = lo + int(np.argmax(spec[lo:])) if spec.size > lo else lo
    return k / (x.size * frame_s)


def _modulation(d: ClipDetail, p: AudioProfile) -> Deviation:
    lay = p.layout
    ms = p.stats["mod"]
    # a band whose envelope is far more peaked than normal repeats knocks, not a smooth
    # modulation: knocks twice a second are also a 2 Hz "modulation", `_impulsive` names them
    peaked = _past(p.stats["kurt"], d.kurt_db) > KNOCK_KURTOSIS
    mpast = np.where((d.mod_hz < FAST_HZ) & ~peaked, _past(ms, d.mod_db), -np.inf)
    st = p.stats["fluct"]
    fpast = np.convolve(_past(st, d.fluct_db), np.ones(3) / 3, mode="same")
    carries = p.stats["shape"].med > np.percentile(p.stats["shape"].med, 75)
    fpast = np.where(carries, fpast, -np.inf)  # a wavering tone moves 2-3 bins
    fpast[:2] = -np.inf
    b = int(np.argmax(mpast))
    k = int(np.argmax(fpast))
    if mpast[b] >= fpast[k]:
        f0, f1 = lay.band_hz(b)
        depth = float(d.mod_db[b] - ms.med[b])
        rate = float(d.mod_hz[b])
        words = (
            f"the {band_words(f0, f1)} band is amplitude-modulated at {rate:.3g} Hz, "
            f"{depth:.0f} dB deeper than normal"
        )
        return Deviation(
            "modulation",
            ms.z_at(float(d.mod_db[b]), b),
            float(mpast[b]),
            (f0, f1),
            None,
            depth,
            rate,
            words=words,
        )
    f = k * lay.hz_per_bin
    rate = _bin_rate(d.bin_frames_db[:, k], _frame_s(p))
    amount = float(d.fluct_db[k] - st.med[k])
    words = (
        f"the sound near {khz(f)} wavers (modulated at about {rate:.2g} Hz), "
        f"{amount:.0f} dB more fluctuation than normal"
    )
    return Deviation(
        "modulation",
        st.z_at(float(d.fluct_db[k]), k),
        float(fpast[k]),
        (f - 2 * lay.hz_per_bin, f + 2 * lay.hz_per_bin),
        f,
        amount,
        rate,
        words=words,
    )


def _rhythm(d: ClipDetail, p: AudioProfile) -> Deviation:
    peak, lag = p.stats["rhythm_peak"], p.stats["rhythm_lag"]
    best = Deviation("rhythm", 0.0, NONE)
    for r, (lo, hi) in enumerate(p.layout.rhythm):
        normal_lag = float(lag.med[r])
        # a cycle to speak of: clearly periodic normal audio with a steady period
        if peak.med[r] < 0.4 or lag.spread[r] > 0.1 * normal_lag:
            continue
        f0, f1 = lo * p.layout.hz_per_bin, hi * p.layout.hz_per_bin
        drop = -peak.z_at(float(d.rhythm_peak[r]), r)
        drop_past = (
            float(peak.med[r] - peak.hi[r]) + float(peak.med[r]) - float(d.rhythm_peak[r])
        ) / float(peak.spread[r])  # below the 5th percentile, mirrored
        ratio = float(d.rhythm_lag_s[r]) / max(normal_lag, 1e-6)
        multiple = any(abs(ratio - m) < 0.05 * m for m in (0.5, 1.0, 2.0, 3.0, 1 / 3))
        moved = 0.0 if multiple else abs(lag.z_at(float(d.rhythm_lag_s[r]), r))
        score = max(drop_past, moved - 2.0)
        if score <= best.score:
            continue
        if moved - 2.0 > drop_past:
            way = "slower" if ratio > 1 else "faster"
            words = (
                f"the cycle in {band_words(f0, f1)} is {way}: {d.rhythm_lag_s[r]:.2f} s "
                f"instead of {normal_lag:.2f} s"
            )
            best = Deviation(
                "rhythm",
                moved,
                score,
                (f0, f1),
                None,
                None,
                1 / max(float(d.rhythm_lag_s[r]), 1e-6),
                words=words,
            )
        else:
            words = (
                f"the cycle in {band_words(f0, f1)} became irregular: periodicity "
                f"{d.rhythm_peak[r]:.2f} (normal {peak.med[r]:.2f}, period "
                f"{normal_lag:.2f} s)"
            )
            best = Deviation(
                "rhythm", drop, score, (f0, f1), None, None, 1 / max(normal_lag, 1e-6), words=words
            )
    return best


_MEASURES = {
    "tonal": _tonal,
    "level": _level,
    "impulsive": _impulsive,
    "modulation": _modulation,
    "band_shift": _band_shift,
    "rhythm": _rhythm,
}


def deviations(d: ClipDetail, p: AudioProfile) -> list[Deviation]:
    """The strongest deviation of every kind in one window, with its strength against the
    profile's null (`spreads / null[kind]`)."""
    out = []
    for kind in KINDS:
        dev = _MEASURES[kind](d, p)
        med, p95 = p.null.get(kind, (0.0, 1.0))
        strength = (dev.score - med) / max(p95 - med, MIN_NULL_SCALE)
        out.append(replace(dev, strength=strength if dev.score > NONE else -np.inf))
    return out


def explain(
    details: Iterable[ClipDetail], p: AudioProfile, windows: Sequence[int] | None = None
) -> Explanation:
    """The explanation of an alarm from its voting windows' details (module docstring);
    `windows`: their indices, for the payload. `details` may be a generator: each window's
    detail is dropped once its deviations are measured (a detail is ~2 MB; the agent's RSS
    budget is 120 MB), only its spectral shape is kept (`Explanation.shape_db`, the
    picture's)."""
    per: list[list[Deviation]] = []
    shapes = []
    for d in details:
        per.append(deviations(d, p))
        shapes.append(d.summary.shape_db)
    if not per:
        return Explanation(UNCLEAR, "no voting window to explain", None)
    best = {k: float(np.max([ds[i].strength for ds in per])) for i, k in enumerate(KINDS)}
    ranked = sorted(KINDS, key=lambda k: -best[k])
    kind = ranked[0]
    i = KINDS.index(kind)
    w = int(np.argmax([ds[i].strength for ds in per]))
    main = per[w][i]
    others = tuple(
        f"{per[w][KINDS.index(k)].words} ({per[w][KINDS.index(k)].spreads:.1f} normal spreads)"
        for k in ranked[1:3]
        if best[k] >= 1.0
    )
    window = windows[w] if windows is not None and w < len(windows) else None
    if best[kind] < 1.0:
        sentence = (
            "no single change in level, tones, knocks, modulation or rhythm stands "
            f"out from normal audio (closest: {main.words}); the learned model sees "
            "a difference these measures do not name"
        )
        return Explanation(UNCLEAR, sentence, main, window, others, shapes[w])
    when = ""
    if (
        main.time_s is not None
        and main.kind in ("tonal", "impulsive", "level")
        and (main.share is None or main.share < 0.6)
    ):
        when = f" from {main.time_s[0]:.1f} s to {main.time_s[1]:.1f} s of the window"
    sentence = f"{main.words}{when} ({main.spreads:.1f} normal spreads)"
    return Explanation(kind, sentence[0].upper() + sentence[1:], main, window, others, shapes[w])


# ---------------------------------------------------------------- building a profile
# (here, not in profile.py: its `null` is each kind's deviation on the normal clips)


def build_profile(details: Sequence[ClipDetail], spec: FrontendSpec, origin: str) -> AudioProfile:
    """The profile of a section from its normal clips' details (at least one). The `null`
    calibration scores every clip against the profile itself (edge_agent.scoring.explain)."""
    if not details:
        raise ValueError("no clips to build an audio profile from")
    lay = layout(spec)
    s = [d.summary for d in details]
    rms = np.asarray([x.rms_dbfs for x in s])
    crest = np.asarray([x.crest_db for x in s])
    shape = np.stack([x.shape_db for x in s])
    stats = {
        "shape": Stat.of(shape),
        "prom": Stat.of(np.stack([d.prom_db for d in details])),
        "fluct": Stat.of(np.stack([d.fluct_db for d in details])),
        "floor": Stat.of(np.stack([x.floor_db for x in s])),
        "band": Stat.of(np.stack([d.band_db for d in details])),
        "events": Stat.of(np.stack([d.events for d in details])),
        "kurt": Stat.of(np.stack([d.kurt_db for d in details])),
        "mod": Stat.of(np.stack([d.mod_db for d in details])),
        "rhythm_peak": Stat.of(np.stack([d.rhythm_peak for d in details]), 0.03),
        "rhythm_lag": Stat.of(np.stack([d.rhythm_lag_s for d in details]), 0.05),
    }
    centroid = Stat.of(np.asarray([[d.centroid] for d in details]), 0.05)
    draft = AudioProfile(
        spec,
        len(details),
        origin,
        tuple(float(v) for v in np.percentile(rms, [10, 50, 90])),  # type: ignore[arg-type]
        tuple(float(v) for v in np.percentile(crest, [10, 50, 90])),  # type: ignore[arg-type]
        float(max(x.clipped_fraction for x in s)),
        content_edge(np.median(shape, axis=0), lay),
        centroid,
        stats,
        dict.fromkeys(KINDS, (0.0, 1.0)),
    )
    strongest: dict[str, list[float]] = {k: [] for k in KINDS}
    for d in details:
        for dev in deviations(d, draft):
            if np.isfinite(dev.strength):  # the kind had something to measure
                strongest[dev.kind].append(dev.score)
    null = {
        k: (float(np.percentile(v, 50)), float(np.percentile(v, 95))) if v else (0.0, 1.0)
        for k, v in strongest.items()
    }
    return AudioProfile(
        draft.spec,
        draft.n_clips,
        origin,
        draft.level_dbfs,
        draft.crest_db,
        draft.clipped_fraction,
        draft.edge_hz,
        centroid,
        stats,
        null,
    )


def profile_from_waves(
    waves: Sequence[NDArray[Any]],
    spec: FrontendSpec,
    origin: str,
    levels: Sequence[tuple[float, float, float]] | None = None,
) -> AudioProfile:
    """The profile of normal clips given as waves of `spec.clip_samples` (export, calibrate,
    enrol). `levels`: each clip's (RMS dBFS, peak dBFS, clipped share) when the caller has
    them (the sensor health check's); measured here otherwise."""
    details = []
    for i, w in enumerate(waves):
        lv = levels[i] if levels is not None else wave_levels(w)
        details.append(detail(w, spec, *lv))
    return build_profile(details, spec, origin)
