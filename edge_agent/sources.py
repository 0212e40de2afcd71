"""Where the agent's audio comes from: a live microphone, replayed files, or raw PCM on stdin.

Every source yields `Block`s of float32 mono samples at 16 kHz (the frontend's rate) with the
wall-clock time of their first sample, so the windowing and everything after it never needs
to know what delivered the audio.

* `device`: a PortAudio input via sounddevice, resampled to 16 kHz when the device refuses
  that rate, reopened after device loss: `edge_agent.capture` (imported only when a device is
  used, so replaying files works on a machine without PortAudio).
* `files`: WAV files or folders replayed as one continuous stream, paced at real time or as
  fast as possible; `Block.source_info` names the file. Timestamps follow the audio (the
  first sample is "now" at start), so a fast replay produces the same timeline as a paced one.
* `stdin`: raw interleaved PCM (s16le / s32le / f32le) from a binary stream, so
  `arecord -f S16_LE -r 16000 -c 1 -t raw | edge-agent run --stdin` works.

This module holds the contracts (`SourceSettings`, `Block`, `AudioSource`, `DeviceInfo`),
`open_source`, and the two finite sources (files, stdin).
"""

from __future__ import annotations

import logging
import queue
import sys
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO

import numpy as np
from numpy.typing import NDArray

from .audio import read_wav, resample
from .errors import AudioFileError, ConfigError, DeviceError
from .resampler import StreamResampler

log = logging.getLogger(__name__)

SAMPLE_RATE = 16_000
"""The rate every Block is delivered at (the frontend's rate)."""

STDIN_FORMATS: dict[str, np.dtype[Any]] = {
    "s16le": np.dtype("<i2"),
    "s32le": np.dtype("<i4"),
    "f32le": np.dtype("<f4"),
}
SOURCE_KINDS = ("device", "files", "stdin")
REANCHOR_SECONDS = 1.0
"""stdin: audio arriving this much later than its own clock predicts moves the clock on."""


# --------------------------------------------------------------------------- contracts


@dataclass(frozen=True)
class SourceSettings:
    """The `source:` section of the agent's YAML."""

    kind: str = "device"  # "device" | "files" | "stdin"
    device: str | int | None = None  # name, case-insensitive substring or index; None = default
    channel: int | None = None  # 0-based channel of a multi-channel input; None = mix down
    capture_rate: int | None = None  # None = 16000 if supported, else the device's default rate
    blocksize: int = 1600  # frames per block at the capture rate (files/stdin: at 16 kHz)
    files: tuple[str, ...] = ()  # WAV files or folders for kind="files"
    realtime: bool = False  # replay files paced at real time (True) or as fast as possible
    loop: bool = False  # replay files forever
    stdin_format: str = "s16le"  # raw PCM on stdin: s16le | s32le | f32le
    stdin_rate: int = 16000
    stdin_channels: int = 1
    # Extensions beyond the documented contract (defaults keep it compatible):
    reconnect_seconds: float = 2.0  # device lost: how often to try reopening it
    stall_seconds: float = 5.0  # device delivering nothing for this long counts as lost


@dataclass(frozen=True)
class Block:
    """A run of consecutive samples, float32 mono at 16 kHz."""

    samples: NDArray[np.float32]
    t_start: float  # wall clock (time.time()) of the first sample
    overflow: bool = False  # samples were lost just before this block
    source_info: str = ""  # e.g. the file name during replay


@dataclass(frozen=True)
class DeviceInfo:
    """One input device as PortAudio sees it."""

    index: int
    name: str
    channels: int
    default_rate: float
    supported_rates: tuple[int, ...] = ()
    hostapi: str = ""
    is_default: bool = False


