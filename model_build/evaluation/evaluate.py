"""`model-build evaluate`: score a trained run on DCASE data and report the challenge metrics.

The pipeline is split so every scorer in the project is judged by the same code:

* `backend_scores` fits one section backend per section with
`edge_agent.scoring.backend.fit_section`
  (THE fit: export and the device's calibrate/enrol call it too, so the threshold reported
  here is the one a bundle ships) on the training embeddings of one or more components (the
  models of an ensemble, the classical components of edge_agent.scoring.classical), and scores
  the test embeddings;
* `evaluate_scores` is pure: test clip records + one score per clip -> per-section AUC/pAUC
  (paper view and every official view, see model_build.evaluation.metrics), harmonic means,
  and the official figures of the data's challenge year (model_build.evaluation.official).
  The classical baseline and the device path (TFLite) call it with their own scores;
* `write_report` writes the DCASE submission CSVs (named as the year's evaluator expects
  them), the plots and returns the JSON-able dict.

Scorers a run is reported as: every model alone, the ensemble of all models (the paper,
section 4: scores summed; here standardised first), and the system as exported: the models
plus the classical components (`classical=True`, the default).
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from edge_agent.audio.dcase import parse_section_id
from edge_agent.audio.files import load_clip
from edge_agent.errors import EdgeAgentError
from edge_agent.scoring.backend import (
    PAPER_BACKEND,
    BackendConfig,
    SectionBackend,
    fit_section,
    view_weights,
)
from edge_agent.scoring.frontend import FrontendSpec
from edge_agent.scoring.fusion import Choice
from edge_agent.scoring.pseudo import EmbedBatch, PseudoSet, section_pseudo
from model_build.data.clip import Clip
from model_build.data.years import Year
from model_build.evaluation.metrics import (
    SectionMetrics,
    Summary,
    hmean,
    section_metrics,
    summarise,
)
from model_build.evaluation.official import (
    NO_TRUTH,
    Official,
    format_official,
    official,
    unit_name,
)
from model_build.evaluation.scores import BackendScores, _groups, section_rows
from model_build.progress import Progress

METHODS = ("cosine", "gmm")
BACKENDS = {"default": BackendConfig(), "paper": PAPER_BACKEND}
"""Named backend configurations: ours (k-NN references, local density, standardised and
summed components) and the paper's (k-means + target clips, raw cosine distance)."""


def _as_components(emb: NDArray[Any] | Sequence[NDArray[Any]]) -> list[NDArray[np.float64]]:
    """(N, D) -> one component; (n, N, D) or a list of (N, D_i) -> one per entry."""
    if isinstance(emb, np.ndarray) and emb.ndim == 2:
        return [np.asarray(emb, dtype=np.float64)]
    return [np.asarray(e, dtype=np.float64) for e in emb]


def backend_scores(
    train_emb: NDArray[Any] | Sequence[NDArray[Any]],
    train_clips: Sequence[Clip],
    test_emb: NDArray[Any] | Sequence[NDArray[Any]],
    test_clips: Sequence[Clip],
    config: BackendConfig = BackendConfig(),
    weights: Sequence[float] | None = None,
    pseudo: Mapping[str, PseudoSet] | None = None,
    kinds: Sequence[str] | None = None,
) -> BackendScores:
    """Fit one backend per section on the NORMAL training embeddings, score the test clips.

    `train_emb`/`test_emb`: (N, D) for one component, or a list of (N, D_i), one per
    component (the models of an ensemble, the classical features), fused with `weights`
    (default 1 each), or, with `pseudo` (section id -> its pseudo-anomalies, `pseudo_sets`)
    and the components' `kinds`, with weights decided per section (backend.fit_section).
    Training clips of a section are split by domain (edge_agent.scoring.backend); thresholds
    are cross-fitted.
    """
    trs, tes = _as_components(train_emb), _as_components(test_emb)
    if len(trs) != len(tes):
        raise EdgeAgentError(f"embeddings: {len(trs)} train / {len(tes)} test components")
    for tr, te in zip(trs, tes, strict=True):
        if tr.shape[0] != len(train_clips) or te.shape[0] != len(test_clips):
            raise EdgeAgentError(
                f"embeddings: {tr.shape[0]} train / {te.shape[0]} test rows for "
                f"{len(train_clips)} / {len(test_clips)} clips"
            )
    train_sections = {c.section_id for c in train_clips}
    scores = np.full(len(test_clips), np.nan)
    thresholds: dict[str, float] = {}
    normal: dict[str, NDArray[np.float64]] = {}
    backends: dict[str, SectionBackend] = {}
    choices: dict[str, Choice] = {}
    for sec, t_idx in sorted(_groups(test_clips).items()):
        if sec not in train_sections:
            raise EdgeAgentError(f"{sec}: test clips but no training clips to fit a backend on")
        src, tgt = section_rows(train_clips, sec)
        fit = fit_section(
            [e[src] for e in trs],
            [e[tgt] for e in trs],
            config,
            weights=weights,
            pseudo=None if pseudo is None else pseudo.get(sec),
            kinds=kinds,
        )
        scores[t_idx] = fit.backend.score([e[t_idx] for e in tes], config.variant)
        normal[sec] = fit.held_out
        thresholds[sec] = fit.backend.threshold
        backends[sec] = fit.backend
        if fit.choice is not None:
            choices[sec] = fit.choice
    return BackendScores(scores, thresholds, normal, backends, choices)


