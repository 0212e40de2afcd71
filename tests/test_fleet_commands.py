"""Remote commands over a real mosquitto (edge_agent.fleet): record, calibrate, tune, rollback,
status, replays, expiry, bad input, the time bound, the CLI, and the example broker ACL.

The device is a real `Agent` with `fleet.enabled` (tests/fleet_helpers.py `Device`): `record`
records the audio it replays in real time, `calibrate` and `tune` write versions that its own
bundle poll hot-reloads, and `status` is its own.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cli_helpers import run_cli
from fleet_helpers import (
    CLIPS,
    SECTION,
    V1,
    Device,
    exported_version,
    make_keys,
    mqtt_settings,
    new_version,
    signed_demo,
    wait_state,
)
from mqtt_fixtures import Broker, Subscriber

from edge_agent.audio.files import read_wav
from edge_agent.bundle.load import load_bundle
from edge_agent.fleet.messages import command_json
from edge_agent.fleet.operator import Connection, send_command
from edge_agent.runtime.history import ScoreHistory

pytestmark = pytest.mark.mqtt
REPO = Path(__file__).resolve().parents[1]


MakeDevice = Callable[..., Device]


@pytest.fixture
def make_device(tmp_path: Path, mqtt_broker: Callable[..., Broker]) -> Iterator[MakeDevice]:
    """`make_device(**Device keywords)`: press-01, a real agent on the signed demo bundle (signed
    with `tmp_path / "fleet.key"`), not started; stopped (joined, bounded) at the end of the
    test."""
    b = mqtt_broker()
    priv, pub = make_keys(tmp_path)
    base = signed_demo(tmp_path / "base", priv)
    made: list[Device] = []

    def make(**kw: Any) -> Device:
        made.append(Device(tmp_path, "press-01", b.port, base, [pub], **kw))
        return made[-1]

    yield make
    for d in made:
        d.stop()


@pytest.fixture
def device(make_device: MakeDevice) -> Device:
    return make_device().start()


def op(d: Device) -> Connection:
    return Connection(mqtt_settings(d.port, "operator"), timeout=5.0)


def cmd(conn: Connection, name: str, cid: str | None = None, **args: Any) -> dict[str, Any]:
    return send_command(conn, "press-01", name, args, 20.0, cid)


def raw(conn: Connection, payload: bytes, wait_id: str | None) -> dict[str, Any] | None:
    """Publish a raw payload on press-01's command topic; the first reply after it."""
    sent = time.monotonic()
    conn.subscribe(["edge-asd/press-01/cmd/reply"], settle=0.0)
    conn.publish([("edge-asd/press-01/cmd", payload)], retain=False)

    def first() -> dict[str, Any] | None:
        with conn._cond:  # noqa: SLF001 -- the test observes or drives an internal the API keeps private
            for p, at in conn._replies:  # noqa: SLF001 -- the test observes or drives an internal the API keeps private
                r = json.loads(p)
                if at >= sent and r.get("id") == wait_id:
                    return dict(r)
        return None

    conn.wait(lambda: first() is not None, 10.0)
    return first()


def assert_replayed_audio(wav: Path, seconds: float) -> None:
    """`wav` holds `seconds` of the agent's audio: a contiguous stretch of its looped replay of
    the demo clips (which starts at a block of 1600 samples), not silence or made-up noise."""
    got, rate = read_wav(wav)
    assert rate == 16000 and got.size == round(seconds * rate)
    loop = np.concatenate([read_wav(c)[0] for c in CLIPS])
    loop = np.concatenate([loop, loop[: got.size]])  # a recording may span the loop's end
    starts = [
        i
        for i in range(0, loop.size - got.size, 1600)
        if np.allclose(loop[i : i + 1600], got[:1600], atol=1e-4)
    ]
    assert starts and np.allclose(loop[starts[0] : starts[0] + got.size], got, atol=1e-4), wav
    assert float(np.sqrt(np.mean(got**2))) > 0.01