class AudioSource(ABC):
    """A started source is polled with `read`; `None` means "no data yet", not the end.

    `exhausted` becomes True when a finite source (files without loop, stdin at EOF) has
    delivered its last block. `overflows` counts blocks flagged with lost samples before
    them; `blocks` counts blocks delivered.
    """

    def __init__(self) -> None:
        self.overflows = 0
        self.blocks = 0

    @abstractmethod
    def start(self) -> None:
        """Open the underlying device/files/stream."""

    @abstractmethod
    def read(self, timeout: float | None = None) -> Block | None:
        """The next block, waiting at most `timeout` seconds (None = wait until there is one)."""

    @abstractmethod
    def stop(self) -> None:
        """Release the device/stream; safe to call twice."""

    @property
    def exhausted(self) -> bool:
        return False

    def status(self) -> dict[str, Any]:
        """Counters for logs and the agent's status messages (JSON-serialisable)."""
        return {"blocks": self.blocks, "overflows": self.overflows}

    def blocks_iter(self, timeout: float = 0.5) -> Iterator[Block]:
        """Every block until the source is exhausted (forever for a live device)."""
        while not self.exhausted:
            block = self.read(timeout)
            if block is not None:
                yield block

    def _deliver(self, block: Block) -> Block:
        self.blocks += 1
        if block.overflow:
            self.overflows += 1
        return block

    def __enter__(self) -> AudioSource:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def open_source(settings: SourceSettings, stdin: BinaryIO | None = None) -> AudioSource:
    """The source `settings.kind` names (not started). `stdin` defaults to sys.stdin.buffer."""
    if settings.blocksize <= 0:
        raise ConfigError(
            f"source.blocksize: expected a positive integer, got {settings.blocksize}"
        )
    if settings.channel is not None and settings.channel < 0:
        raise ConfigError(
            f"source.channel: expected a 0-based channel >= 0, got {settings.channel}"
        )
    if settings.kind == "device":
        from .capture import DeviceSource  # loads PortAudio only when a device is used

        return DeviceSource(settings)
    if settings.kind == "files":
        return FileSource(settings)
    if settings.kind == "stdin":
        return StdinSource(settings, stdin if stdin is not None else sys.stdin.buffer)
    raise ConfigError(
        f"source.kind: expected one of {', '.join(SOURCE_KINDS)}, got {settings.kind!r}"
    )


# --------------------------------------------------------------------------- file replay


def expand_files(entries: Sequence[str]) -> list[Path]:
    """Files stay, folders become their .wav files (recursively, sorted). Raises on bad entries."""
    if not entries:
        raise ConfigError("source.files: expected at least one WAV file or folder")
    out: list[Path] = []
    for entry in entries:
        p = Path(entry).expanduser()
        if p.is_dir():
            wavs = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() == ".wav")
            if not wavs:
                raise AudioFileError(p, "folder contains no .wav files")
            out.extend(wavs)
        elif p.is_file():
            out.append(p)
        else:
            raise AudioFileError(p, "no such file or folder")
    return out


class FileSource(AudioSource):
    """Replays WAV files as one continuous 16 kHz stream (see module docstring)."""

    def __init__(self, settings: SourceSettings) -> None:
        super().__init__()
        self.settings = settings
        self.paths = expand_files(settings.files)
        self._chunks: Iterator[tuple[NDArray[np.float32], str]] | None = None
        self._next: tuple[NDArray[np.float32], str] | None = None
        self._t0 = 0.0
        self._pos = 0  # samples delivered so far
        self._done = False

    def start(self) -> None:
        self._chunks = self._generate()
        self._t0 = time.time()
        self._pos = 0
        self._done = False
        self._next = None
        mode = "real time" if self.settings.realtime else "as fast as possible"
        log.info("replaying %d file(s) %s%s", len(self.paths), mode,
                 " in a loop" if self.settings.loop else "")

    def _generate(self) -> Iterator[tuple[NDArray[np.float32], str]]:
        n = self.settings.blocksize
        while True:
            for path in self.paths:
                x, rate = read_wav(path, self.settings.channel)
                if rate != SAMPLE_RATE:
                    log.debug("%s: resampling %d Hz -> %d Hz", path, rate, SAMPLE_RATE)
                x = resample(x, rate, SAMPLE_RATE)
                for i in range(0, x.size, n):
                    yield np.ascontiguousarray(x[i : i + n], dtype=np.float32), str(path)
            if not self.settings.loop:
                return

    @property
    def exhausted(self) -> bool:
        return self._done

    def read(self, timeout: float | None = None) -> Block | None:
        if self._chunks is None:
            raise RuntimeError("FileSource.read() before start()")
        if self._done:
            return None
        if self._next is None:
            self._next = next(self._chunks, None)
            if self._next is None:
                self._done = True
                return None
        samples, info = self._next
        t_start = self._t0 + self._pos / SAMPLE_RATE
        if self.settings.realtime:
            # A block is "captured" once its last sample has been heard.
            wait = t_start + samples.size / SAMPLE_RATE - time.time()
            if wait > 0:
                if timeout is not None and timeout < wait:
                    time.sleep(max(timeout, 0.0))
                    return None
                time.sleep(wait)
        self._next = None
        self._pos += samples.size
        return self._deliver(Block(samples, t_start, False, info))

    def stop(self) -> None:
        self._chunks = None
        self._done = True


# --------------------------------------------------------------------------- stdin PCM


def decode_pcm(
    data: bytes, fmt: str, channels: int, channel: int | None = None
) -> NDArray[np.float32]:
    """Interleaved little-endian PCM bytes -> float32 mono in [-1, 1) (mix-down or one channel).

    `data` must hold whole frames.
    """
    dtype = STDIN_FORMATS[fmt]
    x = np.frombuffer(data, dtype=dtype).reshape(-1, channels)
    if dtype.kind == "i":
        y = x.astype(np.float32) / np.float32(2 ** (8 * dtype.itemsize - 1))
    else:
        y = x.astype(np.float32)
    if channel is not None:
        return np.ascontiguousarray(y[:, channel])
    return y[:, 0].copy() if channels == 1 else y.mean(axis=1, dtype=np.float32)


