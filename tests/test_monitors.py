"""Several machines per agent (edge_agent.config.monitors, edge_agent.runtime.monitor,
edge_agent.runtime.reader): the config, channel sharing through the real PortAudio/ALSA stack,
per-monitor events, files, MQTT topics and Home Assistant devices, and `tune --monitor`."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from audio_fixtures import FakeMic, drain
from cli_helpers import run_cli
from collect_sink import Collect
from mqtt_fixtures import Broker, Subscriber

from edge_agent.agent import Agent
from edge_agent.config.load import load_config, read_config
from edge_agent.config.monitors import capture_groups
from edge_agent.config.sources import SourceSettings
from edge_agent.errors import ConfigError
from edge_agent.runtime.scorer import Scorer
from edge_agent.sources.device import DeviceSource

SEC = "fan_section_00"


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "agent.yaml"
    p.write_text(text)
    return p


# --- config -------------------------------------------------------------------------------


def test_monitors_merge_the_top_level_sections_and_take_device_channel_shorthands(
    tmp_path: Path,
) -> None:
    cfg = read_config(
        write(
            tmp_path,
            """
bundle: /tmp
source: {device: "Scarlett", capture_rate: 48000}
decision: {k: 2, n: 4}
monitors:
  - {name: pump_1, section: pump_section_00, channel: 0}
  - {name: pump_2, section: pump_section_00, channel: 1, decision: {k: 3}}
  - {section: fan_section_00, device: "USB PnP"}
