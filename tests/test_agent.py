"""End to end: files -> windows -> real TFLite scorer (bundle_dir) -> decision -> sinks.

Thresholds: the narrow 1-epoch test bundle does not separate every clip, so each test scores
the synthetic test clips of one section with the real scorer first, picks an anomalous clip
that scores above a normal one, and sets `decision.threshold` to the midpoint. The pipeline
(windowing, scoring, k-of-n, MQTT) is then exercised for real, deterministically.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
from collect_sink import Collect
from mqtt_fixtures import Broker, Subscriber
from waiting import wait_until

from edge_agent.agent import Agent
from edge_agent.config.load import load_config
from edge_agent.runtime.scorer import Scorer

SEC = "fan_section_00"


def cfg_for(bundle: Path, files: list[Path], thr: float, **extra: Any) -> Any:
    ov = {
        "bundle": str(bundle),
        "section": SEC,
        "source.kind": "files",
        "source.files": [str(f) for f in files],
        "decision.threshold": thr,
        "log.stdout": False,
        **extra,
    }
    return load_config(None, ov)


def test_anomalous_clip_raises_alarm_normal_does_not(
    bundle_dir: Path, clips: tuple[Path, Path, float]
) -> None:
    anom, norm, thr = clips
    c = Collect()
    assert Agent(cfg_for(bundle_dir, [anom] * 3, thr), sinks=[c]).run(install_signals=False) == 0
    scores = c.kind("score")
    assert [e["window"] for e in scores] == [0, 1, 2] and all(e["anomalous"] for e in scores)
    alarms = c.kind("alarm")
    assert len(alarms) == 1 and alarms[0]["decision"] == "alarm" and alarms[0]["window"] == 2
    assert alarms[0]["section"] == SEC and alarms[0]["model_version"]
    assert alarms[0]["ts"].endswith("Z") and isinstance(alarms[0]["epoch"], float)
    assert c.closed
    c2 = Collect()
    Agent(cfg_for(bundle_dir, [norm] * 3, thr), sinks=[c2]).run(install_signals=False)
    assert len(c2.kind("score")) == 3 and not c2.kind("alarm")
    assert all(e["decision"] == "normal" for e in c2.kind("score"))


def test_silent_input_is_a_sensor_fault_not_an_alarm(bundle_dir: Path, tmp_path: Path) -> None:
    import numpy as np

    from edge_agent.audio.files import write_wav

    silent = tmp_path / "silent.wav"
    write_wav(silent, np.zeros(160000, np.float32), 16000)
    c = Collect()
    Agent(cfg_for(bundle_dir, [silent] * 4, -1e9), sinks=[c]).run(install_signals=False)
    assert not c.kind("score") and not c.kind("alarm")  # never scored, never counted
    health = c.kind("health")
    assert len(health) == 1 and health[0]["faults"] == ["silence"]
    assert c.kind("status")[-1]["faults"] == 4


def test_reload_on_bundle_change_without_dropping(
    bundle_dir: Path, clips: tuple[Path, Path, float]
) -> None:
    anom, _, thr = clips
    c = Collect()
    cfg = cfg_for(bundle_dir, [anom], thr, **{"source.loop": True, "reload_poll_seconds": 0.1})
    agent = Agent(cfg, sinks=[c])
    running = agent.scorer
    t = threading.Thread(target=agent.run, kwargs={"install_signals": False})
    t.start()
    try:
        time.sleep(0.5)
        os.utime(bundle_dir / "current")  # a new `current` pointer -> reload
        end = time.monotonic() + 30
        while agent.counters["reloads"] == 0 and time.monotonic() < end:
            time.sleep(0.1)
    finally:
        agent.stop()
        t.join(30)
    assert agent.counters["reloads"] == 1
    # a new scorer (self-tested), on the running interpreter: the model bytes are the same
    assert agent.scorer is not running
    assert agent.scorer.model_embedders() == running.model_embedders()
    windows = [e["window"] for e in c.kind("score")]
    assert windows == list(range(len(windows)))  # no window lost around the swap
    assert any(e.get("event") == "reloaded" for e in c.kind("status"))


def test_cli_run_publishes_alarm_then_sigterm_goes_offline(
    bundle_dir: Path,
    clips: tuple[Path, Path, float],
    tmp_path: Path,
    mqtt_broker: Callable[..., Broker],
) -> None:
    anom, _, thr = clips
    b = mqtt_broker()
    sub = Subscriber(b, ["edge-asd/#"])
    (tmp_path / "agent.yaml").write_text(
        f"bundle: {bundle_dir}\nsection: {SEC}\n"
        f"source: {{kind: files, files: [{anom}], loop: true}}\n"
        f"decision: {{threshold: {thr}}}\n"
        f"mqtt: {{host: 127.0.0.1, port: {b.port}, device_id: press7}}\n"
        f"outbox: {{path: {tmp_path / 'outbox.sqlite'}}}\n"
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "edge_agent.cli",
            "run",
            "-c",
            str(tmp_path / "agent.yaml"),
            "--json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        topic = f"edge-asd/press7/{SEC}/alarm"

        def states() -> list[dict[str, Any]]:
            return [json.loads(p) for p in sub.on(topic)]

        # the start state first (normal: no state file), then the raised alarm
        assert wait_until(lambda: any(a["decision"] == "alarm" for a in states()), 60)
        assert states()[0]["decision"] == "normal" and "window" not in states()[0]
        alarm = next(a for a in states() if a["decision"] == "alarm")
        assert alarm["schema"] == 1 and alarm["window"] >= 2
        proc.send_signal(signal.SIGHUP)  # reload the bundle while streaming
        time.sleep(2.0)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert sub.wait_for(lambda m: m[-1][:2] == ("edge-asd/press7/availability", b"offline"), 5)
    lines = [json.loads(x) for x in out.splitlines()]
    assert any(e["kind"] == "alarm" for e in lines)  # --json: JSONL on stdout
    assert any(e["kind"] == "status" and e.get("event") == "reloaded" for e in lines)
    windows = [e["window"] for e in lines if e["kind"] == "score"]
    assert windows == list(range(len(windows)))  # nothing dropped across the reload
    sub.close()


def test_cli_run_bad_section_is_a_clear_error(bundle_dir: Path, tmp_path: Path) -> None:
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "edge_agent.cli",
            "run",
            "--bundle",
            str(bundle_dir),
            "--section",
            "nope",
            "--files",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    last = r.stderr.strip().splitlines()[-1]  # the TFLite runtime may log an INFO line first
    assert r.returncode == 2 and last.startswith("error: ") and "'nope'" in last
    assert "Traceback" not in r.stderr


@pytest.mark.audio
def test_fake_microphone_anomalous_clip_raises_alarm(
    bundle_dir: Path, clips: tuple[Path, Path, float], fake_mic: Callable[..., str]
) -> None:
    """Live device path (PortAudio through real ALSA): 3 windows of the anomalous clip."""
    import numpy as np

    from edge_agent.audio.files import load_clip

    anom, _, thr = clips
    x = load_clip(anom, Scorer.from_bundle(bundle_dir).spec)
    name = fake_mic(np.tile(x, 3))
    cfg = load_config(
        None,
        {
            "bundle": str(bundle_dir),
            "section": SEC,
            "source.device": name,
            "decision.threshold": thr,
            "log.stdout": False,
        },
    )
    c = Collect()
    agent = Agent(cfg, sinks=[c])
    t = threading.Thread(target=agent.run, kwargs={"install_signals": False})
    t.start()
    try:
        end = time.monotonic() + 30
        while not c.kind("alarm") and time.monotonic() < end:
            time.sleep(0.05)
    finally:
        agent.stop()
        t.join(30)
    assert not t.is_alive()
    scores = c.kind("score")
    assert [e["window"] for e in scores[:3]] == [0, 1, 2]
    assert all(e["anomalous"] for e in scores[:3])
    assert c.kind("alarm")[0]["window"] == 2


def test_stdin_pcm_through_cli(
    bundle_dir: Path, clips: tuple[Path, Path, float], tmp_path: Path
) -> None:
    import numpy as np

    from edge_agent.audio.files import load_clip

    anom, _, thr = clips
    x = load_clip(anom, Scorer.from_bundle(bundle_dir).spec)
    pcm = (np.clip(np.tile(x, 3), -1, 1) * 32767).astype("<i2").tobytes()
    cfg_path = tmp_path / "stdin.yaml"
    cfg_path.write_text(f"decision: {{threshold: {thr}}}\n")
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "edge_agent.cli",
            "run",
            "-c",
            str(cfg_path),
            "--stdin",
            "--bundle",
            str(bundle_dir),
            "--section",
            SEC,
            "--json",
        ],
        input=pcm,
        capture_output=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    events = [json.loads(x) for x in r.stdout.decode().splitlines()]
    assert [e["window"] for e in events if e["kind"] == "score"] == [0, 1, 2]
    assert [e["window"] for e in events if e["kind"] == "alarm"] == [2]


def test_live_source_drops_are_counted_and_reported(
    bundle_dir: Path, clips: tuple[Path, Path, float]
) -> None:
    import numpy as np

    from edge_agent.runtime.windows import Window

    cfg = load_config(None, {"bundle": str(bundle_dir), "section": SEC, "queue_size": 2})
    c = Collect()
    agent = Agent(cfg, sinks=[c])  # no worker running: the queue fills up
    for i in range(5):
        agent._enqueue(  # noqa: SLF001 -- the test drives the worker queue directly
            agent.monitors[0],
            Window(np.zeros(160000, np.float32), float(i), i),
            live=True,
        )
    assert agent.counters["windows_dropped"] == 3
    # the first drop at once; the rest summarised (at most one line a minute, and at the end)
    assert [(e["window"], e["count"]) for e in c.kind("health")] == [(2, 1)]
    agent.monitors[0].flush_drops()  # within the minute: nothing new
    assert len(c.kind("health")) == 1
    agent.monitors[0].flush_drops(force=True)  # the end of the run
    assert [(e["window"], e["count"], e["dropped"]) for e in c.kind("health")] == [
        (2, 1, 1),
        (4, 2, 3),
    ]
    assert c.kind("health")[-1]["faults"] == ["scorer_behind"]


def test_outbox_full_is_reported_once_per_episode_with_the_exact_count(
    bundle_dir: Path,
    clips: tuple[Path, Path, float],
    tmp_path: Path,
    mqtt_broker: Callable[..., Broker],
) -> None:
    """A one-row outbox with the broker down: rows are dropped by policy, and the agent says
    so (once: the episode's first drop); the count is the real number of drops. (The exact
    accounting with 50 events: tests/test_outbox_faults.py.)"""
    anom, norm, thr = clips
    b = mqtt_broker()
    b.kill()  # broker down for the whole run: alarm + health events pile up
    cfg = cfg_for(
        bundle_dir,
        [anom, norm] * 2,
        thr,
        **{
            "mqtt.host": "127.0.0.1",
            "mqtt.port": b.port,
            "mqtt.connect_timeout": 0.2,
            "outbox.path": str(tmp_path / "o.sqlite"),
            "outbox.max_rows": 1,
            "decision.k": 1,
            "decision.n": 1,
            "decision.clear_after": 1,
            "hearing.enabled": False,  # its rows are counted in tests/test_hearing.py
        },
    )
    agent = Agent(cfg)
    c = Collect()
    agent.sinks.append(c)
    agent.run(install_signals=False)
    # 4 alarm events + the sensor state row into a one-row outbox: 4 real drops
    assert len(c.kind("alarm")) == 4 and agent.counters["outbox_dropped"] == 4
    full = [e for e in c.kind("health") if e.get("event") == "outbox_full"]
    assert [e["dropped"] for e in full] == [1] and full[0]["faults"] == ["outbox_full"]
    assert c.kind("status")[-1]["outbox_dropped"] == 4


def test_stalled_input_is_reported_as_device_lost_then_ok(
    bundle_dir: Path, clips: tuple[Path, Path, float]
) -> None:
    """A stdin pipe that delivers nothing for longer than stall_seconds: a sensor fault."""
    import numpy as np

    _, _, thr = clips
    r, w = os.pipe()
    cfg = load_config(
        None,
        {
            "bundle": str(bundle_dir),
            "section": SEC,
            "source.kind": "stdin",
            "source.stall_seconds": 0.3,
            "decision.threshold": thr,
            "log.stdout": False,
        },
    )
    c = Collect()
    with os.fdopen(r, "rb") as rf, os.fdopen(w, "wb") as wf:
        agent = Agent(cfg, sinks=[c], stdin=rf)
        t = threading.Thread(target=agent.run, kwargs={"install_signals": False})
        t.start()
        end = time.monotonic() + 10
        while not c.kind("health") and time.monotonic() < end:
            time.sleep(0.05)
        assert c.kind("health")[0]["faults"] == ["device_lost"]
        wf.write((np.full(16000, 0.1) * 32767).astype("<i2").tobytes())
        wf.flush()
        end = time.monotonic() + 10
        while len(c.kind("health")) < 2 and time.monotonic() < end:
            time.sleep(0.05)
        assert c.kind("health")[1]["event"] == "device_ok"
        wf.close()  # end of stream: the agent stops reading before the read end is closed
        t.join(10)
    assert not t.is_alive()
    assert not c.kind("alarm")


# --- reliability: a reload that cannot score, per-window errors (the shipped demo bundle: a
# real exported bundle, no training needed) ---------------------------------------------------


@pytest.fixture
def demo_root(tmp_path: Path) -> tuple[Path, Path]:
    """(private copy of the shipped demo bundle, one of its normal clips). The demo bundle has
    section SEC (these tests score in it and never look at a score)."""
    import shutil

    from edge_agent.bundle.load import load_bundle
    from edge_agent.commands.demo import load_demo

    demo = load_demo()
    assert SEC in load_bundle(demo.bundle).sections
    root = tmp_path / "bundle"
    shutil.copytree(demo.bundle, root)
    return root, demo.paths[0]


def unscorable_version(root: Path) -> Path:
    """A new, active version that loads (valid manifest, checksums, backend) but whose frontend
    makes 40000-bin spectra, which the model's 80000-bin input cannot take: every window fails
    at scoring time."""
    from edge_agent.bundle.load import load_bundle
    from edge_agent.bundle.versions import write_bundle

    b = load_bundle(root)
    manifest = {k: v for k, v in b.manifest.items() if k not in ("version", "files", "created")}
    manifest["frontend"] = {**manifest["frontend"], "spectrum_bins": 40_000}
    return write_bundle(root, {n: b.path / n for n in b.model_files}, b.backends, manifest)


@pytest.mark.parametrize("broken", ["cannot_score", "corrupt"])
def test_reload_keeps_the_running_version_when_the_new_one_is_broken(
    demo_root: tuple[Path, Path], broken: str
) -> None:
    """A version that cannot score (or does not even load) is never swapped in: the old model
    keeps scoring, a reload_failed health event says why; a good version later still loads."""
    from edge_agent.bundle.load import load_bundle
    from edge_agent.bundle.manifest import BACKEND
    from edge_agent.bundle.versions import set_current, write_bundle

    root, clip = demo_root
    v1 = load_bundle(root)
    c = Collect()
    cfg = cfg_for(root, [clip], 1e9, **{"source.loop": True, "reload_poll_seconds": 0.1})
    agent = Agent(cfg, sinks=[c])
    t = threading.Thread(target=agent.run, kwargs={"install_signals": False})
    t.start()
    try:
        assert wait_until(lambda: len(c.kind("score")) >= 1)
        if broken == "cannot_score":
            unscorable_version(root)
        else:
            manifest = {
                k: v for k, v in v1.manifest.items() if k not in ("version", "files", "created")
            }
            v2 = write_bundle(
                root,
                {n: v1.path / n for n in v1.model_files},
                v1.backends,
                manifest,
                activate=False,
            )
            (v2 / BACKEND).write_bytes((v2 / BACKEND).read_bytes()[:1000])  # truncated copy
            set_current(root, 2)

        def failed() -> list[Mapping[str, Any]]:
            return [e for e in c.kind("health") if e.get("event") == "reload_failed"]

        assert wait_until(lambda: bool(failed()))
        n_before = len(c.kind("score"))
        assert wait_until(lambda: len(c.kind("score")) >= n_before + 2)  # still scoring
        assert agent.counters["reloads"] == 0
        # a good version afterwards is picked up as usual
        manifest = {
            k: v for k, v in v1.manifest.items() if k not in ("version", "files", "created")
        }
        write_bundle(root, {n: v1.path / n for n in v1.model_files}, v1.backends, manifest)
        assert wait_until(lambda: agent.counters["reloads"] == 1)
    finally:
        agent.stop()
        t.join(30)
    assert not t.is_alive()
    (event,) = failed()
    words = (
        "cannot score a test window (ValueError: cannot reshape"
        if broken == "cannot_score"
        else "checksum mismatch"
    )
    assert words in event["error"] and "\n" not in event["error"]
    assert event["faults"] == ["reload_failed"]
    scores = c.kind("score")
    assert [e["window"] for e in scores] == list(range(len(scores)))  # nothing dropped
    assert {e["model_version"] for e in scores[: n_before + 2]} == {v1.model_version}
    reloaded = [e for e in c.kind("status") if e.get("event") == "reloaded"]
    v3 = load_bundle(root)
    assert v3.model_version.startswith("v3-")
    assert [e["model_version"] for e in reloaded] == [v3.model_version]
    assert agent.counters["window_errors"] == 0


def test_window_errors_are_counted_and_reach_health_and_mqtt(
    demo_root: tuple[Path, Path], tmp_path: Path, mqtt_broker: Callable[..., Broker]
) -> None:
    """A bundle that loads but fails every window: counted, and reported as window_error health
    events (first error, then at 10 errors), on MQTT too; the stopped status has the count."""
    root, clip = demo_root
    unscorable_version(root)
    b = mqtt_broker()
    sub = Subscriber(b, ["edge-asd/#"])
    cfg = cfg_for(
        root,
        [clip] * 12,
        1e9,
        **{
            "mqtt.host": "127.0.0.1",
            "mqtt.port": b.port,
            "mqtt.device_id": "press7",
            "outbox.path": str(tmp_path / "o.sqlite"),
        },
    )
    agent = Agent(cfg)
    c = Collect()
    agent.sinks.append(c)
    try:
        assert agent.run(install_signals=False) == 0
        assert agent.counters["window_errors"] == 12 and agent.counters["scored"] == 0
        assert not c.kind("score")
        errors = [e for e in c.kind("health") if e["event"] == "window_error"]
        assert [(e["window"], e["count"]) for e in errors] == [(0, 1), (9, 10)]
        assert all("ValueError: cannot reshape" in e["error"] for e in errors)
        assert c.kind("status")[-1]["window_errors"] == 12
        topic = "edge-asd/press7/health"
        assert sub.wait_for(lambda m: sum(t == topic for t, _, _ in m) >= 2, 10)
        published = [json.loads(p) for p in sub.on(topic)]
        assert [(e["event"], e["count"]) for e in published] == [
            ("window_error", 1),
            ("window_error", 10),
        ]
    finally:
        sub.close()


def test_window_error_reports_are_rate_limited_by_message(demo_root: tuple[Path, Path]) -> None:
    """Same message: reported once, then at 10, 100...; a new message: reported at once."""
    import numpy as np

    from edge_agent.runtime.windows import Window

    root, _ = demo_root
    c = Collect()
    agent = Agent(load_config(None, {"bundle": str(root), "section": SEC}), sinks=[c])
    w = Window(np.zeros(160000, np.float32), 0.0, 0)
    from edge_agent.runtime.scorer import one_line

    for i in range(25):
        exc = ValueError("broken\nmodel") if i != 15 else OSError("disk")
        agent.monitors[0].window_failed(w, one_line(exc))
    reported = [(e["count"], e["error"]) for e in c.kind("health")]
    assert reported == [
        (1, "ValueError: broken model"),
        (10, "ValueError: broken model"),
        (16, "OSError: disk"),
        (17, "ValueError: broken model"),
    ]
    assert agent.counters["window_errors"] == 25


def test_run_without_its_microphone_is_one_error_line_and_leaves_nothing_behind(
    tmp_path: Path,
    mqtt_broker: Callable[..., Broker],
) -> None:
    """`edge-agent run` whose device is not there: it used to print the `stopped` status twice
    (stdout and log) before the error, wait for the broker first, and leave an outbox and a
    score history in the state folder. Now the sources open first: one `error:` line, exit 2,
    nothing on stdout, nothing published, the state folder as it was."""
    from edge_agent.commands.demo import load_demo

    demo = load_demo()
    b = mqtt_broker()
    state = tmp_path / "state"
    state.mkdir()
    (state / "keep.txt").write_text("an operator's file\n")
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(
        f"bundle: {demo.bundle}\nsection: {demo.section}\n"
        f"source: {{device: no-such-microphone}}\n"
        f"outbox: {{path: {state}/outbox.sqlite}}\n"
        f"evidence: {{folder: {state}/evidence}}\n"
        f"mqtt: {{host: 127.0.0.1, port: {b.port}, ha_discovery: true}}\n"
    )
    sub = Subscriber(b, ["#"])
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "edge_agent.cli", "run", "--config", str(cfg)],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
            env={
                **os.environ,
                "TF_CPP_MIN_LOG_LEVEL": "2",
                "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
            },
        )
        time.sleep(0.5)  # anything published would have arrived by now
        assert sub.messages == []
    finally:
        sub.close()
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    errors = [line for line in proc.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and errors[0].startswith("error: source.device: "), proc.stderr
    assert "no-such-microphone" in errors[0] or "PortAudio" in errors[0]
    assert "status" not in proc.stderr and "stopped" not in proc.stderr
    assert sorted(p.name for p in state.iterdir()) == ["keep.txt"]
