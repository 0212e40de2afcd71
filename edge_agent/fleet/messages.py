"""The JSON payloads of the fleet's topics (edge_agent.fleet.topics): built and checked here.

Every payload read from the broker is checked field by field before anything acts on it: a
malformed or hostile message becomes one FleetError line (reported in the device's state or
command reply), never a traceback and never a partial action.

Release notice (`.../bundle/manifest`, retained): `kind: "release"`, `release` (id), `group`,
`sha256` and `size` of the archive, `chunk_size`, `chunks`, `chunk_sha256` (one per chunk),
`targets` (`"all"` or a list of device ids), `stage` (`canary` / `all`), `model_version` (what
the device will run: `Bundle.model_version`), `manifest_sha256` (the version's manifest.json),
`issued_at` (epoch seconds). Rollback notice (same topic): `kind: "rollback"`, `release`,
`group`, `issued_at`: devices whose active version came from that release go back to the one
they ran before it.

Command (`<device>/cmd`): `id` (1-64 characters: letters, digits, `_ . : -`), `name`, `args`
(an object), `issued_at` (epoch seconds). Reply (`<device>/cmd/reply`): `id`, `name`, `ok`,
`result` (an object, when ok), `error` (one line, when not), `device_id`, `replayed` (true when
this is the stored reply of an id executed before), `ts`, `epoch`.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass
from typing import Any, Literal

from edge_agent.errors import EdgeAgentError
from edge_agent.events import iso
from edge_agent.fleet.topics import RELEASE_ID
from edge_agent.jsonsafe import NonFiniteError, dumps, loads

FORMAT = 1
MAX_CHUNK_SIZE = 4 << 20
"""A chunk is one MQTT message: a few MiB at most (mosquitto's default limit is 256 MiB, but
small messages keep the broker's and the device's memory flat)."""
DEFAULT_CHUNK_SIZE = 256 << 10
COMMAND_ID = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
Stage = Literal["canary", "all"]


class FleetError(EdgeAgentError):
    """A fleet message, release or command that cannot be used (one line, says why)."""


@dataclass(frozen=True)
class Release:
    """A release notice: a bundle version archive for (some of) a group's devices."""

    release: str
    group: str
    sha256: str
    size: int
    chunk_size: int
    chunk_sha256: tuple[str, ...]
    targets: tuple[str, ...] | None  # None = every device of the group
    stage: Stage
    model_version: str
    manifest_sha256: str
    issued_at: float

    @property
    def chunks(self) -> int:
        return len(self.chunk_sha256)

    def targets_device(self, device: str) -> bool:
        return self.targets is None or device in self.targets

    def to_json(self) -> str:
        return dumps(
            {
                "format": FORMAT,
                "kind": "release",
                "release": self.release,
                "group": self.group,
                "sha256": self.sha256,
                "size": self.size,
                "chunk_size": self.chunk_size,
                "chunks": self.chunks,
                "chunk_sha256": list(self.chunk_sha256),
                "targets": "all" if self.targets is None else list(self.targets),
                "stage": self.stage,
                "model_version": self.model_version,
                "manifest_sha256": self.manifest_sha256,
                "issued_at": self.issued_at,
            },
            "release notice",
            separators=(",", ":"),
        )


@dataclass(frozen=True)
class Rollback:
    """A rollback notice: devices running `release` go back to what they ran before it."""

    release: str
    group: str
    issued_at: float

    def to_json(self) -> str:
        return dumps(
            {
                "format": FORMAT,
                "kind": "rollback",
                "release": self.release,
                "group": self.group,
                "issued_at": self.issued_at,
            },
            "rollback notice",
            separators=(",", ":"),
        )


def _is_sha256(x: Any) -> bool:
    return isinstance(x, str) and len(x) == 64 and all(c in "0123456789abcdef" for c in x)


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_time(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x) and x > 0


def _object(payload: bytes, what: str) -> dict[str, Any]:
    try:
        data = loads(payload)
    except (ValueError, UnicodeDecodeError, NonFiniteError) as exc:
        raise FleetError(f"{what}: not valid JSON ({' '.join(str(exc).split())})") from None
    if not isinstance(data, dict):
        raise FleetError(f"{what}: expected a JSON object")
    return data


def _field(data: dict[str, Any], name: str, ok: bool, expected: str, what: str) -> Any:
    if name not in data:
        raise FleetError(f"{what}: missing field {name!r}")
    if not ok:
        shown = repr(data[name])
        raise FleetError(
            f"{what}: {name}: expected {expected}, got "
            f"{shown if len(shown) <= 40 else shown[:37] + '...'}"
        )
    return data[name]