def pseudo_sets(
    embed_waves: EmbedBatch,
    train_clips: Sequence[Clip],
    spec: FrontendSpec,
    config: BackendConfig,
) -> dict[str, PseudoSet]:
    """Every training section's pseudo-anomalies (edge_agent.scoring.pseudo.section_pseudo: the same
    copies export and the device make), embedded by `embed_waves` ((M, samples) waves -> one
    (M, D_i) array per component)."""
    out: dict[str, PseudoSet] = {}
    for sec in sorted({c.section_id for c in train_clips}):
        src, tgt = section_rows(train_clips, sec)
        rows = np.concatenate([src, tgt])
        if rows.size < 2:
            continue

        def wave(i: int, rows: NDArray[np.intp] = rows) -> NDArray[np.float32]:
            return load_clip(train_clips[int(rows[i])].path, spec)

        out[sec] = section_pseudo(
            sec,
            int(rows.size),
            wave,
            embed_waves,
            spec.sample_rate,
            config,
        )
    return out


def _subset(
    pseudo: Mapping[str, PseudoSet] | None, idx: Sequence[int]
) -> dict[str, PseudoSet] | None:
    if pseudo is None:
        return None
    return {
        s: PseudoSet([p.embeddings[i] for i in idx] if len(p.origin) else [], p.origin)
        for s, p in pseudo.items()
    }


@dataclass(frozen=True)
class Evaluation:
    """Metrics of one scorer on a test set."""

    sections: list[SectionMetrics]
    summary: Summary
    skipped: dict[str, str]  # section id -> why it has no metrics (no ground truth, one class)
    official: Official | None = field(default=None)  # the data's year's official figures

    def to_dict(self) -> dict[str, Any]:
        return {
            "sections": [m.to_dict() for m in self.sections],
            "summary": self.summary.to_dict(),
            "skipped": dict(self.skipped),
            "official": None if self.official is None else self.official.to_dict(),
        }