""",
        )
    )
    a, b, c = cfg.monitor_list()
    assert (a.name, a.section, a.source.device, a.source.channel, a.source.capture_rate) == (
        "pump_1",
        "pump_section_00",
        "Scarlett",
        0,
        48000,
    )
    assert (a.decision.k, a.decision.n) == (2, 4)
    assert (b.source.channel, b.decision.k, b.decision.n) == (1, 3, 4)  # key by key
    assert (c.name, c.source.device, c.source.channel) == ("fan_section_00", "USB PnP", None)
    groups = capture_groups(cfg.monitor_list())
    assert [g.lanes for g in groups] == [(0, 1), (None,)]
    assert [[m.name for m in g.monitors] for g in groups] == [
        ["pump_1", "pump_2"],
        ["fan_section_00"],
    ]


def test_a_single_section_config_is_one_monitor_named_after_its_section(tmp_path: Path) -> None:
    cfg = read_config(
        write(
            tmp_path,
            "section: fan_section_00\nsource: {device: hw:1, channel: 1}\ndecision: {k: 2}\n",
        )
    )
    (m,) = cfg.monitor_list()
    assert (m.name, m.section, m.source.device, m.source.channel, m.decision.k) == (
        SEC,
        SEC,
        "hw:1",
        1,
        2,
    )


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("section: a\nmonitors: [{section: b}]", "section: give each monitor its section"),
        ("monitors: [{name: x}]", "monitors[0].section: required"),
        (
            "monitors: [{section: a, name: 'pump/1'}]",
            (
                "monitors[0].name: 'pump/1' cannot be a "
                "machine's name: expected letters, digits, _ and - "
                "(up to 64, first a letter or digit)"
            ),
        ),
        # Home Assistant ignores a discovery topic with `.` or a space; `+` and `#` are wildcards
        *[
            (
                f"monitors: [{{section: a, name: '{n}'}}]",
                (
                    f"monitors[0].name: '{n}' cannot be a "
                    "machine's name: expected letters, digits, _ and -"
                ),
            )
            for n in ("pump.1", "pump 1", "pump+1", "pump#1", "-pump")
        ],
        ("monitors: [{section: 'fan.00'}]", "monitors[0].section: 'fan.00' cannot be a machine's"),
        (
            "monitors: [{section: a, name: health}]",
            ("monitors[0].name: 'health' is a topic level of the agent itself"),
        ),
        (
            "monitors: [{section: a, name: Pump_1}, {section: a, name: pump-1}]",
            (
                "monitors[1].name: 'pump-1' and monitors[0].name's 'Pump_1' give the same "
                "Home Assistant id 'pump_1'"
            ),
        ),
        (
            "monitors: [{section: a, name: p}, {section: b, name: p}]",
            "monitors[1].name: 'p' is also monitors[0]'s",
        ),
        (
            "monitors: [{section: a, name: p, channel: 1}, {section: b, name: q, channel: 1}]",
            "monitors[1]: device None channel 1 is already monitor 'p'",
        ),
        (
            "monitors: [{section: a, device: x, source: {device: y}}]",
            "monitors[0].device: given twice",
        ),
        ("monitors: [{section: a, channel: -1}]", "monitors[0].source.channel"),
        ("monitors: [{section: a, decision: {k: 9}}]", "decision.k: expected 1 <= k <= n"),
        ("monitors: [{section: a, colour: red}]", "monitors[0].colour: unknown key"),
        ("monitors: [{section: a, source: 3}]", "monitors[0].source: expected a mapping"),
        (
            (
                "monitors: [{section: a, name: p, device: 2, channel: 0}, "
                "{section: b, name: q, device: '2', channel: 0}]"
            ),
            "monitors[1]: device '2' channel 0 is already monitor 'p'",
        ),
        (
            (
                "monitors: [{section: a, name: p, device: X, channel: 0}, "
                "{section: b, name: q, device: x, channel: 1, source: {stall_seconds: 3}}]"
            ),
            "monitors[1].source.stall_seconds: differs from monitors[0]'s on the same device",
        ),
        (
            "evidence: {mqtt_max_kilobytes: 9000}\nmonitors: [{section: a}]",
            "evidence.mqtt_max_kilobytes: 9000 kB clips would crowd the outbox",
        ),
        (
            (
                "mqtt: {host: h, device_id: fleet}\nfleet: {enabled: true, allow_unsigned: true}\n"
                "monitors: [{section: a}]"
            ),
            "mqtt.device_id: 'fleet' cannot join a fleet",
        ),
    ],
)
def test_bad_monitor_lists_are_one_line_errors(
    tmp_path: Path, text: str, error: str, capsys: pytest.CaptureFixture[str]
) -> None:
    p = write(tmp_path, text)
    with pytest.raises(ConfigError, match=None) as exc:
        read_config(p)
    assert error in str(exc.value) and "\n" not in str(exc.value)
    code, _, err = run_cli(capsys, "config", "check", str(p))  # the same validator
    assert code == 2 and error in err


def test_start_refuses_a_monitor_whose_section_the_bundle_lacks(
    bundle_dir: Path, tmp_path: Path
) -> None:
    cfg = load_config(
        write(
            tmp_path,
            f"""
bundle: {bundle_dir}
monitors:
  - {{name: a, section: {SEC}, channel: 0}}
  - {{name: b, section: pump_section_07, channel: 1}}
