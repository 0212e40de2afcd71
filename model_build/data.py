"""DCASE Task 2 data roots as a list of clip records (names parsed by `edge_agent.dcase`).

Eval-set test clips carry no label in their name (`section_XX_NNNN.wav`); their labels come
from the official `ground_truth_<machine>_section_XX_test.csv` files, looked up anywhere under
the given roots. Several roots (dev + eval + additional training) are read at once.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from edge_agent.dcase import (
    DOMAINS,
    GROUND_TRUTH,
    Domain,
    Label,
    Split,
    parse_clip_name,
    section_id,
)
from edge_agent.errors import EdgeAgentError


class DatasetError(EdgeAgentError):
    """A data root cannot be used (missing, empty, or in an unknown layout)."""


@dataclass(frozen=True)
class Clip:
    """One audio file and everything its path and the ground truth say about it."""

    path: Path
    machine: str
    section: str  # two digits, e.g. "00"
    split: Split
    domain: Domain | None  # None: eval test clip whose ground truth is unknown
    label: Label | None  # None: unknown
    attrs: str  # attribute string from the name, "" if none

    @property
    def section_id(self) -> str:
        """Machine type + section: the unit a backend and a threshold belong to."""
        return section_id(self.machine, self.section)

    @property
    def is_anomaly(self) -> bool:
        return self.label == "anomaly"


def parse_name(path: Path, machine: str, split: Split) -> Clip | None:
    """Parse one file name of the layout; None if the name is not a DCASE clip name."""
    name = parse_clip_name(path.name)
    if name is None:
        return None
    return Clip(path, machine, name.section, name.split or split, name.domain, name.label,
                name.attrs)


def _csv_domain(text: str, csv_path: Path) -> Domain | None:
    for d in DOMAINS:
        if text == d:
            return d
    if not text:
        return None
    raise DatasetError(f"{csv_path}: domain {text!r}: expected source or target")


def _ground_truth(roots: Sequence[Path]) -> dict[tuple[str, str], tuple[Label, Domain | None]]:
    """(machine, file name) -> (label, domain) from every ground-truth CSV under the roots."""
    table: dict[tuple[str, str], tuple[Label, Domain | None]] = {}
    for root in roots:
        for csv_path in sorted(root.rglob("ground_truth_*_test.csv")):
            m = GROUND_TRUTH.search(csv_path.name)
            if not m:
                continue
            with csv_path.open(newline="") as fh:
                for row in csv.reader(fh):
                    if len(row) < 2 or not row[1].strip().isdigit():
                        continue
                    domain = _csv_domain(row[2].strip() if len(row) > 2 else "", csv_path)
                    label: Label = "anomaly" if int(row[1]) == 1 else "normal"
                    table[(m["machine"], Path(row[0].strip()).name)] = (label, domain)
    return table


def scan(roots: Iterable[str | Path], splits: Sequence[Split] = ("train", "test")) -> list[Clip]:
    """All clips under the roots, sorted by path, eval labels filled in from ground truth.

    A root may be a dataset root (`<root>/<machine>/{train,test}`) or a single machine folder.
    Files whose names do not follow the layout are ignored (e.g. README files); a root with
    no clips at all is an error naming the root.
    """
    root_list = [Path(r) for r in roots]
    gt = _ground_truth(root_list)
    clips: list[Clip] = []
    for root in root_list:
        if not root.is_dir():
            raise DatasetError(f"{root}: data root not found (expected a folder)")
        machine_dirs = [root] if (root / "train").is_dir() or (root / "test").is_dir() else [
            d for d in sorted(root.iterdir()) if d.is_dir()
        ]
        found = 0
        for mdir in machine_dirs:
            for split in splits:
                sdir = mdir / split
                if not sdir.is_dir():
                    continue
                for f in sorted(sdir.glob("*.wav")):
                    clip = parse_name(f, mdir.name, split)
                    if clip is None:
                        continue
                    if clip.label is None and (mdir.name, f.name) in gt:
                        label, domain = gt[(mdir.name, f.name)]
                        clip = Clip(f, clip.machine, clip.section, split,
                                    domain or clip.domain, label, clip.attrs)
                    clips.append(clip)
                    found += 1
        if found == 0:
            raise DatasetError(
                f"{root}: no DCASE clips found (expected <machine>/{{train,test}}/section_XX_*.wav)"
            )
    return sorted(clips, key=lambda c: str(c.path))


def class_key(clip: Clip) -> str:
    """The auxiliary-task class: machine type + section, attribute string, domain."""
    return f"{clip.machine}|{clip.section}|{clip.attrs}|{clip.domain}"


def class_names(clips: Iterable[Clip]) -> list[str]:
    """Sorted auxiliary class names over the training clips."""
    return sorted({class_key(c) for c in clips if c.split == "train"})
