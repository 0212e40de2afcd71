"""Fake microphones that PortAudio opens through the real ALSA stack (no sound card needed).

Two recipes:

* fast mic: an ALSA `file` PCM reading a raw float32 file, with a `null` slave. Sample-exact,
  delivered thousands of times faster than real time; after the end of the file it returns
  stale data, so read exactly the frames you fed (or pad with silence: `pad_seconds`).
* paced mic: the same `file` PCM with a private PulseAudio null-source as slave: real-time
  pace, exact samples from frame 0, silence after the end of the file.

All PCMs live in one ALSA config selected with ALSA_CONFIG_PATH for the whole test session;
adding a PCM rewrites it and re-initialises PortAudio (which enumerates devices only once).
The `zz_unavailable` PCM must stay: PortAudio 19.6 aborts the process when every PCM opens.

Fixtures (exposed through conftest.py):

* `alsa_sandbox` (session): the config; `.add_pcm(name, body)` -> name; `.repoint_pcm` changes
  one without re-initialising PortAudio.
* `pulse_server` (session): a private PulseAudio with null-sources `edgeclock` (16 kHz) and
  `edgeclock48` (48 kHz); skips when pulseaudio is not installed.
* `fake_mic` (factory): `fake_mic(audio, rate=16000, paced=False, pad_seconds=0.0,
  channels=1)` plays a float array (or a WAV path) into a new fake microphone and returns the
  device name to open (`SourceSettings(device=name)`).

Helpers: `tone`, `peak_hz`, `drain(source, n)` (read blocks with a deadline), `cat(blocks)`.
Everything skips cleanly (pytest.skip with the reason) without libportaudio or pulseaudio.
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge_agent.sources.base import AudioSource, Block

_counter = itertools.count(1)

PULSE_SOURCES = {"edgeclock": 16000, "edgeclock48": 48000}


def sounddevice_or_skip() -> Any:
    """The sounddevice module, or skip the test when libportaudio is missing."""
    try:
        import sounddevice
    except OSError as exc:
        pytest.skip(f"PortAudio not installed ({exc})")
    return sounddevice


def rescan() -> None:
    sd = sounddevice_or_skip()
    sd._terminate()  # noqa: SLF001 -- sounddevice has no public rescan; PortAudio enumerates devices only at init
    sd._initialize()  # noqa: SLF001 -- see above


class AlsaSandbox:
    """An ALSA configuration file of fake PCMs, active through ALSA_CONFIG_PATH."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / "asound.conf"
        self.pcms: dict[str, str] = {}
        self._write()

    def _write(self) -> None:
        lines = [f"pcm.{name} {body}" for name, body in self.pcms.items()]
        lines.append("pcm.zz_unavailable { type hw card 99 }")
        self.path.write_text("\n".join(lines) + "\n")

    def add_pcm(self, name: str, body: str) -> str:
        self.pcms[name] = body
        self._write()
        rescan()
        return name

    def repoint_pcm(self, name: str, body: str) -> None:
        """Change a PCM's definition without re-initialising PortAudio (for tests where a
        PortAudio call is stuck). ALSA rereads its configuration on the next open when the
        file's inode or mtime changed: write a new file and rename it over the old one."""
        self.pcms[name] = body
        lines = [f"pcm.{n} {b}" for n, b in self.pcms.items()]
        lines.append("pcm.zz_unavailable { type hw card 99 }")
        tmp = self.path.with_suffix(".new")
        tmp.write_text("\n".join(lines) + "\n")
        Path(tmp).replace(self.path)

    def remove_pcm(self, *names: str) -> None:
        for name in names:
            self.pcms.pop(name, None)
        self._write()
        rescan()

    def file_pcm(self, name: str, raw_f32: Path, slave: str | None = None) -> str:
        """A capture PCM that reads `raw_f32` (interleaved float32 LE); slave None = unpaced."""
        slave_pcm = f'"{slave}"' if slave else "{ type null }"
        return self.add_pcm(
            name,
            f'{{ type file slave.pcm {slave_pcm} file "/dev/null" infile "{raw_f32}" '
            'format "raw" }',
        )


