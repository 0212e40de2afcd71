"""The device scoring path for one 10 s window: numpy frontend -> TFLite embedder -> backend.

This is the ONLY scoring path on the device: `edge-agent score`, the agent and `export`'s
backend refit all go through it, so a bundle's thresholds are on the same scale as the scores
the device computes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .arrays import FloatArray
from .backend import l2_normalise
from .bundle import Bundle, load_bundle
from .embedder import Embedder, Runtime
from .errors import BundleError
from .frontend import FEATURES, FrontendSpec, model_inputs


def embed_window(embedder: Embedder, wave: NDArray[Any], spec: FrontendSpec) -> FloatArray:
    """Frontend + interpreter + L2 normalisation: THE device embedding of one window."""
    feats = model_inputs(wave, embedder.input_names, spec)
    emb: FloatArray = l2_normalise(embedder.embed(*feats)[None])[0]
    return emb


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
    """A loaded bundle with its interpreter; `score(wave, section)` per window."""

    def __init__(self, bundle: Bundle, embedder: Embedder) -> None:
        self.bundle = bundle
        self.embedder = embedder
        self.spec = bundle.spec

    @classmethod
    def from_bundle(
        cls,
        path: str | Path,
        threads: int = 1,
        verify: bool = True,
        runtime: Runtime | None = None,
    ) -> Scorer:
        bundle = load_bundle(path, verify=verify)
        unknown = [n for n in bundle.input_names if n not in FEATURES]
        if unknown:
            raise BundleError(
                f"{bundle.path}: model input(s) {unknown} have no device frontend "
                f"(supported: {', '.join(FEATURES)})"
            )
        embedder = Embedder(
            bundle.model_path, bundle.input_names, threads, bundle.input_shapes, runtime
        )
        if embedder.dim != int(bundle.manifest.get("embedding_dim", embedder.dim)):
            raise BundleError(
                f"{bundle.path}: model gives {embedder.dim}-d embeddings, manifest says "
                f"{bundle.manifest['embedding_dim']}"
            )
        return cls(bundle, embedder)

    def embed(self, wave: NDArray[Any]) -> FloatArray:
        """(D,) L2-normalised embedding of one window of `spec.clip_samples` samples."""
        return embed_window(self.embedder, wave, self.spec)

    def embed_many(self, waves: NDArray[Any]) -> FloatArray:
        return (
            np.stack([self.embed(w) for w in waves])
            if len(waves)
            else np.zeros((0, self.embedder.dim), np.float32)
        )

    def score_embedding(self, emb: NDArray[Any], section: str) -> WindowScore:
        backend = self.bundle.backend(section)
        s = float(backend.score(emb)[0])
        return WindowScore(
            s, backend.threshold, s > backend.threshold, section, self.bundle.model_version
        )

    def score(self, wave: NDArray[Any], section: str) -> WindowScore:
        self.bundle.backend(section)  # unknown section fails before any work
        return self.score_embedding(self.embed(wave), section)
