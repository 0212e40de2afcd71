"""The agent's side of the fleet: releases for its group installed, remote commands answered.

`FleetClient` has its own MQTT connection (client id `<client_id>-fleet`, the agent's
`MqttSettings` for host, auth and TLS, no last will: the agent's own connection owns the
`availability` topic) and two threads of its own, so nothing it does can delay scoring:

- paho's network thread only sorts messages: a chunk of the release being received is checked
  and written to disk (`transfer.Assembly`); release notices and commands go to a bounded
  queue (full: dropped with a warning, and a command then simply gets no reply). No callback
  ever raises: paho would let the exception end its network thread, and with it every later
  release, command and reconnect; a chunk that fails in any way fails its release instead;
- the worker takes them one at a time: a notice starts receiving a release (subscribing to its
  chunks) or rolls one back; a complete release is checked, installed and waited for
  (`install`); a command runs on a thread of its own, joined with `fleet.command_timeout_
  seconds` (a command that overruns gets a timed-out reply, and later commands a "busy"
  reply until it ends; its eventual result is stored for replays of its id).

Every wait is bounded: a release that does not complete within `fleet.release_timeout_seconds`
is given up (and reported; the retained notice is tried again at the next connect), the
agent gets `fleet.health_timeout_seconds` to run an installed version (else `current` is
reverted and the release reported failed), `close(timeout)` returns within about `timeout`.

Commands (edge_agent.fleet.remote): refused when older than `fleet.command_ttl_seconds`
(`issued_at`), or unknown, or malformed, with a reply saying why; an id seen before (kept in
the state file, edge_agent.fleet.state) gets its stored reply again with `replayed: true` and
is not run again. A "busy" refusal is not stored: the same id runs once the device is free.

Trusted keys: a sequence, or a callable returning the keys as they are now (the agent's own
`trusted`, which re-reads its key files), asked at each release check, rollback and adaptation;
a release refused under one set of keys is tried again when the keys have changed.

State (`<prefix>/<device>/fleet/state`, retained, re-published on every connect and change):
`device_id`, `group`, `release` (the last one acted on), `status` (`idle`, `receiving`,
`installing`, `installed`, `refused`, `failed`, `rolled_back`, `rollback_failed`),
`installed_version` (the bundle's current version number), `model_version` (what the agent
RUNS, from `AgentControl.running_version`), `healthy` (the agent runs what the last action
meant it to run), `error` (one line, or null), `signed_by`, `ts`, `epoch`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import queue
import re
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge_agent.bundle.layout import current_version
from edge_agent.bundle.load import load_bundle
from edge_agent.bundle.versions import prune
from edge_agent.config.fleet import FleetSettings
from edge_agent.config.ids import check_device_id
from edge_agent.config.sinks import MqttSettings
from edge_agent.errors import EdgeAgentError
from edge_agent.events import iso
from edge_agent.fleet.context import Context
from edge_agent.fleet.control import AgentControl
from edge_agent.fleet.install import (
    check_candidate,
    install,
    restore,
    revert,
    roll_back,
    sections_of,
    wait_running,
)
from edge_agent.fleet.messages import (
    Command,
    FleetError,
    Release,
    Rollback,
    check_size,
    command_id,
    parse_command,
    parse_notice,
    reply,
)
from edge_agent.fleet.packing import unpack_version
from edge_agent.fleet.remote import handlers
from edge_agent.fleet.state import FleetState, InstallRecord
from edge_agent.fleet.topics import (
    chunk_topic,
    command_topic,
    manifest_topic,
    reply_topic,
    state_topic,
)
from edge_agent.fleet.transfer import Assembly
from edge_agent.jsonsafe import dumps
from edge_agent.runtime.scorer import one_line
from edge_agent.sinks.mqtt import make_client

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from edge_agent.bundle.signing import TrustedKey

log = logging.getLogger("edge_agent")

INCOMING = "fleet-incoming"
RECORDINGS = "recordings"
KEEP_VERSIONS = 5
"""Bundle versions kept after a successful install (`bundle.prune`; never the current one)."""
CHUNK_INDEX = re.compile(r"[0-9]{1,9}")
"""A chunk topic's last level: ASCII digits only (`str.isdigit` takes `²`, which `int` refuses),
and short (`int` refuses more than 4300 digits)."""


def fleet_client_id(s: MqttSettings) -> str:
    """`<the agent's client id>-fleet`: its own session, never kicking the agent's off."""
    return f"{s.client_id or f'edge-agent-{s.device_id}'}-fleet"


