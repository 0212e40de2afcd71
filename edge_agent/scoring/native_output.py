"""Output that native libraries write straight to file descriptors, kept off the console.

TensorFlow, absl, the TFLite converter and the TFLite runtime print from C++ to file
descriptors 1 and 2, past Python's `sys.stdout`/`sys.stderr`, so neither `logging` nor
`contextlib.redirect_stderr` can stop them ("Created TensorFlow Lite XNNPACK delegate for
CPU.", "oneDNN custom operations are on", a hundred converter lines). `native_output` points
the descriptors at a temporary file while a block runs, then writes back to stderr the lines
the caller keeps. If the block raises, everything captured is written back: it may be the
only explanation of the error.

The descriptors are process-wide: another thread's output during the block is captured too
and written back afterwards (late, not lost), unless the caller's filter drops it, which is
why filters name exact noise lines.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress

XNNPACK_LINE = "INFO: Created TensorFlow Lite XNNPACK delegate for CPU."


def drop_nothing(line: str) -> bool:
    return True


def drop_everything(line: str) -> bool:
    return False


def not_xnnpack(line: str) -> bool:
    """Every line except the TFLite runtime's delegate notice."""
    return line.strip() != XNNPACK_LINE


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        with suppress(AttributeError, ValueError, OSError):  # closed or fd-less streams
            stream.flush()


@contextmanager
def native_output(
    keep: Callable[[str], bool] = drop_nothing, fds: Sequence[int] = (2,)
) -> Iterator[None]:
    """Capture what is written to `fds` during the block; write the `keep` lines to stderr
    afterwards (all of them if the block raised)."""
    try:
        tmp_file = tempfile.TemporaryFile()  # noqa: SIM115 (closed by the with below)
    except OSError:  # no writable temporary folder: better noisy than broken
        yield
        return
    _flush()
    saved = [os.dup(fd) for fd in fds]
    failed = False
    with tmp_file as tmp:
        for fd in fds:
            os.dup2(tmp.fileno(), fd)
        try:
            yield
        except BaseException:
            failed = True
            raise
        finally:
            _flush()
            for fd, old in zip(fds, saved, strict=True):
                os.dup2(old, fd)
                os.close(old)
            tmp.seek(0)
            text = tmp.read().decode("utf-8", errors="replace")
            lines = [ln for ln in text.splitlines() if failed or keep(ln)]
            if lines:
                sys.stderr.write("\n".join(lines) + "\n")
                _flush()