def parse_notice(payload: bytes) -> Release | Rollback:
    """A release or rollback notice from its payload, or a FleetError naming the bad field."""
    what = "release notice"
    d = _object(payload, what)
    if d.get("format") != FORMAT:
        raise FleetError(f"{what}: format {d.get('format')!r}, this agent reads {FORMAT}")

    def g(key: str) -> Any:
        return d.get(key)

    kind = _field(d, "kind", g("kind") in ("release", "rollback"), "release or rollback", what)
    rid = _field(
        d,
        "release",
        isinstance(g("release"), str) and bool(RELEASE_ID.fullmatch(g("release"))),
        "a release id (letters, digits, _ . -)",
        what,
    )
    group = _field(d, "group", isinstance(g("group"), str), "a string", what)
    issued = _field(d, "issued_at", _is_time(g("issued_at")), "epoch seconds", what)
    if kind == "rollback":
        return Rollback(rid, group, float(issued))
    sha = _field(d, "sha256", _is_sha256(g("sha256")), "a sha256 hex digest", what)
    size = _field(d, "size", _is_int(g("size")) and g("size") > 0, "an integer > 0", what)
    csize = _field(
        d,
        "chunk_size",
        _is_int(g("chunk_size")) and 0 < g("chunk_size") <= MAX_CHUNK_SIZE,
        f"an integer in [1, {MAX_CHUNK_SIZE}]",
        what,
    )
    digests = _field(
        d,
        "chunk_sha256",
        isinstance(g("chunk_sha256"), list) and all(map(_is_sha256, g("chunk_sha256"))),
        "a list of sha256 hex digests",
        what,
    )
    n = -(-size // csize)
    _field(
        d,
        "chunks",
        g("chunks") == n == len(digests),
        f"{n} (size / chunk_size) and as many chunk_sha256",
        what,
    )
    targets = g("targets")
    _field(
        d,
        "targets",
        targets == "all"
        or (isinstance(targets, list) and all(isinstance(t, str) for t in targets)),
        '"all" or a list of device ids',
        what,
    )
    stage = _field(d, "stage", g("stage") in ("canary", "all"), "canary or all", what)
    mv = _field(d, "model_version", isinstance(g("model_version"), str), "a string", what)
    msha = _field(
        d, "manifest_sha256", _is_sha256(g("manifest_sha256")), "a sha256 hex digest", what
    )
    return Release(
        rid,
        group,
        sha,
        size,
        csize,
        tuple(digests),
        None if targets == "all" else tuple(targets),
        stage,
        mv,
        msha,
        float(issued),
    )


def check_size(r: Release, max_bytes: int) -> None:
    """A FleetError when the release is announced larger than `max_bytes`: refused before any
    chunk is read (the device's memory and disk bound, `fleet.max_bundle_mb`)."""
    if r.size > max_bytes:
        raise FleetError(
            f"release {r.release}: {r.size / 1e6:.1f} MB is over this device's "
            f"limit of {max_bytes / 1e6:.1f} MB (fleet.max_bundle_mb)"
        )


@dataclass(frozen=True)
class Command:
    """A remote command as received (checked: id, name, args, issued_at)."""

    id: str
    name: str
    args: dict[str, Any]
    issued_at: float


def parse_command(payload: bytes) -> Command:
    """The command in `payload`, or a FleetError naming the bad field. An error that leaves
    the id unknown cannot be replied to by id; `command_id` recovers it where it can."""
    what = "command"
    d = _object(payload, what)

    def g(key: str) -> Any:
        return d.get(key)

    cid = _field(
        d,
        "id",
        isinstance(g("id"), str) and bool(COMMAND_ID.fullmatch(g("id"))),
        "1-64 letters, digits, _ . : -",
        what,
    )
    name = _field(
        d, "name", isinstance(g("name"), str) and 0 < len(g("name")) <= 64, "a command name", what
    )
    args = d.get("args", {})
    if not isinstance(args, dict):
        raise FleetError(f"{what}: args: expected an object, got {type(args).__name__}")
    issued = _field(d, "issued_at", _is_time(g("issued_at")), "epoch seconds", what)
    return Command(cid, name, dict(args), float(issued))


def command_id(payload: bytes) -> str | None:
    """The id of a command payload that failed `parse_command`, if it has a usable one."""
    try:
        d = loads(payload)
    except (ValueError, UnicodeDecodeError, NonFiniteError):
        return None
    cid = d.get("id") if isinstance(d, dict) else None
    return cid if isinstance(cid, str) and COMMAND_ID.fullmatch(cid) else None


def command_json(cid: str, name: str, args: dict[str, Any], issued_at: float) -> str:
    """The payload the operator publishes (edge-agent fleet cmd)."""
    return dumps(
        {"id": cid, "name": name, "args": args, "issued_at": issued_at},
        "command",
        separators=(",", ":"),
    )


def reply(
    cid: str | None,
    name: str | None,
    device: str,
    *,
    result: dict[str, Any] | None = None,
    error: str | None = None,
) -> dict[str, Any]:
    """A reply object: `ok` with `result`, or not ok with the one-line `error`."""
    now = time.time()
    return {
        "id": cid,
        "name": name,
        "device_id": device,
        "ok": error is None,
        "result": result if error is None else None,
        "error": error,
        "replayed": False,
        "ts": iso(now),
        "epoch": now,
    }
