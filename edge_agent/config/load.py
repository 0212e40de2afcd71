"""The agent's one YAML file, loaded into frozen dataclasses with generic validation.

Why generic: every sub-setting lives in the module that uses it (SourceSettings in sources,
WindowSettings in windows, ...). Validation walks the dataclass type hints, so a new field is
validated the moment it is declared, and errors name the key path (`mqtt.tls.ca_file`) and
what was expected. Relative paths are resolved against the config file's folder.

Secrets never come from the YAML: `mqtt.password` is refused; use `mqtt.password_env`
(environment variable name) or `mqtt.password_file`. No error message carries a secret: the
password, the variable's contents, a value given where a variable name was expected.

One validator, two halves, shared by `edge-agent config check` and `edge-agent run` so that
check refuses exactly what run refuses:
- `read_config`: the file (a duplicate key is an error: a second `mqtt:` would silently replace
  the first), types, every numeric field finite and inside the bounds declared on its field
  (`edge_agent.config.fields.bounded`), the rules between fields (each settings class's
  `__post_init__`), files that must exist and be readable, the secrets;
- `check_start`: what the agent checks at start, with the bundle: the section exists, the
  window length is the bundle's clip length, the hop is at least one sample at the bundle's
  rate, the replay files exist and are readable.

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
import logging
import os
import re
import stat
import types
import typing
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml

from edge_agent.config.agent import AgentConfig
from edge_agent.config.fields import check_fields
from edge_agent.config.monitors import (
    MERGED,
    merge_monitor,
)
from edge_agent.config.sinks import MqttSettings
from edge_agent.errors import ConfigError

if TYPE_CHECKING:  # the bundle module pulls in the backend: only the caller's bundle is used
    pass

log = logging.getLogger("edge_agent")

_SECRET_KEYS = {"password_env", "password_file"}
"""Keys next to a secret: a wrong value may be the secret itself, so errors do not echo it."""

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

_FILE_KEYS = {"bundle", "ca_file", "cert_file", "key_file", "password_file", "trusted_keys"}


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
    p = Path(value).expanduser()
    if not p.is_absolute():
        p = base / p
    if name in _FILE_KEYS and not p.exists():
        raise ConfigError(f"{key}: file not found: {p}")
    return str(p)


def _value(name: str, value: Any, hint: Any, k: str, base: Path) -> Any:
    """One YAML value converted to field type `hint`, paths resolved against `base`; a wrong
    value next to a secret (`_SECRET_KEYS`) is not echoed."""
    try:
        v = _convert(value, hint, k, base)
    except ConfigError:
        if name not in _SECRET_KEYS:
            raise
        raise ConfigError(f"{k}: expected a string (the value is not shown)") from None
    if name == "trusted_keys" and isinstance(v, tuple) and "" in v:
        raise ConfigError(f"{k}[{v.index('')}]: expected a public key file, got an empty string")
    if name in ("files", "trusted_keys") and isinstance(v, tuple):
        return tuple(_check_path(name, x, f"{k}[{i}]", base) for i, x in enumerate(v))
    if name in _FILE_KEYS:
        return _check_path(name, v, k, base)
    if name in ("path", "jsonl_file", "folder", "textfile") and isinstance(v, str):
        return _check_path(name, v, k, base)
    return v


def build(cls: type, data: Any, key: str = "", base: Path = Path()) -> Any:
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
        kwargs[name] = _value(name, value, hints[name], k, base)
    try:
        obj = cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"{key or 'config'}: {exc}") from None
    except ConfigError as exc:  # a settings class names its own section (`source.channel`):
        leaf = key.rsplit(".", 1)[-1]  # under `monitors[0].source` say where it really is
        msg = str(exc)
        if key != leaf and msg.startswith(f"{leaf}."):
            raise ConfigError(key + msg[len(leaf) :]) from None
        raise
    check_fields(obj, key)  # finite and in bounds, even for a class without __post_init__
    return obj


class DuplicateKeyError(yaml.YAMLError):
    """A mapping repeats a key (`line`: 1-based line of the repetition)."""

    def __init__(self, key: object, line: int, first: int) -> None:
        self.line = line
        super().__init__(
            f"line {line}: duplicate key {key!r} (first at line {first}); merge the two into one"
        )


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a repeated key: PyYAML keeps the last one, so a second
    `mqtt:` section (say, an empty one at the end of the file) silently turned MQTT off. Keys
    merged in with `<<:` may still be overridden, as YAML intends."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                if key in first:
                    raise DuplicateKeyError(key, line, first[key])
                first[key] = line
            except TypeError:  # an unhashable key: SafeLoader's own error says so
                break
        return super().construct_mapping(node, deep)


def _read_yaml(p: Path) -> Any:
    try:
        return yaml.load(p.read_text(), Loader=_UniqueKeyLoader)  # a SafeLoader subclass
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read config file: {exc.strerror}") from None
    except DuplicateKeyError as exc:
        raise ConfigError(f"{p}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML: {exc}".splitlines()[0]) from None


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
        raw = _read_yaml(p) or {}
        if not isinstance(raw, dict):
            raise ConfigError(f"{p}: expected a YAML mapping at the top level")
        base = p.resolve().parent
    for k, v in (overrides or {}).items():
        _set_dotted(raw, k, v)
    _merge_monitors(raw)
    cfg: AgentConfig = build(AgentConfig, raw, "", base)
    _check_files(cfg)
    password = _password(cfg.mqtt)
    if password is not None:
        cfg = dataclasses.replace(cfg, mqtt=dataclasses.replace(cfg.mqtt, password=password))
    return cfg


def _merge_monitors(raw: dict[str, Any]) -> None:
    """`monitors[i]` with its `device`/`channel` shorthands and its `source`/`decision`/
    `health` merged over the top-level sections (`monitors.merge_monitor`), in place, before
    validation: the validator then sees each monitor's complete settings."""
    items = raw.get("monitors")
    if not isinstance(items, list):
        return
    top = {name: raw.get(name) for name in MERGED}
    raw["monitors"] = [merge_monitor(m, top, f"monitors[{i}]") for i, m in enumerate(items)]


