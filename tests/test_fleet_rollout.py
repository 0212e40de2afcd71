"""Bundle rollout over a real mosquitto to several real fleet clients (edge_agent.fleet).

Each device is a copy of the signed demo bundle, a MiniAgent (tests/fleet_helpers.py) that
really scores and hot-reloads it, and a FleetClient with its own state folder.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fleet_helpers import (
    V1,
    Device,
    fleet_settings,
    latest_state,
    make_keys,
    mqtt_settings,
    new_version,
    signed_demo,
    wait_state,
)
from mqtt_fixtures import Broker, Subscriber

from edge_agent.fleet.messages import FleetError, Release
from edge_agent.fleet.operator import (
    Connection,
    Prepared,
    prepare,
    push,
    rollback_group,
    send_command,
)
from edge_agent.fleet.packing import pack_version
from edge_agent.fleet.settings import FleetSettings
from edge_agent.fleet.topics import chunk_topic, manifest_topic
from edge_agent.fleet.transfer import chunk_digests, cut
from edge_agent.signing import TrustedKey

pytestmark = pytest.mark.mqtt
V2 = "v2-89fb44ed"  # the pushed version: same model, another threshold


class Fleet:
    """A broker, a signing key, the operator's bundle with its new version 2 (signed), the
    devices made so far and a subscriber to every fleet state."""

    def __init__(self, tmp: Path, broker: Broker) -> None:
        self.tmp, self.broker = tmp, broker
        self.priv, self.trusted = make_keys(tmp)
        self.base = signed_demo(tmp / "base", self.priv)
        self.release = signed_demo(tmp / "operator", self.priv)
        new_version(self.release, self.priv)
        self.devices: list[Device] = []
        self.sub = Subscriber(broker, ["edge-asd/+/fleet/state"])

    def device(self, name: str, start: bool = True, trusted: list[TrustedKey] | None = None,
               settings: FleetSettings | None = None) -> Device:
        d = Device(self.tmp / "devices", name, self.broker.port, self.base,
                   self.trusted if trusted is None else trusted, settings)
        self.devices.append(d)
        return d.start() if start else d

    def close(self) -> None:
        self.sub.close()
        for d in self.devices:
            d.close()


@pytest.fixture
def fleet(tmp_path: Path, mqtt_broker: Callable[..., Broker]) -> Iterator[Fleet]:
    f = Fleet(tmp_path, mqtt_broker())
    yield f
    f.close()


def operator(b: Broker) -> Connection:
    return Connection(mqtt_settings(b.port, "operator"), timeout=5.0)


def test_canaries_first_then_the_group_offline_device_catches_up_rollback(
    fleet: Fleet,
) -> None:
    b, sub, make = fleet.broker, fleet.sub, fleet.device
    canary, d2, d3 = make("press-01"), make("press-02"), make("press-03")
    offline = make("press-04", start=False)
    prepared = prepare(fleet.release, "presses")
    rid = prepared.release.release
    assert rid.startswith(V2 + "-") and prepared.release.chunks >= 2  # 256 KiB chunks

    seen_at_canary: dict[str, list[str]] = {}

    def say(line: str) -> None:  # the moment the canary is healthy, nobody else moved yet
        if line.startswith("canaries healthy"):
            seen_at_canary.update({d.name: d.versions() for d in (d2, d3)})

    with operator(b) as conn:
        final = push(conn, prepared, ["press-01"], 15.0, say)
    assert final.targets is None and final.stage == "all"
    assert seen_at_canary == {"press-02": ["1"], "press-03": ["1"]}
    s1 = latest_state(sub, "press-01")
    assert s1 is not None and s1["model_version"] == V2 and s1["signed_by"] is not None
    for d in (d2, d3):
        s = wait_state(sub, d.name, release=rid, status="installed", healthy=True)
        assert s["model_version"] == V2 and s["installed_version"] == 2
        assert d.agent.running_version() == V2 and d.versions() == ["1", "2"]

    # the device that was off during the rollout finds the retained release when it connects
    offline.start()
    wait_state(sub, "press-04", release=rid, status="installed", model_version=V2)

    # idempotent across a restart: the retained release is seen again, nothing is reinstalled
    d2.stop()
    d2.start()
    time.sleep(1.0)
    assert d2.versions() == ["1", "2"] and d2.agent.reloads == 1
    wait_state(sub, "press-02", release=rid, status="installed", healthy=True)

    # the group's rollback: every device goes back to the version it ran before
    with operator(b) as conn:
        undone, out = rollback_group(conn, "presses", None, 15.0)
    assert undone == rid and sorted(out.ok) == ["press-01", "press-02", "press-03",
                                                "press-04"], out
    for d in (canary, d2, d3, offline):
        assert d.agent.running_version() == V1
        assert (d.root / "current").read_text().strip() == "1"
    # a device (re)connecting later sees the rollback notice and does nothing more
    d3.stop()
    d3.start()
    wait_state(sub, "press-03", release=rid, status="rolled_back")
    assert d3.agent.running_version() == V1


def tampered(release_root: Path, group: str, edit: Callable[[Path], None], tmp: Path
             ) -> Prepared:
    """What an attacker with broker access could publish: a version folder edited after
    signing, packed with chunks and a notice that match it exactly (valid chunks)."""
    vdir = tmp / "evil"
    shutil.copytree(release_root / "versions" / "2", vdir)
    edit(vdir)
    archive = pack_version(vdir)
    sha = hashlib.sha256(archive).hexdigest()
    chunks = cut(archive, 256 << 10)
    msha = hashlib.sha256((vdir / "manifest.json").read_bytes()).hexdigest()
    r = Release(f"evil-{sha[:8]}", group, sha, len(archive), 256 << 10, chunk_digests(chunks),
                None, "all", V2, msha, time.time())
    return Prepared(r, chunks)


def flip_model_byte(vdir: Path) -> None:
    p = vdir / "model_0.tflite"
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0xFF
    p.write_bytes(bytes(data))


def test_tampered_and_badly_signed_releases_are_refused_by_every_agent(
    fleet: Fleet,
) -> None:
    b, sub, tmp, make = fleet.broker, fleet.sub, fleet.tmp, fleet.device
    devices = [make(f"press-0{i}") for i in range(1, 4)]
    evil = tampered(fleet.release, "presses", flip_model_byte, tmp)
    with operator(b) as conn:
        push(conn, evil, [], 5.0, lambda _: None)
    for d in devices:
        s = wait_state(sub, d.name, release=evil.release.release, status="refused")
        assert "model_0.tflite: checksum mismatch" in s["error"], s
        assert s["healthy"] is False and s["model_version"] == V1
        assert d.versions() == ["1"]
        assert not (d.state_dir / "fleet-incoming" / evil.release.release).exists()

    # signed, but by a key no device trusts: a canary refuses it, the push is aborted and
    # the rest of the group never sees it
    rogue_priv, _ = make_keys(tmp, "rogue")
    rogue = signed_demo(tmp / "rogue-bundle", rogue_priv)
    new_version(rogue, rogue_priv)
    prepared = prepare(rogue, "presses")
    with operator(b) as conn, pytest.raises(FleetError) as exc:
        push(conn, prepared, ["press-01"], 10.0, lambda _: None)
    assert "canary press-01 refused it" in str(exc.value)
    assert "which the agent does not trust" in str(exc.value)
    assert "left untouched" in str(exc.value)
    def releases(dev: str) -> set[str]:
        return {json.loads(p)["release"] for p in sub.on(f"edge-asd/{dev}/fleet/state")}

    assert prepared.release.release in releases("press-01")
    for d in devices[1:]:  # never saw it (the restored notice: the tampered one, refused again)
        assert prepared.release.release not in releases(d.name)
    for d in devices:
        assert d.versions() == ["1"] and d.agent.running_version() == V1
    with operator(b) as conn:  # the group's notice was restored, the rogue chunks deleted
        conn.subscribe([manifest_topic("edge-asd", "presses"),
                        chunk_topic("edge-asd", "presses", prepared.release.release)])
        got = conn.latest(manifest_topic("edge-asd", "presses"))
        assert got is not None and json.loads(got[0])["release"] == evil.release.release
        assert conn.latest(chunk_topic("edge-asd", "presses", prepared.release.release, 0)
                           ) is None


def test_unsigned_release_refused_without_keys_unless_allowed(fleet: Fleet) -> None:
    b, sub, tmp, make = fleet.broker, fleet.sub, fleet.tmp, fleet.device
    strict = make("press-01", trusted=[])
    lax = make("press-02", trusted=[], settings=fleet_settings(allow_unsigned=True))
    unsigned = tmp / "unsigned"
    shutil.copytree(fleet.release, unsigned)
    for sig in unsigned.glob("versions/*/signature.json"):
        sig.unlink()
    prepared = prepare(unsigned, "presses")
    with operator(b) as conn:
        push(conn, prepared, [], 5.0, lambda _: None)
    s = wait_state(sub, strict.name, release=prepared.release.release, status="refused")
    assert "no trusted_keys" in s["error"] and strict.versions() == ["1"]
    wait_state(sub, lax.name, release=prepared.release.release, status="installed",
               model_version=V2)


def test_half_received_release_times_out_and_oversized_is_refused(
    fleet: Fleet,
) -> None:
    b, sub, make = fleet.broker, fleet.sub, fleet.device
    d = make("press-01", settings=fleet_settings(release_timeout_seconds=1.0))
    small = make("press-02", settings=fleet_settings(max_bundle_mb=0.5))
    prepared = prepare(fleet.release, "presses")
    r = prepared.release
    with operator(b) as conn:  # the notice, but only the first chunk
        conn.publish([(chunk_topic("edge-asd", "presses", r.release, 0), prepared.chunks[0])],
                     retain=True)
        conn.publish([(manifest_topic("edge-asd", "presses"), r.to_json())], retain=True)
    s = wait_state(sub, d.name, release=r.release, status="failed", timeout=8.0)
    assert f"incomplete after 1 s (1 of {r.chunks} chunks)" in s["error"]
    assert d.versions() == ["1"] and not (d.state_dir / "fleet-incoming" / r.release).exists()
    s = wait_state(sub, small.name, release=r.release, status="refused")
    assert "over this device's limit of 0.5 MB" in s["error"]


def test_install_beside_local_versions_keeps_rollback_right(fleet: Fleet) -> None:
    """A device that tuned locally (versions 2 and 3) gets the exported version 2: it lands in
    folder 4 (its signed manifest unchanged), and rolling back goes 4 -> 3, never to the
    device's own, unrelated version 2."""
    b, sub = fleet.broker, fleet.sub
    d = fleet.device("press-01", start=False)
    new_version(d.root, None, 0.1)
    new_version(d.root, None, 0.2)
    wait_for(lambda: d.agent.running_version() == "v3-89fb44ed")
    d.start()
    prepared = prepare(fleet.release, "presses")
    with operator(b) as conn:
        push(conn, prepared, ["press-01"], 10.0, lambda _: None)
    s = wait_state(sub, d.name, status="installed", installed_version=4, model_version=V2)
    assert s["healthy"] is True and d.versions() == ["1", "2", "3", "4"]
    manifest = json.loads((d.root / "versions" / "4" / "manifest.json").read_text())
    assert manifest["version"] == 2  # as signed
    new_version(d.root, None, 0.3)  # a local tune on top of the release: version 5
    assert json.loads((d.root / "versions/5/manifest.json").read_text())["parent_version"] == 4
    wait_for(lambda: d.agent.running_version() == "v5-89fb44ed")
    with operator(b) as conn:
        first = send_command(conn, "press-01", "rollback", {}, 10.0)
        assert (first["result"]["from"], first["result"]["to"]) == (5, 4), first
        assert d.agent.running_version() == V2
        assert wait_state(sub, d.name, status="installed", model_version=V2)["healthy"]
        _, out = rollback_group(conn, "presses", None, 10.0)  # now the release itself
    assert out.ok == ["press-01"]
    assert (d.root / "current").read_text().strip() == "3"
    assert d.agent.running_version() == "v3-89fb44ed"


def wait_for(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.05)
