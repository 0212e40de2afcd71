"""Live capture from a PortAudio input device (`source.kind: device`).

* The sounddevice callback only copies `indata` into a queue and counts overflow flags: no
  work on the audio thread, so no dropouts caused by us (the field's best practice).
* Many USB microphones opened as raw `hw:N` refuse 16 kHz (PortAudio error -9997): the device
  is then opened at a rate it supports (its default, else 48/32/44.1/22.05/8 kHz) and
  resampled to the bundle's rate with a streaming polyphase filter
  (`edge_agent.audio.resample`) that is continuous across blocks; the log says which rate
  was used.
* A device is named by index, exact name or unique case-insensitive substring; a missing or
  ambiguous name raises DeviceError listing the devices that exist.
* A stream that dies (device unplugged, sound server gone) or delivers nothing for
  `stall_seconds` is reported, closed, and reopened every `reconnect_seconds` (PortAudio is
  re-initialised to see devices again) until the device returns; the first block after the
  gap carries `overflow=True`.
* Opening and closing never block the reader. When the sound server dies or hangs, PortAudio's
  open, abort and close can block for 30 s (libpulse's reply timeout) or for ever (a callback
  thread cancelled while it holds the ALSA plugin's lock deadlocks the abort). So every open
  (with its rescan) and every close runs on its own daemon thread (`_Call`); `read()` waits
  for them only within its own timeout, `start()` at most `open_timeout` and `stop()` at most
  `close_timeout` seconds. A close that has not returned by then is abandoned (logged, counted
  in `abandoned_closes`) and the reconnect goes ahead with a new stream; each stream has its
  own queue, so an abandoned one can never feed or end its successor. While an abandoned call
  is still running, reconnects reopen the device from the current enumeration instead of
  re-initialising PortAudio (Pa_Terminate frees state the stuck call still uses); ALSA rereads
  its configuration on every open regardless.

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
from typing import Any, Generic, TypeVar

from edge_agent.arrays import FloatArray
from edge_agent.audio.pcm import to_mono
from edge_agent.audio.resample import StreamResampler
from edge_agent.config.sources import SourceSettings
from edge_agent.errors import DeviceError
from edge_agent.sources.base import AudioSource, Block

log = logging.getLogger(__name__)

CANDIDATE_RATES: tuple[int, ...] = (8000, 16000, 22050, 32000, 44100, 48000)
"""Rates probed by `list_input_devices`."""

_FALLBACK_ORDER: tuple[int, ...] = (48000, 32000, 44100, 22050, 8000)
"""Rates tried, in this order, when neither 16 kHz nor the device's default rate is accepted."""

OPEN_TIMEOUT = 10.0
"""Seconds `start()` waits for PortAudio to open the device (a Pi enumerates in ~1 s)."""

CLOSE_TIMEOUT = 2.0
"""Seconds a close may take before the stream is abandoned (a healthy close takes ms)."""

_T = TypeVar("_T")

_PA_LOCK = threading.Lock()
"""Serialises rescans and opens: PortAudio's device list is global and not thread-safe."""

_STUCK_LOCK = threading.Lock()
_STUCK: set[_Call[Any]] = set()
"""Abandoned PortAudio calls that have not returned yet (they block re-initialisation)."""


class _Call(Generic[_T]):
    """One PortAudio call on its own daemon thread, so whoever needs it waits only as long as
    it can afford (see the module docstring for why PortAudio can block without end).

    `abandon()` gives up on a call that has not returned: it runs on, and what it returns
    later goes to `orphan` (an opened stream is closed) instead of to anyone waiting.
    """

    def __init__(
        self, name: str, fn: Callable[[], _T], orphan: Callable[[_T], None] | None = None
    ) -> None:
        self.name = name
        self.started = time.monotonic()
        self.done = threading.Event()
        self.warned = False  # "still waiting" was logged
        self._fn = fn
        self._orphan = orphan
        self._lock = threading.Lock()
        self._abandoned = False
        self._value: _T | None = None
        self._error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        value: _T | None = None
        error: BaseException | None = None
        try:
            value = self._fn()
        except BaseException as exc:  # handed to whoever collects the result
            error = exc
        with self._lock:
            self._value, self._error = value, error
            self.done.set()
            orphaned = self._abandoned
            if orphaned:
                with _STUCK_LOCK:
                    _STUCK.discard(self)
        if orphaned:
            log.info(
                "abandoned %s returned after %.1f s", self.name, time.monotonic() - self.started
            )
            if value is not None and self._orphan is not None:
                self._orphan(value)

    def abandon(self) -> bool:
        """Stop waiting for the call; False when it has already returned (collect `result`)."""
        with self._lock:
            if self.done.is_set():
                return False
            self._abandoned = True
            with _STUCK_LOCK:
                _STUCK.add(self)
        return True

    def result(self) -> _T:
        """The call's return value, or its exception raised here (only once `done`)."""
        assert self.done.is_set()
        if self._error is not None:
            raise self._error
        assert self._value is not None
        return self._value


