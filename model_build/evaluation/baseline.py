"""The classical baseline: clip statistics of the log spectrogram + the paper's backend.

Why it exists: a learned embedding is only worth its cost if it beats something simple. Per
clip the baseline takes the time-mean and time-std of the log-magnitude STFT (the frontend's
window and hop, WITHOUT temporal mean normalisation, which would zero the mean), concatenates
them (2 x 513 values) and L2-normalises. Scoring is exactly the paper's backend
(edge_agent.scoring.backend.PAPER_BACKEND: per section k-means with 16 clusters on source training
features plus every target training feature; score = minimum cosine distance), so the floor
is the paper's backend on hand-made features: the classical floor the learned system must
beat.

`BaselineEmbedder` fits model_build.evaluation.evaluate's `ClipEmbedder` protocol, so
`evaluate_embedder(BaselineEmbedder(), clips)` prints the same DCASE tables as a trained run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from edge_agent.audio.files import load_clip
from edge_agent.runtime.scorer import ClassicalEmbedder as WindowEmbedder
from edge_agent.runtime.scorer import WindowFeatures
from edge_agent.scoring.backend import PAPER_BACKEND, fit_section
from edge_agent.scoring.classical import DEFAULT_CLASSICAL, classical_features
from edge_agent.scoring.frontend import DEFAULT_SPEC, FrontendSpec, spectrogram
from model_build.data.clip import Clip

LOG_EPS = 1e-6


def baseline_features(wave: NDArray[Any], spec: FrontendSpec) -> NDArray[np.float32]:
    """(..., 2 * n_bins) L2-normalised [time-mean, time-std] of log |STFT|, clip or batch."""
    mag = spectrogram(wave, replace(spec, temporal_norm=False))
    logmag = np.log(mag.astype(np.float64) + LOG_EPS)
    feat = np.concatenate([logmag.mean(axis=-2), logmag.std(axis=-2)], axis=-1)
    norm = np.linalg.norm(feat, axis=-1, keepdims=True)
    out: NDArray[np.float32] = (feat / np.maximum(norm, 1e-12)).astype(np.float32)
    return out


@dataclass(frozen=True)
class BaselineEmbedder:
    """Clip embedder for model_build.evaluation.evaluate: loads each clip and returns its
    features."""

    spec: FrontendSpec = DEFAULT_SPEC

    def embed_clips(self, clips: Sequence[Clip]) -> NDArray[np.float32]:
        return self.embed_waves([load_clip(c.path, self.spec) for c in clips])

    def embed_waves(self, waves: Sequence[NDArray[Any]] | NDArray[Any]) -> NDArray[np.float32]:
        out = np.empty((len(waves), 2 * self.spec.n_bins), dtype=np.float32)
        for i, w in enumerate(waves):
            out[i] = baseline_features(w, self.spec)
        return out


@dataclass(frozen=True)
class ClassicalEmbedder:
    """The classical components of the shipped system (edge_agent.scoring.classical, the very code
    the device runs) as a clip embedder for model_build.evaluation.evaluate: one (N, D_i) array per
    component."""

    spec: FrontendSpec = DEFAULT_SPEC
    entries: tuple[dict[str, Any], ...] = DEFAULT_CLASSICAL

    @property
    def kinds(self) -> list[str]:
        """Each component's kind, as a bundle's manifest names it."""
        return [str(e["kind"]) for e in self.entries]

    def embed_clips(self, clips: Sequence[Clip]) -> list[NDArray[np.float32]]:
        return self.embed_waves([load_clip(c.path, self.spec) for c in clips])

    def embed_waves(
        self, waves: Sequence[NDArray[Any]] | NDArray[Any]
    ) -> list[NDArray[np.float32]]:
        feats = classical_features(self.spec, self.entries)
        embedders = [WindowEmbedder(f) for f in feats]  # the device's path, window by window
        rows: list[list[NDArray[np.float32]]] = [[] for _ in feats]
        for w in waves:
            window = WindowFeatures(w, self.spec)
            for row, e in zip(rows, embedders, strict=True):
                row.append(e.embed_features(window))
        return [
            np.stack(r) if r else np.zeros((0, f.dim), np.float32)
            for r, f in zip(rows, feats, strict=True)
        ]


@dataclass(frozen=True)
class ClipScore:
    """One test clip's baseline anomaly score (higher = more anomalous)."""

    clip: Clip
    score: float


def score_clips(
    clips: Sequence[Clip],
    spec: FrontendSpec = DEFAULT_SPEC,
    n_clusters: int = 16,
    seed: int = 0,
) -> list[ClipScore]:
    """Baseline scores of every test clip, one backend per section from its training clips.

    Sections without test clips are skipped; a section with test clips but no training clips
    is an error of edge_agent.scoring.backend (it names the section's missing embeddings).
    """
    emb = BaselineEmbedder(spec)
    test = [c for c in clips if c.split == "test"]
    out: list[ClipScore] = []
    for sid in sorted({c.section_id for c in test}):
        train = [c for c in clips if c.split == "train" and c.section_id == sid]
        src = emb.embed_clips([c for c in train if c.domain != "target"])
        tgt = emb.embed_clips([c for c in train if c.domain == "target"])
        config = replace(PAPER_BACKEND, n_clusters=n_clusters, seed=seed)
        backend = fit_section([src], [tgt], config).backend
        sec_test = [c for c in test if c.section_id == sid]
        scores = backend.score([emb.embed_clips(sec_test)])
        out += [ClipScore(c, float(s)) for c, s in zip(sec_test, scores, strict=True)]
    return out
