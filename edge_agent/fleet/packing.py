"""A bundle version folder <-> one tar archive: deterministic out, strictly checked in.

Why a tar of the version folder as it is: the signature (edge_agent.bundle.signing) and the
manifest's checksums cover the files of the version, so the device must receive exactly those
bytes; a version folder is flat (manifest.json, manifest.sha256, the models, backend.npz, the
signature), so the archive is too. Deterministic (names sorted, times, owners and modes
fixed): the same version always packs to the same bytes and the same sha256, which is what
makes a release idempotent (a device that installed that sha256 never installs it again).

Unpacking trusts nothing in the archive: only regular files with plain names (no folders, no
`..`, no links or devices), each name once, at most `MAX_MEMBERS` of them and `max_bytes` in
all, written by this code (never `extractall`).
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

from edge_agent.errors import BundleError

MAX_MEMBERS = 64
"""A version folder holds a handful of files (an ensemble of a few models at most)."""


def pack_version(vdir: Path) -> bytes:
    """The tar archive of the regular files of version folder `vdir` (see module docstring)."""
    files = sorted(p for p in vdir.iterdir() if p.is_file())
    others = sorted(p.name for p in vdir.iterdir() if not p.is_file())
    if others:
        raise BundleError(
            f"{vdir}: a bundle version folder holds files only, found {', '.join(others)}"
        )
    if not (vdir / "manifest.json").is_file():
        raise BundleError(f"{vdir}: not a bundle version folder (no manifest.json)")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for p in files:
            info = tarfile.TarInfo(p.name)
            info.size = p.stat().st_size
            info.mtime = 0
            info.mode = 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            with Path(p).open("rb") as f:
                tar.addfile(info, f)
    return buf.getvalue()


def _plain_name(name: str) -> bool:
    return bool(name) and "/" not in name and "\\" not in name and name not in (".", "..")


def unpack_version(archive: Path, dest: Path, max_bytes: int) -> list[str]:
    """Write the archive's files into the new folder `dest`; their names. A one-line
    BundleError for anything but a flat set of regular files within `max_bytes`."""
    dest.mkdir(parents=True)
    names: list[str] = []
    total = 0
    try:
        with tarfile.open(archive, mode="r:") as tar:
            for m in tar:
                if not m.isreg() or not _plain_name(m.name):
                    raise BundleError(
                        f"release archive: {m.name!r} is not a plain file of a "
                        "bundle version folder"
                    )
                if m.name in names:
                    raise BundleError(f"release archive: {m.name!r} twice")
                total += m.size
                if len(names) >= MAX_MEMBERS or total > max_bytes:
                    raise BundleError(
                        f"release archive: more than {MAX_MEMBERS} files or {max_bytes} bytes"
                    )
                src = tar.extractfile(m)
                if src is None:  # pragma: no cover - regular members always have a stream
                    raise BundleError(f"release archive: {m.name!r} unreadable")
                with src, Path(dest / m.name).open("wb") as out:
                    while block := src.read(1 << 20):
                        out.write(block)
                names.append(m.name)
    except tarfile.TarError as exc:
        raise BundleError(f"release archive: not a readable tar archive ({exc})") from None
    if "manifest.json" not in names:
        raise BundleError("release archive: no manifest.json (not a bundle version)")
    return names
