"""The model bundle: what `model-build export` writes and the device loads (no TensorFlow).

Layout (format version 2)::

    BUNDLE/
      current                 text file: the active version number ("3")
      versions/1/             an older version, kept for rollback
      versions/3/
        manifest.json         format, version, frontend, components, backend config, sections,
                              sha256 of each file
        manifest.sha256       sha256 of manifest.json itself ("<hex>  manifest.json")
        model_0.tflite        features -> embedding, one file per model of the ensemble
        model_1.tflite        ...
        backend.npz           per section: each component's references, densities and
                              normaliser, the fusion rule and the threshold
        signature.json        optional: Ed25519 signatures of the manifest (edge_agent.signing)
        signed_origin.json    optional, a version made on the device: its signed origin

The manifest's `components` list says what embeds a window, in the backend's component
order: `{"kind": "model", "file": "model_0.tflite", "inputs": [...], "input_order": [...],
"dim": 256}` for a TFLite model, `{"kind": "bands", "bands": 64, "dim": 106}` and
`{"kind": "rhythm", "ranges_hz": [[50, 500], ...], "max_lag_s": 4.0, "dim": 500}` for the
classical band statistics and rhythm (edge_agent.classical). `backend` holds the
`BackendConfig` that calibrate and enrol refit with. Format 1 bundles (one `model.tflite`,
the paper's backend) are still read: they load as one model component.

Why versions: `edge-agent calibrate` refits the backend on site and must be able to roll back.
A version directory is written complete under `versions/.tmp-*` and renamed into place (an
atomic rename on one file system), then `current` is replaced by `os.replace`, so a reader sees
either the old or the new version, never half of one. Old versions are never modified. A
version made on the device (`write_adapted_version`) records its `parent_version`, which
`rollback` makes current again.

Every file's sha256 is in the manifest, and the manifest's own in `manifest.sha256` beside it
(the `sha256sum -c` format); `load_bundle(verify=True)` checks them all, so a truncated copy or
an edited file, the manifest included, fails with a one-line BundleError instead of a runtime
traceback. A version without `manifest.sha256` (written before it existed) still loads.
Checksums catch corruption, not someone who rewrites both; `load_bundle(trusted=keys)` also
requires a trusted signature (edge_agent.signing).

Check what you use, use what you checked: a verifying load reads manifest.json, every model
file and backend.npz ONCE into memory (`read_hashed`: the bytes and their sha256 from one
read); the digest, the signature and the parsed manifest all come from the same manifest
bytes, backend.npz is parsed from the bytes that were hashed, and the scorer hands the
interpreter the model bytes that were hashed (`Bundle.model_content`), never the path. So a
file swapped on disk while a version loads (someone with write access to the folder but no
private key, watching it) changes nothing the device runs: the check and the use see the same
bytes. The models are a few MB; the interpreter would map them anyway.

The manifest is also checked against a typed schema (`MANIFEST_SCHEMA`: each field's JSON type
and range), and neither it nor backend.npz may hold a NaN or infinite number: a bundle with a
NaN threshold would load, score and never alarm.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
import shutil
import tempfile
import time
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

import numpy as np

from .backend import PAPER_BACKEND, BackendConfig, BackendError, SectionBackend, view_weights
from .classical import classical_feature
from .errors import BundleError
from .frontend import FrontendSpec
from .jsonsafe import NonFiniteError, dumps, loads

if TYPE_CHECKING:  # signing imports this module; at run time it is imported where it is used
    from .signing import TrustedKey

FORMAT = "asd-bundle"
FORMAT_VERSION = 2
READABLE_FORMATS = (1, 2)
MANIFEST = "manifest.json"
MANIFEST_DIGEST = "manifest.sha256"  # the manifest's own sha256 (it cannot hold its own hash)
MODEL = "model.tflite"  # format 1's single model
BACKEND = "backend.npz"
COMPONENT_KINDS = ("model", "bands", "rhythm")
CURRENT = "current"
VERSIONS = "versions"
QuantizeMode = Literal["float32", "float16", "dynamic", "int8"]
QUANTIZE_MODES: tuple[QuantizeMode, ...] = get_args(QuantizeMode)
AdaptationKind = Literal["calibration", "enrolment", "tuning"]
_SEP = "::"  # npz key = "<section>::<field>"; section ids never contain "::"
# Fields write_bundle sets itself, and per-version records that must not leak into the next.
_DERIVED = {"format", "format_version", "version", "created", "sections", "files",
            "calibration", "enrolment", "tuning", "parent_version"}


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

    @property
    def manifest_sha256(self) -> str:
        """sha256 of manifest.json as loaded (what a signature and `manifest.sha256` cover;
        `load_bundle` always keeps the bytes)."""
        return hashlib.sha256(self.manifest_bytes).hexdigest()

    @property
    def version(self) -> int:
        return int(self.manifest["version"])

    @property
    def components(self) -> list[dict[str, Any]]:
        """What embeds a window, in the backend's component order (see module docstring)."""
        return list(self.manifest["components"])

    @property
    def model_files(self) -> list[str]:
        """File names of the TFLite models, in component order."""
        return [c["file"] for c in self.components if c["kind"] == "model"]

    @property
    def model_paths(self) -> list[Path]:
        return [self.path / f for f in self.model_files]

    @property
    def model_path(self) -> Path:
        """The first model (the only one of a single-model bundle)."""
        return self.model_paths[0]

    @property
    def model_version(self) -> str:
        """Short id for messages: bundle version + a hash prefix of the model file(s)."""
        digest = hashlib.sha256(
            "".join(self.manifest["files"][f] for f in self.model_files).encode()
        ).hexdigest() if len(self.model_files) > 1 else self.manifest["files"][self.model_files[0]]
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
        """Each component's kind ("model", "bands", "rhythm"), in component order."""
        return [str(c["kind"]) for c in self.components]

    @property
    def backend_config(self) -> BackendConfig:
        """How this bundle's sections were fitted (calibrate and enrol refit the same way)."""
        return BackendConfig.from_dict(self.manifest["backend"])

    @property
    def input_names(self) -> list[str]:
        """Feature names of the first model, in the order its embedder receives them."""
        return list(self.components[0]["input_order"])

    @property
    def input_shapes(self) -> dict[str, list[int]]:
        return {e["name"]: list(e["shape"]) for e in self.components[0]["inputs"]}

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