""",
        )
    )
    with pytest.raises(ConfigError, match=r"monitors\[1\]\.section: no section 'pump_section_07'"):
        Agent(cfg, sinks=[])


# --- the real audio stack -------------------------------------------------------------------


def test_one_stream_delivers_every_monitors_channel_sample_exactly(fake_mic: FakeMic) -> None:
    """DeviceSource(lanes=...): one PortAudio stream of a 4-channel input, each lane exactly
    its channel (and a mix-down lane the mean of the opened channels)."""
    rng = np.random.default_rng(0)
    x = (0.1 * rng.standard_normal((16000, 4))).astype(np.float32)
    name = fake_mic(x, channels=4)
    src = DeviceSource(SourceSettings(device=name), 16000, lanes=(2, 0, 3, None))
    with src:
        blocks = drain(src, 16000)
    assert all(len(b.lanes) == 4 and b.samples is b.lanes[0] for b in blocks)
    got = [np.concatenate([b.lanes[i] for b in blocks]) for i in range(4)]
    n = got[0].size
    assert n == 16000
    for lane, ch in enumerate((2, 0, 3)):
        np.testing.assert_array_equal(got[lane], x[:n, ch])
    np.testing.assert_allclose(got[3], x[:n].mean(axis=1), atol=1e-6)


def _run_until(agent: Agent, c: Collect, done: Callable[[], bool], timeout: float = 40) -> None:
    t = threading.Thread(target=agent.run, kwargs={"install_signals": False})
    t.start()
    try:
        end = time.monotonic() + timeout
        while not done() and time.monotonic() < end:
            time.sleep(0.05)
    finally:
        agent.stop()
        t.join(30)
    assert not t.is_alive()


def on_audio(events: list[dict[str, Any]], windows: int = 3) -> list[dict[str, Any]]:
    """The events of the first `windows` windows: the fake mics' audio. After it an unpaced
    fake mic repeats stale buffers (audio_fixtures.fake_mic), which is no machine's sound and
    may score anomalous (the dynamics component sees the repeated buffer), so what a monitor
    decides there says nothing about the channel routing these tests check."""
    return [e for e in events if e["window"] < windows]


def by_monitor(c: Collect, kind: str) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for e in c.kind(kind):
        if "monitor" in e:
            out.setdefault(e["monitor"], []).append(e)
    return out


@pytest.fixture
def three_channel_clips(bundle_dir: Path, clips: tuple[Path, Path, float]) -> tuple[Any, float]:
    """(frames x 3: anomalous, normal, silent channel; three windows long), threshold."""
    from edge_agent.audio.files import load_clip

    anom, norm, thr = clips
    spec = Scorer.from_bundle(bundle_dir).spec
    a, n = np.tile(load_clip(anom, spec), 3), np.tile(load_clip(norm, spec), 3)
    return np.stack([a, n, np.zeros_like(a)], axis=1), thr


def test_channels_of_one_interface_are_separate_machines(
    bundle_dir: Path,
    three_channel_clips: tuple[Any, float],
    fake_mic: FakeMic,
    tmp_path: Path,
) -> None:
    """One 3-channel fake interface, three monitors: the anomalous channel alarms, the normal
    one does not, the silent one is a sensor fault of its own monitor only; every event names
    its monitor; one model scored them all."""
    x, thr = three_channel_clips
    name = fake_mic(x, channels=3)
    cfg = load_config(
        write(
            tmp_path,
            f"""
bundle: {bundle_dir}
source: {{device: {name}}}
decision: {{threshold: {thr}}}
log: {{stdout: false}}
monitors:
  - {{name: pump_a, section: {SEC}, channel: 0}}
  - {{name: pump_b, section: {SEC}, channel: 1}}
  - {{name: pump_c, section: {SEC}, channel: 2}}
""",
        )
    )
    c = Collect()
    agent = Agent(cfg, sinks=[c])
    assert len(agent._open_sources()) == 1  # one stream for the three channels  # noqa: SLF001 -- the test observes or drives an internal the API keeps private

    def done() -> bool:
        s = by_monitor(c, "score")
        return (
            len(s.get("pump_a", [])) >= 3
            and len(s.get("pump_b", [])) >= 3
            and any(e["event"] == "sensor_fault" for e in by_monitor(c, "health").get("pump_c", []))
        )

    _run_until(agent, c, done)
    scores = by_monitor(c, "score")
    a, b = on_audio(scores["pump_a"]), on_audio(scores["pump_b"])  # not [:3]: a dropped window
    assert a and b
    assert all(e["anomalous"] for e in a)
    assert not any(e["anomalous"] for e in b)
    assert "pump_c" not in scores  # silence is never scored
    alarms = by_monitor(c, "alarm")
    assert [e["window"] for e in alarms["pump_a"]][:1] == [2]
    assert not on_audio(alarms.get("pump_b", []))
    # the silent channel's sensor fault (a loaded machine may report a `windows_dropped`
    # (scorer behind) for it first: CI saw that once; not what this test is about)
    fault = next(e for e in by_monitor(c, "health")["pump_c"] if e["event"] == "sensor_fault")
    assert "silence" in fault["faults"] and fault["section"] == SEC
    # the three content windows of a and b are clean (what a fast fake mic delivers after its
    # file ends, or a loaded test machine's overflows, may fault later windows: not looked at)
    assert not any(
        e.get("monitor") in ("pump_a", "pump_b")
        and e["event"] == "sensor_fault"
        and e.get("window", 99) < 3
        for e in c.kind("health")
    )
    stopped = c.kind("status")[-1]
    assert set(stopped["monitors"]) == {"pump_a", "pump_b", "pump_c"}
    assert stopped["scored"] == sum(m["scored"] for m in stopped["monitors"].values())


def test_two_devices_are_read_by_two_captures(
    bundle_dir: Path,
    clips: tuple[Path, Path, float],
    fake_mic: FakeMic,
    tmp_path: Path,
) -> None:
    """Two USB microphones (two fake devices): two streams, two readers, one model."""
    from edge_agent.audio.files import load_clip

    anom, norm, thr = clips
    spec = Scorer.from_bundle(bundle_dir).spec
    mic_a = fake_mic(np.tile(load_clip(anom, spec), 3))
    mic_b = fake_mic(np.tile(load_clip(norm, spec), 3))
    cfg = load_config(
        write(
            tmp_path,
            f"""
