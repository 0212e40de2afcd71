"""Clips for `calibrate`, `enrol` and `record`: captured live or read from files.

One implementation for the three commands, so a clip means the same everywhere: exactly
`spec.clip_samples` float32 mono samples at `spec.sample_rate` (the bundle's 10 s at 16 kHz;
`record`, which has no bundle, writes the DCASE format), and a clip that says nothing
about the machine is never used. Why the level check matters here even more than in the
agent: a silent clip (unplugged microphone) or a clipped one would become a REFERENCE vector
or move the threshold, and every later window would be judged against it.

* Live: the source comes from `edge_agent.sources.open_source` (a PortAudio device via
  `edge_agent.sources.device`, or stdin PCM when the config says so), read block by
  block until a clip is full; samples beyond a clip start the next one (no gap between clips
  of a live recording). A clip is refused when `health.assess` finds a fault (silence,
  clipping, non-finite samples, or overflow: any block of the clip flagged as following lost
  samples) and captured again, up to `retries` times per clip, then the capture fails with a
  DeviceError naming the fault, so a dead microphone cannot loop forever.
* Files: each WAV file is cut into its whole 10 s clips at the spec's rate
  (`audio.iter_clips`: a 120 s recording is twelve clips, a tail shorter than a clip is left
  out and said so, a file shorter than a clip is one clip, looped, as `edge-agent score`
  embeds it). A refused clip is an error naming the file and the seconds (the user chose
  these files; quietly dropping one would change the clip count), or, with `skip_unreadable`
  (`--skip-unreadable`, the flag `score` and `run` use for the same thing), a line naming it
  and the clip is left out; an unreadable file likewise.

`enough_clips` says when fewer clips than the documented number were used: a threshold moved
on one clip is not a calibration anyone asked for.

Progress goes to a `Progress` (stderr by default): one updating line per clip on a terminal,
one line per clip otherwise.
"""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np
from numpy.typing import NDArray

from edge_agent.arrays import FloatArray
from edge_agent.audio.files import WavStream, expand_files, file_clips_count, iter_clips
from edge_agent.config.runtime import HealthSettings
from edge_agent.config.sources import SourceSettings
from edge_agent.errors import AudioFileError, DeviceError, EdgeAgentError, FieldError
from edge_agent.runtime.health import HealthReport, assess
from edge_agent.scoring.frontend import FrontendSpec
from edge_agent.sources import open_source
from edge_agent.sources.base import AudioSource

DEFAULT_COUNT = 10
DEFAULT_RETRIES = 3


class ClipRefusedError(EdgeAgentError):
    """A clip failed the level check (a file named by the user, or a device after retries)."""


@dataclass(frozen=True)
class Clip:
    """One accepted 10 s clip and where it came from."""

    samples: FloatArray  # exactly spec.clip_samples, mono at spec.sample_rate
    origin: str  # the file path, or "<device name>"
    health: HealthReport


def describe_faults(report: HealthReport, settings: HealthSettings) -> str:
    """Why a clip was refused, in words a user can act on."""
    words = []
    for f in report.faults:
        if f == "silence":
            words.append(
                f"silent (RMS {report.rms_dbfs:.1f} dBFS, below "
                f"{settings.silence_dbfs:.0f} dBFS: microphone unplugged or muted?)"
            )
        elif f == "clipping":
            words.append(
                f"clipped ({100 * report.clipped_fraction:.2f} % of samples at full "
                "scale: lower the input gain)"
            )
        elif f == "overflow":
            words.append("input overflow (samples were lost during the clip)")
        elif f == "non_finite":
            words.append("non-finite samples (NaN/inf)")
        else:
            words.append(f)
    return "; ".join(words)


