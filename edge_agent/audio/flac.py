"""FLAC in, block by block, behind the same interface as `wavfile.WavReader`.

Why: the agent keeps its evidence clips as FLAC (`runtime.evidence`, lossless at about half
the size of WAV), and the first thing an engineer does with an alarm's clip is score it again
(`edge-agent score clip.flac`) or replay it (`edge-agent run --files`). Every file reader goes
through `audio.files.WavStream`, which opens this reader when a file starts with the FLAC
magic (`is_flac`), so the agent reads its own clips everywhere it reads WAV.

libsndfile (the `soundfile` wheel, already the evidence writer) decodes; samples come out as
left-justified int32, so `pcm.to_float` scales 16- and 24-bit FLAC exactly as it scales WAV of
the same width. Anything libsndfile refuses is a `WavFormatError` with its reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from edge_agent.audio.wavfile import WavFormatError, WavInfo

MAGIC = b"fLaC"


def is_flac(path: str | Path) -> bool:
    """Whether the file starts with the FLAC stream marker (whatever its name says)."""
    with Path(path).open("rb") as f:
        return f.read(4) == MAGIC


class FlacReader:
    """An open FLAC file: `info` (a `WavInfo`: rate, channels, frames), `read(n)`."""

    def __init__(self, path: str | Path) -> None:
        import soundfile

        self.path = Path(path)
        try:
            self._f: Any = soundfile.SoundFile(str(self.path))
        except (soundfile.LibsndfileError, RuntimeError) as exc:
            raise WavFormatError(f"not a readable FLAC file: {exc}") from None
        self.info = WavInfo(
            rate=int(self._f.samplerate),
            channels=int(self._f.channels),
            sample_bytes=4,
            is_float=False,
            big_endian=False,
            data_offset=0,
            frames=int(self._f.frames),
        )
        self.position = 0

    def read(self, n: int) -> NDArray[Any]:
        """The next (at most) n frames as (frames, channels) int32; empty at the end."""
        import soundfile

        try:
            x: NDArray[Any] = self._f.read(max(0, n), dtype="int32", always_2d=True)
        except (soundfile.LibsndfileError, RuntimeError) as exc:
            raise WavFormatError(f"FLAC decode failed: {exc}") from None
        self.position += x.shape[0]
        return np.ascontiguousarray(x)

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> FlacReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
