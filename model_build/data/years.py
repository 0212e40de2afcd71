"""Which DCASE challenge year a data set is, so that it is scored by that year's rules.

The years differ in what the official evaluator computes and in what the submission files
are called (`model_build.evaluation.official` has the rules):

    2020       per machine id: AUC and pAUC over its test clips (one domain); the evaluator
               prints their arithmetic mean per machine type; files
               `anomaly_score_<machine>_id_XX.csv`
    2021       per section AND domain: AUC and pAUC over that domain's test clips; harmonic
               means over all (machine type, section, domain); files
               `anomaly_score_<machine>_section_XX_<domain>_test.csv` (+ decision_result_)
    2022-2024  per section: AUC(source) = source normal vs ALL anomalies, AUC(target)
               likewise, pAUC over all clips; score = hmean of those three per section over
               all sections; files `anomaly_score_<machine>_section_XX_test.csv` (+ decision_)

The year is read from the layout (`edge_agent.audio.dcase.layout_year`: 2020's machine-id
names, 2021's per-domain test folders and eval names; anything else is 2022-2024) or given
(`--year`). 2023 and 2024 are scored as 2022: their evaluators use the same definitions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from edge_agent.audio.dcase import layout_year
from edge_agent.errors import FieldError

if TYPE_CHECKING:
    from model_build.data.clip import Clip

Year = Literal["2020", "2021", "2022"]
"""A rule set: "2022" stands for 2022, 2023 and 2024."""
YEARS: tuple[str, ...] = ("2020", "2021", "2022", "2023", "2024")


def rules_of(year: str) -> Year:
    """The rule set of a challenge year given as text (`--year`), or FieldError("year")."""
    if year not in YEARS:
        raise FieldError("year", f"expected one of {', '.join(YEARS)} or auto, got {year!r}")
    if year == "2020":
        return "2020"
    if year == "2021":
        return "2021"
    return "2022"


def years_found(clips: Sequence[Clip]) -> dict[Year, Path]:
    """Each year the test clips' layout shows (the training clips' when there are no test
    clips), with one example path."""
    test = [c for c in clips if c.split == "test"] or list(clips)
    found: dict[Year, Path] = {}
    for c in test:
        found.setdefault(rules_of(layout_year(c.path) or "2022"), c.path)
    return found


def decide_year(found: Mapping[Year, Path], given: str | None = None) -> Year:
    """`given` (`--year`: a year or "auto"/None) or the one year the layout shows; several
    years at once without `given` are a FieldError("year")."""
    if given is not None and given != "auto":
        return rules_of(given)
    if len(found) > 1:
        examples = ", ".join(f"{y}: {p}" for y, p in sorted(found.items()))
        raise FieldError(
            "year",
            f"the data mix challenge years ({examples}); evaluate one "
            "year at a time, or say which rules to use",
        )
    return next(iter(found), "2022")
