from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import pytest
from mqtt_fixtures import Broker, Certs, Subscriber

from edge_agent.decision import AlarmState
from edge_agent.events import WindowEvent, window_event
from edge_agent.sinks.mqtt import MqttError, MqttSettings, MqttSink, TlsSettings, make_client
from edge_agent.sinks.outbox import Outbox, OutboxSettings

SEC = "fan_section_00"


def settings(b: Broker, **kw: object) -> MqttSettings:
    base: dict[str, object] = dict(
        host="127.0.0.1",
        port=b.port,
        device_id="dev1",
        reconnect_min=0.1,
        reconnect_max=0.5,
        connect_timeout=5.0,
    )
    base.update(kw)
    return MqttSettings(**base)  # type: ignore[arg-type]


def sink(tmp_path: Path, s: MqttSettings, name: str = "o.sqlite") -> MqttSink:
    return MqttSink(s, Outbox(OutboxSettings(path=str(tmp_path / name))), [SEC], "v1")


def window(i: int, kind: Literal["score", "alarm"] = "alarm", score: float = 0.9,
           decision: AlarmState = "alarm") -> WindowEvent:
    return window_event(kind, float(i), "dev1", section=SEC, window=i, score=score,
                        threshold=0.5, anomalous=score > 0.5, decision=decision, votes=3,
                        model_version="v1", source="test")


def alarm(i: int, decision: AlarmState = "alarm") -> WindowEvent:
    return window(i, "alarm", decision=decision)


def test_anonymous_availability_score_alarm(
    tmp_path: Path, mqtt_broker: Callable[..., Broker]
) -> None:
    b = mqtt_broker()
    sub = Subscriber(b, ["edge-asd/#"])
    s = sink(tmp_path, settings(b))
    s.start()
    s.handle(window(0, "score", score=0.1, decision="normal"))
    s.handle(alarm(1))
    assert sub.wait_for(lambda m: any(t.endswith("/alarm") for t, _, _ in m))
    assert sub.on("edge-asd/dev1/availability")[0] == b"online"
    assert json.loads(sub.on(f"edge-asd/dev1/{SEC}/score")[0])["score"] == 0.1
    assert json.loads(sub.on(f"edge-asd/dev1/{SEC}/alarm")[0])["window"] == 1
    assert s.flush(5) and len(s.outbox) == 0  # acked rows are deleted
    s.close()
    assert sub.wait_for(lambda m: ("edge-asd/dev1/availability", b"offline", False) in m)
    sub.close()
    late = Subscriber(b, ["edge-asd/#"])  # retained: alarm and availability
    assert late.wait_for(lambda m: len(m) >= 2, 3)
    got = {t: (p, r) for t, p, r in late.messages}
    assert got["edge-asd/dev1/availability"] == (b"offline", True)
    assert got[f"edge-asd/dev1/{SEC}/alarm"][1] is True
    late.close()


def test_last_will_on_lost_connection(tmp_path: Path, mqtt_broker: Callable[..., Broker]) -> None:
    b = mqtt_broker()
    sub = Subscriber(b, ["edge-asd/dev1/availability"])
    s = sink(tmp_path, settings(b, keepalive=1))
    s.start()
    assert sub.wait_for(lambda m: bool(m) and m[-1][1] == b"online")
    s.client._sock.close()  # connection dies without DISCONNECT -> broker sends the will
    s.client.loop_stop()
    assert sub.wait_for(lambda m: m[-1][1] == b"offline", 10)
    sub.close()


def test_password_ok_and_wrong(tmp_path: Path, mqtt_broker: Callable[..., Broker]) -> None:
    b = mqtt_broker(users={"agent": "s3cret"})
    pw = tmp_path / "pw"
    pw.write_text("s3cret\n")
    s = sink(tmp_path, settings(b, username="agent", password_file=str(pw)))
    s.start()
    assert s.connected.is_set()
    s.close()
    bad = sink(tmp_path, settings(b, username="agent", password="nope"), "o2.sqlite")
    with pytest.raises(MqttError, match=r"refused.*[Nn]ot authorized"):
        bad.start()


