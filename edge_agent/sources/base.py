"""What every audio source delivers and promises: the contracts, and nothing that implements them.

Every source yields `Block`s of float32 mono samples at the rate it was opened with (the
bundle's rate) with the wall-clock time of their first sample, so the windowing and everything
after it never needs to know what delivered the audio. `SourceSettings` is the `source:`
section of the agent's YAML; which implementation it selects is decided in
`edge_agent.sources.open_source`, not here.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal

from ..arrays import FloatArray
from ..errors import ConfigError
from ..frontend import SAMPLE_RATE
from ..settings import bounded, check_fields

SourceKind = Literal["device", "files", "stdin"]
StdinFormat = Literal["s16le", "s32le", "f32le"]


@dataclass(frozen=True)
class SourceSettings:
    """The `source:` section of the agent's YAML."""

    kind: SourceKind = "device"  # where the audio comes from: a microphone, WAV files, a pipe
    device: str | int | None = None  # name, case-insensitive substring or index; None = default
    channel: int | None = bounded(  # 0-based channel of a multi-channel input; None = mix down
        None, ge=0)
    capture_rate: int | None = bounded(  # None = the bundle's rate if supported, else the device's
        None, ge=1000, le=384000)
    blocksize: int = bounded(  # frames per block at the capture rate (files/stdin: bundle rate)
        1600, ge=1, le=480000)
    files: tuple[str, ...] = ()  # WAV files or folders for kind="files"
    realtime: bool = False  # replay files paced at real time (True) or as fast as possible
    loop: bool = False  # replay files forever
    skip_unreadable: bool = False  # files: leave out a file that cannot be read (one warning)
    stdin_format: StdinFormat = "s16le"  # sample format of raw PCM on stdin
    stdin_rate: int = bounded(SAMPLE_RATE, ge=1000, le=384000)
    stdin_channels: int = bounded(1, ge=1, le=256)
    reconnect_seconds: float = bounded(2.0, gt=0)  # device lost: how often to try reopening it
    stall_seconds: float = bounded(5.0, gt=0)  # device delivering nothing this long = lost

    def __post_init__(self) -> None:
        check_fields(self, "source")
        if self.kind == "stdin" and self.channel is not None and (
                self.channel >= self.stdin_channels):
            raise ConfigError(f"source.channel: channel {self.channel} requested but stdin has "
                              f"{self.stdin_channels} channel(s) (source.stdin_channels)")


@dataclass(frozen=True)
class Block:
    """A run of consecutive samples, float32 mono at the source's rate."""

    samples: FloatArray
    t_start: float  # wall clock (time.time()) of the first sample
    overflow: bool = False  # samples were lost just before this block
    source_info: str = ""  # e.g. the file name during replay
    lanes: tuple[FloatArray, ...] = ()  # a capture shared by monitors: each one's channel
    # (`DeviceSource(lanes=...)`, in the order asked; `samples` is lanes[0]); () = one lane

    def lane(self, i: int) -> FloatArray:
        """The samples of lane `i` (0 for a source with one lane)."""
        return self.lanes[i] if self.lanes else self.samples


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

    @property
    def name(self) -> str:
        """What to call this source in messages (a device overrides it with the device name)."""
        return type(self).__name__

    def status(self) -> dict[str, Any]:
        """Counters for logs and the agent's status messages (JSON-serialisable)."""
        return {"blocks": self.blocks, "overflows": self.overflows}

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