bundle: {bundle_dir}
decision: {{threshold: {thr}}}
log: {{stdout: false}}
monitors:
  - {{name: left, section: {SEC}, device: {mic_a}}}
  - {{name: right, section: {SEC}, device: {mic_b}}}
""",
        )
    )
    c = Collect()
    agent = Agent(cfg, sinks=[c])
    assert len(agent._open_sources()) == 2  # noqa: SLF001 -- the test observes or drives an internal the API keeps private

    def done() -> bool:
        s = by_monitor(c, "score")
        return len(s.get("left", [])) >= 3 and len(s.get("right", [])) >= 3

    _run_until(agent, c, done)
    s = by_monitor(c, "score")
    # judged on the windows of the mics' audio: on a loaded machine the scorer may drop one
    # (scorer_behind), and then the first three scores reach into the stale buffers
    # (`on_audio`)
    left, right = on_audio(s["left"]), on_audio(s["right"])
    assert left and right
    assert all(e["anomalous"] for e in left)
    assert not any(e["anomalous"] for e in right)
    assert {e["source"] for e in left} != {e["source"] for e in right}
    alarms = by_monitor(c, "alarm")
    assert on_audio(alarms.get("left", [])) and not on_audio(alarms.get("right", []))
    # one model scored both: the same version, the agent's one scorer
    assert {e["model_version"] for e in s["left"] + s["right"]} == {agent.running_version()}


# --- files per monitor, MQTT, Home Assistant, state files ---------------------------------


def two_replays(
    bundle_dir: Path, clips: tuple[Path, Path, float], tmp_path: Path, extra: str = ""
) -> Path:
    anom, norm, thr = clips
    return write(
        tmp_path,
        f"""
bundle: {bundle_dir}
decision: {{threshold: {thr}}}
log: {{stdout: false}}
outbox: {{path: {tmp_path}/outbox.sqlite}}
history: {{replays: true}}
{extra}
monitors:
  - {{name: press_1, section: {SEC}, source: {{kind: files, files: [{anom}, {anom}, {anom}]}}}}
  - {{name: press_2, section: {SEC}, source: {{kind: files, files: [{norm}, {norm}, {norm}]}}}}
