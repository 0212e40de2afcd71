"""Bundle rollout over a real mosquitto to several real agents (edge_agent.fleet).

Each device is a real `Agent` (tests/fleet_helpers.py `Device`) on its own copy of the signed
demo bundle, with `fleet.enabled`: it runs its own fleet client, replays the demo's audio in
real time and hot-reloads what the fleet installs with its own bundle poll, so every version
asserted here is the one the agent really scores with.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fleet_helpers import (
    V1,
    Device,
    expect_within,
    latest_state,
    make_keys,
    mqtt_settings,
    new_version,
    signed_demo,
    stop_all,
    wait_state,
)
from mqtt_fixtures import Broker, Subscriber

from edge_agent.bundle.load import load_bundle, save_backends
from edge_agent.bundle.manifest import sha256_file, write_manifest_digest
from edge_agent.errors import ConfigError
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
from edge_agent.fleet.topics import chunk_topic, manifest_topic
from edge_agent.fleet.transfer import chunk_digests, cut

pytestmark = pytest.mark.mqtt


class Fleet:
    """A broker, a signing key, the operator's bundle with its new version 2 (signed), the
    devices made so far and a subscriber to every fleet state."""

    def __init__(self, tmp: Path, broker: Broker) -> None:
        self.tmp, self.broker = tmp, broker
        self.priv, self.pub = make_keys(tmp)
        self.base = signed_demo(tmp / "base", self.priv)
        self.release = signed_demo(tmp / "operator", self.priv)
        new_version(self.release, self.priv)
        self.v2 = load_bundle(self.release).model_version  # the pushed version's id
        self.devices: list[Device] = []
        self.sub = Subscriber(broker, ["edge-asd/+/fleet/state"])

    def device(
        self,
        name: str,
        start: bool = True,
        trusted: list[Path] | None = None,
        fleet: dict[str, Any] | None = None,
    ) -> Device:
        d = Device(
            self.tmp / "devices",
            name,
            self.broker.port,
            self.base,
            [self.pub] if trusted is None else trusted,
            fleet,
        )
        self.devices.append(d)
        return d.start() if start else d

    def close(self) -> None:
        self.sub.close()
        stop_all(self.devices)


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
    assert rid.startswith(fleet.v2 + "-") and prepared.release.chunks >= 2  # 256 KiB chunks

    seen_at_canary: dict[str, list[str]] = {}

    def say(line: str) -> None:  # the moment the canary is healthy, nobody else moved yet
        if line.startswith("canaries healthy"):
            seen_at_canary.update({d.name: d.versions() for d in (d2, d3)})

    with operator(b) as conn:
        final, rest = push(conn, prepared, ["press-01"], 15.0, say)
    assert sorted(rest.ok) == ["press-02", "press-03"] and not rest.failed, rest
    assert final.targets is None and final.stage == "all"
    assert seen_at_canary == {"press-02": ["1"], "press-03": ["1"]}
    s1 = latest_state(sub, "press-01")
    assert s1 is not None and s1["model_version"] == fleet.v2 and s1["signed_by"] is not None
    assert canary.running_version() == fleet.v2 and canary.reloads() == 1  # its own hot reload
    for d in (d2, d3):
        s = wait_state(sub, d.name, release=rid, status="installed", healthy=True)
        assert s["model_version"] == fleet.v2 and s["installed_version"] == 2
        assert d.running_version() == fleet.v2 and d.reloads() == 1 and d.versions() == ["1", "2"]

    # the device that was off during the rollout finds the retained release when it connects
    offline.start()
    assert offline.running_version() == V1
    wait_state(sub, "press-04", release=rid, status="installed", model_version=fleet.v2)
    assert offline.running_version() == fleet.v2 and offline.reloads() == 1

    # idempotent across a restart: the agent starts on version 2, the retained release is
    # seen again and nothing is reinstalled (no new version folder, no reload)
    d2.stop()
    d2.start()
    assert d2.running_version() == fleet.v2
    time.sleep(1.0)
    assert d2.versions() == ["1", "2"] and d2.reloads() == 0
    wait_state(sub, "press-02", release=rid, status="installed", healthy=True)

    # the group's rollback: every device goes back to the version it ran before
    with operator(b) as conn:
        undone, out = rollback_group(conn, "presses", None, 15.0)
    assert undone == rid and sorted(out.ok) == ["press-01", "press-02", "press-03", "press-04"], out
    for d in (canary, d2, d3, offline):
        assert d.running_version() == V1
        assert (d.root / "current").read_text().strip() == "1"
    # a device (re)connecting later sees the rollback notice and does nothing more
    d3.stop()
    d3.start()
    wait_state(sub, "press-03", release=rid, status="rolled_back")
    time.sleep(0.5)
    assert d3.running_version() == V1 and d3.reloads() == 0 and d3.versions() == ["1", "2"]


def tampered(release_root: Path, group: str, edit: Callable[[Path], None], tmp: Path) -> Prepared:
    """What an attacker with broker access could publish: a version folder edited after
    signing, packed with chunks and a notice that match it exactly (valid chunks)."""
    vdir = tmp / "evil"
    shutil.copytree(release_root / "versions" / "2", vdir)
    edit(vdir)
    archive = pack_version(vdir)
    sha = hashlib.sha256(archive).hexdigest()
    chunks = cut(archive, 256 << 10)
    msha = hashlib.sha256((vdir / "manifest.json").read_bytes()).hexdigest()
    r = Release(
        f"evil-{sha[:8]}",
        group,
        sha,
        len(archive),
        256 << 10,
        chunk_digests(chunks),
        None,
        "all",
        load_bundle(release_root).model_version,
        msha,
        time.time(),
    )
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
    with operator(b) as conn, pytest.raises(FleetError) as refused:
        push(conn, evil, [], 5.0, lambda _: None)
    assert f"push of {evil.release.release} refused by every device of group presses" in str(
        refused.value
    ) and "the group's previous notice was restored" in str(refused.value)
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
        assert d.versions() == ["1"] and d.running_version() == V1 and d.reloads() == 0
    with operator(b) as conn:  # the group's notice was restored, the rogue chunks deleted
        conn.subscribe(
            [
                manifest_topic("edge-asd", "presses"),
                chunk_topic("edge-asd", "presses", prepared.release.release),
            ]
        )
        assert conn.latest(manifest_topic("edge-asd", "presses")) is None  # neither is left
        assert conn.latest(chunk_topic("edge-asd", "presses", prepared.release.release, 0)) is None


def test_a_release_carrying_a_signed_origin_but_no_signature_is_refused(fleet: Fleet) -> None:
    """The silenced fleet: a release folder with no signature.json but a carried
    signed_origin.json (as a calibrated version has), its thresholds set to 1e6 and every
    checksum refreshed. Every device refuses it, says why, keeps scoring with its own version,
    and the push (no canary) fails instead of saying "released"."""
    b, sub, tmp, make = fleet.broker, fleet.sub, fleet.tmp, fleet.device
    devices = [make("press-01"), make("press-02")]
    forged = signed_demo(tmp / "forged", fleet.priv)
    vdir = new_version(forged, None)  # an adaptation: origin carried, no signature of its own
    b1 = load_bundle(vdir)
    save_backends(
        vdir / "backend.npz",
        {s: dataclasses.replace(bk, threshold=1e6) for s, bk in b1.backends.items()},
    )
    m = json.loads((vdir / "manifest.json").read_text())
    m["files"]["backend.npz"] = sha256_file(vdir / "backend.npz")
    (vdir / "manifest.json").write_text(json.dumps(m, indent=2, sort_keys=True) + "\n")
    write_manifest_digest(vdir)
    assert (vdir / "signed_origin.json").exists() and not (vdir / "signature.json").exists()
    prepared = prepare(forged, "presses")
    with operator(b) as conn, pytest.raises(FleetError) as refused:
        push(conn, prepared, [], 10.0, noop)
    assert "refused by every device" in str(refused.value)
    for d in devices:
        s = wait_state(sub, d.name, release=prepared.release.release, status="refused")
        assert (
            "release is not signed: no signature.json (it carries signed_origin.json" in s["error"]
        ), s
        assert d.versions() == ["1"] and d.running_version() == V1 and d.reloads() == 0
        assert load_bundle(d.root).backend("fan_section_00").threshold < 100


def test_unsigned_release_refused_unless_allowed(fleet: Fleet) -> None:
    """An unsigned release: an agent with trusted keys refuses it; an agent without keys may
    only join a fleet with fleet.allow_unsigned (its config is refused otherwise), and then
    installs it."""
    b, sub, tmp, make = fleet.broker, fleet.sub, fleet.tmp, fleet.device
    strict = make("press-01")
    keyless = Device(tmp / "devices", "press-03", b.port, fleet.base, [])
    with pytest.raises(ConfigError) as refused:
        keyless.config()
    assert str(refused.value).startswith("fleet.enabled: a fleet installs only signed bundles")
    lax = make("press-02", trusted=[], fleet={"allow_unsigned": True})
    unsigned = tmp / "unsigned"
    shutil.copytree(fleet.release, unsigned)
    for sig in unsigned.glob("versions/*/signature.json"):
        sig.unlink()
    prepared = prepare(unsigned, "presses")
    with operator(b) as conn:
        push(conn, prepared, [], 5.0, lambda _: None)
    s = wait_state(sub, strict.name, release=prepared.release.release, status="refused")
    assert "release is not signed: no signature.json" in s["error"], s
    assert "made on the device" not in s["error"] and "adapted" not in s["error"], s
    assert strict.versions() == ["1"] and strict.running_version() == V1
    wait_state(
        sub, lax.name, release=prepared.release.release, status="installed", model_version=fleet.v2
    )
    assert lax.running_version() == fleet.v2


def test_half_received_release_times_out_and_oversized_is_refused(
    fleet: Fleet,
) -> None:
    b, sub, make = fleet.broker, fleet.sub, fleet.device
    d = make("press-01", fleet={"release_timeout_seconds": 1.0})
    small = make("press-02", fleet={"max_bundle_mb": 0.5})
    prepared = prepare(fleet.release, "presses")
    r = prepared.release
    with operator(b) as conn:  # the notice, but only the first chunk
        conn.publish(
            [(chunk_topic("edge-asd", "presses", r.release, 0), prepared.chunks[0])], retain=True
        )
        conn.publish([(manifest_topic("edge-asd", "presses"), r.to_json())], retain=True)
    s = wait_state(sub, d.name, release=r.release, status="failed", timeout=8.0)
    assert f"incomplete after 1 s (1 of {r.chunks} chunks)" in s["error"]
    assert d.versions() == ["1"] and not (d.state_dir / "fleet-incoming" / r.release).exists()
    s = wait_state(sub, small.name, release=r.release, status="refused")
    assert "over this device's limit of 0.5 MB" in s["error"]
    for dev in (d, small):
        assert dev.running_version() == V1


def test_install_beside_local_versions_keeps_rollback_right(fleet: Fleet) -> None:
    """A device that tuned locally (versions 2 and 3) gets the exported version 2: it lands in
    folder 4 (its signed manifest unchanged), and rolling back goes 4 -> 3, never to the
    device's own, unrelated version 2."""
    b, sub = fleet.broker, fleet.sub
    d = fleet.device("press-01", start=False)
    new_version(d.root, None, 0.1, sealed_in=d.state_dir)
    new_version(d.root, None, 0.2, sealed_in=d.state_dir)
    d.start()
    assert d.running_version() == version_id(d, 3)
    prepared = prepare(fleet.release, "presses")
    with operator(b) as conn:
        push(conn, prepared, ["press-01"], 10.0, lambda _: None)
    s = wait_state(sub, d.name, status="installed", installed_version=4, model_version=fleet.v2)
    assert s["healthy"] is True and d.versions() == ["1", "2", "3", "4"]
    assert d.running_version() == fleet.v2
    manifest = json.loads((d.root / "versions" / "4" / "manifest.json").read_text())
    assert manifest["version"] == 2  # as signed
    # a local tune on top of the release: version 5
    new_version(d.root, None, 0.3, sealed_in=d.state_dir)
    assert json.loads((d.root / "versions/5/manifest.json").read_text())["parent_version"] == 4
    expect_within(lambda: d.running_version() == version_id(d, 5), 5.0, "the agent to reload v5")
    with operator(b) as conn:
        first = send_command(conn, "press-01", "rollback", {}, 10.0)
        assert (first["result"]["from"], first["result"]["to"]) == (5, 4), first
        assert first["result"]["healthy"] is True and d.running_version() == fleet.v2
        assert wait_state(sub, d.name, status="installed", model_version=fleet.v2)["healthy"]
        _, out = rollback_group(conn, "presses", None, 10.0)  # now the release itself
    assert out.ok == ["press-01"]
    assert (d.root / "current").read_text().strip() == "3"
    assert d.running_version() == version_id(d, 3)


