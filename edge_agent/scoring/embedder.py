"""TFLite runtime selection and inference: features in, one embedding out (no TensorFlow).

Runtime order: `ai_edge_litert` (maintained, numpy 2, aarch64 wheels), then `tflite_runtime`
(legacy Pi images), then `tf.lite` (a workstation that has TensorFlow anyway). A runtime counts
as available only once it has CREATED an interpreter: tflite-runtime 2.14 imports under numpy 2
and fails only at that point. TensorFlow is imported only when
both light runtimes fail, so a Pi never pays for it.

`select_runtime` proves runtimes IN this process: a runtime that crashes (ai-edge-litert's
XNNPACK set-up segfaults on some CPUs) takes the process with it. The device therefore picks
its runtime with `edge_agent.runtime.probe`, which tries each one in a child process first and
then loads the winner here with `load_runtime`. `RuntimeRequest` is what a config may force:
one runtime instead of the order above, and XNNPACK (the default delegate of every runtime)
off, which runs TFLite's own kernels instead.

Inputs are mapped BY NAME: a two-input TFLite model may order its inputs differently from the
Keras model (the converter reports `serving_default_spectrum:0` first, for example).

A model is given as a path, or as its bytes (`model_content`): a verified bundle passes the
bytes whose sha256 it checked, so the interpreter runs exactly what was checked and never
opens the file again (edge_agent.bundle, "check what you use").
"""

from __future__ import annotations

import base64
import importlib
import importlib.metadata
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
from numpy.typing import NDArray

from edge_agent.arrays import FloatArray
from edge_agent.errors import BundleError, RuntimeUnavailableError
from edge_agent.scoring.native_output import native_output, not_xnnpack

RuntimeName = Literal["ai_edge_litert", "tflite_runtime", "tensorflow"]
RUNTIMES: tuple[RuntimeName, ...] = get_args(RuntimeName)
INSTALL_HINT = "pip install ai-edge-litert (Python 3.10-3.12) or tflite-runtime with numpy<2"


def _interpreter_class(runtime: RuntimeName) -> Any:
    if runtime == "ai_edge_litert":
        return importlib.import_module("ai_edge_litert.interpreter").Interpreter
    if runtime == "tflite_runtime":
        return importlib.import_module("tflite_runtime.interpreter").Interpreter
    if runtime == "tensorflow":
        return importlib.import_module("tensorflow").lite.Interpreter
    raise ValueError(f"runtime: expected one of {RUNTIMES}, got {runtime!r}")


def _op_resolver_type(runtime: RuntimeName) -> Any:
    """The runtime's OpResolverType enum (BUILTIN_WITHOUT_DEFAULT_DELEGATES: no XNNPACK)."""
    if runtime == "tensorflow":
        return importlib.import_module("tensorflow").lite.experimental.OpResolverType
    module = "ai_edge_litert" if runtime == "ai_edge_litert" else "tflite_runtime"
    return importlib.import_module(f"{module}.interpreter").OpResolverType


# distribution names a runtime is installed as (tensorflow: the CPU-only build too)
_DISTRIBUTIONS: dict[RuntimeName, tuple[str, ...]] = {
    "ai_edge_litert": ("ai-edge-litert", "ai-edge-litert-nightly"),
    "tflite_runtime": ("tflite-runtime",),
    "tensorflow": ("tensorflow", "tensorflow-cpu", "tensorflow-aarch64"),
}


def runtime_version(runtime: RuntimeName) -> str:
    """The installed version of `runtime`'s package ("" when not known)."""
    for dist in _DISTRIBUTIONS.get(runtime, ()):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return ""


