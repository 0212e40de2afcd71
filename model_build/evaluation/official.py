"""Each DCASE year's official figures, computed as that year's evaluator computes them.

From the per-section metrics of `model_build.evaluation.metrics` (which hold every view), per
rule set (`model_build.data.years`):

* **2020** (dcase2020_task2_evaluator): per machine id, AUC and pAUC over all its test clips
  (one domain); per machine type their ARITHMETIC mean ("Average"). The challenge ranked
  systems per machine type, so there is no single official score (`score` is None).
* **2021** (dcase2021_task2_evaluator): per machine type, section AND domain, AUC and pAUC over
  that domain's test clips only (its normal and its anomalous clips); harmonic means of the
  AUCs and of the pAUCs over all (machine type, section, domain); the official score is the
  harmonic mean of all those AUCs and pAUCs together.
* **2022-2024** (dcase2022/2023/2024_task2_evaluator): per section, AUC(source) = source
  normal clips vs ALL anomalous clips of the section, AUC(target) likewise, pAUC over all
  clips of the section; the official score is the harmonic mean of those three values over
  all sections.

The evaluators floor values at machine epsilon before their harmonic means; an AUC of
exactly 0 does not occur in practice, and `metrics.hmean` returns 0 for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from edge_agent.audio.dcase import parse_section_id
from model_build.data.years import Year
from model_build.evaluation.metrics import SectionMetrics, hmean, machine_type

NO_TRUTH = {
    "2020": "no ground truth: put the challenge's eval_data_list.csv (Zenodo) below --data "
    "or --ground-truth",
    "2021": "no ground truth: needs ground_truth_<machine>_section_XX_<domain>_test.csv "
    "(dcase2021_task2_evaluator) below --data or --ground-truth",
    "2022": "no ground truth: needs the evaluator's ground_truth_data/ and "
    "ground_truth_domain/ folders below --data or --ground-truth",
}
"""Why a section of eval clips without labels is not scored, and what would score it."""


@dataclass(frozen=True)
class Official:
    """One year's official figures: a row per unit the evaluator scores, means per machine
    type, and the single score where the year had one."""

    year: Year
    columns: tuple[str, ...]
    rows: list[tuple[str, list[float | None]]]  # unit -> a value per column
    machines: list[tuple[str, list[float | None]]]  # machine type -> its mean per column
    score: float | None
    score_rule: str

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["rows"] = {u: dict(zip(self.columns, v, strict=True)) for u, v in self.rows}
        d["machines"] = {m: dict(zip(self.columns, v, strict=True)) for m, v in self.machines}
        return d


def unit_name(section: str, year: Year) -> str:
    """What the year calls a section: 2020's machine ids (`fan_id_00`), else the section."""
    if year != "2020":
        return section
    machine, xx = parse_section_id(section)
    return f"{machine}_id_{xx}"


def _mean(values: Sequence[float | None]) -> float | None:
    v = [x for x in values if x is not None]
    return float(np.mean(v)) if v else None


def _rows(
    year: Year, sections: Sequence[SectionMetrics]
) -> tuple[tuple[str, ...], list[tuple[str, list[float | None]]], list[str]]:
    """(columns, a row per unit the year's evaluator scores, each row's machine type)."""
    rows: list[tuple[str, list[float | None]]] = []
    owner: list[str] = []
    if year == "2020":
        for m in sections:
            rows.append((unit_name(m.section, year), [m.auc["mixed"], m.pauc["mixed"]]))
            owner.append(machine_type(m.section))
        return ("AUC", "pAUC"), rows, owner
    if year == "2021":
        for dom in ("source", "target"):
            for m in sections:
                if m.auc[dom] is not None:
                    rows.append((f"{m.section} {dom}", [m.auc[dom], m.pauc[dom]]))
                    owner.append(machine_type(m.section))
        return ("AUC", "pAUC"), rows, owner
    for m in sections:
        rows.append((m.section, [m.official_auc_source, m.official_auc_target, m.official_pauc]))
        owner.append(machine_type(m.section))
    return ("AUC source", "AUC target", "pAUC"), rows, owner


def official(year: Year, sections: Sequence[SectionMetrics]) -> Official:
    """The year's official figures from per-section metrics."""
    columns, rows, owner = _rows(year, sections)
    average = _mean if year == "2020" else hmean
    machines = []
    for mt in sorted(set(owner)):
        mine = [v for (_, v), o in zip(rows, owner, strict=True) if o == mt]
        machines.append((mt, [average([r[i] for r in mine]) for i in range(len(columns))]))
    if year == "2020":
        score, rule = (
            None,
            (
                "2020 had no single score (systems were ranked per machine "
                "type); per type: arithmetic means over its machine ids"
            ),
        )
    elif year == "2021":
        score = hmean(v for _, vals in rows for v in vals)
        rule = "hmean of AUC and pAUC over all machine types, sections and domains"
    else:
        score = hmean(v for _, vals in rows for v in vals)
        rule = "hmean of AUC source, AUC target and pAUC over all sections"
    return Official(year, columns, rows, machines, score, rule)


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.2f}"


def format_official(o: Official) -> str:
    """The official block of a table: rows (2020: per machine id; 2021: per section and
    domain), means per machine type, the score and its rule."""
    lines = [f"-- official DCASE {o.year if o.year != '2022' else '2022-2024'} figures (%)"]
    first = "machine type" if o.year == "2022" else "unit"
    lines.append(f"{first:<34} " + " ".join(f"{c:>10}" for c in o.columns))
    if o.year != "2022":  # 2022's per-section values are columns of the main table
        lines += [f"{u:<34} " + " ".join(f"{_pct(v):>10}" for v in vals) for u, vals in o.rows]
    kind = "mean" if o.year == "2020" else "hmean"
    lines += [
        f"{m + ' (' + kind + ')':<34} " + " ".join(f"{_pct(v):>10}" for v in vals)
        for m, vals in o.machines
    ]
    if o.score is not None:
        lines.append(
            f"official DCASE {o.year if o.year != '2022' else '2022-2024'} score: "
            f"{_pct(o.score)} ({o.score_rule})"
        )
    else:
        lines.append(o.score_rule)
    return "\n".join(lines)