class StdinSource(AudioSource):
    """Raw PCM from a binary stream, read on a helper thread so `read(timeout)` can time out."""

    def __init__(self, settings: SourceSettings, stream: BinaryIO) -> None:
        super().__init__()
        if settings.stdin_format not in STDIN_FORMATS:
            raise ConfigError(
                f"source.stdin_format: expected one of {', '.join(STDIN_FORMATS)}, "
                f"got {settings.stdin_format!r}"
            )
        if settings.stdin_channels <= 0:
            raise ConfigError(
                f"source.stdin_channels: expected a positive integer, got {settings.stdin_channels}"
            )
        if settings.stdin_rate <= 0:
            raise ConfigError(
                f"source.stdin_rate: expected a positive rate, got {settings.stdin_rate}"
            )
        if settings.channel is not None and settings.channel >= settings.stdin_channels:
            raise ConfigError(
                f"source.channel: channel {settings.channel} requested but stdin has "
                f"{settings.stdin_channels} channel(s)"
            )
        self.settings = settings
        self.stream = stream
        self.frame_bytes = STDIN_FORMATS[settings.stdin_format].itemsize * settings.stdin_channels
        self._q: queue.Queue[tuple[float, NDArray[np.float32]] | BaseException | None] = (
            queue.Queue(maxsize=64)
        )
        self._resampler = StreamResampler(settings.stdin_rate, SAMPLE_RATE)
        self._thread: threading.Thread | None = None
        self._t0: float | None = None
        self._done = False
        self._stopping = threading.Event()

    def start(self) -> None:
        s = self.settings
        log.info("reading %s PCM from stdin: %d Hz, %d channel(s)%s", s.stdin_format,
                 s.stdin_rate, s.stdin_channels,
                 f", resampling to {SAMPLE_RATE} Hz" if s.stdin_rate != SAMPLE_RATE else "")
        self._thread = threading.Thread(target=self._reader, name="stdin-pcm", daemon=True)
        self._thread.start()

    def _reader(self) -> None:
        s = self.settings
        want = self.frame_bytes * s.blocksize
        tail = b""
        try:
            while not self._stopping.is_set():
                data = self.stream.read(want)
                if not data:
                    break
                data = tail + data
                whole = len(data) - len(data) % self.frame_bytes
                tail = data[whole:]
                if whole:
                    pcm = decode_pcm(data[:whole], s.stdin_format, s.stdin_channels, s.channel)
                    self._q.put((time.time(), pcm))
            if tail:
                log.warning("stdin ended inside a frame: dropped %d trailing byte(s)", len(tail))
            self._q.put(None)
        except BaseException as exc:  # hand it to the reading thread
            self._q.put(exc)

    @property
    def exhausted(self) -> bool:
        return self._done

    def read(self, timeout: float | None = None) -> Block | None:
        if self._thread is None:
            raise RuntimeError("StdinSource.read() before start()")
        if self._done:
            return None
        try:
            item = self._q.get(timeout=timeout)
        except queue.Empty:
            return None
        first_out = self._resampler.n_out
        if item is None:
            self._done = True
            y = self._resampler.flush()
        elif isinstance(item, BaseException):
            self._done = True
            raise DeviceError(f"stdin: reading PCM failed ({item})") from item
        else:
            arrived, x = item
            rate = self.settings.stdin_rate
            if self._t0 is None:  # the first chunk's first sample
                self._t0 = arrived - x.size / rate
            y = self._resampler.process(x)
            # Timestamps follow the stream's own clock (exact spacing, and a file piped in
            # faster than real time keeps its timeline). When audio arrives later than that
            # clock predicts (the writer paused, or its clock is slow), move the clock on.
            lag = arrived - (self._t0 + self._resampler.n_in / rate)
            if lag > REANCHOR_SECONDS:
                self._t0 += lag
        if y.size == 0:
            return None
        t0 = self._t0 if self._t0 is not None else time.time()
        return self._deliver(Block(y, t0 + first_out / SAMPLE_RATE, False, "stdin"))

    def stop(self) -> None:
        self._stopping.set()
        self._done = True


# --------------------------------------------------------------------------- live devices


def list_input_devices(probe_rates: bool = True) -> list[DeviceInfo]:
    """Input devices and the rates among 8/16/22.05/32/44.1/48 kHz they accept.

    See `edge_agent.capture` (imported here lazily: it loads PortAudio).
    """
    from .capture import list_input_devices as _list

    return _list(probe_rates)