def version_id(d: Device, version: int) -> str:
    """The id (`model_version`) of version folder `version` of device `d`'s bundle."""
    return load_bundle(d.root, version=version).model_version


def noop(_: str) -> None:
    pass


def start_receiving(conn: Connection, sub: Subscriber, device: str, prepared: Prepared) -> str:
    """Publish chunk 0 and the notice of `prepared` (group presses), wait until `device` is
    receiving it; the chunk topic without its index."""
    r = prepared.release
    base = chunk_topic("edge-asd", "presses", r.release)[:-1]
    conn.publish([(base + "0", prepared.chunks[0])], retain=True)
    conn.publish([(manifest_topic("edge-asd", "presses"), r.to_json())], retain=True)
    wait_state(sub, device, release=r.release, status="receiving")
    return base


def test_a_bad_chunk_topic_or_a_failed_write_never_stops_the_fleet_client(
    fleet: Fleet,
) -> None:
    """Chunk levels `int` refuses (`²` passes str.isdigit, 5000 digits are too many) and a
    chunk that cannot be written (its folder deleted) used to raise on paho's network thread,
    which then died for good: no release, command or reconnect after it."""
    b, sub = fleet.broker, fleet.sub
    d = fleet.device("press-01")
    prepared = prepare(fleet.release, "presses")
    r = prepared.release
    with operator(b) as conn:
        base = start_receiving(conn, sub, d.name, prepared)
        conn.publish([(base + "²", b"x"), (base + "9" * 5000, b"x")], retain=False)
        conn.publish([(base + str(i), c) for i, c in enumerate(prepared.chunks)], retain=True)
    wait_state(sub, d.name, release=r.release, status="installed", model_version=fleet.v2)
    assert d.running_version() == fleet.v2

    # a chunk that cannot be written: the release fails (this device's fault, not remembered)
    new_version(fleet.release, fleet.priv, 1.0)
    third = prepare(fleet.release, "presses")
    r3 = third.release
    with operator(b) as conn:
        base3 = start_receiving(conn, sub, d.name, third)
        incoming = d.state_dir / "fleet-incoming" / r3.release
        end = time.monotonic() + 10  # the retained chunk 0 is written first: no race with it
        while not (incoming / "0").exists() and time.monotonic() < end:
            time.sleep(0.02)
        assert (incoming / "0").exists()
        shutil.rmtree(incoming)
        conn.publish([(base3 + str(i), c) for i, c in enumerate(third.chunks)], retain=True)
        s = wait_state(sub, d.name, release=r3.release, status="failed")
        assert "could not be written" in s["error"] and s["error"].endswith("nothing installed")
        assert send_command(conn, "press-01", "status", {}, 10.0)["ok"]  # still answering
        push(conn, third, ["press-01"], 10.0, noop)  # and the release installs when pushed again
    assert d.running_version() == version_id(d, 3) and d.fleet.connected.is_set()


