"""Raw interleaved PCM from a binary stream (`source.kind: stdin`).

So `arecord -f S16_LE -r 16000 -c 1 -t raw | edge-agent run --stdin` works on a machine where
PortAudio does not, and any program that writes PCM can feed the agent. s16le / s32le / f32le at
any rate and channel count; resampled (continuously across blocks) to the rate the source was
opened with, mixed down or one channel selected.
"""

from __future__ import annotations

import io
import logging
import os
import queue
import select
import threading
import time
from collections.abc import Callable
from typing import IO, Any

import numpy as np

from edge_agent.arrays import FloatArray
from edge_agent.audio.pcm import to_float, to_mono
from edge_agent.audio.resample import StreamResampler
from edge_agent.config.sources import SourceSettings, StdinFormat
from edge_agent.errors import ConfigError, DeviceError
from edge_agent.sources.base import AudioSource, Block

log = logging.getLogger(__name__)

STDIN_FORMATS: dict[StdinFormat, np.dtype[Any]] = {
    "s16le": np.dtype("<i2"),
    "s32le": np.dtype("<i4"),
    "f32le": np.dtype("<f4"),
}
REANCHOR_SECONDS = 1.0
"""Audio arriving this much later than its own clock predicts moves the clock on."""
POLL_SECONDS = 0.2
"""How often the reader of a real file descriptor looks at `stop()` while no data comes."""


def decode_pcm(
    data: bytes, fmt: StdinFormat, channels: int, channel: int | None = None
) -> FloatArray:
    """Interleaved little-endian PCM bytes -> float32 mono in [-1, 1) (mix-down or one channel).

    `data` must hold whole frames.
    """
    frames = np.frombuffer(data, dtype=STDIN_FORMATS[fmt]).reshape(-1, channels)
    return to_mono(to_float(frames), channel)


class StdinSource(AudioSource):
    """Raw PCM from a binary stream, read on a helper thread so `read(timeout)` can time out."""

    def __init__(self, settings: SourceSettings, stream: IO[bytes], rate: int) -> None:
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
        self.settings = settings
        self.stream = stream
        self.frame_bytes = STDIN_FORMATS[settings.stdin_format].itemsize * settings.stdin_channels
        self._q: queue.Queue[tuple[float, FloatArray] | BaseException | None] = queue.Queue(
            maxsize=64
        )
        self.rate = rate
        self._resampler = StreamResampler(settings.stdin_rate, rate)
        self._thread: threading.Thread | None = None
        self._t0: float | None = None
        self._done = False
        self._stopping = threading.Event()

    @property
    def name(self) -> str:
        return "stdin"

    def start(self) -> None:
        s = self.settings
        log.info(
            "reading %s PCM from stdin: %d Hz, %d channel(s)%s",
            s.stdin_format,
            s.stdin_rate,
            s.stdin_channels,
            f", resampling to {self.rate} Hz" if s.stdin_rate != self.rate else "",
        )
        self._thread = threading.Thread(target=self._reader, name="stdin-pcm", daemon=True)
        self._thread.start()

    def _reader(self) -> None:
        s = self.settings
        want = self.frame_bytes * s.blocksize
        tail = b""
        read = self._chunk_reader(want)
        try:
            while not self._stopping.is_set():
                data = read()
                if data is None:  # stopped while waiting for data
                    break
                if not data:
                    if tail:
                        log.warning(
                            "stdin ended inside a frame: dropped %d trailing byte(s)", len(tail)
                        )
                    break
                data = tail + data
                whole = len(data) - len(data) % self.frame_bytes
                tail = data[whole:]
                if whole:
                    pcm = decode_pcm(data[:whole], s.stdin_format, s.stdin_channels, s.channel)
                    self._put((time.time(), pcm))
            self._put(None)
        except BaseException as exc:  # hand it to the reading thread
            self._put(exc)

    def _put(self, item: tuple[float, FloatArray] | BaseException | None) -> None:
        """Queue an item for `read`, giving up once `stop()` was called (nobody reads then)."""
        while not self._stopping.is_set():
            try:
                self._q.put(item, timeout=POLL_SECONDS)
            except queue.Full:
                continue
            return

    def _chunk_reader(self, want: int) -> Callable[[], bytes | None]:
        """A function returning the next chunk of at most `want` bytes (b"" at the end of the
        stream, None once `stop()` was called).

        A stream with a file descriptor (a pipe, a file, a terminal) is read with `os.read`
        after `poll` says it is readable, never through its buffered reader: a thread
        blocked inside `BufferedReader.read` holds that reader's lock, and at interpreter
        shutdown (SIGTERM while the writer keeps the pipe open) Python aborts with
        `Fatal Python error: _enter_buffered_busy` (exit 134). Waiting in `poll` instead
        lets the thread see `stop()` within POLL_SECONDS and end before the interpreter does.
        Chunks are still filled up to `want` bytes (a block of `blocksize` frames), as the
        buffered read did. A stream without a descriptor (io.BytesIO) is read as it is.
        Nothing may have been read from a stream with a descriptor before (its buffer would
        be skipped): the agent is its only reader.
        """
        try:
            fd = self.stream.fileno()
        except (OSError, ValueError, io.UnsupportedOperation):
            return lambda: self.stream.read(want)

        poller = select.poll()  # not select(): a descriptor above 1023 is fine too
        poller.register(fd, select.POLLIN | select.POLLPRI)

        def chunk() -> bytes | None:
            parts: list[bytes] = []
            size = 0
            while size < want:
                ready = poller.poll(POLL_SECONDS * 1000)  # readable, or the writer hung up
                if self._stopping.is_set():
                    return None
                if not ready:
                    continue
                part = os.read(fd, want - size)
                if not part:
                    break
                parts.append(part)
                size += len(part)
            return b"".join(parts)

        return chunk

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
        return self._deliver(Block(y, t0 + first_out / self.rate, False, "stdin"))

    def stop(self) -> None:
        """Stop reading; the reader thread ends within POLL_SECONDS when it waits for data on
        a file descriptor (see `_chunk_reader`), and is waited for that long (bounded)."""
        self._stopping.set()
        self._done = True
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(4 * POLL_SECONDS)
