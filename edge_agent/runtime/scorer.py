"""The device scoring path for one 10 s window: numpy frontend -> embedders -> backend.

This is the ONLY scoring path on the device: `edge-agent score`, the agent, calibrate, enrol
and `export`'s backend refit all go through it, so a bundle's thresholds are on the same
scale as the scores the device computes.

A window is embedded once per component of the bundle (edge_agent.bundle): each TFLite model
of the ensemble, and the classical components (edge_agent.scoring.classical). The |STFT| is
computed once per window and shared by the spectrogram input and the classical features (the
spectral stability alone computes its own, finer one from the samples).

The TFLite runtime is chosen by edge_agent.runtime.probe (each candidate tried in a child
process first, once per process), and a new scorer runs the bundle's self-test before it
scores anything (edge_agent.runtime.selftest): a runtime that computes other numbers on this
CPU than the bundle was made with is refused in one line.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from edge_agent.arrays import FloatArray
from edge_agent.bundle.load import Bundle, load_bundle
from edge_agent.bundle.manifest import model_components
from edge_agent.errors import BundleError, EdgeAgentError
from edge_agent.runtime.probe import choose_runtime
from edge_agent.runtime.selftest import (
    Reference,
    SelfTestError,
    SelfTestResult,
    failure_line,
    load_reference,
    run_self_test,
    say_no_reference,
)
from edge_agent.scoring.backend import l2_normalise
from edge_agent.scoring.classical import ClassicalFeature, SharedInput, classical_feature
from edge_agent.scoring.embedder import Embedder, Runtime, RuntimeRequest
from edge_agent.scoring.frontend import (
    FEATURES,
    FrontendSpec,
    stft_magnitude,
    temporal_normalise,
)

if TYPE_CHECKING:
    from edge_agent.bundle.signing import TrustedKey

WindowEmbedding = tuple[FloatArray, ...]
"""One window's embedding in every component of a bundle, in component order."""


class WindowFeatures:
    """The features of one window, each computed at most once (|STFT| shared)."""

    def __init__(self, wave: NDArray[Any], spec: FrontendSpec) -> None:
        self.wave, self.spec = wave, spec
        self._cache: dict[str, NDArray[Any]] = {}

    def _get(self, key: str, make: Callable[[], NDArray[Any]]) -> NDArray[Any]:
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    @property
    def magnitude(self) -> NDArray[np.float32]:
        return self._get("magnitude", lambda: stft_magnitude(self.wave, self.spec))

    def shared(self, what: SharedInput) -> NDArray[Any]:
        """An intermediate of the |STFT| that several components read (the log band powers on
        the same edges, the log energies of the same ranges), once per window."""
        return self._get(what.key, lambda: what.make(self.magnitude))

    def __getitem__(self, name: str) -> NDArray[np.float32]:
        """A model input by name (frontend.FEATURES); the spectrogram reuses the shared |STFT|
        instead of computing it a second time."""
        if name == "spectrogram":
            return self._get(name, lambda: temporal_normalise(self.magnitude, self.spec))
        return self._get(name, lambda: FEATURES[name](self.wave, self.spec))


class ClassicalEmbedder:
    """A classical component: a function of the window's |STFT| (or of an intermediate of it
    shared with other components, `SharedInput`, or of its samples)."""

    def __init__(self, feature: ClassicalFeature) -> None:
        self.feature = feature
        self.dim = feature.dim

    def embed_features(self, feats: WindowFeatures) -> NDArray[np.float32]:
        f = self.feature
        if f.wave:
            return f.fn(feats.wave)
        if f.shared is None or f.from_shared is None:
            return f.fn(feats.magnitude)
        return f.from_shared(feats.shared(f.shared))


class ModelEmbedder:
    """A TFLite component: the model's inputs from the shared features, L2-normalised output."""

    def __init__(self, embedder: Embedder) -> None:
        self.embedder = embedder
        self.dim = embedder.dim

    def embed_features(self, feats: WindowFeatures) -> NDArray[np.float32]:
        out = self.embedder.embed(*(feats[n] for n in self.embedder.input_names))
        emb: NDArray[np.float32] = l2_normalise(out[None])[0]
        return emb


ComponentEmbedder = ClassicalEmbedder | ModelEmbedder


def stack_embeddings(
    embs: Sequence[WindowEmbedding], dims: Sequence[int]
) -> list[NDArray[np.float32]]:
    """Per-window embeddings -> one (N, D_i) array per component (empty arrays for N = 0)."""
    if not embs:
        return [np.zeros((0, d), np.float32) for d in dims]
    return [np.stack([e[i] for e in embs]) for i in range(len(dims))]