def read_hashed(path: Path) -> tuple[bytes, str]:
    """The bytes of `path` and their sha256 hex digest, from ONE read. A load checks and uses
    the same bytes: hashing a file and then opening it again by path lets whoever can write
    into the folder swap it in between (OSError as raised: callers name the file)."""
    data = path.read_bytes()
    return data, hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    """sha256 of a file read in blocks: for files that are hashed, not used afterwards."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


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
    with open(path, "wb") as f:
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
    except (ValueError, UnicodeDecodeError):
        raise BundleError(f"{root / CURRENT}: expected a version number") from None
    except OSError as exc:  # `current` is a directory, or the root a file
        raise BundleError(f"{root / CURRENT}: unreadable ({exc.strerror or exc})") from None


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
    models: Mapping[str, bytes | Path],
    backends: Mapping[str, SectionBackend],
    manifest: Mapping[str, Any],
    activate: bool = True,
    finish: Callable[[Path], object] | None = None,
) -> Path:
    """Write a new version (previous number + 1) of the bundle at `root`; returns its directory.

    `models` maps each model file name the manifest's components refer to onto its bytes or
    a file to copy. `manifest` holds the descriptive fields (frontend, components, backend,
    quantization...); format, version, creation time, sections and file hashes are added here.
    `finish(directory)` runs on the complete version before it is renamed into place (a
    signature, edge_agent.signing), so the version appears with it, never without.
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
        save_backends(tmp / BACKEND, backends)
        versions = list_versions(root)
        version = (versions[-1] + 1) if versions else 1
        files = {name: sha256_file(tmp / name) for name in models}
        files[BACKEND] = sha256_file(tmp / BACKEND)
        full = {
            **manifest,
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "version": version,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "sections": sorted(backends),
            "files": files,
        }
        check_schema(full, MANIFEST_SCHEMA, f"{root}: {MANIFEST}")  # never write what load refuses
        try:
            text = dumps(full, MANIFEST, indent=2, sort_keys=True)
        except NonFiniteError as exc:
            raise BundleError(f"{root}: {exc}") from None
        (tmp / MANIFEST).write_text(text + "\n")
        write_manifest_digest(tmp)
        if finish is not None:
            finish(tmp)
        final = root / VERSIONS / str(version)
        os.rename(tmp, final)  # fails (not overwrites) if a concurrent writer took the number
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if activate:
        set_current(root, version)
    return final


