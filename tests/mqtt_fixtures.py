"""Real mosquitto brokers for tests.

`mqtt_broker(...)` starts `mosquitto -c conf` on a free 127.0.0.1 port with optional password
file, TLS (openssl CA + server cert with SAN IP:127.0.0.1) and persistence; `.kill()` sends
SIGKILL and `.start()` restarts it on the same port with the same persistence file.
`Subscriber` collects messages from a real paho client.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Certs:
    ca: Path
    server_cert: Path
    server_key: Path
    other_ca: Path


def make_certs(d: Path) -> Certs:
    def run(*args: str) -> None:
        subprocess.run(args, cwd=d, check=True, capture_output=True)

    for name in ("ca", "other"):
        run(
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-keyout",
            f"{name}.key",
            "-out",
            f"{name}.crt",
            "-subj",
            f"/CN=test-{name}",
        )
    run(
        "openssl",
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    )
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run(
        "openssl",
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "san.ext",
    )
    return Certs(d / "ca.crt", d / "server.crt", d / "server.key", d / "other.crt")


class Broker:
    def __init__(
        self,
        d: Path,
        users: dict[str, str] | None = None,
        certs: Certs | None = None,
        persistence: bool = False,
    ) -> None:
        self.dir = d
        self.port = free_port()
        lines = [f"listener {self.port} 127.0.0.1", "user root"]
        if users:
            pw = d / "passwd"
            for i, (u, p) in enumerate(users.items()):
                subprocess.run(
                    ["mosquitto_passwd", "-b"] + (["-c"] if i == 0 else []) + [str(pw), u, p],
                    check=True,
                    capture_output=True,
                )
            lines += [f"password_file {pw}", "allow_anonymous false"]
        else:
            lines.append("allow_anonymous true")
        if certs:
            lines += [
                f"cafile {certs.ca}",
                f"certfile {certs.server_cert}",
                f"keyfile {certs.server_key}",
            ]
        if persistence:
            lines += [
                "persistence true",
                f"persistence_location {d}/",
                "autosave_interval 1",
                "autosave_on_changes true",
            ]
        self.conf = d / "mosquitto.conf"
        self.conf.write_text("\n".join(lines) + "\n")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        end = time.monotonic() + 5
        while time.monotonic() < end:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
            except OSError:
                time.sleep(0.02)
            else:
                return
        raise RuntimeError("mosquitto did not start")

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(5)
            self.proc = None


class Subscriber:
    """A real client subscribed to `topics`, collecting (topic, payload, retain).

    `persistent=True` keeps a broker-side session (fixed client id, clean_session off): a
    persistence-enabled broker then queues QoS 1 messages that arrive while this subscriber is
    still reconnecting after a broker restart. Without it, whatever another client publishes
    before this one has re-subscribed is never delivered here, and the test races.
    """

    _count = 0

    def __init__(
        self, broker: Broker, topics: list[str], persistent: bool = False, **auth: Any
    ) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self.cond = threading.Condition()
        Subscriber._count += 1
        if persistent:
            c = mqtt.Client(
                CallbackAPIVersion.VERSION2,
                client_id=f"test-sub-{broker.port}-{Subscriber._count}",
                clean_session=False,
            )
        else:
            c = mqtt.Client(CallbackAPIVersion.VERSION2)
        if "username" in auth:
            c.username_pw_set(auth["username"], auth.get("password"))
        if "ca" in auth:
            c.tls_set(ca_certs=str(auth["ca"]))
        c.reconnect_delay_set(0.1, 0.5)  # type: ignore[arg-type]
        ready = threading.Event()

        def on_connect(cl: Any, u: Any, f: Any, rc: Any, p: Any) -> None:
            for t in topics:
                cl.subscribe(t, qos=1)
            ready.set()

        def on_message(cl: Any, u: Any, msg: Any) -> None:
            with self.cond:
                self.messages.append((msg.topic, msg.payload, bool(msg.retain)))
                self.cond.notify_all()

        c.on_connect = on_connect
        c.on_message = on_message
        c.connect("127.0.0.1", broker.port)
        c.loop_start()
        assert ready.wait(5)
        time.sleep(0.1)
        self.client = c

    def wait_for(
        self, pred: Callable[[list[tuple[str, bytes, bool]]], bool], timeout: float = 10.0
    ) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: pred(self.messages), timeout)

    def on(self, topic: str) -> list[bytes]:
        with self.cond:
            return [p for t, p, _ in self.messages if t == topic]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture(scope="session")
def mqtt_certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed")
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture
def mqtt_broker(tmp_path: Path) -> Iterator[Callable[..., Broker]]:
    """Factory: `mqtt_broker(users=..., certs=..., persistence=...)` -> a started Broker."""
    if not Path(MOSQUITTO).exists():
        pytest.skip("mosquitto not installed")
    started: list[Broker] = []

    def make(**kw: Any) -> Broker:
        d = tmp_path / f"broker{len(started)}"
        d.mkdir()
        b = Broker(d, **kw)
        b.start()
        started.append(b)
        return b

    yield make
    for b in started:
        b.kill()
