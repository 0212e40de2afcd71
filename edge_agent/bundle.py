"""The model bundle: what `model-build export` writes and the device loads (no TensorFlow).

Layout (format version 1)::

    BUNDLE/
      current                 text file: the active version number ("3")
      versions/1/             an older version, kept for rollback
      versions/3/
        manifest.json         format, version, frontend, inputs, sections, sha256 of each file
        model.tflite          features -> embedding
        backend.npz           per section: references, n_source, threshold

Why versions: `edge-agent calibrate` refits the backend on site and must be able to roll back.
A version directory is written complete under `versions/.tmp-*` and renamed into place (an
atomic rename on one file system), then `current` is replaced by `os.replace`, so a reader sees
either the old or the new version, never half of one. Old versions are never modified. A
version made on the device (`write_adapted_version`) records its `parent_version`, which
`rollback` makes current again.

Every file's sha256 is in the manifest; `load_bundle(verify=True)` checks them, so a truncated
copy or an edited file fails with a one-line BundleError instead of a runtime traceback.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import time
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np

from .backend import BackendError, SectionBackend
from .errors import BundleError
from .frontend import FrontendSpec

FORMAT = "asd-bundle"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
MODEL = "model.tflite"
BACKEND = "backend.npz"
CURRENT = "current"
VERSIONS = "versions"
QuantizeMode = Literal["float32", "float16", "dynamic", "int8"]
QUANTIZE_MODES: tuple[QuantizeMode, ...] = get_args(QuantizeMode)
AdaptationKind = Literal["calibration", "enrolment"]
_SEP = "::"  # npz key = "<section>::<field>"; section ids never contain "::"
# Fields write_bundle sets itself, and per-version records that must not leak into the next.
_DERIVED = {"format", "format_version", "version", "created", "sections", "files",
            "calibration", "enrolment", "parent_version"}


@dataclass(frozen=True)
class Bundle:
    """A loaded (and by default verified) bundle version."""

    root: Path  # the BUNDLE directory (or the version directory when loaded directly)
    path: Path  # the version directory holding the files
    manifest: dict[str, Any]
    backends: dict[str, SectionBackend]

    @property
    def version(self) -> int:
        return int(self.manifest["version"])

    @property
    def model_version(self) -> str:
        """Short id for messages: bundle version + the model file's hash prefix."""
        return f"v{self.version}-{self.manifest['files'][MODEL][:8]}"

    @property
    def model_path(self) -> Path:
        return self.path / MODEL

    @property
    def spec(self) -> FrontendSpec:
        return FrontendSpec.from_dict(self.manifest["frontend"])

    @property
    def input_names(self) -> list[str]:
        """Feature names in the order the embedder receives them."""
        return list(self.manifest["input_order"])

    @property
    def input_shapes(self) -> dict[str, list[int]]:
        return {e["name"]: list(e["shape"]) for e in self.manifest["inputs"]}

    @property
    def sections(self) -> list[str]:
        return list(self.manifest["sections"])

    def backend(self, section: str) -> SectionBackend:
        try:
            return self.backends[section]
        except KeyError:
            raise BundleError(
                f"{self.path}: no section {section!r} in the bundle "
                f"(has {', '.join(self.sections)})"
            ) from None


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def save_backends(path: Path, backends: Mapping[str, SectionBackend]) -> None:
    arrays: dict[str, Any] = {}
    for section, b in backends.items():
        if _SEP in section:
            raise BundleError(f"section {section!r}: names must not contain {_SEP!r}")
        for key, value in b.to_dict().items():
            arrays[f"{section}{_SEP}{key}"] = value
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def load_backends(path: Path) -> dict[str, SectionBackend]:
    try:
        with np.load(path, allow_pickle=False) as z:
            raw: dict[str, dict[str, Any]] = {}
            for key in z.files:
                section, _, field = key.partition(_SEP)
                raw.setdefault(section, {})[field] = z[key]
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise BundleError(f"{path}: not a readable backend file ({exc})") from None
    try:
        return {s: SectionBackend.from_dict(d) for s, d in raw.items()}
    except BackendError as exc:
        raise BundleError(f"{path}: {exc}") from None


def _version_dirs(root: Path) -> dict[int, Path]:
    vdir = root / VERSIONS
    if not vdir.is_dir():
        return {}
    return {int(p.name): p for p in vdir.iterdir() if p.is_dir() and p.name.isdigit()}


def list_versions(root: str | Path) -> list[int]:
    return sorted(_version_dirs(Path(root)))


def current_version(root: str | Path) -> int:
    root = Path(root)
    try:
        text = (root / CURRENT).read_text().strip()
        return int(text)
    except FileNotFoundError:
        raise BundleError(f"{root}: not a bundle (expected {CURRENT} and {VERSIONS}/)") from None
    except ValueError:
        raise BundleError(f"{root / CURRENT}: expected a version number") from None


def set_current(root: str | Path, version: int) -> None:
    """Point `current` at an existing version atomically (activation and rollback)."""
    root = Path(root)
    if version not in _version_dirs(root):
        raise BundleError(f"{root}: no version {version} (has {list_versions(root)})")
    tmp = root / f".{CURRENT}.tmp-{os.getpid()}"
    tmp.write_text(f"{version}\n")
    os.replace(tmp, root / CURRENT)


