"""Files the agent keeps to itself are 0600 when it runs by hand, as under the unit's UMask
(edge_agent.private): the real agent, a real broker, umask 022."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from mqtt_fixtures import Broker

from edge_agent.commands.demo import load_demo
from edge_agent.private import create_private, open_private


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_every_state_file_of_a_run_by_hand_is_0600(
    tmp_path: Path, mqtt_broker: Callable[..., Broker]
) -> None:
    """`edge-agent run` under umask 022 (a shell's default) with MQTT on, score history,
    evidence and a JSON-lines log: the outbox (and SQLite's WAL and index files beside it),
    the score history, the decision state, the alarm clip and its sidecar, the log: all 0600.
    Before, every one of them was 0644."""
    demo = load_demo()
    b = mqtt_broker()
    state = tmp_path / "state"
    yml = tmp_path / "agent.yaml"
    yml.write_text(
        f"bundle: {demo.bundle}\nsection: {demo.section}\n"
        f"source: {{kind: files, files: [{', '.join(map(str, demo.paths))}]}}\n"
        f"mqtt: {{host: 127.0.0.1, port: {b.port}, device_id: press7}}\n"
        f"outbox: {{path: {state / 'outbox.sqlite'}}}\nhistory: {{replays: true}}\n"
        f"evidence: {{folder: {state / 'evidence'}}}\n"
        f"log: {{stdout: false, jsonl_file: {tmp_path / 'events.jsonl'}}}\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "edge_agent.cli", "run", "--config", str(yml)],
        capture_output=True,
        text=True,
        timeout=110,
        preexec_fn=lambda: os.umask(0o022),
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert done.returncode == 0, done.stderr
    made = [tmp_path / "events.jsonl", *(p for p in state.rglob("*") if p.is_file())]
    files = {p.relative_to(tmp_path).as_posix(): _mode(p) for p in made}
    kinds = {name.rsplit(".", 1)[-1] for name in files}
    assert {"sqlite", "bin", "json", "flac", "jsonl"} <= kinds, files  # each kind was made
    assert f"state/scores.{demo.section}.bin" in files
    assert any(name.startswith("state/evidence/") for name in files)
    assert files == dict.fromkeys(files, 0o600)


def test_open_private_makes_new_files_0600_and_leaves_existing_modes(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        with open_private(tmp_path / "new.txt", "w") as f:
            f.write("x")
        kept = tmp_path / "kept.jsonl"
        kept.write_text("a\n")
        kept.chmod(0o640)  # chosen by someone: appending does not change it
        with open_private(kept, "a") as f:
            f.write("b\n")
        create_private(tmp_path / "sub" / "db.sqlite")
        create_private(kept)  # exists: untouched
    finally:
        os.umask(old)
    assert _mode(tmp_path / "new.txt") == 0o600
    assert (_mode(kept), kept.read_text()) == (0o640, "a\nb\n")
    assert _mode(tmp_path / "sub" / "db.sqlite") == 0o600


def test_the_outbox_and_the_fleet_state_create_their_own_files_0600(tmp_path: Path) -> None:
    """Every creator sets the mode itself: an outbox opened by anyone (not only the agent), a
    fresh one started after a damaged file was moved aside, and the fleet's install records."""
    from edge_agent.config.sinks import OutboxSettings
    from edge_agent.fleet.state import FleetState
    from edge_agent.sinks.outbox import Outbox

    old = os.umask(0o022)
    try:
        box = Outbox(OutboxSettings(path=str(tmp_path / "a" / "outbox.sqlite")))
        box.put("t/x", b"1", priority=2)
        damaged = tmp_path / "b" / "outbox.sqlite"
        damaged.parent.mkdir()
        damaged.write_bytes(b"not a database" * 100)
        damaged.chmod(0o644)
        Outbox(OutboxSettings(path=str(damaged))).put("t/y", b"2", priority=2)
        FleetState(tmp_path / "fleet", 10).start_command("c1", "status")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "a" / "outbox.sqlite") == 0o600
    assert _mode(damaged) == 0o600  # the fresh file, the damaged one moved aside
    assert [p.name for p in damaged.parent.iterdir() if ".corrupt-" in p.name]
    assert _mode(tmp_path / "fleet" / "fleet-state.json") == 0o600
