"""`edge-agent calibrate` on a real exported bundle (bundle_dir, copied: others use it too).

"New condition" clips: the synthetic set's 4 normal target-domain TEST clips of fan_section_00
(the bundle's target references are its 4 target training clips; recalibrating with those
would reproduce the same arrays).
"""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cli_helpers import run_cli as cli

from edge_agent.audio.files import write_wav
from edge_agent.bundle.layout import current_version, list_versions
from edge_agent.bundle.load import load_bundle
from edge_agent.bundle.manifest import BACKEND

SEC = "fan_section_00"


def digest(folder: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.iterdir())
        if p.is_file()
    }


def arrays(vdir: Path) -> dict[str, bytes]:
    with np.load(vdir / BACKEND) as z:
        return {k: z[k].tobytes() for k in z.files}


@pytest.fixture(scope="module")
def target_clips(synth_root: Path) -> list[Path]:
    clips = sorted((synth_root / "fan" / "test").glob("section_00_target_test_normal_*.wav"))
    assert len(clips) == 4
    return clips


def test_calibrate_from_files_changes_only_the_section_and_rollback_restores(
    bundle_copy: Path, target_clips: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    v0 = current_version(bundle_copy)
    before = load_bundle(bundle_copy)
    v0_files = digest(before.path)
    code, out, err = cli(
        capsys,
        "calibrate",
        "--bundle",
        str(bundle_copy),
        "--section",
        SEC,
        "--files",
        *map(str, target_clips),
    )
    assert code == 0, err
    assert f"calibrated {SEC} with 4 clips (replace)" in out
    assert "clip 4/4 ok" in err and "embedding clip 4/4" in err
    after = load_bundle(bundle_copy, verify=True)  # checksums of the new version
    assert after.version == v0 + 1 == current_version(bundle_copy)
    assert after.model_path.read_bytes() == before.model_path.read_bytes()
    old_a, new_a = arrays(before.path), arrays(after.path)
    assert old_a.keys() == new_a.keys()
    changed = {k for k in old_a if old_a[k] != new_a[k]}
    assert changed and all(k.startswith(SEC + "::") for k in changed)
    ob, nb = before.backend(SEC), after.backend(SEC)
    for oc, nc in zip(ob.components, nb.components, strict=True):
        assert nc.n_source == oc.n_source and nc.references.shape[0] == oc.n_source + 4
        assert nc.references[: nc.n_source].tobytes() == oc.references[: oc.n_source].tobytes()
    rec = after.manifest["calibration"]
    assert rec["section"] == SEC and rec["mode"] == "replace" and rec["n_clips"] == 4
    assert rec["old_threshold"] == pytest.approx(ob.threshold)
    assert rec["new_threshold"] == pytest.approx(nb.threshold)
    # rule max: the new condition's clips, held out, are at most 10 % above the threshold
    assert (
        nb.threshold
        >= rec["held_out_threshold"]
        == pytest.approx(np.percentile(rec["held_out_scores"], 90), abs=1e-5)
    )
    assert rec["files"] == [str(p.resolve()) for p in target_clips] and rec["time"].endswith("Z")
    assert after.manifest["parent_version"] == v0
    profile = after.profile(SEC)  # the clips are the section's normal audio now
    assert profile is not None and profile.origin == "calibration" and profile.n_clips == 4
    assert digest(before.path) == v0_files  # the old version is never touched

    code, out, _ = cli(capsys, "calibrate", "--bundle", str(bundle_copy), "--rollback")
    assert code == 0 and f"current version {v0 + 1} -> {v0}" in out
    restored = load_bundle(bundle_copy)
    assert restored.version == v0 and digest(restored.path) == v0_files
    assert list_versions(bundle_copy) == [v0, v0 + 1]  # kept: roll forward with set_current
    code, _, err = cli(capsys, "calibrate", "--bundle", str(bundle_copy), "--rollback")
    assert code == 2 and "nothing to roll back to" in err.strip().splitlines()[-1]


def test_append_mode_and_rollback_follows_the_parent(
    bundle_copy: Path, target_clips: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    v0 = current_version(bundle_copy)
    base = {"--bundle": str(bundle_copy), "--section": SEC}
    args = [x for kv in base.items() for x in kv]
    first = map(str, target_clips[:2])
    assert cli(capsys, "calibrate", *args, "--quiet", "--files", *first)[0] == 0
    assert (
        cli(
            capsys,
            "calibrate",
            *args,
            "--quiet",
            "--mode",
            "append",
            "--files",
            *map(str, target_clips[2:]),
        )[0]
        == 0
    )
    b = load_bundle(bundle_copy)
    assert b.version == v0 + 2
    c0 = b.backend(SEC).components[0]
    assert c0.references.shape[0] == c0.n_source + 4  # 2 replaced in, 2 appended
    assert [a["kind"] for a in b.manifest["adaptations"]] == ["calibration", "calibration"]
    cli(capsys, "calibrate", "--bundle", str(bundle_copy), "--rollback")
    assert current_version(bundle_copy) == v0 + 1
    # a calibration made on top of a rolled-back version rolls back to ITS parent
    cli(capsys, "calibrate", "--bundle", str(bundle_copy), "--rollback")
    assert cli(capsys, "calibrate", *args, "--quiet", "--files", str(target_clips[0]))[0] == 0
    assert current_version(bundle_copy) == v0 + 3
    cli(capsys, "calibrate", "--bundle", str(bundle_copy), "--rollback")
    assert current_version(bundle_copy) == v0


def test_refused_and_bad_inputs_are_one_line_errors(
    bundle_copy: Path, target_clips: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    silent = tmp_path / "silent.wav"
    write_wav(silent, np.zeros(160_000, np.float32), 16000)
    v0 = current_version(bundle_copy)
    files = [*map(str, target_clips[:2]), str(silent)]
    code, _, err = cli(
        capsys, "calibrate", "--bundle", str(bundle_copy), "--section", SEC, "--files", *files
    )
    last = err.strip().splitlines()[-1]
    assert code == 2 and last.startswith(f"error: {silent}: refused: silent")
    assert current_version(bundle_copy) == v0
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF but not audio")
    code, out, err = cli(
        capsys,
        "calibrate",
        "--bundle",
        str(bundle_copy),
        "--section",
        SEC,
        "--skip-unreadable",
        "--files",
        *files,
        str(broken),
    )
    assert code == 0 and "with 2 clips" in out and "refused" in err and "skipped" in err
    assert f"skipped {broken}: " in err  # the unreadable file is named, then left out
    for args, msg in [
        (["--section", "nope_section_00", "--files", files[0]], "no section 'nope_section_00'"),
        (["--section", SEC, "--mode", "merge", "--files", files[0]], "--mode: expected one of"),
        (["--section", SEC, "--files"], "--files: give the WAV files"),
        (["--section", SEC, "--files", str(tmp_path / "missing.wav")], "no such file"),
        (["--section", SEC, "--device", "x", "--files", files[0]], "give one source"),
    ]:
        code, _, err = cli(capsys, "calibrate", "--bundle", str(bundle_copy), *args)
        assert code == 2 and msg in err.strip().splitlines()[-1], (args, err)


def test_killed_half_way_leaves_the_old_bundle_current_and_intact(
    bundle_copy: Path, target_clips: list[Path]
) -> None:
    v0 = current_version(bundle_copy)
    v0_files = digest(load_bundle(bundle_copy).path)
    files = [str(p) for p in target_clips] * 10  # 40 clips: seconds of embedding
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from edge_agent.cli import main; main()",
            "calibrate",
            "--bundle",
            str(bundle_copy),
            "--section",
            SEC,
            "--files",
            *files,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    try:
        for line in proc.stderr:  # wait until all clips are read and embedding has begun
            if line.startswith("embedding clip 3/"):
                break
        else:
            pytest.fail(f"calibrate ended before embedding (rc {proc.wait()})")
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(10)
    assert proc.returncode == -signal.SIGKILL
    assert current_version(bundle_copy) == v0 and list_versions(bundle_copy) == [v0]
    b = load_bundle(bundle_copy, verify=True)
    assert b.version == v0 and digest(b.path) == v0_files


def test_a_running_agent_picks_up_a_calibration(
    bundle_copy: Path,
    target_clips: list[Path],
    synth_root: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from edge_agent.agent import Agent
    from edge_agent.config.load import load_config

    events: list[Mapping[str, Any]] = []

    class Sink:
        def handle(self, event: Mapping[str, Any]) -> None:
            events.append(event)

        def close(self) -> None:
            pass

    normal = sorted((synth_root / "fan" / "test").glob("section_00_source_test_normal_*.wav"))
    cfg = load_config(
        None,
        {
            "bundle": str(bundle_copy),
            "section": SEC,
            "source.kind": "files",
            "source.files": [str(normal[0])],
            "source.loop": True,
            "log.stdout": False,
            "reload_poll_seconds": 0.1,
        },
    )
    agent = Agent(cfg, sinks=[Sink()])
    t = threading.Thread(target=agent.run, kwargs={"install_signals": False})
    t.start()
    try:
        end = time.monotonic() + 30
        while not any(e["kind"] == "score" for e in list(events)):
            assert time.monotonic() < end
            time.sleep(0.05)
        old_version = next(e for e in events if e["kind"] == "score")["model_version"]
        code, _, err = cli(
            capsys,
            "calibrate",
            "--bundle",
            str(bundle_copy),
            "--section",
            SEC,
            "--quiet",
            "--files",
            *map(str, target_clips),
        )
        assert code == 0, err
        new_version = f"v{current_version(bundle_copy)}-"
        while not any(
            e["kind"] == "score" and e["model_version"].startswith(new_version)
            for e in list(events)
        ):
            assert time.monotonic() < end, "the agent never scored with the calibrated bundle_copy"
            time.sleep(0.05)
    finally:
        agent.stop()
        t.join(30)
    assert agent.counters["reloads"] == 1 and old_version.startswith("v1-")
    windows = [e["window"] for e in events if e["kind"] == "score"]
    assert windows == list(range(len(windows)))  # nothing dropped around the swap
    assert json.loads(json.dumps(events[-1]))  # events stay JSON-serialisable


def test_export_source_only_then_calibrate_adds_the_target_rows(
    trained_run: Path,
    tmp_path: Path,
    target_clips: list[Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    from edge_agent.errors import EdgeAgentError
    from model_build.export import export_run

    with pytest.raises(EdgeAgentError, match=r"^domains: expected one of all, source"):
        export_run(trained_run, tmp_path / "x", domains="target")
    out = tmp_path / "src_bundle"
    export_run(trained_run, out, domains="source")
    b = load_bundle(out)
    assert b.manifest["training"]["domains"] == "source"
    assert all(
        c.n_source == c.references.shape[0] for s in b.backends.values() for c in s.components
    )
    code, _, err = cli(
        capsys,
        "calibrate",
        "--bundle",
        str(out),
        "--section",
        SEC,
        "--quiet",
        "--files",
        *map(str, target_clips),
    )
    assert code == 0, err
    cal = load_bundle(out).backend(SEC).components[0]
    assert cal.references.shape[0] == cal.n_source + 4


def test_a_long_recording_is_cut_into_its_clips_and_few_clips_are_warned_about(
    bundle_copy: Path, target_clips: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One 35 s WAV given to calibrate used to be ONE clip (its first 10 s) and moved the
    threshold without a word. Now it is its three whole clips (the 5 s tail left out and said
    so), the clips are exactly the recording's consecutive 10 s pieces, and a calibration on
    fewer clips than the documented 10 says how many."""
    from edge_agent.audio.files import load_clip, read_wav
    from edge_agent.runtime.scorer import Scorer

    pieces = [read_wav(p)[0] for p in target_clips[:4]]
    long = tmp_path / "hall2-press.wav"
    write_wav(long, np.concatenate(pieces)[: 35 * 16000], 16000)
    v0 = current_version(bundle_copy)
    code, out, err = cli(
        capsys, "calibrate", "--bundle", str(bundle_copy), "--section", SEC, "--files", str(long)
    )
    assert code == 0, err
    assert f"calibrated {SEC} with 3 clips (replace)" in out
    assert f"{long}: 35.0 s = 3 clips of 10 s (5.0 s at the end left out)" in err
    assert "clip 3/3 ok: " in err and f"({long} [20-30 s])" in err
    warning = [line for line in err.splitlines() if line.startswith("warning:")]
    assert warning == [
        (
            "warning: calibrate used 3 clips (30 s of audio); docs/adaptation.md asks "
            "for 10 (100 s): the threshold rests on fewer normal clips than that "
            "(record more, or give a longer recording)"
        )
    ], err
    rec = load_bundle(bundle_copy).manifest["calibration"]
    assert rec["n_clips"] == 3 and current_version(bundle_copy) == v0 + 1
    # the clips are the recording's consecutive pieces: the 2nd is the 2nd file, as written
    spec = Scorer.from_bundle(bundle_copy).spec
    from edge_agent.audio.files import iter_clips

    got = list(iter_clips(long, spec))
    assert len(got) == 3
    np.testing.assert_allclose(got[1], load_clip(target_clips[1], spec), atol=1 / 32768)
    # ten clips from one 100 s recording: no warning
    write_wav(long, np.concatenate(pieces * 3)[: 100 * 16000], 16000)
    code, out, err = cli(
        capsys, "calibrate", "--bundle", str(bundle_copy), "--section", SEC, "--files", str(long)
    )
    assert code == 0 and "with 10 clips" in out and "warning" not in err, err
    assert f"{long}: 100.0 s = 10 clips of 10 s\n" in err
