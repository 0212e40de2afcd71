"""Audio files: WAV (and FLAC: the agent's evidence clips, `audio.flac`) in as mono float32
clips of exactly the spec's length, WAV out, folders in.

Policy (documented in the README, applied everywhere a file is read):

* formats: PCM 8/16/24/32-bit and IEEE float WAV, including WAVE_FORMAT_EXTENSIBLE headers
  (MIMII's 8-channel files); integers are scaled to [-1, 1).
* channels: mixed down by averaging, or one chosen channel (`channel=N`, 0-based).
* sample rate: anything else is resampled to the spec's rate (16 kHz) with a polyphase filter;
  a header rate outside `MIN_RATE`-`MAX_RATE` (4-384 kHz) is refused as implausible.
* memory: files are decoded, mixed down and resampled block by block (`WavStream`,
  `edge_agent.audio.wavfile`), so `load_clip` reads only a clip's worth and `file_windows` holds
  about two windows, whatever the file's length; only `read_wav` returns a whole file.
* length: longer clips keep their first `spec.clip_seconds` (10 s; DCASE 2023 ToyCar/ToyTrain
  are 12 s); shorter clips of at least `min_seconds` are looped (tiled) up to it, because
  machine sounds are mostly stationary and zero padding would put silence into the spectrum;
  anything shorter is refused.
* regular files only: a FIFO (named pipe), socket or device given as a WAV file is refused by
  what it is (`special_file`), not as "no such file". WAV files are opened twice (the header
  is checked before anything plays, then streamed) and their chunks are found by seeking, so
  a pipe cannot be read as one; audio that can only be streamed goes to `edge-agent run
  --stdin` as raw PCM.
"""

from __future__ import annotations

import logging
import stat
import struct
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from edge_agent.arrays import FloatArray
from edge_agent.audio.flac import FlacReader, is_flac
from edge_agent.audio.pcm import to_float, to_mono
from edge_agent.audio.wavfile import WavFormatError, WavReader
from edge_agent.errors import AudioFileError
from edge_agent.scoring.frontend import FrontendSpec

log = logging.getLogger("edge_agent")

MIN_SECONDS = 1.0
MIN_RATE = 4_000
MAX_RATE = 384_000
"""The sample rates a WAV header may claim. 384 kHz is the highest rate audio interfaces
record and 4 kHz is below any real recording (telephone audio is 8 kHz): a rate outside the
range is a corrupt or mislabelled header, and believing it is harmful, not just wrong (a
1 Hz header would be upsampled 16 000x, turning a short file into gigabytes)."""
BLOCK_FRAMES = 1 << 14
"""Frames decoded per read: 16384 frames of 8-channel 32-bit audio are 0.5 MB, so reading any
file costs about as much memory as this, whatever its length."""


