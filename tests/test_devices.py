"""`edge-agent devices`: the table and the JSON list, on real (fake-microphone) devices."""

from __future__ import annotations

import json

import numpy as np
import pytest
from audio_fixtures import FakeMic
from typer.testing import CliRunner

from edge_agent.cli import app
from edge_agent.commands.devices import format_devices
from edge_agent.sources.device import DeviceInfo


def test_table_marks_default_and_devices_needing_resampling() -> None:
    text = format_devices(
        [
            DeviceInfo(0, "USB PnP Sound Device", 1, 48000.0, (44100, 48000)),
            DeviceInfo(3, "pulse", 32, 44100.0, (16000, 48000), is_default=True),
        ],
        16000,
    )
    lines = text.splitlines()
    assert "USB PnP Sound Device" in lines[1] and "44100, 48000" in lines[1]
    assert "(resampled to 16000)" in lines[1]
    assert lines[2].startswith("*") and "resampled" not in lines[2]
    assert format_devices([], 16000) == "no input devices found"


@pytest.mark.audio
def test_devices_command_lists_fake_microphones(fake_mic: FakeMic) -> None:
    name = fake_mic(np.zeros(1600, np.float32))
    # typer runs a lone command without its name; with more commands registered it needs it
    prefix = ["devices"] if len(app.registered_commands) > 1 else []
    result = CliRunner().invoke(app, [*prefix, "--json"])
    assert result.exit_code == 0, result.output
    devices = {d["name"]: d for d in json.loads(result.output)}
    assert 16000 in devices[name]["supported_rates"]
    assert devices[name]["channels"] >= 1
    table = CliRunner().invoke(app, prefix)
    assert table.exit_code == 0 and name in table.output
