"""edge_agent.bundle.load: moved from edge_agent.bundle.manifest."""

from __future__ import annotations

import hashlib
import io
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edge_agent.errors import BundleError, FieldError
from edge_agent.scoring.backend import (
    BackendConfig,
    BackendError,
    SectionBackend,
    view_weights,
)
from edge_agent.scoring.frontend import FrontendSpec
from edge_agent.scoring.profile import AudioProfile

if TYPE_CHECKING:  # signing imports this module; at run time it is imported where it is used
    from edge_agent.bundle.signing import TrustedKey
from edge_agent.bundle.layout import resolve
from edge_agent.bundle.manifest import (
    BACKEND,
    MANIFEST_DIGEST,
    Component,
    _warn_unchecked_manifest,
    check_version,
    model_components,
    self_test_file,
)
from edge_agent.bundle.signing import ORIGIN, _releases

_SEP = "::"  # npz key = "<section>::<field>"; section ids never contain "::"


@dataclass(frozen=True)
class Bundle:
    """A loaded (and by default verified) bundle version."""

    root: Path  # the BUNDLE directory (or the version directory when loaded directly)
    path: Path  # the version directory holding the files
    manifest: dict[str, Any]
    backends: dict[str, SectionBackend]
    signed_by: str | None = None  # key id the version verified with (None: no keys given)
    # manifest.json as read (the bytes the digest, the signature and `manifest` come from)
    manifest_bytes: bytes = field(default=b"", repr=False, compare=False)
    # model file name -> the bytes whose sha256 was checked (empty for `verify=False`: the
    # scorer then reads the file itself); the interpreter runs these, not the file
    model_content: Mapping[str, bytes] = field(default_factory=dict, repr=False, compare=False)
    # the self-test file's bytes as checked (None: no self-test, or loaded with verify=False)
    self_test_content: bytes | None = field(default=None, repr=False, compare=False)
    # section -> its audio profile (manifest `profiles`, checked at load); absent in versions
    # exported before profiles existed
    profiles: Mapping[str, AudioProfile] = field(default_factory=dict, repr=False, compare=False)

    @property
    def manifest_sha256(self) -> str:
        """sha256 of manifest.json as loaded (what a signature and `manifest.sha256` cover;
        `load_bundle` always keeps the bytes)."""
        return hashlib.sha256(self.manifest_bytes).hexdigest()

    @property
    def version(self) -> int:
        return int(self.manifest["version"])

    @property
    def components(self) -> list[Component]:
        """What embeds a window, in the backend's component order (see module docstring)."""
        return list(self.manifest["components"])

    @property
    def model_files(self) -> list[str]:
        """File names of the TFLite models, in component order."""
        return [c["file"] for c in model_components(self.components)]

    @property
    def model_paths(self) -> list[Path]:
        return [self.path / f for f in self.model_files]

    @property
    def model_path(self) -> Path:
        """The first model (the only one of a single-model bundle)."""
        return self.model_paths[0]

    @property
    def model_version(self) -> str:
        """Short id for messages: `v<version>-<8 hex>`, the hex a digest of every file the
        manifest lists (models AND backend.npz), so two versions that score differently
        never share an id: a calibrated v3 of v1's model differs from v1 in its thresholds,
        and its id says so."""
        files = self.manifest["files"]
        digest = hashlib.sha256(
            "".join(f"{name} {files[name]}\n" for name in sorted(files)).encode()
        ).hexdigest()
        return f"v{self.version}-{digest[:8]}"

    @property
    def spec(self) -> FrontendSpec:
        return FrontendSpec.from_dict(self.manifest["frontend"])

    @property
    def weights(self) -> list[float]:
        """Fixed fusion weights of the components (`backend.view_weights` of their kinds):
        what a `weighting="fixed"` refit uses; a `"pseudo"` one decides per section."""
        return view_weights(self.kinds)

    @property
    def kinds(self) -> list[str]:
        """Each component's kind ("model", "bands", "rhythm", "dynamics"), in component order."""
        return [str(c["kind"]) for c in self.components]

    @property
    def backend_config(self) -> BackendConfig:
        """How this bundle's sections were fitted (calibrate and enrol refit the same way)."""
        return BackendConfig.from_dict(self.manifest["backend"])

    @property
    def input_names(self) -> list[str]:
        """Feature names of the first model, in the order its embedder receives them."""
        return list(model_components(self.components)[0]["input_order"])

    @property
    def input_shapes(self) -> dict[str, list[int]]:
        return {e["name"]: list(e["shape"]) for e in model_components(self.components)[0]["inputs"]}

    @property
    def sections(self) -> list[str]:
        return list(self.manifest["sections"])

    def profile(self, section: str) -> AudioProfile | None:
        """The section's audio profile (edge_agent.scoring.profile), None when the bundle has
        none for it (an older export)."""
        return self.profiles.get(section)

    def backend(self, section: str) -> SectionBackend:
        try:
            return self.backends[section]
        except KeyError:
            raise BundleError(
                f"{self.path}: no section {section!r} in the bundle "
                f"(has {', '.join(self.sections)})"
            ) from None


def save_backends(path: Path, backends: Mapping[str, SectionBackend]) -> None:
    """Write `backends` to `path`; refuses what `load_backends` would refuse (a NaN or infinite
    threshold, normaliser or reference), so export, calibrate and enrol fail at write time with
    the section named instead of leaving a version that cannot load."""
    arrays: dict[str, Any] = {}
    for section, b in backends.items():
        if _SEP in section:
            raise BundleError(f"section {section!r}: names must not contain {_SEP!r}")
        saved = b.to_dict()
        try:
            SectionBackend.from_dict(saved)  # the checks of a load, on what is about to be saved
        except BackendError as exc:
            raise BundleError(f"{path}: section {section}: {exc}") from None
        for key, value in saved.items():
            arrays[f"{section}{_SEP}{key}"] = value
    with Path(path).open("wb") as f:
        np.savez(f, **arrays)


