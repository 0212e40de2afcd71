"""DCASE Task 2 data roots as a list of clip records (names parsed by `edge_agent.audio.dcase`).

Every layout the challenge shipped from 2020 to 2024 is read: `<root>/<machine>/train` and
`test` (2021: `source_test` and `target_test`), any machine type name, one or several sections
per machine type, 2023/2024 attribute files (`model_build.data.attributes`). Several roots (dev +
eval + additional training) are read at once. Eval-set test clips carry no label in their name
(`section_XX_NNNN.wav`); their labels and domains come from the official ground-truth CSVs
found below the roots (or below separate `truth_roots`), read strictly by
`model_build.data.ground_truth`.

Nothing is dropped without a word: a file in a scanned split folder (`train/`, `test/`,
`source_test/`, `target_test/`) that is not a clip of the layout (a name like
`section_00_test_normal_0000.wav`, a stray `.txt`, a sub-folder) is named in a warning on
stderr and counted (`Layout.ignored`), and with `strict=True` the first one is a
`DatasetError`. Hidden files (a leading dot: macOS `._*` resource forks in the challenge's
zips, `record`'s `.<name>.tmp.wav` while it writes) are neither used nor counted.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TextIO

from edge_agent.audio.dcase import TEST_FOLDERS, Split, parse_clip_name
from model_build.data.attributes import name_has_attributes, read_attribute_files
from model_build.data.clip import Clip, DatasetError
from model_build.data.ground_truth import apply_ground_truth, load_ground_truth
from model_build.data.years import Year, decide_year, years_found

WARN_NAMES = 20
"""Ignored files named one by one on stderr; beyond that a count (Layout.ignored has all)."""


def parse_name(path: Path, machine: str, split: Split) -> Clip | None:
    """Parse one file name of the layout; None if the name is not a DCASE clip name."""
    name = parse_clip_name(path.name)
    if name is None:
        return None
    return Clip(
        path, machine, name.section, name.split or split, name.domain, name.label, name.attrs
    )


def _split_folders(split: Split) -> tuple[str, ...]:
    return TEST_FOLDERS if split == "test" else (split,)


def _machine_dirs(root: Path) -> list[Path]:
    """A dataset root holds machine folders; a machine folder is a root of its own."""
    own = ("train", *TEST_FOLDERS)
    if any((root / name).is_dir() for name in own):
        return [root]
    return [d for d in sorted(root.iterdir()) if d.is_dir() and not d.name.startswith(".")]


@dataclass
class Layout:
    """What a scan found: the clips, the files it could not use, the challenge year."""

    clips: list[Clip]
    ignored: list[Path] = field(default_factory=list)
    years: dict[Year, Path] = field(default_factory=dict)  # year -> an example clip

    def year(self, given: str | None = None) -> Year:
        """The rules to score these clips by: `given` (`--year`) or the layout's one year."""
        return decide_year(self.years, given)

    def warn(self, stream: TextIO | None = None) -> None:
        """Name the ignored files (the first WARN_NAMES) and count them, on stderr."""
        if not self.ignored:
            return
        out = stream or sys.stderr
        for p in self.ignored[:WARN_NAMES]:
            out.write(f"warning: {p}: not used ({ignored_reason(p)})\n")
        more = len(self.ignored) - WARN_NAMES
        if more > 0:
            out.write(f"warning: ... and {more} more files not used\n")
        out.write(f"warning: {self.summary()}\n")
        out.flush()

    def summary(self) -> str:
        """One line with the counts (also printed under evaluate's tables)."""
        n = len(self.ignored)
        if not n:
            return f"{len(self.clips)} clips used, no file ignored"
        return (
            f"{len(self.clips)} clips used, {n} file{'s' if n > 1 else ''} under "
            f"train/ or test/ ignored (not a clip of the DCASE layout; --strict stops)"
        )


def ignored_reason(path: Path) -> str:
    """Why a file in a split folder is not a clip (one phrase)."""
    if path.is_dir():
        return "a folder inside a split folder"
    if path.suffix.lower() != ".wav":
        return "not a .wav file"
    return (
        "name not in the DCASE layout (expected e.g. "
        "section_00_source_test_normal_0000.wav or normal_id_00_00000000.wav)"
    )


def _machine_clips(mdir: Path, splits: Sequence[Split], ignored: list[Path]) -> list[Clip]:
    attributes = read_attribute_files(mdir)
    clips = []
    for split in splits:
        for folder in _split_folders(split):
            for f in sorted((mdir / folder).iterdir()) if (mdir / folder).is_dir() else []:
                if f.name.startswith("."):
                    continue
                clip = (
                    parse_name(f, mdir.name, split)
                    if f.suffix.lower() == ".wav" and f.is_file()
                    else None
                )
                if clip is None:
                    ignored.append(f)
                    continue
                if not name_has_attributes(clip.attrs) and attributes.get(f.name):
                    clip = replace(clip, attrs=attributes[f.name])
                clips.append(clip)
    return clips


def scan_layout(
    roots: Iterable[str | Path],
    splits: Sequence[Split] = ("train", "test"),
    truth_roots: Iterable[str | Path] = (),
    strict: bool = False,
) -> Layout:
    """All clips under the roots (sorted by path, eval labels filled in from ground truth),
    the files of the split folders that are not clips, and the year of the layout.

    A root may be a dataset root (`<root>/<machine>/{train,test}`) or a single machine folder.
    A root with no clips at all is an error naming the root; with `strict`, so is the first
    file that is not a clip. Ground-truth files (the 2021-2024 evaluators' CSVs, 2020's
    `eval_data_list.csv`) are looked for below the roots and `truth_roots` when test clips
    are scanned; ground truth that is ambiguous or does not match the clips is a
    `GroundTruthError` naming the file.
    """
    root_list = [Path(r) for r in roots]
    clips: list[Clip] = []
    ignored: list[Path] = []
    for root in root_list:
        if not root.is_dir():
            raise DatasetError(f"{root}: data root not found (expected a folder)")
        found = [c for mdir in _machine_dirs(root) for c in _machine_clips(mdir, splits, ignored)]
        if not found:
            raise DatasetError(
                f"{root}: no DCASE clips found (expected <machine>/{{train,test}}/section_XX_*.wav)"
            )
        clips += found
    ignored.sort()
    if strict and ignored:
        more = f" (and {len(ignored) - 1} more)" if len(ignored) > 1 else ""
        raise DatasetError(
            f"{ignored[0]}: {ignored_reason(ignored[0])}{more}; --strict "
            "stops at files that are not clips of the layout"
        )
    if "test" in splits:
        truth = load_ground_truth([*root_list, *(Path(r) for r in truth_roots)])
        clips = apply_ground_truth(clips, truth)
    clips = sorted(clips, key=lambda c: str(c.path))
    return Layout(clips, ignored, years_found(clips))


def scan(
    roots: Iterable[str | Path],
    splits: Sequence[Split] = ("train", "test"),
    truth_roots: Iterable[str | Path] = (),
    strict: bool = False,
) -> list[Clip]:
    """`scan_layout(...)`'s clips, its ignored files named on stderr first."""
    layout = scan_layout(roots, splits, truth_roots, strict)
    layout.warn()
    return layout.clips


def class_key(clip: Clip) -> str:
    """The auxiliary-task class: machine type + section, attribute string, domain."""
    return f"{clip.machine}|{clip.section}|{clip.attrs}|{clip.domain}"


def class_names(clips: Iterable[Clip]) -> list[str]:
    """Sorted auxiliary class names over the training clips."""
    return sorted({class_key(c) for c in clips if c.split == "train"})