def stuck_calls() -> int:
    """How many abandoned PortAudio calls (opens, closes) have not returned yet."""
    with _STUCK_LOCK:
        return len(_STUCK)


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
    sd._terminate()  # noqa: SLF001 -- sounddevice has no public rescan; PortAudio enumerates devices only at init
    sd._initialize()  # noqa: SLF001 -- see above


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
        out.append(
            DeviceInfo(
                idx,
                str(d["name"]),
                ch,
                float(d["default_samplerate"]),
                rates,
                str(hostapis[d["hostapi"]]["name"]),
                idx == default_in,
            )
        )
    return out


def describe_devices(devices: Sequence[DeviceInfo]) -> str:
    """The devices as `0 'name', 1 'other'` (for error messages)."""
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


def check_lanes(info: DeviceInfo, lanes: Sequence[int | None]) -> None:
    """DeviceError unless every channel in `lanes` (None: a mix-down) exists on `info`."""
    for channel in lanes:
        if channel is not None and channel >= info.channels:
            raise DeviceError(
                f"source.channel: channel {channel} requested but {info.name!r} has "
                f"{info.channels} input channel(s)"
            )


def probe_lanes(
    device: str | int | None, lanes: Sequence[int | None], timeout: float = OPEN_TIMEOUT
) -> str | None:
    """`edge-agent config check`: the channels `lanes` asks of `device` exist, as far as the
    device can be queried now. Raises the DeviceError the agent's open would raise (the same
    `check_lanes`); returns None when checked, or why it could not be (PortAudio missing, the
    device not plugged in on this machine, a hung sound server: the config may be checked
    away from the device, so that is a warning, not a refusal). Only the device list is read
    (no stream is opened), on a `_Call` thread: at most `timeout` seconds."""
    if all(c is None for c in lanes):
        return None  # a mix-down exists on every device
    try:
        _sd()
    except DeviceError as exc:
        return str(exc)
    with _PA_LOCK:
        call = _Call("audio-probe", lambda: list_input_devices(probe_rates=False))
        if not call.done.wait(timeout) and call.abandon():
            return f"listing the input devices did not return within {timeout:g} s"
    try:
        info = resolve_device(device, call.result())
    except DeviceError as exc:
        return str(exc)
    except Exception as exc:
        return f"cannot list the input devices ({exc})"
    check_lanes(info, lanes)
    return None


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


class _Capture:
    """One PortAudio stream and the queue its callback fills.

    Each (re)connect makes a new one, so a stream that is being abandoned (its close hangs)
    can neither feed its successor's queue nor mark it finished.
    """

    def __init__(self, queue_blocks: int) -> None:
        self.q: queue.Queue[tuple[float, FloatArray, bool]] = queue.Queue(maxsize=queue_blocks)
        self.finished = threading.Event()
        self.dropped = 0  # blocks the callback could not queue (reader far behind)
        self.gap = False  # a block was dropped since the last queued one
        self.stream: Any = None

    def callback(self, indata: FloatArray, frames: int, time_info: Any, status: Any) -> None:
        """PortAudio's audio thread: copy and count only."""
        try:
            self.q.put_nowait((time.time(), indata.copy(), self.gap or status.input_overflow))
            self.gap = False
        except queue.Full:
            self.dropped += 1
            self.gap = True

    def on_finished(self) -> None:
        self.finished.set()

    def close(self) -> None:
        """Pa_CloseStream only (it aborts a running stream): it first takes the stream off
        PortAudio's list of open streams, so a later Pa_Terminate never touches a stream whose
        close hangs. May block without end: call it on a `_Call` thread."""
        stream, self.stream = self.stream, None
        if stream is None:
            return
        try:
            stream.close(ignore_errors=False)
        except Exception as exc:  # the device may already be gone
            log.debug("closing the audio stream failed: %s", exc)