def write_history(path: Path, windows: int = 800, hop: float = 10.0) -> None:
    """`windows` normal-looking past scores (threshold 2) ending now, one per `hop` s, in place
    of any the device scored while it ran (a window it scored now, followed by these from 2 h
    ago, made the replay note a clock going back: a flaky `history_notes`)."""
    path.unlink(missing_ok=True)
    hist = ScoreHistory(path)
    rng = np.random.default_rng(0)
    t0 = time.time() - windows * hop
    for i, s in enumerate(rng.normal(0.0, 1.0, windows)):
        hist.append(t0 + hop * i, float(s), 2.0)
    hist.close()


def test_record_calibrate_tune_rollback_with_replays(  # noqa: PLR0915 -- one scenario
    make_device: MakeDevice,
) -> None:
    device = make_device(history=True).start()
    with op(device) as conn:
        st = cmd(conn, "status")
        assert st["ok"] and st["result"]["bundle"]["current"] == 1
        assert st["result"]["agent"]["model_version"] == V1
        assert st["result"]["agent"]["device_id"] == "press-01"  # the agent's own status

        rec = cmd(conn, "record", cid="rec-1", monitor="fan", seconds=2)
        assert rec["ok"], rec
        wav = Path(rec["result"]["path"])
        assert wav.parent == device.state_dir / "recordings"
        assert hashlib.sha256(wav.read_bytes()).hexdigest() == rec["result"]["sha256"]
        assert rec["result"]["bytes"] == wav.stat().st_size > 64_000  # 2 s of 16 kHz int16
        assert_replayed_audio(wav, 2.0)
        again = cmd(conn, "record", cid="rec-1", monitor="fan", seconds=2)
        assert again["replayed"] is True and again["result"] == rec["result"]
        assert len(list(wav.parent.iterdir())) == 1  # not recorded a second time
        for i in range(2):
            assert cmd(conn, "record", cid=f"rec-{i + 2}", seconds=2)["ok"]  # one monitor

        cal = cmd(conn, "calibrate", cid="cal-1", monitor="fan")
        assert cal["ok"], cal
        assert cal["result"]["clips"] == 3 and cal["result"]["version"] == 2
        assert cal["result"]["warning"].startswith(
            "warning: calibrate used 3 clips (30 s of audio); docs/adaptation.md asks for 10"
        )
        assert cal["result"]["healthy"] is True
        assert device.running_version().startswith("v2-") and device.reloads() == 1

    # a score history (as a long run would have left it) for tune, written while it is off
    device.stop()
    write_history(device.state_dir / "scores.fan.bin")
    device.start()
    assert device.running_version().startswith("v2-")  # what it ran before the restart
    with op(device) as conn:
        tune = cmd(conn, "tune", cid="tune-1", monitor="fan", false_alarms_per_day=2)
        assert tune["ok"], tune
        assert tune["result"]["changed"] is True and tune["result"]["version"] == 3
        assert tune["result"]["alarms_per_day_new"] <= 2
        lo, hi = tune["result"]["alarms_per_day_range_new"]  # how sure that rate is
        assert lo <= tune["result"]["alarms_per_day_new"] < hi
        assert "the per-day rates rest on" in tune["result"]["warning"]  # under a day
        assert tune["result"]["history_windows"] >= 800 and tune["result"]["history_notes"] == []
        assert device.running_version().startswith("v3-")

        rb = cmd(conn, "rollback", cid="rb-1")
        assert rb["ok"] and (rb["result"]["from"], rb["result"]["to"]) == (3, 2), rb
        assert rb["result"]["healthy"] is True
        assert device.running_version().startswith("v2-")
        replay = cmd(conn, "rollback", cid="rb-1")  # a replayed rollback does not go further
        assert replay["replayed"] is True and replay["result"] == rb["result"]
        assert (device.root / "current").read_text().strip() == "2"
        cal_again = cmd(conn, "calibrate", cid="cal-1", monitor="fan")  # from before restart
        assert cal_again["replayed"] is True and cal_again["result"] == cal["result"]
        assert device.versions() == ["1", "2", "3"]

    device.stop()  # the ids survive a restart
    device.start()
    with op(device) as conn:
        again = cmd(conn, "rollback", cid="rb-1")
        assert again["replayed"] is True and again["result"]["to"] == 2
        assert (device.root / "current").read_text().strip() == "2"
        assert device.running_version().startswith("v2-") and device.reloads() == 0


