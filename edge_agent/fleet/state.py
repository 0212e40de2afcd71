"""What the fleet client did, on disk: the releases it installed and the commands it ran.

Why persisted: idempotence must survive a restart. A retained release notice is delivered
again on every connect, and a command may be delivered twice (QoS 1) or replayed by someone
who recorded it; the client looks both up here first. A release whose archive sha256 is listed
is not installed again (rolled back: not until a notice issued after the ones it saw, that is
a new push); a command id that is listed gets its stored reply again and is not executed
again. A command is listed BEFORE it runs (reply still empty), so a restart in the
middle of one does not run it a second time on replay either: its replay is answered "was
interrupted".

One small JSON file (`fleet-state.json` in the state folder, beside the outbox), rewritten
atomically (temporary file, fsync, rename). Bounded: the last `MAX_INSTALLS` installs and the
last `remember` command ids. A file that cannot be read is set aside (`.bad`) with a warning
and the client starts with an empty state: that costs at most one repeated install, which the
version checks make harmless, and a refused command replay (its TTL has long passed).

Only successful installs are recorded: a refused or failed release is tried again after a
restart (the refusal may have been local: a full disk, a missing key since added).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edge_agent.jsonsafe import dumps, loads
from edge_agent.private import open_private

log = logging.getLogger("edge_agent")

STATE_FILE = "fleet-state.json"
MAX_INSTALLS = 20


@dataclass(frozen=True)
class InstallRecord:
    """One release installed on this device: into bundle version `version`, over `previous`
    (what `rollback` returns to)."""

    release: str
    sha256: str
    version: int
    previous: int | None
    model_version: str
    installed_at: float
    signed_by: str | None = None
    rolled_back: bool = False
    # the latest `issued_at` of this release's notices seen while it was installed: after a
    # rollback, a notice issued later is a new push (installed again), the retained one seen
    # again at a reconnect is not (0: unknown, from an older state file: never installed again)
    notice_issued_at: float = 0.0

    def same(self, other: InstallRecord) -> bool:
        """The same install (whatever became of it since: rolled back, notices seen)."""
        return (self.release, self.sha256, self.version, self.installed_at) == (
            other.release,
            other.sha256,
            other.version,
            other.installed_at,
        )


class FleetState:
    """The state file (see module docstring); every method is thread-safe."""

    def __init__(self, folder: Path, remember: int = 1000) -> None:
        self.path = folder / STATE_FILE
        self.remember = remember
        self._lock = threading.Lock()
        self.installs: list[InstallRecord] = []
        self.commands: dict[str, dict[str, Any]] = {}
        self._load()

    def _load(self) -> None:
        try:
            data = loads(self.path.read_text())
            installs = [InstallRecord(**r) for r in data.get("installs", [])]
            commands = {str(k): dict(v) for k, v in data.get("commands", {}).items()}
        except FileNotFoundError:
            return
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            bad = self.path.with_suffix(".bad")
            with contextlib.suppress(OSError):
                Path(self.path).replace(bad)
            log.warning(
                "fleet: %s unreadable (%s); set aside as %s, starting empty",
                self.path,
                " ".join(str(exc).split()),
                bad.name,
            )
            return
        self.installs, self.commands = installs, commands

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        text = dumps(
            {
                "format": 1,
                "installs": [asdict(r) for r in self.installs],
                "commands": self.commands,
            },
            "fleet state",
            indent=1,
        )
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        with open_private(tmp, "w") as f:  # install records and command replies: 0600
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        Path(tmp).replace(self.path)

    # --- installs
    def installed(self, sha256: str) -> InstallRecord | None:
        """The install of the archive with this sha256, if this device made one."""
        with self._lock:
            return next((r for r in reversed(self.installs) if r.sha256 == sha256), None)

    def by_release(self, release: str) -> InstallRecord | None:
        with self._lock:
            return next((r for r in reversed(self.installs) if r.release == release), None)

    def by_version(self, version: int) -> InstallRecord | None:
        """The install that created bundle version `version` (and is not rolled back)."""
        with self._lock:
            return next(
                (r for r in reversed(self.installs) if r.version == version and not r.rolled_back),
                None,
            )

    def add_install(self, record: InstallRecord) -> None:
        with self._lock:
            self.installs = [*self.installs, record][-MAX_INSTALLS:]
            self._save()

    def mark_rolled_back(self, record: InstallRecord, rolled_back: bool = True) -> None:
        """Mark `record`'s install rolled back (False: undo that, a rollback the agent did not
        take up and that was put back)."""
        self._update(record, rolled_back=rolled_back)

    def saw_notice(self, record: InstallRecord, issued_at: float) -> None:
        """A notice of `record`'s release issued at `issued_at` arrived while it was installed
        (written only when later than the one kept)."""
        if issued_at > record.notice_issued_at:
            self._update(record, notice_issued_at=issued_at)

    def _update(self, record: InstallRecord, **changes: Any) -> None:
        with self._lock:
            self.installs = [
                InstallRecord(**{**asdict(r), **changes}) if r.same(record) else r
                for r in self.installs
            ]
            self._save()

    # --- commands
    def command(self, cid: str) -> dict[str, Any] | None:
        """`{"at", "name", "reply"}` of a command id seen before (reply None: it was
        interrupted), or None."""
        with self._lock:
            entry = self.commands.get(cid)
            return None if entry is None else dict(entry)

    def start_command(self, cid: str, name: str) -> None:
        """List the id before the command runs (see module docstring)."""
        with self._lock:
            self.commands[cid] = {"at": time.time(), "name": name, "reply": None}
            if len(self.commands) > self.remember:
                oldest = sorted(self.commands, key=lambda k: float(self.commands[k]["at"]))
                for k in oldest[: len(self.commands) - self.remember]:
                    del self.commands[k]
            self._save()

    def finish_command(self, cid: str, reply: dict[str, Any]) -> None:
        with self._lock:
            if cid in self.commands:
                self.commands[cid]["reply"] = json.loads(dumps(reply, "command reply"))
                self._save()