@dataclass
class _Opened:
    """What a successful open decided (kept across reconnects) and its live capture."""

    info: DeviceInfo
    rate: int
    channels: int
    capture: _Capture | None
    resamplers: tuple[StreamResampler, ...]  # one per lane: each keeps its own filter history


def _close_opened(opened: _Opened) -> None:
    """Orphan handler: an open that was abandoned but succeeded later is closed at once."""
    if opened.capture is not None:
        opened.capture.close()


class DeviceSource(AudioSource):
    """Live capture with reconnect (see module docstring)."""

    def __init__(
        self,
        settings: SourceSettings,
        rate: int,
        queue_blocks: int = 1000,
        open_timeout: float = OPEN_TIMEOUT,
        close_timeout: float = CLOSE_TIMEOUT,
        lanes: Sequence[int | None] | None = None,
    ) -> None:
        """`rate`: what the blocks are delivered at (the bundle's); `queue_blocks`: callback
        blocks buffered for a slow reader (1000 = 100 s at the default blocksize); beyond that
        blocks are dropped and the next one is flagged. `open_timeout` / `close_timeout`: how
        long `start()` / a close may take before PortAudio is given up on (module docstring).
        `lanes`: the channels (None = mix-down) of several monitors sharing this device, each
        delivered in `Block.lanes` from ONE stream; default: `settings.channel` alone."""
        super().__init__()
        self.settings = settings
        self.lanes: tuple[int | None, ...] = (
            tuple(lanes) if lanes is not None else (settings.channel,)
        )
        if not self.lanes:
            raise ValueError("DeviceSource: expected at least one lane")
        self.rate = rate
        self.open_timeout = open_timeout
        self.close_timeout = close_timeout
        self._queue_blocks = queue_blocks
        self._opened: _Opened | None = None
        self._opening: _Call[_Opened] | None = None  # a reconnect in flight
        self._closing: _Call[None] | None = None  # the last close, until done or abandoned
        self._dropped_before = 0  # drops of captures already closed
        self._pending_overflow = False
        self._last_data = 0.0
        self._next_retry = 0.0
        self.lost = False
        self.losses = 0
        self.recoveries = 0
        self.abandoned_closes = 0

    # -- properties for logs / status
    @property
    def name(self) -> str:
        return self._opened.info.name if self._opened else str(self.settings.device)

    @property
    def capture_rate(self) -> int | None:
        return self._opened.rate if self._opened else None

    @property
    def dropped(self) -> int:
        """Blocks the callback could not queue because the reader was far behind."""
        live = self._opened.capture if self._opened else None
        return self._dropped_before + (live.dropped if live else 0)

    def status(self) -> dict[str, Any]:
        """Base counters plus the device, its capture rate and the loss/recovery counts."""
        return {
            **super().status(),
            "device": self.name,
            "capture_rate": self.capture_rate,
            "lost": self.lost,
            "losses": self.losses,
            "recoveries": self.recoveries,
            "dropped": self.dropped,
            "abandoned_closes": self.abandoned_closes,
        }

    # -- opening (on `_Call` threads: nothing here touches the reader's state)
    def _open_capture(self, device: str | int | None) -> _Opened:
        sd = _sd()
        s = self.settings
        devices = list_input_devices(probe_rates=False)
        info = resolve_device(device, devices)
        check_lanes(info, self.lanes)
        # Open as few channels as the job needs (channel k needs k+1; a mix-down needs 1: the
        # driver mixes when it can, e.g. a plug/pulse PCM). Raw hw devices accept only their
        # own channel count: then open all channels and select/average here. A mix-down lane
        # beside channel lanes averages the channels opened for them.
        rates = (s.capture_rate or self.rate, round(info.default_rate), *_FALLBACK_ORDER)
        wanted = max(1 if c is None else c + 1 for c in self.lanes)
        ok = any(_supports(sd, info.index, r, wanted) for r in rates)
        channels = wanted if ok else info.channels
        rate = choose_capture_rate(
            s.capture_rate,
            self.rate,
            lambda r: _supports(sd, info.index, r, channels),
            info.default_rate,
        )
        capture = _Capture(self._queue_blocks)
        try:
            capture.stream = sd.InputStream(
                device=info.index,
                samplerate=rate,
                channels=channels,
                dtype="float32",
                blocksize=s.blocksize,
                callback=capture.callback,
                finished_callback=capture.on_finished,
            )
            capture.stream.start()
        except Exception as exc:  # PortAudioError, ValueError
            capture.close()
            raise DeviceError(
                f"source.device: cannot open {info.name!r} at {rate} Hz ({exc})"
            ) from exc
        return _Opened(
            info,
            rate,
            channels,
            capture,
            tuple(StreamResampler(rate, self.rate) for _ in self.lanes),
        )

    def _connect(self, candidates: Sequence[str | int | None], rescan: bool) -> _Opened:
        """Open the first candidate that works (one `_Call`), after a rescan if asked and safe."""
        with _PA_LOCK:
            if rescan:
                if stuck_calls():
                    log.info(
                        "an abandoned PortAudio call is still running: reopening from the "
                        "current device list instead of re-initialising PortAudio"
                    )
                else:
                    rescan_devices()
            error: DeviceError | None = None
            for device in candidates:
                try:
                    return self._open_capture(device)
                except DeviceError as exc:
                    log.debug("audio device still unavailable: %s", exc)
                    error = exc
            assert error is not None
            raise error

    def _install(self, opened: _Opened) -> None:
        self._opened = opened
        self._last_data = time.monotonic()
        info, rate, channels = opened.info, opened.rate, opened.channels
        mix = ", ".join(
            f"channel {c}"
            if c is not None
            else "mono"
            if channels == 1
            else f"mix of {channels} channels"
            for c in self.lanes
        )
        if rate != self.rate:
            log.info(
                "capturing from %r (index %d) at %d Hz (%s), resampling to %d Hz",
                info.name,
                info.index,
                rate,
                mix,
                self.rate,
            )
        else:
            log.info("capturing from %r (index %d) at %d Hz (%s)", info.name, info.index, rate, mix)

    def start(self) -> None:
        """Open the device, waiting at most `open_timeout` s: a hung sound server becomes a
        DeviceError (the service manager restarts the agent), never a hang."""
        device = self.settings.device
        call = _Call("audio-open", lambda: self._connect([device], rescan=False), _close_opened)
        if not call.done.wait(self.open_timeout) and call.abandon():
            what = "the default input device" if device is None else repr(device)
            raise DeviceError(
                f"source.device: opening {what} did not return within "
                f"{self.open_timeout:g} s (is the sound server hung?)"
            )
        self._install(call.result())

    # -- closing (never waits longer than the caller allows)
    def _close_capture(self, wait: float) -> None:
        """Hand the live stream to an `audio-close` thread and wait at most `wait` s for it."""
        if self._opened is None or self._opened.capture is None:
            return
        capture, self._opened.capture = self._opened.capture, None
        self._dropped_before += capture.dropped
        self._closing = _Call("audio-close", capture.close)
        if wait > 0:
            self._closing.done.wait(wait)

    def _closing_settled(self, force: bool = False) -> bool:
        """True when the last close returned or has been abandoned (after `close_timeout`, or
        now with `force`), logging the abandonment: only then may the device be reopened."""
        call = self._closing
        if call is None or call.done.is_set():
            self._closing = None
            return True
        if not force and time.monotonic() - call.started < self.close_timeout:
            return False
        self._closing = None
        if call.abandon():
            self.abandoned_closes += 1
            log.warning(
                "closing the audio stream of %r did not return within %.1f s (sound "
                "server hung?); abandoned it, a new stream is opened regardless",
                self.name,
                self.close_timeout,
            )
        return True

    def _mark_lost(self, why: str) -> None:
        self.lost = True
        self.losses += 1
        self._close_capture(wait=0.0)  # the reconnect waits for it, within read()'s timeout
        log.warning(
            "audio device %r lost (%s); retrying every %.1f s",
            self.name,
            why,
            self.settings.reconnect_seconds,
        )
        self._next_retry = time.monotonic() + self.settings.reconnect_seconds

    def _try_recover(self, timeout: float | None) -> None:
        """One reconnect step, never longer than `timeout` (None: one retry interval): the
        open runs on an `audio-open` thread and each read() looks whether it has finished."""
        budget = self.settings.reconnect_seconds if timeout is None else max(0.0, timeout)
        deadline = time.monotonic() + budget
        call = self._opening
        if call is None:
            closing = self._closing
            if closing is not None and not self._closing_settled():
                until = min(deadline, closing.started + self.close_timeout)
                closing.done.wait(max(0.0, until - time.monotonic()))
                if not self._closing_settled():
                    return
            now = time.monotonic()
            if now < self._next_retry:
                time.sleep(max(0.0, min(self._next_retry, deadline) - now))
                return
            self._next_retry = now + self.settings.reconnect_seconds
            # Prefer the name found at start (indices move when USB devices come and go), then
            # what the user configured (an ALSA name embeds the card number, which can change).
            candidates: list[str | int | None] = [self._opened.info.name] if self._opened else []
            candidates.append(self.settings.device)
            call = self._opening = _Call(
                "audio-open", lambda: self._connect(candidates, rescan=True), _close_opened
            )
        if not call.done.wait(max(0.0, deadline - time.monotonic())):
            if not call.warned and time.monotonic() - call.started > self.open_timeout:
                call.warned = True
                log.warning(
                    "reopening audio device %r has not returned after %.0f s (sound "
                    "server hung?); still waiting for it",
                    self.name,
                    self.open_timeout,
                )
            return
        self._opening = None
        try:
            opened = call.result()
        except DeviceError:
            return  # still gone (logged at debug level by _connect)
        self._install(opened)
        self.lost = False
        self.recoveries += 1
        self._pending_overflow = True  # the gap while it was away
        log.warning("audio device %r is back", self.name)

    def _alive(self, capture: _Capture) -> bool:
        """False (and the loss handled) when the stream stopped or went silent too long."""
        try:
            active = bool(capture.stream.active)
        except Exception:  # PortAudioError: the stream is unusable
            active = False
        if capture.finished.is_set() or not active:
            self._mark_lost("stream stopped")
        elif time.monotonic() - self._last_data > self.settings.stall_seconds:
            self._mark_lost(f"no audio for {self.settings.stall_seconds:.1f} s")
        return not self.lost

    def read(self, timeout: float | None = None) -> Block | None:
        if self.lost:
            self._try_recover(timeout)
            return None
        if self._opened is None or self._opened.capture is None:
            raise RuntimeError("DeviceSource.read() before start()")
        capture = self._opened.capture
        # Wait in short slices so a dead stream is noticed even when waiting without limit.
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = 0.5 if deadline is None else max(0.0, min(0.5, deadline - time.monotonic()))
            try:
                t_cb, data, overflow = capture.q.get(timeout=left)
                break
            except queue.Empty:
                if not self._alive(capture):
                    return None
                if deadline is not None and time.monotonic() >= deadline:
                    return None
        self._last_data = time.monotonic()
        if overflow:
            self._pending_overflow = True
        rs = self._opened.resamplers[0]
        first_out = rs.n_out
        ys = tuple(
            r.process(to_mono(data, c))
            for r, c in zip(self._opened.resamplers, self.lanes, strict=True)
        )
        y = ys[0]
        if y.size == 0:
            return None
        # Input sample i was captured at about t_cb - (n_in - i) / rate; output n sits at input
        # position n * down / up (the filter is zero-phase). Every lane's resampler has seen
        # the same input, so all lanes have the same length and times.
        t_start = t_cb - (rs.n_in - first_out * rs.down / rs.up) / rs.rate_in
        block = Block(
            y, t_start, self._pending_overflow, self._opened.info.name, ys if len(ys) > 1 else ()
        )
        self._pending_overflow = False
        return self._deliver(block)

    def stop(self) -> None:
        """Release the device without ever hanging shutdown: an open in flight is abandoned
        (its stream is closed when it arrives) and the close is waited for at most
        `close_timeout` s, then abandoned and logged. Safe to call twice."""
        call, self._opening = self._opening, None
        if call is not None and not call.abandon():
            try:
                leftover = call.result()
            except Exception:  # a failed open left nothing to close
                pass
            else:
                _Call("audio-close", lambda: _close_opened(leftover))
        self._close_capture(wait=self.close_timeout)
        self._closing_settled(force=True)
