"""`edge-agent devices`: which microphones can the agent open, and at which rates?

The first thing a user needs on a new Pi: the device names/indices to put in `source.device`,
and whether the microphone accepts 16 kHz (if not, the agent resamples and says so).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING

from edge_agent.commands import options as opt

if TYPE_CHECKING:  # sources.device loads PortAudio: only when the command runs
    from edge_agent.sources.device import DeviceInfo


def format_devices(devices: Sequence[DeviceInfo], rate: int) -> str:
    """A human-readable table; `*` marks the default input device, and devices that refuse
    `rate` (the model's) are marked as resampled."""
    if not devices:
        return "no input devices found"
    lines = [f"{'':1} {'idx':>3}  {'name':<32} {'ch':>3}  {'default':>7}  supported rates (Hz)"]
    for d in devices:
        rates = ", ".join(str(r) for r in d.supported_rates) or "none of the probed rates"
        note = "" if rate in d.supported_rates else f"  (resampled to {rate})"
        lines.append(
            f"{'*' if d.is_default else ' '} {d.index:>3}  {d.name:<32} {d.channels:>3}  "
            f"{round(d.default_rate):>7}  {rates}{note}"
        )
    return "\n".join(lines)


def devices_cmd(as_json: opt.Json = False) -> None:
    """List audio input devices with their channels and supported sample rates."""
    from edge_agent.scoring.frontend import SAMPLE_RATE
    from edge_agent.sources.device import list_input_devices

    devices = list_input_devices()
    if as_json:
        print(
            json.dumps(
                [
                    {
                        "index": d.index,
                        "name": d.name,
                        "channels": d.channels,
                        "default_rate": d.default_rate,
                        "supported_rates": list(d.supported_rates),
                        "hostapi": d.hostapi,
                        "default": d.is_default,
                    }
                    for d in devices
                ],
                indent=2,
            )
        )
    else:
        print(format_devices(devices, SAMPLE_RATE))
