from __future__ import annotations

import json
import logging
import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import pytest
from mqtt_fixtures import Broker, Certs, Subscriber
from waiting import wait_until

from edge_agent.config.sinks import MqttSettings, OutboxSettings, TlsSettings
from edge_agent.events import AlarmState, WindowEvent, window_event
from edge_agent.sinks.mqtt import MqttError, MqttSink, make_client
from edge_agent.sinks.outbox import Outbox

SEC = "fan_section_00"


def settings(b: Broker, **kw: object) -> MqttSettings:
    base: dict[str, object] = {
        "host": "127.0.0.1",
        "port": b.port,
        "device_id": "dev1",
        "reconnect_min": 0.1,
        "reconnect_max": 0.5,
        "connect_timeout": 5.0,
    }
    base.update(kw)
    return MqttSettings(**base)  # type: ignore[arg-type]


def sink(tmp_path: Path, s: MqttSettings, name: str = "o.sqlite") -> MqttSink:
    return MqttSink(s, Outbox(OutboxSettings(path=str(tmp_path / name))), [SEC], "v1")


def window(
    i: int,
    kind: Literal["score", "alarm"] = "alarm",
    score: float = 0.9,
    decision: AlarmState = "alarm",
) -> WindowEvent:
    return window_event(
        kind,
        float(i),
        "dev1",
        section=SEC,
        window=i,
        score=score,
        threshold=0.5,
        anomalous=score > 0.5,
        decision=decision,
        votes=3,
        model_version="v1",
        source="test",
    )


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
    s.client._sock.close()  # connection dies without DISCONNECT -> broker sends the will  # noqa: SLF001 -- the test observes or drives an internal the API keeps private
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
    # A refusal at start is reported (health notice, error log) but does not stop the agent:
    # a broker-side change must not kill local scoring (see sinks.mqtt's docstring).
    bad = sink(tmp_path, settings(b, username="agent", password="nope"), "o2.sqlite")
    bad.start()
    notices = bad.take_notices()
    assert [n for n, _ in notices] == ["mqtt_auth_failed"]
    assert re.search(r"refused the login.*[Nn]ot authorized", notices[0][1])
    assert not bad.connected.is_set()
    bad.handle(alarm(0))  # kept for later
    assert len(bad.outbox) == 1
    bad.close(timeout=0.2)


def test_tls_ok_and_wrong_ca(
    tmp_path: Path, mqtt_broker: Callable[..., Broker], mqtt_certs: Certs
) -> None:
    b = mqtt_broker(certs=mqtt_certs)
    s = sink(tmp_path, settings(b, tls=TlsSettings(ca_file=str(mqtt_certs.ca))))
    s.start()
    assert s.connected.is_set()
    s.close()
    bad = sink(tmp_path, settings(b, tls=TlsSettings(ca_file=str(mqtt_certs.other_ca))), "o2")
    bad.start()  # reported, retried, not fatal
    notices = bad.take_notices()
    assert [n for n, _ in notices] == ["mqtt_tls_failed"]
    assert notices[0][1].startswith("mqtt.tls.ca_file: broker certificate not trusted")
    assert not bad.connected.is_set()
    bad.close(timeout=0.2)
    with pytest.raises(MqttError, match=r"mqtt\.tls: cannot load certificates"):
        sink(tmp_path, settings(b, tls=TlsSettings(ca_file=str(tmp_path / "missing.crt"))), "o3")


def test_ha_discovery_republished_on_ha_online(
    tmp_path: Path, mqtt_broker: Callable[..., Broker]
) -> None:
    b = mqtt_broker()
    sub = Subscriber(b, ["homeassistant/+/+/+/config"])
    s = sink(tmp_path, settings(b, ha_discovery=True))
    s.start()
    topic = f"homeassistant/binary_sensor/dev1/{SEC}_alarm/config"
    entities = {
        f"homeassistant/{kind}/dev1/{SEC}_{name}/config"
        for kind, name in (
            ("binary_sensor", "alarm"),
            ("sensor", "score"),
            ("sensor", "drift"),
            ("binary_sensor", "sensor"),
        )
    }
    assert sub.wait_for(lambda m: entities <= {t for t, *_ in m})  # all four, in any order
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
    assert sub.wait_for(lambda m: len(m) >= n + len(entities))
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