@dataclass(frozen=True)
class RuntimeRequest:
    """Which runtimes may run the models, in order, and whether with XNNPACK.

    The default tries every runtime in `RUNTIMES` order with TFLite's own kernels (the
    smaller path, config.runtime.TfliteSettings says why); a config forces one runtime
    (`tflite.runtime`) or XNNPACK (`tflite.xnnpack: true`), and the self-test refuses a
    runtime that computes wrong numbers on a CPU (edge_agent.runtime.selftest)."""

    names: tuple[RuntimeName, ...] = RUNTIMES
    xnnpack: bool = False

    def __post_init__(self) -> None:
        bad = [n for n in self.names if n not in RUNTIMES]
        if bad or not self.names:
            raise ValueError(
                f"runtimes: expected some of {', '.join(RUNTIMES)}, got {list(self.names)}"
            )

    @classmethod
    def of(cls, runtime: str = "auto", xnnpack: bool = False) -> RuntimeRequest:
        """From the config's words: `auto` or one runtime name."""
        if runtime == "auto":
            return cls(RUNTIMES, xnnpack)
        for name in RUNTIMES:
            if runtime == name:
                return cls((name,), xnnpack)
        raise ValueError(f"runtime: expected auto or one of {', '.join(RUNTIMES)}, got {runtime!r}")


@dataclass(frozen=True)
class Runtime:
    """A TFLite runtime that has proven it can create an interpreter."""

    name: RuntimeName
    factory: Callable[..., Any]
    xnnpack: bool = False  # False: built without default delegates (TFLite's own kernels)
    version: str = field(default="", compare=False)

    @property
    def label(self) -> str:
        """`ai_edge_litert 2.3.0 with XNNPACK`: what the runtime is, for messages."""
        version = f" {self.version}" if self.version else ""
        return f"{self.name}{version} {'with' if self.xnnpack else 'without'} XNNPACK"


# A 656-byte TFLite model computing y = x + x for x of shape (1, 4), made with the converter
# of TF 2.21. Runtimes are proven on THIS model, not on the user's: a corrupt model must be a
# BundleError, not "no runtime" (and a corrupt flatbuffer can crash a runtime outright).
PROBE_MODEL = base64.b64decode(
    "HAAAAFRGTDMUACAAHAAYABQAEAAMAAAACAAEABQAAAAcAAAAHAAAAHQAAAAkAQAANAEAAEwCAAADAAAAAAAAAAIA"
    "AAA0AAAABAAAANz///8EAAAABAAAABMAAABDT05WRVJTSU9OX01FVEFEQVRBAAgADAAIAAQACAAAAAMAAAAEAAAA"
    "EwAAAG1pbl9ydW50aW1lX3ZlcnNpb24ABQAAAKwAAACkAAAAnAAAAHwAAAAEAAAAkv///wQAAABgAAAAEAAAAAAA"
    "AAAIAA4ACAAEAAgAAAAQAAAAJAAAAAAABgAIAAQABgAAAAQAAAAAAAAADAAYABQAEAAMAAQADAAAAH5yXCIk9Ekc"
    "AwAAAAIAAAAEAAAABgAAADIuMjEuMAAAAAAGAAgABAAGAAAABAAAABAAAAAxLjUuMAAAAAAAAAAAAAAAvP7//8D+"
    "///E/v//DwAAAE1MSVIgQ29udmVydGVkLgABAAAAFAAAAAAADgAYABQAEAAMAAgABAAOAAAAFAAAABwAAABcAAAA"
    "YAAAAGQAAAAEAAAAbWFpbgAAAAABAAAAFAAAAAAADgAUAAAAEAAMAAsABAAOAAAAEAAAAAAAAAsMAAAAEAAAAET/"
    "//8BAAAAAQAAAAIAAAAAAAAAAAAAAAEAAAABAAAAAQAAAAAAAAACAAAAWAAAAAQAAADG////AAAAARAAAAAQAAAA"
    "AgAAABgAAACQ////CAAAAElkZW50aXR5AAAAAAIAAAABAAAABAAAAAAAFgAYABQAAAAQAAwACAAAAAAAAAAHABYA"
    "AAAAAAABEAAAABAAAAABAAAAEAAAAOD///8BAAAAeAAAAAIAAAABAAAABAAAAAEAAAAIAAAABAAEAAQAAAA="
)