# ---------------------------------------------------------------- manifest schema
#
# Why a schema: the manifest is JSON that a person may edit (or a tool may write wrongly), and a
# field of the wrong type used to surface far from its cause: `"version": "3"` as a TypeError in
# `model_version`, `"n_fft": "1024"` as a numpy traceback in the first window. Every field the
# agent uses is checked here at load, with an error naming the field and the type expected.


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def _is_file_name(x: Any) -> bool:
    return isinstance(x, str) and bool(x) and "/" not in x and "\\" not in x and x not in (
        ".", "..")


@dataclass(frozen=True)
class FieldType:
    """What a manifest field must be: `expected` (the words of the error), `test`, and for an
    object its own `fields`, for a list of objects the schema of each item (`items`; None:
    not checked here, e.g. a component of unknown kind, which `check_components` reports)."""

    expected: str
    test: Callable[[Any], bool]
    fields: Mapping[str, tuple[FieldType, bool]] | None = None
    items: Callable[[dict[str, Any]], Mapping[str, tuple[FieldType, bool]] | None] | None = None


Schema = Mapping[str, tuple[FieldType, bool]]
"""field name -> (type, required). Fields not named are allowed (later minor additions)."""

STR = FieldType("a string", lambda x: isinstance(x, str))
BOOL = FieldType("true or false", lambda x: isinstance(x, bool))
INT = FieldType("an integer", _is_int)
POS_INT = FieldType("an integer >= 1", lambda x: _is_int(x) and x >= 1)
OPT_POS_INT = FieldType("an integer >= 1 or null", lambda x: x is None or (_is_int(x) and x >= 1))
NUMBER = FieldType("a finite number", _is_number)
POS_NUMBER = FieldType("a finite number > 0", lambda x: _is_number(x) and x > 0)
OBJECT = FieldType("an object", lambda x: isinstance(x, dict))
LIST = FieldType("a list", lambda x: isinstance(x, list))
FILE_NAME = FieldType("a file name (no directories)", _is_file_name)
STR_LIST = FieldType("a list of strings",
                     lambda x: isinstance(x, list) and all(isinstance(v, str) for v in x))
INT_LIST = FieldType("a list of integers", lambda x: isinstance(x, list) and all(map(_is_int, x)))
HZ_RANGES = FieldType(
    "a non-empty list of [low, high] number pairs",
    lambda x: isinstance(x, list) and bool(x) and all(
        isinstance(r, list) and len(r) == 2 and all(map(_is_number, r)) for r in x),
)
DIGESTS = FieldType(
    "an object of file name -> sha256 hex digest",
    lambda x: isinstance(x, dict) and all(
        _is_file_name(k) and _is_sha256(v) for k, v in x.items()),
)


def _objects(expected: str, schema: Callable[[dict[str, Any]], Schema | None],
             non_empty: bool = False) -> FieldType:
    return FieldType(
        expected,
        lambda x: isinstance(x, list) and (bool(x) or not non_empty) and all(
            isinstance(v, dict) for v in x),
        items=schema,
    )


