"""Chaos: the real agent under broker kills, agent kills, a full disk and bad rows; are alarms lost?

Runs `edge-agent run --stdin` (the shipped demo bundle) as a subprocess fed with audio at a
fixed pace, a real mosquitto (persistence on, as deploy/mosquitto/ configures it), and the
agent's state folder (outbox, decision state) on a 16 MiB tmpfs. Every window alternates a
clearly faulty and a clearly normal clip with `decision.k = n = clear_after = 1`, so EVERY
window is an alarm event (raised, cleared, raised...): a few alarms a second, a far harsher
load than a plant's. Meanwhile, one scenario after another (seeded random order and lengths):

  broker        mosquitto SIGKILLed, restarted after 1-6 s
  agent         the agent SIGKILLed, restarted after 0-1.5 s
  disk          the state disk filled (ENOSPC) for 2-6 s, then freed
  disk+broker   the disk full and the broker down at once, the broker back first
  bad rows      the agent SIGKILLed, 4 rows it cannot send written into its outbox (wildcard
                topic, control character, text payload, QoS 7), the agent restarted
  agent@broker  the broker down, the agent SIGKILLed and restarted meanwhile
  agent@disk    the disk full, the agent SIGKILLed and restarted meanwhile

Raised: every alarm event in the agent's own JSON-lines log (written before the MQTT sink
sees the event). Delivered: every alarm payload a persistent-session subscriber (QoS 1)
received on the alarm topic. After the chaos the system is left healthy until everything
raised has arrived (at most 60 s), then the agent is stopped by closing its stdin.

Shown apart if it ever happens: an alarm that only lived in the agent's memory (the disk
refused it) when the agent was SIGKILLed, before the broker had it, cannot survive (no disk,
then a kill); `lost_at_a_kill_on_a_full_disk` counts lost alarms of runs killed that way.

    .venv/bin/python benchmarks/chaos.py [--seconds 150] [--rate 4] [--seed 0] [--json out.json]

Needs root (mount) and mosquitto. Prints a Markdown table (BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

DEV = "chaos"
PREFIX = "edge-asd"


# --- the world: a broker, a disk, a subscriber ------------------------------------------------


class Broker:
    """mosquitto on a free loopback port, persistence saved on every change."""

    def __init__(self, d: Path) -> None:
        self.dir = d
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        (d / "mosquitto.conf").write_text(
            f"listener {self.port} 127.0.0.1\nuser root\nallow_anonymous true\n"
            f"persistence true\npersistence_location {d}/\nautosave_interval 1\n"
            "autosave_on_changes true\n"
        )
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        mosquitto = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.proc = subprocess.Popen(
            [mosquitto, "-c", str(self.dir / "mosquitto.conf")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.starts += 1
        end = time.monotonic() + 10
        while time.monotonic() < end:
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            time.sleep(0.02)
        raise RuntimeError("mosquitto did not start")

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


class Disk:
    """A tmpfs for the agent's state; `fill()` takes every free block, `free()` gives it back."""

    def __init__(self, path: Path, size: str) -> None:
        self.path = path
        path.mkdir(parents=True)
        r = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
            capture_output=True,
            text=True,
        )
        if r.returncode != 0:
            raise SystemExit(
                f"chaos: cannot mount a tmpfs on {path} (root needed): {r.stderr.strip()}"
            )
        self.filler = path / "filler"
        self.full = False

    def fill(self) -> None:
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            for chunk in (b"\0" * 65536, b"\0" * 4096, b"\0"):
                with contextlib.suppress(OSError):
                    while True:
                        os.write(fd, chunk)
        finally:
            os.close(fd)
        self.full = True

    def free(self) -> None:
        self.filler.unlink(missing_ok=True)
        self.full = False

    def unmount(self) -> None:
        self.free()
        if subprocess.run(["umount", str(self.path)], capture_output=True).returncode:
            subprocess.run(["umount", "-l", str(self.path)], capture_output=True)


