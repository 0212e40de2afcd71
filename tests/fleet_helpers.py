"""A small real agent for the fleet tests, signed demo bundles, and ways to watch the states.

`MiniAgent` implements edge_agent.fleet.control.AgentControl for real: it scores with the
demo bundle through `Scorer`, reloads the bundle when its `current` changes (with the smoke
test of every monitor's section, keeping the old model when that fails, as the agent does),
and records from a real audio source (`sources.open_source` over the demo clips). Only the
sinks and the windows are left out: the fleet client never sees them.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from pathlib import Path
from typing import Any

from edge_agent.audio import write_wav
from edge_agent.bundle import load_bundle, write_adapted_version
from edge_agent.errors import DeviceError, EdgeAgentError
from edge_agent.fleet.client import FleetClient
from edge_agent.fleet.settings import FleetSettings
from edge_agent.scorer import Scorer, one_line
from edge_agent.signing import TrustedKey, generate_keypair, load_public_keys, sign_version
from edge_agent.sinks.mqtt import MqttSettings
from edge_agent.sources import open_source
from edge_agent.sources.base import SourceSettings

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "edge_agent" / "demo"
SECTION = "fan_section_00"
V1 = "v1-89fb44ed"  # the demo bundle's model_version


class MiniAgent:
    """AgentControl for real (see module docstring)."""

    def __init__(self, root: Path, trusted: list[TrustedKey],
                 monitors: dict[str, str] | None = None, history: Path | None = None) -> None:
        self.root = root
        self.trusted = trusted
        self._monitors = monitors or {"fan": SECTION}
        self.history = history
        self.scorer = Scorer.from_bundle(root, 1, trusted=trusted)
        self.samples = self.scorer.spec.clip_samples
        self.reload_error: str | None = None
        self.reloads = 0
        self.realtime = False  # record at the pace of live audio (True) or as fast as it reads
        self._stamp = self._current_stamp()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _current_stamp(self) -> tuple[float, str]:
        p = self.root / "current"
        return p.stat().st_mtime, p.read_text()

    def _poll(self) -> None:
        while not self._stop.wait(0.1):
            stamp = self._current_stamp()
            if stamp == self._stamp:
                continue
            self._stamp = stamp
            try:
                new = Scorer.from_bundle(self.root, 1, trusted=self.trusted)
                for section in set(self._monitors.values()):
                    new.smoke_test(section, self.samples)
            except EdgeAgentError as exc:
                self.reload_error = one_line(exc)
                continue
            self.scorer, self.reload_error = new, None
            self.reloads += 1

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)

    # --- AgentControl
    def running_version(self) -> str:
        return self.scorer.bundle.model_version

    def monitors(self) -> dict[str, str]:
        return dict(self._monitors)

    def window_samples(self) -> int:
        return self.samples

    def bundle_root(self) -> Path:
        return self.root

    def status(self) -> dict[str, Any]:
        return {"model_version": self.running_version(), "reloads": self.reloads,
                "reload_error": self.reload_error,
                "monitors": {name: {"section": sec, "k": 3, "n": 5, "clear_after": 3,
                                    "hop_seconds": 5.0, "threshold_override": None,
                                    "history": str(self.history or "")}
                             for name, sec in self._monitors.items()}}

    def record(self, monitor: str, seconds: float, path: Path, timeout: float) -> Path:
        if monitor not in self._monitors:
            raise DeviceError(f"no monitor {monitor!r}")
        rate = self.scorer.spec.sample_rate
        want = round(seconds * rate)
        src = open_source(SourceSettings(kind="files", files=(str(DEMO / "clips"),), loop=True,
                                         realtime=self.realtime), rate)
        got: list[Any] = []
        have = 0
        end = time.monotonic() + timeout
        with src:
            while have < want:
                if time.monotonic() > end:
                    raise DeviceError(f"no audio within {timeout:g} s")
                block = src.read(0.2)
                if block is not None:
                    got.append(block.samples)
                    have += block.samples.size
        import numpy as np

        tmp = path.with_name(f".{path.name}.tmp")
        write_wav(tmp, np.concatenate(got)[:want], rate)
        os.replace(tmp, path)
        return path


def make_keys(d: Path, name: str = "fleet") -> tuple[Path, list[TrustedKey]]:
    priv, pub = d / f"{name}.key", d / f"{name}.pub"
    generate_keypair(priv, pub)
    return priv, load_public_keys([pub])


def signed_demo(dest: Path, private_key: Path) -> Path:
    """A copy of the demo bundle with its version signed."""
    shutil.copytree(DEMO / "bundle", dest)
    sign_version(dest / "versions" / "1", private_key)
    return dest


def new_version(root: Path, private_key: Path | None, threshold_delta: float = 0.5) -> Path:
    """A new version of the bundle at `root` (fan_section_00's threshold moved), signed with
    `private_key` when given (else a local adaptation: its origin's signature carried); its
    folder."""
    import dataclasses

    b = load_bundle(root)
    old = b.backend(SECTION)
    backends = {**b.backends, SECTION: dataclasses.replace(
        old, threshold=old.threshold + threshold_delta)}
    vdir = write_adapted_version(b, backends, "tuning", {"section": SECTION, "test": True})
    if private_key is not None:  # signed itself (else: a local adaptation, its origin signed)
        (vdir / "signed_origin.json").unlink(missing_ok=True)
        sign_version(vdir, private_key)
    return vdir


def fleet_settings(**kw: Any) -> FleetSettings:
    base: dict[str, Any] = dict(enabled=True, group="presses", health_timeout_seconds=10.0,
                                release_timeout_seconds=10.0, command_ttl_seconds=60.0,
                                command_timeout_seconds=30.0)
    base.update(kw)
    return FleetSettings(**base)


def mqtt_settings(port: int, device: str, **kw: Any) -> MqttSettings:
    base: dict[str, Any] = dict(host="127.0.0.1", port=port, device_id=device,
                                reconnect_min=0.1, reconnect_max=0.5, connect_timeout=5.0)
    base.update(kw)
    return MqttSettings(**base)


class Device:
    """One fleet member: a bundle copy, a MiniAgent on it, its FleetClient."""

    def __init__(self, d: Path, name: str, port: int, base: Path, trusted: list[TrustedKey],
                 settings: FleetSettings | None = None, **mqtt: Any) -> None:
        self.name = name
        self.dir = d / name
        self.root = self.dir / "bundle"
        self.state_dir = self.dir / "state"
        shutil.copytree(base, self.root)
        self.trusted = trusted
        self.agent = MiniAgent(self.root, trusted, history=self.state_dir / "scores.fan.bin")
        self.mqtt = mqtt_settings(port, name, **mqtt)
        self.settings = settings or fleet_settings()
        self.client: FleetClient | None = None

    def start(self) -> Device:
        self.client = FleetClient(self.mqtt, self.settings, self.agent, self.trusted,
                                  self.state_dir)
        self.client.start()
        assert self.client.connected.wait(5)
        return self

    def stop(self) -> None:
        if self.client is not None:
            self.client.close(5)
            self.client = None

    def close(self) -> None:
        self.stop()
        self.agent.close()

    def versions(self) -> list[str]:
        return sorted(p.name for p in (self.root / "versions").iterdir())


def latest_state(sub: Any, device: str, prefix: str = "edge-asd") -> dict[str, Any] | None:
    msgs = sub.on(f"{prefix}/{device}/fleet/state")
    return json.loads(msgs[-1]) if msgs else None


def wait_state(sub: Any, device: str, timeout: float = 10.0, prefix: str = "edge-asd",
               **want: Any) -> dict[str, Any]:
    """The device's latest fleet state once it has every `want` key/value (AssertionError with
    the last one otherwise)."""
    def ok(_: Any) -> bool:
        s = latest_state(sub, device, prefix)
        return s is not None and all(s.get(k) == v for k, v in want.items())

    sub.wait_for(ok, timeout)
    s = latest_state(sub, device, prefix)
    assert s is not None and all(s.get(k) == v for k, v in want.items()), (device, want, s)
    return s
