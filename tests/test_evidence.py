"""Evidence: the real agent on the shipped demo keeps the voting windows' audio of an alarm,
the alarm payload references it (file, sha256, span), retention deletes the oldest, a full
disk skips with a health event while scoring goes on, `evidence list/export`."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cli_helpers import run_cli
from collect_sink import Collect

from edge_agent.agent import Agent
from edge_agent.audio.files import load_clip
from edge_agent.bundle.load import load_bundle
from edge_agent.commands.demo import load_demo
from edge_agent.config.load import load_config, read_config
from edge_agent.config.runtime import EvidenceSettings
from edge_agent.errors import ConfigError
from edge_agent.runtime.evidence import MB, EvidenceStore, HeardWindow, decode, list_clips

RATE = 16000


def _run_demo(tmp: Path, **evidence: Any) -> list[dict[str, Any]]:
    """The real agent (files source, shipped bundle, demo clips) with `evidence.*` settings."""
    demo = load_demo()
    overrides = {
        "bundle": str(demo.bundle),
        "section": demo.section,
        "source.kind": "files",
        "source.files": [str(p) for p in demo.paths],
        "source.realtime": False,
        "source.loop": False,
        "log.stdout": False,
        "outbox.path": str(tmp / "outbox.sqlite"),
        **{f"evidence.{k}": v for k, v in evidence.items()},
    }
    c = Collect()
    assert Agent(load_config(None, overrides), sinks=[c]).run(install_signals=False) == 0
    return c.events


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[dict[str, Any]], Path]:
    tmp = tmp_path_factory.mktemp("evidence")
    folder = tmp / "evidence"
    return _run_demo(tmp, folder=str(folder)), folder


def test_alarm_payload_references_the_voting_windows_audio(
    demo_run: tuple[list[dict[str, Any]], Path],
) -> None:
    events, folder = demo_run
    demo = load_demo()
    scores = [e for e in events if e["kind"] == "score"]
    raised = [e for e in events if e["kind"] == "alarm" and e["decision"] == "alarm"]
    assert len(raised) == 1 and len(scores) == len(demo.clips)
    ev = raised[0]["evidence"]
    path = folder / ev["file"]
    data = path.read_bytes()
    assert path.suffix == ".flac" and ev["bytes"] == len(data)
    assert hashlib.sha256(data).hexdigest() == ev["sha256"]
    # the voting windows: the anomalous ones among the last n (5) scored up to the raise
    upto = [e for e in scores if e["window"] <= raised[0]["window"]][-5:]
    voting = [e for e in upto if e["anomalous"]]
    assert ev["windows"] == [e["window"] for e in voting]
    assert len(voting) == raised[0]["votes"] >= 3
    assert ev["t_start"] == pytest.approx(voting[0]["epoch"], abs=2e-3)
    assert ev["t_end"] == pytest.approx(voting[-1]["epoch"] + 10.0, abs=2e-3)
    # the file is those windows' audio, back to back, 16-bit lossless
    audio, rate = decode(path)
    assert rate == RATE and audio.size == len(voting) * 10 * RATE
    bspec = load_bundle(demo.bundle).spec
    want = np.concatenate([load_clip(demo.paths[e["window"]], bspec) for e in voting])
    assert np.max(np.abs(audio - want)) <= 1.0 / 32768.0 + 1e-6
    # the sidecar says where each window starts in the file, and with what score
    (clip,) = list_clips(folder)
    assert [p["window"] for p in clip.meta["parts"]] == ev["windows"]
    assert [p["score"] for p in clip.meta["parts"]] == [e["score"] for e in voting]
    assert [p["offset_s"] for p in clip.meta["parts"]] == [10.0 * i for i in range(len(voting))]


def test_full_disk_skips_with_a_health_event_and_scoring_goes_on(tmp_path: Path) -> None:
    demo = load_demo()
    free = shutil.disk_usage(tmp_path).free / MB
    events = _run_demo(tmp_path, folder=str(tmp_path / "ev"), min_free_megabytes=free + 1e6)
    scores = [e for e in events if e["kind"] == "score"]
    raised = [e for e in events if e["kind"] == "alarm" and e["decision"] == "alarm"]
    skipped = [e for e in events if e.get("event") == "evidence_skipped"]
    assert len(scores) == len(demo.clips)  # every window scored
    assert len(raised) == 1 and "evidence" not in raised[0]  # the alarm still goes out
    assert len(skipped) == 1 and skipped[0]["faults"] == ["evidence_skipped"]
    assert "min_free_megabytes" in skipped[0]["error"]
    assert list((tmp_path / "ev").iterdir()) == []
    assert events[-1]["event"] == "stopped"


def _heard(n: int, seed: int) -> list[HeardWindow]:
    rng = np.random.default_rng(seed)
    return [
        HeardWindow(rng.uniform(-0.5, 0.5, RATE).astype(np.float32), 1000.0 + i, i, 1.0, 0.5, True)
        for i in range(n)
    ]


def _keep_three(folder: Path, **settings: Any) -> list[str]:
    store = EvidenceStore(
        EvidenceSettings(folder=str(folder), min_free_megabytes=0, **settings), RATE, "dev"
    )
    names = []
    for k in range(3):
        ref = store.keep("fan_section_00", _heard(1, k), 1_800_000_000.0 + 60 * k, "v1")
        assert ref is not None
        names.append(ref["file"])
    store.close()  # the writer thread has written (and applied retention to) all three
    return names


def test_retention_by_count_deletes_the_oldest(tmp_path: Path) -> None:
    names = _keep_three(tmp_path, max_clips=2)
    assert [c.path.name for c in list_clips(tmp_path)] == names[1:]
    assert not (tmp_path / names[0]).exists()
    assert not (tmp_path / names[0]).with_suffix(".json").exists()


def test_retention_by_megabytes_deletes_the_oldest(tmp_path: Path) -> None:
    # one 1 s WAV clip is 32044 bytes + its sidecar (< 1 kB): 0.07 MB holds two of them
    names = _keep_three(tmp_path, max_megabytes=0.07, compression="wav")
    assert [c.path.name for c in list_clips(tmp_path)] == names[1:]
    assert all(c.path.stat().st_size == 32044 for c in list_clips(tmp_path))


def test_evidence_settings_are_validated(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^evidence\.max_clips: expected an integer >= 1"):
        read_config(None, {"evidence.max_clips": 0})
    with pytest.raises(ConfigError, match=r"^evidence\.compression: expected one of flac, wav"):
        read_config(None, {"evidence.compression": "mp3"})
    cfg_file = tmp_path / "agent.yaml"
    cfg_file.write_text("evidence: {folder: clips}\n")
    assert read_config(cfg_file).evidence.folder == str(tmp_path / "clips")


def test_list_and_export(
    demo_run: tuple[list[dict[str, Any]], Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events, folder = demo_run
    ev = next(e for e in events if e["kind"] == "alarm")["evidence"]
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(f"evidence: {{folder: {folder}}}\n")
    code, out, err = run_cli(capsys, "evidence", "list", "--config", str(cfg), "--json")
    assert code == 0, err
    (row,) = json.loads(out)
    assert row["file"] == ev["file"] and row["sha256"] == ev["sha256"]
    assert row["bytes"] == ev["bytes"] and row["section"] == load_demo().section
    assert (row["t_start"], row["t_end"]) == (ev["t_start"], ev["t_end"])
    code, out, err = run_cli(capsys, "evidence", "list", "--config", str(cfg))
    assert code == 0, err
    assert ev["file"] in out and ev["sha256"][:16] in out and load_demo().section in out

    dest = tmp_path / "export"
    code, out, err = run_cli(capsys, "evidence", "export", str(dest), "--config", str(cfg))
    assert code == 0, err
    index = json.loads((dest / "index.json").read_text())
    assert [c["file"] for c in index["clips"]] == [ev["file"]]
    assert hashlib.sha256((dest / ev["file"]).read_bytes()).hexdigest() == ev["sha256"]

    # a corrupt clip is refused by name, one line, exit 2
    bad = tmp_path / "bad"
    shutil.copytree(folder, bad)
    with Path(bad / ev["file"]).open("r+b") as f:
        f.seek(100)
        f.write(b"\x00\x01\x02\x03")
    code, out, err = run_cli(
        capsys, "evidence", "export", str(tmp_path / "e2"), "--folder", str(bad)
    )
    assert code == 2 and err.startswith("error: 1 clip(s) not exported: ")
    assert ev["file"] in err and "sha256" in err and len(err.strip().splitlines()) == 1
    assert json.loads((tmp_path / "e2" / "index.json").read_text())["clips"] == []

    code, _, err = run_cli(capsys, "evidence", "list")
    assert code == 2 and "evidence.folder: not set" in err


def test_export_to_a_full_disk_leaves_only_whole_clips(
    demo_run: tuple[list[dict[str, Any]], Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`evidence export` onto a real small file system (a size-limited tmpfs) with room for
    one of two clips: the first arrives whole with its sidecar, the second is named in one
    error line, and nothing half-written is left under a clip's name (nor a temp file).
    Before, the copy went straight to the final name: a truncated clip that looked exported."""
    from disk_fixtures import mounted_tmpfs

    events, folder = demo_run
    ev = next(e for e in events if e["kind"] == "alarm")["evidence"]
    two = tmp_path / "two"
    shutil.copytree(folder, two)
    clip = two / ev["file"]
    later = clip.with_name("2099" + clip.name[4:])  # sorts after the first: exported second
    shutil.copyfile(clip, later)
    meta = json.loads(clip.with_suffix(".json").read_text())
    later.with_suffix(".json").write_text(json.dumps({**meta, "file": later.name}))
    size = clip.stat().st_size
    room = f"{(size + size // 2) // 1024 + 8}k"  # one clip and its sidecar, not two
    with mounted_tmpfs(tmp_path / "stick", size=room) as disk:
        stick = disk.path
        code, out, err = run_cli(capsys, "evidence", "export", str(stick), "--folder", str(two))
        left = {p.name: p.read_bytes() for p in stick.iterdir()}
    assert code == 2 and out == ""
    assert err == (
        f"error: {stick / later.name}: cannot copy: No space left on device; the 1 "
        "clip(s) before it were exported whole, without an index\n"
    )
    assert sorted(left) == sorted([clip.name, clip.with_suffix(".json").name])
    assert hashlib.sha256(left[clip.name]).hexdigest() == ev["sha256"]