""",
    )


def test_monitors_publish_their_own_topics_and_home_assistant_devices(
    bundle_dir: Path,
    clips: tuple[Path, Path, float],
    tmp_path: Path,
    mqtt_broker: Callable[..., Broker],
) -> None:
    b = mqtt_broker()
    cfg = load_config(
        two_replays(
            bundle_dir,
            clips,
            tmp_path,
            f"""mqtt: {{host: 127.0.0.1, \
port: {b.port}, device_id: line3, ha_discovery: true}}""",
        )
    )
    sub = Subscriber(b, ["edge-asd/#", "homeassistant/#"])
    try:
        assert Agent(cfg, sinks=None).run(install_signals=False) == 0
        assert sub.wait_for(lambda m: any(t == "edge-asd/line3/press_1/alarm" for t, *_ in m))
        for mon in ("press_1", "press_2"):
            assert len(sub.on(f"edge-asd/line3/{mon}/score")) == 3
            sensor = [json.loads(p) for p in sub.on(f"edge-asd/line3/{mon}/sensor")]
            assert sensor and sensor[-1]["faults"] == [] and sensor[-1]["monitor"] == mon
        alarm = json.loads(sub.on("edge-asd/line3/press_1/alarm")[-1])
        assert alarm["monitor"] == "press_1" and alarm["decision"] == "alarm"
        # press_2 never raised: its alarm topic holds only its start state (normal)
        assert {json.loads(p)["decision"] for p in sub.on("edge-asd/line3/press_2/alarm")} <= {
            "normal"
        }
        configs = {
            t: json.loads(p)
            for t, p, _ in sub.messages
            if t.startswith("homeassistant/") and t.endswith("/config")
        }
        devices = {c["device"]["identifiers"][0] for c in configs.values()}
        # a device per machine, and the Pi's own (its health entities)
        assert devices == {"edge_asd_line3", "edge_asd_line3_press_1", "edge_asd_line3_press_2"}
        assert all(
            c["device"]["via_device"] == "edge_asd_line3"
            for c in configs.values()
            if c["device"]["identifiers"][0] != "edge_asd_line3"
        )
        kinds = sorted(t.split("/")[-2] for t in configs)
        assert kinds == sorted(
            [
                f"{m}_{k}"
                for m in ("press_1", "press_2")
                for k in ("alarm", "score", "drift", "sensor", "hearing", "alarm_spectrum")
            ]
            + ["agent_health", "agent_model"]
        )
    finally:
        sub.close()
    # one outbox, a decision state file and a score history per monitor
    assert (tmp_path / "outbox.sqlite").exists()
    for mon in ("press_1", "press_2"):
        assert (tmp_path / f"outbox.decision.{mon}.json").exists()
        assert (tmp_path / f"scores.{mon}.bin").exists()
    saved = json.loads((tmp_path / "outbox.decision.press_1.json").read_text())
    assert saved["state"] == "alarm"


def test_a_restart_restores_each_monitors_alarm(
    bundle_dir: Path,
    clips: tuple[Path, Path, float],
    tmp_path: Path,
    mqtt_broker: Callable[..., Broker],
) -> None:
    b = mqtt_broker()
    path = two_replays(bundle_dir, clips, tmp_path, f"mqtt: {{host: 127.0.0.1, port: {b.port}}}")
    assert Agent(load_config(path)).run(install_signals=False) == 0
    again = Agent(load_config(path))
    states = {m.name: m.decider.state for m in again.monitors}
    assert states == {"press_1": "alarm", "press_2": "normal"}
    assert again.mqtt is not None
    retained = {t: json.loads(p) for t, p in again.mqtt.retained_state().items()}
    assert set(retained) == {f"edge-asd/edge-agent/{m}/alarm" for m in ("press_1", "press_2")} | {
        "edge-asd/edge-agent/state"
    }  # and the agent's own health
    assert retained["edge-asd/edge-agent/press_1/alarm"]["window"] == 2  # the restored raise
    assert retained["edge-asd/edge-agent/press_2/alarm"]["decision"] == "normal"  # start state
    assert "window" not in retained["edge-asd/edge-agent/press_2/alarm"]


def test_tune_takes_the_monitors_history(
    bundle_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from edge_agent.runtime.history import ScoreHistory

    path = write(
        tmp_path,
        f"""
bundle: {bundle_dir}
outbox: {{path: {tmp_path}/outbox.sqlite}}
monitors:
  - {{name: a, section: {SEC}, channel: 0}}
  - {{name: b, section: {SEC}, channel: 1}}
