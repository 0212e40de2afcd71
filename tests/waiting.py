"""Waiting in tests: poll a condition with a bound, never sleep a fixed time and hope."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_until(cond: Callable[[], bool], timeout: float = 30.0) -> bool:
    """True as soon as `cond()` is, False once `timeout` seconds passed without it (then
    checked one last time)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.02)
    return cond()
