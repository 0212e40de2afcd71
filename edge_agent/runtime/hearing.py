"""Does it hear right? Live audio against the training audio's profile, in sentences.

Why: the scores depend on the audio chain. Through an input that passed a resampler cutting
everything above ~6 kHz, healthy machines scored far above their thresholds and alarmed in
30 s; nothing said why. Each monitor therefore keeps a rolling summary of its last
`hearing.windows` scored windows (`WindowSummary`: the spectral shape and noise floor from the
|STFT| the scorer computed anyway, the levels from the sensor health check; ~0.3 ms a window,
benchmarks/hearing_cost.py) and compares it with the section's audio profile in the bundle
(edge_agent.scoring.profile) after every window, from the first one on (a broken path makes
healthy machines alarm within 30 s: the first window already says why, and the Home Assistant
entity is known at once; the rolling mean steadies it as the windows add up). What it reports
(`Finding`, each with a sentence an engineer can act on):

* ``bandwidth``: from some frequency up to where the training audio had content, the live
  audio is >= 20 dB below the training audio's shape (relative to the window's total, so a gain
  change does not count); the cut is put where the roll-off passes 6 dB: "nothing above 5.8 kHz
  reaches the model: a resampler or the microphone cuts it; the model was built with content
  up to 8.0 kHz";
* ``level``: the median RMS level is `hearing.level_db` or more from the training audio's
  median and outside its 10-90 % range: "12 dB quieter than the training audio: check gain or
  microphone position";
* ``noise_floor``: the quiet parts of the spectrum (each band's 10th-percentile frame power,
  relative to the total) `hearing.floor_db` above the training audio's (hiss) or below it
  (noise suppression or automatic gain in a USB microphone);
* ``clipping``: samples at full scale in more than 0.01 % of the audio where the training
  audio had (next to) none; ``crest``: peaks 6 dB flatter than the training audio's flattest
  10 % (a limiter, automatic gain control);
* ``spectrum``: a band 15 dB louder or quieter, relative to the rest, than in the training
  audio and outside its spread: another microphone, its position, a loud neighbour.

The monitor turns a change of what is found into a health event (`HearingChange`):
`hearing_mismatch` (the findings and their sentences) when something is found or what is
found changes, `hearing_ok` when the audio matches (at the first window, so the state is known,
and after a mismatch), and once `hearing_unchecked` when the bundle has no profile for the
section (an export from before profiles existed): it still scores, it just cannot say.
`edge-agent check --listen N` runs the same comparison over N seconds of each input
(`listen` below).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from edge_agent.config.runtime import HealthSettings, HearingSettings
from edge_agent.runtime.health import assess
from edge_agent.scoring.frontend import FrontendSpec, stft_magnitude
from edge_agent.scoring.profile import AudioProfile, WindowSummary, sliding_median, summarise
from edge_agent.sources.base import AudioSource

FindingKind = Literal["bandwidth", "level", "noise_floor", "clipping", "crest", "spectrum"]
HearingEventName = Literal["hearing_mismatch", "hearing_ok", "hearing_unchecked"]
CUT_DB = 20.0
"""Bins this far below the training audio's shape, from some frequency up: a cut band."""
ROLL_OFF_DB = 6.0
"""A cut band starts where the live audio falls this far below the training audio's shape."""
CLIP_SHARE = 1e-4
"""More clipped samples than this share (and ten times the training audio's): reported."""
CREST_DB = 6.0
"""Peaks this much flatter than the training audio's flattest 10 %: a limiter."""
SPECTRUM_DB = 15.0
"""A band this much louder or quieter, relative to the rest: another microphone or place."""


@dataclass(frozen=True)
class Finding:
    """One way the live audio differs from the training audio."""

    kind: FindingKind
    sentence: str
    value: float  # the live measure
    normal: float  # the training audio's
    unit: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "sentence": self.sentence,
            "value": round(self.value, 2),
            "normal": round(self.normal, 2),
            "unit": self.unit,
        }


