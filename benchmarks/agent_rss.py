"""Peak RSS of `edge-agent run` as deployed: one machine, a real microphone path, a real broker.

    nice .venv/bin/python benchmarks/agent_rss.py [--seconds 130] [--xnnpack]
        [--reload-at 60 [--new-model]]

What runs: the `edge-agent run` command (a child process, exactly as systemd starts it) on a
copy of the shipped demo bundle, capturing through PortAudio -> ALSA -> a private PulseAudio
null-source (paced at real time) that plays the demo clips in order (normal, then faulty, so an
alarm is raised, explained, and its evidence clip and Home Assistant picture made), publishing
to a real mosquitto with Home Assistant discovery on, the outbox, the score history and the
evidence folder on. The child's VmRSS is sampled every 0.2 s; the figure is its VmHWM (peak)
read just before it is stopped, the same number as `ru_maxrss`. `--reload-at S` makes a new
bundle version current S seconds in (what a calibration or a fleet install does), so the peak
includes a reload, when the new scorer is built and self-tested while the old one still scores
(sharing its interpreter: the same model; with `--new-model` a second one, as a fleet install
of a new model).

Needs pulseaudio, libportaudio2, libasound2-plugins and mosquitto (`deploy/apt.sh` installs
them). The PortAudio share depends on the ALSA configuration: here ALSA reads only this
script's small configuration (one capture PCM); a system's default configuration (every card,
the pulse/jack plugins) adds more (measured in BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from chaos import Broker  # the chaos benchmark's mosquitto (persistence on, as deployed)

from edge_agent.audio.files import read_wav
from edge_agent.commands.demo import DemoSet, load_demo


def status_kb(pid: int, field: str) -> int:
    """`VmRSS` / `VmHWM` of a process in kB (0 once it has gone)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in text.splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def demo_audio(demo: DemoSet) -> np.ndarray:
    """The demo clips in replay order, as one float32 signal (16 kHz mono)."""
    return np.concatenate([read_wav(p)[0] for p in demo.paths])


