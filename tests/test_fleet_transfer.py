"""The fleet's pieces without a broker: packing, chunks in and out, notices, the state file."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import re
import tarfile
import time
from pathlib import Path

import pytest
from fleet_helpers import DEMO

from edge_agent.config.fleet import FleetSettings
from edge_agent.errors import BundleError, ConfigError
from edge_agent.fleet.messages import FleetError, Release, parse_command, parse_notice
from edge_agent.fleet.packing import pack_version, unpack_version
from edge_agent.fleet.state import FleetState, InstallRecord
from edge_agent.fleet.transfer import Assembly, chunk_digests, cut

VDIR = DEMO / "bundle" / "versions" / "1"


def release_of(archive: bytes, chunk_size: int = 100_000) -> tuple[Release, list[bytes]]:
    chunks = cut(archive, chunk_size)
    r = Release(
        "r1",
        "g",
        hashlib.sha256(archive).hexdigest(),
        len(archive),
        chunk_size,
        chunk_digests(chunks),
        None,
        "all",
        "v1-x",
        "0" * 64,
        time.time(),
    )
    return r, chunks


def test_pack_is_deterministic_and_unpacks_to_the_same_files(tmp_path: Path) -> None:
    a, b = pack_version(VDIR), pack_version(VDIR)
    assert a == b
    names = unpack_version(_file(tmp_path, a), tmp_path / "out", len(a))
    assert sorted(names) == sorted(p.name for p in VDIR.iterdir())
    for n in names:
        assert (tmp_path / "out" / n).read_bytes() == (VDIR / n).read_bytes()


def _file(d: Path, data: bytes, name: str = "a.tar") -> Path:
    (d / name).write_bytes(data)
    return d / name


@pytest.mark.parametrize("kind", ["dotdot", "folder", "symlink", "no-manifest", "too-big"])
def test_unpack_refuses_anything_but_plain_files(tmp_path: Path, kind: str) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("manifest.json" if kind != "no-manifest" else "x.json")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"{}"))
        if kind == "dotdot":
            evil = tarfile.TarInfo("../evil")
            evil.size = 1
            tar.addfile(evil, io.BytesIO(b"x"))
        elif kind == "folder":
            sub = tarfile.TarInfo("sub")
            sub.type = tarfile.DIRTYPE
            tar.addfile(sub)
        elif kind == "symlink":
            link = tarfile.TarInfo("model_0.tflite")
            link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
            tar.addfile(link)
    limit = 1 if kind == "too-big" else 10_000
    with pytest.raises(BundleError, match="release archive: "):
        unpack_version(_file(tmp_path, buf.getvalue()), tmp_path / "out", limit)
    assert not (tmp_path / "evil").exists()


def test_assembly_checks_each_chunk_and_the_whole(tmp_path: Path) -> None:
    archive = pack_version(VDIR)
    r, chunks = release_of(archive)
    a = Assembly(r, tmp_path / "in", timeout=5.0)
    done = [a.add(i, c) for i, c in reversed(list(enumerate(chunks)))]  # any order
    assert done[-1] and not any(done[:-1]) and a.complete
    assert not a.add(0, chunks[0])  # a repeated chunk is ignored
    assert a.archive().read_bytes() == archive

    bad = Assembly(r, tmp_path / "bad", timeout=5.0)
    altered = bytes([chunks[1][0] ^ 1]) + chunks[1][1:]
    assert not bad.add(1, altered)
    assert bad.error == "release r1: chunk 1: sha256 mismatch (altered?)"
    short = Assembly(r, tmp_path / "short", timeout=5.0)
    short.add(0, chunks[0][:-1])
    assert short.error is not None and "has 99999 bytes, the notice says 100000" in short.error

    lying = dataclasses.replace(r, sha256="0" * 64)  # chunks fine, the whole is not
    whole = Assembly(lying, tmp_path / "whole", timeout=5.0)
    for i, c in enumerate(chunks):
        whole.add(i, c)
    with pytest.raises(FleetError, match="joined archive's sha256 does not match"):
        whole.archive()
    late = Assembly(r, tmp_path / "late", timeout=0.0)
    assert late.expired() and late.progress() == f"0 of {r.chunks} chunks"


def test_a_discarded_assembly_ignores_late_chunks_and_a_failed_write_fails_it(
    tmp_path: Path,
) -> None:
    """A chunk arriving as the worker gives the release up is never written into a deleted
    folder (no exception on the network thread); a write that fails (its folder gone, a full
    disk) fails the release as this device's fault, not the release's."""
    import shutil

    r, chunks = release_of(pack_version(VDIR))
    a = Assembly(r, tmp_path / "gone", timeout=5.0)
    a.add(0, chunks[0])
    a.discard()
    assert not a.add(1, chunks[1]) and not (tmp_path / "gone").exists()
    assert a.error is None

    b = Assembly(r, tmp_path / "lost", timeout=5.0)
    shutil.rmtree(tmp_path / "lost")  # deleted behind its back
    assert not b.add(0, chunks[0])
    assert b.local_error and b.error is not None
    assert b.error.startswith("release r1: chunk 0 could not be written to ")
    assert not b.fail("another reason")  # the first error stands


def test_notices_and_commands_are_checked_field_by_field() -> None:
    r, _ = release_of(pack_version(VDIR))
    assert parse_notice(r.to_json().encode()) == r
    d = json.loads(r.to_json())
    for key, value, message in [
        ("chunks", 3, "chunks: expected"),
        ("sha256", "abc", "sha256: expected a sha256 hex digest"),
        ("release", "a/b", "release: expected a release id"),
        ("targets", "some", 'targets: expected "all" or a list of device ids'),
        ("chunk_size", 10 << 20, "chunk_size: expected an integer in [1, 4194304]"),
    ]:
        with pytest.raises(FleetError, match=re.escape(message)):
            parse_notice(json.dumps({**d, key: value}).encode())
    with pytest.raises(FleetError, match="missing field 'issued_at'"):
        parse_notice(json.dumps({k: v for k, v in d.items() if k != "issued_at"}).encode())
    with pytest.raises(FleetError, match="not valid JSON"):
        parse_notice(b'{"issued_at": NaN}')
    with pytest.raises(FleetError, match="args: expected an object"):
        parse_command(b'{"id": "a", "name": "status", "args": [], "issued_at": 1}')


def test_state_file_persists_bounds_and_survives_damage(tmp_path: Path) -> None:
    s = FleetState(tmp_path, remember=10)
    rec = InstallRecord("r1", "a" * 64, 2, 1, "v2-x", time.time(), "k1")
    s.add_install(rec)
    for i in range(15):
        s.start_command(f"c{i}", "status")
        s.finish_command(f"c{i}", {"id": f"c{i}", "ok": True})
    again = FleetState(tmp_path, remember=10)
    assert again.installed("a" * 64) == rec and again.by_version(2) == rec
    assert sorted(again.commands) == sorted(f"c{i}" for i in range(5, 15))
    again.mark_rolled_back(rec)
    assert FleetState(tmp_path).by_version(2) is None
    (tmp_path / "fleet-state.json").write_text("{ damaged")
    fresh = FleetState(tmp_path)
    assert fresh.installs == [] and (tmp_path / "fleet-state.bad").is_file()


def test_fleet_settings_are_validated() -> None:
    with pytest.raises(
        ConfigError,
        match=r"fleet\.group: expected a group name, one MQTT "
        r"topic level: letters, digits",
    ):
        FleetSettings(group="a/b")
    with pytest.raises(ConfigError, match=r"fleet\.max_bundle_mb: expected a number in \(0, "):
        FleetSettings(max_bundle_mb=0.0)


def test_a_recording_is_at_most_600_seconds() -> None:
    """A recording is held in memory (float32, joined once): an hour would be ~460 MB."""
    assert FleetSettings(max_record_seconds=600.0).max_record_seconds == 600.0
    with pytest.raises(
        ConfigError,
        match=r"fleet\.max_record_seconds: expected a number in "
        r"\(0, 600\]",
    ):
        FleetSettings(max_record_seconds=601.0)


@pytest.mark.parametrize("device", ["", "a/b", "a+", "#", "fleet", "a\0b"])
def test_check_device_id_names_the_config_field(device: str) -> None:
    """The config validator's check (edge_agent.fleet.check_device_id): one line naming
    mqtt.device_id."""
    from edge_agent.fleet import check_device_id

    with pytest.raises(ConfigError) as exc:
        check_device_id(device)
    assert str(exc.value).startswith(f"mqtt.device_id: {device!r} cannot join a fleet")
    check_device_id("press-01")
