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
from typing import Any

from edge_agent.arrays import FloatArray


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
