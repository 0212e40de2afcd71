"""`model-build export`: Keras embedding models -> quantised TFLite -> versioned device bundle.

Steps (each a function, so tests and benchmarks reuse them):

1. `convert`: each model of the run is converted (one named input per feature, batch 1);
   the TFLite input names are then `serving_default_<feature>:0`, which the device maps BY NAME
   (the converter may reorder inputs). Modes: float32; float16 (weights stored as fp16);
   dynamic (int8 weights, float activations); int8 (int8 weights AND activations, calibrated
   on real training features of both domains, float input/output tensors).
2. `refit_backends`: the exported bundle itself (the device's `Scorer`: numpy frontend, every
   TFLite model, each classical component) embeds the training clips,
   and every section is fitted on THOSE embeddings with `edge_agent.scoring.backend.fit_section`
   (the fit evaluate and the device's calibrate/enrol use too), so the device's scores and
   thresholds are on one scale whatever the quantisation did.
3. `self_test`: the device self-test (edge_agent.runtime.selftest): one training window, the
   embeddings this machine computes for it, and the tolerance from the bundle's own
   quantisation check (the same windows through XNNPACK and through TFLite's own kernels), so
   a device refuses a runtime or CPU that computes other numbers;
4. `edge_agent.bundle.versions.write_bundle` writes a new version atomically; with a signing key
   (`--sign-key`, edge_agent.bundle.signing) the version is signed before it is renamed into place,
   so no reader ever sees it unsigned.
"""

from __future__ import annotations

import functools
import json
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any, cast

import numpy as np
from numpy.typing import NDArray

from edge_agent.audio.files import load_clip
from edge_agent.bundle.manifest import (
    QUANTIZE_MODES,
    SELF_TEST,
    ClassicalComponent,
    Component,
    InputShape,
    ModelComponent,
)
from edge_agent.bundle.signing import sign_version
from edge_agent.bundle.versions import write_bundle
from edge_agent.errors import EdgeAgentError, FieldError
from edge_agent.runtime.scorer import Scorer, WindowEmbedding, stack_embeddings
from edge_agent.runtime.selftest import make_self_test
from edge_agent.scoring.backend import BackendConfig, SectionBackend, fit_section
from edge_agent.scoring.classical import classical_features
from edge_agent.scoring.embedder import Embedder, load_runtime
from edge_agent.scoring.frontend import DEFAULT_SPEC, FrontendSpec, model_inputs
from edge_agent.scoring.pseudo import PseudoSet, section_pseudo
from model_build.data.clip import Clip
from model_build.progress import Progress
from model_build.quiet import converter_output

DEFAULT_MODE = "dynamic"  # see BENCHMARKS.md "Quantisation": smallest/fastest within 0.5 AUC
EXPORT_DOMAINS = ("all", "source")  # training clips the backends are fitted on
SELF_TEST_WINDOWS = 8  # training clips the self-test tolerance is measured on


def input_names(model: Any) -> list[str]:
    return [str(t.name).split(":")[0] for t in model.inputs]


def feature_list(
    wave: NDArray[Any], names: Sequence[str], spec: FrontendSpec
) -> list[NDArray[Any]]:
    """Model inputs for one clip, with the trailing channel axis and a batch axis."""
    return [x[None, ..., None] for x in model_inputs(wave, names, spec)]


