"""Shared pytest fixtures (each engineer adds theirs with a small edit)."""

from __future__ import annotations

# Fake microphones through the real PortAudio/ALSA stack: alsa_sandbox, pulse_server, fake_mic.
from audio_fixtures import alsa_sandbox, fake_mic, pulse_server  # noqa: F401