class Subscriber:
    """A persistent-session QoS 1 subscriber: the broker queues what arrives while it
    reconnects (persistence on), so a broker kill does not hide a delivered alarm."""

    def __init__(self, broker: Broker) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.alarms: list[dict[str, Any]] = []
        self.health: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        c = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id="chaos-subscriber", clean_session=False
        )
        c.reconnect_delay_set(0.1, 0.5)  # type: ignore[arg-type]
        c.on_connect = self._connected
        c.on_message = self._message
        c.connect("127.0.0.1", broker.port)
        c.loop_start()
        self.client = c

    def _connected(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        client.subscribe(f"{PREFIX}/{DEV}/+/alarm", qos=1)
        client.subscribe(f"{PREFIX}/{DEV}/health", qos=1)

    def _message(self, client: Any, userdata: Any, msg: Any) -> None:
        try:
            e = json.loads(msg.payload)
        except ValueError:
            return
        with self.lock:
            (self.health if msg.topic.endswith("/health") else self.alarms).append(e)

    def delivered(self) -> set[tuple[float, int, str]]:
        with self.lock:
            return {key(e) for e in self.alarms if "window" in e}

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def key(e: dict[str, Any]) -> tuple[float, int, str]:
    """An alarm event's identity: window start (wall clock: unique across agent runs),
    window number, the decision it made."""
    return (float(e["epoch"]), int(e["window"]), str(e["decision"]))


# --- the agent -----------------------------------------------------------------------------------


class Agent:
    """`edge-agent run --stdin` as a child; a feeder thread writes one window of audio every
    1/rate s to whichever agent runs (a restarted one starts at a window boundary)."""

    def __init__(self, work: Path, cfg: Path, windows: list[bytes], rate: float) -> None:
        self.work = work
        self.cfg = cfg
        self.windows = windows
        self.rate = rate
        self.proc: subprocess.Popen[bytes] | None = None
        self.lock = threading.Lock()
        self.starts = 0
        self.runs: list[list[Any]] = []  # [wall-clock start, killed while the disk was full]
        self.stop_feeding = threading.Event()
        self.fed = 0
        self.feeder = threading.Thread(target=self._feed, daemon=True)

    def start(self) -> None:
        with self.lock:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "edge_agent.cli", "run", "-c", str(self.cfg), "--stdin"],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=Path(self.work / "agent.stderr").open("ab"),  # noqa: SIM115 -- the child's
                env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
            )
            self.starts += 1
            self.runs.append([time.time(), False])
        if not self.feeder.is_alive():
            self.feeder.start()

    def kill(self, disk_full: bool = False) -> None:
        with self.lock:
            proc, self.proc = self.proc, None
            if proc is not None and disk_full:
                self.runs[-1][1] = True
        if proc is not None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            with contextlib.suppress(OSError):
                proc.stdin.close()  # type: ignore[union-attr]

    def stop(self) -> int:
        """Close stdin: the agent scores what it has, flushes, exits (0 expected)."""
        self.stop_feeding.set()
        self.feeder.join(10)
        with self.lock:
            proc, self.proc = self.proc, None
        if proc is None:
            return -1
        with contextlib.suppress(OSError):
            proc.stdin.close()  # type: ignore[union-attr]
        return proc.wait(90)

    def _feed(self) -> None:
        i = 0
        next_t = time.monotonic()
        while not self.stop_feeding.is_set():
            with self.lock:
                proc = self.proc
            if proc is None:
                time.sleep(0.05)
                continue
            pcm = self.windows[i % len(self.windows)]
            try:
                proc.stdin.write(pcm)  # type: ignore[union-attr]
                proc.stdin.flush()  # type: ignore[union-attr]
                i += 1
                self.fed += 1
            except (OSError, ValueError):  # killed meanwhile: wait for the next one
                time.sleep(0.05)
                continue
            next_t = max(next_t + 1.0 / self.rate, time.monotonic() - 1.0)
            time.sleep(max(0.0, next_t - time.monotonic()))


def pcm_windows() -> tuple[list[bytes], Path, str]:
    """Two demo clips as s16le PCM windows: clearly faulty, clearly normal (threshold 5)."""
    from edge_agent.audio.files import load_clip
    from edge_agent.commands.demo import load_demo
    from edge_agent.runtime.scorer import Scorer

    demo = load_demo()
    spec = Scorer.from_bundle(demo.bundle).spec
    out = []
    for p in (demo.paths[11], demo.paths[2]):  # scores about 18.5 and -1.3
        x = load_clip(p, spec)
        out.append((np.clip(x, -1, 1) * 32767).astype("<i2").tobytes())
    return out, demo.bundle, demo.section


def raised_alarms(log: Path) -> list[dict[str, Any]]:
    out = []
    if log.exists():
        for line in log.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):  # a SIGKILL may tear the last line
                e = json.loads(line)
                if e.get("kind") == "alarm":
                    out.append(e)
    return out


