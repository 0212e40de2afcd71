"""edge_agent.config.runtime: moved from edge_agent.runtime.windows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from edge_agent.config.fields import bounded, check_fields
from edge_agent.errors import ConfigError
from edge_agent.scoring.embedder import RuntimeRequest
from edge_agent.scoring.frontend import FrontendSpec

MIN_HOP_SECONDS = 0.1
"""The shortest hop: what a device can score. A window costs ~10 ms of CPU on one x86 core
and, by arithmetic, ~100 ms on a Pi-class core (BENCHMARKS.md, device latency): a hop under
0.1 s asks for more windows a second than such a core scores, so the queue overflows and
windows are dropped, while every window is a 640 kB copy of audio (a hop of one sample cut
1600 windows from each block: 1 GB of RSS and 36 000 `windows_dropped` events in 25 s). A
0.1 s hop already scores every sample 100 times; nothing finer adds evidence."""


@dataclass(frozen=True)
class WindowSettings:
    """The `windows:` section of the agent's YAML.

    Bounds without a bundle: both durations positive and finite, the hop between
    MIN_HOP_SECONDS (what a device can score, see there) and a day (one window a day is
    already a sampling, not monitoring; the cap keeps `hop * rate` an exact integer). With
    the bundle (`samples`): the length must be the bundle's clip length and the hop at least
    one sample (a hop that rounds to 0 samples would cut the same window for ever; only a
    bundle below 5 Hz could get there past the floor). A hop longer than the window is
    valid: the samples in between are not scored. `score --hop` is checked against the same
    bounds (`settings.field_problem`).
    """

    seconds: float | None = bounded(None, gt=0)
    """Window length; unset = the bundle's clip length."""
    hop: float = bounded(10.0, ge=MIN_HOP_SECONDS, le=86400)
    """Seconds between window starts (10 = disjoint)."""

    def __post_init__(self) -> None:
        check_fields(self, "windows")

    def samples(self, spec: FrontendSpec) -> tuple[int, int]:
        """(window length, hop) in samples at the bundle's rate; the length is the bundle's clip
        length. Raises ConfigError (one line: the field, the value, what the bundle takes) on a
        length the model cannot take or a hop shorter than one sample."""
        if self.seconds is not None and round(self.seconds * spec.sample_rate) != (
            spec.clip_samples
        ):
            raise ConfigError(
                f"windows.seconds: the bundle's model takes {spec.clip_seconds:g} s windows, "
                f"got {self.seconds:g} (leave it unset)"
            )
        hop = round(self.hop * spec.sample_rate)
        if hop < 1:
            raise ConfigError(
                f"windows.hop: {self.hop:g} s is less than one sample at the bundle's "
                f"{spec.sample_rate} Hz (expected at least {1 / spec.sample_rate:g} s)"
            )
        return spec.clip_samples, hop


@dataclass(frozen=True)
class HealthSettings:
    """The `health:` section of the agent's YAML."""

    silence_dbfs: float = bounded(-70.0, le=0)
    """RMS below this: dead / unplugged / muted microphone."""
    clip_level: float = bounded(0.999, gt=0, le=1)
    """|sample| at or above this counts as clipped."""
    clip_fraction: float = bounded(0.001, ge=0, lt=1)
    """More than this fraction of clipped samples: clipping fault."""
    overflow_is_fault: bool = True
    """A window with lost samples is a fault too."""

    def __post_init__(self) -> None:
        check_fields(self, "health")


@dataclass(frozen=True)
class DecisionSettings:
    """k-of-n raise, m consecutive normal windows clear; optional threshold overrides."""

    k: int = 3
    """Raise when at least k ."""
    n: int = bounded(5, ge=1)
    """... of the last n scored windows are above threshold."""
    clear_after: int = bounded(3, ge=1)
    """Clear after this many consecutive normal windows."""
    threshold: float | None = None
    """None = the bundle's per-section threshold."""

    def __post_init__(self) -> None:
        check_fields(self, "decision")  # n, clear_after >= 1; a NaN/inf threshold is refused
        if not 1 <= self.k <= self.n:
            raise ConfigError(f"decision.k: expected 1 <= k <= n ({self.n}), got {self.k}")


@dataclass(frozen=True)
class HistorySettings:
    """The `history:` section of the agent's YAML."""

    enabled: bool = True
    """Record every window's score for `edge-agent tune`."""
    max_days: float = bounded(30.0, gt=0, le=3650)
    """Drop records older than this."""
    max_rows: int = bounded(300_000, ge=100)
    """Keep at most this many records per section."""
    folder: str | None = None
    """Where scores.<section>.bin lives; None = the outbox's folder."""
    drift_windows: int = bounded(30, ge=1, le=100_000)
    """Drift = median of the last M scores."""
    # Off by default: replaying test clips or old recordings through a deployment's config must
    # not feed what `tune` takes as the machine's normal operation, nor leave score files in
    # whatever folder the replay ran in.
    replays: bool = False
    """Also record file replays (source.kind files); live audio always is."""

    def __post_init__(self) -> None:
        check_fields(self, "history")


