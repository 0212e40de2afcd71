"""The event schema (edge_agent.events) and the human stdout format of `edge-agent run`."""

from __future__ import annotations

import io
import json

from edge_agent.events import SCHEMA_VERSION, health_event, status_event, window_event
from edge_agent.sinks.jsonl import JsonlSink, human_line

EPOCH = 1_795_952_494.3441  # 2026-11-29T11:41:34.344Z


def test_window_event_fields_in_a_fixed_order_rounded() -> None:
    e = window_event(
        "score",
        EPOCH,
        "press-01",
        section="fan_section_00",
        window=3,
        score=0.41234567,
        threshold=0.38,
        anomalous=True,
        decision="normal",
        votes=2,
        model_version="v1-abc",
        source="clips/03.wav",
    )
    assert list(e) == [
        "schema",
        "kind",
        "ts",
        "epoch",
        "device_id",
        "section",
        "monitor",
        "window",
        "score",
        "threshold",
        "anomalous",
        "decision",
        "votes",
        "model_version",
        "source",
    ]
    assert e["monitor"] == "fan_section_00"  # a single-machine agent's monitor: its section
    assert e["schema"] == SCHEMA_VERSION == 1
    assert e["ts"] == "2026-11-29T11:41:34.344Z" and e["epoch"] == 1_795_952_494.344
    assert e["score"] == 0.412346


def test_health_and_status_events_carry_only_what_they_know() -> None:
    lost = health_event(EPOCH, "d", "sensor_fault", ["device_lost"])
    assert list(lost) == ["schema", "kind", "ts", "epoch", "device_id", "event", "faults"]
    fault = health_event(
        EPOCH,
        "d",
        "sensor_fault",
        ("silence",),
        window=7,
        levels={"rms_dbfs": -90.0, "peak_dbfs": -80.0, "clipped_fraction": 0.0},
    )
    assert list(fault)[5:] == [
        "event",
        "window",
        "faults",
        "rms_dbfs",
        "peak_dbfs",
        "clipped_fraction",
    ]
    stopped = status_event(
        EPOCH,
        "d",
        "stopped",
        scores_unsent=4,
        counters={
            "windows": 12,
            "scored": 11,
            "windows_dropped": 0,
            "faults": 1,
            "alarms": 1,
            "reloads": 0,
            "outbox_dropped": 0,
            "window_errors": 2,
        },
    )
    assert stopped["windows"] == 12 and stopped["scores_unsent"] == 4
    assert stopped["window_errors"] == 2
    assert "model_version" not in stopped


