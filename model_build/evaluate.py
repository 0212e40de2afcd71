"""`model-build evaluate`: score a trained run on DCASE data and report the challenge metrics.

The pipeline is split so every scorer in the project is judged by the same code:

* `backend_scores` fits the section backends (edge_agent.backend) on training embeddings and
  scores test embeddings; it also keeps the cross-fitted scores of the normal training clips,
  which give the decision thresholds (and, summed over models, the ensemble's thresholds).
* `evaluate_scores` is pure: test clip records + one score per clip -> per-section AUC/pAUC
  (paper view and official DCASE 2022 view, see model_build.metrics) and harmonic means.
  The classical baseline and the device path (TFLite) call it with their own scores.
* `write_report` writes the DCASE submission CSVs, the plots and returns the JSON-able dict.

The ensemble (paper, section 4) sums the anomaly scores of the models.
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from edge_agent.backend import (
    COSINE_VARIANTS,
    SectionBackend,
    cross_fit_scores,
    fit_gmm,
    fit_references,
    variant_scores,
)
from edge_agent.errors import EdgeAgentError

from .data import Clip
from .metrics import SectionMetrics, Summary, section_metrics, summarise

METHODS = ("cosine", "gmm")


@dataclass(frozen=True)
class BackendConfig:
    """How the per-section backend is built (the paper's choice is the default)."""

    method: str = "cosine"  # "cosine" (paper) | "gmm" (Table 6 ablation)
    variant: str = "joint"  # cosine only: joint | source | target | sum
    n_clusters: int = 16  # k-means clusters, or GMM components
    percentile: float = 90.0  # decision threshold: percentile of held-out normal scores
    folds: int = 5  # cross-fitting folds for the threshold
    seed: int = 0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise EdgeAgentError(f"backend method: expected one of {METHODS}, got {self.method!r}")
        if self.variant not in COSINE_VARIANTS:
            raise EdgeAgentError(
                f"backend variant: expected one of {COSINE_VARIANTS}, got {self.variant!r}"
            )
        if not 0.0 <= self.percentile <= 100.0:
            raise EdgeAgentError(f"percentile: expected 0..100, got {self.percentile}")
        if self.n_clusters < 1 or self.folds < 2:
            raise EdgeAgentError("backend: n_clusters must be >= 1 and folds >= 2")


@dataclass(frozen=True)
class BackendScores:
    """Test scores of one embedding model plus what the thresholds are made of."""

    scores: NDArray[np.float64]  # (N_test,), aligned with the test clips
    thresholds: dict[str, float]  # section id -> decision threshold
    normal_scores: dict[str, NDArray[np.float64]]  # section id -> cross-fitted train scores
    backends: dict[str, Any] = field(default_factory=dict)  # section id -> fitted backend


def _groups(clips: Sequence[Clip]) -> dict[str, NDArray[np.intp]]:
    out: dict[str, list[int]] = {}
    for i, c in enumerate(clips):
        out.setdefault(c.section_id, []).append(i)
    return {k: np.asarray(v, dtype=np.intp) for k, v in out.items()}


def _percentile(scores: NDArray[np.float64], p: float) -> float:
    return float(np.percentile(scores, p)) if scores.size else float("inf")


def backend_scores(
    train_emb: NDArray[Any],
    train_clips: Sequence[Clip],
    test_emb: NDArray[Any],
    test_clips: Sequence[Clip],
    config: BackendConfig = BackendConfig(),
) -> BackendScores:
    """Fit one backend per section on the NORMAL training embeddings, score the test clips.

    Training clips of a section are split by domain (source -> k-means, target -> kept as
    references). Thresholds come from cross-fitted scores (edge_agent.backend docstring).
    """
    tr = np.asarray(train_emb, dtype=np.float64)
    te = np.asarray(test_emb, dtype=np.float64)
    if tr.shape[0] != len(train_clips) or te.shape[0] != len(test_clips):
        raise EdgeAgentError(
            f"embeddings: {tr.shape[0]} train / {te.shape[0]} test rows for "
            f"{len(train_clips)} / {len(test_clips)} clips"
        )
    train_groups = _groups(train_clips)
    scores = np.full(len(test_clips), np.nan)
    thresholds: dict[str, float] = {}
    normal: dict[str, NDArray[np.float64]] = {}
    backends: dict[str, Any] = {}
    for sec, t_idx in sorted(_groups(test_clips).items()):
        if sec not in train_groups:
            raise EdgeAgentError(f"{sec}: test clips but no training clips to fit a backend on")
        idx = [i for i in train_groups[sec] if train_clips[i].label != "anomaly"]
        src = tr[[i for i in idx if train_clips[i].domain != "target"]]
        tgt = tr[[i for i in idx if train_clips[i].domain == "target"]]
        if config.method == "gmm":
            gmm = fit_gmm(np.concatenate([src, tgt]), config.n_clusters, seed=config.seed)
            scores[t_idx] = gmm.score(te[t_idx])
            backends[sec] = gmm

            def fit_score(s: Any, t: Any, held: Any) -> Any:
                g = fit_gmm(np.concatenate([s, t]), config.n_clusters, seed=config.seed)
                return g.score(held)
        else:
            refs, n_src = fit_references(src, tgt, config.n_clusters, config.seed)
            sb = SectionBackend(refs, n_src, float("nan"))
            scores[t_idx] = variant_scores(te[t_idx], sb, config.variant)

            def fit_score(s: Any, t: Any, held: Any) -> Any:
                r, n = fit_references(s, t, config.n_clusters, config.seed)
                return variant_scores(held, SectionBackend(r, n, 0.0), config.variant)
        # a single training clip has no held-out score: threshold +inf (never alarm)
        ns = (
            cross_fit_scores(src, tgt, fit_score, config.folds, config.seed)
            if len(src) + len(tgt) >= 2
            else np.zeros(0)
        )
        normal[sec] = ns
        thresholds[sec] = _percentile(ns, config.percentile)
        backends[sec] = (
            replace(backends[sec], threshold=thresholds[sec])
            if config.method == "gmm"
            else SectionBackend(refs, n_src, thresholds[sec])
        )
    return BackendScores(scores, thresholds, normal, backends)


def ensemble(parts: Sequence[BackendScores], percentile: float = 90.0) -> BackendScores:
    """Sum of the models' scores; thresholds from the summed held-out normal scores."""
    if not parts:
        raise EdgeAgentError("ensemble: no models to combine")
    scores = np.sum([p.scores for p in parts], axis=0)
    normal = {
        sec: np.sum([p.normal_scores[sec] for p in parts], axis=0) for sec in parts[0].normal_scores
    }
    return BackendScores(scores, {s: _percentile(v, percentile) for s, v in normal.items()}, normal)


@dataclass(frozen=True)
class Evaluation:
    """Metrics of one scorer on a test set."""

    sections: list[SectionMetrics]
    summary: Summary
    skipped: dict[str, str]  # section id -> why it has no metrics (no ground truth, one class)

    def to_dict(self) -> dict[str, Any]:
        return {
            "sections": [m.to_dict() for m in self.sections],
            "summary": self.summary.to_dict(),
            "skipped": dict(self.skipped),
        }


def evaluate_scores(
    records: Sequence[Clip], scores: NDArray[Any], max_fpr: float = 0.1
) -> Evaluation:
    """Pure: per-section metrics and harmonic means from test clips and their scores.

    Sections whose clips lack ground truth (eval set without its CSVs) or hold only one class
    are reported in `skipped` instead of failing the whole evaluation.
    """
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if s.shape[0] != len(records):
        raise EdgeAgentError(f"scores: {s.shape[0]} scores for {len(records)} test clips")
    sections: list[SectionMetrics] = []
    skipped: dict[str, str] = {}
    for sec, idx in sorted(_groups(records).items()):
        clips = [records[i] for i in idx]
        n_anom = sum(c.is_anomaly for c in clips)
        if any(c.label is None for c in clips):
            skipped[sec] = "no ground truth"
        elif n_anom in (0, len(clips)):
            skipped[sec] = f"only {'anomalous' if n_anom else 'normal'} test clips"
        else:
            sections.append(
                section_metrics(
                    sec,
                    [c.is_anomaly for c in clips],
                    [c.domain for c in clips],
                    s[idx],
                    max_fpr=max_fpr,
                )
            )
    return Evaluation(sections, summarise(sections), skipped)


def _pct(v: float | None) -> str:
    return "   -  " if v is None else f"{100 * v:6.2f}"


def format_table(ev: Evaluation, title: str) -> str:
    """A DCASE-style text table (percent): per section AUC/pAUC per domain, then means."""
    head = (
        f"{'section':<28} {'AUC src':>7} {'pAUC src':>8} {'AUC tgt':>7} {'pAUC tgt':>8} "
        f"{'AUC mix':>7} {'pAUC mix':>8}"
    )
    lines = [f"== {title}", head, "-" * len(head)]

    def row(name: str, a: Mapping[str, float | None], p: Mapping[str, float | None]) -> str:
        return (
            f"{name:<28} {_pct(a['source']):>7} {_pct(p['source']):>8} {_pct(a['target']):>7} "
            f"{_pct(p['target']):>8} {_pct(a['mixed']):>7} {_pct(p['mixed']):>8}"
        )

    for m in ev.sections:
        lines.append(row(m.section, m.auc, m.pauc))
    lines.append("-" * len(head))
    lines.append(row(f"harmonic mean ({ev.summary.n_sections})", ev.summary.auc, ev.summary.pauc))
    lines.append(
        f"official DCASE 2022 score (hmean of AUC_s, AUC_t, pAUC): "
        f"{_pct(ev.summary.official_score).strip()}"
    )
    for sec, why in ev.skipped.items():
        lines.append(f"not scored: {sec} ({why})")
    return "\n".join(lines)


def write_submission(
    out_dir: Path,
    records: Sequence[Clip],
    scores: NDArray[Any],
    thresholds: Mapping[str, float],
) -> list[Path]:
    """DCASE submission files per section: `anomaly_score_<machine>_section_<XX>_test.csv`
    (file name, score) and `decision_result_<machine>_section_<XX>_test.csv` (file name, 0/1:
    1 = anomalous, i.e. score > threshold); no header, clips in path order."""
    out_dir.mkdir(parents=True, exist_ok=True)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    written = []
    for sec, members in sorted(_groups(records).items()):
        idx = np.asarray(sorted(members, key=lambda i: records[i].path.name))
        thr = thresholds.get(sec, float("inf"))
        stem = f"{sec}_test.csv"
        for kind in ("anomaly_score", "decision_result"):
            path = out_dir / f"{kind}_{stem}"
            with path.open("w", newline="") as fh:
                w = csv.writer(fh, lineterminator="\n")
                for i in idx:
                    val = repr(float(s[i])) if kind == "anomaly_score" else int(s[i] > thr)
                    w.writerow([records[i].path.name, val])
            written.append(path)
    return written


def write_report(
    name: str,
    records: Sequence[Clip],
    scores: NDArray[Any],
    thresholds: Mapping[str, float],
    out_dir: Path | None = None,
    plots: bool = True,
    max_fpr: float = 0.1,
) -> tuple[Evaluation, dict[str, Any]]:
    """Evaluate one scorer, write its CSVs (and plots) under out_dir/name, return the JSON part."""
    ev = evaluate_scores(records, scores, max_fpr=max_fpr)
    if out_dir is not None:
        d = out_dir / name
        write_submission(d, records, scores, thresholds)
        if plots:
            from .plots import plot_histograms, plot_roc

            plot_roc(d / "plots", records, np.asarray(scores), max_fpr)
            plot_histograms(d / "plots", records, np.asarray(scores), thresholds)
    part = ev.to_dict()
    part["thresholds"] = {k: float(v) for k, v in sorted(thresholds.items())}
    return ev, part


def _finite(obj: Any) -> Any:
    """JSON has no inf/NaN: write them as null."""
    if isinstance(obj, float):
        return obj if np.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def write_json(path: Path, payload: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_finite(dict(payload)), indent=2, sort_keys=False) + "\n")


