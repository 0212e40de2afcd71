"""Real small file systems for fault tests: a size-limited (or read-only) tmpfs mounted on a
temp folder, so "disk full" and "read-only file system" come from the kernel, not a mock.

`mounted_tmpfs(folder, size="64k", read_only=False)` mounts, yields the folder and unmounts
(lazily, so a file a failing test left open cannot leave the mount behind); it skips the test
with the reason when mounting is refused (not root, or no CAP_SYS_ADMIN in a container).
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


@contextlib.contextmanager
def mounted_tmpfs(folder: Path, size: str = "64k", read_only: bool = False) -> Iterator[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    options = f"size={size},mode=0755" + (",ro" if read_only else "")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
                          capture_output=True, text=True, timeout=30, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip() or done.returncode}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True, timeout=30,
                       check=False)
