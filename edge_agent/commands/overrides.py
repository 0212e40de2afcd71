"""The agent config a command runs with: `--config` (or the defaults), then its flags on top.

Written once, so `--bundle`, `--section`, `--threads`, `--channel`, `--device`, `--files`,
`--runtime`, `--xnnpack` and `--json` change the same config keys in every command. Paths
given as flags are relative to the working directory, like any command-line path; paths in
the YAML stay relative to the YAML's folder.

The audio source: `--device NAME` selects a device; PATHs select files (`--files` alone: the
config's `source.files`); `--stdin` selects raw PCM on stdin. Giving two of them is an error.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge_agent.errors import ConfigError

if TYPE_CHECKING:  # config imports numpy (via the settings it holds): only when a command runs
    from edge_agent.adaptation.service import Trust
    from edge_agent.config.agent import AgentConfig
    from edge_agent.config.monitors import MonitorSettings


@dataclass(frozen=True)
class Flags:
    """The flags a command got that override config keys; None / False / () = not given."""

    bundle: Path | None = None
    section: str | None = None
    threads: int | None = None
    device: str | None = None
    from_files: bool = False  # --files
    paths: tuple[Path, ...] = ()  # the PATHs after --files
    stdin: bool = False
    channel: int | None = None
    realtime: bool | None = None
    skip_unreadable: bool = False
    json: bool = False
    quiet: bool = False
    mqtt_host: str | None = None
    mqtt_port: int | None = None
    device_id: str | None = None
    monitor: str | None = None  # --monitor: the one machine of a `monitors:` config to use
    tflite_runtime: str | None = None  # --runtime
    xnnpack: bool | None = None  # --xnnpack / --no-xnnpack

    def overrides(self) -> dict[str, Any]:
        """The dotted config keys these flags set (for `config.read_config`)."""
        chosen = [
            name
            for name, given in (
                ("--device", self.device is not None),
                ("--files", bool(self.paths)),
                ("--stdin", self.stdin),
            )
            if given
        ]
        if len(chosen) > 1:
            raise ConfigError(f"{' and '.join(chosen)}: give one source of audio, not both")
        if self.monitor is not None and (chosen or self.channel is not None):
            given = [*chosen, *(["--channel"] if self.channel is not None else [])]
            raise ConfigError(
                f"--monitor and {' and '.join(given)}: the monitor names its "
                "input (its source in the config); give one"
            )
        ov: dict[str, Any] = {}
        if self.device is not None:
            ov["source.kind"], ov["source.device"] = "device", self.device
        if self.paths:
            ov["source.kind"] = "files"
            ov["source.files"] = [str(p.expanduser().absolute()) for p in self.paths]
        if self.stdin:
            ov["source.kind"] = "stdin"
        keyed = {
            "bundle": _absolute(self.bundle),
            "section": self.section,
            "threads": self.threads,
            "source.channel": self.channel,
            "source.realtime": self.realtime,
            "mqtt.host": self.mqtt_host,
            "mqtt.port": self.mqtt_port,
            "mqtt.device_id": self.device_id,
            "tflite.runtime": self.tflite_runtime,
            "tflite.xnnpack": self.xnnpack,
        }
        ov.update({k: v for k, v in keyed.items() if v is not None})
        if self.skip_unreadable:
            ov["source.skip_unreadable"] = True
        if self.json:
            ov["log.json"] = True
        if self.quiet:
            ov["log.stdout"] = False
        return ov


def _absolute(path: Path | None) -> str | None:
    return None if path is None else str(path.expanduser().absolute())


def agent_config(
    config: Path | None, flags: Flags, fixed: dict[str, Any] | None = None
) -> AgentConfig:
    """The YAML at `config` (or the defaults), then `fixed` (a command's own settings, e.g. the
    demo's), then the flags. Raises ConfigError naming the key, or the flag, that is wrong."""
    from edge_agent.config.load import read_config

    cfg = read_config(config, {**(fixed or {}), **flags.overrides()})
    if flags.monitor is not None:
        cfg = one_machine(cfg, flags.monitor)
    if flags.from_files and cfg.source.kind != "files":
        raise ConfigError(
            "--files: give the WAV files or folders to read, e.g. --files clips/*.wav"
        )
    return cfg


def sharing_note(cfg: AgentConfig, name: str | None) -> str | None:
    """A note when monitor `name`'s section also scores other monitors: adapting the section
    (calibrate, tune) changes what they are compared against too."""
    if name is None or not cfg.monitors:
        return None
    m = required_monitor(cfg, name)
    others = [o.name for o in cfg.monitors if o.section == m.section and o.name != m.name]
    if not others:
        return None
    return (
        f"note: section {m.section} also scores {', '.join(others)}: the new version "
        "changes it for them too"
    )


def one_machine(cfg: AgentConfig, name: str) -> AgentConfig:
    """`cfg` as the single-machine config of monitor `name` (its section, source, decision and
    health at the top level, no `monitors:`), for the commands that work on one machine
    (record, calibrate, enrol): they then read its microphone or channel like any config."""
    import dataclasses

    m = required_monitor(cfg, name)
    return dataclasses.replace(
        cfg, monitors=(), section=m.section, source=m.source, decision=m.decision, health=m.health
    )


def required_bundle(cfg: AgentConfig) -> Path:
    """The bundle from `--bundle` or the config; a one-line error naming both when neither."""
    if not cfg.bundle:
        raise ConfigError("--bundle: required (or `bundle:` in --config)")
    return Path(cfg.bundle)


def required_monitor(cfg: AgentConfig, name: str | None) -> MonitorSettings:
    """The monitor `--monitor` names (or the only one); a one-line error listing the monitors
    when it is missing or unknown. A single-machine config's one monitor is its section."""
    if not cfg.monitors:
        sec = required_section(cfg)
        if name is not None and name != sec:
            raise ConfigError(
                f"--monitor: {name!r}: the config has no monitors: list; its one "
                f"machine is section {sec}"
            )
        return cfg.monitor_list()[0]
    names = [m.name for m in cfg.monitors]
    if name is None:
        if len(names) == 1:
            return cfg.monitors[0]
        raise ConfigError(f"--monitor: required (the config lists {', '.join(names)})")
    for m in cfg.monitors:
        if m.name == name:
            return m
    raise ConfigError(f"--monitor: no monitor {name!r} in the config (has {', '.join(names)})")


def required_section(cfg: AgentConfig) -> str:
    """The section from `--section` or the config; a one-line error naming both when neither
    (or asking for `--monitor` when the config lists several machines)."""
    if cfg.monitors:
        raise ConfigError(
            f"--monitor: required (the config lists "
            f"{', '.join(m.name for m in cfg.monitors)}): one machine at a time"
        )
    if not cfg.section:
        raise ConfigError("--section: required (or `section:` in --config)")
    return cfg.section


def trust(cfg: AgentConfig) -> Trust:
    """What the agent checks versions with (`bundle.signing.load_trust`: the config's
    `trusted_keys` and this device's own key; none configured: nothing is checked) and, when
    it checks, this device's key for sealing what a command adapts (made on first use in the
    agent's state folder). A command refuses a version the agent would refuse before it writes
    a version from it."""
    from edge_agent.adaptation.service import Trust
    from edge_agent.bundle.signing import device_signing_key, load_trust

    keys = load_trust(cfg.trusted_keys, cfg.state_folder)
    return Trust(keys, device_signing_key(cfg.state_folder) if cfg.trusted_keys else None)