def test_expired_unknown_and_malformed_commands_are_refused(device: Device) -> None:
    with op(device) as conn:
        old = command_json("old-1", "record", {"seconds": 10}, time.time() - 120)
        r = raw(conn, old.encode(), "old-1")
        assert r is not None and not r["ok"] and r["error"].startswith("expired: issued 12")
        assert not (device.state_dir / "recordings").exists()  # nothing ran
        r = cmd(conn, "reboot")
        assert not r["ok"] and "unknown command 'reboot'" in r["error"]
        r = cmd(conn, "record", seconds="ten")
        assert not r["ok"] and r["error"] == (
            "record: args.seconds: expected a number > 0 and <= 600, got 'ten'"
        )
        r = cmd(conn, "tune", monitor="fan", false_alarm_per_day=1)
        assert not r["ok"] and "unknown argument(s) false_alarm_per_day" in r["error"]
        r = cmd(conn, "record", monitor="pump")
        assert not r["ok"] and "no monitor 'pump' on this agent (has fan)" in r["error"]
        r = cmd(conn, "tune", false_alarms_per_day=1)  # this agent keeps no score history
        assert not r["ok"] and "keeps no score history (history.enabled)" in r["error"], r
        r = raw(conn, b"{not json", None)
        assert r is not None and not r["ok"] and r["error"].startswith("command: not valid JSON")
        r = raw(conn, json.dumps({"id": "x-1", "name": "status"}).encode(), "x-1")
        assert r is not None and r["error"] == "command: missing field 'issued_at'"
    assert not (device.state_dir / "recordings").exists()
    assert device.versions() == ["1"] and device.running_version() == V1


def test_a_command_over_its_time_bound_is_answered_and_blocks_the_next(
    make_device: MakeDevice,
) -> None:
    """`record` of 3 s of the agent's real-time audio takes 3 s: over a 1 s bound."""
    d = make_device(fleet={"command_timeout_seconds": 1.0}).start()
    with op(d) as conn:
        slow = cmd(conn, "record", cid="slow", seconds=3)
        assert not slow["ok"] and slow["error"].startswith("timed out after 1 s")
        busy = cmd(conn, "status", cid="st-1")
        assert not busy["ok"] and busy["error"].startswith("busy: command slow (record)")
        time.sleep(3.0)
        done = cmd(conn, "record", cid="slow", seconds=3)  # the replay: its real outcome
        assert done["replayed"] is True and done["ok"], done
        wav = Path(done["result"]["path"])
        assert_replayed_audio(wav, 3.0)
        retry = cmd(conn, "status", cid="st-1")  # "busy" was not stored: the same id now runs
        assert retry["ok"] and retry["replayed"] is False, retry