def evaluate_scores(
    records: Sequence[Clip], scores: NDArray[Any], max_fpr: float = 0.1, year: Year = "2022"
) -> Evaluation:
    """Pure: per-section metrics, harmonic means and the official figures of challenge
    `year` (its rules: model_build.evaluation.official) from test clips and their scores.

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
            skipped[sec] = NO_TRUTH[year]
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
    off = official(year, sections)
    summary = replace(summarise(sections), official_score=off.score, year=year)
    return Evaluation(sections, summary, skipped, off)


def _pct(v: float | None) -> str:
    return "   -  " if v is None else f"{100 * v:6.2f}"


def format_table(ev: Evaluation, title: str) -> str:
    """A DCASE-style text table (percent): per section AUC/pAUC per domain (paper view; for
    2022-2024 data also the official per-section AUC source/target), the harmonic means, then
    the official figures of the data's year (`model_build.evaluation.official`)."""
    off = ev.official
    year = off.year if off is not None else "2022"
    extra = year == "2022"
    head = (
        f"{'section':<28} {'AUC src':>7} {'pAUC src':>8} {'AUC tgt':>7} {'pAUC tgt':>8} "
        f"{'AUC mix':>7} {'pAUC mix':>8}" + (f" {'off src':>7} {'off tgt':>7}" if extra else "")
    )
    lines = [f"== {title}", head, "-" * len(head)]

    def row(
        name: str,
        a: Mapping[str, float | None],
        p: Mapping[str, float | None],
        o: tuple[float | None, float | None] | None = None,
    ) -> str:
        tail = "" if o is None else f" {_pct(o[0]):>7} {_pct(o[1]):>7}"
        return (
            f"{name:<28} {_pct(a['source']):>7} {_pct(p['source']):>8} {_pct(a['target']):>7} "
            f"{_pct(p['target']):>8} {_pct(a['mixed']):>7} {_pct(p['mixed']):>8}{tail}"
        )

    for m in ev.sections:
        lines.append(
            row(
                unit_name(m.section, year),
                m.auc,
                m.pauc,
                (m.official_auc_source, m.official_auc_target) if extra else None,
            )
        )
    lines.append("-" * len(head))
    hm = (
        (
            hmean(m.official_auc_source for m in ev.sections),
            hmean(m.official_auc_target for m in ev.sections),
        )
        if extra
        else None
    )
    lines.append(
        row(f"harmonic mean ({ev.summary.n_sections})", ev.summary.auc, ev.summary.pauc, hm)
    )
    if extra:
        lines.append(
            "(paper view: a domain's own normal and anomalous clips; off src/tgt: "
            "the official AUC, that domain's normal clips vs ALL anomalous clips)"
        )
    if off is not None and ev.sections:
        lines.append(format_official(off))
    if ev.summary.machines:
        lines.append(f"{'machine type (hmean, mixed)':<28} {'AUC':>7} {'pAUC':>8} {'mean':>7}")
        for machine, v in ev.summary.machines.items():
            lines.append(
                f"{machine:<28} {_pct(v['auc']):>7} {_pct(v['pauc']):>8} {_pct(v['mean']):>7}"
            )
    for sec, why in ev.skipped.items():
        lines.append(f"not scored: {sec} ({why})")
    return "\n".join(lines)


def submission_files(section: str, domain: str | None, year: Year) -> tuple[str, str | None]:
    """(anomaly score file, decision file or None) of one section's clips, as the year's
    evaluator names them: 2020 `anomaly_score_<machine>_id_XX.csv` (no decisions);
    2021 `..._section_XX_<domain>_test.csv` (one pair per domain); 2022-2024
    `..._section_XX_test.csv`."""
    machine, xx = parse_section_id(section)
    if year == "2020":
        return f"anomaly_score_{machine}_id_{xx}.csv", None
    stem = f"{section}_{domain}_test.csv" if year == "2021" else f"{section}_test.csv"
    return f"anomaly_score_{stem}", f"decision_result_{stem}"


def write_submission(
    out_dir: Path,
    records: Sequence[Clip],
    scores: NDArray[Any],
    thresholds: Mapping[str, float],
    year: Year = "2022",
) -> list[Path]:
    """DCASE submission files per section (2021: per section and domain), named as the
    year's evaluator expects them (`submission_files`): (file name, score) rows and
    (file name, 0/1: 1 = anomalous, i.e. score > threshold) rows; no header, clips in name
    order."""
    out_dir.mkdir(parents=True, exist_ok=True)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    groups: dict[tuple[str, str | None], list[int]] = {}
    for i, c in enumerate(records):
        groups.setdefault((c.section_id, c.domain if year == "2021" else None), []).append(i)
    written = []
    for (sec, domain), members in sorted(groups.items(), key=lambda kv: str(kv[0])):
        if year == "2021" and domain is None:
            raise EdgeAgentError(
                f"{records[members[0]].path}: a 2021 test clip without a "
                "domain (expected it in its name or folder)"
            )
        idx = sorted(members, key=lambda i: records[i].path.name)
        thr = thresholds.get(sec, float("inf"))
        score_name, decision_name = submission_files(sec, domain, year)
        for name, kind in ((score_name, "score"), (decision_name, "decision")):
            if name is None:
                continue
            path = out_dir / name
            with path.open("w", newline="") as fh:
                w = csv.writer(fh, lineterminator="\n")
                for i in idx:
                    val = repr(float(s[i])) if kind == "score" else int(s[i] > thr)
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
    year: Year = "2022",
) -> tuple[Evaluation, dict[str, Any]]:
    """Evaluate one scorer, write its CSVs (and plots) under out_dir/name, return the JSON part."""
    ev = evaluate_scores(records, scores, max_fpr=max_fpr, year=year)
    if out_dir is not None:
        d = out_dir / name
        write_submission(d, records, scores, thresholds, year)
        if plots:
            from model_build.evaluation.plots import plot_histograms, plot_roc

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