def evaluate_embeddings(
    train_emb: NDArray[Any],
    train_clips: Sequence[Clip],
    test_emb: NDArray[Any],
    test_clips: Sequence[Clip],
    config: BackendConfig = BackendConfig(),
    out_dir: Path | None = None,
    plots: bool = True,
) -> tuple[str, dict[str, Any]]:
    """(printable tables, JSON dict) for (n_models, N, D) embeddings: each model + ensemble."""
    tr, te = np.asarray(train_emb), np.asarray(test_emb)
    if tr.ndim == 2:
        tr, te = tr[None], te[None]
    parts = [backend_scores(tr[k], train_clips, te[k], test_clips, config) for k in range(len(tr))]
    named = [(f"model_{k}", p) for k, p in enumerate(parts)]
    if len(parts) > 1:
        named.append(("ensemble", ensemble(parts, config.percentile)))
    tables, results = [], {}
    singles: list[Summary] = []
    for i, (name, bs) in enumerate(named):
        last = i == len(named) - 1
        ev, part = write_report(
            name, test_clips, bs.scores, bs.thresholds, out_dir, plots=plots and last
        )
        tables.append(format_table(ev, name))
        results[name] = part
        if name.startswith("model_"):
            singles.append(ev.summary)
    payload: dict[str, Any] = {"backend": asdict(config), "results": results}
    if len(singles) > 1:
        spread = across_models(singles)
        payload["across_models"] = spread
        tables.insert(len(singles), format_spread(spread))
    return "\n\n".join(tables), payload


