"""Progress of long loops (embedding tens of thousands of clips) on stderr.

On a terminal one line is redrawn in place, at most five times a second:

    embedding test clips   12480/40000  [#########...............]  31.2 clips/s  ETA 14:42

in a log file (stderr not a terminal) plain lines without carriage returns or escape codes:
one at every tenth of the way, or, with `interval_s`, one at most every `interval_s` seconds
and one at the end (training: a line per epoch, more only when an epoch is long), so logs
stay short. stdout is left alone: `--json` output stays machine-readable.
"""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import TextIO

_WIDTH = 24
_REDRAW_S = 0.2


def _clock(seconds: float) -> str:
    s = int(seconds)
    if s >= 3600:
        return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"
    return f"{s // 60}:{s % 60:02d}"


class Progress:
    """`with Progress(n, "embedding") as bar: ... bar.update(k)`; `enabled=False`: silent."""

    def __init__(
        self,
        total: int,
        label: str,
        enabled: bool = True,
        unit: str = "clips",
        stream: TextIO | None = None,
        interval_s: float | None = None,
    ) -> None:
        self.total, self.label, self.unit = max(0, total), label, unit
        self.interval_s = interval_s
        self.note = ""  # extra text at the end of the line (e.g. the running loss)
        self.stream = stream or sys.stderr
        self.enabled = enabled and self.total > 0
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.done = 0
        self.start = time.monotonic()
        self._drawn = -1.0
        self._tenth = 0

    def line(self) -> str:
        frac = self.done / self.total if self.total else 1.0
        filled = round(frac * _WIDTH)
        elapsed = time.monotonic() - self.start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.done) / rate if rate > 0 else 0.0
        tail = f"ETA {_clock(eta)}" if self.done < self.total else f"in {_clock(elapsed)}"
        width = len(str(self.total))
        note = f"  {self.note}" if self.note else ""
        return (
            f"{self.label:<22} {self.done:>{width}}/{self.total}  "
            f"[{'#' * filled}{'.' * (_WIDTH - filled)}]  {rate:.1f} {self.unit}/s  {tail}"
            f"{note}"
        )

    def update(self, n: int = 1, note: str | None = None) -> None:
        self.done = min(self.total, self.done + n)
        if note is not None:
            self.note = note
        if not self.enabled:
            return
        if self.tty:
            now = time.monotonic()
            if now - self._drawn >= _REDRAW_S or self.done == self.total:
                self.stream.write("\r" + self.line())
                self.stream.flush()
                self._drawn = now
            return
        if self.interval_s is not None:
            now = time.monotonic()
            if self.done == self.total or now - max(self._drawn, self.start) >= self.interval_s:
                self._drawn = now
                self.stream.write(self.line() + "\n")
                self.stream.flush()
            return
        tenth = self.done * 10 // self.total
        if tenth > self._tenth:
            self._tenth = tenth
            self.stream.write(self.line() + "\n")
            self.stream.flush()

    def close(self) -> None:
        if (
            self.enabled and not self.tty and self.interval_s is not None and self.done < self.total
        ):  # ended early (e.g. unreadable files dropped)
            self.stream.write(self.line() + "\n")
            self.stream.flush()
        if self.enabled and self.tty:
            self.stream.write("\r" + self.line() + "\n")
            self.stream.flush()
            self.enabled = False

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