def test_an_install_that_fails_on_the_device_is_reported_and_tried_again(
    fleet: Fleet,
) -> None:
    """A file where the new version's folder goes: the install fails with an OSError, which
    used to leave the device `installing` for ever and ignore the release from then on."""
    b, sub = fleet.broker, fleet.sub
    d = fleet.device("press-01", start=False)
    (d.root / "versions" / "2").write_text("in the way\n")
    d.start()
    prepared = prepare(fleet.release, "presses")
    rid = prepared.release.release
    with operator(b) as conn, pytest.raises(FleetError, match="refused by every device"):
        push(conn, prepared, [], 5.0, noop)
    s = wait_state(sub, d.name, release=rid, status="failed")
    assert s["error"].startswith(f"release {rid}: NotADirectoryError: ") and "\n" not in s["error"]
    assert s["error"].endswith("; nothing installed") and s["healthy"] is False
    assert (d.root / "current").read_text().strip() == "1" and d.running_version() == V1
    assert not (d.state_dir / "fleet-incoming" / rid).exists()
    assert not list((d.root / "versions").glob(".tmp-*"))
    (d.root / "versions" / "2").unlink()
    with operator(b) as conn:  # the same release again: installed now
        push(conn, prepared, ["press-01"], 10.0, noop)
    assert d.running_version() == fleet.v2 and d.versions() == ["1", "2"]