def _check_files(cfg: AgentConfig) -> None:
    """The JSON-lines log can be appended to, the metrics file written: a missing folder fails
    at load (and in `config check`) as one line, not as a traceback once the agent is running."""
    if cfg.log.jsonl_file:
        p = Path(cfg.log.jsonl_file)
        if p.is_dir():
            raise ConfigError(f"log.jsonl_file: {p} is a folder, expected a file to append to")
        if not p.parent.is_dir():
            raise ConfigError(f"log.jsonl_file: folder {p.parent} does not exist")
        if not os.access(p if p.exists() else p.parent, os.W_OK):
            raise ConfigError(f"log.jsonl_file: {p if p.exists() else p.parent} is not writable")
    _check_textfile(cfg.metrics.textfile)


def _check_textfile(textfile: str | None) -> None:
    """The metrics file is replaced atomically (a temp file next to it, then a rename): its
    folder must exist and be writable; the file itself is never opened in place."""
    if not textfile:
        return
    p = Path(textfile)
    if p.is_dir():
        raise ConfigError(f"metrics.textfile: {p} is a folder, expected the .prom file to write")
    if not p.parent.is_dir():
        raise ConfigError(
            f"metrics.textfile: folder {p.parent} does not exist (node-exporter's "
            "textfile folder; see docs/deploy.md)"
        )
    if not os.access(p.parent, os.W_OK | os.X_OK):
        raise ConfigError(f"metrics.textfile: folder {p.parent} is not writable by this user")


def _password(m: MqttSettings) -> str | None:
    """The MQTT password from `password_env` or `password_file`, or None; ConfigErrors that
    name the key and the variable or file, never the password (nor a password pasted where a
    variable name belongs). A password file that group/others can access is one warning."""
    if m.password_env:
        return _env_password(m.password_env)
    if m.password_file:
        return _file_password(Path(m.password_file))
    return None


def _env_password(name: str) -> str:
    if not _ENV_NAME.fullmatch(name):
        raise ConfigError(
            "mqtt.password_env: expected the NAME of an environment variable "
            "(letters, digits, _), not the password itself (value not shown)"
        )
    value = os.environ.get(name)
    if value is None:
        raise ConfigError(f"mqtt.password_env: environment variable {name} is not set")
    if not value:
        raise ConfigError(f"mqtt.password_env: environment variable {name} is empty")
    return value


def _file_password(p: Path) -> str:
    try:
        mode = p.stat().st_mode
        if stat.S_ISDIR(mode):
            raise ConfigError(
                f"mqtt.password_file: {p} is a folder, expected a file holding the password"
            )
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"mqtt.password_file: cannot read {p}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"mqtt.password_file: {p} is not UTF-8 text") from None
    lines = text.splitlines()
    password = lines[0].strip() if lines else ""
    if not password:
        raise ConfigError(
            f"mqtt.password_file: {p} is empty (expected the password on its first line)"
        )
    if mode & 0o077:
        log.warning(
            "mqtt.password_file: %s can be read by group/others (mode %03o); chmod 600 it",
            p,
            stat.S_IMODE(mode),
        )
    return password


def load_config(
    path: str | Path | None = None, overrides: dict[str, Any] | None = None
) -> AgentConfig:
    """`read_config`, and what the agent cannot run without (`require_agent_fields`)."""
    return require_agent_fields(read_config(path, overrides))


def require_agent_fields(cfg: AgentConfig) -> AgentConfig:
    """`cfg`, or a ConfigError naming what the agent cannot run without: a bundle, a section."""
    if not cfg.bundle:
        raise ConfigError("bundle: required (path to the model bundle folder)")
    if not cfg.section and not cfg.monitors:
        raise ConfigError("section: required (e.g. fan_section_00), or a monitors: list")
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
