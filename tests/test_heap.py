"""edge_agent.runtime.heap: freed memory goes back to the system after a reload."""

from __future__ import annotations

import subprocess
import sys

import pytest

CHILD = """
import sys
from edge_agent.runtime.heap import release_freed_memory
def rss():
    return int(open('/proc/self/status').read().split('VmRSS:')[1].split()[0]) // 1024
base = rss()
blocks = [bytearray(2000) for _ in range(60_000)]   # ~120 MB of small (heap, not mmap) blocks
kept = blocks[::64]                                  # a few survivors pin the heap's top
del blocks
held = rss()
trimmed = release_freed_memory()
print(base, held, rss(), trimmed)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_freed_memory_is_handed_back() -> None:
    """What a reload frees (the old scorer's small allocations) stays resident until
    `release_freed_memory`; after it, most of it is gone. In a child, so this process's heap
    does not blur the numbers."""
    out = subprocess.run(
        [sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=60, check=True
    )
    base, held, after, trimmed = out.stdout.split()
    assert trimmed == "True"
    assert int(held) - int(base) > 80, out.stdout  # freed, but still resident
    assert int(after) - int(base) < 30, out.stdout  # handed back


ARENAS = """
import sys, threading
from edge_agent.runtime.heap import limit_malloc_arenas
limited = sys.argv[1] == "limit" and limit_malloc_arenas(1)
barrier = threading.Barrier(7)
keep = []
def work():
    keep.append([bytearray(500) for _ in range(2000)])  # small blocks: malloc's arenas
    barrier.wait()
threads = [threading.Thread(target=work) for _ in range(6)]
for t in threads:
    t.start()
barrier.wait()
# a thread arena is a 64 MB-aligned anonymous mapping (glibc's HEAP_MAX_SIZE)
regions = 0
for line in open("/proc/self/maps"):
    parts = line.split()
    if len(parts) == 5 and int(parts[0].split("-")[0], 16) % (64 << 20) == 0:
        regions += 1
print(limited, regions)
for t in threads:
    t.join()
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_threads_share_the_limited_arenas() -> None:
    """Six allocating threads get arenas of their own; after `limit_malloc_arenas(1)` they
    share the main one."""

    def arenas(mode: str) -> tuple[str, int]:
        out = subprocess.run(
            [sys.executable, "-c", ARENAS, mode],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        limited, regions = out.stdout.split()
        return limited, int(regions)

    assert arenas("free")[1] >= 3
    assert arenas("limit") == ("True", 0)
