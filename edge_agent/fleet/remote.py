"""Remote commands: what each name does on the device (`COMMANDS`), given a `Context`.

The fleet client (edge_agent.fleet.client) checks a command (id, TTL, replay, one at a time,
time bound) and then calls one of these with its checked `Args`; each returns the reply's
`result` object or raises an EdgeAgentError whose one line becomes the reply's `error`.

- `status`: the agent's status, the fleet state, the bundle's versions;
- `rollback`: back to the version before the current one (a fleet install: the version it
  replaced; otherwise `bundle.rollback`), then waits for the agent to run it;
- `record` (`monitor`, `seconds`): the monitor's live audio into a WAV file in the
  recordings folder; replies with its name, path and sha256. The folder keeps the newest
  `fleet.max_recordings` files of each monitor (one monitor's recordings never push out
  another's, and never the one just written);
- `tune`, `calibrate`: edge_agent.fleet.remote_adapt.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge_agent.bundle.layout import current_version, list_versions
from edge_agent.bundle.manifest import sha256_file
from edge_agent.errors import EdgeAgentError
from edge_agent.fleet.args import Args
from edge_agent.fleet.context import Context, recordings_of

if TYPE_CHECKING:
    pass


Handler = Callable[[Context, dict[str, Any]], dict[str, Any]]


def status(ctx: Context, raw: dict[str, Any]) -> dict[str, Any]:
    Args("status", raw, ())
    root = ctx.control.bundle_root()
    try:
        current: int | None = current_version(root)
    except EdgeAgentError:
        current = None
    return {
        "agent": ctx.control.status(),
        "fleet": ctx.fleet_state(),
        "bundle": {"root": str(root), "current": current, "versions": list_versions(root)},
    }


def rollback(ctx: Context, raw: dict[str, Any]) -> dict[str, Any]:
    Args("rollback", raw, ())
    return ctx.rollback()


def record(ctx: Context, raw: dict[str, Any]) -> dict[str, Any]:
    a = Args("record", raw, ("monitor", "seconds"))
    name, _ = a.monitor(ctx.control.monitors())
    seconds = a.number("seconds", 10.0, gt=0, le=ctx.settings.max_record_seconds)
    ctx.recordings.mkdir(parents=True, exist_ok=True)
    now = time.time()
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f"{int(now * 1000) % 1000:03d}Z"
    path = ctx.recordings / f"{name}-{stamp}.wav"
    written = ctx.control.record(name, seconds, path, timeout=seconds + 30.0)
    _keep_newest(ctx.recordings, name, ctx.settings.max_recordings, written)
    return {
        "monitor": name,
        "file": written.name,
        "path": str(written),
        "seconds": seconds,
        "bytes": written.stat().st_size,
        "sha256": sha256_file(written),
    }


def _keep_newest(folder: Path, monitor: str, keep: int, written: Path) -> None:
    """Delete `monitor`'s recordings but the newest `keep`, never `written` (the reply's)."""
    old = [p for p in recordings_of(folder, monitor) if p.name != written.name]
    for p in old[: max(0, len(old) - (keep - 1))]:
        p.unlink(missing_ok=True)


def handlers() -> dict[str, Handler]:
    """Command name -> handler (tune and calibrate import the adaptation code when asked)."""
    from edge_agent.fleet.remote_adapt import calibrate, tune

    return {
        "status": status,
        "rollback": rollback,
        "record": record,
        "tune": tune,
        "calibrate": calibrate,
    }
