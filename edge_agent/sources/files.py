"""Replay of WAV files as one continuous stream (`source.kind: files`).

Files (and folders, expanded to their WAV files) play one after the other, paced at real time
or as fast as the reader takes them, optionally in a loop; `Block.source_info` names the file.
Timestamps follow the audio (the first sample is "now" at start), so a fast replay produces the
same timeline as a paced one.

Files are streamed block by block (`audio.WavStream`): replaying an hour-long recording costs
as little memory as a 10 s clip. Every file's header is checked at construction; a file that
cannot be used is an error naming it, or with `source.skip_unreadable` (`--skip-unreadable`)
one warning line and the file is left out. A file shorter than a window is named in a warning.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from edge_agent.arrays import FloatArray
from edge_agent.audio.files import WavStream, expand_files
from edge_agent.config.sources import SourceSettings
from edge_agent.errors import AudioFileError, ConfigError
from edge_agent.sources.base import AudioSource, Block

log = logging.getLogger(__name__)

SKIP_HINT = " (remove the file or pass --skip-unreadable)"


def usable_files(settings: SourceSettings, rate: int, window: int | None = None) -> list[Path]:
    """The files of `settings.files` whose header can be used, checked before any replay: a
    bad file in a folder fails now (or, with `skip_unreadable`, is left out with one warning
    line), not after the files before it have played; a `channel` a file lacks is such a
    failure. With `window` (samples at `rate`), files shorter than a window are named: replay
    is one continuous stream, so such a file is only scored inside a window that runs on into
    the next file, and a short last (or only) file is not scored at all. `config check` calls
    this too (`config.check_start`), so it refuses the files the replay refuses."""
    out = []
    for p in expand_files(settings.files):
        try:
            s = WavStream(p, settings.channel, rate)
        except AudioFileError as exc:
            if not settings.skip_unreadable:
                raise AudioFileError(exc.path, exc.reason + SKIP_HINT) from None
            log.warning("%s; skipped", exc)
            continue
        if window is not None and s.samples < window:
            log.warning(
                "%s: %.2f s is shorter than one %.2f s window; it is scored only as part "
                "of a window that continues into the next file (not at all if last)",
                p,
                s.seconds,
                window / rate,
            )
        out.append(p)
    if not out:
        raise AudioFileError(", ".join(settings.files), "no readable WAV file")
    return out


class FileSource(AudioSource):
    """Replays WAV files as one continuous stream at `rate` (see module docstring)."""

    def __init__(self, settings: SourceSettings, rate: int, window: int | None = None) -> None:
        super().__init__()
        if not settings.files:
            raise ConfigError("source.files: expected at least one WAV file or folder")
        self.settings = settings
        self.rate = rate
        self.paths = usable_files(settings, rate, window)
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
        log.info(
            "replaying %d file(s) %s%s",
            len(self.paths),
            mode,
            " in a loop" if self.settings.loop else "",
        )

    def _generate(self) -> Iterator[tuple[FloatArray, str]]:
        """Each file in `blocksize` blocks (the last of a file may be shorter), streamed: the
        memory a file costs does not grow with its length."""
        while True:
            delivered = 0
            for path in self.paths:
                for chunk in self._file_blocks(path):
                    delivered += chunk.size
                    yield chunk, str(path)
            if not self.settings.loop:
                return
            if delivered == 0:  # every file failed on the way: looping would spin forever
                raise AudioFileError(", ".join(self.settings.files), "no readable audio")

    def _file_blocks(self, path: Path) -> Iterator[FloatArray]:
        n = self.settings.blocksize
        pending = np.zeros(0, dtype=np.float32)
        try:
            stream = WavStream(path, self.settings.channel, self.rate)
            if stream.info.rate != self.rate:
                log.debug("%s: resampling %d Hz -> %d Hz", path, stream.info.rate, self.rate)
            for b in stream.blocks():
                pending = np.concatenate([pending, b])
                full = pending.size // n * n
                for i in range(0, full, n):
                    yield np.ascontiguousarray(pending[i : i + n])
                pending = pending[full:]
        except AudioFileError as exc:
            if not self.settings.skip_unreadable:
                raise AudioFileError(exc.path, exc.reason + SKIP_HINT) from None
            log.warning("%s; rest of the file skipped", exc)
            return
        if pending.size:
            yield np.ascontiguousarray(pending)

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