def across_models(summaries: Sequence[Summary]) -> dict[str, dict[str, float | None]]:
    """Mean and standard deviation over single models (the paper reports mean +- std of 5)."""
    rows: dict[str, list[float | None]] = {}
    for sm in summaries:
        for dom in ("source", "target", "mixed"):
            rows.setdefault(f"auc_{dom}", []).append(sm.auc[dom])
            rows.setdefault(f"pauc_{dom}", []).append(sm.pauc[dom])
        rows.setdefault("official_score", []).append(sm.official_score)
    out: dict[str, dict[str, float | None]] = {}
    for key, vals in rows.items():
        v = np.array([x for x in vals if x is not None], dtype=np.float64)
        out[key] = (
            {"mean": float(v.mean()), "std": float(v.std())}
            if v.size
            else {"mean": None, "std": None}
        )
    return out


def format_spread(spread: Mapping[str, Mapping[str, float | None]]) -> str:
    """The single models' harmonic means as mean +- std, in percent."""
    lines = ["== single models: mean +- std over models"]
    for key, v in spread.items():
        if v["mean"] is not None and v["std"] is not None:
            lines.append(f"{key:<16} {100 * v['mean']:6.2f} +- {100 * v['std']:5.2f}")
    return "\n".join(lines)


class ClipEmbedder(Protocol):
    """Anything that embeds clips: a trained run (model_build.runs.Run), the classical baseline,
    the exported TFLite model. Returns (n_models, N, D) or (N, D)."""

    def embed_clips(self, clips: Sequence[Clip]) -> NDArray[Any]: ...


