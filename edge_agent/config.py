"""The agent's one YAML file, loaded into frozen dataclasses with generic validation.

Why generic: every sub-setting lives in the module that uses it (SourceSettings in sources,
WindowSettings in windows, ...). Validation walks the dataclass type hints, so a new field is
validated the moment it is declared, and errors name the key path (`mqtt.tls.ca_file`) and
what was expected. Relative paths are resolved against the config file's folder.

Secrets never come from the YAML: `mqtt.password` is refused; use `mqtt.password_env`
(environment variable name) or `mqtt.password_file`.

Minimal file:
```yaml
bundle: /opt/asd/bundle
section: fan_section_00
source: {device: "hw:1"}
mqtt: {host: broker.local}
```
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from .decision import DecisionSettings
from .errors import ConfigError
from .health import HealthSettings
from .sinks.mqtt import MqttSettings
from .sinks.outbox import OutboxSettings
from .sources.base import SourceSettings
from .windows import WindowSettings

_FILE_KEYS = {"bundle", "ca_file", "cert_file", "key_file", "password_file"}

LogLevel = Literal["debug", "info", "warning", "error"]


@dataclass(frozen=True)
class LogSettings:
    json: bool = False  # log lines (stderr) and window lines (stdout) as JSON
    level: LogLevel = "info"  # the least severe log lines written to stderr
    stdout: bool = True  # one line per window on stdout (the JSONL/human sink)
    jsonl_file: str | None = None  # also append JSON lines to this file


@dataclass(frozen=True)
class AgentConfig:
    bundle: str = ""  # bundle folder (or its `current` pointer parent)
    section: str = ""  # bundle section this microphone listens to, e.g. fan_section_00
    source: SourceSettings = field(default_factory=SourceSettings)
    windows: WindowSettings = field(default_factory=WindowSettings)
    decision: DecisionSettings = field(default_factory=DecisionSettings)
    health: HealthSettings = field(default_factory=HealthSettings)
    mqtt: MqttSettings = field(default_factory=MqttSettings)
    outbox: OutboxSettings = field(default_factory=OutboxSettings)
    log: LogSettings = field(default_factory=LogSettings)
    threads: int = 1  # TFLite interpreter threads
    queue_size: int = 8  # windows waiting for the scorer before new ones are dropped
    reload_poll_seconds: float = 2.0  # how often to check the bundle for a new version


def _type_name(t: Any) -> str:
    return getattr(t, "__name__", str(t).replace("typing.", ""))


# One branch per type a config value can have: split up, the list of types would be hidden.
def _convert(value: Any, hint: Any, key: str, base: Path) -> Any:  # noqa: C901, PLR0911, PLR0912
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key}: expected one of {', '.join(map(str, args))}, got {value!r}")
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        candidates = [a for a in args if a is not type(None)]
        for a in candidates:
            try:
                return _convert(value, a, key, base)
            except ConfigError as exc:
                errors.append(exc)
                if len(candidates) == 1 or (
                    isinstance(value, dict) and dataclasses.is_dataclass(a)
                ):
                    raise  # the inner error names the exact nested key
        names = " or ".join(_type_name(a) for a in args)
        raise ConfigError(f"{key}: expected {names}, got {value!r}")
    if origin is tuple:
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list | tuple):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return tuple(_convert(v, args[0], f"{key}[{i}]", base) for i, v in enumerate(items))
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return build(hint, value, key, base)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    return value


def _check_path(name: str, value: Any, key: str, base: Path) -> Any:
    if not isinstance(value, str) or not value:
        return value
    p = Path(os.path.expanduser(value))
    if not p.is_absolute():
        p = base / p
    if name in _FILE_KEYS and not p.exists():
        raise ConfigError(f"{key}: file not found: {p}")
    return str(p)


def build(cls: type, data: Any, key: str = "", base: Path = Path(".")) -> Any:
    """Instantiate dataclass `cls` from a YAML mapping, validating against its type hints."""
    prefix = f"{key}." if key else ""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{key or 'config'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.repr]
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        k = f"{prefix}{name}"
        if name == "password" and cls is MqttSettings:
            raise ConfigError(
                f"{k}: not allowed in the config file; use password_env or password_file"
            )
        if name not in names:
            raise ConfigError(f"{k}: unknown key (expected one of: {', '.join(names)})")
        v = _convert(value, hints[name], k, base)
        if name in _FILE_KEYS:
            v = _check_path(name, v, k, base)
        elif name == "files" and isinstance(v, tuple):
            v = tuple(_check_path(name, x, k, base) for x in v)
        elif name in ("path", "jsonl_file") and isinstance(v, str):
            v = _check_path(name, v, k, base)
        kwargs[name] = v
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"{key or 'config'}: {exc}") from None


def _set_dotted(raw: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    d = raw
    for p in parts[:-1]:
        nxt = d.get(p)
        if not isinstance(nxt, dict):
            nxt = {}
            d[p] = nxt
        d = nxt
    d[parts[-1]] = value


def read_config(
    path: str | Path | None = None, overrides: dict[str, Any] | None = None
) -> AgentConfig:
    """Read YAML (if any), apply dotted-key `overrides` (CLI flags), validate, resolve secrets.

    Nothing is required here: `record` needs no bundle, `calibrate` takes it from a flag. The
    agent's requirements are `load_config`'s.
    """
    raw: Any = {}
    base = Path.cwd()
    if path is not None:
        p = Path(path)
        try:
            raw = yaml.safe_load(p.read_text()) or {}
        except OSError as exc:
            raise ConfigError(f"{p}: cannot read config file: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"{p}: not valid YAML: {exc}".splitlines()[0]) from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{p}: expected a YAML mapping at the top level")
        base = p.resolve().parent
    for k, v in (overrides or {}).items():
        _set_dotted(raw, k, v)
    cfg: AgentConfig = build(AgentConfig, raw, "", base)
    if cfg.queue_size < 1:
        raise ConfigError(f"queue_size: expected an integer >= 1, got {cfg.queue_size}")
    m = cfg.mqtt
    if m.password_env and m.password_env not in os.environ:
        raise ConfigError(f"mqtt.password_env: environment variable {m.password_env} is not set")
    if m.password_env or m.password_file:
        cfg = dataclasses.replace(cfg, mqtt=dataclasses.replace(m, password=m.resolve_password()))
    return cfg


def load_config(
    path: str | Path | None = None, overrides: dict[str, Any] | None = None
) -> AgentConfig:
    """`read_config`, and what the agent cannot run without (`require_agent_fields`)."""
    return require_agent_fields(read_config(path, overrides))


def require_agent_fields(cfg: AgentConfig) -> AgentConfig:
    """`cfg`, or a ConfigError naming what the agent cannot run without: a bundle, a section."""
    if not cfg.bundle:
        raise ConfigError("bundle: required (path to the model bundle folder)")
    if not cfg.section:
        raise ConfigError("section: required (e.g. fan_section_00)")
    return cfg


def effective(cfg: AgentConfig) -> dict[str, Any]:
    """The config as plain data, secrets masked (for `edge-agent config check`)."""
    d = dataclasses.asdict(cfg)
    if d["mqtt"].get("password") is not None:
        d["mqtt"]["password"] = "***"
    else:
        d["mqtt"].pop("password", None)

    def plain(x: Any) -> Any:
        if isinstance(x, dict):
            return {k: plain(v) for k, v in x.items()}
        if isinstance(x, list | tuple):
            return [plain(v) for v in x]
        return x

    result: dict[str, Any] = plain(d)
    return result


def dump(cfg: AgentConfig) -> str:
    return yaml.safe_dump(effective(cfg), sort_keys=False)
