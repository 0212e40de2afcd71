"""`edge-agent score`: score WAV files offline through the device path (bundle + TFLite).

Each file is one window: `load_clip` gives its first 10 s at 16 kHz (looping shorter clips),
exactly what `model-build evaluate` embeds, so the two agree on the same bundle.

The section comes from `--section`, or from a DCASE name: `<machine>/<split>/section_XX_*.wav`
-> `<machine>_section_XX` (also flat `<machine>_<split>_section_XX_*.wav` names). Otherwise a
`section_XX` matching exactly one bundle section is used; anything else is an error naming the
choices.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

import typer

from .audio import load_clip
from .errors import EdgeAgentError

_SECTION = re.compile(r"(?:^|_)section_(\d+)")
_SPLITS = {"train", "test", "supplemental"}


class ScoreInputError(EdgeAgentError):
    """A path to score is missing or names no WAV file, or its section cannot be resolved."""


def wav_files(paths: Sequence[Path]) -> list[Path]:
    """Files as given, folders expanded to their *.wav files (recursively, sorted)."""
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            found = sorted(q for q in p.rglob("*") if q.suffix.lower() == ".wav" and q.is_file())
            if not found:
                raise ScoreInputError(f"{p}: folder contains no .wav files")
            out += found
        elif p.is_file():
            out.append(p)
        else:
            raise ScoreInputError(f"{p}: no such file or folder")
    return out


def infer_section(path: Path, sections: Sequence[str]) -> str:
    """The bundle section a DCASE-named file belongs to (see module docstring)."""
    m = _SECTION.search(path.name)
    if len(sections) == 1 and m is None:
        return sections[0]
    if m is None:
        raise ScoreInputError(
            f"{path}: no section_XX in the file name; pass --section "
            f"(one of {', '.join(sections)})"
        )
    tag = f"section_{m.group(1)}"
    folder = path.parent.parent if path.parent.name in _SPLITS else path.parent
    candidate = f"{folder.name}_{tag}"
    if candidate in sections:
        return candidate
    # flat copies name the machine first: fan_test_section_00_source_test_normal_0021_x.wav
    prefixed = [s for s in sections if s.endswith("_" + tag) and path.name.startswith(
        s[: -len(tag)])]
    if len(prefixed) == 1:
        return prefixed[0]
    matches = [s for s in sections if s.endswith("_" + tag) or s == tag]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise ScoreInputError(
            f"{path}: {candidate} is not in the bundle (has {', '.join(sections)}); pass --section"
        )
    raise ScoreInputError(
        f"{path}: {tag} is ambiguous ({', '.join(matches)}); pass --section"
    )


def score_cmd(
    paths: list[Path] = typer.Argument(..., help="WAV files or folders of WAV files."),
    bundle: Path = typer.Option(..., "--bundle", help="Bundle directory (model-build export)."),
    section: str | None = typer.Option(
        None, "--section", help="Section to score against (default: from DCASE file names)."
    ),
    json_out: bool = typer.Option(False, "--json", help="One JSON object per file."),
    threads: int = typer.Option(1, "--threads", min=1, help="TFLite interpreter threads."),
    channel: int | None = typer.Option(None, help="Channel of multi-channel files (default: mix)."),
) -> None:
    """Print each file's anomaly score, the section's threshold and the decision."""
    from .scorer import Scorer

    files = wav_files(paths)
    scorer = Scorer.from_bundle(bundle, threads=threads)
    sections = scorer.bundle.sections
    if section is not None:
        scorer.bundle.backend(section)  # unknown section: one-line BundleError
    plan = [(f, section or infer_section(f, sections)) for f in files]
    if not json_out:
        print(f"{'score':>8} {'threshold':>9}  {'decision':<8}  {'section':<24} file")
    for f, sec in plan:
        r = scorer.score(load_clip(f, scorer.spec, channel), sec)
        if json_out:
            print(json.dumps({"file": str(f), **r.to_dict()}), flush=True)
        else:
            decision = "ANOMALY" if r.anomalous else "normal"
            print(f"{r.score:8.5f} {r.threshold:9.5f}  {decision:<8}  {sec:<24} {f}", flush=True)
