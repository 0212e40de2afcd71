"""Where the agent's audio comes from: a live microphone, replayed files, or raw PCM on stdin.

* `base`: the contracts every source keeps (`SourceSettings`, `Block`, `AudioSource`);
* `device`: a PortAudio input, resampled when it refuses the bundle's rate, reopened after loss;
* `files`: WAV files replayed as one stream; `stdin`: raw PCM from a pipe;
* `resampler`: the streaming resampler device and stdin share.

`open_source` below is the one place that maps `source.kind` to an implementation. It imports
each on use: replaying files must work on a machine without PortAudio, and the contracts never
import what implements them.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import IO, get_args

from edge_agent.config.sources import SourceKind, SourceSettings
from edge_agent.errors import ConfigError
from edge_agent.sources.base import AudioSource


def open_source(
    settings: SourceSettings,
    rate: int,
    stdin: IO[bytes] | None = None,
    window: int | None = None,
    lanes: Sequence[int | None] | None = None,
) -> AudioSource:
    """The source `settings.kind` names, delivering blocks at `rate` (not started yet).

    `stdin` is the stream for kind "stdin" (default: sys.stdin.buffer). `window` (samples at
    `rate`) lets the files source warn about files shorter than one window. `lanes`: the
    channels of several monitors sharing one device (`Block.lanes`; devices only).
    """
    if settings.blocksize <= 0:
        raise ConfigError(
            f"source.blocksize: expected a positive integer, got {settings.blocksize}"
        )
    if settings.channel is not None and settings.channel < 0:
        raise ConfigError(
            f"source.channel: expected a 0-based channel >= 0, got {settings.channel}"
        )
    if settings.kind == "device":
        from edge_agent.sources.device import DeviceSource

        return DeviceSource(settings, rate, lanes=lanes)
    if lanes is not None and len(lanes) > 1:
        raise ConfigError(
            f"source.kind: only a device can be shared by monitors, not {settings.kind}"
        )
    if settings.kind == "files":
        from edge_agent.sources.files import FileSource

        return FileSource(settings, rate, window)
    if settings.kind == "stdin":
        from edge_agent.sources.stdin import StdinSource

        return StdinSource(settings, stdin if stdin is not None else sys.stdin.buffer, rate)
    raise ConfigError(
        f"source.kind: expected one of {', '.join(get_args(SourceKind))}, got {settings.kind!r}"
    )
