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
        self_test.npz         optional: a reference window and the embeddings the exporting
                              machine computed for it (edge_agent.runtime.selftest); the
                              manifest's `self_test` entry names it with its tolerance
        signature.json        optional: Ed25519 signatures of the manifest
        (edge_agent.bundle.signing) signed_origin.json    optional, a version made on the device:
        its signed origin

The manifest's `components` list says what embeds a window, in the backend's component
order: `{"kind": "model", "file": "model_0.tflite", "inputs": [...], "input_order": [...],
"dim": 256}` for a TFLite model, `{"kind": "bands", "bands": 64, "dim": 106}` and
`{"kind": "rhythm", "ranges_hz": [[50, 500], ...], "max_lag_s": 4.0, "dim": 500}` and
`{"kind": "dynamics", "bands": 32, "lags": [1, 2, 4, 8, 16, 32], "dim": 180}`,
`{"kind": "modulation", "bands": 32, "octaves": 6, "lowest_hz": 0.25, "dim": 180}`,
`{"kind": "comodulation", "bands": 32, "groups": 16, "dim": 120}` and
`{"kind": "fine_spectrum", "width": 9, "dim": 511}` and
`{"kind": "stability", "n_fft": 4096, "hop": 1024, "bands": 12, "lowest_hz": 100.0,
"highest_hz": 7000.0, "lags": [1, 2, 4], "dim": 36}` and
`{"kind": "onsets", "ranges_hz": [[50, 500], ...], "max_lag_s": 4.0, "dim": 500}` for the
classical band statistics, rhythm, dynamics, modulation power, comodulation, fine spectrum,
spectral stability and onset rhythm (edge_agent.scoring.classical). `backend` holds the
`BackendConfig` that calibrate and enrol refit with. `profiles` (optional) holds, per section,
the audio profile of its normal training clips (edge_agent.scoring.profile): what the hearing
check and the alarm explanations compare with; versions written before it existed load
without it. Format 1 bundles (one `model.tflite`,
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
requires a trusted signature (edge_agent.bundle.signing).

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

import hashlib
import json
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Required, TypedDict, get_args

from edge_agent.errors import BundleError
from edge_agent.jsonsafe import NonFiniteError, loads
from edge_agent.scoring.backend import (
    PAPER_BACKEND,
    BackendConfig,
    BackendError,
)
from edge_agent.scoring.classical import CLASSICAL_KINDS, classical_feature
from edge_agent.scoring.frontend import FrontendSpec

if TYPE_CHECKING:  # signing imports this module; at run time it is imported where it is used
    pass

log = logging.getLogger("edge_agent")

FORMAT = "asd-bundle"
FORMAT_VERSION = 2
READABLE_FORMATS = (1, 2)
MANIFEST = "manifest.json"
MANIFEST_DIGEST = "manifest.sha256"  # the manifest's own sha256 (it cannot hold its own hash)
MODEL = "model.tflite"  # format 1's single model
BACKEND = "backend.npz"
SELF_TEST = "self_test.npz"  # the reference window of the device self-test (runtime.selftest)
COMPONENT_KINDS = ("model", *CLASSICAL_KINDS)
QuantizeMode = Literal["float32", "float16", "dynamic", "int8"]


class InputShape(TypedDict):
    """One model input as the manifest records it (`scoring.embedder.input_layout`): the
    feature's name, the interpreter's tensor name and index, and the tensor's shape."""

    name: str
    tensor: str
    index: int
    shape: list[int]


class ModelComponent(TypedDict):
    """A TFLite model in the manifest's `components` list."""

    kind: Literal["model"]
    file: str
    """The model file in the version folder (`model_<k>.tflite`)."""
    inputs: list[InputShape]
    input_order: list[str]
    """Feature names in the order the model's embedder receives them."""
    dim: int | None
    """Embedding dimension (None in a format 1 manifest, which did not state it)."""


class ClassicalComponent(TypedDict, total=False):
    """A classical component (`edge_agent.scoring.classical`): its kind, the typed parameters
    of that kind (`Bands.bands`; `Rhythm.ranges_hz`, `Rhythm.max_lag_s`; `Dynamics.bands`,
    `Dynamics.lags`; `Modulation.bands`, `.octaves`, `.lowest_hz`; `Comodulation.bands`,
    `.groups`; `FineSpectrum.width`; `Stability.n_fft`, `.hop`, `.bands`, `.lowest_hz`,
    `.highest_hz`, `.lags`; `Onsets.ranges_hz`, `.max_lag_s`) and its dimension."""

    kind: Required[
        Literal[
            "bands",
            "rhythm",
            "dynamics",
            "modulation",
            "comodulation",
            "fine_spectrum",
            "stability",
            "onsets",
        ]
    ]
    dim: int
    bands: int
    ranges_hz: list[list[float]]
    max_lag_s: float
    lags: list[int]
    octaves: int
    lowest_hz: float
    groups: int
    width: int
    n_fft: int
    hop: int
    highest_hz: float


Component = ModelComponent | ClassicalComponent
"""One entry of the manifest's `components`: what embeds a window, in the backend's order."""


def model_components(components: list[Component]) -> list[ModelComponent]:
    """The model entries of `components`, in order (component 0 is always a model)."""
    return [c for c in components if c["kind"] == "model"]


QUANTIZE_MODES: tuple[QuantizeMode, ...] = get_args(QuantizeMode)


def read_hashed(path: Path) -> tuple[bytes, str]:
    """The bytes of `path` and their sha256 hex digest, from ONE read. A load checks and uses
    the same bytes: hashing a file and then opening it again by path lets whoever can write
    into the folder swap it in between (OSError as raised: callers name the file)."""
    data = path.read_bytes()
    return data, hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    """sha256 of a file read in blocks: for files that are hashed, not used afterwards."""
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


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
    return (
        isinstance(x, str) and bool(x) and "/" not in x and "\\" not in x and x not in (".", "..")
    )


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
STR_LIST = FieldType(
    "a list of strings", lambda x: isinstance(x, list) and all(isinstance(v, str) for v in x)
)
INT_LIST = FieldType("a list of integers", lambda x: isinstance(x, list) and all(map(_is_int, x)))
POS_INT_LIST = FieldType(
    "a non-empty list of integers >= 1",
    lambda x: isinstance(x, list) and bool(x) and all(_is_int(v) and v >= 1 for v in x),
)
HZ_RANGES = FieldType(
    "a non-empty list of [low, high] number pairs",
    lambda x: (
        isinstance(x, list)
        and bool(x)
        and all(isinstance(r, list) and len(r) == 2 and all(map(_is_number, r)) for r in x)
    ),
)
DIGESTS = FieldType(
    "an object of file name -> sha256 hex digest",
    lambda x: isinstance(x, dict) and all(_is_file_name(k) and _is_sha256(v) for k, v in x.items()),
)


def _objects(
    expected: str, schema: Callable[[dict[str, Any]], Schema | None], non_empty: bool = False
) -> FieldType:
    return FieldType(
        expected,
        lambda x: (
            isinstance(x, list)
            and (bool(x) or not non_empty)
            and all(isinstance(v, dict) for v in x)
        ),
        items=schema,
    )


FRONTEND_SCHEMA: Schema = {
    "sample_rate": (POS_INT, False),
    "clip_seconds": (POS_NUMBER, False),
    "n_fft": (POS_INT, False),
    "hop": (POS_INT, False),
    "spectrum_bins": (POS_INT, False),
    "temporal_norm": (BOOL, False),
}
"""edge_agent.scoring.frontend.FrontendSpec's fields (missing ones take the dataclass defaults)."""
BACKEND_SCHEMA: Schema = {
    "references": (STR, False),
    "n_clusters": (INT, False),
    "max_references": (INT, False),
    "density_k": (INT, False),
    "normalise": (BOOL, False),
    "fusion": (STR, False),
    "percentile": (NUMBER, False),
    "folds": (INT, False),
    "seed": (INT, False),
    "variant": (STR, False),
    "weighting": (STR, False),
    "anchor": (NUMBER, False),
    "ridge": (NUMBER, False),
    "pseudo_count": (INT, False),
    "pseudo_kinds": (STR_LIST, False),
    "deviation": (INT, False),
    "no_deviation": (STR_LIST, False),
    "transform": (STR, False),
}
"""edge_agent.scoring.backend.BackendConfig's fields (ranges and choices: its own checks)."""
INPUT_SCHEMA: Schema = {
    "name": (STR, True),
    "shape": (INT_LIST, True),
    "index": (INT, False),
    "tensor": (STR, False),
}
COMPONENT_SCHEMAS: Mapping[str, Schema] = {
    "model": {
        "kind": (STR, True),
        "file": (FILE_NAME, True),
        "inputs": (_objects("a list of objects", lambda _: INPUT_SCHEMA), True),
        "input_order": (STR_LIST, True),
        "dim": (OPT_POS_INT, False),
    },
    "bands": {"kind": (STR, True), "bands": (POS_INT, True), "dim": (OPT_POS_INT, False)},
    "rhythm": {
        "kind": (STR, True),
        "ranges_hz": (HZ_RANGES, True),
        "max_lag_s": (POS_NUMBER, True),
        "dim": (OPT_POS_INT, False),
    },
    "onsets": {
        "kind": (STR, True),
        "ranges_hz": (HZ_RANGES, True),
        "max_lag_s": (POS_NUMBER, True),
        "dim": (OPT_POS_INT, False),
    },
    "dynamics": {
        "kind": (STR, True),
        "bands": (POS_INT, True),
        "lags": (POS_INT_LIST, True),
        "dim": (OPT_POS_INT, False),
    },
    "modulation": {
        "kind": (STR, True),
        "bands": (POS_INT, True),
        "octaves": (POS_INT, True),
        "lowest_hz": (POS_NUMBER, True),
        "dim": (OPT_POS_INT, False),
    },
    "comodulation": {
        "kind": (STR, True),
        "bands": (POS_INT, True),
        "groups": (POS_INT, True),
        "dim": (OPT_POS_INT, False),
    },
    "fine_spectrum": {"kind": (STR, True), "width": (POS_INT, True), "dim": (OPT_POS_INT, False)},
    "stability": {
        "kind": (STR, True),
        "n_fft": (POS_INT, True),
        "hop": (POS_INT, True),
        "bands": (POS_INT, True),
        "lowest_hz": (POS_NUMBER, True),
        "highest_hz": (POS_NUMBER, True),
        "lags": (POS_INT_LIST, True),
        "dim": (OPT_POS_INT, False),
    },
}
SELF_TEST_SCHEMA: Schema = {
    "file": (FILE_NAME, True),
    "min_cosine": (FieldType("a number in (0, 1]", lambda x: _is_number(x) and 0 < x <= 1), True),
    "max_score_difference": (POS_NUMBER, True),
}
"""The device self-test (edge_agent.runtime.selftest): its file, the least cosine each
component's embedding of the reference window must have to the expected one, and how far the
window's score may be from the expected score."""
MANIFEST_SCHEMA: Schema = {
    "format": (STR, True),
    "format_version": (POS_INT, True),
    "version": (POS_INT, True),
    "created": (STR, False),
    "frontend": (FieldType("an object", OBJECT.test, fields=FRONTEND_SCHEMA), True),
    "components": (
        _objects(
            "a non-empty list of objects",
            lambda c: COMPONENT_SCHEMAS.get(str(c.get("kind"))),
            non_empty=True,
        ),
        True,
    ),
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
    "feedback": (OBJECT, False),
    "profiles": (OBJECT, False),
    "self_test": (FieldType("an object", OBJECT.test, fields=SELF_TEST_SCHEMA), False),
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
    a format-1 one upgraded; what a load reads (also a signed origin's,
    edge_agent.bundle.signing)."""
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
    check_components(data["components"], model_file_names(data, path), str(path))
    manifest: dict[str, Any] = data
    return manifest


def self_test_file(manifest: Mapping[str, Any]) -> str | None:
    """The self-test file the manifest names (None: a bundle without one)."""
    entry = manifest.get("self_test")
    return str(entry["file"]) if isinstance(entry, dict) and "file" in entry else None


def model_file_names(manifest: Mapping[str, Any], where: object) -> set[str]:
    """The files of `manifest["files"]` that must be models: all but backend.npz and the
    self-test file (which must be listed, so its checksum is checked like any other)."""
    files = set(manifest["files"]) - {BACKEND}
    extra = self_test_file(manifest)
    if extra is not None:
        if extra not in files or extra.endswith(".tflite"):
            raise BundleError(
                f"{where}: self_test.file: expected a non-model file listed in "
                f"'files', got {extra!r}"
            )
        files.discard(extra)
    return files


def _upgrade_v1(data: dict[str, Any], path: Path) -> dict[str, Any]:
    """A format-1 manifest as format 2: its one model is the only component, its backend the
    paper's (the descriptive format-1 `backend` record is kept as `backend_v1`)."""
    for key in ("inputs", "input_order"):
        if key not in data:
            raise BundleError(f"{path}: missing field {key!r}")
    out = dict(data)
    model: ModelComponent = {
        "kind": "model",
        "file": MODEL,
        "inputs": data["inputs"],
        "input_order": data["input_order"],
        "dim": data.get("embedding_dim"),
    }
    out["components"] = [model]
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


_UNCHECKED_WARNED: set[Path] = set()


def _warn_unchecked_manifest(vdir: Path) -> None:
    """One warning line per version folder and process: a version without `manifest.sha256`
    loads (one written before the file existed), but nothing then checks the manifest itself,
    so an edit to it (a threshold section, a frontend parameter) with the file removed loaded
    in silence. Every version this project writes has one; with trusted keys the signature
    covers the manifest and no warning is needed."""
    key = vdir.resolve()
    if key in _UNCHECKED_WARNED:
        return
    _UNCHECKED_WARNED.add(key)
    log.warning(
        "%s: no %s: the manifest itself is not checked, so an edit to it would load "
        "unnoticed (every version this agent writes has one: removed, or from an old "
        "release); re-export the bundle, or set trusted_keys",
        vdir,
        MANIFEST_DIGEST,
    )
