"""WAV headers parsed by hand, samples read block by block: memory bounded by the block size.

Why not `scipy.io.wavfile.read`: it returns the whole file, and a one-hour 48 kHz stereo
recording becomes gigabytes of arrays (above the systemd unit's MemoryMax). Its `mmap=True`
cannot map 24-bit PCM, and the stdlib `wave` module reads neither IEEE float nor (before
Python 3.12) WAVE_FORMAT_EXTENSIBLE. The RIFF layout is small enough to read directly:

* containers: RIFF (little-endian), RIFX (big-endian), RF64 (sizes in the `ds64` chunk, for
  files over 4 GB); a data size of 0xFFFFFFFF (written by recorders that stream to a pipe)
  and a data chunk cut short by a killed recorder both mean "the samples that are there";
* formats: PCM with 1-4 byte samples (8-bit is unsigned), IEEE float with 4 or 8 bytes,
  either as a plain tag or inside a WAVE_FORMAT_EXTENSIBLE header (MIMII's 8-channel files).
  The sample container (block align / channels) decides the decoding, so 20-bit audio in
  24-bit containers or 24-bit audio in 32-bit containers scales correctly (left-justified).

`WavReader.read(n)` returns the next n frames as a (frames, channels) array of the file's own
sample type (24-bit as left-justified int32); `edge_agent.audio.pcm.to_float` scales them.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import numpy as np
from numpy.typing import NDArray

PCM, IEEE_FLOAT, EXTENSIBLE = 0x0001, 0x0003, 0xFFFE
UNKNOWN_SIZE = 0xFFFFFFFF


class WavFormatError(ValueError):
    """The bytes are not a WAV file this reader can decode (the caller names the file)."""


@dataclass(frozen=True)
class WavInfo:
    """What the header says, and where the samples are."""

    rate: int
    channels: int
    sample_bytes: int  # bytes per sample of one channel (the container width)
    is_float: bool
    big_endian: bool
    data_offset: int  # file offset of the first sample
    frames: int  # complete frames present in the file

    @property
    def seconds(self) -> float:
        return self.frames / self.rate if self.rate > 0 else 0.0

    @property
    def dtype(self) -> np.dtype[Any]:
        """numpy dtype of one stored sample (24-bit: decoded to int32 by `WavReader`)."""
        order = ">" if self.big_endian else "<"
        if self.is_float:
            return np.dtype(f"{order}f{self.sample_bytes}")
        if self.sample_bytes == 1:
            return np.dtype(np.uint8)
        if self.sample_bytes == 3:
            return np.dtype(np.int32)
        return np.dtype(f"{order}i{self.sample_bytes}")


def _chunks(f: IO[bytes], order: str, end: int) -> Any:
    """(id, size, offset of the chunk's data) for each chunk until `end`."""
    pos = 12
    while pos + 8 <= end:
        f.seek(pos)
        head = f.read(8)
        if len(head) < 8:
            return
        cid = head[:4]
        (size,) = struct.unpack(order + "I", head[4:])
        yield cid, size, pos + 8
        pos += 8 + size + (size & 1)  # chunks are word-aligned


def parse_header(f: IO[bytes], file_size: int) -> WavInfo:  # noqa: C901, PLR0912
    """Parse the RIFF header of an open binary file. Raises WavFormatError."""
    f.seek(0)
    head = f.read(12)
    if len(head) < 12 or head[8:12] != b"WAVE" or head[:4] not in (b"RIFF", b"RIFX", b"RF64"):
        raise WavFormatError("not a RIFF/WAVE file")
    big = head[:4] == b"RIFX"
    order = ">" if big else "<"
    fmt: bytes | None = None
    data: tuple[int, int] | None = None
    ds64_data_size: int | None = None
    for cid, size, offset in _chunks(f, order, file_size):
        if cid == b"ds64" and size >= 24:
            f.seek(offset)
            _riff, ds64_data_size, _count = struct.unpack("<QQQ", f.read(24))
        elif cid == b"fmt ":
            f.seek(offset)
            fmt = f.read(min(size, 40))
        elif cid == b"data":
            if size != UNKNOWN_SIZE:
                data = (offset, size)
            else:  # RF64 (size in ds64), or a recorder that never came back to fill it in
                data = (
                    offset,
                    ds64_data_size if ds64_data_size is not None else file_size - offset,
                )
            break  # the samples are last in any file a recorder writes; nothing after matters
    if fmt is None or len(fmt) < 16:
        raise WavFormatError("no valid 'fmt ' chunk")
    if data is None:
        raise WavFormatError("no 'data' chunk")
    tag, channels, rate, _byte_rate, block_align, bits = struct.unpack(order + "HHIIHH", fmt[:16])
    if tag == EXTENSIBLE:
        if len(fmt) < 26:
            raise WavFormatError("WAVE_FORMAT_EXTENSIBLE header too short")
        (tag,) = struct.unpack(order + "H", fmt[24:26])  # first 2 bytes of the sub-format GUID
    if tag not in (PCM, IEEE_FLOAT):
        raise WavFormatError(f"unsupported WAV format tag 0x{tag:04x} (expected PCM or float)")
    if channels < 1:
        raise WavFormatError(f"header says {channels} channels")
    if block_align == 0 or block_align % channels:
        block_align = channels * -(-bits // 8)  # some writers leave it 0: derive it
    sample_bytes = block_align // channels
    is_float = tag == IEEE_FLOAT
    if (is_float and sample_bytes not in (4, 8)) or (not is_float and not 1 <= sample_bytes <= 4):
        kind = "float" if is_float else "PCM"
        raise WavFormatError(f"unsupported {kind} sample width of {sample_bytes} bytes")
    offset, size = data
    available = max(0, file_size - offset)
    frames = min(size, available) // block_align
    return WavInfo(int(rate), int(channels), sample_bytes, is_float, big, offset, frames)


class WavReader:
    """An open WAV file: `info` from the header, `read(n)` the next n frames."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._f: IO[bytes] = Path(self.path).open("rb")  # noqa: SIM115 (closed in close())
        try:
            size = self.path.stat().st_size
            self.info = parse_header(self._f, size)
        except (WavFormatError, struct.error):
            self._f.close()
            raise
        self._f.seek(self.info.data_offset)
        self.position = 0  # frames read so far

    def read(self, n: int) -> NDArray[Any]:
        """The next (at most) n frames as (frames, channels); empty at the end."""
        info = self.info
        n = max(0, min(n, info.frames - self.position))
        width = info.sample_bytes * info.channels
        raw = self._f.read(n * width)
        n = len(raw) // width  # a file truncated after the header was read: what is there
        self.position += n
        raw = raw[: n * width]
        if info.sample_bytes == 3:  # 24-bit: left-justify into int32, as scipy does
            b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3)
            if info.big_endian:
                b = b[:, ::-1]
            wide = np.zeros((b.shape[0], 4), dtype=np.uint8)
            wide[:, 1:] = b
            samples = wide.view("<i4").reshape(-1)
        else:
            samples = np.frombuffer(raw, dtype=info.dtype)
        return samples.reshape(n, info.channels)

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> WavReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