class PulseServer:
    """A private PulseAudio daemon (child process) with null-sources as paced clocks."""

    def __init__(
        self, folder: Path, sources: dict[str, int] | None = None, extra: tuple[str, ...] = ()
    ) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.socket = folder / "native"
        self.sources = dict(PULSE_SOURCES if sources is None else sources)
        script = [f"load-module module-native-protocol-unix auth-anonymous=1 socket={self.socket}"]
        script += [
            f"load-module module-null-source source_name={name} format=float32le rate={rate} "
            "channels=1"
            for name, rate in self.sources.items()
        ]
        script += list(extra)
        self.script = folder / "test.pa"
        self.script.write_text("\n".join(script) + "\n")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = dict(
            os.environ,
            HOME=str(self.folder),
            XDG_RUNTIME_DIR=str(self.folder),
            PULSE_RUNTIME_PATH=str(self.folder),
        )
        self.socket.unlink(missing_ok=True)
        self.proc = subprocess.Popen(
            [
                "pulseaudio",
                "-n",
                "-F",
                str(self.script),
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
        while not self.socket.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"private pulseaudio did not start (rc {self.proc.poll()})")
            time.sleep(0.02)
        time.sleep(0.1)  # modules after the socket

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.proc = None

    def freeze(self) -> None:
        """SIGSTOP the server: a hung sound server. Clients' calls wait for replies that never
        come (PortAudio's abort/close block until the server dies or resumes)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def pcm_body(self, source: str) -> str:
        return f'{{ type pulse server "unix:{self.socket}" device "{source}" }}'


def pulse_or_skip() -> str:
    exe = shutil.which("pulseaudio")
    if exe is None:
        pytest.skip("pulseaudio not installed")
    return exe


@pytest.fixture(scope="session")
def alsa_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AlsaSandbox]:
    sounddevice_or_skip()
    folder = tmp_path_factory.mktemp("alsa")
    old = os.environ.get("ALSA_CONFIG_PATH")
    sandbox = AlsaSandbox(folder)
    os.environ["ALSA_CONFIG_PATH"] = str(sandbox.path)
    rescan()
    yield sandbox
    if old is None:
        os.environ.pop("ALSA_CONFIG_PATH", None)
    else:
        os.environ["ALSA_CONFIG_PATH"] = old
    rescan()


@pytest.fixture(scope="session")
def pulse_server(
    tmp_path_factory: pytest.TempPathFactory, alsa_sandbox: AlsaSandbox
) -> Iterator[PulseServer]:
    pulse_or_skip()
    # A short path: unix socket paths are limited to ~108 bytes.
    server = PulseServer(Path(tmp_path_factory.mktemp("pa")))
    server.start()
    for name in server.sources:
        alsa_sandbox.add_pcm(name, server.pcm_body(name))
    yield server
    server.stop()


def _as_float(audio: np.ndarray | str | Path, rate: int) -> np.ndarray:
    from fractions import Fraction

    import scipy.signal

    from edge_agent.audio.files import read_wav

    if isinstance(audio, (str, Path)):
        x, file_rate = read_wav(audio)
        if file_rate == rate:
            return x
        ratio = Fraction(rate, file_rate)
        return np.asarray(
            scipy.signal.resample_poly(x, ratio.numerator, ratio.denominator, axis=-1),
            dtype=np.float32,
        )
    return np.asarray(audio, dtype=np.float32)


FakeMic = Callable[..., str]


@pytest.fixture
def fake_mic(
    request: pytest.FixtureRequest, alsa_sandbox: AlsaSandbox, tmp_path: Path
) -> Iterator[FakeMic]:
    """Factory: play audio into a new fake microphone; returns the device name to open.

    `audio`: float array (frames,) or (frames, channels) at `rate`, or a WAV path (resampled
    to `rate`). The stream must be opened at `rate` with `channels` channels (channel=None on a
    mono mic, `channel=k` selects column k). `paced=True` needs a PulseAudio null-source at
    `rate` (16000 or 48000) and delivers in real time, then silence; unpaced mics deliver
    instantly and then stale data, so `pad_seconds` of silence are appended.
    The PCMs are removed again after the test.
    """
    made: list[str] = []

    def make(
        audio: np.ndarray | str | Path,
        rate: int = 16000,
        paced: bool = False,
        pad_seconds: float = 0.0,
        channels: int = 1,
    ) -> str:
        x = _as_float(audio, rate)
        x = x.reshape(len(x), -1) if x.ndim == 2 else x.reshape(-1, 1)
        if x.shape[1] != channels:
            raise ValueError(f"audio has {x.shape[1]} channels, fake mic declared {channels}")
        pad = np.zeros((round(pad_seconds * rate), channels), dtype=np.float32)
        raw = tmp_path / f"mic{next(_counter):03d}.f32"
        np.concatenate([x, pad]).astype("<f4").tofile(raw)
        name = f"fakemic{raw.stem[3:]}"
        slave = None
        if paced:
            server: PulseServer = request.getfixturevalue("pulse_server")
            by_rate = {r: n for n, r in server.sources.items()}
            if rate not in by_rate:
                raise ValueError(f"no paced PulseAudio source at {rate} Hz")
            slave = by_rate[rate]
        made.append(name)
        alsa_sandbox.file_pcm(name, raw, slave)
        return name

    yield make
    alsa_sandbox.remove_pcm(*made)


# --------------------------------------------------------------- helpers for source tests


def tone(freq: float, seconds: float, rate: int, amp: float = 0.5) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_hz(x: np.ndarray, rate: int) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return float(np.argmax(spec) * rate / x.size)


def drain(source: AudioSource, n: int | None = None, timeout: float = 5.0) -> list[Block]:
    """Blocks until `n` samples (or exhaustion), failing after `timeout` seconds."""
    blocks: list[Block] = []
    got = 0
    deadline = time.monotonic() + timeout
    while (n is None or got < n) and not source.exhausted:
        assert time.monotonic() < deadline, f"only {got} samples after {timeout} s"
        b = source.read(0.2)
        if b is not None:
            blocks.append(b)
            got += b.samples.size
    return blocks


def cat(blocks: list[Block]) -> np.ndarray:
    return np.concatenate([b.samples for b in blocks]) if blocks else np.zeros(0, np.float32)