def calibration_waves(
    clips: Sequence[Clip], n: int, spec: FrontendSpec, seed: int = 0
) -> NDArray[np.float32]:
    """Up to `n` training clips spread over sections AND both domains (all target clips are
    taken first: they are few and the int8 ranges must cover them too)."""
    rng = np.random.default_rng(seed)
    target = [c for c in clips if c.domain == "target"]
    source = [c for c in clips if c.domain != "target"]
    pick = list(rng.permutation(len(target))[: n // 3])
    chosen = [target[i] for i in pick]
    chosen += [source[i] for i in rng.permutation(len(source))[: n - len(chosen)]]
    return (
        np.stack([load_clip(c.path, spec) for c in chosen])
        if chosen
        else np.zeros((0, spec.clip_samples), np.float32)
    )


def convert(
    model: Any,
    mode: str,
    calibration: NDArray[Any] | None,
    spec: FrontendSpec,
) -> bytes:
    """TFLite flatbuffer of `model` (batch 1) in quantisation `mode`; `calibration` = waves."""
    import tensorflow as tf

    if mode not in QUANTIZE_MODES:
        raise FieldError("quantize", f"expected one of {', '.join(QUANTIZE_MODES)}, got {mode}")
    names = input_names(model)
    # from_keras_model freezes every variable; a hand-made tf.function over a Keras 3 model
    # left READ_VARIABLE ops in the graph (NaN embeddings under XNNPACK).
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    if mode == "float16":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
    elif mode == "dynamic":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
    elif mode == "int8":
        if calibration is None or len(calibration) == 0:
            raise EdgeAgentError("int8: calibration clips are required (training data)")
        waves = calibration

        def rep() -> Iterator[dict[str, NDArray[np.float32]]]:
            # by name: the calibrator's positional order is the TFLite one, not Keras'
            for w in waves:
                feats = feature_list(w, names, spec)
                yield {n: x.astype(np.float32) for n, x in zip(names, feats, strict=True)}

        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = rep
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    with converter_output():  # ~100 lines of loader, MLIR and Keras export notices
        return bytes(conv.convert())


def keras_embed(model: Any, waves: NDArray[Any], spec: FrontendSpec) -> NDArray[np.float32]:
    """(N, D) float Keras embeddings from the numpy frontend (reference for parity checks)."""
    names = input_names(model)
    out = [np.asarray(model(feature_list(w, names, spec), training=False))[0] for w in waves]
    return np.stack(out).astype(np.float32)


def refit_backends(
    embed: Callable[[NDArray[np.float32]], WindowEmbedding],
    dims: Sequence[int],
    clips: Sequence[Clip],
    spec: FrontendSpec,
    config: BackendConfig,
    weights: Sequence[float] | None = None,
    progress: bool = False,
    kinds: Sequence[str] | None = None,
) -> dict[str, SectionBackend]:
    """Per section: `fit_section` on the device path's embeddings (`embed(wave)`: one
    embedding per component) of the section's training clips; with `kinds` and
    `config.weighting == "pseudo"`, the weights decided per section from the device path's
    embeddings of its pseudo-anomalies (edge_agent.scoring.pseudo.section_pseudo)."""
    sections: dict[str, dict[str, list[WindowEmbedding]]] = {}
    paths: dict[str, dict[str, list[Path]]] = {}
    train = [c for c in clips if c.split == "train"]
    with Progress(len(train), "embedding train clips", progress) as bar:
        for c in train:
            d = sections.setdefault(c.section_id, {"source": [], "target": []})
            dom = "target" if c.domain == "target" else "source"
            d[dom].append(embed(load_clip(c.path, spec)))
            paths.setdefault(c.section_id, {"source": [], "target": []})[dom].append(c.path)
            bar.update()
    if not sections:
        raise EdgeAgentError("data: no training clips to fit the backend on")
    decide = config.weighting == "pseudo" and kinds is not None and len(set(kinds)) > 1
    pseudo: dict[str, PseudoSet] = {}
    if decide:

        def embed_batch(waves: NDArray[np.float32]) -> list[NDArray[np.float32]]:
            return stack_embeddings([embed(w) for w in waves], dims)

        todo = [s for s in sorted(paths) if len(paths[s]["source"]) + len(paths[s]["target"]) > 1]
        with Progress(len(todo), "pseudo-anomalies", progress, unit="sections") as bar:
            for sid in todo:
                normal = paths[sid]["source"] + paths[sid]["target"]

                def wave(i: int, normal: list[Path] = normal) -> NDArray[np.float32]:
                    return load_clip(normal[i], spec)

                pseudo[sid] = section_pseudo(
                    sid,
                    len(normal),
                    wave,
                    embed_batch,
                    spec.sample_rate,
                    config,
                )
                bar.update()
    return {
        sid: fit_section(
            stack_embeddings(d["source"], dims),
            stack_embeddings(d["target"], dims),
            config,
            weights=weights,
            pseudo=pseudo.get(sid),
            kinds=kinds,
        ).backend
        for sid, d in sorted(sections.items())
    }


def self_test(
    scorer: Scorer,
    backends: Mapping[str, SectionBackend],
    reference: NDArray[np.float32],
    waves: Sequence[NDArray[np.float32]],
) -> tuple[bytes, dict[str, Any]]:
    """(self_test.npz, the manifest's `self_test` entry) for the models `scorer` runs, with
    `reference` as the device's test window, its expected embeddings from `scorer` (the
    kernels the backends were fitted with: the device's default), and the tolerance measured on
    `reference` and `waves` between those kernels and the other ones (XNNPACK's or TFLite's
    own), so a device on either passes."""
    rt = scorer.runtime
    other = Scorer.from_loaded(
        scorer.bundle, runtime=load_runtime(rt.name, not rt.xnnpack), check=False
    )
    return make_self_test(reference, scorer.embed, other.embed, waves, backends, rt.label)


def self_test_clips(clips: Sequence[Clip]) -> list[Clip]:
    """Training clips for the self-test, SELF_TEST_WINDOWS in all: the first (by path) of each
    section, then the next ones; the very first is the reference window."""
    ordered = sorted((c for c in clips if c.split == "train"), key=lambda c: str(c.path))
    firsts: dict[str, Clip] = {}
    for c in ordered:
        firsts.setdefault(c.section_id, c)
    rest = [c for c in ordered if c not in firsts.values()]
    return ([*firsts.values(), *rest])[:SELF_TEST_WINDOWS]


PROFILE_CLIPS = 200
"""Clips per section an audio profile is built from at most (a seeded choice): its medians
and spreads are settled long before, and a profile costs ~0.1 s a clip."""


def audio_profiles(
    clips: Sequence[Clip], spec: FrontendSpec, most: int = PROFILE_CLIPS
) -> dict[str, dict[str, Any]]:
    """Per section, the audio profile of its (normal) training clips
    (edge_agent.scoring.profile): what the agent's hearing check and alarm explanations
    compare live audio with. Remembered per process for the same files (path, size, mtime):
    exports of several quantisation modes of one run share their training clips."""
    by_section: dict[str, list[Clip]] = {}
    for c in clips:
        by_section.setdefault(c.section_id, []).append(c)
    out = {}
    rng = np.random.default_rng(0)
    for section, every in sorted(by_section.items()):
        cs = (
            every
            if len(every) <= most
            else [every[i] for i in sorted(rng.choice(len(every), most, replace=False))]
        )
        key = tuple((str(c.path), c.path.stat().st_size, c.path.stat().st_mtime_ns) for c in cs)
        out[section] = _section_profile(key, spec)
    return out


@functools.lru_cache(maxsize=32)
def _section_profile(files: tuple[tuple[str, int, int], ...], spec: FrontendSpec) -> dict[str, Any]:
    from edge_agent.scoring.explain import profile_from_waves

    waves = [load_clip(Path(f[0]), spec) for f in files]
    return profile_from_waves(waves, spec, "export").to_dict()


def fit_on_device(
    draft: Path,
    models: Mapping[str, Path],
    manifest: dict[str, Any],
    train_clips: Sequence[Clip],
    spec: FrontendSpec,
    config: BackendConfig,
    *,
    progress: bool = False,
    reference: NDArray[np.float32] | None = None,
) -> tuple[dict[str, SectionBackend], bytes]:
    """(backends, self_test.npz) of the models in `manifest`, fitted through the device's own
    scoring path: a provisional version at `draft` (no sections yet) gives the Scorer whose
    embeddings the backends are fitted on and whose numbers the self-test expects. Adds
    `runtime_at_export` and `self_test` to `manifest`. The self-test's window is the first
    training clip (`self_test_clips`) unless `reference` is given. Shared by `export_models`
    and benchmarks/refit_bundle.py (a version refitted without retraining)."""
    write_bundle(draft, models, {}, manifest)
    scorer = Scorer.from_bundle(draft, threads=2, check=False)
    manifest["runtime_at_export"] = scorer.runtime_name
    backends = refit_backends(
        scorer.embed,
        scorer.dims,
        train_clips,
        spec,
        config,
        scorer.bundle.weights,
        progress,
        scorer.bundle.kinds,
    )
    chosen = [load_clip(c.path, spec) for c in self_test_clips(train_clips)]
    if reference is not None:
        chosen[0] = reference
    data, manifest["self_test"] = self_test(scorer, backends, chosen[0], chosen[1:])
    return backends, data


def export_models(
    models: Sequence[Any],
    out: Path,
    mode: str,
    train_clips: Sequence[Clip],
    *,
    class_names: Sequence[str] = (),
    spec: FrontendSpec = DEFAULT_SPEC,
    training: dict[str, Any] | None = None,
    evaluation: dict[str, Any] | None = None,
    n_calibration: int = 200,
    config: BackendConfig = BackendConfig(),
    classical: bool = True,
    progress: bool = False,
    sign_key: Path | None = None,
) -> Path:
    """Convert every model, refit the backends on the device path, write a new bundle version
    (signed with the Ed25519 private key `sign_key` when given). The options are keyword-only:
    nine of them have defaults, and a positional call could swap two of the same type unnoticed.

    Components: one per model (`model_<k>.tflite`), then the classical components
    (edge_agent.scoring.classical.DEFAULT_CLASSICAL) when `classical`.
    `progress`: bars on stderr for the conversion and the embedding of the training clips.
    """
    calib = calibration_waves(train_clips, n_calibration, spec) if mode == "int8" else None
    files = {}
    with Progress(len(models), "converting models", progress, unit="models") as bar:
        for k, m in enumerate(models):
            files[f"model_{k}.tflite"] = convert(m, mode, calib, spec)
            bar.update()
    with tempfile.TemporaryDirectory() as tmp:
        comps: list[Component] = []
        for (name, data), m in zip(files.items(), models, strict=True):
            (Path(tmp) / name).write_bytes(data)
            emb = Embedder(Path(tmp) / name, input_names(m), threads=2)
            comps.append(
                ModelComponent(
                    kind="model",
                    file=name,
                    inputs=cast(list[InputShape], emb.layout),
                    input_order=input_names(m),
                    dim=emb.dim,
                )
            )
        if classical:
            comps += [cast(ClassicalComponent, f.entry) for f in classical_features(spec)]
        manifest = {
            "frontend": spec.to_dict(),
            "components": comps,
            "backend": config.to_dict(),
            "class_names": list(class_names),
            "quantization": mode,
            "training": training or {},
            "evaluation": evaluation or {},
        }
        backends, data = fit_on_device(
            Path(tmp) / "draft",
            {n: Path(tmp) / n for n in files},
            manifest,
            train_clips,
            spec,
            config,
            progress=progress,
        )
        manifest["profiles"] = audio_profiles(train_clips, spec)
        finish = None if sign_key is None else partial(sign_version, private_key_path=sign_key)
        return write_bundle(
            out,
            {n: Path(tmp) / n for n in files},
            backends,
            manifest,
            finish=finish,
            extra={SELF_TEST: data},
        )


def export_run(
    run: Path,
    out: Path,
    quantize: str = DEFAULT_MODE,
    *,
    data: Sequence[Path] = (),
    models: Sequence[int] | None = None,
    calibration: int = 200,
    domains: str = "all",
    backend: str = "default",
    classical: bool = True,
    progress: bool = False,
    sign_key: Path | None = None,
    strict: bool = False,
) -> Path:
    """Export models `models` (default: all) of a trained run as one bundle; training data =
    the run's roots by default; signed with `sign_key` (a private key file) when given.

    `domains="source"` fits the backends on source-domain training clips only (no target
    references): the starting point of an on-device `edge-agent calibrate`, and how
    benchmarks/adaptation.py measures what calibration adds. Files under train/ that are not
    clips are named on stderr; `strict` stops at the first one.
    """
    from model_build.data.dataset import class_names as all_class_names
    from model_build.data.dataset import scan
    from model_build.evaluation.evaluate import BACKENDS
    from model_build.training.runs import load_run  # imports TensorFlow: only here

    if quantize not in QUANTIZE_MODES:
        raise FieldError("quantize", f"expected one of {', '.join(QUANTIZE_MODES)}, got {quantize}")
    if domains not in EXPORT_DOMAINS:
        raise FieldError("domains", f"expected one of {', '.join(EXPORT_DOMAINS)}, got {domains}")
    if backend not in BACKENDS:
        raise FieldError("backend", f"expected one of {', '.join(BACKENDS)}, got {backend}")
    r = load_run(run)
    roots = list(data) or [Path(p) for p in r.meta.get("data", [])]
    if not roots:
        raise FieldError("data", "the run records no data roots; name them")
    clips = [
        c
        for c in scan(roots, splits=("train",), strict=strict)
        if c.split == "train" and (domains == "all" or c.domain != "target")
    ]
    if not clips:
        raise FieldError("data", f"no training clips under {', '.join(map(str, roots))}")
    chosen = list(range(len(r.models))) if models is None else list(models)
    bad = [k for k in chosen if not 0 <= k < len(r.models)]
    if bad or not chosen:
        raise FieldError("models", f"expected indices 0..{len(r.models) - 1}, got {chosen}")
    training = {
        "run": str(run),
        "data": [str(p) for p in roots],
        "n_train_clips": len(clips),
        "sections": sorted({c.section_id for c in clips}),
        "n_target_clips": sum(c.domain == "target" for c in clips),
        "models": chosen,
        "domains": domains,
        "config": r.config.to_dict(),
    }
    evaluation = r.meta.get("evaluation", {})
    names = r.classes or all_class_names(clips)
    return export_models(
        [r.models[k] for k in chosen],
        out,
        quantize,
        clips,
        class_names=names,
        spec=r.spec,
        training=training,
        evaluation=evaluation,
        n_calibration=calibration,
        config=BACKENDS[backend],
        classical=classical,
        progress=progress,
        sign_key=sign_key,
    )


def manifest_of(vdir: Path) -> dict[str, Any]:
    return dict(json.loads((vdir / "manifest.json").read_text()))


class BundleEmbedder:
    """A `model_build.evaluation.evaluate.ClipEmbedder` that embeds through an exported bundle (the
    device path), so `evaluate_embedder(BundleEmbedder(BUNDLE), clips)` evaluates what ships."""

    def __init__(self, bundle: Path, threads: int = 2) -> None:
        self.scorer = Scorer.from_bundle(bundle, threads=threads)
        self.weights = self.scorer.bundle.weights
        self.kinds = self.scorer.bundle.kinds
        self.spec = self.scorer.spec

    def embed_waves(self, waves: NDArray[np.float32]) -> list[NDArray[np.float32]]:
        """One (N, D_i) array per bundle component, of waves in memory."""
        return stack_embeddings([self.scorer.embed(w) for w in waves], self.scorer.dims)

    def embed_clips(self, clips: Sequence[Clip]) -> list[NDArray[np.float32]]:
        """One (N, D_i) array per bundle component."""
        return stack_embeddings(
            [self.scorer.embed(load_clip(c.path, self.scorer.spec)) for c in clips],
            self.scorer.dims,
        )
