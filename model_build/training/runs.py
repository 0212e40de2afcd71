"""The run directory written by `model-build train` and read by evaluate/export.

Layout::

    RUN/run.json                 format, model config, frontend spec, classes, data roots,
                                 train config, per-model status (training | done), skipped files
    RUN/model_<k>/embedding.weights.h5   final weights of the exportable embedding model
    RUN/model_<k>/head.npz               sub-cluster centres and AdaCos scale (for analysis)
    RUN/model_<k>/checkpoint/            last epoch's full training state (resume)

`load_run(RUN)` rebuilds each finished model from the stored config and returns a `Run` that
embeds clips with the numpy frontend, exactly as the device will (the TFLite export takes
features, not waveforms).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from edge_agent.audio.files import load_clip
from edge_agent.errors import EdgeAgentError
from edge_agent.scoring.frontend import FEATURES, FrontendSpec
from model_build.data.clip import Clip
from model_build.training.model import ModelConfig, build_embedding_model

if TYPE_CHECKING:
    import keras

RUN_FILE = "run.json"
RUN_FORMAT = 1
WEIGHTS_FILE = "embedding.weights.h5"
HEAD_FILE = "head.npz"
CHECKPOINT_DIR = "checkpoint"


class RunError(EdgeAgentError):
    """A run directory is missing, incomplete or from an unknown format."""


def model_dir(run: Path, k: int) -> Path:
    return Path(run) / f"model_{k}"


def write_meta(run: Path, meta: dict[str, Any]) -> None:
    """Write run.json atomically (a crash never leaves a half-written file)."""
    run = Path(run)
    run.mkdir(parents=True, exist_ok=True)
    tmp = run / (RUN_FILE + ".tmp")
    tmp.write_text(json.dumps(meta, indent=2, sort_keys=True))
    Path(tmp).replace(run / RUN_FILE)


def read_meta(run: Path) -> dict[str, Any]:
    path = Path(run) / RUN_FILE
    if not path.is_file():
        raise RunError(f"{path}: not found (expected a run directory written by model-build train)")
    try:
        meta: dict[str, Any] = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise RunError(f"{path}: unreadable run metadata ({exc})") from None
    if meta.get("format") != RUN_FORMAT:
        raise RunError(f"{path}: format {meta.get('format')!r}, expected {RUN_FORMAT}")
    return meta


def _clip_path(clip: Clip | str | Path) -> Path:
    return clip.path if isinstance(clip, Clip) else Path(clip)


@dataclass
class Run:
    """A trained run: one embedding model per ensemble member, plus what they were built with."""

    path: Path
    config: ModelConfig
    spec: FrontendSpec
    classes: list[str]
    models: list[keras.Model]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def embedding_dim(self) -> int:
        return self.config.embedding_dim

    def features(self, waves: NDArray[Any]) -> dict[str, NDArray[np.float32]]:
        """Model inputs for a batch of waves (batch, clip_samples), by input name.

        Spectrogram and spectrum come from the numpy frontend (what the device runs); the
        log-mel ablation input only exists in TensorFlow.
        """
        waves = np.asarray(waves, dtype=np.float32)
        out: dict[str, NDArray[np.float32]] = {}
        for name in self.config.input_names:
            if name in FEATURES:
                out[name] = FEATURES[name](waves, self.spec)[..., None]
            else:
                from model_build.training.tf_frontend import TF_FEATURES

                out[name] = np.asarray(TF_FEATURES[name](waves, self.spec))[..., None]
        return out

    def embed_waves(self, waves: NDArray[Any], batch_size: int = 16) -> NDArray[np.float32]:
        """(n_models, N, D) embeddings of waves (N, clip_samples), computed in batches."""
        waves = np.asarray(waves, dtype=np.float32)
        if waves.ndim == 1:
            waves = waves[None]
        return self._embed_batches(
            (waves[i : i + batch_size] for i in range(0, len(waves), batch_size)), len(waves)
        )

    embed = embed_waves

    def embed_clips(
        self, clips: Sequence[Clip | str | Path], batch_size: int = 16
    ) -> NDArray[np.float32]:
        """(n_models, N, D) embeddings of audio files, read and embedded batch by batch."""

        def batches() -> Iterator[NDArray[np.float32]]:
            for i in range(0, len(clips), batch_size):
                yield np.stack(
                    [load_clip(_clip_path(c), self.spec) for c in clips[i : i + batch_size]]
                )

        return self._embed_batches(batches(), len(clips))

    def _embed_batches(self, batches: Iterator[NDArray[np.float32]], n: int) -> NDArray[np.float32]:
        out = np.zeros((len(self.models), n, self.embedding_dim), dtype=np.float32)
        i = 0
        for waves in batches:
            feats = self.features(waves)
            inputs = [feats[name] for name in self.config.input_names]
            for k, model in enumerate(self.models):
                out[k, i : i + len(waves)] = np.asarray(model(inputs, training=False))
            i += len(waves)
        return out


def load_run(path: str | Path, include_unfinished: bool = False) -> Run:
    """Read RUN/run.json and rebuild every finished model (or, optionally, the last checkpoints)."""
    run = Path(path)
    meta = read_meta(run)
    config = ModelConfig.from_dict(meta["config"])
    spec = FrontendSpec.from_dict(meta["frontend"])
    models = []
    for k, status in enumerate(meta.get("models", [])):
        weights = model_dir(run, k) / WEIGHTS_FILE
        if status.get("status") != "done":
            if not include_unfinished:
                continue
            weights = model_dir(run, k) / CHECKPOINT_DIR / WEIGHTS_FILE
        if not weights.is_file():
            raise RunError(f"{weights}: missing weights (run.json says model {k} exists)")
        model = build_embedding_model(config, spec)
        model.load_weights(weights)
        models.append(model)
    if not models:
        raise RunError(f"{run}: no finished model yet (resume training with model-build train)")
    return Run(run, config, spec, list(meta["classes"]), models, meta)


class ConcatenatedRuns:
    """Several runs as one embedder: model k's embedding is the concatenation of every run's
    model k (the paper's Table 4 "concatenate embeddings after training": a spectrogram-only
    and a spectrum-only run, trained apart, joined for the backend)."""

    def __init__(self, runs: Sequence[Run]) -> None:
        counts = {len(r.models) for r in runs}
        if not runs or len(counts) != 1:
            raise RunError(
                "concatenated runs: expected runs with the same number of models, got "
                + ", ".join(f"{r.path} ({len(r.models)})" for r in runs)
            )
        self.runs = list(runs)

    def embed_clips(self, clips: Sequence[Clip | str | Path]) -> NDArray[np.float32]:
        """(n_models, N, sum of the runs' D) embeddings."""
        return np.concatenate([r.embed_clips(clips) for r in self.runs], axis=-1)