""",
    )
    rng = np.random.default_rng(1)
    h = ScoreHistory(tmp_path / "scores.b.bin", 30.0, 100_000)
    t0 = time.time() - 3 * 3600
    for i in range(1000):
        h.append(t0 + 10 * i, float(rng.normal(1.0, 0.1)), 1.0, anomalous=False, in_alarm=False)
    h.close()
    code, out, err = run_cli(
        capsys, "tune", "-c", str(path), "--false-alarms-per-day", "1", "--dry-run"
    )
    assert code == 2 and "--monitor: required (the config lists a, b)" in err
    code, out, err = run_cli(
        capsys,
        "tune",
        "-c",
        str(path),
        "--monitor",
        "a",
        "--false-alarms-per-day",
        "1",
        "--dry-run",
    )
    assert code == 2 and "scores.a.bin" in err  # a has no history yet
    code, out, err = run_cli(
        capsys,
        "tune",
        "-c",
        str(path),
        "--monitor",
        "b",
        "--false-alarms-per-day",
        "1",
        "--dry-run",
    )
    assert code == 0, err
    assert "scores.b.bin: 1000 windows" in out and "dry run" in out


@pytest.mark.parametrize("cap_kb", [5000, 1])
def test_alarm_clip_is_published_over_mqtt_up_to_the_cap(
    bundle_dir: Path,
    clips: tuple[Path, Path, float],
    tmp_path: Path,
    mqtt_broker: Callable[..., Broker],
    cap_kb: int,
) -> None:
    """evidence.mqtt_max_kilobytes: the stored clip's bytes on <monitor>/evidence/<file>, the
    sha256 the alarm names; a clip over the cap stays on the device only."""
    import hashlib

    b = mqtt_broker()
    cfg = load_config(
        two_replays(
            bundle_dir,
            clips,
            tmp_path,
            f"""mqtt: {{host: 127.0.0.1, \
port: {b.port}}}
evidence: {{folder: {tmp_path}/clips, mqtt_max_kilobytes: {cap_kb}}}""",
        )
    )
    (tmp_path / "clips").mkdir()
    sub = Subscriber(b, ["edge-asd/+/+/evidence/#", "edge-asd/+/+/alarm"])
    try:
        assert Agent(cfg).run(install_signals=False) == 0
        assert sub.wait_for(lambda m: any(t.endswith("/press_1/alarm") for t, *_ in m))
        ref = json.loads(sub.on("edge-asd/edge-agent/press_1/alarm")[-1])["evidence"]
        on_disk = (tmp_path / "clips" / ref["file"]).read_bytes()
        assert hashlib.sha256(on_disk).hexdigest() == ref["sha256"]
        topic = f"edge-asd/edge-agent/press_1/evidence/{ref['file']}"
        if cap_kb == 1:  # ~100 kB of FLAC: over the cap
            time.sleep(0.5)
            assert not [t for t, *_ in sub.messages if "/evidence/" in t]
        else:
            assert sub.wait_for(lambda m: any(t == topic for t, *_ in m))
            assert sub.on(topic) == [on_disk]
            order = [t for t, *_ in sub.messages]
            assert order.index("edge-asd/edge-agent/press_1/alarm") < order.index(topic)
    finally:
        sub.close()


def test_metrics_textfile_has_a_series_per_monitor(
    bundle_dir: Path,
    clips: tuple[Path, Path, float],
    tmp_path: Path,
) -> None:
    """The real agent with `metrics.textfile`: node-exporter's file carries each machine's
    score, alarm and counters (labels device_id, monitor)."""
    import re

    prom = tmp_path / "edge_asd.prom"
    cfg = load_config(two_replays(bundle_dir, clips, tmp_path, f"metrics: {{textfile: {prom}}}"))
    assert Agent(cfg).run(install_signals=False) == 0
    text = prom.read_text()

    def value(metric: str, monitor: str) -> float:
        m = re.search(
            rf'^{metric}{{device_id="edge-agent",monitor="{monitor}"}} (\S+)$', text, re.M
        )
        assert m, (metric, monitor, text)
        return float(m.group(1))

    assert value("edge_asd_windows_scored_total", "press_1") == 3
    assert value("edge_asd_windows_scored_total", "press_2") == 3
    assert value("edge_asd_alarm", "press_1") == 1 and value("edge_asd_alarm", "press_2") == 0
    assert value("edge_asd_alarms_raised_total", "press_1") == 1
    assert value("edge_asd_agent_running", "") == 0  # written once more at shutdown


def test_record_takes_one_machines_input_with_monitor(
    tmp_path: Path,
    fake_mic: FakeMic,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`record --monitor NAME` records that machine's channel of the shared interface (the
    config's monitors: list); without --monitor a one-machine command asks for it."""
    from edge_agent.audio.files import read_wav

    rng = np.random.default_rng(3)
    x = (0.2 * rng.standard_normal((16000 * 12, 2))).astype(np.float32)
    name = fake_mic(x, channels=2)
    path = write(
        tmp_path,
        f"""
source: {{device: {name}}}
monitors:
  - {{name: left, section: fan_section_00, channel: 0}}
  - {{name: right, section: fan_section_01, channel: 1}}
""",
    )
    out = tmp_path / "data"
    code, _, err = run_cli(capsys, "record", str(out), "-c", str(path), "--count", "1")
    assert code == 2 and "--monitor: required (the config lists left, right)" in err
    code, _, err = run_cli(
        capsys,
        "record",
        str(out),
        "-c",
        str(path),
        "--monitor",
        "right",
        "--channel",
        "0",
        "--count",
        "1",
    )
    assert code == 2 and "--monitor and --channel" in err
    code, _, err = run_cli(
        capsys, "record", str(out), "-c", str(path), "--monitor", "right", "--count", "1", "--quiet"
    )
    assert code == 0, err
    (clip,) = sorted((out / "fan" / "train").glob("section_01_*.wav"))
    y, rate = read_wav(clip)
    assert rate == 16000
    np.testing.assert_allclose(y, x[: y.size, 1], atol=1e-4)  # channel 1, not 0 (16-bit WAV)