def split_clips(clips: Sequence[Clip]) -> tuple[list[Clip], list[Clip]]:
    """(train, test): all test clips, and the training clips of the sections they belong to."""
    test = [c for c in clips if c.split == "test"]
    if not test:
        raise EdgeAgentError("data: no test clips found (expected <machine>/test/section_XX_*.wav)")
    sections = {c.section_id for c in test}
    train = [c for c in clips if c.split == "train" and c.section_id in sections]
    return train, test


def evaluate_embedder(
    embedder: ClipEmbedder,
    clips: Sequence[Clip],
    config: BackendConfig = BackendConfig(),
    out_dir: Path | None = None,
    plots: bool = True,
) -> tuple[str, dict[str, Any]]:
    """Embed the data set's train and test clips with `embedder`, then `evaluate_embeddings`."""
    train, test = split_clips(clips)
    tr, te = embedder.embed_clips(train), embedder.embed_clips(test)
    return evaluate_embeddings(tr, train, te, test, config, out_dir, plots)


def evaluation_record(payload: Mapping[str, Any]) -> dict[str, Any]:
    """The short form of an evaluation that travels with the run and into exported bundles:
    when, on which data, with which backend, and each scorer's harmonic means."""
    record: dict[str, Any] = _finite({
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "data": list(payload.get("data", [])),
        "backend": payload["backend"],
        "summaries": {name: part["summary"] for name, part in payload["results"].items()},
    })
    return record


def record_evaluation(run: Path, record: Mapping[str, Any]) -> None:
    """Store the latest evaluation in run.json (`evaluation`), where `model-build export`
    picks it up for the bundle manifest."""
    from .runs import read_meta, write_meta

    meta = read_meta(run)
    meta["evaluation"] = dict(record)
    write_meta(run, meta)