def test_human_lines_for_each_kind_of_event() -> None:
    ts = "2026-11-29T11:41:34.344Z"
    score = window_event(
        "score",
        EPOCH,
        "d",
        section="fan_section_00",
        window=3,
        score=0.41234567,
        threshold=0.38,
        anomalous=True,
        decision="normal",
        votes=2,
        model_version="v1",
        source="f.wav",
    )
    assert human_line(score) == (
        f"{ts} fan_section_00 window=3 score=0.4123 thr=0.3800 ANOMALOUS state=normal"
    )
    calm = window_event(
        "score",
        EPOCH,
        "d",
        section="fan_section_00",
        window=4,
        score=0.1,
        threshold=0.38,
        anomalous=False,
        decision="alarm",
        votes=3,
        model_version="v1",
        source="f.wav",
    )
    assert human_line(calm).endswith("score=0.1000 thr=0.3800 normal state=alarm")
    alarm = window_event(
        "alarm",
        EPOCH,
        "d",
        section="fan_section_00",
        window=5,
        score=0.5,
        threshold=0.38,
        anomalous=True,
        decision="alarm",
        votes=3,
        model_version="v1",
        source="f.wav",
    )
    # the word once (it said `ALARM ALARM`), the machine named, the window too
    assert human_line(alarm) == (
        f"{ts} fan_section_00 ALARM raised (window=5, score=0.5000, votes=3)"
    )
    cleared = window_event(
        "alarm",
        EPOCH,
        "d",
        section="gearbox_section_00",
        window=9,
        score=0.1,
        threshold=0.38,
        anomalous=False,
        decision="normal",
        votes=0,
        model_version="v1",
        source="hw:2",
        monitor="gearbox_1",
    )
    assert human_line(cleared) == (
        f"{ts} gearbox_1 [gearbox_section_00] alarm cleared (window=9, score=0.1000, votes=0)"
    )
    mine = window_event(
        "score",
        EPOCH,
        "d",
        section="gearbox_section_00",
        window=3,
        score=0.2,
        threshold=0.38,
        anomalous=False,
        decision="normal",
        votes=0,
        model_version="v1",
        source="hw:2",
        monitor="gearbox_1",
    )
    assert human_line(mine).startswith(f"{ts} gearbox_1 [gearbox_section_00] window=3 ")
    # a sensor fault names its machine; one without a monitor is the agent's
    fault = health_event(
        EPOCH,
        "d",
        "sensor_fault",
        ["silence", "overflow"],
        window=6,
        monitor="fan_2",
        section="fan_section_01",
    )
    assert human_line(fault) == (
        f"{ts} fan_2 [fan_section_01] sensor sensor_fault: silence,overflow (window=6)"
    )
    assert human_line(
        health_event(EPOCH, "d", "device_ok", [], monitor="fan_2", section="fan_section_01")
    ) == (f"{ts} fan_2 [fan_section_01] sensor device_ok: ok")
    dropped = health_event(
        EPOCH,
        "d",
        "windows_dropped",
        ["scorer_behind"],
        window=8,
        monitor="fan_1",
        section="fan_section_00",
        dropped=40,
        count=12,
    )
    assert human_line(dropped) == (
        f"{ts} fan_1 [fan_section_00] windows_dropped: scorer_behind (window=8, dropped=40, "
        "count=12)"
    )
    assert human_line(
        health_event(EPOCH, "d", "outbox_full", ["outbox_full"], dropped=3, error="outbox full")
    ) == (f"{ts} agent outbox_full: outbox full (dropped=3)")
    stopped = status_event(EPOCH, "d", "reloaded", model_version="v2")
    assert human_line(stopped) == (
        f'{ts} status: {{"schema": 1, "epoch": 1795952494.344, "device_id": "d", '
        f'"event": "reloaded", "model_version": "v2"}}'
    )


def test_jsonl_sink_writes_one_line_per_event() -> None:
    e = health_event(EPOCH, "d", "device_ok", [])
    human, lines = io.StringIO(), io.StringIO()
    JsonlSink(human).handle(e)
    JsonlSink(lines, json_lines=True).handle(e)
    assert human.getvalue() == human_line(e) + "\n"
    assert lines.getvalue().count("\n") == 1 and json.loads(lines.getvalue()) == e


def test_json_lines_refuse_nan_instead_of_writing_invalid_json() -> None:
    """`--json` and MQTT payloads go through events.event_json: strict JSON or an error that
    names the fields, never a line with `NaN` that every JSON consumer rejects."""
    import math

    import pytest

    from edge_agent.events import event_json
    from edge_agent.jsonsafe import NonFiniteError

    bad = window_event(
        "score",
        EPOCH,
        "d",
        section="fan_section_00",
        window=3,
        score=math.nan,
        threshold=math.inf,
        anomalous=False,
        decision="normal",
        votes=0,
        model_version="v1",
        source="f.wav",
    )
    out = io.StringIO()
    with pytest.raises(NonFiniteError, match="score event: score, threshold: NaN or infinite"):
        JsonlSink(out, json_lines=True).handle(bad)
    assert out.getvalue() == ""  # nothing half-written
    with pytest.raises(NonFiniteError):
        event_json(bad)
    ok = health_event(
        EPOCH,
        "d",
        "window_error",
        ["window_error"],
        window=4,
        error="ValueError: cannot reshape",
        count=1,
    )
    assert json.loads(event_json(ok)) == ok and list(ok)[-2:] == ["error", "count"]
    assert human_line(ok) == (
        "2026-11-29T11:41:34.344Z agent window_error: ValueError: cannot reshape (window=4, "
        "count=1)"
    )