class Progress:
    """Clip-by-clip progress on a text stream; an updating line when it is a terminal."""

    def __init__(self, rate: int, stream: TextIO | None = None, enabled: bool = True) -> None:
        """`rate`: the clips' sample rate (progress is shown in seconds)."""
        self.rate = rate
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._last = 0.0

    def _write(self, text: str, end: str = "\n") -> None:
        if self.enabled:
            self.stream.write(text + end)
            self.stream.flush()

    def recording(self, i: int, n: int, got: int, total: int) -> None:
        """Called as samples arrive; redraws at most 5 times a second, on terminals only."""
        now = time.monotonic()
        if self.tty and (now - self._last > 0.2 or got >= total):
            self._last = now
            bar = "#" * round(20 * got / total)
            self._write(
                f"\rclip {i}/{n} [{bar:<20}] {got / self.rate:4.1f}/{total / self.rate:.0f} s",
                end="",
            )

    def accepted(self, i: int, n: int, clip: Clip) -> None:
        h = clip.health
        pre = "\r" if self.tty else ""
        self._write(
            f"{pre}clip {i}/{n} ok: RMS {h.rms_dbfs:.1f} dBFS, peak {h.peak_dbfs:.1f} "
            f"dBFS ({clip.origin}){' ' * 10 if self.tty else ''}"
        )

    def refused(self, i: int, n: int, origin: str, why: str, again: bool) -> None:
        pre = "\r" if self.tty else ""
        tail = ", capturing it again" if again else ""
        self._write(f"{pre}clip {i}/{n} refused ({origin}): {why}{tail}")

    def note(self, text: str) -> None:
        self._write(text)


def check_clip(
    samples: NDArray[Any], origin: str, settings: HealthSettings, overflow: bool = False
) -> tuple[Clip, str | None]:
    """The clip and None when usable, else the clip and why it is refused."""
    x = np.ascontiguousarray(samples, dtype=np.float32)
    report = assess(x, settings, overflow)
    clip = Clip(x, origin, report)
    return clip, (None if report.ok else describe_faults(report, settings))


@dataclass
class ClipReader:
    """Cuts consecutive clips of exactly `n` samples from a started source."""

    source: AudioSource
    n: int  # samples per clip
    stall_seconds: float = 10.0  # no samples at all for this long: give up
    lane: int = 0  # a capture shared by monitors (`Block.lanes`): the one to cut clips from
    _buf: list[FloatArray] = field(default_factory=list)
    _have: int = 0
    _overflow: bool = False

    def next(self, on_samples: Callable[[int], None] | None = None) -> tuple[FloatArray, bool]:
        """(samples, overflow): the next `n` samples and whether any of them followed a gap."""
        last = time.monotonic()
        while self._have < self.n:
            if self.source.exhausted:
                raise DeviceError(
                    f"the audio source ended after {self._have} of {self.n} samples of a clip"
                )
            block = self.source.read(0.2)
            now = time.monotonic()
            if block is None:
                if now - last > self.stall_seconds:
                    raise DeviceError(
                        f"no audio from the input for {self.stall_seconds:.0f} s "
                        f"({self._have} of {self.n} samples of the clip)"
                    )
                continue
            last = now
            if block.overflow:
                self._overflow = True
            x = np.asarray(block.lane(self.lane), dtype=np.float32)
            self._buf.append(x)
            self._have += x.size
            if on_samples is not None:
                on_samples(min(self._have, self.n))
        x = np.concatenate(self._buf)
        clip, rest = x[: self.n], x[self.n :]
        overflow = self._overflow
        self._buf = [rest] if rest.size else []
        self._have = rest.size
        self._overflow = False
        return clip, overflow