def test_device_names_and_indices_group_whatever_their_spelling() -> None:
    from edge_agent.config.monitors import MonitorSettings, device_key

    assert device_key(2) == device_key(" 2") == 2 and device_key("USB Audio") == "usb audio"
    ms = [
        MonitorSettings("a", "s", SourceSettings(device="USB Audio", channel=0)),
        MonitorSettings("b", "s", SourceSettings(device="usb audio", channel=1)),
    ]
    (g,) = capture_groups(ms)  # one stream: a device is opened once
    assert g.lanes == (0, 1)


def test_a_fault_that_outlasts_a_device_loss_is_reported_again(tmp_path: Path) -> None:
    """Silent microphone -> device lost -> device back, still silent: `device_ok`, then the next
    window is a `sensor_fault` again (the fault is not hidden behind device_ok)."""
    from edge_agent.config.monitors import MonitorSettings
    from edge_agent.runtime.monitor import Files, Monitor
    from edge_agent.runtime.windows import Window

    events: list[dict[str, Any]] = []
    m = Monitor(
        MonitorSettings("press", SEC),
        "dev",
        lambda e: events.append(dict(e)),
        Files(),
        None,
        (16000, 16000, 16000),
    )
    silent = Window(np.zeros(16000, np.float32), 0.0, 0)
    m.process(silent, None)  # type: ignore[arg-type]  # a fault is never scored
    m.process(silent, None)  # type: ignore[arg-type]
    m.device_back()
    m.process(silent, None)  # type: ignore[arg-type]
    assert [e["event"] for e in events] == ["sensor_fault", "device_ok", "sensor_fault"]
    assert all(e["monitor"] == "press" for e in events)


def test_adapting_a_shared_section_says_who_else_it_changes(tmp_path: Path) -> None:
    from edge_agent.commands.overrides import sharing_note

    cfg = read_config(
        write(
            tmp_path,
            """
monitors:
  - {name: a, section: pump_section_00, channel: 0}
  - {name: b, section: pump_section_00, channel: 1}
  - {name: c, section: fan_section_00, channel: 2}
""",
        )
    )
    assert sharing_note(cfg, "a") == (
        "note: section pump_section_00 also scores b: the new version changes it for them too"
    )
    assert sharing_note(cfg, "c") is None