def retained_on(b: Broker, topic: str, timeout: float = 10.0, **auth: Any) -> bytes | None:
    """The broker's retained message on `topic`, as a newly subscribing client sees it."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        late = Subscriber(b, [topic], **auth)
        got = late.wait_for(lambda m: any(r for _, _, r in m), 1.0)
        late.close()
        if got:
            return next(p for _, p, r in late.messages if r)
    return None


def test_retained_state_republished_when_broker_lost_it(
    tmp_path: Path, mqtt_broker: Callable[..., Broker]
) -> None:
    """A broker restarted without persistence forgets retained messages: the sink re-publishes
    the alarm state on reconnect (not through the outbox: it is a state, not a record)."""
    b = mqtt_broker()
    topic = f"edge-asd/dev1/{SEC}/alarm"
    s = sink(tmp_path, settings(b))
    s.start()
    s.handle(alarm(3))
    assert s.flush(5)
    raised = retained_on(b, topic)
    assert raised is not None and json.loads(raised)["window"] == 3
    b.kill()
    b.start()  # empty broker: no retained alarm any more
    assert s.connected.wait(10)
    assert retained_on(b, topic) == raised
    assert len(s.outbox) == 0
    s.close()


def test_disconnect_and_reconnect_logged_once_without_flood(
    tmp_path: Path, mqtt_broker: Callable[..., Broker], caplog: pytest.LogCaptureFixture
) -> None:
    b = mqtt_broker()
    s = sink(tmp_path, settings(b, reconnect_min=0.05, reconnect_max=0.1))
    caplog.set_level(logging.INFO, logger="edge_agent")
    s.start()
    assert s.connected.is_set()
    b.kill()
    # ~20 attempts while down (one every 0.1 s)
    assert wait_until(lambda: s._failures >= 20, 20)  # noqa: SLF001 -- the test observes or drives an internal the API keeps private
    b.start()
    assert s.connected.wait(10)
    msgs = [r.getMessage() for r in caplog.records]
    down = [m for m in msgs if "disconnected from" in m]
    assert len(down) == 1 and re.search(r"\(reason \d+: .+\)", down[0]), down
    unreachable = [m for m in msgs if "unreachable" in m]
    counts = [int(m.split("(")[1].split()[0]) for m in unreachable]  # "(N failed attempts"
    assert counts and all(n & (n - 1) == 0 for n in counts), counts  # 1, 2, 4, 8, 16 only
    assert len(unreachable) <= 6  # not one line per attempt
    back = [m for m in msgs if "reconnected to" in m]
    assert len(back) == 1 and re.search(r"after [\d.]+ s down \(\d+ failed attempts\)", back[0])
    s.close()


def test_backlog_delivered_within_seconds_of_broker_return(
    tmp_path: Path, mqtt_broker: Callable[..., Broker]
) -> None:
    """With the DEFAULT reconnect settings. The broker stays down 9.5 s: a doubling backoff
    capped at 60 s (the old default) then waits 8 s between attempts, so the old code
    delivered 5-7 s after the broker was back (and 12-17 s after longer outages); the cap
    (`reconnect_max`, 2 s) and the pipelined drain bring 50 queued alarms in well under 5 s
    (generous for a loaded 2-core box). Slow on purpose: the outage must outgrow the cap."""
    d = MqttSettings()
    b = mqtt_broker(persistence=True)
    sub = Subscriber(b, [f"edge-asd/dev1/{SEC}/alarm"], persistent=True)
    s = sink(tmp_path, settings(b, reconnect_min=d.reconnect_min, reconnect_max=d.reconnect_max))
    s.start()
    assert s.connected.is_set()
    time.sleep(0.5)  # the broker saves on every change: the subscriber's session is on disk
    b.kill()
    killed = time.monotonic()
    n = 50
    for i in range(n):
        s.handle(alarm(i))
    time.sleep(max(0.0, killed + 9.5 - time.monotonic()))
    assert len(s.outbox) == n and not s.connected.is_set()
    b.start()  # accepts connections from here
    t0 = time.monotonic()
    assert sub.wait_for(lambda m: len({json.loads(p)["window"] for _, p, _ in m}) == n, 15)
    elapsed = time.monotonic() - t0
    assert elapsed < 5.0, f"backlog took {elapsed:.1f} s after the broker was back"
    assert s.flush(5)
    s.close()
    sub.close()


def test_password_changed_at_runtime_reported_retried_recovered(
    tmp_path: Path, mqtt_broker: Callable[..., Broker]
) -> None:
    """The broker comes back with another password: the sink reports `mqtt_auth_failed` once,
    keeps the alarms in the outbox and retries with backoff; the password file is re-read
    before each retry, so updating it is enough: `mqtt_ok`, and the backlog arrives."""
    b = mqtt_broker(users={"agent": "old-pw"})
    pw = tmp_path / "pw"
    pw.write_text("old-pw\n")
    s = sink(tmp_path, settings(b, username="agent", password_file=str(pw), refused_retry_max=0.5))
    s.start()
    assert s.connected.is_set() and s.take_notices() == []
    subprocess.run(
        ["mosquitto_passwd", "-b", str(b.dir / "passwd"), "agent", "new-pw"],
        check=True,
        capture_output=True,
    )
    b.stop()
    b.start()
    assert wait_until(lambda: s._failures >= 3, 15)  # refused, and retried  # noqa: SLF001 -- the test observes or drives an internal the API keeps private
    notices = s.take_notices()
    assert [n for n, _ in notices] == ["mqtt_auth_failed"]  # once, not once per retry
    assert "refused the login" in notices[0][1]
    assert s._thread.is_alive() and not s.connected.is_set()  # noqa: SLF001 -- the test observes or drives an internal the API keeps private
    s.handle(alarm(7))
    assert len(s.outbox) == 1
    sub = Subscriber(b, [f"edge-asd/dev1/{SEC}/alarm"], username="agent", password="new-pw")
    pw.write_text("new-pw\n")  # the operator fixes the secret; no restart
    assert s.connected.wait(15)
    assert [n for n, _ in s.take_notices()] == ["mqtt_ok"]
    assert sub.wait_for(lambda m: any(json.loads(p)["window"] == 7 for _, p, _ in m), 10)
    assert s.flush(5)
    s.close()
    sub.close()


def test_agent_restart_in_alarm_restores_state_and_retained_topic(
    tmp_path: Path, mqtt_broker: Callable[..., Broker]
) -> None:
    """Agent in alarm; broker restarted without persistence (retained lost) and agent
    restarted: the retained alarm topic equals the restored state; the restored run of normal
    windows then clears the alarm after `clear_after` normal windows counted across runs."""
    from edge_agent.agent import Agent
    from edge_agent.commands.demo import load_demo
    from edge_agent.config.load import load_config
    from edge_agent.runtime.decision import state_path

    demo = load_demo()
    b = mqtt_broker()
    events = tmp_path / "events.jsonl"

    def run(threshold: float, windows: int) -> list[dict[str, object]]:
        before = len(events.read_text().splitlines()) if events.exists() else 0
        cfg = load_config(
            None,
            {
                "bundle": str(demo.bundle),
                "section": demo.section,
                "source.kind": "files",
                "source.files": [str(demo.paths[0])] * windows,
                "decision.threshold": threshold,
                "log.stdout": False,
                "log.jsonl_file": str(events),
                "mqtt.host": "127.0.0.1",
                "mqtt.port": b.port,
                "mqtt.device_id": "dev1",
                "mqtt.reconnect_min": 0.1,
                "mqtt.reconnect_max": 0.5,
                "outbox.path": str(tmp_path / "outbox.sqlite"),
            },
        )
        assert Agent(cfg).run(install_signals=False) == 0
        lines = events.read_text().splitlines()[before:]
        return [e for e in map(json.loads, lines) if e["kind"] == "alarm"]

    topic = f"edge-asd/dev1/{demo.section}/alarm"
    raised = run(-1e9, 3)  # every window anomalous: raised at the 3rd (k=3)
    assert [e["decision"] for e in raised] == ["alarm"]
    saved = json.loads(state_path(tmp_path / "outbox.sqlite").read_text())
    assert saved["state"] == "alarm" and saved["last_alarm"] == raised[0]
    b.kill()
    b.start()  # no persistence: the broker forgot the retained alarm
    assert run(1e9, 1) == []  # one normal window: still in alarm (clear_after 3), no event
    retained = retained_on(b, topic)
    assert retained is not None and json.loads(retained) == raised[0]
    cleared = run(1e9, 2)  # 1 (restored) + 2 normal windows = clear_after
    assert [(e["decision"], e["window"]) for e in cleared] == [("normal", 1)]
    retained = retained_on(b, topic)
    assert retained is not None and json.loads(retained) == cleared[0]
    assert json.loads(state_path(tmp_path / "outbox.sqlite").read_text())["state"] == "normal"


def test_agent_with_refused_login_keeps_scoring_and_reports(
    tmp_path: Path, mqtt_broker: Callable[..., Broker]
) -> None:
    """A wrong password at start: the agent runs, scores every window, and the health event
    `mqtt_auth_failed` reaches the local sinks (and waits in the outbox for the broker)."""
    from edge_agent.agent import Agent
    from edge_agent.commands.demo import load_demo
    from edge_agent.config.load import load_config

    demo = load_demo()
    b = mqtt_broker(users={"agent": "right"})
    events = tmp_path / "events.jsonl"
    (tmp_path / "pw").write_text("wrong\n")
    cfg = load_config(
        None,
        {
            "bundle": str(demo.bundle),
            "section": demo.section,
            "source.kind": "files",
            "source.files": [str(demo.paths[0])] * 2,
            "log.stdout": False,
            "log.jsonl_file": str(events),
            "mqtt.host": "127.0.0.1",
            "mqtt.port": b.port,
            "mqtt.username": "agent",
            "mqtt.password_file": str(tmp_path / "pw"),
            "outbox.path": str(tmp_path / "outbox.sqlite"),
        },
    )
    assert Agent(cfg).run(install_signals=False) == 0
    got = [json.loads(x) for x in events.read_text().splitlines()]
    assert [e["window"] for e in got if e["kind"] == "score"] == [0, 1]
    auth = [e for e in got if e["kind"] == "health" and e["event"] == "mqtt_auth_failed"]
    assert len(auth) == 1 and "refused the login" in auth[0]["error"]
    assert auth[0]["faults"] == ["mqtt_auth_failed"]
    rows = Outbox(OutboxSettings(path=str(tmp_path / "outbox.sqlite"))).pending(limit=10)
    assert sorted(r.topic for r in rows) == [  # the health events (the login's, the hearing
        # check's hearing_ok), the monitor's input and hearing states
        f"edge-asd/edge-agent/{demo.section}/hearing",
        f"edge-asd/edge-agent/{demo.section}/sensor",
        "edge-asd/edge-agent/health",
        "edge-asd/edge-agent/health",
    ]
