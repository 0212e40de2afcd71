"""A release archive cut into chunks (operator side) and put together again (device side).

Why chunks: a bundle is megabytes and an MQTT message should stay small (brokers cap message
sizes, and a device should not hold a whole release in memory while it arrives). Each chunk is
one retained QoS 1 message; the release notice lists every chunk's sha256 and the whole
archive's.

The device side (`Assembly`) writes each chunk to its own file as it arrives, after checking
its size and sha256 against the notice, so memory stays at one chunk and disk at the announced
size (which the notice parser already held to `fleet.max_bundle_mb`). A chunk whose sha256 is
wrong fails the release at once: chunks are retained, so fetching again would give the same
bytes. Once every chunk is there, `archive()` joins them while hashing and checks the whole
archive's size and sha256. A release that does not complete within its deadline `expired`.

A chunk that cannot be written (a full disk, the folder gone) fails the release too, but as
this device's fault (`local_error`): the client reports it `failed` and tries the release
again at the next notice, where a bad chunk is `refused` for good. `discard` holds the lock
`add` writes under, so a release given up by the worker is never written into half-deleted.
"""

from __future__ import annotations

import hashlib
import shutil
import threading
import time
from pathlib import Path

from edge_agent.fleet.messages import FleetError, Release

ARCHIVE = "archive.tar"


def cut(archive: bytes, chunk_size: int) -> list[bytes]:
    """The archive's consecutive chunks of `chunk_size` bytes (the last may be shorter)."""
    return [archive[i : i + chunk_size] for i in range(0, len(archive), chunk_size)]


def chunk_digests(chunks: list[bytes]) -> tuple[str, ...]:
    return tuple(hashlib.sha256(c).hexdigest() for c in chunks)


class Assembly:
    """One release being received into `folder` (created empty; see module docstring).

    `add` is called from the MQTT network thread, the rest from the fleet worker: a lock
    guards the state they share."""

    def __init__(self, release: Release, folder: Path, timeout: float) -> None:
        self.release = release
        self.folder = folder
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        self.started = time.monotonic()
        self.deadline = self.started + timeout
        self._have: set[int] = set()
        self._lock = threading.Lock()
        self._discarded = False
        self.error: str | None = None  # a chunk that can never be right: the release fails
        self.local_error = False  # the error is this device's (disk), not the release's

    def _expected_size(self, i: int) -> int:
        r = self.release
        return r.chunk_size if i < r.chunks - 1 else r.size - r.chunk_size * (r.chunks - 1)

    def add(self, index: int, payload: bytes) -> bool:
        """Store chunk `index`; True when this chunk completed the release (once). An empty
        payload (a retained message being deleted) and a repeated chunk are ignored."""
        r = self.release
        if not payload or not 0 <= index < r.chunks:
            return False
        with self._lock:
            if self.error is not None or self._discarded or index in self._have:
                return False
            if len(payload) != self._expected_size(index):
                self.error = (
                    f"release {r.release}: chunk {index} has {len(payload)} bytes, "
                    f"the notice says {self._expected_size(index)}"
                )
                return False
            if hashlib.sha256(payload).hexdigest() != r.chunk_sha256[index]:
                self.error = f"release {r.release}: chunk {index}: sha256 mismatch (altered?)"
                return False
            part = self.folder / f"{index}.part"
            try:
                part.write_bytes(payload)
                Path(part).replace(self.folder / str(index))
            except OSError as exc:
                self.error = (
                    f"release {r.release}: chunk {index} could not be written to "
                    f"{self.folder} ({exc.strerror or type(exc).__name__})"
                )
                self.local_error = True
                return False
            self._have.add(index)
            return len(self._have) == r.chunks

    def fail(self, error: str) -> bool:
        """Fail the release for a reason of this device's (`local_error`); True the first time
        (an earlier error stands)."""
        with self._lock:
            if self.error is not None:
                return False
            self.error, self.local_error = error, True
            return True

    @property
    def received(self) -> int:
        with self._lock:
            return len(self._have)

    @property
    def complete(self) -> bool:
        return self.received == self.release.chunks

    def expired(self, now: float | None = None) -> bool:
        return (time.monotonic() if now is None else now) > self.deadline

    def progress(self) -> str:
        return f"{self.received} of {self.release.chunks} chunks"

    def archive(self) -> Path:
        """The joined archive, its size and sha256 checked (FleetError otherwise); the chunk
        files are removed as they are joined."""
        r = self.release
        if not self.complete:
            raise FleetError(f"release {r.release}: incomplete ({self.progress()})")
        out = self.folder / ARCHIVE
        h = hashlib.sha256()
        size = 0
        with Path(out).open("wb") as f:
            for i in range(r.chunks):
                part = self.folder / str(i)
                data = part.read_bytes()
                h.update(data)
                size += len(data)
                f.write(data)
                part.unlink()
        if size != r.size or h.hexdigest() != r.sha256:
            raise FleetError(
                f"release {r.release}: the joined archive's sha256 does not match "
                "the notice (altered in transit?)"
            )
        return out

    def discard(self) -> None:
        """Delete the folder; a chunk arriving later is ignored (the lock `add` writes under is
        held, so no write is half-way when the folder goes)."""
        with self._lock:
            self._discarded = True
            shutil.rmtree(self.folder, ignore_errors=True)
