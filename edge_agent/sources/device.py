"""Live capture from a PortAudio input device (`source.kind: device`).

* The sounddevice callback only copies `indata` into a queue and counts overflow flags: no
  work on the audio thread, so no dropouts caused by us (the field's best practice).
* Many USB microphones opened as raw `hw:N` refuse 16 kHz (PortAudio error -9997): the device
  is then opened at a rate it supports (its default, else 48/32/44.1/22.05/8 kHz) and
  resampled to the bundle's rate with a streaming polyphase filter
  (`edge_agent.sources.resampler`) that is continuous across blocks; the log says which rate
  was used.
* A device is named by index, exact name or unique case-insensitive substring; a missing or
  ambiguous name raises DeviceError listing the devices that exist.
* A stream that dies (device unplugged, sound server gone) or delivers nothing for
  `stall_seconds` is reported, closed, and reopened every `reconnect_seconds` (PortAudio is
  re-initialised to see devices again) until the device returns; the first block after the
  gap carries `overflow=True`.

sounddevice (and with it libportaudio) is imported on first use, so replaying files works on
a machine without PortAudio.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..arrays import FloatArray
from ..errors import DeviceError
from ..pcm import to_mono
from .base import AudioSource, Block, SourceSettings
from .resampler import StreamResampler

log = logging.getLogger(__name__)

CANDIDATE_RATES: tuple[int, ...] = (8000, 16000, 22050, 32000, 44100, 48000)
"""Rates probed by `list_input_devices`."""

_FALLBACK_ORDER: tuple[int, ...] = (48000, 32000, 44100, 22050, 8000)
"""Rates tried, in this order, when neither 16 kHz nor the device's default rate is accepted."""


@dataclass(frozen=True)
class DeviceInfo:
    """One input device as PortAudio sees it."""

    index: int
    name: str
    channels: int
    default_rate: float
    supported_rates: tuple[int, ...] = ()
    hostapi: str = ""
    is_default: bool = False


def _sd() -> Any:
    """sounddevice, imported on first use (it loads libportaudio)."""
    try:
        import sounddevice
    except OSError as exc:  # libportaudio missing
        raise DeviceError(f"audio input unavailable: PortAudio library not found ({exc})") from exc
    return sounddevice


def rescan_devices() -> None:
    """Make PortAudio enumerate devices again (it does so only once, at initialisation)."""
    sd = _sd()
    sd._terminate()
    sd._initialize()


def _supports(sd: Any, index: int, rate: int, channels: int) -> bool:
    try:
        sd.check_input_settings(device=index, samplerate=rate, channels=channels, dtype="float32")
    except Exception:  # PortAudioError / ValueError: not supported
        return False
    return True


def list_input_devices(probe_rates: bool = True) -> list[DeviceInfo]:
    """Input devices and the CANDIDATE_RATES they accept (in mono or with all channels)."""
    sd = _sd()
    try:
        default_in = int(sd.default.device[0])
    except Exception:
        default_in = -1
    hostapis = sd.query_hostapis()
    out: list[DeviceInfo] = []
    for d in sd.query_devices():
        ch = int(d["max_input_channels"])
        if ch <= 0:
            continue
        idx = int(d["index"])
        rates: tuple[int, ...] = ()
        if probe_rates:
            rates = tuple(
                r for r in CANDIDATE_RATES if _supports(sd, idx, r, 1) or _supports(sd, idx, r, ch)
            )
        out.append(DeviceInfo(idx, str(d["name"]), ch, float(d["default_samplerate"]), rates,
                              str(hostapis[d["hostapi"]]["name"]), idx == default_in))
    return out


def describe_devices(devices: Sequence[DeviceInfo]) -> str:
    """"0 'name', 1 'other'" (for error messages)."""
    if not devices:
        return "none"
    return ", ".join(f"{d.index} {d.name!r}" for d in devices)


def resolve_device(spec: str | int | None, devices: Sequence[DeviceInfo]) -> DeviceInfo:
    """Find the input device `spec` names: index, exact name, or unique case-insensitive substring.

    `None` picks the default input device. Raises DeviceError listing the devices that exist.
    """
    available = f"available input devices: {describe_devices(devices)}"
    if spec is None:
        default = next((d for d in devices if d.is_default), devices[0] if devices else None)
        if default is None:
            raise DeviceError(f"source.device: no input device found; {available}")
        return default
    if isinstance(spec, int) or spec.strip().isdigit():
        index = int(spec)
        found = next((d for d in devices if d.index == index), None)
        if found is None:
            raise DeviceError(f"source.device: no input device with index {index}; {available}")
        return found
    needle = spec.strip().lower()
    exact = [d for d in devices if d.name.lower() == needle]
    if len(exact) == 1:
        return exact[0]
    matches = [d for d in devices if needle in d.name.lower()]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise DeviceError(f"source.device: no input device matching {spec!r}; {available}")
    raise DeviceError(
        f"source.device: {spec!r} matches several input devices ({describe_devices(matches)}); "
        "give the full name or the index"
    )


