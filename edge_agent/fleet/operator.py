"""The operator's side of the fleet: push a release (canaries first), roll back, read states,
send commands. `edge-agent fleet ...` (edge_agent.commands.fleet) is a thin layer over this.

Push (`push`): the version folder is packed (edge_agent.fleet.packing), its chunks published
retained (QoS 1, every PUBACK waited for), then the group's notice naming the canaries only.
Their states are awaited, each for a report received AFTER the notice went out (an old
retained state never counts, and no clock of a device is compared with ours): all canaries
`installed`, healthy and running the release's model_version -> the notice is re-published for
the whole group (`targets: "all"`), and the previous release's chunks are deleted from the
broker. A canary that refuses or fails, or any canary silent past `wait`: the push is aborted,
the group's previous notice is put back (or the notice cleared when there was none) and this
release's chunks deleted, so no other device ever sees it.

Rollback (`rollback_group`): a retained rollback notice for the group's release; devices
that run it go back to their version before it (devices offline catch up at connect), and the
release's chunks are deleted; the devices whose state says they installed it are waited for
(not those that refused it or are still receiving it). Commands (`send_command`): published
after subscribing to the device's reply topic; the reply with the command's id is awaited,
bounded.

Names from the command line (a device, a group, a release, a command id) are checked here
before anything is published (`check_device`, `check_group`, ...): a `+`, `#` or `/` would make
a topic filter or another topic, so each is a one-line ConfigError naming the argument.

A device's state counts under the device of its topic (`<prefix>/<device>/fleet/state`, which
the broker's ACL lets only that device write); a payload naming another device is ignored.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_agent.bundle.layout import resolve
from edge_agent.bundle.load import load_bundle
from edge_agent.bundle.manifest import MANIFEST, sha256_file
from edge_agent.config.fleet import GROUP
from edge_agent.config.ids import check_device, check_level
from edge_agent.config.sinks import MqttSettings
from edge_agent.errors import ConfigError, EdgeAgentError
from edge_agent.fleet.messages import (
    COMMAND_ID,
    DEFAULT_CHUNK_SIZE,
    FleetError,
    Release,
    Rollback,
    command_json,
    parse_notice,
)
from edge_agent.fleet.packing import pack_version
from edge_agent.fleet.topics import (
    RELEASE_ID,
    chunk_topic,
    command_topic,
    manifest_topic,
    reply_topic,
    state_topic,
)
from edge_agent.fleet.transfer import chunk_digests, cut
from edge_agent.jsonsafe import NonFiniteError, loads
from edge_agent.sinks.mqtt import make_client

log = logging.getLogger("edge_agent")
STATE_SUFFIX = "/fleet/state"


def check_group(group: str, field: str = "--group") -> str:
    """A group name as the devices' `fleet.group` allows it (one topic level)."""
    return check_level(group, GROUP, field, "a group name")


def check_release(release: str, field: str = "--release") -> str:
    return check_level(release, RELEASE_ID, field, "a release id")


def check_command_id(cid: str, field: str = "--id") -> str:
    """A command id the device accepts (edge_agent.fleet.messages.COMMAND_ID)."""
    if not COMMAND_ID.fullmatch(cid):
        raise ConfigError(
            f"{field}: expected 1-64 letters, digits, _ . : - (the ids a device "
            f"accepts), got {cid!r}"
        )
    return cid