class FleetClient:
    """See module docstring. `start()` returns at once; `close(timeout)` stops it."""

    def __init__(
        self,
        mqtt: MqttSettings,
        settings: FleetSettings,
        control: AgentControl,
        trusted: Sequence[TrustedKey] | Callable[[], Sequence[TrustedKey]],
        state_dir: Path,
    ) -> None:
        check_device_id(mqtt.device_id)
        self.mqtt = mqtt
        self.settings = settings
        self.control = control
        if callable(trusted):
            self._keys: Callable[[], Sequence[TrustedKey]] = trusted
        else:
            fixed = list(trusted)
            self._keys = lambda: fixed
        self.state_dir = Path(state_dir)
        self.prefix, self.device, self.group = mqtt.prefix, mqtt.device_id, settings.group
        self.state = FleetState(self.state_dir, settings.remember_commands)
        self.incoming = self.state_dir / INCOMING
        self.context = Context(
            control,
            settings,
            self.trusted,
            self.state_dir / RECORDINGS,
            self._rollback,
            self.report,
            self.seal_key,
        )
        self._handlers = handlers()
        self._jobs: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=256)
        self._stop = threading.Event()
        self.connected = threading.Event()
        self._lock = threading.Lock()  # the assembly, shared with the network thread
        self._assembly: Assembly | None = None
        # archive sha256 -> (why, the trusted key ids then): until a restart or a key change
        self._refused: dict[str, tuple[str, frozenset[str]]] = {}
        self._running: tuple[threading.Thread, Command, dict[str, Any]] | None = None
        self._report: dict[str, Any] = self._initial_report()
        self._client: Any = None
        self._worker = threading.Thread(target=self._work, name="fleet", daemon=True)

    def trusted(self) -> list[TrustedKey]:
        """The trusted keys as they are now (see module docstring)."""
        return list(self._keys())

    def seal_key(self) -> Ed25519PrivateKey | None:
        """This device's key for the versions remote commands adapt (`signing`), made on first
        use in the state folder; None when the agent checks no signatures."""
        if not any(k.role == "release" for k in self.trusted()):
            return None
        from edge_agent.bundle.signing import device_signing_key

        return device_signing_key(self.state_dir)

    def _key_ids(self) -> frozenset[str]:
        try:
            return frozenset(k.key_id for k in self.trusted())
        except Exception:  # unreadable now: compare as "changed" next time it reads
            return frozenset({"?"})

    # --- lifecycle
    def start(self) -> None:
        """Connect in the background and start the worker; never waits for the broker."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.incoming, ignore_errors=True)  # half a release from a crash
        c = make_client(dataclasses.replace(self.mqtt, client_id=fleet_client_id(self.mqtt)))
        c.will_clear()
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        self._client = c
        c.connect_async(self.mqtt.host, self.mqtt.port, self.mqtt.keepalive)
        c.loop_start()
        self._worker.start()

    def close(self, timeout: float = 5.0) -> None:
        """Stop the worker (the job in hand finishes first, up to `timeout`), disconnect."""
        self._stop.set()
        if self._worker.is_alive():
            self._worker.join(timeout)
        with self._lock:
            if self._assembly is not None:
                self._assembly.discard()
                self._assembly = None
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()

    # --- paho callbacks (network thread: sort, never block, never raise)
    def _on_connect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        try:
            self._subscribe_all(client, rc)
        except Exception as exc:
            log.error("fleet: handling the broker's connect failed: %s", one_line(exc))
            log.debug("fleet: on_connect", exc_info=True)

    def _subscribe_all(self, client: Any, rc: Any) -> None:
        if rc.is_failure:
            log.error(
                "fleet: broker %s:%s refused the connection: %s", self.mqtt.host, self.mqtt.port, rc
            )
            return
        topics = [
            (manifest_topic(self.prefix, self.group), 1),
            (command_topic(self.prefix, self.device), 1),
        ]
        with self._lock:
            if self._assembly is not None:
                topics.append(
                    (chunk_topic(self.prefix, self.group, self._assembly.release.release), 1)
                )
        client.subscribe(topics)
        self.connected.set()
        self._put(("connected", None))

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        self.connected.clear()

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        try:
            topic: str = msg.topic
            if topic == manifest_topic(self.prefix, self.group):
                self._put(("notice", bytes(msg.payload)))
            elif topic == command_topic(self.prefix, self.device):
                self._put(("command", bytes(msg.payload)))
            else:
                self._chunk(topic, bytes(msg.payload))
        except Exception as exc:  # see the module docstring: the network thread must live on
            log.error("fleet: a message was dropped: %s", one_line(exc))
            log.debug("fleet: on_message", exc_info=True)

    def _chunk(self, topic: str, payload: bytes) -> None:
        with self._lock:
            a = self._assembly
        if a is None:
            return
        base = chunk_topic(self.prefix, self.group, a.release.release)[:-1]
        index = topic[len(base) :]
        if not topic.startswith(base) or not CHUNK_INDEX.fullmatch(index):
            return
        failed = a.error is not None
        try:
            done = a.add(int(index), payload)
        except Exception as exc:  # a bug or an error add does not expect: the release fails
            log.debug("fleet: chunk %s", index, exc_info=True)
            done = False
            a.fail(f"release {a.release.release}: chunk {index}: {one_line(exc)}")
        if done or (a.error is not None and not failed):  # once: complete, or just failed
            self._put(("assembled", a))

    def _put(self, job: tuple[str, Any]) -> None:
        try:
            self._jobs.put_nowait(job)
        except queue.Full:
            log.warning(
                "fleet: %s dropped: the fleet worker is %d jobs behind", job[0], self._jobs.qsize()
            )

    # --- worker
    def _work(self) -> None:
        while not self._stop.is_set():
            try:
                job: tuple[str, Any] | None = self._jobs.get(timeout=0.5)
            except queue.Empty:
                job = None
            try:
                self._check_timeouts()
                if job is not None:
                    self._do(*job)
            except Exception as exc:  # the worker must outlive any one job
                log.error("fleet: %s failed: %s", job[0] if job else "worker", one_line(exc))
                log.debug("fleet: worker error", exc_info=True)

    def _do(self, kind: str, data: Any) -> None:
        if kind == "connected":
            self._publish_state()
        elif kind == "notice":
            self._notice(data)
        elif kind == "assembled":
            self._assembled(data)
        elif kind == "command":
            self._command(data)

    # --- state report
    def _initial_report(self) -> dict[str, Any]:
        last = self.state.installs[-1] if self.state.installs else None
        out: dict[str, Any] = {
            "release": None,
            "status": "idle",
            "healthy": True,
            "error": None,
            "signed_by": None,
        }
        if last is not None:
            out.update(
                release=last.release,
                signed_by=last.signed_by,
                status="rolled_back" if last.rolled_back else "installed",
            )
        return out

    def report(self) -> dict[str, Any]:
        """The state as published (see module docstring), with what the agent runs now."""
        try:
            installed: int | None = current_version(self.control.bundle_root())
        except EdgeAgentError:
            installed = None
        now = time.time()
        with self._lock:
            rep = dict(self._report)
        return {
            "device_id": self.device,
            "group": self.group,
            **rep,
            "installed_version": installed,
            "model_version": self.control.running_version(),
            "ts": iso(now),
            "epoch": now,
        }

    def _publish_state(self, **changes: Any) -> None:
        with self._lock:
            self._report.update(changes)
        if self._client is None:
            return
        payload = dumps(self.report(), "fleet state", separators=(",", ":"))
        self._client.publish(state_topic(self.prefix, self.device), payload, qos=1, retain=True)

    def _fail(self, release: str | None, status: str, error: str) -> None:
        log.warning("fleet: %s", error)
        self._publish_state(release=release, status=status, healthy=False, error=error)

    # --- releases
    def _notice(self, payload: bytes) -> None:
        if not payload:
            return  # the operator cleared the group's notice
        try:
            notice = parse_notice(payload)
        except FleetError as exc:
            self._fail(None, "refused", str(exc))
            return
        if notice.group != self.group:
            self._fail(
                notice.release,
                "refused",
                f"release {notice.release}: a notice for "
                f"group {notice.group!r} on group {self.group!r}'s topic",
            )
        elif isinstance(notice, Rollback):
            self._group_rollback(notice)
        elif notice.targets_device(self.device):
            self._release(notice)

    def _release(self, r: Release) -> None:
        done = self.state.installed(r.sha256)
        if done is not None and not done.rolled_back:  # idempotent: installed before (maybe
            self.state.saw_notice(done, r.issued_at)  # under another stage): re-reported
            ok = self.control.running_version() == done.model_version
            self._publish_state(
                release=done.release,
                status="installed",
                healthy=ok,
                signed_by=done.signed_by,
                error=None
                if ok
                else (
                    f"installed {done.model_version}, the agent runs "
                    f"{self.control.running_version()}"
                ),
            )
            return
        if done is not None and not (0 < done.notice_issued_at < r.issued_at):
            # rolled back, and this notice is one it saw before (the retained one, again at a
            # reconnect): the rollback stands. A notice issued later is a new push: installed
            self._publish_state(release=done.release, status="rolled_back", error=None)
            return
        refused = self._refused.get(r.sha256)
        if refused is not None and refused[1] == self._key_ids():
            self._fail(r.release, "refused", refused[0])
            return
        try:
            check_size(r, int(self.settings.max_bundle_mb * 1e6))
        except FleetError as exc:
            self._fail(r.release, "refused", str(exc))
            return
        with self._lock:
            old = self._assembly
        if old is not None:
            if old.release.sha256 == r.sha256:
                return  # being received
            self._drop_assembly(old, f"superseded by release {r.release}")
        need = 3 * r.size  # chunks, joined archive, unpacked version
        free = shutil.disk_usage(self.state_dir).free
        if free < need:
            self._fail(
                r.release,
                "refused",
                f"release {r.release}: {free / 1e6:.0f} MB free in "
                f"{self.state_dir}, receiving it needs {need / 1e6:.0f} MB",
            )
            return
        a = Assembly(r, self.incoming / r.release, self.settings.release_timeout_seconds)
        with self._lock:
            self._assembly = a
        log.info(
            "fleet: receiving release %s (%s, %d chunks, %.1f MB)",
            r.release,
            r.model_version,
            r.chunks,
            r.size / 1e6,
        )
        self._publish_state(release=r.release, status="receiving", healthy=True, error=None)
        if self._client is not None:
            self._client.subscribe(chunk_topic(self.prefix, self.group, r.release), 1)

    def _drop_assembly(self, a: Assembly, why: str | None) -> None:
        with self._lock:
            if self._assembly is a:
                self._assembly = None
        if self._client is not None:
            self._client.unsubscribe(chunk_topic(self.prefix, self.group, a.release.release))
        a.discard()
        if why is not None:
            self._fail(a.release.release, "failed", f"release {a.release.release}: {why}")

    def _check_timeouts(self) -> None:
        with self._lock:
            a = self._assembly
        if a is not None and (a.complete or a.error is not None) and a.expired():
            self._assembled(a)  # its "assembled" job was dropped (a full queue)
        elif a is not None and a.expired():
            self._drop_assembly(
                a,
                f"incomplete after {self.settings.release_timeout_seconds:g}"
                f" s ({a.progress()}); given up, tried again at the next "
                "connect",
            )
        if self._running is not None and not self._running[0].is_alive():
            _, cmd, box = self._running
            self._running = None
            if "reply" in box:  # the overrun command ended: replays get its real outcome
                self.state.finish_command(cmd.id, box["reply"])

    def _assembled(self, a: Assembly) -> None:
        with self._lock:
            if self._assembly is not a:
                return
        r = a.release
        if a.error is not None:
            self._drop_assembly(a, None)
            if a.local_error:  # this device's fault (its disk): tried again at the next notice
                self._fail(r.release, "failed", f"{a.error}; nothing installed")
            else:
                self._refuse(r, a.error, self._key_ids())
            return
        self._publish_state(release=r.release, status="installing", healthy=True, error=None)
        root = self.control.bundle_root()
        keys: frozenset[str] = frozenset()
        try:
            trusted = self.trusted()
            keys = frozenset(k.key_id for k in trusted)
            vdir = a.folder / "version"
            archive = a.archive()
            unpack_version(archive, vdir, r.size)
            archive.unlink()
            cand = check_candidate(
                vdir,
                r,
                trusted,
                self.settings.allow_unsigned,
                sections_of(self.control.monitors()),
                self.control.window_samples(),
                self.control.runtime_request(),
            )
            version, previous = install(root, cand)
        except EdgeAgentError as exc:  # the release's fault (or the keys'): refused
            self._drop_assembly(a, None)
            self._refuse(r, str(exc), keys)
            return
        except Exception as exc:  # this device's (a full disk, a folder in the way): failed,
            self._drop_assembly(a, None)  # not remembered; the next notice tries again
            log.debug("fleet: install of %s", r.release, exc_info=True)
            self._fail(
                r.release, "failed", f"release {r.release}: {one_line(exc)}; nothing installed"
            )
            return
        self._drop_assembly(a, None)
        record = InstallRecord(
            r.release,
            r.sha256,
            version,
            previous,
            cand.model_version,
            time.time(),
            cand.signed_by,
            notice_issued_at=r.issued_at,
        )
        log.info(
            "fleet: release %s installed as bundle version %d (was %s); waiting for the "
            "agent to run %s",
            r.release,
            version,
            previous,
            cand.model_version,
        )
        ok = wait_running(
            self.control.running_version,
            cand.model_version,
            self.settings.health_timeout_seconds,
            self._stop.is_set,
        )
        if not ok and self._stop.is_set():  # stopping before the agent took it up: put the
            revert(root, record)  # old version back (an agent must always start), and the
            return  # retained notice installs it again at the next start
        if ok:
            self.state.add_install(record)
            with contextlib.suppress(OSError, EdgeAgentError):
                prune(root, KEEP_VERSIONS)
            self._publish_state(
                release=r.release,
                status="installed",
                healthy=True,
                error=None,
                signed_by=cand.signed_by,
            )
            return
        reverted = revert(root, record)
        why = (
            f"release {r.release}: the agent still runs {self.control.running_version()} "
            f"{self.settings.health_timeout_seconds:g} s after the install (its reload "
            "refused the version? see its reload_failed health event)"
            + (f"; current reverted to version {previous}" if reverted else "")
        )
        self._refused[r.sha256] = (why, keys)
        self._fail(r.release, "failed", why)

    def _refuse(self, r: Release, why: str, keys: frozenset[str]) -> None:
        """Refused for good under these keys (until a restart or a key change)."""
        self._refused[r.sha256] = (why, keys)
        self._fail(r.release, "refused", why)

    # --- rollback
    def _group_rollback(self, n: Rollback) -> None:
        record = self.state.by_release(n.release)
        if record is None:
            return  # never installed here: nothing to undo
        if record.rolled_back:
            self._publish_state(release=n.release, status="rolled_back", error=None)
            return
        cur = current_version(self.control.bundle_root())
        if cur != record.version:
            self._fail(
                n.release,
                "rollback_failed",
                f"release {n.release} (bundle version "
                f"{record.version}) is not the current version (that is {cur}); "
                "nothing rolled back",
            )
            return
        try:
            self._rollback()
        except EdgeAgentError as exc:
            self._fail(n.release, "rollback_failed", str(exc))

    def _rollback(self) -> dict[str, Any]:
        """Roll back (install.roll_back: the target checked with the trusted keys first), wait
        for the agent to run it, report; the result. The agent does not take it up within
        `fleet.health_timeout_seconds`: `current` is put back (an agent must always be able to
        start on it) and a FleetError says so."""
        root = self.control.bundle_root()
        before, after, record = roll_back(root, self.state, self.trusted())
        expected = load_bundle(root, verify=False, version=after).model_version
        ok = wait_running(
            self.control.running_version,
            expected,
            self.settings.health_timeout_seconds,
            self._stop.is_set,
        )
        if not ok:
            put_back = restore(root, before, after)
            if record is not None and put_back:
                self.state.mark_rolled_back(record, False)
            raise FleetError(
                f"rolled back to version {after}, but the agent still runs "
                f"{self.control.running_version()} after "
                f"{self.settings.health_timeout_seconds:g} s (its reload refused the version? see "
                "its reload_failed health event)"
                + (f"; current put back to version {before}" if put_back else "")
            )
        log.info(
            "fleet: rolled back from version %d to %d%s",
            before,
            after,
            f" (release {record.release})" if record else "",
        )
        if record is not None:  # a release undone; else a local version: the release stays
            self._publish_state(
                release=record.release, status="rolled_back", healthy=True, error=None
            )
        else:
            self._publish_state(healthy=True, error=None)
        return {
            "from": before,
            "to": after,
            "release": record.release if record else None,
            "model_version": expected,
            "running": self.control.running_version(),
            "healthy": True,
        }

    # --- commands
    def _send_reply(self, rep: dict[str, Any]) -> None:
        if self._client is not None:
            self._client.publish(
                reply_topic(self.prefix, self.device),
                dumps(rep, "command reply", separators=(",", ":")),
                qos=1,
            )

    def _command(self, payload: bytes) -> None:
        try:
            cmd = parse_command(payload)
        except FleetError as exc:
            self._send_reply(reply(command_id(payload), None, self.device, error=str(exc)))
            return
        seen = self.state.command(cmd.id)
        if seen is not None:
            rep = seen["reply"] or reply(
                cmd.id,
                cmd.name,
                self.device,
                error=("interrupted (the agent stopped while it ran); not run again"),
            )
            self._send_reply({**rep, "replayed": True})
            log.info("fleet: command %s (%s) replayed: stored reply sent again", cmd.id, cmd.name)
            return
        refusal = self._refusal(cmd)
        if refusal is not None and not refusal[1]:  # busy: not stored, so that the same id
            self._send_reply(refusal[0])  # runs once the device is free
            return
        self.state.start_command(cmd.id, cmd.name)
        rep = refusal[0] if refusal is not None else self._execute(cmd)
        self.state.finish_command(cmd.id, rep)
        self._send_reply(rep)

    def _busy(self) -> Command | None:
        """The command still running past its time bound, if any."""
        running = self._running
        return running[1] if running is not None and running[0].is_alive() else None

    def _refusal(self, cmd: Command) -> tuple[dict[str, Any], bool] | None:
        """(the error reply of a command that must not run, whether that is for good: expired,
        unknown; not busy), or None."""
        ttl = self.settings.command_ttl_seconds
        age = time.time() - cmd.issued_at
        error = None
        final = True
        if age > ttl:
            error = (
                f"expired: issued {age:.0f} s ago, more than fleet.command_ttl_seconds "
                f"({ttl:g}); not run"
            )
        elif age < -ttl:
            error = f"issued {-age:.0f} s in the future (clocks out of step?); not run"
        elif cmd.name not in self._handlers:
            error = f"unknown command {cmd.name!r} (known: {', '.join(sorted(self._handlers))})"
        elif (other := self._busy()) is not None:
            error = (
                f"busy: command {other.id} ({other.name}) is still running; not run (send "
                "it again, same id, once it ended)"
            )
            final = False
        if error is None:
            return None
        log.warning("fleet: command %s (%s) refused: %s", cmd.id, cmd.name, error)
        return reply(cmd.id, cmd.name, self.device, error=error), final

    def _execute(self, cmd: Command) -> dict[str, Any]:
        box: dict[str, Any] = {}
        handler = self._handlers[cmd.name]

        def run() -> None:
            try:
                result = handler(self.context, cmd.args)
                box["reply"] = reply(cmd.id, cmd.name, self.device, result=result)
            except EdgeAgentError as exc:
                box["reply"] = reply(cmd.id, cmd.name, self.device, error=str(exc))
            except Exception as exc:  # a bug must still answer, in one line
                log.debug("fleet: command %s failed", cmd.name, exc_info=True)
                box["reply"] = reply(cmd.id, cmd.name, self.device, error=one_line(exc))

        log.info("fleet: command %s (%s) %s", cmd.id, cmd.name, dumps(cmd.args, "args"))
        t = threading.Thread(target=run, name=f"fleet-{cmd.name}", daemon=True)
        t.start()
        t.join(self.settings.command_timeout_seconds)
        if t.is_alive():
            self._running = (t, cmd, box)
            return reply(
                cmd.id,
                cmd.name,
                self.device,
                error=(
                    f"timed out after {self.settings.command_timeout_seconds:g} s "
                    "(fleet.command_timeout_seconds); it goes on running on the device, and a "
                    "replay of this id gets its outcome once it ends"
                ),
            )
        rep: dict[str, Any] = box["reply"]
        return rep
