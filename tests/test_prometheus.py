"""The Prometheus textfile sink (edge_agent.sinks.prometheus), read back by a strict parser of
the exposition format and by the real `prometheus-node-exporter`; the Grafana dashboard in
deploy/grafana uses only metrics the sink writes."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mqtt_fixtures import free_port

from edge_agent.config.load import read_config
from edge_agent.config.sinks import MetricsSettings
from edge_agent.errors import ConfigError
from edge_agent.events import Event, Levels, health_event, status_event, window_event
from edge_agent.sinks.prometheus import METRIC_NAMES, PrometheusSink

REPO = Path(__file__).resolve().parents[1]
DASHBOARD = REPO / "deploy" / "grafana" / "edge-asd-dashboard.json"
EPOCH = 1_795_952_494.344
DEVICE = "press-01"
FAN = "fan_section_00"
ODD = 'pump "2" \\ east\nwing'  # a quote, a backslash and a newline in one label value

Labels = frozenset[tuple[str, str]]
Metrics = dict[tuple[str, Labels], float]

_SAMPLE = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(,|$)')


def _unescape(v: str) -> str:
    return re.sub(r"\\(.)", lambda m: "\n" if m[1] == "n" else m[1], v)


def parse(text: str) -> tuple[Metrics, dict[str, str]]:
    """(sample -> value, family -> type) of a text-format exposition; AssertionError on any
    line that is not a comment or a well-formed sample, a sample before its family's TYPE, a
    repeated series, or a missing final newline (what a half-written file looks like)."""
    assert text.endswith("\n"), "no final newline: a truncated file"
    metrics: Metrics = {}
    types: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            types[name] = kind
            continue
        if line.startswith("#") or not line:
            continue
        m = _SAMPLE.fullmatch(line)
        assert m, f"not a sample line: {line!r}"
        name, body, value = m.groups()
        labels: list[tuple[str, str]] = []
        if body:
            pairs = list(_LABEL.finditer(body))
            assert "".join(p[0] for p in pairs) == body, f"bad labels: {line!r}"
            labels = [(p[1], _unescape(p[2])) for p in pairs]
        key = (name, frozenset(labels))
        assert key not in metrics, f"repeated series: {line!r}"
        metrics[key] = float(value)
    return metrics, types


def val(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.get((name, frozenset(labels.items())))


def score(
    value: float,
    *,
    monitor: str = FAN,
    kind: str = "score",
    decision: str = "normal",
    drift: float | None = None,
    version: str = "v1-abc",
    t: float = EPOCH,
) -> Event:
    return window_event(
        "alarm" if kind == "alarm" else "score",
        t,
        DEVICE,
        section=FAN,
        monitor=monitor,
        window=3,
        score=value,
        threshold=1.0,
        anomalous=value > 1.0,
        decision="alarm" if decision == "alarm" else "normal",
        votes=3 if value > 1 else 0,
        model_version=version,
        source="clips/03.wav",
        drift=drift,
    )


def story() -> list[Event]:
    """A run's worth of real events: windows of two monitors, a sensor fault and its end, an
    alarm raised, agent-wide health events, a device lost, a reload."""
    lv: Levels = {"rms_dbfs": -90.0, "peak_dbfs": -80.0, "clipped_fraction": 0.0}
    return [
        score(0.4),
        health_event(
            EPOCH + 5, DEVICE, "sensor_fault", ["silence"], window=4, levels=lv, monitor=FAN
        ),
        health_event(EPOCH + 10, DEVICE, "sensor_ok", [], window=5, levels=lv, monitor=FAN),
        score(1.5, t=EPOCH + 10),
        score(2.5, t=EPOCH + 15, decision="alarm", drift=0.25),
        score(2.5, t=EPOCH + 15, kind="alarm", decision="alarm", drift=0.25),
        score(0.1, monitor=ODD, version="v2-def", t=EPOCH + 15),
        health_event(
            EPOCH + 16,
            DEVICE,
            "window_error",
            ["window_error"],
            window=6,
            error="boom",
            count=1,
            monitor=FAN,
        ),
        health_event(
            EPOCH + 17,
            DEVICE,
            "window_error",
            ["window_error"],
            window=16,
            error="boom",
            count=10,
            monitor=FAN,
        ),  # rate-limited: 10 failed in all
        health_event(EPOCH + 18, DEVICE, "outbox_full", ["outbox_full"], dropped=3),
        health_event(EPOCH + 19, DEVICE, "sensor_fault", ["device_lost"]),
        status_event(EPOCH + 20, DEVICE, "reloaded", model_version="v3"),
    ]


def written(path: Path) -> Metrics:
    return parse(path.read_text())[0]


def told_the_story(f: Path, outbox_depth: int) -> Path:
    """`f` as the sink writes it after every event of `story()` and a close."""
    sink = PrometheusSink(MetricsSettings(str(f), 60.0), DEVICE, outbox_depth=lambda: outbox_depth)
    for e in story():
        sink.handle(e)
    sink.close()
    return f


def test_file_holds_every_metric_with_its_labels(tmp_path: Path) -> None:
    f = told_the_story(tmp_path / "edge_asd.prom", outbox_depth=7)
    m, types = parse(f.read_text())
    fan = {"device_id": DEVICE, "monitor": FAN}
    odd = {"device_id": DEVICE, "monitor": ODD}
    dev = {"device_id": DEVICE, "monitor": ""}
    assert val(m, "edge_asd_score", **fan) == 2.5 and val(m, "edge_asd_score", **odd) == 0.1
    assert val(m, "edge_asd_threshold", **fan) == 1.0
    assert val(m, "edge_asd_anomalous", **fan) == 1 and val(m, "edge_asd_anomalous", **odd) == 0
    assert val(m, "edge_asd_alarm", **fan) == 1 and val(m, "edge_asd_alarm", **odd) == 0
    assert val(m, "edge_asd_drift", **fan) == 0.25 and val(m, "edge_asd_drift", **odd) is None
    assert val(m, "edge_asd_last_window_timestamp_seconds", **fan) == EPOCH + 15
    assert val(m, "edge_asd_windows_scored_total", **fan) == 3  # the alarm event is no window
    assert val(m, "edge_asd_alarms_raised_total", **fan) == 1
    assert val(m, "edge_asd_sensor_fault", **fan) == 0  # silence, then sensor_ok
    assert val(m, "edge_asd_sensor_fault", **odd) == 0
    assert val(m, "edge_asd_sensor_fault", **dev) == 1  # device lost, device-wide
    assert val(m, "edge_asd_health_events_total", **fan, event="sensor_fault") == 1
    assert val(m, "edge_asd_health_events_total", **fan, event="window_error") == 2
    assert val(m, "edge_asd_health_events_total", **dev, event="outbox_full") == 1
    assert val(m, "edge_asd_window_errors_total", **fan) == 10  # the events' running count
    assert val(m, "edge_asd_model_info", **fan, model_version="v1-abc") == 1
    assert val(m, "edge_asd_model_info", **odd, model_version="v2-def") == 1
    assert val(m, "edge_asd_outbox_depth", **dev) == 7
    assert val(m, "edge_asd_agent_running", **dev) == 0  # closed
    assert types["edge_asd_windows_scored_total"] == "counter"
    assert types["edge_asd_score"] == "gauge"
    assert {name for name, _ in m} == set(METRIC_NAMES)
    assert all(dict(labels)["device_id"] == DEVICE for _, labels in m)


def test_label_values_are_escaped(tmp_path: Path) -> None:
    f = tmp_path / "edge_asd.prom"
    sink = PrometheusSink(MetricsSettings(str(f), 60.0), 'dev"\\1')
    sink.handle(score(0.5, monitor=ODD, version='v"1\\\n'))
    sink.close()
    text = f.read_text()
    assert 'monitor="pump \\"2\\" \\\\ east\\nwing"' in text
    assert 'device_id="dev\\"\\\\1"' in text
    m = written(f)
    assert val(m, "edge_asd_score", device_id='dev"\\1', monitor=ODD) == 0.5
    assert (
        val(m, "edge_asd_model_info", device_id='dev"\\1', monitor=ODD, model_version='v"1\\\n')
        == 1
    )


def test_nan_and_infinite_scores_are_written_as_prometheus_spells_them(tmp_path: Path) -> None:
    f = tmp_path / "edge_asd.prom"
    sink = PrometheusSink(MetricsSettings(str(f), 60.0), DEVICE)
    sink.handle(score(float("inf")))
    sink.handle(score(float("nan"), monitor="m2"))
    sink.close()
    text = f.read_text()
    assert f'edge_asd_score{{device_id="{DEVICE}",monitor="{FAN}"}} +Inf\n' in text
    assert f'edge_asd_score{{device_id="{DEVICE}",monitor="m2"}} NaN\n' in text


def test_written_at_most_every_interval_and_on_close(tmp_path: Path) -> None:
    f = tmp_path / "edge_asd.prom"
    sink = PrometheusSink(MetricsSettings(str(f), 1.0), DEVICE)
    fan = {"device_id": DEVICE, "monitor": FAN}
    assert not f.exists()
    sink.handle(score(0.1))  # the first event after a quiet interval: at once
    t0 = time.monotonic()
    assert val(written(f), "edge_asd_score", **fan) == 0.1
    sink.handle(score(0.2))
    sink.tick()
    assert time.monotonic() - t0 < 0.9, "too slow a machine for this test's timing"
    assert val(written(f), "edge_asd_score", **fan) == 0.1  # held back
    time.sleep(max(0.0, t0 + 1.05 - time.monotonic()))
    sink.tick()  # due: the agent's loop (or the next event) writes it
    assert val(written(f), "edge_asd_score", **fan) == 0.2
    ino = f.stat().st_ino
    sink.tick()  # nothing new: no write
    assert f.stat().st_ino == ino
    sink.handle(score(0.3))
    assert val(written(f), "edge_asd_score", **fan) == 0.2
    sink.close()  # close writes whatever is pending
    m = written(f)
    assert val(m, "edge_asd_score", **fan) == 0.3
    assert val(m, "edge_asd_windows_scored_total", **fan) == 3
    assert val(m, "edge_asd_agent_running", device_id=DEVICE, monitor="") == 0


def test_write_is_atomic_world_readable_and_leaves_no_temp_file(tmp_path: Path) -> None:
    """A reader never sees a partial file while the sink rewrites it many times (the file is
    replaced: a new inode each time), the file is 0644 under the service's UMask=0077, and no
    temp file remains."""
    f = tmp_path / "edge_asd.prom"
    sink = PrometheusSink(MetricsSettings(str(f), 1.0), DEVICE)
    monitors = [f"machine_{i:02d}" for i in range(60)]  # ~40 kB: a torn write would show
    for mon in monitors:
        sink.handle(score(0.5, monitor=mon))
    sink.flush(wait=True)
    stop = threading.Event()
    reads: list[int] = []
    errors: list[str] = []

    def reader() -> None:
        while not stop.is_set():
            try:
                m = written(f)
                n = sum(1 for name, _ in m if name == "edge_asd_score")
                if n != len(monitors):
                    errors.append(f"{n} score series")
                reads.append(n)
            except AssertionError as exc:
                errors.append(str(exc))

    old = os.umask(0o077)
    t = threading.Thread(target=reader)
    t.start()
    inodes = set()
    try:
        for i in range(150):
            sink.handle(score(float(i), monitor=monitors[i % len(monitors)]))
            sink.flush(wait=True)
            inodes.add(f.stat().st_ino)
    finally:
        stop.set()
        t.join(10)
        os.umask(old)
    assert not errors, errors[:3]
    assert len(reads) >= 20, "the reader did not overlap the writes"
    assert len(inodes) > 1, "the file was rewritten in place, not replaced"
    assert f.stat().st_mode & 0o777 == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["edge_asd.prom"]


def test_write_errors_are_logged_once_each_and_never_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    d = tmp_path / "textfiles"
    d.mkdir()
    f = d / "edge_asd.prom"

    def broken_outbox() -> int:
        raise RuntimeError("database is locked")

    sink = PrometheusSink(MetricsSettings(str(f), 1.0), DEVICE, outbox_depth=broken_outbox)
    caplog.set_level(logging.INFO, logger="edge_agent")
    sink.handle(score(0.1))
    assert val(written(f), "edge_asd_score", device_id=DEVICE, monitor=FAN) == 0.1
    shutil.rmtree(d)  # the folder goes away
    for _ in range(3):
        sink.handle(score(0.2))
        sink.flush()
    d.write_text("a file where the folder was")  # a second, different error
    for _ in range(3):
        sink.flush(wait=True)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 3, warnings
    assert "outbox depth unavailable" in warnings[0] and "database is locked" in warnings[0]
    assert f"cannot write {f}: No such file or directory" in warnings[1]
    assert f"cannot write {f}: Not a directory" in warnings[2]
    d.unlink()
    d.mkdir()
    sink.close()  # back: written, and said so once
    m = written(f)
    assert val(m, "edge_asd_score", device_id=DEVICE, monitor=FAN) == 0.2
    assert val(m, "edge_asd_outbox_depth", device_id=DEVICE, monitor="") is None
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert infos == [f"metrics.textfile: {f} written again"]
    assert sorted(p.name for p in d.iterdir()) == ["edge_asd.prom"]


def test_off_without_a_textfile(tmp_path: Path) -> None:
    sink = PrometheusSink(MetricsSettings(), DEVICE, outbox_depth=lambda: 1)
    for e in story():
        sink.handle(e)
    sink.close()
    assert not MetricsSettings().enabled and list(tmp_path.iterdir()) == []


def _config(tmp_path: Path, metrics: str) -> Path:
    p = tmp_path / "agent.yaml"
    p.write_text(f"metrics: {metrics}\n")
    return p


def test_config_resolves_and_checks_the_textfile(tmp_path: Path) -> None:
    (tmp_path / "prom").mkdir()
    cfg = read_config(_config(tmp_path, "{textfile: prom/edge_asd.prom, interval_seconds: 30}"))
    assert cfg.metrics.textfile == str(tmp_path / "prom" / "edge_asd.prom")
    assert cfg.metrics.interval_seconds == 30.0
    assert read_config(_config(tmp_path, "{}")).metrics.textfile is None
    refused = [
        ("{textfile: no/such/edge_asd.prom}", r"^metrics\.textfile: folder .*no/such does not"),
        ("{textfile: prom/edge_asd.txt}", r"^metrics\.textfile: .* only files named \*\.prom"),
        ("{textfile: prom.prom}", None),
        ("{interval_seconds: 0.1}", r"^metrics\.interval_seconds: expected a number in \[1, "),
        ("{interval: 5}", r"^metrics\.interval: unknown key"),
    ]
    (tmp_path / "prom.prom").mkdir()
    for text, pattern in refused:
        with pytest.raises(ConfigError, match=pattern or r"^metrics\.textfile: .* is a folder"):
            read_config(_config(tmp_path, text))


# --- the real node-exporter ---------------------------------------------------------------

NODE_EXPORTER = shutil.which("prometheus-node-exporter") or shutil.which("node_exporter")


def _get(url: str) -> str:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # no proxy to localhost
    with opener.open(url, timeout=5) as r:
        body: bytes = r.read()
    return body.decode()


@pytest.fixture
def node_exporter(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """(textfile folder, metrics URL) of a node-exporter of our own: the textfile collector
    only, on a free 127.0.0.1 port; killed afterwards."""
    if NODE_EXPORTER is None:
        pytest.skip(
            "prometheus-node-exporter is not installed (deploy/test.sh installs it: "
            "apt-get install prometheus-node-exporter)"
        )
    folder = tmp_path / "textfile"
    folder.mkdir()
    port = free_port()
    proc = subprocess.Popen(
        [
            NODE_EXPORTER,
            "--collector.disable-defaults",
            "--collector.textfile",
            f"--collector.textfile.directory={folder}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        deadline = time.monotonic() + 15
        while True:
            if proc.poll() is not None:
                err = proc.stderr.read().decode() if proc.stderr else ""
                pytest.fail(f"node-exporter exited ({proc.returncode}): {err[-2000:]}")
            with contextlib.suppress(OSError):
                _get(url)
                break
            if time.monotonic() > deadline:
                pytest.fail("node-exporter did not answer within 15 s")
            time.sleep(0.1)
        yield folder, url
    finally:
        proc.kill()
        proc.wait(10)
        if proc.stderr:
            proc.stderr.close()


def test_node_exporter_scrapes_the_file(node_exporter: tuple[Path, str]) -> None:
    folder, url = node_exporter
    sink = PrometheusSink(
        MetricsSettings(str(folder / "edge_asd.prom"), 60.0), DEVICE, outbox_depth=lambda: 2
    )
    for e in story():
        sink.handle(e)
    sink.flush(wait=True)
    m = parse(_get(url))[0]
    assert val(m, "node_textfile_scrape_error") == 0
    fan = {"device_id": DEVICE, "monitor": FAN}
    odd = {"device_id": DEVICE, "monitor": ODD}
    assert val(m, "edge_asd_score", **fan) == 2.5
    assert val(m, "edge_asd_score", **odd) == 0.1  # escaped label read back by the real parser
    assert val(m, "edge_asd_threshold", **fan) == 1.0
    assert val(m, "edge_asd_alarm", **fan) == 1
    assert val(m, "edge_asd_drift", **fan) == 0.25
    assert val(m, "edge_asd_windows_scored_total", **fan) == 3
    assert val(m, "edge_asd_alarms_raised_total", **fan) == 1
    assert val(m, "edge_asd_sensor_fault", device_id=DEVICE, monitor="") == 1
    assert val(m, "edge_asd_health_events_total", **fan, event="window_error") == 2
    assert val(m, "edge_asd_window_errors_total", **fan) == 10
    assert val(m, "edge_asd_model_info", **fan, model_version="v1-abc") == 1
    assert val(m, "edge_asd_outbox_depth", device_id=DEVICE, monitor="") == 2
    assert val(m, "edge_asd_last_window_timestamp_seconds", **fan) == EPOCH + 15
    assert val(m, "edge_asd_agent_running", device_id=DEVICE, monitor="") == 1
    # every scrape reads the current file: the next write shows at once
    sink.handle(score(0.7))
    sink.close()
    m = parse(_get(url))[0]
    assert val(m, "node_textfile_scrape_error") == 0
    assert val(m, "edge_asd_score", **fan) == 0.7
    assert val(m, "edge_asd_windows_scored_total", **fan) == 4
    assert val(m, "edge_asd_agent_running", device_id=DEVICE, monitor="") == 0


# --- the Grafana dashboard ------------------------------------------------------------------

PROMQL_FUNCTIONS = {
    "rate",
    "irate",
    "increase",
    "sum",
    "max",
    "min",
    "avg",
    "count",
    "time",
    "clamp_min",
    "max_over_time",
    "last_over_time",
    "changes",
    "abs",
}
PROMQL_WORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads; AssertionError for an unknown function or
    keyword. Label matchers, ranges, strings, `$variables` and grouping lists are left out."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}|\[[^\]]*\]|\$\w+", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", " ", text)
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*(\s*\()?", text):
        word = m[0].rstrip(" (")
        if m[1]:
            assert word in PROMQL_FUNCTIONS, f"{expr}: unexpected function {word}"
        elif word not in PROMQL_WORDS:
            names.add(word)
    return names


def label_names(expr: str) -> set[str]:
    return {
        lab for body in re.findall(r"\{([^}]*)\}", expr) for lab in re.findall(r"(\w+)\s*=~?", body)
    }


def _panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for p in items:
        yield p
        yield from _panels(p.get("panels", []))


def test_dashboard_reads_only_metrics_the_sink_writes(tmp_path: Path) -> None:
    f = told_the_story(tmp_path / "edge_asd.prom", outbox_depth=0)
    m = written(f)
    produced = {name for name, _ in m}
    labels = {k for _, ls in m for k, _ in ls}
    dash = json.loads(DASHBOARD.read_text())
    assert 36 <= dash["schemaVersion"] <= 41
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["DS_PROMETHEUS"]["query"] == "prometheus"
    used: set[str] = set()
    for name in ("device_id", "monitor"):
        q = variables[name]["query"]
        q = q if isinstance(q, str) else q["query"]
        assert re.fullmatch(rf"label_values\((.*), {name}\)", q), q
        used |= metric_names(q[len("label_values(") : -len(f", {name})")])
    panels = list(_panels(dash["panels"]))
    assert len({p["id"] for p in panels}) == len(panels)
    for p in panels:
        if p["type"] == "row":
            continue
        assert p["datasource"]["uid"] == "${DS_PROMETHEUS}", p["title"]
        assert p["targets"], p["title"]
        for t in p["targets"]:
            assert t["datasource"]["uid"] == "${DS_PROMETHEUS}", p["title"]
            names = metric_names(t["expr"])
            assert names, f"{p['title']}: {t['expr']} reads no metric"
            assert names <= produced, f"{p['title']}: {names - produced} not written by the sink"
            assert label_names(t["expr"]) <= labels, p["title"]
            assert set(re.findall(r"\{\{(\w+)\}\}", t.get("legendFormat", ""))) <= labels
            used |= names
    titles = " / ".join(p["title"].lower() for p in panels)
    for word in (
        "score vs threshold",
        "alarm",
        "drift",
        "sensor faults",
        "windows scored",
        "outbox",
        "model version",
    ):
        assert word in titles, word
    assert {
        "edge_asd_score",
        "edge_asd_threshold",
        "edge_asd_alarm",
        "edge_asd_drift",
        "edge_asd_sensor_fault",
        "edge_asd_windows_scored_total",
        "edge_asd_outbox_depth",
        "edge_asd_model_info",
    } <= used