def test_cli_cmd_status_push(
    device: Device, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "operator.yaml"
    cfg.write_text(f"mqtt: {{host: 127.0.0.1, port: {device.port}, device_id: ops}}\n")
    code, out, err = run_cli(
        capsys,
        "fleet",
        "cmd",
        "press-01",
        "record",
        "--arg",
        "seconds=2",
        "--arg",
        "monitor=fan",
        "--config",
        str(cfg),
    )
    assert code == 0, err
    assert json.loads(out)["result"]["seconds"] == 2.0
    code, out, err = run_cli(
        capsys, "fleet", "cmd", "press-01", "record", "--arg", "seconds=-1", "--config", str(cfg)
    )
    assert code == 1 and not json.loads(out)["ok"]

    # a release signed by a key the device does not trust: the canary refuses, exit 1
    priv, _ = make_keys(tmp_path, "rogue")
    rogue = signed_demo(tmp_path / "rogue", priv)
    new_version(rogue, priv)
    code, out, err = run_cli(
        capsys,
        "fleet",
        "push",
        str(rogue),
        "--group",
        "presses",
        "--canary",
        "press-01",
        "--wait",
        "10",
        "--config",
        str(cfg),
    )
    rid = load_bundle(rogue).model_version
    assert code == 1 and f"push of {rid}-" in err and "aborted" in err, (out, err)
    assert "does not trust" in err
    code, out, err = run_cli(
        capsys, "fleet", "status", "--group", "presses", "--config", str(cfg), "--wait", "0.5"
    )
    assert code == 0, err
    assert "group presses: no release published" in out  # the aborted notice was cleared
    assert "press-01" in out and "refused" in out and "None" not in out
    # without a canary: every device refuses it, so the push fails and says so (exit 1)
    code, out, err = run_cli(
        capsys,
        "fleet",
        "push",
        str(rogue),
        "--group",
        "presses",
        "--wait",
        "10",
        "--config",
        str(cfg),
    )
    assert code == 1 and "refused by every device of group presses" in err, (out, err)
    assert "released to group" not in out
    code, out, err = run_cli(
        capsys,
        "fleet",
        "cmd",
        "press-01",
        "status",
        "--config",
        str(cfg),
        "--mqtt-port",
        "1",
        "--wait",
        "1",
    )
    assert code == 2 and "error: mqtt: broker 127.0.0.1:1" in err


def test_example_acl_operator_only_commands(tmp_path: Path) -> None:
    """deploy/mosquitto/acl with passwords: the operator commands a device; another device's
    account cannot (its command is dropped by the broker: no reply, nothing runs), nor can the
    device itself, nor publish a release, nor read another device's commands."""
    from mqtt_fixtures import MOSQUITTO

    if not Path(MOSQUITTO).exists():
        pytest.skip("mosquitto not installed")
    users = {"operator": "op-pw", "press-01": "pw-1", "press-02": "pw-2"}
    b = Broker(tmp_path, users=users)
    b.conf.write_text(b.conf.read_text() + f"acl_file {REPO / 'deploy/mosquitto/acl'}\n")
    b.start()
    prefix = "listening/site-a"
    priv, pub = make_keys(tmp_path)
    (tmp_path / "press-02.pw").write_text("pw-2\n")
    (tmp_path / "press-02.pw").chmod(0o600)
    d = Device(
        tmp_path,
        "press-02",
        b.port,
        signed_demo(tmp_path / "base", priv),
        [pub],
        mqtt={
            "prefix": prefix,
            "username": "press-02",
            "password_file": str(tmp_path / "press-02.pw"),
        },
    )
    try:
        d.start()
        wait_for_state = Subscriber(
            b, [f"{prefix}/+/fleet/state"], username="operator", password="op-pw"
        )
        assert wait_for_state.wait_for(bool)  # press-02 may write its state
        rogue = Subscriber(
            b, [f"{prefix}/press-02/cmd", f"{prefix}/fleet/#"], username="press-01", password="pw-1"
        )
        seen = Subscriber(b, [f"{prefix}/#"], username="operator", password="op-pw")
        # press-01 commands press-02 and publishes a release: the broker drops both
        rogue.client.publish(
            f"{prefix}/press-02/cmd",
            command_json("evil-1", "record", {"seconds": 1}, time.time()),
            qos=1,
        ).wait_for_publish(5)
        rogue.client.publish(
            f"{prefix}/fleet/presses/bundle/manifest", b"{}", qos=1, retain=True
        ).wait_for_publish(5)
        # nor may press-02 command itself (it writes its own topics, but not cmd)
        self_cmd = Subscriber(b, [], username="press-02", password="pw-2")
        self_cmd.client.publish(
            f"{prefix}/press-02/cmd",
            command_json("self-1", "record", {"seconds": 1}, time.time()),
            qos=1,
        ).wait_for_publish(5)
        self_cmd.close()
        time.sleep(1.0)
        assert [t for t, _, _ in seen.messages if "/cmd" in t or "/fleet/presses" in t] == []
        assert not (d.state_dir / "recordings").exists()
        # the operator may: press-02 runs it and replies (its own cmd/reply topic)
        mq = mqtt_settings(b.port, "ops", prefix=prefix, username="operator", password="op-pw")
        with Connection(mq, timeout=5.0) as conn:
            r = send_command(conn, "press-02", "status", {}, 10.0)
            assert r["ok"] and r["device_id"] == "press-02"
            conn.publish([(f"{prefix}/fleet/presses/bundle/manifest", b"")], retain=True)
        assert seen.wait_for(lambda m: any(t == f"{prefix}/press-02/cmd" for t, _, _ in m))
        time.sleep(0.3)
        # press-01 subscribed to press-02's commands and to the fleet tree: it gets none of
        # press-02's commands (its bundle-topic read is allowed, and nothing was published)
        assert [t for t, _, _ in rogue.messages if t.endswith("/cmd")] == []
        wait_state(wait_for_state, "press-02", prefix=prefix, status="idle")
        rogue.close()
        seen.close()
        wait_for_state.close()
    finally:
        d.stop()
        b.kill()


def test_recordings_are_kept_per_monitor_and_calibrate_names_the_monitors_it_changes(
    make_device: MakeDevice,
) -> None:
    """Two monitors scored by one section, two recordings kept: one monitor's new recording
    never pushes out another's (nor itself), and calibrating one says the other changes too."""
    d = (
        make_device(fleet={"max_recordings": 2})
        .set_monitors({"fan": SECTION, "pump": SECTION})
        .start()
    )
    with op(d) as conn:
        for _ in range(2):
            assert cmd(conn, "record", monitor="pump", seconds=1)["ok"]
        fan = cmd(conn, "record", monitor="fan", seconds=1)
        assert fan["ok"], fan  # it used to be deleted at once (sorted after pump's by name)
        assert Path(fan["result"]["path"]).is_file()
        pumps = sorted(p.name for p in (d.state_dir / "recordings").glob("pump-*.wav"))
        assert len(pumps) == 2
        for _ in range(2):
            assert cmd(conn, "record", monitor="fan", seconds=1)["ok"]
        fans = sorted(p.name for p in (d.state_dir / "recordings").glob("fan-*.wav"))
        assert len(fans) == 2 and fan["result"]["file"] not in fans  # the oldest went
        assert sorted(p.name for p in (d.state_dir / "recordings").glob("pump-*.wav")) == pumps

        cal = cmd(conn, "calibrate", monitor="fan")
        assert cal["ok"], cal
        assert cal["result"]["section"] == SECTION and cal["result"]["shared_with"] == ["pump"]
        assert cal["result"]["clips"] == 2 and cal["result"]["healthy"] is True


def test_remote_rollback_refuses_a_version_the_trusted_keys_do_not_sign(
    make_device: MakeDevice,
    tmp_path: Path,
) -> None:
    """Current version 3 is signed, the version a rollback goes to (2, the next lower) is not:
    the agent would refuse it, and fail to start on it. The rollback is refused, nothing
    changes."""
    d = make_device(fleet={"health_timeout_seconds": 2.0})
    exported_version(d.root, None)  # 2: unsigned
    exported_version(d.root, tmp_path / "fleet.key")  # 3: signed, no parent_version
    d.start()
    assert d.running_version().startswith("v3-")
    with op(d) as conn:
        r = cmd(conn, "rollback")
    assert not r["ok"], r
    assert r["error"].startswith("rollback to version 2 refused, version 3 stays current: ")
    assert "not signed" in r["error"]
    assert (d.root / "current").read_text().strip() == "3"
    assert d.running_version().startswith("v3-") and d.reloads() == 0


def test_a_rollback_the_agent_does_not_take_up_puts_current_back(
    make_device: MakeDevice,
    tmp_path: Path,
) -> None:
    """Version 2 is signed but lacks the monitor's section: it loads, but the agent's reload
    refuses it. The rollback to it fails, and `current` is put back to 3 so that the agent can
    still start."""
    d = make_device(fleet={"health_timeout_seconds": 2.0})
    exported_version(d.root, tmp_path / "fleet.key", drop=[SECTION])  # 2
    exported_version(d.root, tmp_path / "fleet.key")  # 3
    d.start()
    with op(d) as conn:
        r = cmd(conn, "rollback")
        assert not r["ok"], r
        assert r["error"].startswith("rolled back to version 2, but the agent still runs v3-")
        assert r["error"].endswith("; current put back to version 3")
        assert (d.root / "current").read_text().strip() == "3"
        assert d.running_version().startswith("v3-")
        assert cmd(conn, "status")["result"]["bundle"]["current"] == 3
    d.stop()  # and it starts again on it
    d.start()
    assert d.running_version().startswith("v3-")


def test_bad_device_group_and_id_arguments_are_one_line_errors(
    device: Device,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Exit 2 and one line naming the argument, before anything is sent (a `+` or `#` would
    be a topic filter paho refuses to publish to, a `/` another device's topic)."""
    cfg = tmp_path / "operator.yaml"
    cfg.write_text(f"mqtt: {{host: 127.0.0.1, port: {device.port}, device_id: ops}}\n")
    for bad in ("press+", "press/01", "#", "", "fleet"):
        code, _, err = run_cli(
            capsys, "fleet", "cmd", bad, "status", "--config", str(cfg), "--wait", "2"
        )
        assert code == 2 and err.startswith(f"error: DEVICE: {bad!r} cannot join a fleet"), err
        assert err.count("\n") == 1 and "Traceback" not in err
    code, _, err = run_cli(
        capsys,
        "fleet",
        "cmd",
        "press-01",
        "status",
        "--id",
        "a b",
        "--config",
        str(cfg),
        "--wait",
        "2",
    )
    assert code == 2 and err.startswith("error: --id: expected 1-64 letters"), err
    for args in (
        ["status", "--group", "pres+"],
        ["rollback", "--group", "a/b"],
        ["rollback", "--group", "presses", "--release", "r#1"],
    ):
        code, _, err = run_cli(capsys, "fleet", *args, "--config", str(cfg), "--wait", "1")
        assert code == 2 and err.count("\n") == 1, (args, err)
        assert err.startswith(
            ("error: --group: expected a group name", "error: --release: expected a release id")
        ), err
    assert not (device.state_dir / "recordings").exists()
    code, out, _ = run_cli(
        capsys, "fleet", "cmd", "press-01", "status", "--id", "ok:1.a_b-c", "--config", str(cfg)
    )
    assert code == 0 and json.loads(out)["id"] == "ok:1.a_b-c"


def test_states_are_the_devices_of_their_topics(
    device: Device,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    """A retained state on press-09's topic that claims to be press-07 is nobody's: a state
    counts for the device whose topic it is on (the one the ACL lets write it)."""
    from edge_agent.fleet.operator import group_status

    with op(device) as conn:
        conn.publish(
            [
                (
                    "edge-asd/press-09/fleet/state",
                    json.dumps(
                        {
                            "device_id": "press-07",
                            "group": "presses",
                            "release": "r",
                            "status": "installed",
                            "healthy": True,
                        }
                    ),
                )
            ],
            retain=True,
        )
        notice, states = group_status(conn, "presses", 0.5)
        assert notice is None and sorted(states) == ["press-01"], states
        assert states["press-01"]["device_id"] == "press-01"
        conn.publish([("edge-asd/press-09/fleet/state", b"")], retain=True)