def test_tls_ok_and_wrong_ca(
    tmp_path: Path, mqtt_broker: Callable[..., Broker], mqtt_certs: Certs
) -> None:
    b = mqtt_broker(certs=mqtt_certs)
    s = sink(tmp_path, settings(b, tls=TlsSettings(ca_file=str(mqtt_certs.ca))))
    s.start()
    assert s.connected.is_set()
    s.close()
    bad = sink(tmp_path, settings(b, tls=TlsSettings(ca_file=str(mqtt_certs.other_ca))), "o2")
    with pytest.raises(MqttError, match=r"mqtt\.tls\.ca_file: broker certificate not trusted"):
        bad.start()


def test_ha_discovery_republished_on_ha_online(
    tmp_path: Path, mqtt_broker: Callable[..., Broker]
) -> None:
    b = mqtt_broker()
    sub = Subscriber(b, ["homeassistant/+/+/+/config"])
    s = sink(tmp_path, settings(b, ha_discovery=True))
    s.start()
    topic = f"homeassistant/binary_sensor/dev1/{SEC}_alarm/config"
    assert sub.wait_for(lambda m: len(m) >= 2)
    cfg = json.loads(sub.on(topic)[0])
    assert cfg["device_class"] == "problem" and cfg["unique_id"] == f"dev1_{SEC}_alarm"
    assert cfg["state_topic"] == f"edge-asd/dev1/{SEC}/alarm"
    assert cfg["availability_topic"] == "edge-asd/dev1/availability"
    assert json.loads(sub.on(f"homeassistant/sensor/dev1/{SEC}_score/config")[0])["device"]
    n = len(sub.messages)
    ha = make_client(MqttSettings(host="127.0.0.1", port=b.port, client_id="ha"))
    ha.connect("127.0.0.1", b.port)
    ha.loop_start()
    ha.publish("homeassistant/status", "online", qos=1).wait_for_publish(5)
    assert sub.wait_for(lambda m: len(m) >= n + 2)
    assert s.discovery_published == 2
    ha.disconnect()
    ha.loop_stop()
    s.close()
    sub.close()


def test_broker_killed_midstream_loses_no_alarm(
    tmp_path: Path, mqtt_broker: Callable[..., Broker]
) -> None:
    b = mqtt_broker(persistence=True)
    sub = Subscriber(b, [f"edge-asd/dev1/{SEC}/alarm"], persistent=True)
    s = sink(tmp_path, settings(b))
    s.start()
    for i in range(5):
        s.handle(alarm(i))
    assert s.flush(5)
    assert sub.wait_for(lambda m: len(m) >= 5, 5)
    time.sleep(0.5)  # the broker saves on every change: the subscriber's session is on disk
    b.kill()
    for i in range(5, 15):  # broker down: stored in the outbox
        s.handle(alarm(i))
    time.sleep(0.3)
    assert len(s.outbox) == 10
    b.start()
    assert s.flush(15)
    assert sub.wait_for(lambda m: len({json.loads(p)["window"] for _, p, _ in m}) == 15, 15)
    windows = [json.loads(p)["window"] for _, p, _ in sub.messages]
    assert sorted(set(windows)) == list(range(15))
    after = [w for w in windows if w >= 5]
    assert after == sorted(after)  # oldest first
    s.close()
    sub.close()


def test_agent_restart_while_broker_down_delivers_oldest_first(
    tmp_path: Path, mqtt_broker: Callable[..., Broker]
) -> None:
    b = mqtt_broker(persistence=True)
    b.kill()
    s1 = sink(tmp_path, settings(b, connect_timeout=0.3))
    s1.start()  # broker unreachable: not an error, keeps retrying
    for i in range(6):
        s1.handle(alarm(i))
    s1.close(timeout=0.2)
    assert len(Outbox(OutboxSettings(path=str(tmp_path / "o.sqlite")))) == 6
    b.start()
    sub = Subscriber(b, [f"edge-asd/dev1/{SEC}/alarm"])
    s2 = sink(tmp_path, settings(b))  # "restarted agent": same outbox file
    s2.start()
    assert s2.flush(10)
    assert sub.wait_for(lambda m: len(m) >= 6)
    assert [json.loads(p)["window"] for _, p, _ in sub.messages] == list(range(6))
    s2.close()
    sub.close()
