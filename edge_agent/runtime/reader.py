"""One audio source feeding the windows of the monitors it serves, on a reader thread of its own.

Why a thread per source: an agent listening to a multichannel interface and a USB microphone
reads two PortAudio streams; a blocking read on one must never starve the other, and none of
them may wait for the scorer (the scoring worker is fed through the agent's bounded queue).
A `Capture` reads blocks, splits a shared device's lanes (one per monitor,
`edge_agent.config.monitors.capture_groups`), cuts each monitor's windows with that monitor's
windower and hands them to the agent's `enqueue`. It notices a device that delivers nothing
for `stall_seconds` (`device_lost` health event for each monitor it serves, `device_ok` when
blocks come again), and feeds live recordings (`Recording`: the fleet's `record` command).

A source error (a file that vanished mid-replay) ends the capture; the agent stops and
re-raises it, as a single-source agent always did.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Sequence

import numpy as np

from edge_agent.arrays import FloatArray
from edge_agent.runtime.monitor import Monitor
from edge_agent.runtime.windows import Window
from edge_agent.sources.base import AudioSource, Block

Enqueue = Callable[[Monitor, Window, bool], None]


class Recording:
    """The next `samples` samples of one lane of a live capture (filled by the reader thread;
    whoever asked waits on `done` and writes the file: no disk I/O on the reader)."""

    def __init__(self, lane: int, samples: int) -> None:
        self.lane = lane
        self.samples = samples
        self.done = threading.Event()
        self.t_start: float | None = None
        self._parts: list[FloatArray] = []
        self._have = 0

    def feed(self, block: Block) -> None:
        if self.done.is_set():
            return
        x = block.lane(self.lane)
        if self.t_start is None:
            self.t_start = block.t_start
        take = x[: self.samples - self._have]
        self._parts.append(np.array(take, dtype=np.float32))
        self._have += take.size
        if self._have >= self.samples:
            self.done.set()

    def audio(self) -> FloatArray:
        return np.concatenate(self._parts) if self._parts else np.zeros(0, np.float32)


class Capture:
    """A started source, its monitors and the reader thread (see module docstring)."""

    def __init__(
        self,
        source: AudioSource,
        monitors: Sequence[Monitor],
        live: bool,
        enqueue: Enqueue,
        stall_seconds: float,
    ) -> None:
        self.source = source
        self.monitors = list(monitors)
        self.live = live
        self.enqueue = enqueue
        self.stall_seconds = stall_seconds
        self.beat = time.monotonic()  # the read loop's last turn (the agent's watchdog)
        self.finished = threading.Event()  # the source ended (or failed)
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._last_block = time.monotonic()
        self._lost = False
        self._recordings: list[Recording] = []
        self._rec_lock = threading.Lock()
        names = ",".join(m.name for m in self.monitors)
        self.thread = threading.Thread(target=self._run, name=f"capture-{names}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self._stop.set()

    def record(self, monitor: Monitor, samples: int) -> Recording:
        """Start collecting the next `samples` samples of `monitor`'s lane."""
        rec = Recording(self.monitors.index(monitor), samples)
        with self._rec_lock:
            self._recordings.append(rec)
        return rec

    def cancel(self, rec: Recording) -> None:
        """Stop filling `rec` (its requester gave up waiting): its memory is freed."""
        with self._rec_lock:
            self._recordings = [r for r in self._recordings if r is not rec]

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                block = self.source.read(0.5)
                now = self.beat = time.monotonic()
                if block is None:
                    if self.source.exhausted:
                        return
                    self._check_lost(now)
                    continue
                if self._lost:
                    self._lost = False
                    for m in self.monitors:
                        m.device_back()
                self._last_block = now
                self._feed_recordings(block)
                self._cut(block)
        except BaseException as exc:  # handed to the agent, which stops and re-raises it
            self.error = exc
        finally:
            self.finished.set()

    def _cut(self, block: Block) -> None:
        """Each monitor's lane of `block` into its windower (one lane: the block itself)."""
        for i, m in enumerate(self.monitors):
            lane = (
                dataclasses.replace(block, samples=block.lanes[i], lanes=())
                if block.lanes
                else block
            )
            for w in m.windower.push(lane):
                self._put(m, w)

    def _put(self, m: Monitor, w: Window) -> None:
        self.enqueue(m, w, self.live)
        self.beat = time.monotonic()  # waiting for a busy worker (replay) is progress

    def _feed_recordings(self, block: Block) -> None:
        with self._rec_lock:
            if not self._recordings:
                return
            for rec in self._recordings:
                rec.feed(block)
            self._recordings = [r for r in self._recordings if not r.done.is_set()]

    def _check_lost(self, now: float) -> None:
        if not self._lost and now - self._last_block > self.stall_seconds:
            self._lost = True
            for m in self.monitors:
                m.lost = True
                m.health(time.time(), "sensor_fault", ["device_lost"])
