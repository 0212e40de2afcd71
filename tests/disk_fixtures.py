"""Real small file systems for fault tests: a size-limited (or read-only) tmpfs mounted for
one test, so "disk full" and "read-only file system" come from the kernel, not a mock.

`mounted_tmpfs(where, size, read_only)` mounts on a fresh folder (root is needed; the test is
skipped with the reason where mounting is not permitted) and yields a `SmallDisk`: its `path`,
`fill()` (a filler file until the kernel answers ENOSPC) and `free()`. `small_disk` is the
512 KiB one as a fixture. Unmounted at the end (lazily if a process still holds a file there,
e.g. a killed agent's SQLite connection).
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


class SmallDisk:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.filler = path / "filler"

    def fill(self) -> None:
        """Take every free block (4 KiB, then byte by byte for the last partial one)."""
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            for chunk in (b"\0" * 4096, b"\0"):
                while True:
                    try:
                        os.write(fd, chunk)
                    except OSError as exc:
                        if exc.errno != errno.ENOSPC:
                            raise
                        break
        finally:
            os.close(fd)

    def free(self) -> None:
        self.filler.unlink(missing_ok=True)

    def available(self) -> int:
        st = os.statvfs(self.path)
        return st.f_bavail * st.f_frsize


@contextlib.contextmanager
def mounted_tmpfs(where: Path, size: str = "512k", read_only: bool = False) -> Iterator[SmallDisk]:
    """A tmpfs of `size` on `where` (created) for the block, read-only if asked; skips the
    test where mounting is not permitted."""
    where.mkdir(parents=True, exist_ok=True)
    options = f"size={size},mode=0755" + (",ro" if read_only else "")
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
        capture_output=True,
        text=True,
        timeout=10,
    )
    if r.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs (root needed): {r.stderr.strip()}")
    try:
        yield SmallDisk(where)
    finally:
        if subprocess.run(["umount", str(where)], capture_output=True, timeout=10).returncode:
            with contextlib.suppress(subprocess.SubprocessError):
                subprocess.run(["umount", "-l", str(where)], capture_output=True, timeout=10)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[SmallDisk]:
    with mounted_tmpfs(tmp_path / "disk") as disk:
        yield disk