def _prove(cls: Any) -> None:
    with native_output(keep=not_xnnpack):  # the runtime announces its delegate on stderr
        it = cls(model_content=PROBE_MODEL, num_threads=1)
        it.allocate_tensors()
    x = np.arange(4, dtype=np.float32).reshape(1, 4)
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    if not np.allclose(it.get_tensor(it.get_output_details()[0]["index"]), 2 * x):
        raise RuntimeError("wrong result on the probe model")


def load_runtime(name: RuntimeName, xnnpack: bool = False) -> Runtime:
    """`name` proven on the probe model in THIS process (with or without XNNPACK); any
    failure as raised (`select_runtime` words it)."""
    cls = _interpreter_class(name)
    factory = (
        cls
        if xnnpack
        else partial(
            cls,
            experimental_op_resolver_type=_op_resolver_type(name).BUILTIN_WITHOUT_DEFAULT_DELEGATES,
        )
    )
    _prove(factory)
    return Runtime(name, factory, xnnpack, runtime_version(name))


def failure_reason(name: str, exc: BaseException) -> str:
    """`name: Type first line of the message` (for the list of runtimes tried)."""
    first = str(exc).splitlines()[0][:80] if str(exc) else ""
    return f"{name}: {type(exc).__name__} {first}".strip()


def select_runtime(preferred: Sequence[RuntimeName] = RUNTIMES, xnnpack: bool = False) -> Runtime:
    """The first runtime in `preferred` that creates an interpreter and runs the probe model,
    proven in THIS process (one that crashes takes the process along: the device picks with
    edge_agent.runtime.probe, which tries each in a child first).

    Any failure (missing module, numpy ABI mismatch as with tflite-runtime 2.14 under
    numpy 2) moves on to the next; the error names every runtime tried and what to install.
    """
    reasons = []
    for name in preferred:
        try:
            return load_runtime(name, xnnpack)
        except Exception as exc:  # any failure: try the next one
            reasons.append(failure_reason(name, exc))
    raise RuntimeUnavailableError(f"no TFLite runtime works ({'; '.join(reasons)}); {INSTALL_HINT}")


def check_flatbuffer(model_path: str | Path, content: bytes | None = None) -> None:
    """Cheap structural check before a runtime parses the file (it may crash on garbage);
    of `content` (the model's bytes, `model_path` only naming it) when given."""
    p = Path(model_path)
    if content is not None:
        head = content[:8]
    else:
        try:
            with Path(p).open("rb") as f:
                head = f.read(8)
        except OSError as exc:
            raise BundleError(f"{p}: cannot read the model ({exc.strerror})") from None
    if len(head) < 8 or head[4:8] != b"TFL3":
        raise BundleError(f"{p}: not a TFLite model (no TFL3 identifier)")


def tensor_feature_name(tensor_name: str) -> str:
    """`serving_default_spectrum:0` -> `spectrum` (the Keras input name)."""
    base = tensor_name.split(":", 1)[0]
    prefix = "serving_default_"
    return base[len(prefix) :] if base.startswith(prefix) else base


