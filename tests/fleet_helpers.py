"""Real agents for the fleet tests, signed demo bundles, and ways to watch the fleet states.

`Device` is one fleet member as it runs in a plant: its own copy of the signed demo bundle and
a real `edge_agent.agent.Agent` built from its config (`load_config` with `fleet.enabled`), on
a thread of its own as `edge-agent run` would run it. The agent starts its own `FleetClient`,
publishes on its own MQTT connection and hot-reloads installed versions with its own bundle
poll; its audio is the demo's normal clips replayed in real time in a loop, so it runs until
stopped and a remote `record` records that audio as it plays. A restart is a new `Agent` from
the same config and the same folders (bundle, outbox, fleet state).
"""

from __future__ import annotations

import json
import shutil
import threading
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from waiting import wait_until

from edge_agent.agent import Agent
from edge_agent.bundle.load import load_bundle
from edge_agent.bundle.signing import device_signing_key, generate_keypair, sign_version
from edge_agent.bundle.versions import write_adapted_version, write_bundle
from edge_agent.config.agent import AgentConfig
from edge_agent.config.load import load_config
from edge_agent.config.sinks import MqttSettings
from edge_agent.fleet.client import FleetClient

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "edge_agent" / "demo"
SECTION = "fan_section_00"
MONITOR = "fan"  # the devices' one monitor (scored by SECTION)
V1 = load_bundle(DEMO / "bundle").model_version  # the demo bundle's version id
CLIPS = [str(p) for p in sorted((DEMO / "clips").glob("*_normal.wav"))]

FLEET: dict[str, Any] = {
    "enabled": True,
    "group": "presses",
    "health_timeout_seconds": 8.0,
    "release_timeout_seconds": 10.0,
    "command_ttl_seconds": 60.0,
    "command_timeout_seconds": 30.0,
}
"""The devices' `fleet:` section (small bounds: a test waits at most this long)."""


def make_keys(d: Path, name: str = "fleet") -> tuple[Path, Path]:
    """A signing key pair in `d`: (private key file, public key file for `trusted_keys`)."""
    priv, pub = d / f"{name}.key", d / f"{name}.pub"
    generate_keypair(priv, pub)
    return priv, pub


def signed_demo(dest: Path, private_key: Path) -> Path:
    """A copy of the demo bundle with its version signed."""
    shutil.copytree(DEMO / "bundle", dest)
    sign_version(dest / "versions" / "1", private_key)
    return dest


def new_version(
    root: Path,
    private_key: Path | None,
    threshold_delta: float = 0.5,
    sealed_in: Path | None = None,
) -> Path:
    """A new version of the bundle at `root` (fan_section_00's threshold moved), signed with
    `private_key` when given (else a local adaptation: its origin's signature carried, and
    sealed with the device key of state folder `sealed_in` when given, as the device's own
    tune would); its folder."""
    import dataclasses

    b = load_bundle(root)
    old = b.backend(SECTION)
    backends = {
        **b.backends,
        SECTION: dataclasses.replace(old, threshold=old.threshold + threshold_delta),
    }
    seal = device_signing_key(sealed_in) if sealed_in is not None else None
    vdir = write_adapted_version(b, backends, "tuning", {"section": SECTION, "test": True}, seal)
    if private_key is not None:  # signed itself (else: a local adaptation, its origin signed)
        (vdir / "signed_origin.json").unlink(missing_ok=True)
        sign_version(vdir, private_key)
    return vdir


def exported_version(root: Path, private_key: Path | None, drop: Sequence[str] = ()) -> Path:
    """A new current version of the bundle at `root` as an export writes one (no
    parent_version: `rollback` goes to the next lower version): version 1's models and
    sections but those in `drop`, signed with `private_key` (None: unsigned); its folder."""
    b = load_bundle(root, version=1)
    manifest = {
        k: v
        for k, v in b.manifest.items()
        if k
        not in (
            "format",
            "format_version",
            "version",
            "created",
            "sections",
            "files",
            "parent_version",
            "adaptations",
            "tuning",
            "calibration",
        )
    }
    vdir = write_bundle(
        root,
        {n: b.path / n for n in b.model_files},
        {k: v for k, v in b.backends.items() if k not in drop},
        manifest,
    )
    if private_key is not None:
        sign_version(vdir, private_key)
    return vdir


def mqtt_settings(port: int, device: str, **kw: Any) -> MqttSettings:
    """The operator's connection (edge_agent.fleet.operator.Connection)."""
    base: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": port,
        "device_id": device,
        "reconnect_min": 0.1,
        "reconnect_max": 0.5,
        "connect_timeout": 5.0,
    }
    base.update(kw)
    return MqttSettings(**base)


