"""systemd's notify protocol against a real AF_UNIX datagram socket (what systemd listens on).

The agent runs for real (the CLI in a subprocess, or an in-process Agent) on the shipped demo
bundle and clips; the test plays the service manager: it binds the socket, sets NOTIFY_SOCKET
and WATCHDOG_USEC, and reads what arrives.
"""

from __future__ import annotations

import fcntl
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from edge_agent.agent import Agent
from edge_agent.commands.demo import load_demo
from edge_agent.config.load import load_config
from edge_agent.runtime.notify import Notifier, socket_address, watchdog_interval
from edge_agent.sinks.jsonl import JsonlSink


class Listener:
    """The service manager's side: a bound AF_UNIX datagram socket read on a thread (the
    kernel queues only ~10 datagrams: an unread socket makes the sender drop pings)."""

    def __init__(self, address: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.sock.settimeout(0.1)
        self.got: list[tuple[float, str]] = []  # (monotonic arrival, datagram)
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._closed.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            self.got.append((time.monotonic(), data.decode()))

    @property
    def messages(self) -> list[str]:
        return [m for _, m in list(self.got)]

    def wait_for(self, pred: Callable[[str], bool], timeout: float = 60.0) -> bool:
        """True once a datagram satisfying `pred` has arrived (waits at most `timeout` s)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if any(pred(m) for m in self.messages):
                return True
            time.sleep(0.02)
        return any(pred(m) for m in self.messages)

    def last_ping(self) -> float:
        return max((t for t, m in list(self.got) if m.startswith("WATCHDOG=1")), default=0.0)

    def close(self) -> None:
        self._closed.set()
        self._thread.join(timeout=5)
        self.sock.close()


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[Listener, str]]:
    """A notify socket at a filesystem path (the usual /run/systemd/notify kind)."""
    path = str(tmp_path / "notify")
    lst = Listener(path)
    yield lst, path
    lst.close()


def test_addresses_and_watchdog_interval() -> None:
    assert socket_address("/run/systemd/notify") == "/run/systemd/notify"
    assert socket_address("@abstract/name") == "\0abstract/name"
    assert socket_address("vsock:2:1234") is None and socket_address("@") is None
    assert watchdog_interval({"WATCHDOG_USEC": "60000000"}) == 30.0
    assert watchdog_interval({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "1"}, pid=2) is None
    assert watchdog_interval({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "2"}, pid=2) == 30.0
    assert watchdog_interval({"WATCHDOG_USEC": "0"}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "soon"}) is None and watchdog_interval({}) is None


def test_notifier_without_socket_is_a_no_op() -> None:
    n = Notifier({})
    assert not n.enabled and n.watchdog_interval is None
    assert not n.ready("x") and not n.watchdog() and not n.stopping()


def test_notifier_abstract_socket_and_no_pings_after_stopping() -> None:
    name = f"edge-agent-test-{os.getpid()}-{time.monotonic_ns()}"
    lst = Listener("\0" + name)
    try:
        n = Notifier({"NOTIFY_SOCKET": "@" + name, "WATCHDOG_USEC": "2000000"})
        assert n.enabled and n.watchdog_interval == 1.0
        assert n.ready("fan: 0 windows scored\nsecond line")
        assert n.watchdog("fan: 1 windows scored")
        assert n.stopping()
        assert not n.watchdog()  # shutdown began: a late ping is not sent
        assert n.status("stopped")  # a STATUS line still is
        assert lst.wait_for(lambda m: m == "STATUS=stopped", 10)
        n.close()
        got = lst.messages
    finally:
        lst.close()
    assert got == [
        "READY=1\nSTATUS=fan: 0 windows scored second line",
        "WATCHDOG=1\nSTATUS=fan: 1 windows scored",
        "STOPPING=1\nSTATUS=stopping",
        "STATUS=stopped",
    ]


def test_notifier_survives_a_socket_nobody_listens_on(tmp_path: Path) -> None:
    n = Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone")})
    assert n.enabled and not n.ready("x") and not n.watchdog()  # dropped, never raised


def test_cli_run_notifies_ready_watchdog_status_stopping(
    listener: tuple[Listener, str],
) -> None:
    """`edge-agent run` as systemd starts it (Type=notify, WatchdogSec=1 s: pings every
    0.5 s), on raw PCM from stdin: the test decides when the window comes and when EOF does."""
    import numpy as np

    from edge_agent.audio.files import load_clip
    from edge_agent.runtime.scorer import Scorer

    lst, path = listener
    demo = load_demo()
    x = load_clip(demo.paths[0], Scorer.from_bundle(demo.bundle).spec)
    pcm = (np.clip(x, -1, 1) * 32767).astype("<i2").tobytes()
    env = {
        **os.environ,
        "NOTIFY_SOCKET": path,
        "WATCHDOG_USEC": "1000000",
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    env.pop("WATCHDOG_PID", None)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "edge_agent.cli",
            "run",
            "--stdin",
            "--bundle",
            str(demo.bundle),
            "--section",
            demo.section,
            "--json",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        assert proc.stdin is not None
        assert lst.wait_for(lambda m: m.startswith("READY=1"), 60), lst.messages
        proc.stdin.write(pcm)  # one 10 s window
        proc.stdin.flush()
        scored = f"STATUS={demo.section}: 1 windows scored, 0 alarms"
        assert lst.wait_for(lambda m: m == f"WATCHDOG=1\n{scored}", 60), lst.messages
        _, err = proc.communicate(timeout=60)  # closes stdin: EOF, the agent stops
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err.decode()
    assert lst.wait_for(lambda m: m.startswith("STOPPING=1"), 10), lst.messages
    got = lst.messages
    assert got[0] == f"READY=1\nSTATUS={demo.section}: 0 windows scored, 0 alarms"
    assert got[-1].startswith("STOPPING=1\nSTATUS=")
    middle = got[1:-1]
    assert middle and all(m.startswith("WATCHDOG=1\nSTATUS=") for m in middle)


def test_a_stalled_worker_stops_the_watchdog_pings(
    listener: tuple[Listener, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scoring worker blocks for real: its JSONL sink writes into a pipe nobody reads
    (stdout piped into a hung consumer). The read loop keeps turning, yet the pings stop;
    they resume once the pipe is drained."""
    lst, path = listener
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    monkeypatch.setenv("WATCHDOG_USEC", "1000000")  # a ping every 0.5 s
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    demo = load_demo()
    cfg = load_config(
        None,
        {
            "bundle": str(demo.bundle),
            "section": demo.section,
            "source.kind": "files",
            "source.files": [str(demo.paths[0])],
            "source.loop": True,
            "log.stdout": False,
        },
    )
    r, w = os.pipe()
    fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, 4096)  # full after a dozen events
    out = os.fdopen(w, "w")
    agent = Agent(cfg, sinks=[JsonlSink(out, json_lines=True)])
    runner = threading.Thread(target=agent.run, kwargs={"install_signals": False}, daemon=True)
    runner.start()
    drained = threading.Event()
    try:
        assert lst.wait_for(lambda m: m.startswith("READY=1"), 60)
        assert lst.wait_for(lambda m: m.startswith("WATCHDOG=1"), 30)  # pings while it scores
        # Then none for 3 s (6 intervals) once the pipe is full and the worker blocks.
        deadline = time.monotonic() + 60
        while time.monotonic() - lst.last_ping() < 3.0:
            assert time.monotonic() < deadline, "the pings never stopped"
            time.sleep(0.1)
        windows = agent.counters["windows"]
        assert windows > 0 and runner.is_alive()
        assert time.monotonic() - agent._main_beat < 2.0  # the read loop is alive: not it  # noqa: SLF001 -- the test observes or drives an internal the API keeps private
        time.sleep(0.5)
        assert agent.counters["windows"] == windows  # the worker really is stuck
        stalled_at = time.monotonic()

        def drain() -> None:  # until the agent's end of the pipe is closed
            while os.read(r, 65536):
                pass
            os.close(r)
            drained.set()

        threading.Thread(target=drain, daemon=True).start()
        end = time.monotonic() + 10
        while lst.last_ping() < stalled_at:
            assert time.monotonic() < end, "the pings did not resume"
            time.sleep(0.05)
    finally:
        agent.stop()
        runner.join(timeout=30)
        out.close()
        if not drained.wait(5):
            os.close(r)
    assert not runner.is_alive()
