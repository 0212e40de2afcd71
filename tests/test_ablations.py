"""benchmarks/ablations.py: the paper's numbers it prints, what it trains, how it compares the
direction of each effect (the training itself is a benchmark, not a test: BENCHMARKS.md)."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
PAPER_TEXT = REPO.parent / "shared" / "paper" / "design-choices-asd-icassp2023.txt"
sys.path.insert(0, str(REPO / "benchmarks"))

import ablations  # noqa: E402
from paper_tables import COMPARISONS, PAPER  # noqa: E402


def _table_text(text: str, table: str) -> str:
    start = re.search(rf"Table {table}\. ", text)
    end = re.search(rf"Table {int(table) + 1}\. ", text)
    assert start and end
    return text[start.start() : end.start()]


def test_every_paper_number_is_in_its_table() -> None:
    if not PAPER_TEXT.is_file():
        pytest.skip(f"the paper's text is not next to this checkout ({PAPER_TEXT})")
    text = PAPER_TEXT.read_text()
    for table, systems in PAPER.items():
        block = _table_text(text, table)
        for name, splits in systems.items():
            for split, row in splits.items():
                for dom, (auc, pauc) in row.items():
                    for v in (auc, pauc):
                        assert f"{v:.2f} ±" in block, (table, name, split, dom, v)


def test_the_paper_network_is_the_same_row_in_every_table() -> None:
    paper = PAPER["3"]["paper"]
    assert PAPER["4"]["paper"] == PAPER["5"]["paper"] == PAPER["6"]["cosine_joint"] == paper
    assert PAPER["4"]["spectrogram"] == PAPER["5"]["spectrogram"]
    assert paper["dev"]["mixed"] == (81.36, 66.55)  # the paper's headline numbers


def test_what_each_table_trains() -> None:
    assert ablations.trained_needed(["6"]) == ["paper"]
    need4 = ablations.trained_needed(["4"])
    assert {"spectrum", "spectrogram", "logmel", "add", "paper"} == set(need4)
    assert len(ablations.trained_needed(["3", "4", "5", "6"])) == len(ablations.TRAINED)
    for table, _, base, alt in COMPARISONS:
        assert base in PAPER[table] and alt in PAPER[table]


def _as_ours(table: str, sign: float = 1.0) -> dict[str, dict[str, Any]]:
    """Results equal to the paper's dev means (sign=-1: every difference reversed)."""
    return {s: {k: {d: sign * v["dev"][d][i] / 100 for d in ablations.DOMAINS}
                for i, k in enumerate(("auc", "pauc"))}
            for s, v in PAPER[table].items()}


def test_directions_agree_with_the_paper_itself_and_not_with_its_reverse() -> None:
    tables = ["3", "4", "5", "6"]
    same = {s: v for t in tables for s, v in _as_ours(t).items()}
    text, tally = ablations.directions(tables, same)
    assert tally["differ"] == 0 and tally["agree"] > 0
    assert tally["agree"] + tally["unclear"] == len(COMPARISONS)
    assert "T3 no bias terms (fixed centres)" in text
    _, flipped = ablations.directions(tables, {s: v for t in tables
                                               for s, v in _as_ours(t, -1.0).items()})
    assert flipped["agree"] == 0 and flipped["differ"] == tally["agree"]


def test_tables_print_ours_beside_the_paper() -> None:
    ours = _as_ours("6")
    ours["gmm_target"]["auc"]["target"] = None  # a domain without both classes
    text = ablations.format_table("6", ours)
    assert text.splitlines()[0] == "== Table 6: backends"
    row = next(ln for ln in text.splitlines() if ln.startswith("gmm_target"))
    assert row.split() == ["gmm_target", "62.4", "-", "70.8", "58.4", "62.4", "79.9", "70.8",
                           "58.4"]