@dataclass(frozen=True)
class Rolling:
    """The live summary over some windows (what is compared with the profile)."""

    windows: int
    shape_db: np.ndarray  # mean over windows, dB
    floor_db: np.ndarray
    rms_dbfs: float  # median
    crest_db: float  # median
    clipped_fraction: float  # mean
    peak_dbfs: float  # max

    @classmethod
    def of(cls, summaries: Sequence[WindowSummary]) -> Rolling:
        return cls(
            len(summaries),
            np.mean([s.shape_db for s in summaries], axis=0),
            np.mean([s.floor_db for s in summaries], axis=0),
            float(np.median([s.rms_dbfs for s in summaries])),
            float(np.median([s.crest_db for s in summaries])),
            float(np.mean([s.clipped_fraction for s in summaries])),
            float(np.max([s.peak_dbfs for s in summaries])),
        )

    def measures(self, profile: AudioProfile | None) -> dict[str, float]:
        """The headline numbers (`check --listen` prints them), next to the profile's."""
        out = {
            "rms_dbfs": round(self.rms_dbfs, 1),
            "peak_dbfs": round(self.peak_dbfs, 1),
            "crest_db": round(self.crest_db, 1),
            "clipped_percent": round(100 * self.clipped_fraction, 4),
        }
        if profile is not None:
            out["content_up_to_hz"] = round(_edge(self, profile), 0)
            out["normal_rms_dbfs"] = round(profile.level_dbfs[1], 1)
            out["normal_content_up_to_hz"] = round(profile.edge_hz, 0)
        return out


def _edge(r: Rolling, p: AudioProfile) -> float:
    """The highest frequency the live audio has content at, judged against the profile: the
    start of the cut (`_cut_bin`), else the profile's own edge."""
    k = _cut_bin(r, p)
    return p.edge_hz if k is None else float(k * p.layout.hz_per_bin)


def _cut_bin(r: Rolling, p: AudioProfile) -> int | None:
    """Where a cut band starts, or None. A cut: the top 8 bins below the profile's edge are
    CUT_DB or more below the training audio's shape (a +-4-bin median, so one quiet bin does
    not make a cut); it starts where the roll-off does, the lowest bin from which the
    deficit stays ROLL_OFF_DB or more all the way up (a resampler's filter falls over ~1 kHz:
    its -6 dB point, not where it is already 20 dB down, is what an engineer calls the cut)."""
    lay = p.layout
    top = min(int(p.edge_hz / lay.hz_per_bin), lay.spec.n_bins - 1)
    if top < 16:
        return None
    deficit = p.stats["shape"].med[: top + 1] - r.shape_db[: top + 1]
    smooth = sliding_median(deficit, 4)
    if not (smooth[top - 8 : top + 1] >= CUT_DB).all():
        return None
    ok = smooth >= ROLL_OFF_DB
    k = top - 8
    while k > 2 and ok[k - 1]:
        k -= 1
    return k


def _khz(hz: float) -> str:
    return f"{hz / 1000:.1f} kHz"


def _band(p: AudioProfile, lo: int, hi: int) -> str:
    a, b = p.layout.band_hz(lo)[0], p.layout.band_hz(hi)[1]
    return f"{a / 1000:.1f}-{b / 1000:.1f} kHz" if b >= 1000 else f"{a:.0f}-{b:.0f} Hz"