def load_backends(path: Path, content: bytes | None = None) -> dict[str, SectionBackend]:
    """The sections of backend file `path`; from `content` (its bytes, already read and
    hashed by the caller) when given, so what is parsed is what was checked."""
    try:
        with np.load(path if content is None else io.BytesIO(content), allow_pickle=False) as z:
            raw: dict[str, dict[str, Any]] = {}
            for key in z.files:
                section, _, field = key.partition(_SEP)
                raw.setdefault(section, {})[field] = z[key]
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise BundleError(f"{path}: not a readable backend file ({exc})") from None
    out: dict[str, SectionBackend] = {}
    for section, d in raw.items():
        try:
            out[section] = SectionBackend.from_dict(d)
        except BackendError as exc:
            raise BundleError(f"{path}: section {section}: {exc}") from None
    return out


def load_bundle(
    path: str | Path,
    verify: bool = True,
    version: int | None = None,
    trusted: Sequence[TrustedKey] = (),
) -> Bundle:
    """Load the current (or given) version; with `verify`, check every file's sha256, the
    manifest's own included (`manifest.sha256`, when the version has one).

    With `trusted` keys (edge_agent.bundle.signing), the version must also be signed by one of them,
    or be a local adaptation of a version that is (same models and frontend): else a one-line
    BundleError. Keys imply `verify`: a signature over files nobody hashed proves nothing.
    A verifying load reads each file once and uses the bytes it checked (module docstring):
    the Bundle keeps the model bytes (`model_content`) for the scorer."""
    root, vdir = resolve(path, version)
    verify = verify or bool(trusted)
    checked = check_version(vdir, hashes=verify)  # every file read once: checked = used
    if verify and not trusted and not (vdir / MANIFEST_DIGEST).exists():
        _warn_unchecked_manifest(vdir)
    manifest = checked.manifest
    signed_by = None
    if trusted:
        from edge_agent.bundle.signing import check_signature

        signed_by = check_signature(
            vdir, manifest, trusted, manifest_sha256=checked.manifest_sha256
        )
    backends = load_backends(vdir / BACKEND, checked.contents.get(BACKEND))
    missing = sorted(set(manifest["sections"]) - set(backends))
    if missing:
        raise BundleError(f"{vdir / BACKEND}: missing section(s) {', '.join(missing)}")
    n = len(manifest["components"])
    dims = [c.get("dim") for c in manifest["components"]]
    for section, b in backends.items():
        if len(b.components) != n:
            raise BundleError(
                f"{vdir / BACKEND}: section {section} has {len(b.components)} components, "
                f"the manifest lists {n}"
            )
        for i, (got, want) in enumerate(zip(b.dims, dims, strict=True)):
            if want is not None and got != want:
                raise BundleError(
                    f"{vdir / BACKEND}: section {section} c{i}.references: {got}-d, the "
                    f"manifest's component {i} gives {want}-d embeddings"
                )
    model_files = [c["file"] for c in manifest["components"] if c["kind"] == "model"]
    models = {f: checked.contents[f] for f in model_files if f in checked.contents}
    reference = self_test_file(manifest)
    return Bundle(
        root,
        vdir,
        manifest,
        backends,
        signed_by,
        checked.manifest_bytes,
        models,
        checked.contents.get(reference) if reference is not None else None,
        load_profiles(manifest, vdir / "manifest.json"),
    )


def load_profiles(manifest: Mapping[str, Any], where: Path) -> dict[str, AudioProfile]:
    """The manifest's `profiles`, each checked (a one-line BundleError naming the field). The
    profile of a section the bundle no longer has (a version made by removing one) is not
    loaded: nothing would compare with it."""
    raw = manifest.get("profiles") or {}
    spec = FrontendSpec.from_dict(manifest["frontend"])
    out = {}
    for section, data in raw.items():
        if section not in manifest["sections"]:
            continue
        try:
            out[section] = AudioProfile.from_dict(data, spec)
        except FieldError as exc:
            field_name = f"profiles.{section}" + (f".{exc.field}" if exc.field else "")
            raise BundleError(f"{where}: {exc.worded(field_name)}") from None
    return out


def provenance(bundle: Bundle, trusted: Sequence[TrustedKey]) -> str:
    """One line for the log at every load: what vouches for the loaded version, and for a
    version adapted on the device what changed it last (kind, from which version, the
    threshold change its record holds), so a moved threshold is never silent."""
    where = f"bundle {bundle.root} version {bundle.path.name} ({bundle.model_version})"
    if not _releases(trusted):
        return (
            f"{where}: signatures not checked (no trusted_keys): whoever can write the "
            "bundle folder decides what this agent runs"
        )
    adaptations = bundle.manifest.get("adaptations") or []
    if not (bundle.path / ORIGIN).exists() or not adaptations:
        return f"{where}: signed by key {bundle.signed_by}"
    last = adaptations[-1] if isinstance(adaptations[-1], dict) else {}
    moved = ""
    old, new = last.get("old_threshold"), last.get("new_threshold", last.get("threshold"))
    if isinstance(new, int | float) and not isinstance(new, bool):
        moved = (
            f", section {last.get('section')} threshold "
            + (f"{old:.4g} -> " if isinstance(old, int | float) else "")
            + f"{new:.4g}"
        )
    return (
        f"{where}: adapted on this device ({len(adaptations)} change(s); last: "
        f"{last.get('kind')} from version {last.get('version_from')}{moved}), sealed by "
        f"this device, models signed by key {bundle.signed_by}"
    )
