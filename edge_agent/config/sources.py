"""edge_agent.config.sources: moved from edge_agent.sources.base."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from edge_agent.config.fields import bounded, check_fields
from edge_agent.errors import ConfigError
from edge_agent.scoring.frontend import SAMPLE_RATE

SourceKind = Literal["device", "files", "stdin"]


StdinFormat = Literal["s16le", "s32le", "f32le"]


@dataclass(frozen=True)
class SourceSettings:
    """The `source:` section of the agent's YAML."""

    kind: SourceKind = "device"
    """Where the audio comes from: a microphone, WAV files, a pipe."""
    device: str | int | None = None
    """Name, case-insensitive substring or index; None = default."""
    channel: int | None = bounded(None, ge=0)
    """0-based channel of a multi-channel input; None = mix down."""
    capture_rate: int | None = bounded(None, ge=1000, le=384000)
    """None = the bundle's rate if supported, else the device's."""
    blocksize: int = bounded(1600, ge=1, le=480000)
    """Frames per block at the capture rate (files/stdin: bundle rate)."""
    files: tuple[str, ...] = ()
    """WAV files or folders for kind="files"."""
    realtime: bool = False
    """Replay files paced at real time (True) or as fast as possible."""
    loop: bool = False
    """Replay files forever."""
    skip_unreadable: bool = False
    """Files: leave out a file that cannot be read (one warning)."""
    stdin_format: StdinFormat = "s16le"
    """Sample format of raw PCM on stdin."""
    stdin_rate: int = bounded(SAMPLE_RATE, ge=1000, le=384000)
    """Sample rate of raw PCM on stdin (resampled to the bundle's rate)."""
    stdin_channels: int = bounded(1, ge=1, le=256)
    """Interleaved channels of raw PCM on stdin (mixed down, or `channel`)."""
    reconnect_seconds: float = bounded(2.0, gt=0)
    """Device lost: how often to try reopening it."""
    stall_seconds: float = bounded(5.0, gt=0)
    """Device delivering nothing this long = lost."""

    def __post_init__(self) -> None:
        check_fields(self, "source")
        if (
            self.kind == "stdin"
            and self.channel is not None
            and (self.channel >= self.stdin_channels)
        ):
            raise ConfigError(
                f"source.channel: channel {self.channel} requested but stdin has "
                f"{self.stdin_channels} channel(s) (source.stdin_channels)"
            )