def compare(r: Rolling, p: AudioProfile, s: HearingSettings | None = None) -> list[Finding]:
    """What differs between the live summary `r` and the profile `p` (module docstring)."""
    s = s or HearingSettings()
    out: list[Finding] = []
    lay = p.layout
    cut = _cut_bin(r, p)
    n_bands = lay.n_bands
    usable = n_bands if cut is None else int(np.searchsorted(lay.edges, cut, "right")) - 1
    if cut is not None:
        f = cut * lay.hz_per_bin
        out.append(
            Finding(
                "bandwidth",
                f"nothing above {_khz(f)} reaches the model: a "
                "resampler or the microphone cuts it; the model was built with "
                f"content up to {_khz(p.edge_hz)}",
                f,
                p.edge_hz,
                "Hz",
            )
        )
    lo10, med, hi90 = p.level_dbfs
    diff = r.rms_dbfs - med
    if abs(diff) >= s.level_db and not lo10 <= r.rms_dbfs <= hi90:
        if diff < 0:
            text = (
                f"{-diff:.0f} dB quieter than the training audio ({r.rms_dbfs:.0f} dBFS, "
                f"normal {med:.0f} dBFS): check gain or microphone position"
            )
        else:
            text = (
                f"{diff:.0f} dB louder than the training audio ({r.rms_dbfs:.0f} dBFS, "
                f"normal {med:.0f} dBFS): check gain (clipping risk) or microphone "
                "position"
            )
        out.append(Finding("level", text, r.rms_dbfs, med, "dBFS"))
    if usable > 2:
        excess = (r.floor_db - p.stats["floor"].med)[:usable]
        hi_q, lo_q = float(np.percentile(excess, 75)), float(np.percentile(excess, 25))
        if hi_q >= s.floor_db:
            b = np.flatnonzero(excess >= s.floor_db)
            out.append(
                Finding(
                    "noise_floor",
                    f"the noise floor is {hi_q:.0f} dB above the "
                    f"training audio's ({_band(p, int(b[0]), int(b[-1]))}): hiss "
                    "from a preamplifier, a long cable or an input gain set too "
                    "low and amplified later?",
                    hi_q,
                    0.0,
                    "dB",
                )
            )
        elif lo_q <= -s.floor_db:
            out.append(
                Finding(
                    "noise_floor",
                    f"the quiet parts are {-lo_q:.0f} dB below the "
                    "training audio's: noise suppression or automatic gain in the "
                    "microphone or its driver?",
                    lo_q,
                    0.0,
                    "dB",
                )
            )
    clip_limit = max(CLIP_SHARE, 10 * p.clipped_fraction)
    if r.clipped_fraction > clip_limit:
        out.append(
            Finding(
                "clipping",
                f"{100 * r.clipped_fraction:.2g} % of the samples clip "
                f"at full scale (training audio: {100 * p.clipped_fraction:.2g} %): "
                "lower the input gain",
                100 * r.clipped_fraction,
                100 * p.clipped_fraction,
                "%",
            )
        )
    elif r.crest_db < p.crest_db[0] - CREST_DB:
        out.append(
            Finding(
                "crest",
                f"the peaks are flattened: crest factor {r.crest_db:.0f} "
                f"dB, the training audio's {p.crest_db[1]:.0f} dB (a limiter or "
                "automatic gain control?)",
                r.crest_db,
                p.crest_db[1],
                "dB",
            )
        )
    out += _spectrum(r, p, usable)
    return out


def _spectrum(r: Rolling, p: AudioProfile, usable: int) -> list[Finding]:
    lay = p.layout
    st = p.stats["shape"]
    live = np.asarray([np.mean(r.shape_db[lay.edges[b] : lay.edges[b + 1]]) for b in range(usable)])
    normal = np.asarray([np.mean(st.med[lay.edges[b] : lay.edges[b + 1]]) for b in range(usable)])
    spread = np.asarray(
        [np.mean(st.spread[lay.edges[b] : lay.edges[b + 1]]) for b in range(usable)]
    )
    d = live - normal
    bad = (np.abs(d) >= SPECTRUM_DB) & (np.abs(d) >= 3 * spread)
    if not bad.any():
        return []
    b = int(np.argmax(np.where(bad, np.abs(d), 0)))
    way = "louder" if d[b] > 0 else "quieter"
    return [
        Finding(
            "spectrum",
            f"the {_band(p, b, b)} band is {abs(d[b]):.0f} dB {way}, "
            "relative to the rest, than in the training audio: another microphone, "
            "its position, or something loud nearby?",
            float(live[b]),
            float(normal[b]),
            "dB",
        )
    ]


@dataclass(frozen=True)
class HearingChange:
    """What the monitor emits when the comparison's outcome changes."""

    event: HearingEventName
    message: str
    findings: tuple[Finding, ...] = ()


