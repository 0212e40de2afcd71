"""The official ground truth of DCASE evaluation sets, read strictly.

Evaluation-set test clips have anonymous names (`section_03_0000.wav`); what they are comes
in CSV files, as the challenge's own evaluators ship them:

* 2022-2024: two folders of identically named files,
  `ground_truth_data/ground_truth_<machine>_section_<XX>_test.csv` (`file,label`, 1 = anomaly)
  and `ground_truth_domain/ground_truth_<machine>_section_<XX>_test.csv` (`file,domain`,
  0 = source, 1 = target); `ground_truth_attributes/` (2023) is not ground truth and is
  skipped;
* 2021: `ground_truth_<machine>_section_<XX>_<source|target>_test.csv` (`file,label`); the
  domain is in the clip's name and the file's name;
* 2020: one `eval_data_list.csv` (the challenge's Zenodo record) for every machine type: a
  line holding only a machine type opens its block, then `<anonymous name>,<labelled
  name>,<0|1>` rows (`id_02_00000000.wav,anomaly_id_02_00000000.wav,1`); one domain, so
  labels are all it gives.

A file is a domain file when it lies in a folder named `ground_truth_domain`, and a label
file otherwise; files are looked for anywhere below the given roots. Rows have two columns
and no header (an optional `file,label` / `file,domain` header line is accepted).

Wrong ground truth gives wrong numbers that look right (a domain file read as labels once
turned AUC 59 into 87), so anything ambiguous or incomplete is an error naming the file: a
row that is not `<clip>.wav,0|1`, a clip named twice, a file naming clips that are not there,
a test clip of a section with ground truth but without a label or a domain, a label that
contradicts the clip's own name. Sections without any ground-truth file keep unknown labels:
their scores can still be written for submission, and evaluation lists them as not scored.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TypeVar

from edge_agent.audio.dcase import (
    DOMAINS,
    GROUND_TRUTH,
    Domain,
    Label,
    check_domain,
    parse_clip_name,
)
from edge_agent.errors import EdgeAgentError

if TYPE_CHECKING:
    from model_build.data.clip import Clip

Kind = Literal["label", "domain"]
DOMAIN_FOLDER = "ground_truth_domain"
SKIPPED_FOLDERS = ("ground_truth_attributes",)
_HEADERS = {
    ("file", "label"),
    ("file", "domain"),
    ("file_name", "label"),
    ("file_name", "domain"),
    ("filename", "label"),
    ("filename", "domain"),
}


V = TypeVar("V", bound=str)


class GroundTruthError(EdgeAgentError):
    """Ground truth that is ambiguous, incomplete, or does not match the clips (one line)."""


@dataclass
class SectionTruth:
    """What the files say about one section's test clips: name -> (value, file)."""

    labels: dict[str, tuple[Label, Path]] = field(default_factory=dict)
    domains: dict[str, tuple[Domain, Path]] = field(default_factory=dict)

    @property
    def files(self) -> list[Path]:
        return sorted({p for _, p in self.labels.values()} | {p for _, p in self.domains.values()})


def _kind(path: Path) -> Kind | None:
    if path.parent.name in SKIPPED_FOLDERS:
        return None
    return "domain" if path.parent.name == DOMAIN_FOLDER else "label"