def expect_within(cond: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    """Fail the test unless `cond()` holds within `timeout` seconds (naming `what`)."""
    assert wait_until(cond, timeout), f"timed out after {timeout:g} s waiting for {what}"


class Device:
    """One fleet member: a bundle copy and a real Agent on it (see module docstring).

    `trusted`: the public key files of `trusted_keys`; `fleet`, `mqtt`: keys over the defaults
    of those sections; `history`: keep the score history (`history.replays`: the source is a
    file replay), which a remote `tune` replays. `overrides` is the config: a test may change
    it before `start` (`set_monitors`).
    """

    def __init__(
        self,
        d: Path,
        name: str,
        port: int,
        base: Path,
        trusted: Sequence[Path],
        fleet: dict[str, Any] | None = None,
        mqtt: dict[str, Any] | None = None,
        history: bool = False,
    ) -> None:
        self.name = name
        self.dir = d / name
        self.root = self.dir / "bundle"
        self.state_dir = self.dir  # the outbox's folder: fleet state, recordings, history
        shutil.copytree(base, self.root)
        self.port = port
        self.overrides: dict[str, Any] = {
            "bundle": str(self.root),
            "monitors": [{"name": MONITOR, "section": SECTION}],
            "source": {"kind": "files", "files": CLIPS, "loop": True, "realtime": True},
            "trusted_keys": [str(p) for p in trusted],
            "mqtt": {
                "host": "127.0.0.1",
                "port": port,
                "device_id": name,
                "client_id": f"{name}-{uuid.uuid4().hex[:8]}",
                "reconnect_min": 0.1,
                "reconnect_max": 0.5,
                "connect_timeout": 5.0,
                **(mqtt or {}),
            },
            "outbox": {"path": str(self.dir / "outbox.sqlite")},
            "fleet": {**FLEET, **(fleet or {})},
            "reload_poll_seconds": 0.2,
            "log": {"stdout": False},
            "history": {"enabled": history, "replays": history},
        }
        self.agent: Agent | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def set_monitors(self, monitors: dict[str, str]) -> Device:
        """Monitor name -> section instead of the one MONITOR (each replays the demo clips)."""
        self.overrides["monitors"] = [{"name": m, "section": s} for m, s in monitors.items()]
        return self

    def config(self) -> AgentConfig:
        return load_config(None, self.overrides)

    def start(self) -> Device:
        """Build the agent from the config and run it; return once its sources run and both
        its MQTT connections (sink, fleet client) are up."""
        assert self._thread is None, f"{self.name} is running"
        agent = Agent(self.config())
        self.agent, self._error = agent, None
        self._thread = threading.Thread(
            target=self._run, args=(agent,), daemon=True, name=f"agent-{self.name}"
        )
        self._thread.start()

        def up() -> bool:
            assert self._error is None, f"{self.name}: the agent failed: {self._error!r}"
            assert self._thread is not None and self._thread.is_alive(), f"{self.name} ended"
            return (
                agent.fleet is not None
                and agent.fleet.connected.is_set()
                and agent.mqtt is not None
                and agent.mqtt.connected.is_set()
                and bool(agent.captures)
                and all(c.thread.is_alive() for c in agent.captures)
            )

        expect_within(up, 10.0, f"{self.name} to start")
        return self

    def _run(self, agent: Agent) -> None:
        try:
            agent.run(install_signals=False)
        except BaseException as exc:  # handed to stop(): a crashed agent fails the test
            self._error = exc

    def signal_stop(self) -> None:
        if self.agent is not None:
            self.agent.stop()

    def stop(self, timeout: float = 20.0) -> None:
        """Stop the agent and join its thread (bounded); re-raise what ended it, if anything."""
        if self._thread is None:
            return
        self.signal_stop()
        self._thread.join(timeout)
        alive, self._thread = self._thread.is_alive(), None
        assert not alive, f"{self.name}: the agent did not stop within {timeout:g} s"
        if self._error is not None:
            raise self._error

    def running(self) -> Agent:
        assert self.agent is not None and self._thread is not None, f"{self.name} not running"
        return self.agent

    @property
    def fleet(self) -> FleetClient:
        client = self.running().fleet
        assert client is not None
        return client

    def running_version(self) -> str:
        """What the real agent scores with now (it changes with its own hot reload)."""
        return self.running().running_version()

    def reloads(self) -> int:
        """Hot reloads since this agent (this start) began."""
        return self.running().counters["reloads"]

    def versions(self) -> list[str]:
        return sorted(p.name for p in (self.root / "versions").iterdir())


def stop_all(devices: Sequence[Device]) -> None:
    """Stop every running device, all at once (each shutdown takes about half a second)."""
    for d in devices:
        d.signal_stop()
    errors: list[BaseException] = []
    for d in devices:
        try:
            d.stop()
        except BaseException as exc:  # stop the others first, then fail
            errors.append(exc)
    if errors:
        raise errors[0]


def latest_state(sub: Any, device: str, prefix: str = "edge-asd") -> dict[str, Any] | None:
    msgs = sub.on(f"{prefix}/{device}/fleet/state")
    return json.loads(msgs[-1]) if msgs else None


def wait_state(
    sub: Any, device: str, timeout: float = 10.0, prefix: str = "edge-asd", **want: Any
) -> dict[str, Any]:
    """The device's latest fleet state once it has every `want` key/value (AssertionError with
    the last one otherwise)."""

    def ok(_: Any) -> bool:
        s = latest_state(sub, device, prefix)
        return s is not None and all(s.get(k) == v for k, v in want.items())

    sub.wait_for(ok, timeout)
    s = latest_state(sub, device, prefix)
    assert s is not None and all(s.get(k) == v for k, v in want.items()), (device, want, s)
    return s
