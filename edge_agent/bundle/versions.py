"""edge_agent.bundle.versions: moved from edge_agent.bundle.manifest."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from edge_agent.bundle.layout import (
    CURRENT,
    VERSIONS,
    _version_dirs,
    current_version,
    list_versions,
)
from edge_agent.bundle.load import Bundle, load_bundle, save_backends
from edge_agent.bundle.manifest import (
    BACKEND,
    FORMAT,
    FORMAT_VERSION,
    MANIFEST,
    MANIFEST_SCHEMA,
    check_components,
    check_schema,
    self_test_file,
    sha256_file,
    write_manifest_digest,
)
from edge_agent.errors import BundleError
from edge_agent.jsonsafe import NonFiniteError, compact_number_lists, dumps
from edge_agent.scoring.backend import (
    SectionBackend,
)

if TYPE_CHECKING:  # signing imports this module; at run time it is imported where it is used
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from edge_agent.bundle.signing import TrustedKey


AdaptationKind = Literal["calibration", "enrolment", "tuning", "feedback"]


# Fields write_bundle sets itself, and per-version records that must not leak into the next.
_DERIVED = {
    "format",
    "format_version",
    "version",
    "created",
    "sections",
    "files",
    "calibration",
    "enrolment",
    "tuning",
    "feedback",
    "parent_version",
}


def set_current(root: str | Path, version: int) -> None:
    """Point `current` at an existing version atomically (activation and rollback)."""
    root = Path(root)
    if version not in _version_dirs(root):
        raise BundleError(f"{root}: no version {version} (has {list_versions(root)})")
    tmp = root / f".{CURRENT}.tmp-{os.getpid()}"
    tmp.write_text(f"{version}\n")
    Path(tmp).replace(root / CURRENT)


def write_bundle(
    root: str | Path,
    models: Mapping[str, bytes | Path],
    backends: Mapping[str, SectionBackend],
    manifest: Mapping[str, Any],
    activate: bool = True,
    finish: Callable[[Path], object] | None = None,
    extra: Mapping[str, bytes] | None = None,
) -> Path:
    """Write a new version (previous number + 1) of the bundle at `root`; returns its directory.

    `models` maps each model file name the manifest's components refer to onto its bytes or
    a file to copy. `manifest` holds the descriptive fields (frontend, components, backend,
    quantization...); format, version, creation time, sections and file hashes are added here.
    `finish(directory)` runs on the complete version before it is renamed into place (a
    signature, edge_agent.bundle.signing), so the version appears with it, never without.
    `extra`: other files (name -> bytes) listed and checksummed like the models: the
    self-test file the manifest's `self_test` names (without it, the entry is left out).
    Earlier versions stay.
    """
    root = Path(root)
    check_components(manifest.get("components"), set(models), "manifest")
    root.mkdir(parents=True, exist_ok=True)
    (root / VERSIONS).mkdir(exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=root / VERSIONS))
    try:
        for name, model in models.items():
            if isinstance(model, Path):
                shutil.copyfile(model, tmp / name)
            else:
                (tmp / name).write_bytes(model)
        for name, data in (extra or {}).items():
            (tmp / name).write_bytes(data)
        save_backends(tmp / BACKEND, backends)
        versions = list_versions(root)
        version = (versions[-1] + 1) if versions else 1
        files = {name: sha256_file(tmp / name) for name in [*models, *(extra or {})]}
        files[BACKEND] = sha256_file(tmp / BACKEND)
        # a self-test entry only with its file: a version written from another's manifest
        # without passing the file on has no self-test (rather than one that cannot load)
        test = self_test_file(manifest)
        kept = {
            k: v
            for k, v in manifest.items()
            if k != "self_test" or (test is not None and test in (extra or {}))
        }
        full = {
            **kept,
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "version": version,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "sections": sorted(backends),
            "files": files,
        }
        check_schema(full, MANIFEST_SCHEMA, f"{root}: {MANIFEST}")  # never write what load refuses
        try:
            text = compact_number_lists(dumps(full, MANIFEST, indent=2, sort_keys=True))
        except NonFiniteError as exc:
            raise BundleError(f"{root}: {exc}") from None
        (tmp / MANIFEST).write_text(text + "\n")
        write_manifest_digest(tmp)
        if finish is not None:
            finish(tmp)
        final = root / VERSIONS / str(version)
        Path(tmp).rename(final)  # fails (not overwrites) if a concurrent writer took the number
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if activate:
        set_current(root, version)
    return final


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
    bundle: Bundle,
    backends: Mapping[str, SectionBackend],
    kind: AdaptationKind,
    record: dict[str, Any],
    seal_key: Ed25519PrivateKey | None = None,
    profiles: Mapping[str, Mapping[str, Any]] | None = None,
) -> Path:
    """A new version made on the device (`edge-agent calibrate` / `enrol` / `tune` /
    `feedback`): the same
    models, `backends`, the old manifest plus this change's `record` under `kind`, and
    `parent_version` (what `rollback` returns to). `adaptations` keeps the records of the whole
    chain. A signed parent's signature travels along (`signing.carry_origin`) and, with the
    device's `seal_key` (`signing.device_signing_key`), the new version is sealed by this
    device: with trusted keys it loads only with both (edge_agent.bundle.signing).
    `profiles`: section -> audio profile (`AudioProfile.to_dict`) replacing the parent's for
    those sections (the clips of a calibration or enrolment are the section's audio now)."""
    from edge_agent.bundle.signing import carry_origin, seal_version

    base = {k: v for k, v in bundle.manifest.items() if k not in _DERIVED}
    record = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **record}
    base["adaptations"] = [
        *bundle.manifest.get("adaptations", []),
        {"kind": kind, "version_from": bundle.version, **record},
    ]
    base[kind] = record
    if profiles:
        base["profiles"] = {**bundle.manifest.get("profiles", {}), **profiles}
    # the parent's folder number: a version installed by the fleet keeps its exported manifest
    # (signed) in a folder whose number may differ (edge_agent.fleet.install)
    is_dir = bundle.path.parent.name == VERSIONS and bundle.path.name.isdigit()
    base["parent_version"] = int(bundle.path.name) if is_dir else bundle.version
    # the model bytes the load checked, when it kept them (not the files, which may have
    # changed since), and the manifest as loaded for the carried origin
    models: dict[str, bytes | Path] = {
        name: bundle.model_content.get(name, bundle.path / name) for name in bundle.model_files
    }
    # the self-test travels unchanged: its expected embeddings do not depend on the backend
    # (edge_agent.runtime.selftest), and a signed origin vouches for it as for the models
    reference = self_test_file(bundle.manifest)
    extra = (
        {}
        if reference is None
        else {
            reference: bundle.self_test_content
            if bundle.self_test_content is not None
            else (bundle.path / reference).read_bytes()
        }
    )

    def finish(vdir: Path) -> None:
        origin = carry_origin(bundle.path, vdir, bundle.manifest_bytes or None)
        if origin is not None and seal_key is not None:
            seal_version(vdir, seal_key)

    return write_bundle(bundle.root, models, backends, base, finish=finish, extra=extra)


def rollback_target(root: str | Path) -> int:
    """The version `rollback` goes back to from the current one: its `parent_version` (a
    calibration or enrolment) when kept, else the next lower version (an export). Asked
    separately so a caller can check it (e.g. with trusted keys) before it becomes current."""
    before = current_version(root)  # the folder number (a fleet install's may differ from
    # its manifest's version, edge_agent.fleet.install)
    parent = load_bundle(root, verify=False).manifest.get("parent_version")
    versions = list_versions(root)
    older = [v for v in versions if v < before]
    if (
        isinstance(parent, int)
        and not isinstance(parent, bool)
        and parent in versions
        and parent != before
    ):
        return parent
    if older:
        return older[-1]
    raise BundleError(f"{root}: nothing to roll back to (version {before} is the oldest kept)")


def rollback(root: str | Path, trusted: Sequence[TrustedKey] = ()) -> tuple[int, int]:
    """Make the version the current one came from current again (`rollback_target`); (old,
    new) numbers. The target is verified first (with `trusted` keys: also its signature):
    never roll back into a version that would not load."""
    before = current_version(root)
    target = rollback_target(root)
    load_bundle(root, verify=True, version=target, trusted=trusted)
    set_current(root, target)
    return before, target
