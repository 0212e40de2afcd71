"""The plant install: the install script into a temporary prefix, and the systemd unit."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]


INSTALL_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
"""The installed agent must run from its own venv, not from a checkout on PYTHONPATH."""


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Run deploy/install.sh into a private prefix (no apt, no systemd): the real pip install.
    The root's name uses every character the prefix allow-list takes besides letters."""
    root = tmp_path_factory.mktemp("install") / "ea+1.0_x-y"
    proc = subprocess.run(
        [
            "bash",
            str(REPO / "deploy" / "install.sh"),
            "--prefix",
            str(root / "opt"),
            "--config-dir",
            str(root / "etc"),
            "--unit-dir",
            str(root / "units"),
            "--no-apt",
            "--no-systemd",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=INSTALL_ENV,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "TFLite runtime:" in proc.stdout
    return root


@pytest.mark.slow
def test_install_script_creates_a_working_agent(installed: Path) -> None:
    exe = installed / "opt" / "venv" / "bin" / "edge-agent"
    out = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0
    assert "run" in out.stdout
    # The Pi install must not pull in TensorFlow.
    py = installed / "opt" / "venv" / "bin" / "python"
    probe = subprocess.run([str(py), "-c", "import tensorflow"], capture_output=True, timeout=60)
    assert probe.returncode != 0
    config = (installed / "etc" / "agent.yaml").read_text()
    # the example's /opt/edge-agent paths point into the prefix it was installed to
    assert f"bundle: {installed / 'opt'}/bundle" in config and "/opt/edge-agent" not in config
    # The demo's bundle and clips are package data: a non-editable install can run it.
    demo = subprocess.run(
        [str(exe), "demo", "--fast", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=installed,
        env=INSTALL_ENV,
    )
    assert demo.returncode == 0, demo.stderr
    assert '"kind":"alarm"' in demo.stdout and "site-packages" in demo.stdout


@pytest.mark.slow
def test_install_keeps_an_existing_config_and_no_systemd_writes_no_unit(installed: Path) -> None:
    """Run again (an upgrade): the edited config is kept. Without --unit-dir, --no-systemd
    writes no unit at all (it used to write /etc/systemd/system/edge-agent.service)."""
    cfg = installed / "etc" / "agent.yaml"
    cfg.write_text(cfg.read_text() + "\n# edited by the plant engineer\n")
    system_unit = Path("/etc/systemd/system/edge-agent.service")
    existed = system_unit.exists()
    unit = installed / "units" / "edge-agent.service"
    before = unit.read_bytes()
    unit.unlink()
    proc = subprocess.run(
        [
            "bash",
            str(REPO / "deploy" / "install.sh"),
            "--prefix",
            str(installed / "opt"),
            "--config-dir",
            str(installed / "etc"),
            "--no-apt",
            "--no-systemd",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=INSTALL_ENV,
    )
    unit.write_bytes(before)  # the other tests read it
    assert proc.returncode == 0, proc.stderr
    assert "edited by the plant engineer" in cfg.read_text()
    assert "--no-systemd: no unit file written (--unit-dir DIR writes one there)" in proc.stdout
    assert system_unit.exists() == existed


BAD_PATHS = [
    ("a b", "a space split ExecStart and the install exited 0"),
    ("x&y", "sed put the matched text where '&' was: the bundle path was mangled"),
    ("x#y", "sed failed and left an empty agent.yaml that later runs kept"),
    ("x#g;e touch {marker};#", "GNU sed's `e` command ran the rest as a shell command"),
    ("x%iy", "'%i' is a systemd specifier"),
    ("x'y", "a quote"),
    ("x\\y", "a backslash"),
]


@pytest.mark.parametrize(("name", "why"), BAD_PATHS)
@pytest.mark.parametrize("option", ["--prefix", "--config-dir", "--unit-dir"])
def test_install_refuses_a_path_it_cannot_write_safely(
    tmp_path: Path, option: str, name: str, why: str
) -> None:
    """The real install script with a path that broke it: refused before anything is done (no
    folder made, no venv, no sed), one line naming the option, exit 2."""
    marker = tmp_path / "pwned"
    bad = str(tmp_path / "t" / name.format(marker=marker))
    paths = {
        "--prefix": str(tmp_path / "opt"),
        "--config-dir": str(tmp_path / "etc"),
        "--unit-dir": str(tmp_path / "units"),
        option: bad,
    }
    proc = subprocess.run(
        [
            "bash",
            str(REPO / "deploy" / "install.sh"),
            *[x for kv in paths.items() for x in kv],
            "--no-apt",
            "--no-systemd",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=INSTALL_ENV,
    )
    assert proc.returncode == 2, (why, proc.stdout, proc.stderr)
    assert proc.stdout == ""
    assert proc.stderr.splitlines() == [
        (
            f"error: {option}: '{bad}' has characters other than letters, digits and / . _ + - (a "
            "space, '&', '#', '%' or a quote would break the unit or the config); choose another "
            "path"
        )
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing made, nothing ran


def test_install_refuses_a_relative_prefix(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            "bash",
            str(REPO / "deploy" / "install.sh"),
            "--prefix",
            "opt/ea",
            "--no-apt",
            "--no-systemd",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert proc.stderr == "error: --prefix: expected an absolute path, got 'opt/ea'\n"
    assert not (tmp_path / "opt").exists()


@pytest.mark.slow
def test_installed_unit_verifies(installed: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    unit = installed / "units" / "edge-agent.service"
    text = unit.read_text()
    assert str(installed / "opt" / "venv" / "bin" / "edge-agent") in text
    for key in (
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "User=edge-agent",
        "SupplementaryGroups=audio",
        "Restart=on-failure",
    ):
        assert key in text
    proc = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr


def test_unknown_install_option_is_refused() -> None:
    proc = subprocess.run(
        ["bash", str(REPO / "deploy" / "install.sh"), "--frobnicate"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2
    assert "unknown option --frobnicate" in proc.stderr


@pytest.mark.slow
def test_installed_example_config_passes_config_check(installed: Path) -> None:
    """install.sh's example config, with the demo bundle it installed, is valid as written."""
    assert (installed / "opt" / "bundle" / "current").is_file()
    exe = installed / "opt" / "venv" / "bin" / "edge-agent"
    proc = subprocess.run(
        [str(exe), "config", "check", "--show", str(installed / "etc" / "agent.yaml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert f"bundle: {installed / 'opt' / 'bundle'}" in proc.stdout
    assert "path: /var/lib/edge-agent/outbox.sqlite" in proc.stdout  # writable under systemd


UNIT = REPO / "deploy" / "systemd" / "edge-agent.service"

SANDBOX_KEYS = (
    "NoNewPrivileges",
    "SystemCallFilter",
    "SystemCallErrorNumber",
    "SystemCallArchitectures",
    "RestrictAddressFamilies",
    "ProtectProc",
    "PrivateUsers",
    "PrivateMounts",
    "MemoryDenyWriteExecute",
    "LockPersonality",
    "RestrictRealtime",
    "RestrictNamespaces",
)
"""The unit's settings that a systemd user manager applies as the system one does (no User=,
no device cgroup): what `test_the_unit_sandbox_runs_the_agent` runs the agent under."""

USER_MANAGER = r"""
set -e
rt=$(mktemp -d); chmod 700 "$rt"
mkdir -p /run/systemd; mount -t tmpfs tmpfs /run/systemd; mkdir /run/systemd/system
export XDG_RUNTIME_DIR=$rt
/lib/systemd/systemd --user >/dev/null 2>&1 &
manager=$!
for i in $(seq 100); do [ -S "$rt/bus" ] && [ -S "$rt/systemd/private" ] && break; sleep 0.1; done
set +e
timeout 100 systemd-run --user --pipe --wait --quiet --collect "$@"
rc=$?
kill $manager; wait $manager 2>/dev/null; rm -rf "$rt"
exit $rc
"""
"""A systemd user manager in a private mount namespace (this machine has no systemd as PID 1;
the tmpfs over /run/systemd exists only in that namespace), running one transient service."""


def _unit_sandbox(extra: tuple[str, ...] = ()) -> list[str]:
    """`-p KEY=VALUE` for every SANDBOX_KEYS line of the shipped unit, then `extra`."""
    props = [
        line.strip()
        for line in UNIT.read_text().splitlines()
        if line.split("=", 1)[0] in SANDBOX_KEYS
    ]
    return [x for kv in [*props, *extra] for x in ("-p", kv)]


def _run_sandboxed(
    props: list[str], argv: list[str], env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    if shutil.which("systemd-run") is None or not Path("/lib/systemd/systemd").exists():
        pytest.skip("systemd is not installed")
    setenv = [x for k, v in env.items() for x in ("-E", f"{k}={v}")]
    proc = subprocess.run(
        [
            "unshare",
            "-m",
            "--propagation",
            "private",
            "bash",
            "-c",
            USER_MANAGER,
            "sandbox",
            *setenv,
            "-p",
            f"WorkingDirectory={REPO}",
            *props,
            "--",
            *argv,
        ],
        capture_output=True,
        text=True,
        timeout=110,
    )
    if "Failed to connect to bus" in proc.stderr or "unshare: " in proc.stderr:
        pytest.skip(f"no systemd user manager here: {proc.stderr.strip()}")
    return proc


def test_the_unit_sandbox_runs_the_agent(tmp_path: Path, alsa_sandbox: Any) -> None:
    """The unit's system-call filter, address families (no AF_NETLINK), ProtectProc and
    PrivateUsers, applied by real systemd: the agent captures from a PortAudio device (an
    ALSA file PCM playing a faulty demo clip), scores and raises the alarm. With
    MemoryDenyWriteExecute=yes on top, the device cannot be opened (sounddevice's callback
    needs writable+executable memory): why the unit leaves it off."""
    import numpy as np

    from edge_agent.audio.files import read_wav
    from edge_agent.commands.demo import load_demo

    demo = load_demo()
    raw = tmp_path / "mic.f32"
    x, _ = read_wav(next(p for p in demo.paths if "faulty" in p.name))
    np.tile(x, 6).astype("<f4").tofile(raw)
    mic = alsa_sandbox.file_pcm("sandboxmic", raw)
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(
        f"bundle: {demo.bundle}\nsection: {demo.section}\nsource: {{device: {mic}}}\n"
        f"outbox: {{path: {tmp_path / 'outbox.sqlite'}}}\n"
        "decision: {k: 3, n: 5}\nlog: {stdout: false}\n"
    )
    argv = [
        "timeout",
        "-s",
        "TERM",
        "8",
        str(Path(sys.executable).with_name("edge-agent")),
        "run",
        "--config",
        str(cfg),
    ]
    env = {
        "PYTHONPATH": str(REPO),
        "HOME": str(tmp_path),
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "ALSA_CONFIG_PATH": os.environ["ALSA_CONFIG_PATH"],
    }
    try:
        props = _unit_sandbox()
        assert "SystemCallFilter=@system-service" in props and "PrivateUsers=yes" in props
        ok = _run_sandboxed(props, argv, env)
        assert f"capturing from {mic!r}" in ok.stderr, ok.stderr
        assert '"event": "stopped"' in ok.stderr and '"alarms": 1' in ok.stderr, ok.stderr
        assert "Traceback" not in ok.stderr
        mdwe = _run_sandboxed(_unit_sandbox(("MemoryDenyWriteExecute=yes",)), argv, env)
        assert "Cannot allocate write+execute memory for ffi.callback()" in mdwe.stderr
    finally:
        alsa_sandbox.remove_pcm(mic)


def test_unit_exposure_is_low() -> None:
    """`systemd-analyze security` scores the unit as shipped: 3.5 before the system-call
    filter, ProtectProc, PrivateUsers and the address families without AF_NETLINK."""
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    proc = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", str(UNIT)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    last = (proc.stdout + proc.stderr).strip().splitlines()[-1]
    if "Overall exposure level" not in last:
        pytest.skip(f"systemd-analyze security cannot score offline here: {last}")
    assert float(last.split(": ")[1].split()[0]) <= 1.5, last


def test_unit_sandboxing_is_complete() -> None:
    """The unit's hardening, key by key (systemd-analyze verify only checks syntax)."""
    text = UNIT.read_text()
    keys = dict(
        line.split("=", 1)
        for line in text.splitlines()
        if "=" in line and not line.startswith("#") and not line.startswith("ReadWritePaths")
    )
    assert keys["User"] == "edge-agent" and keys["SupplementaryGroups"] == "audio"
    assert keys["NoNewPrivileges"] == "yes" and keys["ProtectSystem"] == "strict"
    assert keys["ProtectHome"] == "yes" and keys["PrivateTmp"] == "yes"
    assert keys["CapabilityBoundingSet"] == ""
    assert keys["DevicePolicy"] == "closed" and keys["DeviceAllow"] == "char-alsa rw"
    assert keys["Restart"] == "on-failure"
    assert "ReadWritePaths=/var/lib/edge-agent" in text
    lines = text.splitlines()
    assert "SystemCallFilter=@system-service" in lines
    assert "SystemCallFilter=~@privileged @resources" in lines
    assert keys["SystemCallErrorNumber"] == "EPERM"  # a refused call fails, never kills
    assert keys["ProtectProc"] == "invisible" and keys["PrivateUsers"] == "yes"
    assert keys["RestrictAddressFamilies"].split() == ["AF_UNIX", "AF_INET", "AF_INET6"]
    assert "MemoryDenyWriteExecute" not in keys  # PortAudio's cffi callback needs W+X memory


@pytest.mark.slow
def test_demo_script_installs_without_tensorflow_and_raises_the_alarm(tmp_path: Path) -> None:
    """`bash deploy/demo.sh` (README's first command) into a temp venv; then again, no install."""
    env = {**os.environ, "EDGE_AGENT_VENV": str(tmp_path / "venv"), "EDGE_AGENT_NO_APT": "1"}
    env.pop("VIRTUAL_ENV", None)
    first = subprocess.run(
        ["bash", str(REPO / "deploy" / "demo.sh"), "--fast"],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
    )
    assert first.returncode == 0, first.stdout + first.stderr
    assert "installing the agent" in first.stderr
    assert "ALARM RAISED at window" in first.stdout
    probe = subprocess.run(
        [str(tmp_path / "venv" / "bin" / "python"), "-c", "import tensorflow"],
        capture_output=True,
        timeout=60,
    )
    assert probe.returncode != 0
    second = subprocess.run(
        ["bash", str(REPO / "deploy" / "demo.sh"), "--fast"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert second.returncode == 0, second.stderr
    assert "installing" not in second.stderr  # idempotent: nothing to install the second time
    assert "ALARM RAISED at window" in second.stdout


@pytest.mark.mqtt
def test_example_broker_tls_acl_with_the_demo(tmp_path: Path) -> None:  # noqa: PLR0915 -- one scenario
    """deploy/mosquitto as shipped (paths and port aside): TLS, passwords, per-device ACLs.

    The demo publishes as device press-01 through TLS with a password; Home Assistant's user
    sees its alarm and discovery; press-02 cannot write into press-01's subtree.
    """
    import paho.mqtt.client as mqtt
    from mqtt_fixtures import MOSQUITTO, Subscriber, free_port
    from paho.mqtt.enums import CallbackAPIVersion

    if not Path(MOSQUITTO).exists() or shutil.which("openssl") is None:
        pytest.skip("mosquitto or openssl not installed")
    certs = tmp_path / "certs"
    subprocess.run(
        ["bash", str(REPO / "deploy" / "mosquitto" / "make-certs.sh"), str(certs), "127.0.0.1"],
        check=True,
        capture_output=True,
        timeout=60,
    )
    passwd = tmp_path / "passwd"
    users = {"press-01": "pw1", "press-02": "pw2", "homeassistant": "pw-ha"}
    for i, (u, pw) in enumerate(users.items()):
        subprocess.run(
            ["mosquitto_passwd", "-b", *(["-c"] if i == 0 else []), str(passwd), u, pw],
            check=True,
            capture_output=True,
        )
    (tmp_path / "acl").write_text((REPO / "deploy" / "mosquitto" / "acl").read_text())
    port = free_port()
    conf = (REPO / "deploy" / "mosquitto" / "mosquitto.conf").read_text()
    conf = (
        conf.replace("listener 8883", f"listener {port} 127.0.0.1")
        .replace("/etc/mosquitto/certs/", f"{certs}/")
        .replace("/etc/mosquitto/passwd", str(passwd))
        .replace("/etc/mosquitto/acl", str(tmp_path / "acl"))
        .replace("/var/lib/mosquitto/", f"{tmp_path}/")
    ) + "user root\n"
    (tmp_path / "mosquitto.conf").write_text(conf)
    broker = subprocess.Popen(
        [MOSQUITTO, "-c", str(tmp_path / "mosquitto.conf")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        import socket
        import time

        end = time.monotonic() + 5
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                assert time.monotonic() < end, "mosquitto did not start with the example config"
                time.sleep(0.05)

        class _B:  # what Subscriber needs of a broker
            pass

        b = _B()
        b.port = port  # type: ignore[attr-defined]
        ha = Subscriber(
            b,  # type: ignore[arg-type]
            ["listening/#", "homeassistant/#"],
            username="homeassistant",
            password="pw-ha",
            ca=certs / "ca.crt",
        )
        from edge_agent.commands.demo import load_demo

        demo = load_demo()
        cfg = tmp_path / "agent.yaml"
        cfg.write_text(
            f"bundle: {demo.bundle}\nsection: {demo.section}\n"
            f"mqtt:\n  host: 127.0.0.1\n  port: {port}\n  prefix: listening/site-a\n"
            "  device_id: press-01\n  username: press-01\n  password_env: PW\n"
            f"  tls: {{ca_file: {certs / 'ca.crt'}}}\n  ha_discovery: true\n"
        )
        env = {**os.environ, "PW": "pw1", "TF_CPP_MIN_LOG_LEVEL": "2"}
        proc = subprocess.run(
            [sys.executable, "-m", "edge_agent.cli", "demo", "--fast", "--config", str(cfg)],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
            cwd=REPO,
        )
        assert proc.returncode == 0, proc.stderr
        alarm_topic = f"listening/site-a/press-01/{demo.section}/alarm"
        assert ha.wait_for(lambda m: any(t == alarm_topic for t, _, _ in m), timeout=10)
        assert ha.on(f"homeassistant/binary_sensor/press-01/{demo.section}_alarm/config")

        # press-02 may write its own subtree only.
        c = mqtt.Client(CallbackAPIVersion.VERSION2)
        c.username_pw_set("press-02", "pw2")
        c.tls_set(ca_certs=str(certs / "ca.crt"))
        c.connect("127.0.0.1", port)
        c.loop_start()
        own = "listening/site-a/press-02/fan_1/score"
        c.publish("listening/site-a/press-01/fan_1/alarm", b"x", qos=1).wait_for_publish(5)
        c.publish(own, b"y", qos=1).wait_for_publish(5)
        c.publish("listening/site-a/press-02/fan_1/evidence/a.flac", b"z", qos=1)
        assert ha.wait_for(lambda m: any(t == own for t, _, _ in m), timeout=5)
        assert ha.wait_for(
            lambda m: any(t.endswith("/evidence/a.flac") for t, _, _ in m), timeout=5
        )  # its alarm clips (evidence.mqtt_max_kilobytes)
        assert not ha.on("listening/site-a/press-01/fan_1/alarm")
        c.disconnect()
        c.loop_stop()
        ha.close()
    finally:
        broker.kill()
        broker.wait()


def test_unit_is_type_notify_with_a_watchdog(tmp_path: Path) -> None:
    """READY=1/WATCHDOG=1 from the agent (edge_agent.runtime.notify) need these keys, and the
    notify socket is AF_UNIX; the unit as shipped (ExecStart pointed at this venv) verifies."""
    text = (REPO / "deploy" / "systemd" / "edge-agent.service").read_text()
    keys = dict(
        line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#")
    )
    assert keys["Type"] == "notify" and keys["NotifyAccess"] == "main"
    assert keys["WatchdogSec"] == "60s"
    assert "AF_UNIX" in keys["RestrictAddressFamilies"].split()
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    exe = Path(sys.executable).with_name("edge-agent")
    if not exe.exists():
        pytest.skip("edge-agent is not installed next to this Python")
    unit = tmp_path / "edge-agent.service"
    unit.write_text(text.replace("/opt/edge-agent/venv/bin/edge-agent", str(exe)))
    proc = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