FRONTEND_SCHEMA: Schema = {
    "sample_rate": (POS_INT, False), "clip_seconds": (POS_NUMBER, False),
    "n_fft": (POS_INT, False), "hop": (POS_INT, False), "spectrum_bins": (POS_INT, False),
    "temporal_norm": (BOOL, False),
}
"""edge_agent.frontend.FrontendSpec's fields (missing ones take the dataclass defaults)."""
BACKEND_SCHEMA: Schema = {
    "references": (STR, False), "n_clusters": (INT, False), "max_references": (INT, False),
    "density_k": (INT, False), "normalise": (BOOL, False), "fusion": (STR, False),
    "percentile": (NUMBER, False), "folds": (INT, False), "seed": (INT, False),
    "variant": (STR, False), "weighting": (STR, False), "anchor": (NUMBER, False),
    "ridge": (NUMBER, False),
    "pseudo_count": (INT, False),
}
"""edge_agent.backend.BackendConfig's fields (ranges and choices: its own checks)."""
INPUT_SCHEMA: Schema = {
    "name": (STR, True), "shape": (INT_LIST, True), "index": (INT, False), "tensor": (STR, False),
}
COMPONENT_SCHEMAS: Mapping[str, Schema] = {
    "model": {"kind": (STR, True), "file": (FILE_NAME, True),
              "inputs": (_objects("a list of objects", lambda _: INPUT_SCHEMA), True),
              "input_order": (STR_LIST, True), "dim": (OPT_POS_INT, False)},
    "bands": {"kind": (STR, True), "bands": (POS_INT, True), "dim": (OPT_POS_INT, False)},
    "rhythm": {"kind": (STR, True), "ranges_hz": (HZ_RANGES, True),
               "max_lag_s": (POS_NUMBER, True), "dim": (OPT_POS_INT, False)},
}
MANIFEST_SCHEMA: Schema = {
    "format": (STR, True),
    "format_version": (POS_INT, True),
    "version": (POS_INT, True),
    "created": (STR, False),
    "frontend": (FieldType("an object", OBJECT.test, fields=FRONTEND_SCHEMA), True),
    "components": (_objects("a non-empty list of objects",
                            lambda c: COMPONENT_SCHEMAS.get(str(c.get("kind"))), non_empty=True),
                   True),
    "backend": (FieldType("an object", OBJECT.test, fields=BACKEND_SCHEMA), True),
    "sections": (STR_LIST, True),
    "files": (DIGESTS, True),
    "class_names": (STR_LIST, False),
    "quantization": (STR, False),
    "runtime_at_export": (STR, False),
    "training": (OBJECT, False),
    "evaluation": (OBJECT, False),
    "parent_version": (POS_INT, False),
    "adaptations": (_objects("a list of objects", lambda _: None), False),
    "calibration": (OBJECT, False),
    "enrolment": (OBJECT, False),
    "tuning": (OBJECT, False),
}
"""A (format-2, or upgraded format-1) manifest; see docs/bundle.md for what each field means."""


def _json_kind(x: Any) -> str:
    if x is None:
        return "null"
    if isinstance(x, bool):
        return "true or false"
    if isinstance(x, int | float):
        return "a number"
    if isinstance(x, str):
        return "a string"
    return "a list" if isinstance(x, list) else "an object"


def check_schema(data: Mapping[str, Any], schema: Schema, where: str, prefix: str = "") -> None:
    """One-line BundleError naming the first field of `data` that is missing or of the wrong
    type (`components[0].inputs[1].shape: expected a list of integers, got a string "80000"`)."""
    for name, (ftype, required) in schema.items():
        key = f"{prefix}{name}"
        if name not in data:
            if required:
                raise BundleError(f"{where}: missing field {key!r}")
            continue
        value = data[name]
        if not ftype.test(value):
            shown = json.dumps(value)
            shown = shown if len(shown) <= 40 else shown[:37] + "..."
            raise BundleError(
                f"{where}: {key}: expected {ftype.expected}, got {_json_kind(value)} {shown}"
            )
        if ftype.fields is not None:
            check_schema(value, ftype.fields, where, f"{key}.")
        if ftype.items is not None:
            for i, item in enumerate(value):
                sub = ftype.items(item)
                if sub is not None:
                    check_schema(item, sub, where, f"{key}[{i}].")


