"""Monitors: which machine each microphone or channel listens to, and which share a capture.

One agent process can listen to several machines: a 4-channel USB interface with a contact
microphone per pump, two USB microphones, or a mix. Each machine is a *monitor*: a name (its
MQTT topics, Home Assistant device, score history and decision state are keyed by it), the
bundle section that scores it, and where its audio comes from. One model in memory scores
every monitor; each monitor has its own windows, health, decision and alarm.

The YAML lists them under `monitors:`; a monitor's `device` and `channel` are shorthands for
its `source.device` / `source.channel`, and its `source`, `decision` and `health` mappings
are merged key by key over the top-level sections of the same names (`merge_monitor`), so the
common part is written once:

```yaml
source: {device: "Scarlett 4i4", capture_rate: 48000}
monitors:
  - {name: pump_1, section: pump_section_00, channel: 0}
  - {name: pump_2, section: pump_section_00, channel: 1}
  - {name: fan, section: fan_section_00, device: "USB PnP", decision: {k: 2}}
```

Without `monitors:` the agent is the one monitor the top-level `section` and `source` describe,
named after its section: every topic, file and entity of a single-section config stays as it
was.

Capture groups (`capture_groups`): PortAudio opens a raw ALSA device only once, so monitors
whose sources differ only in `channel` share one stream that delivers each of their channels
(`DeviceSource(lanes=...)`). Files and stdin sources are one per monitor.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from edge_agent.config.ids import check_monitor_name, check_monitor_names
from edge_agent.config.runtime import DecisionSettings, HealthSettings
from edge_agent.config.sources import SourceSettings
from edge_agent.errors import ConfigError

MERGED = ("source", "decision", "health")
"""A monitor's sections merged key by key over the top-level ones."""


@dataclass(frozen=True)
class MonitorSettings:
    """One item of `monitors:` (after `merge_monitor`: its sections are complete)."""

    name: str = ""
    """Topic, file and Home Assistant name (letters, digits, _ and -); default: the section."""
    section: str = ""
    """The bundle section that scores this machine."""
    source: SourceSettings = field(default_factory=SourceSettings)
    """Where its audio comes from."""
    decision: DecisionSettings = field(default_factory=DecisionSettings)
    """Its k-of-n rule."""
    health: HealthSettings = field(default_factory=HealthSettings)
    """Its sensor-fault levels."""

    def __post_init__(self) -> None:
        if not self.name:  # the section names it, as a single-section agent always was
            object.__setattr__(self, "name", self.section)


def merge_monitor(item: Any, top: Mapping[str, Any], key: str) -> Any:
    """One raw `monitors[i]` mapping with `device`/`channel` moved into its `source` and its
    `source`/`decision`/`health` merged over the top-level raw sections (`top`); anything
    else is returned as it is for the validator to name."""
    if not isinstance(item, dict):
        return item
    out = dict(item)
    shorthand = {k: out.pop(k) for k in ("device", "channel") if k in out}
    for name in MERGED:
        mine = out.get(name, {})
        if mine is None:
            mine = {}
        if not isinstance(mine, dict):
            return item  # "expected a mapping" from the validator, at monitors[i].<name>
        base = top.get(name)
        merged = {**(base if isinstance(base, dict) else {}), **mine}
        if name == "source":
            for k, v in shorthand.items():
                if k in mine:
                    raise ConfigError(
                        f"{key}.{k}: given twice (also as {key}.source.{k}); keep one"
                    )
                merged[k] = v
        if merged or name in out:
            out[name] = merged
    return out