def scorer_parts(n_models: int, n_classical: int) -> list[tuple[str, list[int]]]:
    """(name, component indices) of every scorer a run is reported as: each model alone, the
    ensemble when there are several, and the hybrid with the classical components (indices
    `n_models`...) when there are any. The last one is the system `export` ships."""
    parts = [(f"model_{k}", [k]) for k in range(n_models)]
    if n_models > 1:
        parts.append(("ensemble", list(range(n_models))))
    if n_classical:
        parts.append(("system", list(range(n_models + n_classical))))
    return parts


def evaluate_embeddings(
    train_emb: NDArray[Any],
    train_clips: Sequence[Clip],
    test_emb: NDArray[Any],
    test_clips: Sequence[Clip],
    config: BackendConfig = BackendConfig(),
    out_dir: Path | None = None,
    plots: bool = True,
    classical: tuple[Sequence[NDArray[Any]], Sequence[NDArray[Any]]] | None = None,
    method: str = "cosine",
    pseudo: Mapping[str, PseudoSet] | None = None,
    classical_kinds: Sequence[str] | None = None,
    year: Year = "2022",
) -> tuple[str, dict[str, Any]]:
    """(printable tables, JSON dict) for (n_models, N, D) embeddings: each model, the
    ensemble, and with `classical` = (train, test) lists of classical embeddings (one (N, D_i)
    array per classical component, of `classical_kinds`), the hybrid system. `pseudo`: every
    section's pseudo-anomalies in all those components (`pseudo_sets`), for per-section
    weights (`config.weighting == "pseudo"`)."""
    if method not in METHODS:
        raise EdgeAgentError(f"--method: expected one of {METHODS}, got {method!r}")
    tr, te = np.asarray(train_emb), np.asarray(test_emb)
    if tr.ndim == 2:
        tr, te = tr[None], te[None]
    comps_tr, comps_te = list(tr), list(te)
    n_classical = 0
    if classical is not None and method == "cosine":
        comps_tr += [np.asarray(c) for c in classical[0]]
        comps_te += [np.asarray(c) for c in classical[1]]
        n_classical = len(classical[0])
    # every classical view weighs one, the models together weigh one (backend.view_weights),
    # unless the sections decide (config.weighting == "pseudo" and pseudo-anomalies given)
    names = list(classical_kinds or ()) or [f"classical_{i}" for i in range(n_classical)]
    kinds = ["model"] * len(tr) + names[:n_classical]
    named: list[tuple[str, BackendScores]] = []
    for name, idx in scorer_parts(len(tr), n_classical):
        if method == "gmm":
            from model_build.evaluation.gmm import gmm_scores

            bs = gmm_scores(
                [comps_tr[i] for i in idx],
                train_clips,
                [comps_te[i] for i in idx],
                test_clips,
                config,
            )
        else:
            bs = backend_scores(
                [comps_tr[i] for i in idx],
                train_clips,
                [comps_te[i] for i in idx],
                test_clips,
                config,
                view_weights([kinds[i] for i in idx]),
                _subset(pseudo, idx),
                [kinds[i] for i in idx],
            )
        named.append((name, bs))
    tables, results = [], {}
    singles: list[Summary] = []
    for i, (name, bs) in enumerate(named):
        last = i == len(named) - 1
        ev, part = write_report(
            name, test_clips, bs.scores, bs.thresholds, out_dir, plots=plots and last, year=year
        )
        tables.append(format_table(ev, name))
        results[name] = part
        if name.startswith("model_"):
            singles.append(ev.summary)
    payload: dict[str, Any] = {
        "method": method,
        "backend": config.to_dict(),
        "results": results,
        "system": named[-1][0],
        # GMM sections (Table 6) are no weighted components: nothing to record
        "weights": weights_record(named[-1][1]) if method == "cosine" else {},
        "year": year,
    }
    if len(singles) > 1:
        spread = across_models(singles)
        payload["across_models"] = spread
        tables.insert(len(singles), format_spread(spread))
    return "\n\n".join(tables), payload