def read_truth_csv(path: Path, section: str) -> list[tuple[str, int]]:
    """The (clip name, 0 | 1) rows of one ground-truth file, every row checked."""
    try:
        with path.open(newline="") as fh:
            rows = list(csv.reader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise GroundTruthError(f"{path}: unreadable ground truth ({exc})") from None
    out = []
    for line, row in enumerate(rows, start=1):
        cells = [c.strip() for c in row]
        if not any(cells):
            continue
        if line == 1 and len(cells) == 2 and (cells[0].lower(), cells[1].lower()) in _HEADERS:
            continue
        if len(cells) != 2 or cells[1] not in ("0", "1") or not cells[0].endswith(".wav"):
            raise GroundTruthError(
                f"{path}: line {line}: expected <clip>.wav,0|1, got {','.join(row)!r}"
            )
        name = parse_clip_name(cells[0])
        if name is None or name.section != section:
            raise GroundTruthError(
                f"{path}: line {line}: {cells[0]} is not a clip name of section_{section}"
            )
        out.append((cells[0], int(cells[1])))
    if not out:
        raise GroundTruthError(f"{path}: no rows (expected <clip>.wav,0|1 lines)")
    return out


EVAL_DATA_LIST = "eval_data_list.csv"
"""DCASE 2020's ground truth of its evaluation set (one file for all machine types)."""


def read_eval_data_list(path: Path, table: dict[tuple[str, str], SectionTruth]) -> None:
    """Add the labels of DCASE 2020's `eval_data_list.csv` to `table`, every row checked."""
    try:
        with path.open(newline="") as fh:
            rows = list(csv.reader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise GroundTruthError(f"{path}: unreadable ground truth ({exc})") from None
    machine: str | None = None
    count = 0
    for line, row in enumerate(rows, start=1):
        cells = [c.strip() for c in row if c.strip()]
        if not cells:
            continue
        if len(cells) == 1:
            machine = cells[0]
            continue
        name = parse_clip_name(cells[0]) if len(cells) == 3 else None
        if machine is None or name is None or cells[2] not in ("0", "1"):
            raise GroundTruthError(
                f"{path}: line {line}: expected a machine type line, then "
                f"id_XX_NNNNNNNN.wav,<labelled name>,0|1 rows; got {','.join(row)!r}"
            )
        label: Label = "anomaly" if cells[2] == "1" else "normal"
        named = cells[1].split("_", 1)[0]
        if named in ("normal", "anomaly") and named != label:
            raise GroundTruthError(
                f"{path}: line {line}: label {cells[2]} but the labelled "
                f"name says {named} ({cells[1]})"
            )
        _put(
            table.setdefault((machine, name.section), SectionTruth()).labels, cells[0], label, path
        )
        count += 1
    if not count:
        raise GroundTruthError(
            f"{path}: no rows (expected machine type lines and "
            "id_XX_NNNNNNNN.wav,<labelled name>,0|1 rows)"
        )


def load_ground_truth(roots: Iterable[Path]) -> dict[tuple[str, str], SectionTruth]:
    """(machine, section "XX") -> what every ground-truth file below the roots says."""
    table: dict[tuple[str, str], SectionTruth] = {}
    seen: set[Path] = set()
    for root in roots:
        if not root.is_dir():
            continue
        for path in sorted(root.rglob(EVAL_DATA_LIST)):
            if path.resolve() not in seen:
                seen.add(path.resolve())
                read_eval_data_list(path, table)
        for path in sorted(root.rglob("ground_truth_*_test.csv")):
            m = GROUND_TRUTH.match(path.name)
            kind = _kind(path)
            if m is None or kind is None or path.resolve() in seen:
                continue
            seen.add(path.resolve())
            section = m["section"].zfill(2)
            truth = table.setdefault((m["machine"], section), SectionTruth())
            file_domain = m["domain"]
            for name, value in read_truth_csv(path, section):
                if kind == "domain":
                    _put(truth.domains, name, DOMAINS[value], path)
                    continue
                label: Label = "anomaly" if value else "normal"
                _put(truth.labels, name, label, path)
                if file_domain is not None:  # 2021: the file names the domain
                    _put(truth.domains, name, check_domain(file_domain), path)
    return table


def _put(table: dict[str, tuple[V, Path]], name: str, value: V, path: Path) -> None:
    if name in table:
        where = "twice" if table[name][1] == path else f"also in {table[name][1]}"
        raise GroundTruthError(f"{path}: {name} is listed {where}")
    table[name] = (value, path)


def apply_ground_truth(
    clips: Sequence[Clip], truth: dict[tuple[str, str], SectionTruth]
) -> list[Clip]:
    """`clips` with the test clips' labels and domains filled in from `truth`.

    Only sections that have test clips here are checked; ground truth of other sections (the
    roots may hold a whole evaluator checkout) is ignored.
    """
    by_section: dict[tuple[str, str], list[int]] = {}
    for i, c in enumerate(clips):
        if c.split == "test":
            by_section.setdefault((c.machine, c.section), []).append(i)
    out = list(clips)
    for key, idx in by_section.items():
        sec_truth = truth.get(key)
        if sec_truth is None:
            continue
        names = {clips[i].path.name: i for i in idx}
        _check_listed(sec_truth, names, key)
        for i in idx:
            out[i] = _labelled(clips[i], sec_truth)
    return out


def _check_listed(truth: SectionTruth, names: dict[str, int], key: tuple[str, str]) -> None:
    for table in (truth.labels, truth.domains):
        extra = sorted(n for n in table if n not in names)
        if extra:
            path = table[extra[0]][1]
            more = f" and {len(extra) - 1} more" if len(extra) > 1 else ""
            raise GroundTruthError(
                f"{path}: lists {extra[0]}{more}, not a test clip of {key[0]} section_{key[1]} "
                f"here (the CSV does not match the clips)"
            )


def _labelled(clip: Clip, truth: SectionTruth) -> Clip:
    name = clip.path.name
    files = ", ".join(str(p) for p in truth.files)
    label = _agree(clip, clip.label, truth.labels.get(name))
    domain = _agree(clip, clip.domain, truth.domains.get(name))
    if label is None:
        raise GroundTruthError(f"{clip.path}: test clip without a label in {files}")
    if domain is None:
        raise GroundTruthError(
            f"{clip.path}: test clip without a domain in {files} (expected a "
            f"{DOMAIN_FOLDER}/ file named like the label file)"
        )
    return replace(clip, label=label, domain=domain)


def _agree(clip: Clip, own: V | None, listed: tuple[V, Path] | None) -> V | None:
    """The listed value, or the name's own when unlisted; a contradiction is an error."""
    if listed is None:
        return own
    if own is not None and own != listed[0]:
        raise GroundTruthError(
            f"{listed[1]}: says {clip.path.name} is {listed[0]}, its name says {own}"
        )
    return listed[0]