def write_bundle(
    root: str | Path,
    model: bytes | Path,
    backends: Mapping[str, SectionBackend],
    manifest: Mapping[str, Any],
    activate: bool = True,
) -> Path:
    """Write a new version (previous number + 1) of the bundle at `root`; returns its directory.

    `manifest` holds the descriptive fields (frontend, inputs, input_order, quantization...);
    format, version, creation time and file hashes are added here. Earlier versions stay.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    (root / VERSIONS).mkdir(exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=root / VERSIONS))
    try:
        if isinstance(model, Path):
            shutil.copyfile(model, tmp / MODEL)
        else:
            (tmp / MODEL).write_bytes(model)
        save_backends(tmp / BACKEND, backends)
        versions = list_versions(root)
        version = (versions[-1] + 1) if versions else 1
        full = {
            **manifest,
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "version": version,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "sections": sorted(backends),
            "files": {MODEL: sha256_file(tmp / MODEL), BACKEND: sha256_file(tmp / BACKEND)},
        }
        (tmp / MANIFEST).write_text(json.dumps(full, indent=2, sort_keys=True) + "\n")
        final = root / VERSIONS / str(version)
        os.rename(tmp, final)  # fails (not overwrites) if a concurrent writer took the number
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if activate:
        set_current(root, version)
    return final


def _read_manifest(vdir: Path) -> dict[str, Any]:
    path = vdir / MANIFEST
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise BundleError(f"{path}: missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise BundleError(f"{path}: not an {FORMAT} manifest")
    if data.get("format_version") != FORMAT_VERSION:
        raise BundleError(
            f"{path}: unknown format_version {data.get('format_version')!r} "
            f"(this agent reads {FORMAT_VERSION}; update the agent or re-export)"
        )
    for key in ("version", "frontend", "inputs", "input_order", "sections", "files"):
        if key not in data:
            raise BundleError(f"{path}: missing field {key!r}")
    try:
        FrontendSpec.from_dict(data["frontend"])
    except (TypeError, ValueError) as exc:
        raise BundleError(f"{path}: frontend: {exc}") from None
    return data


def resolve(path: str | Path, version: int | None = None) -> tuple[Path, Path]:
    """(root, version directory) for a bundle root or a version directory itself."""
    p = Path(path)
    if not p.exists():
        raise BundleError(f"{p}: bundle not found")
    if (p / MANIFEST).exists() and not (p / CURRENT).exists():
        return p, p
    v = current_version(p) if version is None else version
    vdir = p / VERSIONS / str(v)
    if not vdir.is_dir():
        raise BundleError(f"{p}: version {v} missing (has {list_versions(p)})")
    return p, vdir


def load_bundle(path: str | Path, verify: bool = True, version: int | None = None) -> Bundle:
    """Load the current (or given) version; with `verify`, check every file's sha256."""
    root, vdir = resolve(path, version)
    manifest = _read_manifest(vdir)
    for name in (MODEL, BACKEND):
        f = vdir / name
        if not f.is_file():
            raise BundleError(f"{f}: missing")
        expected = manifest["files"].get(name)
        if verify and sha256_file(f) != expected:
            raise BundleError(f"{f}: checksum mismatch (file truncated or altered); re-export")
    backends = load_backends(vdir / BACKEND)
    missing = sorted(set(manifest["sections"]) - set(backends))
    if missing:
        raise BundleError(f"{vdir / BACKEND}: missing section(s) {', '.join(missing)}")
    return Bundle(root, vdir, manifest, backends)


def prune(root: str | Path, keep: int = 3) -> list[int]:
    """Delete all but the newest `keep` versions (never the current one); returns the deleted."""
    root = Path(root)
    cur = current_version(root)
    dirs = _version_dirs(root)
    doomed = [v for v in sorted(dirs)[:-keep] if v != cur] if keep > 0 else []
    for v in doomed:
        with contextlib.suppress(OSError):
            shutil.rmtree(dirs[v])
    return doomed


def write_adapted_version(
    bundle: Bundle, backends: Mapping[str, SectionBackend], kind: AdaptationKind,
    record: dict[str, Any],
) -> Path:
    """A new version made on the device (`edge-agent calibrate` / `enrol`): the same model,
    `backends`, the old manifest plus this change's `record` under `kind`, and `parent_version`
    (what `rollback` returns to). `adaptations` keeps the records of the whole chain."""
    base = {k: v for k, v in bundle.manifest.items() if k not in _DERIVED}
    record = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **record}
    base["adaptations"] = [*bundle.manifest.get("adaptations", []),
                           {"kind": kind, "version_from": bundle.version, **record}]
    base[kind] = record
    base["parent_version"] = bundle.version
    return write_bundle(bundle.root, bundle.model_path, backends, base)


def rollback(root: str | Path) -> tuple[int, int]:
    """Make the version the current one came from current again; (old, new) numbers.

    The parent is `parent_version` (a calibration or enrolment), else the next lower version
    (an export). The target is verified before it is activated: never roll back into a broken
    version.
    """
    cur = load_bundle(root, verify=False)
    parent = cur.manifest.get("parent_version")
    older = [v for v in list_versions(root) if v < cur.version]
    if isinstance(parent, int) and parent in list_versions(root):
        target = parent
    elif older:
        target = older[-1]
    else:
        raise BundleError(
            f"{root}: nothing to roll back to (version {cur.version} is the oldest kept)"
        )
    load_bundle(root, verify=True, version=target)
    before = current_version(root)
    set_current(root, target)
    return before, target