def start_pulse(folder: Path) -> subprocess.Popen[bytes]:
    script = folder / "bench.pa"
    script.write_text(
        f"load-module module-native-protocol-unix auth-anonymous=1 socket={folder}/native\n"
        "load-module module-null-source source_name=edgeclock format=float32le rate=16000 "
        "channels=1\n"
    )
    env = dict(
        os.environ, HOME=str(folder), XDG_RUNTIME_DIR=str(folder), PULSE_RUNTIME_PATH=str(folder)
    )
    proc = subprocess.Popen(
        [
            "pulseaudio",
            "-n",
            "-F",
            str(script),
            "--daemonize=no",
            "--exit-idle-time=-1",
            "--use-pid-file=no",
            "--realtime=false",
            "--high-priority=false",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while not (folder / "native").exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            sys.exit("pulseaudio did not start")
        time.sleep(0.05)
    time.sleep(0.2)
    return proc


def new_version(bundle: Path, new_model: bool = False) -> None:
    """A copy of the bundle's version 1 made current as version 2: the agent reloads it. It
    shares the running interpreter, as after a calibration; with `new_model` the copy's model
    file is the same network with 16 bytes appended (other bytes: nothing to share), so the
    reload holds a second interpreter, as a fleet install of a new model does."""
    if not new_model:
        shutil.copytree(bundle / "versions" / "1", bundle / "versions" / "2")
        (bundle / "current.new").write_text("2\n")
        (bundle / "current.new").replace(bundle / "current")
        return
    from edge_agent.bundle.load import load_bundle
    from edge_agent.bundle.manifest import self_test_file
    from edge_agent.bundle.versions import write_bundle

    b = load_bundle(bundle)
    manifest = {k: v for k, v in b.manifest.items() if k not in ("version", "files", "created")}
    models = {n: (b.path / n).read_bytes() + bytes(16) for n in b.model_files}
    reference = self_test_file(b.manifest)
    extra = {} if reference is None else {reference: (b.path / reference).read_bytes()}
    write_bundle(bundle, models, b.backends, manifest, extra=extra)


def run_agent(
    cfg: Path,
    env: dict[str, str],
    folder: Path,
    seconds: float,
    reload_at: float | None,
    new_model: bool = False,
) -> tuple[int, int, str]:
    """Run `edge-agent run --config cfg` for `seconds` (a new bundle version made current at
    `reload_at` s): (peak RSS kB, RSS kB at the end, log)."""
    log = folder / "agent.log"
    with log.open("wb") as out:
        agent = subprocess.Popen(
            [sys.executable, "-m", "edge_agent.cli", "run", "--config", str(cfg)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=folder,
        )
        t0 = time.monotonic()
        hwm = last = 0
        while time.monotonic() - t0 < seconds and agent.poll() is None:
            if reload_at is not None and time.monotonic() - t0 >= reload_at:
                new_version(folder / "bundle", new_model)
                reload_at = None
            last = status_kb(agent.pid, "VmRSS") or last
            hwm = max(hwm, status_kb(agent.pid, "VmHWM"))
            time.sleep(0.2)
        rc = agent.poll()
        agent.send_signal(signal.SIGTERM)
        try:
            agent.wait(30)
        except subprocess.TimeoutExpired:
            agent.kill()
    text = log.read_text(errors="replace")
    if rc is not None:
        print(text[-3000:])
        sys.exit(f"the agent stopped early (rc {rc})")
    return hwm, last, text


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=130.0, help="how long the agent runs")
    ap.add_argument(
        "--hop",
        type=float,
        default=10.0,
        help="seconds between windows (10: windows = the demo clips)",
    )
    ap.add_argument(
        "--xnnpack", action="store_true", help="XNNPACK (default: TFLite's own kernels)"
    )
    ap.add_argument("--show-log", action="store_true", help="print the end of the agent's log")
    ap.add_argument(
        "--reload-at",
        type=float,
        metavar="SECONDS",
        help="make a new bundle version current this many seconds in (the agent reloads it)",
    )
    ap.add_argument(
        "--new-model",
        action="store_true",
        help="with --reload-at: the new version's model file differs (a fleet install of a new "
        "model: a second interpreter), not the same (a calibration: the interpreter is shared)",
    )
    args = ap.parse_args()
    for exe in ("pulseaudio", "mosquitto"):
        if shutil.which(exe) is None and not Path(f"/usr/sbin/{exe}").exists():
            sys.exit(f"{exe} not installed (deploy/apt.sh installs it)")
    demo = load_demo()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        raw = tmp / "mic.f32"
        shutil.copytree(demo.bundle, tmp / "bundle")  # a reload test writes into it
        audio = demo_audio(demo)
        pad = np.zeros(int(16000 * max(0.0, args.seconds + 10 - audio.size / 16000)), np.float32)
        np.concatenate([audio, pad]).astype("<f4").tofile(raw)
        pulse = start_pulse(tmp)
        broker = Broker(tmp)
        broker.start()
        alsa = tmp / "asound.conf"
        alsa.write_text(
            f'pcm.edgeclock {{ type pulse server "unix:{tmp}/native" device "edgeclock" }}\n'
            f'pcm.edgemic {{ type file slave.pcm "edgeclock" file "/dev/null" infile "{raw}" '
            'format "raw" }\npcm.zz_unavailable { type hw card 99 }\n'
        )
        cfg = tmp / "agent.yaml"
        cfg.write_text(
            f"bundle: {tmp / 'bundle'}\nsection: {demo.section}\n"
            "source: {kind: device, device: edgemic}\n"
            f"windows: {{hop: {args.hop}}}\n"
            f"mqtt: {{host: 127.0.0.1, port: {broker.port}, ha_discovery: true, "
            "device_id: bench}\n"
            f"outbox: {{path: {tmp}/state/outbox.sqlite}}\n"
            f"tflite: {{xnnpack: {'true' if args.xnnpack else 'false'}}}\n"
        )
        env = dict(os.environ, ALSA_CONFIG_PATH=str(alsa), TF_CPP_MIN_LOG_LEVEL="2")
        try:
            hwm, last, text = run_agent(cfg, env, tmp, args.seconds, args.reload_at, args.new_model)
        finally:
            broker.kill()
            pulse.kill()
            pulse.wait()
    if args.show_log:
        print(text[-4000:])
    windows = len(re.findall(r"Z \S+ window=\d+ score=", text))  # the stdout lines
    alarms = len(re.findall(r"Z \S+ ALARM raised", text))
    kernels = "XNNPACK" if args.xnnpack else "TFLite's own kernels"
    print(
        f"edge-agent run, one machine, PortAudio/PulseAudio capture, MQTT + HA discovery, "
        f"{kernels}, hop {args.hop:g} s, {args.seconds:g} s: {windows} windows, {alarms} alarm(s)"
    )
    reloads = len(re.findall(r"Z status: .*\"event\": \"reloaded\"", text))
    print(
        f"peak RSS {hwm / 1024:.1f} MB (budget 120 MB); at the end {last / 1024:.1f} MB; "
        f"{reloads} reload(s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