def weights_record(bs: BackendScores) -> dict[str, dict[str, Any]]:
    """Per section: each component's weight (and its deviation score's, where it has one)
    and, where the section decided them, each group's separation of held-out normal clips
    from pseudo-anomalies (AUC)."""
    out: dict[str, dict[str, Any]] = {}
    for sec, b in sorted(bs.backends.items()):
        ch = bs.choices.get(sec)
        out[sec] = {"weights": [round(c.weight, 6) for c in b.components]}
        if any(c.deviation for c in b.components):
            out[sec]["deviation_weights"] = [round(c.dev_weight, 6) for c in b.components]
        if ch is not None:
            out[sec] |= {
                "groups": list(ch.groups),
                "group_weights": list(ch.group_weights),
                "separation": [round(x, 4) for x in ch.separation],
                "fused_separation": round(ch.fused, 4),
            }
    return out


def format_weights(record: Mapping[str, Mapping[str, Any]]) -> str:
    """One line per section: the group weights the section chose and each group's AUC
    against the pseudo-anomalies."""
    lines = ["== per-section weights (held-out normal clips vs pseudo-anomalies, AUC %)"]
    for sec, r in record.items():
        if "groups" not in r:
            continue
        parts = [
            f"{g} {w:.2f} ({100 * a:.0f})"
            for g, w, a in zip(r["groups"], r["group_weights"], r["separation"], strict=True)
        ]
        lines.append(f"{sec:<28} " + ", ".join(parts))
    return "\n".join(lines) if len(lines) > 1 else ""


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
    """Anything that embeds clips: a trained run (model_build.training.runs.Run), the classical
    baseline, the exported bundle. Returns (n_models, N, D), (N, D) or one (N, D_i) per
    component. Per-section weighting also needs `spec` and `embed_waves` (the same for waves
    in memory: the pseudo-anomalies); an embedder without them is scored with fixed weights."""

    def embed_clips(self, clips: Sequence[Clip]) -> NDArray[Any] | list[NDArray[Any]]: ...


def split_clips(clips: Sequence[Clip]) -> tuple[list[Clip], list[Clip]]:
    """(train, test): all test clips, and the training clips of the sections they belong to."""
    test = [c for c in clips if c.split == "test"]
    if not test:
        raise EdgeAgentError("data: no test clips found (expected <machine>/test/section_XX_*.wav)")
    sections = {c.section_id for c in test}
    train = [c for c in clips if c.split == "train" and c.section_id in sections]
    return train, test


Embeddings = NDArray[Any] | list[NDArray[Any]]
EMBED_CHUNK = 64


def _join(parts: Sequence[Embeddings]) -> Embeddings:
    """Chunks of one embedder's output, joined along the clip axis."""
    first = parts[0]
    if isinstance(first, list):
        return [np.concatenate([p[k] for p in parts], axis=0) for k in range(len(first))]
    axis = 1 if np.asarray(first).ndim == 3 else 0
    return np.concatenate([np.asarray(p) for p in parts], axis=axis)


def embed_with_progress(
    embedder: ClipEmbedder, clips: Sequence[Clip], label: str, progress: bool = False
) -> Embeddings:
    """`embedder.embed_clips(clips)`, called on chunks so that a progress bar can follow
    (DCASE 2022 has ~40 000 clips to embed)."""
    if not clips:
        return embedder.embed_clips(clips)
    parts = []
    with Progress(len(clips), label, progress) as bar:
        for i in range(0, len(clips), EMBED_CHUNK):
            chunk = clips[i : i + EMBED_CHUNK]
            parts.append(embedder.embed_clips(chunk))
            bar.update(len(chunk))
    return _join(parts)