def write_manifest_digest(vdir: Path) -> Path:
    """Write `manifest.sha256` for the version directory's manifest.json (`sha256sum -c`
    format). The manifest holds every other file's hash but cannot hold its own, so without
    this an edited manifest (a threshold section renamed, a frontend parameter changed) would
    verify. `write_bundle` calls it for every version it writes (export, calibrate, enrol)."""
    out = vdir / MANIFEST_DIGEST
    out.write_text(f"{sha256_file(vdir / MANIFEST)}  {MANIFEST}\n")
    return out


def _is_sha256(x: Any) -> bool:
    return isinstance(x, str) and len(x) == 64 and all(c in "0123456789abcdef" for c in x)


def check_manifest_digest(vdir: Path) -> bool:
    """Check manifest.json against `manifest.sha256`; False when the version has none (written
    before the file existed: still accepted), a one-line BundleError when it does not match."""
    expected = _expected_manifest_digest(vdir)
    if expected is None:
        return False
    if (vdir / MANIFEST).is_file():
        _match_manifest_digest(vdir, sha256_file(vdir / MANIFEST), expected)
    return True


def _expected_manifest_digest(vdir: Path) -> str | None:
    """The digest `manifest.sha256` gives (None: the version has no such file)."""
    path = vdir / MANIFEST_DIGEST
    try:
        words = path.read_text().split()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise BundleError(f"{path}: unreadable ({exc})") from None
    if not words or not _is_sha256(words[0]) or words[1:] not in ([], [MANIFEST]):
        raise BundleError(f"{path}: expected '<sha256 hex>  {MANIFEST}'")
    return words[0]


def _match_manifest_digest(vdir: Path, digest: str, expected: str | None) -> None:
    if expected is not None and digest != expected:
        raise BundleError(
            f"{vdir / MANIFEST}: checksum mismatch with {MANIFEST_DIGEST} (file truncated or "
            "edited); re-export"
        )


def _read_manifest_file(vdir: Path) -> tuple[bytes, str]:
    """manifest.json's bytes and sha256 (one read), or a one-line BundleError."""
    path = vdir / MANIFEST
    try:
        return read_hashed(path)
    except FileNotFoundError:
        raise BundleError(f"{path}: missing") from None
    except OSError as exc:
        raise BundleError(f"{path}: unreadable ({exc.strerror or exc})") from None


def _parse_manifest_bytes(data: bytes, path: Path) -> dict[str, Any]:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BundleError(f"{path}: not valid JSON ({exc})") from None
    return parse_manifest(text, path)


def parse_manifest(text: str, path: Path) -> dict[str, Any]:
    """The manifest in `text` (read from `path`, named in errors), checked against the schema,
    a format-1 one upgraded; what a load reads (also a signed origin's, edge_agent.signing)."""
    try:
        data = loads(text)
    except (json.JSONDecodeError, NonFiniteError) as exc:
        raise BundleError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise BundleError(f"{path}: not an {FORMAT} manifest")
    if not _is_int(data.get("format_version")) or data["format_version"] not in READABLE_FORMATS:
        raise BundleError(
            f"{path}: unknown format_version {data.get('format_version')!r} "
            f"(this agent reads {', '.join(map(str, READABLE_FORMATS))}; update the agent or "
            "re-export)"
        )
    if data["format_version"] == 1:
        data = _upgrade_v1(data, path)
    check_schema(data, MANIFEST_SCHEMA, str(path))
    try:
        FrontendSpec.from_dict(data["frontend"])
    except (TypeError, ValueError) as exc:
        raise BundleError(f"{path}: frontend: {exc}") from None
    try:
        BackendConfig.from_dict(data["backend"])
    except BackendError as exc:
        raise BundleError(f"{path}: {exc}") from None
    check_components(data["components"], set(data["files"]) - {BACKEND}, str(path))
    manifest: dict[str, Any] = data
    return manifest