def test_a_rolled_back_release_pushed_again_is_installed_again(fleet: Fleet) -> None:
    """A group rollback waits only for the devices that installed the release (not press-02,
    which refused it); pushing the release again installs it again (a new notice: the
    operator's decision), while the retained notice seen again at a restart after a rollback
    by command does not."""
    b, sub = fleet.broker, fleet.sub
    d = fleet.device("press-01")
    fleet.device("press-02", fleet={"max_bundle_mb": 0.5})
    prepared = prepare(fleet.release, "presses")
    rid = prepared.release.release
    with operator(b) as conn:
        push(conn, prepared, [], 5.0, noop)
        wait_state(sub, "press-01", release=rid, status="installed", model_version=fleet.v2)
        wait_state(sub, "press-02", release=rid, status="refused")
        started = time.monotonic()
        _, out = rollback_group(conn, "presses", None, 15.0)
        assert out.ok == ["press-01"] and not out.pending and not out.failed, out
        assert time.monotonic() - started < 10.0  # press-02 was not waited for
        assert d.running_version() == V1
        push(conn, prepared, ["press-01"], 10.0, noop)
        assert d.running_version() == fleet.v2 and d.versions() == ["1", "2", "3"]
        rb = send_command(conn, "press-01", "rollback", {}, 10.0)
        assert rb["ok"] and rb["result"]["release"] == rid, rb
    d.stop()
    d.start()
    time.sleep(1.0)  # the retained notice (the push above) has been seen again
    assert d.running_version() == V1 and d.reloads() == 0 and d.versions() == ["1", "2", "3"]
    s = latest_state(sub, "press-01")
    assert s is not None and s["status"] == "rolled_back" and s["release"] == rid


def test_trusted_keys_are_read_again_for_each_release(fleet: Fleet) -> None:
    """The agent re-reads its key files (`Agent.trusted`) and the fleet client asks it at each
    release: a release signed by a key added to a key file is installed once it is there."""
    b, tmp = fleet.broker, fleet.tmp
    extra = tmp / "extra.pub"
    shutil.copyfile(fleet.pub, extra)
    d = fleet.device("press-01", trusted=[fleet.pub, extra])
    new_priv, new_pub = make_keys(tmp, "new")
    signed = signed_demo(tmp / "new-bundle", new_priv)
    new_version(signed, new_priv)
    prepared = prepare(signed, "presses")
    with operator(b) as conn:
        with pytest.raises(FleetError, match="does not trust"):
            push(conn, prepared, ["press-01"], 10.0, noop)
        shutil.copyfile(new_pub, extra)  # the site trusts the new key from now on
        push(conn, prepared, ["press-01"], 10.0, noop)
    assert d.running_version() == prepared.release.model_version