_SPECIAL = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def special_file(path: Path) -> str | None:
    """Why `path`, which exists, cannot be read as a WAV file (it is a FIFO, a socket or a
    device: module docstring), or None (a regular file, a folder, or nothing there)."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return None
    for test, what in _SPECIAL:
        if test(mode):
            return (
                f"is {what}, expected a regular WAV file (streamed audio: raw PCM into "
                "`edge-agent run --stdin`)"
            )
    return None


def open_audio(path: Path, flac: bool) -> WavReader | FlacReader:
    """The reader for a WAV file, or for a FLAC one (the agent's evidence clips)."""
    return FlacReader(path) if flac else WavReader(path)


class WavStream:
    """One WAV file as mono float32 blocks at a chosen rate, read and resampled block by block.

    The header is read (and checked) on construction, so a file that cannot be used fails
    before any audio is processed; `blocks()` then streams it. Resampling goes through
    `StreamResampler`, whose output equals `resample_poly` of the whole file, so a file
    streamed in blocks gives the same samples as one read whole. Raises AudioFileError.
    """

    def __init__(
        self, path: str | Path, channel: int | None = None, rate: int | None = None
    ) -> None:
        p = Path(path)
        if not p.is_file():
            raise AudioFileError(p, special_file(p) or "file not found")
        self.path = p
        try:
            self.flac = is_flac(p)
            with open_audio(p, self.flac) as r:
                info = r.info
        except (WavFormatError, struct.error) as exc:
            kind = "FLAC" if self.flac else "WAV"
            raise AudioFileError(p, f"not a readable {kind} file ({exc})") from None
        except OSError as exc:
            raise AudioFileError(p, f"cannot read ({exc.strerror or exc})") from None
        if not MIN_RATE <= info.rate <= MAX_RATE:
            raise AudioFileError(
                p,
                f"implausible sample rate {info.rate} Hz in the WAV header: expected "
                f"{MIN_RATE}-{MAX_RATE} Hz (a corrupt or mislabelled header)",
            )
        if info.channels == 1:
            if channel not in (None, 0):
                raise AudioFileError(p, f"channel {channel} requested but the file is mono")
        elif channel is not None and not 0 <= channel < info.channels:
            raise AudioFileError(p, f"channel {channel} requested but the file has {info.channels}")
        if info.frames == 0:
            raise AudioFileError(p, "file contains no samples")
        self.info = info
        self.channel = None if info.channels == 1 else channel
        self.rate = rate or info.rate  # the rate blocks() delivers

    @property
    def samples(self) -> int:
        """How many samples `blocks()` delivers in all (resample_poly's output length)."""
        return -(-self.info.frames * self.rate // self.info.rate)

    @property
    def seconds(self) -> float:
        return self.info.seconds

    def blocks(self, frames: int = BLOCK_FRAMES) -> Iterator[FloatArray]:
        """Mono float32 blocks at `self.rate` (sizes vary when resampling; none are empty)."""
        from edge_agent.audio.resample import StreamResampler

        rs = StreamResampler(self.info.rate, self.rate)
        try:
            with open_audio(self.path, self.flac) as r:
                while True:
                    raw = r.read(frames)
                    if raw.shape[0] == 0:
                        break
                    x = to_float(raw)
                    mono = x[:, 0] if x.shape[1] == 1 else to_mono(x, self.channel)
                    if not np.all(np.isfinite(mono)):
                        raise AudioFileError(self.path, "file contains NaN or infinite samples")
                    y = rs.process(mono)
                    if y.size:
                        yield y
        except (OSError, WavFormatError, struct.error) as exc:
            raise AudioFileError(self.path, f"read failed ({exc})") from None
        tail = rs.flush()
        if tail.size:
            yield tail


def read_wav(path: str | Path, channel: int | None = None) -> tuple[FloatArray, int]:
    """Read a whole WAV file as mono float32 at its own rate. Raises AudioFileError.

    For short files (clips, tests): long recordings go through `WavStream` instead.
    """
    s = WavStream(path, channel)
    x = np.concatenate(list(s.blocks())).astype(np.float32, copy=False)
    return x, s.info.rate


def fit_length(
    x: FloatArray, n: int, min_samples: int, source: str | Path = "<array>"
) -> FloatArray:
    """Apply the length policy: crop to the first n samples, or loop a short clip."""
    if x.shape[-1] >= n:
        return np.ascontiguousarray(x[..., :n])
    if x.shape[-1] < min_samples:
        raise AudioFileError(
            source, f"too short: {x.shape[-1]} samples, need at least {min_samples}"
        )
    reps = -(-n // x.shape[-1])
    return np.ascontiguousarray(np.tile(x, reps)[..., :n])


def load_clip(
    path: str | Path,
    spec: FrontendSpec,
    channel: int | None = None,
    min_seconds: float = MIN_SECONDS,
) -> FloatArray:
    """Load one file as exactly `spec.clip_samples` float32 samples at `spec.sample_rate`.

    Only the first clip's worth of the file is read (and resampled), so a long recording
    costs no more than a 10 s clip.
    """
    n = spec.clip_samples
    got: list[FloatArray] = []
    have = 0
    for b in WavStream(path, channel, spec.sample_rate).blocks():
        got.append(b)
        have += b.size
        if have >= n:
            break
    x = np.concatenate(got)
    return fit_length(x, n, int(min_seconds * spec.sample_rate), path)


def file_clips_count(path: str | Path, spec: FrontendSpec, channel: int | None = None) -> int:
    """How many clips `iter_clips` cuts from the file (its header says: no audio is read)."""
    return max(1, WavStream(path, channel, spec.sample_rate).samples // spec.clip_samples)


def iter_clips(
    path: str | Path,
    spec: FrontendSpec,
    channel: int | None = None,
    min_seconds: float = MIN_SECONDS,
) -> Iterator[FloatArray]:
    """Every whole clip of the file, in order: consecutive, non-overlapping
    `spec.clip_samples` pieces at `spec.sample_rate`. A file shorter than one clip is one clip,
    looped (`fit_length`, as `load_clip`); the tail after the last whole clip (shorter than a
    clip) is left out (`file_clips_count` and the caller say so).

    Why not `load_clip`: calibrate and enrol take a file as the recording of a condition; a
    120 s WAV is twelve clips of it, and using only its first 10 s moved a threshold on one
    clip without a word (issue 20).
    """
    n = spec.clip_samples
    buf: list[FloatArray] = []
    have = 0
    whole = False
    for b in WavStream(path, channel, spec.sample_rate).blocks():
        buf.append(b)
        have += b.size
        while have >= n:
            x = np.concatenate(buf)
            yield np.ascontiguousarray(x[:n])
            whole = True
            rest = x[n:]
            buf, have = ([rest] if rest.size else []), rest.size
    if not whole:
        yield fit_length(
            np.concatenate(buf) if buf else np.zeros(0, np.float32),
            n,
            int(min_seconds * spec.sample_rate),
            path,
        )


def to_pcm16(x: NDArray[Any]) -> NDArray[np.int16]:
    """Float samples as 16-bit PCM, clipped to [-1, 1) (the one float -> int16 conversion)."""
    pcm = np.clip(np.asarray(x, dtype=np.float64), -1.0, 1.0 - 1.0 / 32768.0)
    out: NDArray[np.int16] = np.round(pcm * 32768.0).astype(np.int16)
    return out


def write_wav(path: str | Path, x: NDArray[Any], rate: int) -> None:
    """Write 16-bit PCM (the DCASE format); values are clipped to [-1, 1]."""
    import scipy.io.wavfile

    scipy.io.wavfile.write(Path(path), rate, to_pcm16(x))


AUDIO_SUFFIXES = (".wav", ".flac")
"""What a folder expands to: WAV, and FLAC (the agent's own evidence clips)."""


def expand_files(entries: Sequence[str | Path]) -> list[Path]:
    """Audio files as given, folders replaced by their .wav and .flac files (recursively,
    sorted).

    Raises AudioFileError naming an entry that does not exist, that is not a regular file (a
    FIFO: `special_file`), or a folder without WAV files: a typo must not silently become "no
    audio". A FIFO named *.wav inside a folder is left out with a warning line.
    """
    out: list[Path] = []
    for entry in entries:
        p = Path(entry).expanduser()
        if p.is_dir():
            named = sorted(f for f in p.rglob("*") if f.suffix.lower() in AUDIO_SUFFIXES)
            for f in named:
                why = special_file(f)
                if why is not None:
                    log.warning("%s: %s; left out", f, why)
            wavs = [f for f in named if f.is_file()]
            if not wavs:
                raise AudioFileError(p, "folder contains no .wav or .flac files")
            out.extend(wavs)
        elif p.is_file():
            out.append(p)
        else:
            raise AudioFileError(p, special_file(p) or "no such file or folder")
    return out