def _upgrade_v1(data: dict[str, Any], path: Path) -> dict[str, Any]:
    """A format-1 manifest as format 2: its one model is the only component, its backend the
    paper's (the descriptive format-1 `backend` record is kept as `backend_v1`)."""
    for key in ("inputs", "input_order"):
        if key not in data:
            raise BundleError(f"{path}: missing field {key!r}")
    out = dict(data)
    out["components"] = [{
        "kind": "model", "file": MODEL, "inputs": data["inputs"],
        "input_order": data["input_order"], "dim": data.get("embedding_dim"),
    }]
    out["backend_v1"] = data.get("backend")
    out["backend"] = PAPER_BACKEND.to_dict()
    return out


def check_components(components: Any, model_files: set[str], where: str) -> None:
    """One-line BundleError unless `components` is a non-empty list of known kinds whose model
    files are exactly `model_files`."""
    if not isinstance(components, list) or not components:
        raise BundleError(f"{where}: components: expected a non-empty list")
    named: list[str] = []
    for i, c in enumerate(components):
        kind = c.get("kind") if isinstance(c, dict) else None
        if kind not in COMPONENT_KINDS:
            raise BundleError(
                f"{where}: components[{i}].kind: expected one of {COMPONENT_KINDS}, got {kind!r}"
            )
        if kind == "model":
            for key in ("file", "inputs", "input_order"):
                if key not in c:
                    raise BundleError(f"{where}: components[{i}]: missing field {key!r}")
            named.append(str(c["file"]))
        else:
            try:
                classical_feature(c, FrontendSpec())
            except ValueError as exc:
                raise BundleError(f"{where}: components[{i}].{exc}") from None
    if not named:
        raise BundleError(f"{where}: components: expected at least one model")
    if sorted(named) != sorted(model_files):
        raise BundleError(
            f"{where}: components name model files {sorted(named)}, bundle has "
            f"{sorted(model_files)}"
        )


def resolve(path: str | Path, version: int | None = None) -> tuple[Path, Path]:
    """(root, version directory) for a bundle root or a version directory itself."""
    p = Path(path)
    if not p.exists():
        raise BundleError(f"{p}: bundle not found")
    if not p.is_dir():
        raise BundleError(
            f"{p}: is a file; expected a bundle directory (with {CURRENT} and {VERSIONS}/, or a "
            f"version directory with {MANIFEST})"
        )
    if (p / MANIFEST).exists() and not (p / CURRENT).exists():
        return p, p
    v = current_version(p) if version is None else version
    vdir = p / VERSIONS / str(v)
    if not vdir.is_dir():
        raise BundleError(f"{p}: version {v} missing (has {list_versions(p)})")
    return p, vdir


def check_files(vdir: Path, manifest: Mapping[str, Any], hashes: bool = True) -> dict[str, bytes]:
    """Every file the manifest lists is in `vdir` and, with `hashes`, has the sha256 the
    manifest gives; a one-line BundleError naming the first that does not. Returns, with
    `hashes`, each file's bytes as hashed (file name -> bytes: what a load then uses), else {}."""
    contents: dict[str, bytes] = {}
    for name in sorted(manifest["files"]):
        f = vdir / name
        if not f.is_file():
            raise BundleError(f"{f}: missing")
        if not hashes:
            continue
        try:
            data, digest = read_hashed(f)
        except OSError as exc:
            raise BundleError(f"{f}: unreadable ({exc.strerror or exc})") from None
        if digest != manifest["files"][name]:
            raise BundleError(f"{f}: checksum mismatch (file truncated or altered); re-export")
        contents[name] = data
    return contents


@dataclass(frozen=True)
class CheckedVersion:
    """A version directory's manifest and files as read ONCE and checked (`check_version`)."""

    manifest: dict[str, Any]  # parsed from `manifest_bytes`
    manifest_bytes: bytes
    manifest_sha256: str  # of `manifest_bytes`: what a signature is checked against
    contents: dict[str, bytes]  # each listed file's checked bytes ({} without hashes)