def capture_clips(
    settings: SourceSettings,
    spec: FrontendSpec,
    count: int = DEFAULT_COUNT,
    health: HealthSettings = HealthSettings(),
    progress: Progress | None = None,
    retries: int = DEFAULT_RETRIES,
    source: AudioSource | None = None,
    lane: int = 0,
) -> list[Clip]:
    """`count` accepted clips of `spec`'s length and rate from the live source `settings`
    describes (see module docstring).

    `source` (not started) replaces `open_source(settings, spec.sample_rate)`, for tests and
    callers that built one already; `lane`: which of its lanes (a device opened for several
    monitors, as `edge-agent run` opens it) the clips are cut from.
    """
    if count < 1:
        raise FieldError("count", f"expected at least 1 clip, got {count}")
    progress = progress or Progress(spec.sample_rate)
    src = source if source is not None else open_source(settings, spec.sample_rate)
    out: list[Clip] = []
    with src:
        name = src.name
        reader = ClipReader(src, spec.clip_samples, max(10.0, 2 * settings.stall_seconds), lane)
        for i in range(1, count + 1):
            show = functools.partial(progress.recording, i, count, total=spec.clip_samples)
            for attempt in range(retries + 1):
                x, overflow = reader.next(show)
                clip, why = check_clip(x, name, health, overflow)
                if why is None:
                    out.append(clip)
                    progress.accepted(i, count, clip)
                    break
                progress.refused(i, count, name, why, again=attempt < retries)
            else:
                raise ClipRefusedError(
                    f"{name}: clip {i} refused {retries + 1} times, last: {why}; check the "
                    "microphone (edge-agent devices) and its gain"
                )
    return out


def file_clips(
    paths: Sequence[str | Path],
    spec: FrontendSpec,
    health: HealthSettings = HealthSettings(),
    progress: Progress | None = None,
    skip_unreadable: bool = False,
    channel: int | None = None,
) -> list[Clip]:
    """Every whole clip of `spec`'s length and rate of every WAV file (folders expand to their
    .wav files); see module docstring."""
    progress = progress or Progress(spec.sample_rate)
    files, counts = [], []
    for f in expand_files(paths):  # headers first: an unreadable file fails (or is named) early
        try:
            counts.append(file_clips_count(f, spec, channel))
        except AudioFileError as e:
            if not skip_unreadable:
                raise
            progress.note(f"skipped {f}: {e.reason}")
            continue
        files.append(f)
    total, i = sum(counts), 0
    out: list[Clip] = []
    secs = spec.clip_seconds
    for f, k in zip(files, counts, strict=True):
        stream_secs = WavStream(f, channel).seconds
        for j, x in enumerate(iter_clips(f, spec, channel)):
            i += 1
            origin = str(f) if k == 1 else f"{f} [{j * secs:g}-{(j + 1) * secs:g} s]"
            clip, why = check_clip(x, origin, health)
            if why is None:
                out.append(clip)
                progress.accepted(i, total, clip)
            elif skip_unreadable:
                progress.refused(i, total, origin, why + "; skipped", again=False)
            else:
                raise ClipRefusedError(
                    f"{origin}: refused: {why} (remove the file or pass --skip-unreadable)"
                )
        left = stream_secs - k * secs
        if k > 1 or left > 0.05:
            progress.note(
                f"{f}: {stream_secs:.1f} s = {k} clips of {secs:g} s"
                + (f" ({left:.1f} s at the end left out)" if left > 0.05 else "")
            )
    if not out:
        raise AudioFileError(", ".join(map(str, paths)), "no usable clip among the files")
    return out


def enough_clips(n: int, wanted: int, what: str, clip_seconds: float) -> str | None:
    """None when `n` clips are at least the documented `wanted`, else the one warning line to
    print (`what`: "calibrate" or "enrol"), with the number: the result is kept (a site may
    have no more normal audio), but nobody should mistake it for the documented procedure."""
    if n >= wanted:
        return None
    return (
        f"warning: {what} used {n} clip{'' if n == 1 else 's'} ({n * clip_seconds:g} s of "
        f"audio); docs/adaptation.md asks for {wanted} ({wanted * clip_seconds:g} s): the "
        "threshold rests on fewer normal clips than that (record more, or give a longer "
        "recording)"
    )
