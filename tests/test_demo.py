"""`edge-agent demo`: the shipped bundle and clips, the real agent raising the alarm, pacing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edge_agent.bundle.load import load_bundle
from edge_agent.commands.demo import DEMO_DIR, DemoError, PacedSink, load_demo
from edge_agent.config.runtime import DecisionSettings
from edge_agent.events import health_event, status_event, window_event

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}


def _demo(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge_agent.cli", "demo", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env=ENV,
    )


def test_shipped_bundle_verifies_and_holds_the_demo_section() -> None:
    demo = load_demo()
    bundle = load_bundle(demo.bundle, verify=True)  # checksums of model and backend
    assert demo.section in bundle.sections
    assert bundle.manifest["quantization"] == "dynamic"
    assert demo.n_normal >= DecisionSettings().n  # a healthy stretch longer than the vote
    faulty = demo.clips[demo.n_normal :]
    assert len(faulty) >= DecisionSettings().k
    assert all(c.label == "anomaly" for c in faulty)
    assert all(c.label == "normal" for c in demo.clips[: demo.n_normal])
    # Clips come from the synthetic TEST split, never from training data.
    assert all("/test/" in c.source for c in demo.clips)


def test_shipped_files_are_small() -> None:
    """12 clips (3.8 MB) and the bundle (3.9 MB: the model, then per section the references
    of nine components: the dynamics added 0.2 MB, modulation power, comodulation and the
    fine spectrum 0.9 MB, the references' lengths for the deviation scores 0.06 MB, the
    spectral stability 0.05 MB, the onset rhythm 0.54 MB)."""
    total = sum(f.stat().st_size for f in DEMO_DIR.rglob("*") if f.is_file())
    assert total < 8_000_000, total


def test_demo_alarm_only_after_the_fault_starts() -> None:
    """The real agent (files source, shipped bundle), JSON lines: the acceptance criterion."""
    demo = load_demo()
    proc = _demo("--fast", "--json")
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    scores = [e for e in events if e["kind"] == "score"]
    alarms = [e for e in events if e["kind"] == "alarm"]
    assert len(scores) == len(demo.clips)  # every clip is one 10 s window, none dropped
    assert [Path(e["source"]).name for e in scores] == [c.file for c in demo.clips]
    assert alarms, "the demo raised no alarm"
    assert alarms[0]["decision"] == "alarm"
    assert alarms[0]["window"] >= demo.n_normal  # nothing during the healthy part
    assert all(e["decision"] == "normal" for e in scores[: demo.n_normal])
    assert scores[-1]["decision"] == "alarm"
    assert events[-1]["kind"] == "status" and events[-1]["windows_dropped"] == 0


def test_demo_human_output_paced(tmp_path: Path) -> None:
    """Default output: readable lines, ALARM line, pace = window seconds / speed per window."""
    demo = load_demo()
    speed = 50.0  # 0.2 s per window
    t0 = time.monotonic()
    proc = _demo("--speed", str(speed))
    elapsed = time.monotonic() - t0
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert f"{len(demo.clips)} clips of {demo.section}" in out
    assert "ALARM RAISED at window" in out
    first_alarm_line = next(ln for ln in out.splitlines() if "ALARM RAISED" in ln)
    assert int(first_alarm_line.split("window ")[1].split(":")[0]) >= demo.n_normal
    assert "faulty" in out and "normal" in out
    assert elapsed >= len(demo.clips) * 10.0 / speed


def test_paced_sink_sleeps_only_for_scores() -> None:
    slept: list[float] = []
    sink = PacedSink(1.5, sleep=slept.append)
    score = window_event(
        "score",
        0.0,
        "d",
        section="s",
        window=0,
        score=0.1,
        threshold=0.2,
        anomalous=False,
        decision="normal",
        votes=0,
        model_version="v",
        source="f",
    )
    alarm = window_event(
        "alarm",
        0.0,
        "d",
        section="s",
        window=0,
        score=0.1,
        threshold=0.2,
        anomalous=False,
        decision="normal",
        votes=0,
        model_version="v",
        source="f",
    )
    for e in (
        score,
        alarm,
        health_event(0.0, "d", "device_ok", []),
        score,
        status_event(0.0, "d", "stopped"),
    ):
        sink.handle(e)
    assert slept == [1.5, 1.5]
    PacedSink(0.0, sleep=slept.append).handle(score)
    assert slept == [1.5, 1.5]


def test_broken_demo_install_is_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "demo.json").write_text(
        json.dumps(
            {
                "section": "fan_section_00",
                "clips": [{"file": "x.wav", "label": "normal", "source": "fan/test/x.wav"}],
            }
        )
    )
    with pytest.raises(DemoError, match=r"x\.wav: demo clip missing"):
        load_demo(tmp_path)
    (tmp_path / "demo.json").write_text("{")
    with pytest.raises(DemoError, match="demo description unreadable"):
        load_demo(tmp_path)


@pytest.mark.mqtt
def test_demo_publishes_the_alarm_to_a_broker(mqtt_broker) -> None:  # type: ignore[no-untyped-def]
    from mqtt_fixtures import Subscriber

    demo = load_demo()
    broker = mqtt_broker()
    sub = Subscriber(broker, ["edge-asd/#"])
    try:
        proc = _demo(
            "--fast",
            "--mqtt-host",
            "127.0.0.1",
            "--mqtt-port",
            str(broker.port),
            "--device-id",
            "demo-pi",
        )
        assert proc.returncode == 0, proc.stderr
        topic = f"edge-asd/demo-pi/{demo.section}/alarm"
        assert sub.wait_for(
            lambda m: any(json.loads(p)["decision"] == "alarm" for p in sub.on(topic)), timeout=10
        )
        states = [json.loads(p) for p in sub.on(topic)]
        assert states[0]["decision"] == "normal"  # the start state, before any window
        alarm = next(a for a in states if a["decision"] == "alarm")
        assert alarm["window"] >= demo.n_normal
        avail = "edge-asd/demo-pi/availability"
        assert sub.wait_for(
            lambda m: (avail, b"offline", False) in m or (avail, b"offline", True) in m, timeout=10
        )
        assert sub.on(avail)[0] == b"online"
    finally:
        sub.close()


def test_shipped_bundle_is_what_build_demo_sh_builds() -> None:
    """The committed build script and the shipped bundle's manifest agree (width, data, mode)."""
    script = (REPO / "benchmarks" / "build_demo.sh").read_text()
    proc = subprocess.run(
        ["bash", "-n", str(REPO / "benchmarks" / "build_demo.sh")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    demo = load_demo()
    m = load_bundle(demo.bundle).manifest
    width = float(script.split("--width ")[1].split()[0])
    assert m["training"]["config"]["width"] == width
    assert f"--quantize {m['quantization']}" in script
    machines = script.split("--machines ")[1].split()[0].split(",")
    assert sorted(m["training"]["sections"]) == sorted(
        f"{mach}_section_{i:02d}" for mach in machines for i in range(2)
    )
    assert demo.info["built_by"] == "benchmarks/build_demo.sh"
    assert demo.info["synth"]["machines"] == machines