@dataclass(frozen=True)
class WindowScore:
    score: float
    threshold: float
    anomalous: bool
    section: str
    model_version: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "score": self.score,
            "threshold": self.threshold,
            "anomalous": self.anomalous,
            "section": self.section,
            "model_version": self.model_version,
        }


class Scorer:
    """A loaded bundle with its embedders; `score(wave, section)` per window."""

    def __init__(self, bundle: Bundle, components: Sequence[ComponentEmbedder]) -> None:
        self.bundle = bundle
        self.components = list(components)
        self.spec = bundle.spec
        self.self_test: SelfTestResult | None = None  # the self-test's result, once it ran

    @property
    def dims(self) -> list[int]:
        return [c.dim for c in self.components]

    @property
    def runtime(self) -> Runtime:
        """The TFLite runtime the models run on."""
        return next(c.embedder.runtime for c in self.components if isinstance(c, ModelEmbedder))

    @property
    def runtime_name(self) -> str:
        return self.runtime.name

    @classmethod
    def from_bundle(
        cls,
        path: str | Path,
        threads: int = 1,
        verify: bool = True,
        runtime: Runtime | None = None,
        trusted: Sequence[TrustedKey] = (),
        request: RuntimeRequest | None = None,
        check: bool = True,
        running: Scorer | None = None,
    ) -> Scorer:
        """The scorer of the bundle at `path`; with `trusted` keys (edge_agent.bundle.signing) only
        a version one of them vouches for loads (`bundle.load_bundle`). `running`: see
        `from_loaded`."""
        return cls.from_loaded(
            load_bundle(path, verify=verify, trusted=trusted),
            threads,
            runtime,
            request,
            check,
            verify,
            running,
        )

    @classmethod
    def from_loaded(
        cls,
        bundle: Bundle,
        threads: int = 1,
        runtime: Runtime | None = None,
        request: RuntimeRequest | None = None,
        check: bool = True,
        verified: bool = True,
        running: Scorer | None = None,
    ) -> Scorer:
        """The scorer of an already loaded `bundle`. A verified bundle's interpreters run the
        model bytes its load checked (`Bundle.model_content`), not the files: what is on disk
        now does not matter. An unverified one (`verify=False`) reads the model files.

        `runtime`: the TFLite runtime to use as it is; None: the one edge_agent.runtime.probe
        chooses among `request`'s (default: every runtime, with XNNPACK). `check`: run the
        bundle's self-test now (`check_self_test`); off only where nothing may be checked yet
        (an export's draft, a probe child that reports the result itself).

        `running`: the scorer a reload replaces. A model of the new version that it already
        runs (the same verified bytes, inputs, threads and runtime: `Embedder.serves`) shares
        its interpreter instead of building a second one; a calibration's reload then holds
        one interpreter and arena, not two (9 MB less at the agent's peak on the demo bundle,
        `benchmarks/agent_rss.py --reload-at 60 [--new-model]`). The runtime is chosen
        and the self-test run as for any new version."""
        if runtime is None and any(c["kind"] == "model" for c in bundle.components):
            runtime = choose_runtime(bundle, request or RuntimeRequest(), verified)
        shared = [] if running is None else running.model_embedders()
        components = _components(bundle, threads, runtime, shared)
        # a shared interpreter runs on the running version's bytes (equal to these): keep one
        # copy of them, not two for as long as the new version runs
        models = [e.embedder for e in components if isinstance(e, ModelEmbedder)]
        same = {
            c["file"]: content
            for c, e in zip(model_components(bundle.components), models, strict=True)
            if e in shared and (content := e.model_content) is not None
        }
        if same:
            bundle = replace(bundle, model_content={**bundle.model_content, **same})
        scorer = cls(bundle, components)
        if check:
            scorer.self_test = scorer.check_self_test()
        return scorer

    def model_embedders(self) -> list[Embedder]:
        """The TFLite interpreters of this scorer's models (a reload may share them)."""
        return [c.embedder for c in self.components if isinstance(c, ModelEmbedder)]

    def run_self_test(self, reference: Reference) -> SelfTestResult:
        """The reference window through this scorer, against the expected numbers."""
        return run_self_test(reference, self.embed, self.bundle.backends)

    def check_self_test(self) -> SelfTestResult | None:
        """The bundle's self-test on this runtime and CPU (edge_agent.runtime.selftest): the
        result, None for a bundle without one (said once per process), or a one-line
        SelfTestError when this device computes other numbers."""
        reference = load_reference(self.bundle)
        if reference is None:
            say_no_reference(self.bundle)
            return None
        result = self.run_self_test(reference)
        if not result.passed:
            rt = self.runtime
            raise SelfTestError(
                failure_line(result, rt.label, rt.name, rt.xnnpack, str(self.bundle.path))
            )
        return result

    def embed(self, wave: NDArray[Any]) -> WindowEmbedding:
        """The window's embedding in every component (models: L2-normalised)."""
        feats = WindowFeatures(wave, self.spec)
        return tuple(c.embed_features(feats) for c in self.components)

    def score_embedding(self, emb: WindowEmbedding, section: str) -> WindowScore:
        backend = self.bundle.backend(section)
        s = float(backend.score(list(emb))[0])
        return WindowScore(
            s, backend.threshold, s > backend.threshold, section, self.bundle.model_version
        )

    def score(self, wave: NDArray[Any], section: str) -> WindowScore:
        self.bundle.backend(section)  # unknown section fails before any work
        return self.score_embedding(self.embed(wave), section)

    def score_window(self, wave: NDArray[Any], section: str) -> tuple[WindowScore, WindowFeatures]:
        """`score`, and the window's features (its |STFT|: the agent's hearing check
        summarises it instead of computing it again, edge_agent.runtime.hearing)."""
        self.bundle.backend(section)
        feats = WindowFeatures(wave, self.spec)
        emb = tuple(c.embed_features(feats) for c in self.components)
        return self.score_embedding(emb, section), feats

    def smoke_test(self, section: str, samples: int, seed: int = 0) -> WindowScore:
        """Score one synthetic window (`samples` of low-level noise) of `section`, or a one-line
        BundleError saying why this scorer cannot serve it.

        A version can load and still be unable to score: its frontend parameters give features
        the model's inputs do not take, its backend expects other embedding sizes, its model
        gives NaN. Loading does not run a window; this does, so a hot reload can keep the
        running version instead of swapping in one that fails every window."""
        backend = self.bundle.backend(section)
        where = f"{self.bundle.path}: section {section}"
        if backend.dims != self.dims:
            raise BundleError(
                f"{where}: expects {backend.dims}-d embeddings, the components give {self.dims}"
            )
        if not np.isfinite(backend.threshold):
            raise BundleError(f"{where}: threshold {backend.threshold} is not a finite number")
        wave = 0.03 * np.random.default_rng(seed).standard_normal(samples).astype(np.float32)
        try:
            ws = self.score(wave, section)
        except BundleError:
            raise
        except Exception as exc:  # any failure of the frontend, interpreter or backend
            raise BundleError(f"{where}: cannot score a test window ({one_line(exc)})") from None
        if not np.isfinite(ws.score):
            raise BundleError(f"{where}: a test window scores {ws.score} (not a finite number)")
        return ws


