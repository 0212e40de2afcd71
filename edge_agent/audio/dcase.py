"""The DCASE Task 2 naming (2020-2024): section ids and clip file names, read and written here only.

    2021-2024  <root>/<machine>/{train,test}/
                   section_XX_{source,target}_{train,test}_{normal,anomaly}_NNNN[_<attrs>].wav
    2022-2024  eval-set test clips carry neither domain nor label: section_XX_NNNN.wav
    2021       dev test clips live in source_test/ and target_test/; eval-set test clips carry
               their domain but no label: section_XX_{source,target}_test_NNNN.wav
    2020       <root>/<machine>/{train,test}/{normal,anomaly}_id_XX_NNNNNNNN.wav (machine id XX
               is read as section XX; one domain, read as source); eval test: id_XX_NNNNNNNN.wav

A section id, `<machine>_section_<XX>`, is what a bundle's backends and thresholds belong to.
`record` writes clips with these names, `model_build.data.dataset.scan` reads them back for
training, and `score` finds a file's section in its name, so the three cannot disagree about the
format. Labels (and for 2022-2024 domains) of anonymous eval-set test clips come from the official
ground-truth CSVs (`model_build.data.ground_truth`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, cast

from edge_agent.arrays import FloatArray
from edge_agent.audio.files import write_wav
from edge_agent.errors import FieldError

Domain = Literal["source", "target"]
Split = Literal["train", "test"]
Label = Literal["normal", "anomaly"]
DOMAINS: tuple[Domain, ...] = ("source", "target")

_SECTION_ID = re.compile(r"^(?P<machine>[A-Za-z0-9][A-Za-z0-9._-]*?)_section_(?P<section>\d{2})$")
_FULL = re.compile(
    r"^section_(?P<section>\d+)_(?P<domain>source|target)_(?P<split>train|test)_"
    r"(?P<label>normal|anomaly)_(?P<index>\d+)(?:_(?P<attrs>.+))?\.wav$"
)
_EVAL = re.compile(r"^section_(?P<section>\d+)_(?P<index>\d+)\.wav$")
_EVAL_2021 = re.compile(
    r"^section_(?P<section>\d+)_(?P<domain>source|target)_test_(?P<index>\d+)\.wav$"
)
_ID_2020 = re.compile(r"^(?:(?P<label>normal|anomaly)_)?id_(?P<section>\d+)_(?P<index>\d+)\.wav$")
_SECTION_IN_NAME = re.compile(r"(?:^|_)section_(\d+)")
_ATTRS = re.compile(r"^[A-Za-z0-9.\-]+(?:_[A-Za-z0-9.\-]+)*$")
GROUND_TRUTH = re.compile(
    r"^ground_truth_(?P<machine>.+?)_section_(?P<section>\d+)(?:_(?P<domain>source|target))?"
    r"_test\.csv$"
)
"""The official ground-truth files: `ground_truth_<machine>_section_<XX>_test.csv` (2022-2024,
in `ground_truth_data/` and `ground_truth_domain/`), `..._section_<XX>_<domain>_test.csv`
(2021)."""
TEST_FOLDERS = ("test", "source_test", "target_test")
"""Folders of a machine type that hold test clips (2021 split them by domain)."""
SPLIT_FOLDERS = {"train", "supplemental", *TEST_FOLDERS}


def section_id(machine: str, section: str) -> str:
    """`fan`, `00` -> `fan_section_00`."""
    return f"{machine}_section_{section}"


def parse_section_id(sid: str) -> tuple[str, str]:
    """`<machine>_section_<XX>` -> (machine, "XX"); FieldError("section") otherwise.

    Machine types are named as their folders are (`ToyCar`, `3DPrinter`, `robotic_arm`):
    letters, digits, '-', '_' and '.', starting with a letter or digit. A section must
    round-trip through the layout (`<machine>/train/section_XX_...`), which is how `record`
    files it and `model_build.data.dataset.scan` reads it back.
    """
    m = _SECTION_ID.match(sid)
    if m is None:
        raise FieldError(
            "section",
            "expected <machine>_section_<XX> (e.g. fan_section_00; machine: letters, digits, "
            f"'-', '_', '.'; XX: two digits), got {sid!r}",
        )
    return m["machine"], m["section"]


@dataclass(frozen=True)
class ClipName:
    """What a clip's file name says: section "XX", and for dev/train names the rest too."""

    section: str
    index: int
    domain: Domain | None = None  # None: 2022+ eval-set test clip (ground truth in CSVs)
    split: Split | None = None
    label: Label | None = None
    attrs: str = ""


def parse_clip_name(name: str) -> ClipName | None:
    """The fields of a DCASE clip file name; None for any other name."""
    m = _FULL.match(name)
    if m:
        return ClipName(
            m["section"].zfill(2),
            int(m["index"]),
            cast(Domain, m["domain"]),
            cast(Split, m["split"]),
            cast(Label, m["label"]),
            m["attrs"] or "",
        )
    m = _EVAL.match(name)
    if m:
        return ClipName(m["section"].zfill(2), int(m["index"]))
    m = _EVAL_2021.match(name)
    if m:
        return ClipName(m["section"].zfill(2), int(m["index"]), cast(Domain, m["domain"]), "test")
    m = _ID_2020.match(name)
    if m:  # DCASE 2020 had one domain; its eval test clips carry no label
        return ClipName(
            m["section"].zfill(2), int(m["index"]), "source", None, cast(Label | None, m["label"])
        )
    return None


