"""DCASE Task 2 data roots as a list of clip records (names parsed by `edge_agent.audio.dcase`).

Every layout the challenge shipped from 2020 to 2024 is read: `<root>/<machine>/train` and
`test` (2021: `source_test` and `target_test`), any machine type name, one or several sections
per machine type, 2023/2024 attribute files (`model_build.data.attributes`). Several roots (dev +
eval + additional training) are read at once. Eval-set test clips carry no label in their name
(`section_XX_NNNN.wav`); their labels and domains come from the official ground-truth CSVs
found below the roots (or below separate `truth_roots`), read strictly by
`model_build.data.ground_truth`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path

from edge_agent.audio.dcase import TEST_FOLDERS, Split, parse_clip_name
from model_build.data.attributes import name_has_attributes, read_attribute_files
from model_build.data.clip import Clip, DatasetError
from model_build.data.ground_truth import apply_ground_truth, load_ground_truth


def parse_name(path: Path, machine: str, split: Split) -> Clip | None:
    """Parse one file name of the layout; None if the name is not a DCASE clip name."""
    name = parse_clip_name(path.name)
    if name is None:
        return None
    return Clip(path, machine, name.section, name.split or split, name.domain, name.label,
                name.attrs)


def _split_folders(split: Split) -> tuple[str, ...]:
    return TEST_FOLDERS if split == "test" else (split,)


def _machine_dirs(root: Path) -> list[Path]:
    """A dataset root holds machine folders; a machine folder is a root of its own."""
    own = ("train", *TEST_FOLDERS)
    if any((root / name).is_dir() for name in own):
        return [root]
    return [d for d in sorted(root.iterdir()) if d.is_dir() and not d.name.startswith(".")]


def _machine_clips(mdir: Path, splits: Sequence[Split]) -> list[Clip]:
    attributes = read_attribute_files(mdir)
    clips = []
    for split in splits:
        for folder in _split_folders(split):
            for f in sorted((mdir / folder).glob("*.wav")) if (mdir / folder).is_dir() else []:
                clip = parse_name(f, mdir.name, split)
                if clip is None:
                    continue
                if not name_has_attributes(clip.attrs) and attributes.get(f.name):
                    clip = replace(clip, attrs=attributes[f.name])
                clips.append(clip)
    return clips


def scan(
    roots: Iterable[str | Path],
    splits: Sequence[Split] = ("train", "test"),
    truth_roots: Iterable[str | Path] = (),
) -> list[Clip]:
    """All clips under the roots, sorted by path, eval labels filled in from ground truth.

    A root may be a dataset root (`<root>/<machine>/{train,test}`) or a single machine folder.
    Files whose names do not follow the layout are ignored (e.g. README files); a root with
    no clips at all is an error naming the root. Ground-truth CSVs are looked for below the
    roots and `truth_roots` (an evaluator checkout) when test clips are scanned; ground truth
    that is ambiguous or does not match the clips is a `GroundTruthError` naming the file.
    """
    root_list = [Path(r) for r in roots]
    clips: list[Clip] = []
    for root in root_list:
        if not root.is_dir():
            raise DatasetError(f"{root}: data root not found (expected a folder)")
        found = [c for mdir in _machine_dirs(root) for c in _machine_clips(mdir, splits)]
        if not found:
            raise DatasetError(
                f"{root}: no DCASE clips found (expected <machine>/{{train,test}}/section_XX_*.wav)"
            )
        clips += found
    if "test" in splits:
        truth = load_ground_truth([*root_list, *(Path(r) for r in truth_roots)])
        clips = apply_ground_truth(clips, truth)
    return sorted(clips, key=lambda c: str(c.path))


def class_key(clip: Clip) -> str:
    """The auxiliary-task class: machine type + section, attribute string, domain."""
    return f"{clip.machine}|{clip.section}|{clip.attrs}|{clip.domain}"


def class_names(clips: Iterable[Clip]) -> list[str]:
    """Sorted auxiliary class names over the training clips."""
    return sorted({class_key(c) for c in clips if c.split == "train"})
