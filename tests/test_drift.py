"""Score drift: in the real agent's score events (seeded from the history after a restart), on
its MQTT topic and as a Home Assistant discovery entity, with a real mosquitto."""

from __future__ import annotations

import json
import os
import shutil
import statistics
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from collect_sink import Collect
from mqtt_fixtures import Broker, Subscriber

from edge_agent.agent import Agent
from edge_agent.commands.demo import load_demo
from edge_agent.config.load import load_config

M = 3


def _cfg(tmp: Path, **extra: Any) -> Any:
    demo = load_demo()
    if not (tmp / "bundle").exists():
        shutil.copytree(demo.bundle, tmp / "bundle")
    return load_config(
        None,
        {
            "bundle": str(tmp / "bundle"),
            "section": demo.section,
            "source.kind": "files",
            "source.files": [str(p) for p in demo.paths],
            "outbox.path": str(tmp / "ob.sqlite"),
            "history.replays": True,
            "history.drift_windows": M,
            "log.stdout": False,
            **extra,
        },
    )


def _check_drift(scores: list[Any], known: list[float]) -> None:
    """Every score event's drift is the median of the last M scores minus its threshold."""
    for e in scores:
        known.append(e["score"])
        if len(known) < M:
            assert "drift" not in e
        else:
            want = statistics.median(known[-M:]) - e["threshold"]
            assert e["drift"] == pytest.approx(want, abs=1e-5)


def test_drift_in_score_events_and_seeded_after_restart(tmp_path: Path) -> None:
    c = Collect()
    assert Agent(_cfg(tmp_path), sinks=[c]).run(install_signals=False) == 0
    first = c.scores()
    assert len(first) == len(load_demo().paths)
    known: list[float] = []
    _check_drift(first, known)
    assert "drift" not in first[0] and "drift" in first[M - 1]
    # the faulty clips at the end raise the recent median far above the threshold
    assert first[-1]["drift"] > 0 > min(e.get("drift", 0) for e in first)

    c2 = Collect()  # restart: the last M scores come back from the history file
    assert Agent(_cfg(tmp_path), sinks=[c2]).run(install_signals=False) == 0
    second = c2.scores()
    assert "drift" in second[0]
    _check_drift(second, known)

    c3 = Collect()  # history off: nothing to seed from, nothing written
    assert (
        Agent(_cfg(tmp_path / "off", **{"history.enabled": False}), sinks=[c3]).run(
            install_signals=False
        )
        == 0
    )
    assert "drift" not in c3.scores()[0] and "drift" in c3.scores()[M - 1]
    assert not list((tmp_path / "off").glob("scores.*.bin"))

    # a file replay records nothing unless history.replays says so
    assert (
        Agent(_cfg(tmp_path / "replay", **{"history.replays": False}), sinks=[Collect()]).run(
            install_signals=False
        )
        == 0
    )
    assert not list((tmp_path / "replay").glob("scores.*.bin"))


def test_drift_on_mqtt_and_home_assistant_entity(
    tmp_path: Path, mqtt_broker: Callable[..., Broker]
) -> None:
    """The real agent with MQTT on: PCM on stdin is fed only once the sink is connected, so
    the live (QoS 0) drift messages are not dropped for want of a connection."""
    b = mqtt_broker()
    sub = Subscriber(b, ["edge-asd/#", "homeassistant/#"])
    demo = load_demo()
    sec = demo.section
    cfg = _cfg(
        tmp_path,
        **{
            "source.kind": "stdin",
            "queue_size": 64,
            "mqtt.host": "127.0.0.1",
            "mqtt.port": b.port,
            "mqtt.device_id": "dev1",
            "mqtt.ha_discovery": True,
            "mqtt.reconnect_min": 0.1,
        },
    )
    rfd, wfd = os.pipe()
    with os.fdopen(rfd, "rb") as rf:
        agent = Agent(cfg, stdin=rf)
        c = Collect()
        agent.sinks.append(c)
        t = threading.Thread(target=agent.run, kwargs={"install_signals": False})
        t.start()
        assert agent.mqtt is not None and agent.mqtt.connected.wait(20)
        with os.fdopen(wfd, "wb") as wf:
            for p in demo.paths:
                wf.write(p.read_bytes()[44:])  # 16 kHz s16le mono PCM after the WAV header
        t.join(60)
        assert not t.is_alive()
    scores = c.scores()
    drifts = [e["drift"] for e in scores if "drift" in e]
    assert len(scores) == len(demo.paths) and len(drifts) == len(scores) - (M - 1)
    topic = f"edge-asd/dev1/{sec}/drift"
    assert sub.wait_for(lambda m: sum(t == topic for t, _, _ in m) >= len(drifts))
    got = [json.loads(p) for p in sub.on(topic)]
    assert [g["drift"] for g in got] == drifts
    assert all(g["section"] == sec and g["ts"].endswith("Z") for g in got)
    disc = json.loads(sub.on(f"homeassistant/sensor/dev1/{sec}_drift/config")[0])
    assert disc["state_topic"] == topic and disc["unique_id"] == f"dev1_{sec}_drift"
    assert disc["value_template"] == "{{ value_json.drift }}"
    assert disc["availability_topic"] == "edge-asd/dev1/availability"
    assert disc["device"]["identifiers"] == ["edge_asd_dev1"]
    sub.close()