def layout_year(path: Path) -> str | None:
    """The challenge year a clip's path gives away: "2020" (machine-id names), "2021"
    (test clips in `source_test/`/`target_test/`, or 2021 eval names), None (2022-2024, or
    a training clip, whose names 2021-2024 share)."""
    if _ID_2020.match(path.name):
        return "2020"
    if _EVAL_2021.match(path.name) or path.parent.name in TEST_FOLDERS[1:]:
        return "2021"
    return None


def check_domain(domain: str) -> Domain:
    """`domain` as a Domain, or FieldError("domain")."""
    if domain == "source":
        return "source"
    if domain == "target":
        return "target"
    raise FieldError("domain", f"expected source or target, got {domain!r}")


def check_attrs(attrs: str) -> str:
    """Attribute string of a file name: `k_v` pairs joined by '_', or empty."""
    if attrs and not _ATTRS.match(attrs):
        raise FieldError(
            "attrs",
            "expected key_value pairs joined by '_' (letters, digits, '.', '-'), e.g. "
            f"spd_1200_load_1; got {attrs!r}",
        )
    return attrs


def clip_name(
    section: str, domain: str, split: str, label: str, index: int, attrs: str = ""
) -> str:
    """`section_XX_<domain>_<split>_<label>_NNNN[_<attrs>].wav` (`section`: two digits)."""
    tail = f"_{attrs}" if attrs else ""
    return f"section_{section}_{domain}_{split}_{label}_{index:04d}{tail}.wav"


def train_clip_name(section: str, domain: Domain, index: int, attrs: str = "") -> str:
    """`section_XX_<domain>_train_normal_NNNN[_<attrs>].wav`: a normal training clip."""
    return clip_name(section, domain, "train", "normal", index, attrs)


def next_index(folder: Path, section: str, domain: Domain) -> int:
    """One past the highest NNNN of the normal training clips of `section` and `domain` in
    `folder` (0 for none): where a new recording session continues the numbering."""
    found = [
        c.index
        for p in (folder.glob("*.wav") if folder.is_dir() else [])
        if (c := parse_clip_name(p.name)) is not None
        and c.section == section
        and c.domain == domain
        and c.split == "train"
        and c.label == "normal"
    ]
    return max(found) + 1 if found else 0


def write_train_clips(
    out: Path, section: str, domain: str, attrs: str, waves: Sequence[FloatArray], rate: int
) -> list[Path]:
    """File `waves` as normal training clips of `section` (a section id) under the data root
    `out`, numbered on after the clips already there; returns the paths.

    Each file is written under a temporary name that `scan` ignores (leading dot) and renamed
    when complete, so an interrupted recording leaves no truncated clip for training.
    """
    machine, sec = parse_section_id(section)
    dom = check_domain(domain)
    check_attrs(attrs)
    folder = out / machine / "train"
    folder.mkdir(parents=True, exist_ok=True)
    index = next_index(folder, sec, dom)
    paths = []
    for k, w in enumerate(waves):
        final = folder / train_clip_name(sec, dom, index + k, attrs)
        tmp = final.with_name(f".{final.stem}.tmp.wav")
        write_wav(tmp, w, rate)
        Path(tmp).replace(final)
        paths.append(final)
    return paths


def infer_section(path: Path, sections: Sequence[str]) -> str:
    """The bundle section a DCASE-named file belongs to.

    `<machine>/<split>/section_XX_*.wav` -> `<machine>_section_XX`; flat copies that name the
    machine first (`fan_test_section_00_...wav`) work too. Otherwise a `section_XX` matching
    exactly one bundle section is used, and a bundle with one section needs no name at all.
    Anything else is a FieldError("section") naming the choices.
    """
    m = _SECTION_IN_NAME.search(path.name)
    if len(sections) == 1 and m is None:
        return sections[0]
    if m is None:
        raise FieldError(
            "section",
            f"needed for {path}: no section_XX in its name (one of {', '.join(sections)})",
        )
    tag = f"section_{m.group(1)}"
    folder = path.parent.parent if path.parent.name in SPLIT_FOLDERS else path.parent
    candidate = f"{folder.name}_{tag}"
    if candidate in sections:
        return candidate
    prefixed = [
        s for s in sections if s.endswith("_" + tag) and path.name.startswith(s[: -len(tag)])
    ]
    if len(prefixed) == 1:
        return prefixed[0]
    matches = [s for s in sections if s.endswith("_" + tag) or s == tag]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise FieldError(
            "section",
            f"needed for {path}: {candidate} is not in the bundle (has {', '.join(sections)})",
        )
    raise FieldError("section", f"needed for {path}: {tag} is ambiguous ({', '.join(matches)})")