def check_monitors(monitors: Sequence[MonitorSettings], section: str) -> None:
    """The rules between monitors: each has a section and a valid, unique name, no two listen
    to the same device channel, at most one reads stdin, and a top-level `section` is not
    given beside them (it would be silently unused)."""
    if not monitors:
        return
    if section:
        raise ConfigError(
            "section: give each monitor its section under monitors: (the "
            "top-level section is for a single-machine config)"
        )
    names: dict[str, int] = {}
    inputs: dict[tuple[Any, ...], str] = {}
    devices: dict[object, int] = {}
    for i, m in enumerate(monitors):
        key = f"monitors[{i}]"
        if not m.section:
            raise ConfigError(f"{key}.section: required (the bundle section scoring it)")
        # a topic level, a file name part and a Home Assistant id (edge_agent.config.ids)
        check_monitor_name(m.name, f"{key}.name" if m.name != m.section else f"{key}.section")
        if m.name in names:
            raise ConfigError(
                f"{key}.name: {m.name!r} is also monitors[{names[m.name]}]'s; names must be unique"
            )
        names[m.name] = i
        check_monitor_names(
            [(f"monitors[{j}].name", o.name) for j, o in enumerate(monitors[: i + 1])]
        )
        s = m.source
        if s.kind == "device":
            _same_capture(monitors, devices, i)
            where: tuple[Any, ...] = ("device", device_key(s.device), s.channel)
        elif s.kind == "stdin":
            where = ("stdin",)
        else:
            continue
        if where in inputs:
            what = (
                "stdin"
                if s.kind == "stdin"
                else (
                    f"device {s.device!r} "
                    + ("mix-down" if s.channel is None else f"channel {s.channel}")
                )
            )
            raise ConfigError(f"{key}: {what} is already monitor {inputs[where]!r}'s input")
        inputs[where] = m.name


def device_key(device: str | int | None) -> object:
    """One device however it is written: an index as 2 or "2", a name in any case (names
    match case-insensitively), None for the default input."""
    if isinstance(device, int):
        return device
    if device is None:
        return None
    text = device.strip()
    return int(text) if text.isdigit() else text.lower()


def _same_capture(monitors: Sequence[MonitorSettings], devices: dict[object, int], i: int) -> None:
    """Monitors on one device share its one stream, so their sources must agree but for the
    channel: a second stream on a raw ALSA device would fail to open (or duplicate the input
    through dsnoop), and a per-monitor rate or block size cannot apply to a shared stream."""
    s = monitors[i].source
    key = device_key(s.device)
    first = devices.setdefault(key, i)
    if first == i:
        return
    f = monitors[first].source
    differ = [
        fl.name
        for fl in dataclasses.fields(SourceSettings)
        if fl.name not in ("channel", "device") and getattr(s, fl.name) != getattr(f, fl.name)
    ]
    if differ:
        raise ConfigError(
            f"monitors[{i}].source.{differ[0]}: differs from monitors[{first}]'s on the same "
            f"device {s.device!r}, which both share one capture stream; set it once in the "
            "top-level source"
        )


@dataclass(frozen=True)
class CaptureGroup:
    """Monitors that one source serves: `lanes[i]` is `monitors[i]`'s channel (None = mix)."""

    source: SourceSettings
    """The first monitor's source; only `channel` differs in the group."""
    monitors: tuple[MonitorSettings, ...]

    @property
    def lanes(self) -> tuple[int | None, ...]:
        return tuple(m.source.channel for m in self.monitors)


def capture_groups(monitors: Sequence[MonitorSettings]) -> list[CaptureGroup]:
    """Device monitors on the same device (`device_key`; `check_monitors` made sure their
    sources agree but for the channel) share one capture (one PortAudio stream); every other
    monitor has a source of its own. Order follows the first monitor of each group."""
    groups: list[CaptureGroup] = []
    shared: dict[object, int] = {}
    for m in monitors:
        if m.source.kind == "device":
            key = device_key(m.source.device)  # check_monitors: the rest of the source agrees
            if key in shared:
                g = groups[shared[key]]
                groups[shared[key]] = CaptureGroup(g.source, (*g.monitors, m))
                continue
            shared[key] = len(groups)
        groups.append(CaptureGroup(m.source, (m,)))
    return groups
