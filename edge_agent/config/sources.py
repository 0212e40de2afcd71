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
