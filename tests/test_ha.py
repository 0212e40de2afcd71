"""Home Assistant discovery (edge_agent.sinks.ha): the payloads keep HA's own rules
(tests/ha_rules.py), the entity ids HA makes are the ones the docs name, the Pi is a named
device, a reload re-sends the model version, and the agent's health is a retained state; with
a real mosquitto and the real agent."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from ha_rules import HaRuleError, check_discovery, check_templates, entity_ids
from mqtt_fixtures import Broker, Subscriber

from edge_agent.agent import Agent
from edge_agent.config.agent import AgentConfig
from edge_agent.config.load import load_config, read_config
from edge_agent.config.sinks import MqttSettings, OutboxSettings
from edge_agent.events import health_event, status_event, window_event
from edge_agent.sinks.agent_state import HOLD_SECONDS, AgentState
from edge_agent.sinks.ha import AGENT_ENTITIES, MACHINE_ENTITIES, Machine, discovery_messages
from edge_agent.sinks.mqtt import MqttSink
from edge_agent.sinks.outbox import Outbox

DOCS = Path(__file__).resolve().parents[1] / "docs"
ENTITY_ID = re.compile(
    r"\b((?:binary_sensor|sensor|button|image|event|camera|select|text)"
    r"\.[a-z0-9_]+)\b"
)


def doc_yaml_blocks(doc: str) -> list[str]:
    return re.findall(r"```yaml\n(.*?)```", (DOCS / doc).read_text(), re.S)


def doc_config(doc: str, marker: str, tmp_path: Path) -> AgentConfig:
    """The first ```yaml block of `doc` holding `marker` and `ha_discovery: true`, as the agent
    reads it (verbatim, but for the bundle: the shipped demo's, which exists here)."""
    from edge_agent.commands.demo import load_demo

    block = next(b for b in doc_yaml_blocks(doc) if marker in b and "ha_discovery: true" in b)
    p = tmp_path / f"{doc}.yaml"
    p.write_text(block.replace("/opt/edge-agent/bundle", str(load_demo().bundle)))
    return read_config(p)


def discovered(cfg: AgentConfig, model_version: str = "v1-abc") -> list[tuple[str, str]]:
    machines = [Machine(m.name, m.section) for m in cfg.monitor_list()]
    return discovery_messages(
        cfg.mqtt, machines, model_version, bool(cfg.monitors), frozenset({"evidence", "answers"})
    )


@pytest.mark.parametrize(
    ("doc", "marker"), [("mqtt.md", "section: fan_section_00"), ("monitors.md", "monitors:")]
)
def test_the_docs_entity_ids_are_the_ones_home_assistant_makes(
    tmp_path: Path, doc: str, marker: str
) -> None:
    """Every entity id the page names is what HA makes of the discovery for the page's own
    config (both HA before and after 2025.10), and the payloads keep HA's rules."""
    cfg = doc_config(doc, marker, tmp_path)
    made = check_discovery(discovered(cfg))
    named = set(ENTITY_ID.findall((DOCS / doc).read_text()))
    assert named, f"{doc} names no entity id"
    assert named <= set(made), f"{doc} names ids HA would not make: {sorted(named - set(made))}"
    if doc == "mqtt.md":  # its table lists every entity of the single-machine agent
        assert named == set(made)
    else:  # fan_1's seven, the Pi's two, and gearbox_1's anomaly as the example
        assert len(named) == len(MACHINE_ENTITIES) + len(AGENT_ENTITIES) + 1


def test_the_pi_is_a_named_device_and_every_machine_links_to_it(tmp_path: Path) -> None:
    """monitors.md's four machines: five HA devices, each with a name, model, manufacturer and
    sw_version (the model version included); no machine's name twice in an entity id."""
    cfg = doc_config("monitors.md", "monitors:", tmp_path)
    made = check_discovery(discovered(cfg, "v7-1234abcd"))
    devices = {p["device"]["identifiers"][0]: p["device"] for p in made.values()}
    assert set(devices) == {
        "edge_asd_hall-2-pi",
        *(f"edge_asd_hall-2-pi_{m}" for m in ("fan_1", "fan_2", "gearbox_1", "gearbox_2")),
    }
    for dev in devices.values():
        assert dev["name"] and dev["model"] and dev["manufacturer"]
        assert "v7-1234abcd" in dev["sw_version"]
    assert devices["edge_asd_hall-2-pi"]["name"] == "Edge ASD hall-2-pi"
    assert devices["edge_asd_hall-2-pi_fan_1"]["via_device"] == "edge_asd_hall-2-pi"
    anomaly = made["binary_sensor.hall_2_pi_fan_1_anomaly"]
    assert anomaly["name"] == "Anomaly" and anomaly["device"]["name"] == "fan_1 (hall-2-pi)"
    assert all(eid.count("fan_1") <= 1 for eid in made)
    score = made["sensor.hall_2_pi_fan_1_anomaly_score"]
    assert score["state_class"] == "measurement"


def test_without_the_hint_home_assistant_would_repeat_the_machine(tmp_path: Path) -> None:
    """Why `default_entity_id` / `object_id` are sent: HA's fallback names the entity after the
    device and entity names (the issue's binary_sensor.fan_1_hall_2_pi_fan_1_anomaly)."""
    cfg = doc_config("monitors.md", "monitors:", tmp_path)
    _, raw = next(m for m in discovered(cfg) if m[0].endswith("/fan_1_alarm/config"))
    payload = json.loads(raw)
    legacy = {**payload, "name": "fan_1 anomaly"}  # the old entity name on the old device name
    del legacy["default_entity_id"], legacy["object_id"]
    doubled = "binary_sensor.fan_1_hall_2_pi_fan_1_anomaly"
    assert entity_ids("binary_sensor", legacy) == (doubled, doubled)
    hinted = "binary_sensor.hall_2_pi_fan_1_anomaly"
    assert entity_ids("binary_sensor", payload) == (hinted, hinted)


@pytest.mark.parametrize(
    ("change", "rule"),
    [
        (lambda t, p: (t.replace("fan_1_alarm", "fan.1_alarm"), p), "HA ignores it"),
        (lambda t, p: (t, {**p, "state_class": "measurement"}), "state_class"),
        (
            lambda t, p: (t, {**p, "device": {**p["device"], "via_device": "edge_asd_nowhere"}}),
            "via_device",
        ),
        (
            lambda t, p: (
                t,
                {**p, "device": {k: v for k, v in p["device"].items() if k != "name"}},
            ),
            "device without a name",
        ),
        (lambda t, p: (t, {**p, "stat_topic": p["state_topic"]}), "keys HA does not know"),
        (lambda t, p: (t, {**p, "state_topic": "edge-asd/a+b/alarm"}), "whole level"),
        (lambda t, p: (t, {**p, "default_entity_id": "sensor.x"}), "not a valid binary_sensor"),
        (lambda t, p: (t, {**p, "object_id": "other"}), "disagree"),
    ],
)
def test_the_rules_catch_what_home_assistant_refuses(
    tmp_path: Path,
    change: Callable[[str, dict[str, Any]], tuple[str, dict[str, Any]]],
    rule: str,
) -> None:
    cfg = doc_config("monitors.md", "monitors:", tmp_path)
    msgs = [(t, json.loads(p)) for t, p in discovered(cfg)]
    i = next(i for i, (t, _) in enumerate(msgs) if t.endswith("/fan_1_alarm/config"))
    msgs[i] = change(*msgs[i])
    with pytest.raises(HaRuleError, match=rule):
        check_discovery([(t, json.dumps(p)) for t, p in msgs])


def test_agent_state_holds_conditions_until_they_end_and_incidents_for_a_while() -> None:
    st = AgentState("press-01", "v1-a", 1000.0)
    assert st.payload()["faults"] == []

    def score(t: float) -> Any:
        return window_event(
            "score",
            t,
            "press-01",
            section="s",
            window=0,
            score=0.1,
            threshold=0.5,
            anomalous=False,
            decision="normal",
            votes=0,
            model_version="v1-a",
            source="x",
        )

    assert st.update(
        health_event(1001.0, "press-01", "reload_failed", ["reload_failed"], error="v2: not signed")
    )
    assert st.update(
        health_event(
            1002.0, "press-01", "windows_dropped", ["scorer_behind"], monitor="fan_1", dropped=3
        )
    )
    p = st.payload()
    assert p["faults"] == ["reload_failed", "windows_dropped"]
    assert p["problems"]["windows_dropped"]["monitor"] == "fan_1"
    assert p["problems"]["reload_failed"]["error"] == "v2: not signed"
    assert not st.update(
        health_event(1003.0, "press-01", "sensor_fault", ["silence"], monitor="fan_1")
    )  # the machine's, not the agent's
    assert not st.update(score(1002.0 + HOLD_SECONDS - 1))
    assert st.update(score(1002.0 + HOLD_SECONDS))  # the incident is over
    assert st.payload()["faults"] == ["reload_failed"]  # a condition waits for its end
    assert st.update(status_event(1700.0, "press-01", "reloaded", model_version="v3-b"))
    assert st.payload()["faults"] == [] and st.payload()["model_version"] == "v3-b"
    assert st.update(health_event(1800.0, "press-01", "outbox_disk_full", ["outbox_disk_full"]))
    assert st.update(health_event(1801.0, "press-01", "outbox_disk_ok", []))
    assert st.payload()["faults"] == []


def _mqtt(b: Broker, **kw: Any) -> MqttSettings:
    return MqttSettings(
        host="127.0.0.1",
        port=b.port,
        device_id="press-01",
        reconnect_min=0.1,
        reconnect_max=0.5,
        connect_timeout=5.0,
        ha_discovery=True,
        **kw,
    )


def test_a_reload_resends_discovery_with_the_new_model_version_and_the_health_is_retained(
    tmp_path: Path, mqtt_broker: Callable[..., Broker]
) -> None:
    b = mqtt_broker()
    sub = Subscriber(b, ["homeassistant/#", "edge-asd/#"])
    s = MqttSink(
        _mqtt(b),
        Outbox(OutboxSettings(path=str(tmp_path / "o.sqlite"))),
        [Machine("fan_section_00", "fan_section_00")],
        "v1-aaaa",
    )
    try:
        s.start()
        alarm_cfg = "homeassistant/binary_sensor/press-01/fan_section_00_alarm/config"
        assert sub.wait_for(lambda m: bool(sub.on(alarm_cfg)))
        assert "v1-aaaa" in json.loads(sub.on(alarm_cfg)[-1])["device"]["sw_version"]
        s.handle(
            health_event(
                time.time(),
                "press-01",
                "reload_failed",
                ["reload_failed"],
                error="v2: signature not trusted",
            )
        )
        state = "edge-asd/press-01/state"
        assert sub.wait_for(
            lambda m: any(json.loads(p)["faults"] == ["reload_failed"] for p in sub.on(state))
        )
        s.handle(status_event(time.time(), "press-01", "reloaded", model_version="v3-bbbb"))
        assert sub.wait_for(lambda m: len(sub.on(alarm_cfg)) >= 2)
        assert "v3-bbbb" in json.loads(sub.on(alarm_cfg)[-1])["device"]["sw_version"]
        assert sub.wait_for(lambda m: json.loads(sub.on(state)[-1])["faults"] == [])
        assert json.loads(sub.on(state)[-1])["model_version"] == "v3-bbbb"
    finally:
        s.close()
        sub.close()
    late = Subscriber(b, ["edge-asd/press-01/state"])  # retained: whoever comes later sees it
    try:
        assert late.wait_for(bool)
        assert json.loads(late.messages[0][1])["model_version"] == "v3-bbbb"
    finally:
        late.close()


def test_the_agent_publishes_discovery_home_assistant_accepts_to_a_real_broker(
    tmp_path: Path, mqtt_broker: Callable[..., Broker]
) -> None:
    """The real agent, two machines replaying the demo clips, a real mosquitto: every
    discovery config keeps HA's rules, every template reads fields the agent publishes, and
    the agent's health state is on the broker, retained."""
    from edge_agent.commands.demo import load_demo

    demo = load_demo()
    b = mqtt_broker()
    files = ", ".join(str(p) for p in demo.paths[:2])
    cfg_path = tmp_path / "agent.yaml"
    cfg_path.write_text(f"""
bundle: {demo.bundle}
log: {{stdout: false}}
outbox: {{path: {tmp_path}/outbox.sqlite}}
history: {{replays: true, drift_windows: 1}}
mqtt: {{host: 127.0.0.1, port: {b.port}, device_id: hall-2-pi, ha_discovery: true}}
monitors:
  - {{name: fan_1, section: {demo.section}, source: {{kind: files, files: [{files}]}}}}
  - {{name: fan-2, section: {demo.section}, source: {{kind: files, files: [{files}]}}}}
""")
    sub = Subscriber(b, ["edge-asd/#", "homeassistant/#"])
    try:
        assert Agent(load_config(cfg_path)).run(install_signals=False) == 0
        assert sub.wait_for(lambda m: len(sub.on("edge-asd/hall-2-pi/fan-2/score")) == 2)
        configs = [(t, p) for t, p, _ in sub.messages if t.startswith("homeassistant/")]
        made = check_discovery(configs)
        assert {
            "binary_sensor.hall_2_pi_fan_1_anomaly",
            "binary_sensor.hall_2_pi_fan_2_anomaly",
            "binary_sensor.hall_2_pi_health",
        } <= set(made)
        published = [(t, p) for t, p, _ in sub.messages if t.startswith("edge-asd/")]
        check_templates(made, published)
        state = json.loads(sub.on("edge-asd/hall-2-pi/state")[-1])
        assert state["faults"] == [] and state["device_id"] == "hall-2-pi"
    finally:
        sub.close()