class Connection:
    """The operator's MQTT connection: every message of its subscriptions, with the time it
    arrived here (monotonic), so "a report after I published" needs no device clock."""

    def __init__(self, mqtt: MqttSettings, timeout: float = 10.0) -> None:
        if not mqtt.host:
            raise ConfigError(
                "mqtt.host: required (the broker: `mqtt:` in --config, or --mqtt-host)"
            )
        self.mqtt = mqtt
        self.prefix = mqtt.prefix
        self.timeout = timeout
        cid = f"edge-agent-operator-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.client: Any = make_client(dataclasses.replace(mqtt, client_id=cid))
        self.client.will_clear()
        self._cond = threading.Condition()
        self._latest: dict[str, tuple[bytes, float]] = {}
        self._replies: list[tuple[bytes, float]] = []
        self._connected = threading.Event()
        self._refused: str | None = None
        self._subacks: set[int] = set()
        self.client.on_connect = self._on_connect
        self.client.on_connect_fail = self._on_connect_fail
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe

    def _on_connect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        if rc.is_failure:
            self._refused = f"refused the connection: {rc}"
        else:
            self._connected.set()

    def _on_connect_fail(self, client: Any, userdata: Any) -> None:
        exc = sys.exc_info()[1]  # paho calls this inside its `except OSError` of the attempt
        self._refused = f"cannot be reached ({' '.join(str(exc).split()) or 'no answer'})"

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, rcs: Any, props: Any) -> None:
        with self._cond:
            self._subacks.add(mid)
            self._cond.notify_all()

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        now = time.monotonic()
        with self._cond:
            if msg.topic.endswith("/cmd/reply"):
                self._replies.append((bytes(msg.payload), now))
            else:
                self._latest[msg.topic] = (bytes(msg.payload), now)
            self._cond.notify_all()

    def __enter__(self) -> Connection:
        m = self.mqtt
        self.client.connect_async(m.host, m.port, m.keepalive)
        self.client.loop_start()
        end = time.monotonic() + self.timeout
        while not self._connected.wait(0.05):
            if self._refused is not None or time.monotonic() > end:
                self.close()
                raise FleetError(
                    f"mqtt: broker {m.host}:{m.port} "
                    + (
                        self._refused
                        if self._refused
                        else f"not reachable within {self.timeout:g} s"
                    )
                )
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def subscribe(self, topics: Sequence[str], settle: float = 0.5) -> None:
        """Subscribe and wait for the broker's SUBACK, then `settle` seconds for the retained
        messages it sends after it."""
        _, mid = self.client.subscribe([(t, 1) for t in topics])
        with self._cond:
            if not self._cond.wait_for(lambda: mid in self._subacks, self.timeout):
                raise FleetError(f"mqtt: no SUBACK from the broker within {self.timeout:g} s")
        time.sleep(settle)

    def publish(
        self, items: Iterable[tuple[str, bytes | str]], retain: bool, timeout: float | None = None
    ) -> None:
        """Publish (QoS 1) and wait until the broker acknowledged every message."""
        infos = [self.client.publish(t, p, qos=1, retain=retain) for t, p in items]
        end = time.monotonic() + (timeout if timeout is not None else self.timeout)
        for info in infos:
            info.wait_for_publish(max(0.0, end - time.monotonic()))
            if not info.is_published():
                raise FleetError(
                    "mqtt: the broker did not acknowledge the messages in time (connection lost?)"
                )

    def latest(self, topic: str) -> tuple[bytes, float] | None:
        with self._cond:
            return self._latest.get(topic)

    def states(self, group: str | None = None) -> dict[str, dict[str, Any]]:
        """Device id -> its latest fleet state (of `group`, when given). The id is the topic's
        (module docstring): a payload whose `device_id` disagrees is ignored, and logged."""
        out: dict[str, dict[str, Any]] = {}
        with self._cond:
            items = list(self._latest.items())
        head = f"{self.prefix}/"
        for topic, (payload, _) in items:
            if not (topic.startswith(head) and topic.endswith(STATE_SUFFIX)) or not payload:
                continue
            device = topic[len(head) : -len(STATE_SUFFIX)]
            state = _json(payload)
            if state is None or "/" in device:
                continue
            if state.get("device_id") != device:
                log.warning(
                    "fleet: %s: ignored, its payload names device %r", topic, state.get("device_id")
                )
                continue
            if group is None or state.get("group") == group:
                out[device] = state
        return out

    def wait(self, done: Callable[[], bool], timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(done, timeout)

    def reply(self, cid: str, after: float) -> dict[str, Any] | None:
        with self._cond:
            for payload, at in self._replies:
                r = _json(payload)
                if at >= after and r is not None and r.get("id") == cid:
                    return r
        return None


def _json(payload: bytes) -> dict[str, Any] | None:
    try:
        d = loads(payload)
    except (ValueError, UnicodeDecodeError, NonFiniteError):
        return None
    return d if isinstance(d, dict) else None


@dataclass(frozen=True)
class Prepared:
    """A release ready to publish: its notice (for the whole group) and its chunks."""

    release: Release
    chunks: list[bytes]


def prepare(bundle: Path, group: str, chunk_size: int = DEFAULT_CHUNK_SIZE) -> Prepared:
    """The release of `bundle` (a bundle folder: its current version; or a version folder),
    verified first (a version whose files do not match its manifest is never pushed). Its id
    is `<model_version>-<first 8 hex of the archive's sha256>`: the same version pushed twice
    is the same release."""
    _, vdir = resolve(bundle)
    b = load_bundle(vdir, verify=True)
    archive = pack_version(vdir)
    sha = hashlib.sha256(archive).hexdigest()
    chunks = cut(archive, chunk_size)
    release = Release(
        f"{b.model_version}-{sha[:8]}",
        group,
        sha,
        len(archive),
        chunk_size,
        chunk_digests(chunks),
        None,
        "all",
        b.model_version,
        sha256_file(vdir / MANIFEST),
        time.time(),
    )
    return Prepared(release, chunks)


def _notice_of(payload: bytes | None) -> Release | Rollback | None:
    if not payload:
        return None
    try:
        return parse_notice(payload)
    except FleetError:
        return None


def _delete_chunks(conn: Connection, r: Release) -> None:
    conn.publish(
        ((chunk_topic(conn.prefix, r.group, r.release, i), b"") for i in range(r.chunks)),
        retain=True,
    )


@dataclass(frozen=True)
class Outcome:
    """Per device: `ok` (installed, healthy, running the release), `failed` (refused or failed,
    with the error) or `pending` (no report in time)."""

    ok: list[str]
    failed: dict[str, str]
    pending: list[str]


def await_states(
    conn: Connection,
    devices: Sequence[str],
    release: str,
    after: float,
    timeout: float,
    good: Callable[[dict[str, Any]], bool],
    bad: Callable[[dict[str, Any]], bool],
    first_bad: bool = True,
) -> Outcome:
    """Wait until every device reported on `release` after `after` (monotonic) with a state
    that is `good` or `bad`, or (with `first_bad`) one is `bad`, or `timeout`."""

    def fresh(dev: str) -> dict[str, Any] | None:
        got = conn.latest(state_topic(conn.prefix, dev))
        if got is None or got[1] < after:
            return None
        s = _json(got[0])
        return s if s is not None and s.get("release") == release else None

    def outcome() -> Outcome:
        ok, failed, pending = [], {}, []
        for d in devices:
            s = fresh(d)
            if s is not None and good(s):
                ok.append(d)
            elif s is not None and bad(s):
                failed[d] = str(s.get("error") or s.get("status"))
            else:
                pending.append(d)
        return Outcome(ok, failed, pending)

    conn.wait(lambda: (first_bad and bool(outcome().failed)) or not outcome().pending, timeout)
    return outcome()


def push(
    conn: Connection,
    prepared: Prepared,
    canaries: Sequence[str],
    wait: float,
    say: Callable[[str], None],
) -> tuple[Release, Outcome]:
    """Canaries first, then the group (module docstring); the notice published last; then up
    to `wait` seconds for the group's other known devices (those with a fleet state in the
    group) to report. Returns the notice and their outcome (offline ones stay `pending`: they
    install when they connect). A FleetError, after restoring the group's previous notice,
    when a canary refuses, fails or stays silent for `wait` seconds, or when every device
    that reported refused the release (nothing runs it: the release is withdrawn)."""
    r, prefix = prepared.release, conn.prefix
    check_group(r.group)
    for c in canaries:
        check_device(c, "--canary")
    topic = manifest_topic(prefix, r.group)
    conn.subscribe([topic, f"{prefix}/+/fleet/state"])
    before = conn.latest(topic)
    previous = _notice_of(before[0] if before else None)
    members = sorted(d for d in conn.states(r.group) if d not in canaries)
    conn.publish(
        ((chunk_topic(prefix, r.group, r.release, i), c) for i, c in enumerate(prepared.chunks)),
        retain=True,
        timeout=30.0 + r.size / 200e3,
    )
    what = f"release {r.release} ({r.model_version}, {r.size / 1e6:.1f} MB, {r.chunks} chunks)"
    if canaries:
        notice = dataclasses.replace(
            r, targets=tuple(canaries), stage="canary", issued_at=time.time()
        )
        sent = time.monotonic()
        conn.publish([(topic, notice.to_json())], retain=True)
        say(f"{what}: sent to canaries {', '.join(canaries)}; waiting up to {wait:g} s")
        out = await_states(
            conn,
            canaries,
            r.release,
            sent,
            wait,
            good=lambda s: (
                s.get("status") == "installed"
                and s.get("healthy") is True
                and s.get("model_version") == r.model_version
            ),
            bad=lambda s: s.get("status") in ("refused", "failed"),
        )
        if out.failed or out.pending:
            conn.publish([(topic, before[0] if before else b"")], retain=True)
            _delete_chunks(conn, r)
            why = "; ".join(
                [f"canary {d} refused it: {e}" for d, e in out.failed.items()]
                + [f"canary {d}: no healthy report within {wait:g} s" for d in out.pending]
            )
            ran = (
                (
                    f" (canaries running it: {', '.join(out.ok)}; roll them back with "
                    "`edge-agent fleet cmd DEVICE rollback`)"
                )
                if out.ok
                else ""
            )
            raise FleetError(
                f"push of {r.release} aborted: {why}; the rest of group "
                f"{r.group} was left untouched{ran}"
            )
        say(f"canaries healthy: {', '.join(out.ok)} run {r.model_version}")
    final = dataclasses.replace(r, targets=None, stage="all", issued_at=time.time())
    sent = time.monotonic()
    conn.publish([(topic, final.to_json())], retain=True)
    if members:
        say(
            f"{what}: sent to group {r.group}; waiting up to {wait:g} s for "
            f"{len(members)} device(s)"
        )
    out = await_states(
        conn,
        members,
        r.release,
        sent,
        wait,
        good=lambda s: (
            s.get("status") == "installed"
            and s.get("healthy") is True
            and s.get("model_version") == r.model_version
        ),
        bad=lambda s: s.get("status") in ("refused", "failed"),
        first_bad=False,
    )
    if out.failed and not out.ok and not out.pending and not canaries:
        conn.publish([(topic, before[0] if before else b"")], retain=True)
        _delete_chunks(conn, r)
        why = "; ".join(f"{d}: {e}" for d, e in out.failed.items())
        raise FleetError(
            f"push of {r.release} refused by every device of group {r.group} "
            f"({why}); the group's previous notice was restored"
        )
    if isinstance(previous, Release) and previous.release != r.release:
        _delete_chunks(conn, previous)
    running = len(out.ok) + len(canaries)
    say(
        f"{what}: released to group {r.group}: {running} device(s) run it"
        + (f", {len(out.failed)} refused or failed" if out.failed else "")
        + (
            f", {len(out.pending)} not reported yet (offline devices install when they connect)"
            if out.pending
            else ""
        )
        + f" (`edge-agent fleet status --group {r.group}`)"
    )
    return final, out


INSTALLED = ("installed", "rolled_back", "rollback_failed")
"""The states of a device that installed the release (rolled back since, or tried to): a
rollback notice gets a report from each. `receiving`, `refused`, `failed` never installed it."""


def rollback_group(
    conn: Connection, group: str, release: str | None, wait: float
) -> tuple[str, Outcome]:
    """Publish the group's rollback notice for `release` (default: the group's current
    release) and wait for the devices whose state says they installed it; (release,
    outcome)."""
    prefix = conn.prefix
    check_group(group)
    if release is not None:
        check_release(release)
    topic = manifest_topic(prefix, group)
    conn.subscribe([topic, f"{prefix}/+/fleet/state"])
    got = conn.latest(topic)
    current = _notice_of(got[0] if got else None)
    if release is None:
        if not isinstance(current, Release):
            raise FleetError(
                f"group {group}: no release to roll back (its notice is "
                f"{'a rollback already' if current else 'empty'}); name one "
                "with --release"
            )
        release = current.release
    devices = sorted(
        d
        for d, s in conn.states(group).items()
        if s.get("release") == release and s.get("status") in INSTALLED
    )
    sent = time.monotonic()
    conn.publish([(topic, Rollback(release, group, time.time()).to_json())], retain=True)
    if isinstance(current, Release) and current.release == release:
        _delete_chunks(conn, current)
    out = await_states(
        conn,
        devices,
        release,
        sent,
        wait,
        good=lambda s: s.get("status") == "rolled_back",
        bad=lambda s: s.get("status") == "rollback_failed",
    )
    return release, out


def group_status(
    conn: Connection, group: str, settle: float
) -> tuple[Release | Rollback | None, dict[str, dict[str, Any]]]:
    """The group's notice and its devices' retained states."""
    check_group(group)
    topic = manifest_topic(conn.prefix, group)
    conn.subscribe([topic, f"{conn.prefix}/+/fleet/state"], settle=settle)
    got = conn.latest(topic)
    return _notice_of(got[0] if got else None), conn.states(group)


def send_command(
    conn: Connection,
    device: str,
    name: str,
    args: dict[str, Any],
    wait: float,
    cid: str | None = None,
) -> dict[str, Any]:
    """Send a command and return the device's reply; FleetError when none within `wait`
    (ConfigError, before anything is sent, for a bad device or id)."""
    check_device(device, "DEVICE")
    cid = check_command_id(cid) if cid is not None else uuid.uuid4().hex
    conn.subscribe([reply_topic(conn.prefix, device)], settle=0.0)
    sent = time.monotonic()
    try:
        payload = command_json(cid, name, args, time.time())
    except EdgeAgentError as exc:
        raise FleetError(f"--arg: {exc}") from None
    conn.publish([(command_topic(conn.prefix, device), payload)], retain=False)
    if not conn.wait(lambda: conn.reply(cid, sent) is not None, wait):
        raise FleetError(
            f"{device}: no reply to command {cid} ({name}) within {wait:g} s "
            "(offline, or not in the fleet? `edge-agent fleet status`)"
        )
    r = conn.reply(cid, sent)
    assert r is not None
    return r