def choose_capture_rate(
    requested: int | None, preferred: int, supports: Callable[[int], bool], default_rate: float
) -> int:
    """The rate to open a device at: the requested one, else `preferred` (the bundle's rate: no
    resampling), else the device default.

    Raises DeviceError when nothing usable is accepted.
    """
    if requested is not None:
        if supports(requested):
            return requested
        ok = [r for r in CANDIDATE_RATES if supports(r)]
        raise DeviceError(
            f"source.capture_rate: the device does not accept {requested} Hz; it accepts "
            f"{', '.join(map(str, ok)) or 'none of ' + str(CANDIDATE_RATES)}"
        )
    if supports(preferred):
        return preferred
    default = round(default_rate)
    if default > 0 and supports(default):
        return default
    for r in _FALLBACK_ORDER:
        if supports(r):
            return r
    raise DeviceError(
        f"source.capture_rate: the device accepts none of {', '.join(map(str, CANDIDATE_RATES))} Hz"
    )


@dataclass
class _Opened:
    """What a successful open decided (kept across reconnects)."""

    info: DeviceInfo
    rate: int
    channels: int
    stream: Any
    resampler: StreamResampler


class DeviceSource(AudioSource):
    """Live capture with reconnect (see module docstring)."""

    def __init__(self, settings: SourceSettings, rate: int, queue_blocks: int = 1000) -> None:
        """`rate`: what the blocks are delivered at (the bundle's); `queue_blocks`: callback
        blocks buffered for a slow reader (1000 = 100 s at the default blocksize); beyond that
        blocks are dropped and the next one is flagged."""
        super().__init__()
        self.settings = settings
        self.rate = rate
        self._q: queue.Queue[tuple[float, FloatArray, bool]] = queue.Queue(
            maxsize=queue_blocks
        )
        self._opened: _Opened | None = None
        self._finished = threading.Event()
        self.dropped = 0  # blocks the callback could not queue (reader far behind)
        self._gap = False  # a block was dropped since the last queued one
        self._pending_overflow = False
        self._last_data = 0.0
        self._next_retry = 0.0
        self.lost = False
        self.losses = 0
        self.recoveries = 0

    # -- properties for logs / status
    @property
    def name(self) -> str:
        return self._opened.info.name if self._opened else str(self.settings.device)

    @property
    def capture_rate(self) -> int | None:
        return self._opened.rate if self._opened else None

    def status(self) -> dict[str, Any]:
        """Base counters plus the device, its capture rate and the loss/recovery counts."""
        return {**super().status(), "device": self.name, "capture_rate": self.capture_rate,
                "lost": self.lost, "losses": self.losses, "recoveries": self.recoveries,
                "dropped": self.dropped}

    # -- callback: copy and count only
    def _callback(self, indata: FloatArray, frames: int, time_info: Any,
                  status: Any) -> None:
        try:
            self._q.put_nowait((time.time(), indata.copy(), self._gap or status.input_overflow))
            self._gap = False
        except queue.Full:
            self.dropped += 1
            self._gap = True

    def _on_finished(self) -> None:
        self._finished.set()

    def _open(self, device: str | int | None) -> None:
        sd = _sd()
        s = self.settings
        devices = list_input_devices(probe_rates=False)
        info = resolve_device(device, devices)
        if s.channel is not None and s.channel >= info.channels:
            raise DeviceError(
                f"source.channel: channel {s.channel} requested but {info.name!r} has "
                f"{info.channels} input channel(s)"
            )
        # Open as few channels as the job needs (channel k needs k+1; a mix-down needs 1: the
        # driver mixes when it can, e.g. a plug/pulse PCM). Raw hw devices accept only their
        # own channel count: then open all channels and select/average here.
        rates = (s.capture_rate or self.rate, round(info.default_rate), *_FALLBACK_ORDER)
        wanted = 1 if s.channel is None else s.channel + 1
        ok = any(_supports(sd, info.index, r, wanted) for r in rates)
        channels = wanted if ok else info.channels
        rate = choose_capture_rate(
            s.capture_rate, self.rate, lambda r: _supports(sd, info.index, r, channels),
            info.default_rate,
        )
        self._finished.clear()
        try:
            stream = sd.InputStream(
                device=info.index, samplerate=rate, channels=channels, dtype="float32",
                blocksize=s.blocksize, callback=self._callback,
                finished_callback=self._on_finished,
            )
            stream.start()
        except Exception as exc:  # PortAudioError, ValueError
            raise DeviceError(f"source.device: cannot open {info.name!r} at {rate} Hz ({exc})") \
                from exc
        self._opened = _Opened(info, rate, channels, stream, StreamResampler(rate, self.rate))
        self._last_data = time.monotonic()
        mix = (f"channel {s.channel}" if s.channel is not None
               else "mono" if channels == 1 else f"mix of {channels} channels")
        if rate != self.rate:
            log.info("capturing from %r (index %d) at %d Hz (%s), resampling to %d Hz",
                     info.name, info.index, rate, mix, self.rate)
        else:
            log.info("capturing from %r (index %d) at %d Hz (%s)", info.name, info.index, rate, mix)

    def start(self) -> None:
        self._open(self.settings.device)

    def _close_stream(self) -> None:
        if self._opened is not None and self._opened.stream is not None:
            stream = self._opened.stream
            self._opened.stream = None
            try:
                stream.abort()
                stream.close()
            except Exception as exc:  # the device may already be gone
                log.debug("closing the audio stream failed: %s", exc)

    def _mark_lost(self, why: str) -> None:
        self.lost = True
        self.losses += 1
        self._close_stream()
        log.warning("audio device %r lost (%s); retrying every %.1f s", self.name, why,
                    self.settings.reconnect_seconds)
        self._next_retry = time.monotonic() + self.settings.reconnect_seconds

    def _try_recover(self, timeout: float | None) -> None:
        now = time.monotonic()
        if now < self._next_retry:
            wait = self._next_retry - now
            time.sleep(wait if timeout is None else max(0.0, min(wait, timeout)))
            return
        self._next_retry = now + self.settings.reconnect_seconds
        # Prefer the name found at start (indices move when USB devices come and go), then
        # what the user configured (an ALSA name embeds the card number, which can change too).
        candidates: list[str | int | None] = [self._opened.info.name] if self._opened else []
        candidates.append(self.settings.device)
        rescan_devices()
        for device in candidates:
            try:
                self._open(device)
                break
            except DeviceError as exc:
                log.debug("audio device still unavailable: %s", exc)
        else:
            return
        self.lost = False
        self.recoveries += 1
        self._pending_overflow = True  # the gap while it was away
        log.warning("audio device %r is back", self.name)

    def _alive(self) -> bool:
        """False (and the loss handled) when the stream stopped or went silent too long."""
        assert self._opened is not None
        stream = self._opened.stream
        if self._finished.is_set() or not stream.active:
            self._mark_lost("stream stopped")
        elif time.monotonic() - self._last_data > self.settings.stall_seconds:
            self._mark_lost(f"no audio for {self.settings.stall_seconds:.1f} s")
        return not self.lost

    def read(self, timeout: float | None = None) -> Block | None:
        if self.lost:
            self._try_recover(timeout)
            return None
        if self._opened is None or self._opened.stream is None:
            raise RuntimeError("DeviceSource.read() before start()")
        # Wait in short slices so a dead stream is noticed even when waiting without limit.
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = 0.5 if deadline is None else max(0.0, min(0.5, deadline - time.monotonic()))
            try:
                t_cb, data, overflow = self._q.get(timeout=left)
                break
            except queue.Empty:
                if not self._alive():
                    return None
                if deadline is not None and time.monotonic() >= deadline:
                    return None
        self._last_data = time.monotonic()
        if overflow:
            self._pending_overflow = True
        x = to_mono(data, self.settings.channel)
        rs = self._opened.resampler
        first_out = rs.n_out
        y = rs.process(x)
        if y.size == 0:
            return None
        # Input sample i was captured at about t_cb - (n_in - i) / rate; output n sits at input
        # position n * down / up (the filter is zero-phase).
        t_start = t_cb - (rs.n_in - first_out * rs.down / rs.up) / rs.rate_in
        block = Block(y, t_start, self._pending_overflow, self._opened.info.name)
        self._pending_overflow = False
        return self._deliver(block)

    def stop(self) -> None:
        self._close_stream()