def _components(
    bundle: Bundle, threads: int, runtime: Runtime | None, shared: Sequence[Embedder] = ()
) -> list[ComponentEmbedder]:
    """The bundle's components as embedders, each checked against the manifest and backends
    (one-line BundleError); the models on `runtime`, each an interpreter of `shared` that
    already serves it where one does."""
    comps: list[ComponentEmbedder] = []
    for c in bundle.components:
        if c["kind"] != "model":
            try:
                comps.append(ClassicalEmbedder(classical_feature(c, bundle.spec)))
            except ValueError as exc:
                raise BundleError(f"{bundle.path}: components: {exc}") from None
            continue
        names = list(c["input_order"])
        unknown = [n for n in names if n not in FEATURES]
        if unknown:
            raise BundleError(
                f"{bundle.path}: model input(s) {unknown} have no device frontend "
                f"(supported: {', '.join(FEATURES)})"
            )
        shapes = {e["name"]: list(e["shape"]) for e in c["inputs"]}
        content = bundle.model_content.get(c["file"])
        same = [
            e
            for e in shared
            if runtime is not None and e.serves(content, names, threads, shapes, runtime)
        ]
        emb = (
            same[0]
            if same
            else Embedder(
                bundle.path / c["file"], names, threads, shapes, runtime, model_content=content
            )
        )
        runtime = emb.runtime  # prove the runtime once, share it
        comps.append(ModelEmbedder(emb))
    for i, (ce, m) in enumerate(zip(comps, bundle.components, strict=True)):
        want = m.get("dim")
        if want is not None and ce.dim != int(want):
            raise BundleError(
                f"{bundle.path}: component {i} gives {ce.dim}-d embeddings, manifest says "
                f"{m['dim']}"
            )
    dims = [ce.dim for ce in comps]
    for section, b in bundle.backends.items():  # format 1 manifests may not state dims
        if b.dims != dims:
            raise BundleError(
                f"{bundle.path}: section {section} expects {b.dims}-d embeddings, the "
                f"components give {dims}"
            )
    return comps


def one_line(exc: BaseException) -> str:
    """`Type: message` on one line (numpy and TFLite messages may span several)."""
    text = " ".join(str(exc).split()) or "(no message)"
    return text if isinstance(exc, EdgeAgentError) else f"{type(exc).__name__}: {text}"