def events_of(log: Path, kind: str) -> list[dict[str, Any]]:
    out = []
    for line in log.read_text(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            e = json.loads(line)
            if e.get("kind") == kind:
                out.append(e)
    return out


def bad_rows(outbox: Path) -> int:
    """Rows the agent cannot send, written into its outbox (it is not running)."""
    topic = f"{PREFIX}/{DEV}"
    try:
        with contextlib.closing(sqlite3.connect(outbox, timeout=5)) as con:
            con.executemany(
                "INSERT INTO outbox (topic, payload, qos, retain, priority) VALUES (?,?,?,?,?)",
                [
                    (f"{topic}/#", b"w", 1, 0, 2),
                    (f"{topic}/\x01", b"c", 1, 0, 2),
                    (f"{topic}/x", "text", 1, 0, 2),
                    (f"{topic}/x", b"q", 7, 0, 2),
                ],
            )
            con.commit()
    except sqlite3.Error as exc:
        print(f"  (bad rows not written: {exc})", flush=True)
        return 0
    return 4


# --- the chaos -----------------------------------------------------------------------------------


@dataclass
class Chaos:
    agent: Agent
    broker: Broker
    disk: Disk
    rng: random.Random
    log: list[tuple[float, str]] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    bad_rows_written: int = 0
    t0: float = field(default_factory=time.monotonic)

    def note(self, what: str) -> None:
        self.log.append((time.monotonic() - self.t0, what))
        print(f"  {time.monotonic() - self.t0:6.1f} s  {what}", flush=True)

    def wait(self, lo: float, hi: float) -> None:
        time.sleep(self.rng.uniform(lo, hi))

    @contextlib.contextmanager
    def full_disk(self) -> Iterator[None]:
        self.disk.fill()
        try:
            yield
        finally:
            self.disk.free()

    def broker_down(self) -> None:
        self.broker.kill()
        self.wait(1, 6)
        self.broker.start()

    def agent_kill(self) -> None:
        self.agent.kill(disk_full=self.disk.full)
        self.wait(0, 1.5)
        self.agent.start()

    def disk_full(self) -> None:
        with self.full_disk():
            self.wait(2, 6)

    def disk_full_and_broker_down(self) -> None:
        with self.full_disk():
            self.broker.kill()
            self.wait(2, 5)
            self.broker.start()
            self.wait(1, 2)

    def bad_rows(self) -> None:
        self.agent.kill()
        self.bad_rows_written += bad_rows(self.disk.path / "outbox.sqlite")
        self.agent.start()

    def agent_kill_while_broker_down(self) -> None:
        self.broker.kill()
        self.wait(1, 3)
        self.agent_kill()
        self.wait(1, 3)
        self.broker.start()

    def agent_kill_while_disk_full(self) -> None:
        with self.full_disk():
            self.wait(1, 3)
            self.agent_kill()
            self.wait(2, 4)

    def run(self, seconds: float) -> None:
        scenarios: list[tuple[str, Callable[[], None]]] = [
            ("broker", self.broker_down),
            ("agent", self.agent_kill),
            ("disk", self.disk_full),
            ("disk+broker", self.disk_full_and_broker_down),
            ("bad rows", self.bad_rows),
            ("agent@broker", self.agent_kill_while_broker_down),
            ("agent@disk", self.agent_kill_while_disk_full),
        ]
        order: list[tuple[str, Callable[[], None]]] = []
        while time.monotonic() - self.t0 < seconds:
            if not order:
                order = list(scenarios)
                self.rng.shuffle(order)
            name, scenario = order.pop()
            self.note(name)
            scenario()
            self.counts[name] += 1
            self.wait(2, 4)  # healthy in between: the agent recovers, the backlog drains


def killed_on_a_full_disk(k: tuple[float, int, str], runs: list[list[Any]]) -> bool:
    """Was the run that raised alarm `k` SIGKILLed while the disk was full? A run's windows
    are stamped from its first audio block on (10 s of audio per window, fed faster), so the
    first window's time, epoch - 10 * window, falls after its start."""
    anchor = k[0] - 10.0 * k[1]
    run = max((r for r in runs if r[0] <= anchor), key=lambda r: r[0], default=None)
    return bool(run and run[1])


def main() -> None:  # noqa: PLR0915 -- one linear script: set up, shake, settle, report
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=150.0, help="length of the chaos phase")
    ap.add_argument("--rate", type=float, default=4.0, help="windows (= alarm events) per s")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, help="write the result as JSON here")
    ap.add_argument("--keep", action="store_true", help="keep the work folder (logs)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("chaos: needs root (it mounts a small tmpfs for the full-disk faults)")
    windows, bundle, section = pcm_windows()
    work = Path(tempfile.mkdtemp(prefix="chaos-"))
    (work / "broker").mkdir()
    broker = Broker(work / "broker")
    broker.start()
    disk = Disk(work / "state", "16m")
    sub = Subscriber(broker)
    events = work / "events.jsonl"
    cfg = work / "agent.yaml"
    cfg.write_text(
        f"bundle: {bundle}\nsection: {section}\n"
        "decision: {threshold: 5.0, k: 1, n: 1, clear_after: 1}\n"
        f"log: {{stdout: false, jsonl_file: {events}}}\n"
        f"mqtt: {{host: 127.0.0.1, port: {broker.port}, device_id: {DEV}}}\n"
        f"outbox: {{path: {disk.path / 'outbox.sqlite'}}}\n"
    )
    agent = Agent(work, cfg, windows, args.rate)
    chaos = Chaos(agent, broker, disk, random.Random(args.seed))
    print(
        f"chaos: {args.seconds:.0f} s, {args.rate:g} alarm events/s, seed {args.seed}, "
        f"work folder {work}",
        flush=True,
    )
    started = time.monotonic()
    rc = -1
    try:
        agent.start()
        time.sleep(5)  # the agent's start (TFLite, bundle), first alarms
        chaos.run(args.seconds)
        chaos.note("healthy: waiting for every raised alarm to arrive")
        end = time.monotonic() + 60
        while time.monotonic() < end:
            if {key(e) for e in raised_alarms(events)} <= sub.delivered():
                break
            time.sleep(0.5)
        rc = agent.stop()
        chaos.note(f"agent stopped (stdin closed): exit {rc}")
        end = time.monotonic() + 30
        while (
            time.monotonic() < end
            and not {key(e) for e in raised_alarms(events)} <= sub.delivered()
        ):
            time.sleep(0.5)
    finally:
        agent.kill()
        sub.close()
        broker.kill()
        disk.unmount()
    elapsed = time.monotonic() - started
    raised = {key(e): e for e in raised_alarms(events)}
    delivered = sub.delivered()
    lost = sorted(set(raised) - delivered)
    lost_in_memory = [k for k in lost if killed_on_a_full_disk(k, agent.runs)]
    stopped = events_of(events, "status")
    final = stopped[-1] if stopped and stopped[-1].get("event") == "stopped" else {}
    health = Counter(e["event"] for e in sub.health)
    local_health = Counter(e["event"] for e in events_of(events, "health"))
    result = {
        "seconds": round(elapsed, 1),
        "chaos_seconds": args.seconds,
        "rate": args.rate,
        "seed": args.seed,
        "scenarios": dict(chaos.counts),
        "agent_starts": agent.starts,
        "broker_starts": broker.starts,
        "windows_fed": agent.fed,
        "alarms_raised": len(raised),
        "alarms_delivered": len(set(raised) & delivered),
        "alarms_lost": len(lost),
        "lost_at_a_kill_on_a_full_disk": len(lost_in_memory),
        "kills_on_a_full_disk": sum(bool(r[1]) for r in agent.runs),
        "bad_rows_written": chaos.bad_rows_written,
        "health_on_mqtt": dict(health),
        "health_local": dict(local_health),
        "last_run_exit": rc,
        "last_run_outbox_dropped": final.get("outbox_dropped"),
        "lost": [list(k) for k in lost[:20]],
    }
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    print("\n| | |\n|---|---|")
    for k in (
        "seconds",
        "scenarios",
        "agent_starts",
        "broker_starts",
        "alarms_raised",
        "alarms_delivered",
        "alarms_lost",
        "lost_at_a_kill_on_a_full_disk",
        "kills_on_a_full_disk",
        "bad_rows_written",
        "health_on_mqtt",
        "last_run_exit",
        "last_run_outbox_dropped",
    ):
        print(f"| {k} | {result[k]} |")
    if lost:
        print(
            f"chaos: {len(lost)} alarm(s) raised but never delivered: {lost[:5]} (logs kept "
            f"in {work})",
            file=sys.stderr,
        )
        raise SystemExit(1)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