class HearingCheck:
    """One monitor's rolling summary and the last outcome (see module docstring)."""

    def __init__(
        self, profile: AudioProfile | None, settings: HearingSettings, section: str
    ) -> None:
        self.profile = profile
        self.settings = settings
        self.section = section
        self._ring: deque[WindowSummary] = deque(maxlen=settings.windows)
        self._last: tuple[str, ...] | None = None  # the finding kinds last reported
        self._said_unchecked = False
        self.findings: tuple[Finding, ...] = ()

    def new_profile(self, profile: AudioProfile | None) -> None:
        """A reloaded bundle's profile: compared afresh (and reported again if different)."""
        if profile is not self.profile:
            self.profile = profile
            self._last = None
            self._said_unchecked = False

    def add(self, summary: WindowSummary) -> HearingChange | None:
        """One scored window's summary; the change to report, if any."""
        if not self.settings.enabled:
            return None
        if self.profile is None:
            if self._said_unchecked:
                return None
            self._said_unchecked = True
            return HearingChange("hearing_unchecked", unchecked_message(self.section))
        self._ring.append(summary)
        r = Rolling.of(list(self._ring))
        found = tuple(compare(r, self.profile, self.settings))
        self.findings = found
        kinds = tuple(f.kind for f in found)
        if kinds == self._last:
            return None
        self._last = kinds
        if not found:
            return HearingChange("hearing_ok", ok_message(r, self.profile))
        return HearingChange("hearing_mismatch", "; ".join(f.sentence for f in found), found)

    def now(self) -> tuple[Finding, ...]:
        """What the last comparison found (the alarm explanation starts with it)."""
        if self.profile is None or not self._ring or not self.settings.enabled:
            return ()
        return self.findings


def unchecked_message(section: str) -> str:
    return (
        f"the bundle has no audio profile for {section} (exported before profiles "
        "existed): the audio path is not checked and alarms are not explained; re-export "
        "the bundle or calibrate to add one"
    )


def ok_message(r: Rolling, p: AudioProfile) -> str:
    return (
        f"the audio matches the training audio: level {r.rms_dbfs:.0f} dBFS (normal "
        f"{p.level_dbfs[1]:.0f}), content up to {_khz(_edge(r, p))} (normal "
        f"{_khz(p.edge_hz)}), no clipping"
    )


# ---------------------------------------------------------------- `edge-agent check --listen`


@dataclass(frozen=True)
class Heard:
    """What `listen` heard from one input: the summaries of its segments, and why it stopped
    early (the files ended, the device went quiet), if it did."""

    summaries: tuple[WindowSummary, ...]
    seconds: float
    stopped: str | None = None


def listen(
    source: AudioSource,
    spec: FrontendSpec,
    seconds: float,
    health: HealthSettings | None = None,
    stall_s: float = 10.0,
) -> Heard:
    """Read `seconds` of a started `source` and summarise it in segments of the bundle's window
    length (shorter when `seconds` is), as the agent summarises its windows. Every wait is
    bounded: no audio for `stall_s` stops it with what it has."""
    seg = max(spec.n_fft * 4, min(spec.clip_samples, int(seconds * spec.sample_rate)))
    want = int(seconds * spec.sample_rate)
    buf: list[np.ndarray] = []
    have, got = 0, 0
    out: list[WindowSummary] = []
    last = time.monotonic()
    stopped = None
    while got < want:
        if source.exhausted:
            stopped = "the input ended"
            break
        block = source.read(0.2)
        if block is None:
            if time.monotonic() - last > stall_s:
                stopped = f"no audio for {stall_s:.0f} s"
                break
            continue
        last = time.monotonic()
        buf.append(np.asarray(block.samples, np.float32).reshape(-1))
        have += buf[-1].size
        while have >= seg and got < want:
            x = np.concatenate(buf)
            w, rest = x[:seg], x[seg:]
            buf, have, got = [rest], rest.size, got + seg
            out.append(_summary(w, spec, health))
    return Heard(tuple(out), got / spec.sample_rate, stopped)


def _summary(w: np.ndarray, spec: FrontendSpec, health: HealthSettings | None) -> WindowSummary:
    h = assess(w, health or HealthSettings())
    return summarise(stft_magnitude(w, spec), spec, h.rms_dbfs, h.peak_dbfs, h.clipped_fraction)