@dataclass(frozen=True)
class HearingSettings:
    """The `hearing:` section: is the audio reaching the model like the audio it was built on?

    Every scored window is summarised (spectrum, noise floor, levels) and the last `windows`
    of them are compared with the section's audio profile in the bundle
    (edge_agent.runtime.hearing); a difference is a `hearing_mismatch` health event with a
    sentence saying what to check."""

    enabled: bool = True
    """Compare live audio with the bundle's audio profile (bundles without one: said once)."""
    windows: int = bounded(6, ge=1, le=1000)
    """Windows summarised together (6 at the default 10 s hop: one minute)."""
    level_db: float = bounded(10.0, gt=0, le=60)
    """Level further than this from the training audio's (and outside its range): reported."""
    floor_db: float = bounded(10.0, gt=0, le=60)
    """Noise floor further than this from the training audio's: reported."""

    def __post_init__(self) -> None:
        check_fields(self, "hearing")


TfliteRuntime = Literal["auto", "ai_edge_litert", "tflite_runtime", "tensorflow"]


@dataclass(frozen=True)
class TfliteSettings:
    """The `tflite:` section: which TFLite runtime runs the models, and with which kernels.

    The default is right almost everywhere: each runtime is tried in a child process and the
    first that reproduces the bundle's self-test numbers scores (edge_agent.runtime.probe).
    These keys are the way out the self-test names when it refuses this CPU's numbers: force
    the other runtime, or TFLite's own kernels instead of XNNPACK (edge_agent.runtime.selftest;
    `edge-agent check --runtime ... --xnnpack` tries them first).

    TFLite's own kernels are the default, not XNNPACK: on the shipped model XNNPACK is about
    twice as fast (4 against 8 ms per window on one x86 thread, both far inside the 25 ms
    budget) but holds ~16 MB more (an indirection buffer of one pointer per tap for the first
    7x7 convolution over the whole spectrogram), which put one machine's agent at 131 MB
    against its 120 MB budget (BENCHMARKS.md, `benchmarks/agent_rss.py`)."""

    runtime: TfliteRuntime = "auto"
    """Auto = ai_edge_litert, else tflite_runtime, else tensorflow."""
    xnnpack: bool = False
    """True: XNNPACK's kernels (twice as fast, ~16 MB more memory); false: TFLite's own."""

    def request(self) -> RuntimeRequest:
        return RuntimeRequest.of(self.runtime, self.xnnpack)


EvidenceFormat = Literal["flac", "wav"]


@dataclass(frozen=True)
class EvidenceSettings:
    """The `evidence:` section: where alarm audio is kept and how much of it.

    There is no `enabled` key: setting `folder` turns evidence on (off by default, since
    keeping audio on a device is a decision for the site, not a default)."""

    folder: str | None = None
    """Where alarm clips are kept; unset = keep none."""
    max_clips: int = bounded(100, ge=1)
    """Keep at most this many clips (oldest deleted first)."""
    max_megabytes: float = bounded(200.0, gt=0)
    """And at most this many MB of them."""
    min_free_megabytes: float = bounded(100.0, ge=0)
    """Never leave less free space than this."""
    compression: EvidenceFormat = "flac"
    """Flac (lossless, ~half the size) or wav (16-bit PCM)."""
    mqtt_max_kilobytes: int = bounded(0, ge=0, le=100_000)
    """Also publish clips up to this size over MQTT; 0 = never."""

    def __post_init__(self) -> None:
        check_fields(self, "evidence")

    @property
    def enabled(self) -> bool:
        return bool(self.folder)


FeedbackRule = Literal["refit", "max", "keep"]
"""How an answer "not a fault" re-derives the threshold (`edge_agent.adaptation.sections.
taught_section`): `refit`, the section's percentile over every normal reference's held-out
score, as export and calibrate fit it; `max`, also never below that percentile of the
answered windows' own held-out scores (it rises when the answered sound stays far from the
rest); `keep`, the threshold and the score normalisers stay as they were (only the references
change)."""


@dataclass(frozen=True)
class FeedbackSettings:
    """The `feedback:` section: what an operator's answer to an alarm does
    (`edge_agent.adaptation.feedback`, docs/agent.md "Teach it").

    Answers need the alarm's evidence clip (its voting windows), so they need
    `evidence.folder`."""

    mqtt: bool = True
    """Take answers on <prefix>/<device>/<monitor>/feedback/set (Home Assistant)."""
    max_references: int = bounded(64, ge=1, le=4096)
    """Target references a section keeps; beyond, the oldest go."""
    threshold_rule: FeedbackRule = "refit"
    """Refit, max or keep (see FeedbackRule)."""

    def __post_init__(self) -> None:
        check_fields(self, "feedback")
