"""Files the agent keeps to itself: created mode 0600, whatever the umask.

Why: under the systemd unit (`UMask=0077`) every file the agent creates is private: the
outbox (alarm payloads, the MQTT queue), the score history, the decision state, alarm audio
(evidence) and the JSON-lines log. Run by hand (umask 022) the same files were 0644, readable
by every account on the box. So the mode is given where each file is created (`os.open`'s
mode: the umask can only take bits away), and a run by hand leaves the same files as the
service. An existing file keeps the mode it has (someone may have chosen it). Files meant for
others set their own mode (the metrics textfile node-exporter reads: 0644; a public key).
SQLite gives its journal and WAL files the mode of the database file, so creating the
database file here first (`create_private`) covers them too.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO, Any, BinaryIO, Literal, TextIO, overload

PRIVATE_MODE = 0o600

_FLAGS = {
    "w": os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
    "a": os.O_WRONLY | os.O_CREAT | os.O_APPEND,
}


@overload
def open_private(
    path: str | Path, mode: Literal["w", "a"], mode_bits: int = PRIVATE_MODE
) -> TextIO: ...
@overload
def open_private(
    path: str | Path, mode: Literal["wb", "ab"] = "wb", mode_bits: int = PRIVATE_MODE
) -> BinaryIO: ...
def open_private(path: str | Path, mode: str = "wb", mode_bits: int = PRIVATE_MODE) -> IO[Any]:
    """`open(path, mode)` for writing ("w", "wb", "a", "ab"), a new file created with
    `mode_bits` (default 0600) instead of 0666 minus the umask."""
    flags = _FLAGS[mode[0]] | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags, mode_bits)
    try:
        return os.fdopen(fd, mode)
    except BaseException:
        os.close(fd)
        raise


def create_private(path: str | Path) -> None:
    """Create `path` empty with mode 0600 if it does not exist (its folder too), for a file
    another library creates with its own mode (SQLite). An existing file is left as it is;
    an error (a read-only or full disk) is left for that library to report when it opens."""
    p = Path(path)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(p, os.O_WRONLY | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), PRIVATE_MODE))
    except OSError:
        return