def evaluate_embedder(
    embedder: ClipEmbedder,
    clips: Sequence[Clip],
    config: BackendConfig = BackendConfig(),
    out_dir: Path | None = None,
    plots: bool = True,
    classical: ClipEmbedder | None = None,
    method: str = "cosine",
    progress: bool = False,
    year: Year = "2022",
) -> tuple[str, dict[str, Any]]:
    """Embed the data set's train and test clips with `embedder` (and `classical`), then
    `evaluate_embeddings` by the rules of challenge `year`. `progress`: bars on stderr while
    embedding."""
    train, test = split_clips(clips)
    tr = embed_with_progress(embedder, train, "embedding train clips", progress)
    te = embed_with_progress(embedder, test, "embedding test clips", progress)
    spec: FrontendSpec | None = getattr(embedder, "spec", None)
    per_section = (
        config.weighting == "pseudo"
        and method == "cosine"
        and spec is not None
        and hasattr(embedder, "embed_waves")
    )
    if isinstance(tr, list):  # an exported bundle: its components are ONE scorer
        weights = getattr(embedder, "weights", None)
        kinds: list[str] | None = getattr(embedder, "kinds", None)
        pseudo = None
        if per_section and spec is not None and kinds and len(set(kinds)) > 1:
            pseudo = pseudo_sets(embedder.embed_waves, train, spec, config)  # type: ignore[attr-defined]
        bs = backend_scores(tr, train, list(te), test, config, weights, pseudo, kinds)
        ev, part = write_report("system", test, bs.scores, bs.thresholds, out_dir, plots, year=year)
        record = weights_record(bs)
        text = format_table(ev, "system")
        if format_weights(record):
            text += "\n\n" + format_weights(record)
        return text, {
            "method": method,
            "backend": config.to_dict(),
            "results": {"system": part},
            "system": "system",
            "weights": record,
            "year": year,
        }
    cls = None
    pseudo = None
    if classical is not None:
        c_tr = embed_with_progress(classical, train, "classical, train", progress)
        c_te = embed_with_progress(classical, test, "classical, test", progress)
        cls = (
            list(c_tr) if isinstance(c_tr, list) else [c_tr],
            list(c_te) if isinstance(c_te, list) else [c_te],
        )
        if per_section and spec is not None and hasattr(classical, "embed_waves"):
            both = joined_waves(embedder, classical)
            pseudo = pseudo_sets(both, train, spec, config)
    text, payload = evaluate_embeddings(
        np.asarray(tr),
        train,
        np.asarray(te),
        test,
        config,
        out_dir,
        plots,
        cls,
        method,
        pseudo,
        getattr(classical, "kinds", None),
        year=year,
    )
    if format_weights(payload["weights"]):
        text += "\n\n" + format_weights(payload["weights"])
    return text, payload


def joined_waves(models: ClipEmbedder, classical: ClipEmbedder) -> EmbedBatch:
    """(M, samples) waves -> every model's (M, D) embeddings, then every classical one's."""

    def embed(waves: NDArray[np.float32]) -> list[NDArray[np.floating]]:
        m = np.asarray(models.embed_waves(waves))  # type: ignore[attr-defined]
        c = classical.embed_waves(waves)  # type: ignore[attr-defined]
        return [*(m if m.ndim == 3 else m[None]), *(c if isinstance(c, list) else [c])]

    return embed


def first_shot(test_clips: Sequence[Clip], class_names: Sequence[str]) -> list[str]:
    """Test sections of machine types the network never saw in training (DCASE 2023/2024's
    first-shot evaluation): their backends are fitted on their own normal clips, but the
    embedding was learned without them. `class_names`: the run's (`data.class_key`)."""
    trained = {name.split("|", 1)[0] for name in class_names}
    return sorted({c.section_id for c in test_clips if c.machine not in trained})


def evaluation_record(payload: Mapping[str, Any]) -> dict[str, Any]:
    """The short form of an evaluation that travels with the run and into exported bundles:
    when, on which data, with which backend, and each scorer's harmonic means."""
    record: dict[str, Any] = _finite(
        {
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "data": list(payload.get("data", [])),
            "backend": payload["backend"],
            "summaries": {name: part["summary"] for name, part in payload["results"].items()},
        }
    )
    return record


def record_evaluation(run: Path, record: Mapping[str, Any]) -> None:
    """Store the latest evaluation in run.json (`evaluation`), where `model-build export`
    picks it up for the bundle manifest."""
    from model_build.training.runs import read_meta, write_meta

    meta = read_meta(run)
    meta["evaluation"] = dict(record)
    write_meta(run, meta)
