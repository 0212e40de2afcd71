"""Keep the agent's heap small: few malloc arenas, and freed memory given back after a reload.

Why: glibc gives every thread that allocates a malloc arena of its own (up to 8 per core), and
the agent's threads (capture callback, scoring worker, MQTT, outbox sender, bundle reload) each
keep pages there: `MALLOC_ARENA_MAX=2` took one machine's agent from 121.5 to 117.0 MB after a
reload (`benchmarks/agent_rss.py --reload-at 60`); `limit_malloc_arenas` sets the same from
inside, so a hand-started `edge-agent run` gets it too. And a reload builds the new scorer
(TFLite interpreter and arena, backend, self-test) while the old one still scores, then drops
the old one: glibc kept most of what was freed, so the agent stayed at 126 MB after a single
calibration or fleet install, against 114 MB before it, over the 120 MB budget for good.
`malloc_trim(0)` returns the free pages. Elsewhere (musl, macOS) both are no-ops. (Since
then a reload that keeps the model shares the running interpreter instead of building a
second one: edge_agent.runtime.scorer, `Scorer.from_loaded(running=...)`.)
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
import sys
from collections.abc import Callable

M_ARENA_MAX = -8
"""glibc's mallopt parameter for the arena limit (malloc.h)."""


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim  # noqa: B018 -- glibc only: musl has no malloc_trim
        libc.mallopt  # noqa: B018 -- see above
    except (OSError, AttributeError):  # not glibc
        return None
    return libc


def limit_malloc_arenas(count: int = 2) -> bool:
    """At most `count` malloc arenas for threads started from now on (glibc; True when set).
    Called before the agent starts its threads."""
    libc = _glibc()
    if libc is None:
        return False
    set_option: Callable[[int, int], int] = libc.mallopt
    return set_option(M_ARENA_MAX, count) == 1


def release_freed_memory() -> bool:
    """Collect cycles, then hand the heap's free pages back (glibc); True when it could."""
    gc.collect()
    libc = _glibc()
    if libc is None:
        return False
    trim: Callable[[int], int] = libc.malloc_trim
    trim(0)
    return True
