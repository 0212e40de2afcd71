"""Replay of WAV files as one continuous stream (`source.kind: files`).

Files (and folders, expanded to their WAV files) play one after the other, paced at real time
or as fast as the reader takes them, optionally in a loop; `Block.source_info` names the file.
Timestamps follow the audio (the first sample is "now" at start), so a fast replay produces the
same timeline as a paced one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import numpy as np

from ..arrays import FloatArray
from ..audio import expand_files, read_wav, resample
from ..errors import ConfigError
from .base import AudioSource, Block, SourceSettings

log = logging.getLogger(__name__)


class FileSource(AudioSource):
    """Replays WAV files as one continuous stream at `rate` (see module docstring)."""

    def __init__(self, settings: SourceSettings, rate: int) -> None:
        super().__init__()
        if not settings.files:
            raise ConfigError("source.files: expected at least one WAV file or folder")
        self.settings = settings
        self.rate = rate
        self.paths = expand_files(settings.files)
        self._chunks: Iterator[tuple[FloatArray, str]] | None = None
        self._next: tuple[FloatArray, str] | None = None
        self._t0 = 0.0
        self._pos = 0  # samples delivered so far
        self._done = False

    @property
    def name(self) -> str:
        return "files"

    def start(self) -> None:
        self._chunks = self._generate()
        self._t0 = time.time()
        self._pos = 0
        self._done = False
        self._next = None
        mode = "real time" if self.settings.realtime else "as fast as possible"
        log.info("replaying %d file(s) %s%s", len(self.paths), mode,
                 " in a loop" if self.settings.loop else "")

    def _generate(self) -> Iterator[tuple[FloatArray, str]]:
        n = self.settings.blocksize
        while True:
            for path in self.paths:
                x, rate = read_wav(path, self.settings.channel)
                if rate != self.rate:
                    log.debug("%s: resampling %d Hz -> %d Hz", path, rate, self.rate)
                x = resample(x, rate, self.rate)
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
        t_start = self._t0 + self._pos / self.rate
        if self.settings.realtime:
            # A block is "captured" once its last sample has been heard.
            wait = t_start + samples.size / self.rate - time.time()
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
