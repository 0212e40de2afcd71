"""Evidence: the audio the agent heard when it raised an alarm, kept on the device.

Why: a plant engineer who gets an alarm asks "what did it hear?". A score says the machine
sounds unlike its normal recordings; the audio lets a person listen and judge (a bearing, or a
forklift passing by). So when the alarm is raised, the windows that voted for it (the
anomalous ones among the decision's last n scored windows, the raising window included) are
written to `evidence.folder` as ONE file per alarm: the voting windows back to back, in time
order, with a sidecar JSON (`<clip>.json`) saying which window starts where in the file, its
score and threshold. One file per alarm because the alarm is what a person investigates, and
the alarm payload then references exactly one file (`EvidenceRef`: file, sha256, bytes, time
span, windows).

Why FLAC via `soundfile`: libsndfile is a well-kept encoder, its wheels bundle the library
(x86-64 and aarch64: nothing to apt-install on a Pi), and 16-bit FLAC is lossless at roughly
half the size of WAV. `compression: wav` writes 16-bit PCM WAV with the stdlib `wave` module
instead (no native code at all). Samples are stored as 16-bit PCM either way, the DCASE format.

Threads: `EvidenceStore.keep` runs on the scoring worker, but only when an alarm is raised. It
encodes the clip in memory (milliseconds: at most n windows) so the sha256 in the alarm payload
is the file's, checks the free space and hands the bytes to a writer thread through a bounded
queue; the file system (a slow SD card, fsync) is touched only by that thread, so it never
delays scoring. A full queue skips the clip rather than wait.

Safe on a full disk: a clip is written only if the folder's file system keeps at least
`min_free_megabytes` free after it; otherwise (and on any write error, and on a full queue) it
is skipped with one warning and a notice that the agent emits as an `evidence_skipped` health
event; the alarm is sent without `evidence`. Writes are atomic (temp file in the same folder,
fsync, rename; the sidecar last, so a listed clip always has its audio). Retention after each
write: oldest first (by name, which starts with the alarm's UTC time) until at most
`max_clips` clips and `max_megabytes` (audio + sidecars) remain; the clip just written is never
deleted, even if it alone exceeds the size cap. Clips an operator answered (the sidecar's
`answer`, edge_agent.adaptation.feedback) are the plant's labelled data set: every unanswered
clip goes before the oldest answered one.

Over MQTT too (`mqtt_max_kilobytes` > 0, with MQTT on): a stored clip up to that size is also
queued in the MQTT outbox, at the lowest priority (a full outbox drops it before any health
event or alarm), as the raw file bytes on `<prefix>/<device>/<monitor>/evidence/<file>`; the
alarm event's `evidence.sha256` checks it. A bigger clip stays on the device (logged).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import queue
import shutil
import threading
import wave
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from edge_agent.arrays import FloatArray
from edge_agent.audio.files import read_wav, to_pcm16
from edge_agent.bundle.manifest import sha256_file
from edge_agent.config.runtime import EvidenceFormat, EvidenceSettings
from edge_agent.errors import ConfigError, EdgeAgentError
from edge_agent.events import EvidenceRef, iso
from edge_agent.private import PRIVATE_MODE, open_private

log = logging.getLogger("edge_agent")

MB = 1_000_000
SIDECAR_SCHEMA = 1
INDEX_NAME = "index.json"
EXPORT_MODE = 0o666
"""Exported clips are for handing on: their mode is left to the umask (not 0600)."""


class EvidenceError(EdgeAgentError):
    """The evidence folder cannot be read, or a clip fails its sha256 check."""


@dataclass(frozen=True)
class HeardWindow:
    """One scored window as the evidence ring keeps it: its audio and what the model said."""

    samples: FloatArray
    t_start: float
    index: int
    score: float
    threshold: float
    anomalous: bool


class EvidenceRing:
    """The last n scored windows (n = the decision's window count), mirroring the decider's
    vote history: the agent pushes every scored window and clears the ring when the alarm
    clears (the decider clears its history then), so at a raise `voting()` is exactly the
    windows that voted. Memory: n windows of float32 (5 x 10 s at 16 kHz: 3.2 MB). After a
    restart that restored the decider's votes (`decision.DecisionStore`) the ring starts empty:
    a raise soon after holds only the voting windows heard since the start."""

    def __init__(self, n: int) -> None:
        self._ring: deque[HeardWindow] = deque(maxlen=n)

    def push(self, w: HeardWindow) -> None:
        self._ring.append(w)

    def clear(self) -> None:
        self._ring.clear()

    def voting(self) -> list[HeardWindow]:
        return [w for w in self._ring if w.anomalous]


@dataclass(frozen=True)
class ClipInfo:
    """A stored clip, as its sidecar describes it."""

    path: Path
    sidecar: Path
    meta: dict[str, Any]

    @property
    def size(self) -> int:
        return int(self.meta.get("bytes", 0))

    @property
    def monitor(self) -> str:
        """The machine whose alarm this is (older sidecars: the section)."""
        return str(self.meta.get("monitor") or self.meta.get("section") or "")

    @property
    def answer(self) -> dict[str, Any] | None:
        """The operator's answer to the alarm (edge_agent.adaptation.feedback), or None."""
        a = self.meta.get("answer")
        return a if isinstance(a, dict) else None


def encode(x: FloatArray, rate: int, fmt: EvidenceFormat) -> bytes:
    """Mono float samples in [-1, 1] as a 16-bit FLAC or WAV file, in memory."""
    pcm = to_pcm16(x)
    buf = io.BytesIO()
    if fmt == "flac":
        import soundfile

        soundfile.write(buf, pcm, rate, format="FLAC", subtype="PCM_16")
    else:
        with wave.open(buf, "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(rate)
            w.writeframes(pcm.astype("<i2").tobytes())
    return buf.getvalue()


def decode(path: str | Path) -> tuple[FloatArray, int]:
    """(mono float32 samples, rate) of a stored clip (tests, and anyone checking a clip)."""
    p = Path(path)
    if p.suffix == ".flac":
        import soundfile

        data, rate = soundfile.read(str(p), dtype="float32")
        return np.asarray(data, dtype=np.float32), int(rate)
    return read_wav(p)


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not every file system can fsync a folder
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_atomic(path: Path, data: bytes | Path, mode: int = PRIVATE_MODE) -> None:
    """`data` (bytes, or the contents of a file) at `path`: a temp file in the same folder,
    fsynced, renamed over, so a crash or a full disk leaves the old file or the new one, never
    a torn one under the final name. A new file gets `mode` (default 0600: alarm audio is the
    agent's own, `edge_agent.private`); an export passes 0o666 (then the umask decides)."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open_private(tmp, "wb", mode) as f:
            if isinstance(data, Path):
                with Path(data).open("rb") as src:
                    shutil.copyfileobj(src, f, 1 << 20)
            else:
                f.write(data)
            f.flush()
            os.fsync(f.fileno())
        Path(tmp).replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(path.parent)


def list_clips(folder: str | Path) -> list[ClipInfo]:
    """The clips in `folder`, oldest first (names start with the alarm's UTC time). A sidecar
    that is unreadable or whose audio is missing is left out with a warning."""
    d = Path(folder)
    out = []
    for side in sorted(d.glob("*.json")):
        if side.name == INDEX_NAME:
            continue
        try:
            meta = json.loads(side.read_text())
        except (OSError, ValueError) as exc:
            log.warning("evidence: %s unreadable, left out: %s", side, exc)
            continue
        if not (isinstance(meta, dict) and isinstance(meta.get("file"), str) and "sha256" in meta):
            continue  # not a sidecar (another program's JSON in the same folder)
        audio = d / meta["file"]
        if not audio.is_file():
            log.warning("evidence: %s names %s, which is missing; left out", side, audio.name)
            continue
        out.append(ClipInfo(audio, side, meta))
    return out


def read_clip(audio: str | Path) -> ClipInfo:
    """The clip `audio` (its file in the evidence folder) with its sidecar read now; an
    EvidenceError naming the file when either is missing or the sidecar is not one."""
    p = Path(audio)
    side = p.with_suffix(".json")
    try:
        meta = json.loads(side.read_text())
    except (OSError, ValueError) as exc:
        raise EvidenceError(f"{side}: cannot read the clip's sidecar: {exc}") from None
    if not (isinstance(meta, dict) and meta.get("file") == p.name):
        raise EvidenceError(f"{side}: not the sidecar of {p.name}")
    if not p.is_file():
        raise EvidenceError(f"{p}: the clip's audio is missing")
    return ClipInfo(p, side, meta)


def voting_windows(clip: ClipInfo) -> tuple[list[FloatArray], int]:
    """(the clip's windows, each as the agent scored it, and the sample rate): the audio cut
    back into its `parts` (back to back, all of one length). EvidenceError when the audio does
    not hold exactly that many windows of one length, or its sha256 is not the sidecar's."""
    if sha256_file(clip.path) != clip.meta.get("sha256"):
        raise EvidenceError(f"{clip.path}: sha256 differs from its sidecar (corrupt clip)")
    parts = clip.meta.get("parts")
    if not isinstance(parts, list) or not parts:
        raise EvidenceError(f"{clip.sidecar}: parts: expected the list of voting windows")
    x, rate = decode(clip.path)
    if x.ndim != 1 or x.size % len(parts):
        raise EvidenceError(
            f"{clip.path}: {x.size} samples do not split into {len(parts)} windows of one length"
        )
    n = x.size // len(parts)
    return [x[i * n : (i + 1) * n] for i in range(len(parts))], rate


def write_sidecar(clip: ClipInfo, meta: dict[str, Any]) -> ClipInfo:
    """Replace the clip's sidecar with `meta` (atomically: a crash leaves the old one)."""
    write_atomic(clip.sidecar, json.dumps(meta, indent=1, allow_nan=False).encode())
    return ClipInfo(clip.path, clip.sidecar, meta)


def enforce_retention(
    folder: Path, max_clips: int, max_bytes: float, keep: str | None = None
) -> list[str]:
    """Delete the oldest clips (audio + sidecar) until at most `max_clips` remain and their
    total size (audio + sidecars) is at most `max_bytes`; never the clip named `keep`. Returns
    the deleted clips' file names."""
    clips = list_clips(folder)

    def size(c: ClipInfo) -> int:
        total = 0
        for p in (c.path, c.sidecar):
            with contextlib.suppress(OSError):
                total += p.stat().st_size
        return total

    sizes = [size(c) for c in clips]
    total = sum(sizes)
    count = len(clips)
    deleted = []
    # unanswered clips first (oldest first), then answered ones: see the module docstring
    order = sorted(zip(clips, sizes, strict=True), key=lambda cs: cs[0].answer is not None)
    for c, s in order:
        if count <= max_clips and total <= max_bytes:
            break
        if c.path.name == keep:
            continue
        for p in (c.sidecar, c.path):  # sidecar first: a half-deleted clip is not listed
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
        count -= 1
        total -= s
        deleted.append(c.path.name)
    return deleted


def check_folder(folder: str | Path) -> None:
    """ConfigError unless `folder` is a folder this process can write clips into, or can be
    created as one (its nearest existing parent is a writable folder). Checked by `config
    check` (`config.check_start`) and by the store at start, so both refuse the same folders:
    a file, a folder on a read-only file system or without write permission. Creates
    nothing."""
    p = Path(folder)
    existing = p
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        below = "" if existing == p else f" (cannot create {p} below it)"
        raise ConfigError(f"evidence.folder: {existing} is a file, expected a folder{below}")
    if not os.access(existing, os.W_OK | os.X_OK):
        why = "is not writable by this user"
        with contextlib.suppress(OSError):
            if os.statvfs(existing).f_flag & os.ST_RDONLY:
                why = "is on a read-only file system"
        below = "" if existing == p else f" (cannot create {p} in it)"
        raise ConfigError(f"evidence.folder: {existing} {why}{below}")


@dataclass(frozen=True)
class _Job:
    name: str
    audio: bytes
    sidecar: bytes


class EvidenceStore:
    """Keeps alarm clips in `settings.folder` (see the module docstring): `keep` on the scoring
    worker, the writes on a writer thread, `take_notices` for the agent's health events,
    `close` at shutdown (waits for the queued clips)."""

    QUEUE_SIZE = 4  # clips waiting for the disk; alarms are rare, 4 is a burst

    def __init__(self, settings: EvidenceSettings, sample_rate: int, device_id: str) -> None:
        if not settings.folder:
            raise ConfigError("evidence.folder: required to keep evidence")
        self.settings = settings
        self.folder = Path(settings.folder)
        self.rate = sample_rate
        self.device_id = device_id
        check_folder(self.folder)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            for stale in self.folder.glob(".*.tmp"):  # from a crash mid-write
                stale.unlink()
        except OSError as exc:
            raise ConfigError(
                f"evidence.folder: cannot use {self.folder}: {exc.strerror}"
            ) from None
        self._jobs: queue.Queue[_Job | None] = queue.Queue(maxsize=self.QUEUE_SIZE)
        self._notices: queue.SimpleQueue[str] = queue.SimpleQueue()
        self.written = 0
        self.skipped = 0
        self._thread = threading.Thread(target=self._writer, name="evidence", daemon=True)
        self._thread.start()
        self.publish: Callable[[str, EvidenceRef, bytes], None] | None = None
        self._staged: tuple[str, EvidenceRef, bytes] | None = None
        """Set by the agent when clips also go over MQTT (`mqtt_max_kilobytes`): called with
        (monitor, reference, clip bytes) for each clip stored, on the scoring worker."""

    # --- scoring worker ---
    def keep(
        self,
        monitor: str,
        heard: Sequence[HeardWindow],
        alarm_epoch: float,
        model_version: str,
        section: str | None = None,
        explanation: dict[str, Any] | None = None,
    ) -> EvidenceRef | None:
        """Queue the clip of `heard` (the voting windows) of machine `monitor` (scored by
        `section`, default: the monitor's name) for writing; its reference for the alarm
        payload, or None (skipped: the reason is logged once and becomes a notice).
        `explanation`: why it alarmed (the alarm payload's), kept in the sidecar beside the
        clip for `edge-agent evidence show`."""
        if not heard:
            return None
        heard = sorted(heard, key=lambda h: h.index)
        length = heard[0].samples.size
        t_start = heard[0].t_start
        t_end = heard[-1].t_start + heard[-1].samples.size / self.rate
        stamp = datetime.fromtimestamp(alarm_epoch, UTC).strftime("%Y%m%dT%H%M%S.%f")[:-3]
        name = f"{stamp}Z_{monitor}_w{heard[-1].index:06d}.{self.settings.compression}"
        try:
            audio = encode(
                np.concatenate([h.samples for h in heard]), self.rate, self.settings.compression
            )
        except Exception as exc:  # an encoder failure must not cost the alarm
            self._skip(f"cannot encode {name}: {exc}")
            return None
        digest = hashlib.sha256(audio).hexdigest()
        ref: EvidenceRef = {
            "file": name,
            "sha256": digest,
            "bytes": len(audio),
            "t_start": round(t_start, 3),
            "t_end": round(t_end, 3),
            "windows": [h.index for h in heard],
        }
        meta = {
            "schema": SIDECAR_SCHEMA,
            **ref,
            "alarm_ts": iso(alarm_epoch),
            "alarm_epoch": round(alarm_epoch, 3),
            "section": section or monitor,
            "monitor": monitor,
            "device_id": self.device_id,
            "model_version": model_version,
            "sample_rate": self.rate,
            "format": self.settings.compression,
            "parts": [
                {
                    "window": h.index,
                    "offset_s": round(i * length / self.rate, 3),
                    "t_start": round(h.t_start, 3),
                    "score": round(h.score, 6),
                    "threshold": round(h.threshold, 6),
                }
                for i, h in enumerate(heard)
            ],
        }
        if explanation is not None:
            meta["explanation"] = explanation
        problem = self._space_problem(len(audio))
        if problem is not None:
            self._skip(f"{name} not written: {problem}")
            return None
        sidecar = json.dumps(meta, indent=1, allow_nan=False).encode()
        try:
            self._jobs.put_nowait(_Job(name, audio, sidecar))
        except queue.Full:
            self._skip(
                f"{name} not written: {self.QUEUE_SIZE} clips already wait for "
                "the disk (a slow or stuck card)"
            )
            return None
        self._stage(monitor, ref, audio)
        return ref

    def _stage(self, monitor: str, ref: EvidenceRef, audio: bytes) -> None:
        """Keep the clip for `publish_staged` when it also goes over MQTT (size-capped: a clip
        over the cap is named in the log and stays on the device only; the alarm payload
        references it either way)."""
        cap = self.settings.mqtt_max_kilobytes * 1000
        if self.publish is None or cap <= 0:
            return
        if len(audio) > cap:
            log.info(
                "evidence %s (%d kB) not published over MQTT: over mqtt_max_kilobytes %d",
                ref["file"],
                len(audio) // 1000,
                self.settings.mqtt_max_kilobytes,
            )
            return
        self._staged = (monitor, ref, audio)

    def publish_staged(self) -> None:
        """Publish the clip `keep` staged, AFTER the alarm event that references it has gone to
        the sinks: the outbox sends in order, so the alarm never waits behind the clip."""
        staged, self._staged = self._staged, None
        if staged is not None and self.publish is not None:
            self.publish(*staged)

    def _space_problem(self, size: int) -> str | None:
        try:
            free = shutil.disk_usage(self.folder).free
        except OSError as exc:
            return f"cannot read the free space of {self.folder}: {exc.strerror}"
        need = self.settings.min_free_megabytes * MB + size
        if free < need:
            return (
                f"{free / MB:.1f} MB free on {self.folder}, the clip needs "
                f"{size / MB:.2f} MB and evidence.min_free_megabytes "
                f"{self.settings.min_free_megabytes:g} MB must stay free"
            )
        return None

    def _skip(self, reason: str) -> None:
        self.skipped += 1
        log.warning("evidence: %s", reason)
        self._notices.put(reason)

    def take_notices(self) -> list[str]:
        """Why clips were skipped since the last call (the agent emits health events)."""
        out = []
        while True:
            try:
                out.append(self._notices.get_nowait())
            except queue.Empty:
                return out

    # --- writer thread ---
    def _writer(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            try:
                self._write(job)
            except Exception as exc:  # a full or read-only card: skip, never crash
                self._skip(f"{job.name} not written: {exc}")

    def _write(self, job: _Job) -> None:
        problem = self._space_problem(len(job.audio) + len(job.sidecar))
        if problem is not None:  # the disk filled up since `keep` looked
            self._skip(f"{job.name} not written: {problem}")
            return
        audio = self.folder / job.name
        write_atomic(audio, job.audio)
        try:
            write_atomic(audio.with_suffix(".json"), job.sidecar)  # last: then it is listed
        except BaseException:
            with contextlib.suppress(OSError):
                audio.unlink()
            raise
        self.written += 1
        log.info("evidence: kept %s (%d bytes)", job.name, len(job.audio))
        deleted = enforce_retention(
            self.folder, self.settings.max_clips, self.settings.max_megabytes * MB, keep=job.name
        )
        if deleted:
            log.info("evidence: retention deleted %s", ", ".join(deleted))

    def close(self, timeout: float = 60.0) -> None:
        """Write what is queued, then stop the writer (agent shutdown)."""
        if not self._thread.is_alive():
            return
        self._jobs.put(None)
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("evidence: writer still busy after %g s; queued clips may be lost", timeout)


def export(folder: str | Path, dest: str | Path) -> tuple[list[dict[str, Any]], list[str]]:
    """Copy every clip of `folder` (audio + sidecar) to `dest` and write `dest/index.json`
    (the sidecars, in order). Each clip's sha256 is checked before and after copying: a clip
    that fails is not exported. Every file is written under a temp name and renamed, so a
    disk that fills up mid-export leaves whole clips only (and an EvidenceError naming the
    one that did not fit), never a truncated file under a clip's name. Returns (the index
    entries, the failed clips' messages)."""
    src, out = Path(folder), Path(dest)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EvidenceError(f"{out}: cannot create the export folder: {exc.strerror}") from None
    if out.resolve() == src.resolve():
        raise EvidenceError(f"{out}: is the evidence folder itself; export somewhere else")
    index: list[dict[str, Any]] = []
    bad: list[str] = []
    for c in list_clips(src):
        want = str(c.meta.get("sha256", ""))
        if sha256_file(c.path) != want:
            bad.append(f"{c.path.name}: sha256 differs from its sidecar (corrupt clip)")
            continue
        target = out / c.path.name
        try:  # each file whole or not at all (a full export disk): a temp name, then renamed
            write_atomic(target, c.path, EXPORT_MODE)
            try:
                write_atomic(out / c.sidecar.name, c.sidecar, EXPORT_MODE)
            except BaseException:
                with contextlib.suppress(OSError):
                    target.unlink()  # no clip without its sidecar
                raise
        except OSError as exc:
            raise EvidenceError(
                f"{target}: cannot copy: {exc.strerror}; the {len(index)} "
                f"clip(s) before it were exported whole, without an index"
            ) from None
        if sha256_file(target) != want:
            bad.append(f"{target}: sha256 of the copy differs (the export disk?)")
            continue
        index.append(c.meta)
    try:
        write_atomic(
            out / INDEX_NAME,
            json.dumps({"source": str(src.resolve()), "clips": index}, indent=1).encode(),
            EXPORT_MODE,
        )
    except OSError as exc:
        raise EvidenceError(
            f"{out / INDEX_NAME}: cannot write: {exc.strerror}; the "
            f"{len(index)} clip(s) were exported whole"
        ) from None
    return index, bad