def check_version(vdir: Path, hashes: bool = True) -> CheckedVersion:
    """Read version directory `vdir`'s manifest once and check it: its own digest
    (`manifest.sha256`, with `hashes`), its schema, every listed file (present; with `hashes`,
    its sha256, from the bytes returned). The order of the checks, and so which error a
    version with several faults gets, is that of `load_bundle`."""
    expected = _expected_manifest_digest(vdir) if hashes else None
    data, digest = _read_manifest_file(vdir)
    _match_manifest_digest(vdir, digest, expected)
    manifest = _parse_manifest_bytes(data, vdir / MANIFEST)
    contents = check_files(vdir, manifest, hashes=hashes)
    return CheckedVersion(manifest, data, digest, contents)


def verified_manifest(vdir: Path) -> dict[str, Any]:
    """The manifest of version directory `vdir` after the checks of `load_bundle(verify=True)`:
    its own digest (`manifest.sha256`), its schema, every listed file's sha256."""
    return check_version(vdir).manifest


def load_bundle(
    path: str | Path, verify: bool = True, version: int | None = None,
    trusted: Sequence[TrustedKey] = (),
) -> Bundle:
    """Load the current (or given) version; with `verify`, check every file's sha256, the
    manifest's own included (`manifest.sha256`, when the version has one).

    With `trusted` keys (edge_agent.signing), the version must also be signed by one of them,
    or be a local adaptation of a version that is (same models and frontend): else a one-line
    BundleError. Keys imply `verify`: a signature over files nobody hashed proves nothing.
    A verifying load reads each file once and uses the bytes it checked (module docstring):
    the Bundle keeps the model bytes (`model_content`) for the scorer."""
    root, vdir = resolve(path, version)
    verify = verify or bool(trusted)
    checked = check_version(vdir, hashes=verify)  # every file read once: checked = used
    manifest = checked.manifest
    signed_by = None
    if trusted:
        from .signing import check_signature

        signed_by = check_signature(vdir, manifest, trusted,
                                    manifest_sha256=checked.manifest_sha256)
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
    return Bundle(root, vdir, manifest, backends, signed_by, checked.manifest_bytes, models)


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
    """A new version made on the device (`edge-agent calibrate` / `enrol` / `tune`): the same
    models, `backends`, the old manifest plus this change's `record` under `kind`, and
    `parent_version` (what `rollback` returns to). `adaptations` keeps the records of the whole
    chain. A signed parent's signature travels along (`signing.carry_origin`): the new version
    loads on a device with trusted keys as long as its models are the signed ones."""
    from .signing import carry_origin

    base = {k: v for k, v in bundle.manifest.items() if k not in _DERIVED}
    record = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **record}
    base["adaptations"] = [*bundle.manifest.get("adaptations", []),
                           {"kind": kind, "version_from": bundle.version, **record}]
    base[kind] = record
    # the parent's folder number: a version installed by the fleet keeps its exported manifest
    # (signed) in a folder whose number may differ (edge_agent.fleet.install)
    is_dir = bundle.path.parent.name == VERSIONS and bundle.path.name.isdigit()
    base["parent_version"] = int(bundle.path.name) if is_dir else bundle.version
    # the model bytes the load checked, when it kept them (not the files, which may have
    # changed since), and the manifest as loaded for the carried origin
    models: dict[str, bytes | Path] = {name: bundle.model_content.get(name, bundle.path / name)
                                       for name in bundle.model_files}
    return write_bundle(bundle.root, models, backends, base,
                        finish=lambda vdir: carry_origin(bundle.path, vdir,
                                                         bundle.manifest_bytes or None))


def rollback_target(root: str | Path) -> int:
    """The version `rollback` goes back to from the current one: its `parent_version` (a
    calibration or enrolment) when kept, else the next lower version (an export). Asked
    separately so a caller can check it (e.g. with trusted keys) before it becomes current."""
    before = current_version(root)  # the folder number (a fleet install's may differ from
    # its manifest's version, edge_agent.fleet.install)
    parent = load_bundle(root, verify=False).manifest.get("parent_version")
    versions = list_versions(root)
    older = [v for v in versions if v < before]
    if isinstance(parent, int) and not isinstance(parent, bool) and parent in versions \
            and parent != before:
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
