"""systemd's notify protocol (`Type=notify`, `WatchdogSec=`) in pure stdlib, no libsystemd.

The service manager passes `NOTIFY_SOCKET` (a unix datagram socket: a path, or `@name` for
the abstract namespace) and, with `WatchdogSec=`, `WATCHDOG_USEC` (and `WATCHDOG_PID`). The
agent sends newline-separated `KEY=value` datagrams to it:

* `READY=1` once the audio source is open and the scoring worker runs: `systemctl start`
  returns only then, and a device that cannot be opened fails the start instead;
* `WATCHDOG=1` every half `WATCHDOG_USEC`, and only while the agent makes progress (see
  `edge_agent.agent`): a hung worker or read loop stops the pings, and systemd kills and
  restarts the service after `WatchdogSec`;
* `STATUS=...`, a short human line shown by `systemctl status`;
* `STOPPING=1` when shutdown begins.

Without `NOTIFY_SOCKET` (run by hand, in tests, in a container) every call is a no-op.
Sending never blocks and never raises: a notification that cannot be delivered is logged once
at debug level and dropped, because the agent must keep listening whatever systemd does.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Mapping

log = logging.getLogger(__name__)


def socket_address(value: str) -> str | None:
    r"""The address `NOTIFY_SOCKET` names, for `socket.sendto`: a filesystem path as is, `@name`
    as the abstract name "\0name"; None for anything else (e.g. systemd's `vsock:`)."""
    if value.startswith("/"):
        return value
    if value.startswith("@") and len(value) > 1:
        return "\0" + value[1:]
    return None


def watchdog_interval(env: Mapping[str, str], pid: int | None = None) -> float | None:
    """Seconds between WATCHDOG=1 pings: half of `WATCHDOG_USEC` (what sd_watchdog_enabled
    recommends), or None when no watchdog is asked of this process (unset, not a positive
    integer, or `WATCHDOG_PID` naming another process)."""
    usec = env.get("WATCHDOG_USEC", "")
    if not usec.isdigit() or int(usec) <= 0:
        return None
    owner = env.get("WATCHDOG_PID", "")
    if owner and owner != str(os.getpid() if pid is None else pid):
        return None
    return int(usec) / 2e6


class Notifier:
    """Sends notifications to the socket in `NOTIFY_SOCKET` (a no-op without one).

    After `stopping()` only STATUS lines are still sent: a watchdog ping racing the shutdown
    can never arrive after STOPPING=1.
    """

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        raw = env.get("NOTIFY_SOCKET", "")
        self.address = socket_address(raw) if raw else None
        if raw and self.address is None:
            log.warning("NOTIFY_SOCKET=%r is not a unix socket path or @name: not notifying", raw)
        self.watchdog_interval = watchdog_interval(env) if self.address else None
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._stopping = False
        self._failed = False

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *fields: str) -> bool:
        """Send `KEY=value` fields in one datagram; True when it was delivered."""
        with self._lock:
            return self._send_locked(fields)

    def _send_locked(self, fields: tuple[str, ...]) -> bool:
        if self.address is None:
            return False
        payload = "\n".join(f.replace("\n", " ") for f in fields).encode()
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto(payload, socket.MSG_DONTWAIT, self.address)
        except OSError as exc:  # no listener, queue full: drop it, never stop the agent
            if not self._failed:
                self._failed = True
                log.debug("systemd notification to %r failed: %s", self.address, exc)
            return False
        return True

    def ready(self, status: str) -> bool:
        return self.send("READY=1", f"STATUS={status}")

    def status(self, status: str) -> bool:
        return self.send(f"STATUS={status}")

    def watchdog(self, status: str | None = None) -> bool:
        """WATCHDOG=1 (with a STATUS line), unless shutdown has begun."""
        with self._lock:
            if self._stopping:
                return False
            fields = ("WATCHDOG=1",) if status is None else ("WATCHDOG=1", f"STATUS={status}")
            return self._send_locked(fields)

    def stopping(self, status: str = "stopping") -> bool:
        with self._lock:
            self._stopping = True
            return self._send_locked(("STOPPING=1", f"STATUS={status}"))

    def close(self) -> None:
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None