def input_layout(details: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The interpreter's inputs as manifest entries: feature name, tensor index, shape, in the
    interpreter's own order."""
    return [
        {
            "name": tensor_feature_name(str(d["name"])),
            "tensor": str(d["name"]),
            "index": int(d["index"]),
            "shape": [int(s) for s in d["shape"]],
        }
        for d in details
    ]


class Embedder:
    """One TFLite interpreter: `embed(spectrogram, spectrum) -> (D,)` float32.

    `input_names` are the feature names in the order `embed` receives them; `expected_shapes`
    (from the bundle manifest) are checked against what the model reports, so a model that
    does not match its manifest fails with BundleError at load time, not inside the runtime.
    With `model_content` (the model's bytes) the interpreter is built from those bytes and
    `model_path` only names the model in messages; the bytes are kept as long as the
    interpreter (it runs on them without a copy).

    One embedding at a time (a lock around the interpreter's inputs, invoke and output): a
    reload whose new version has the same model shares the running interpreter
    (`Embedder.serves`), and its self-test then runs beside the scoring worker.
    """

    def __init__(
        self,
        model_path: str | Path,
        input_names: Sequence[str] = ("spectrogram", "spectrum"),
        threads: int = 1,
        expected_shapes: Mapping[str, Sequence[int]] | None = None,
        runtime: Runtime | None = None,
        model_content: bytes | None = None,
    ) -> None:
        if threads < 1:
            raise RuntimeUnavailableError(f"threads: expected >= 1, got {threads}")
        check_flatbuffer(model_path, model_content)
        self.runtime = runtime or select_runtime()
        self._model_content = model_content  # alive as long as the interpreter that uses it
        source: dict[str, Any] = (
            {"model_path": str(model_path)}
            if model_content is None
            else {"model_content": model_content}
        )
        try:
            with native_output(keep=not_xnnpack):
                self._it = self.runtime.factory(**source, num_threads=threads)
                self._it.allocate_tensors()
        except Exception as exc:
            why = " ".join(str(exc).split())  # runtimes' messages span lines
            raise BundleError(f"{model_path}: the TFLite runtime cannot load it ({why})") from None
        self.layout = input_layout(self._it.get_input_details())
        layout = {e["name"]: e for e in self.layout}
        missing = [n for n in input_names if n not in layout]
        if missing or len(layout) != len(input_names):
            raise BundleError(
                f"{model_path}: model inputs {sorted(layout)} do not match expected "
                f"{list(input_names)}"
            )
        for name, shape in (expected_shapes or {}).items():
            got = layout[name]["shape"] if name in layout else None
            if got is None or list(got) != [int(s) for s in shape]:
                raise BundleError(
                    f"{model_path}: input {name} has shape {got}, manifest expects {list(shape)}"
                )
        self.input_names = tuple(input_names)
        self._slots = [(layout[n]["index"], tuple(layout[n]["shape"])) for n in input_names]
        out = self._it.get_output_details()
        if len(out) != 1:
            raise BundleError(f"{model_path}: expected one output (the embedding), got {len(out)}")
        self._out = int(out[0]["index"])
        self.dim = int(np.prod(out[0]["shape"][1:]))
        self.threads = threads
        self._lock = threading.Lock()

    @property
    def model_content(self) -> bytes | None:
        """The model bytes the interpreter runs on (None: read from `model_path`)."""
        return self._model_content

    def serves(
        self,
        model_content: bytes | None,
        input_names: Sequence[str],
        threads: int,
        expected_shapes: Mapping[str, Sequence[int]],
        runtime: Runtime,
    ) -> bool:
        """Whether this interpreter IS the one a new embedder of these arguments would build:
        the same model bytes (built from bytes only: a model read from a path may have changed
        on disk since), inputs, shapes, thread count and runtime. A reload of a calibration,
        an enrolment or a "not a fault" answer changes the backend, not the model, and so
        shares the interpreter instead of holding a second one (and its arena) beside it."""
        if model_content is None or self._model_content is None:
            return False
        layout = {e["name"]: [int(s) for s in e["shape"]] for e in self.layout}
        return (
            (self.runtime.name, self.runtime.xnnpack) == (runtime.name, runtime.xnnpack)
            and self.threads == threads
            and self.input_names == tuple(input_names)
            and all(layout.get(n) == [int(s) for s in sh] for n, sh in expected_shapes.items())
            and (self._model_content is model_content or self._model_content == model_content)
        )

    @property
    def input_shapes(self) -> list[tuple[int, ...]]:
        """The model's input shapes, in `input_names` order (batch and channel axes included)."""
        return [shape for _, shape in self._slots]

    def embed(self, *features: NDArray[Any]) -> FloatArray:
        """Features of ONE window, in `input_names` order (without batch or channel axes)."""
        if len(features) != len(self._slots):
            raise ValueError(f"expected {len(self._slots)} feature arrays, got {len(features)}")
        inputs = [
            np.asarray(x, dtype=np.float32).reshape(shape)
            for (_, shape), x in zip(self._slots, features, strict=True)
        ]
        with self._lock:
            for (index, _), x in zip(self._slots, inputs, strict=True):
                self._it.set_tensor(index, x)
            self._it.invoke()
            return np.array(self._it.get_tensor(self._out)[0], dtype=np.float32)
