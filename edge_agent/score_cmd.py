"""`edge-agent score`: score WAV files offline through the device path (bundle + TFLite).

Each file is one window: `load_clip` gives its first 10 s at 16 kHz (looping shorter clips),
exactly what `model-build evaluate` embeds, so the two agree on the same bundle.

The section comes from `--section`, or from a DCASE name: `<machine>/<split>/section_XX_*.wav`
-> `<machine>_section_XX` (also flat `<machine>_<split>_section_XX_*.wav` names). Otherwise a
`section_XX` matching exactly one bundle section is used; anything else is an error naming the
choices.

`--plot OUT.png` is for long recordings: every file is cut into 10 s windows starting every
`--hop` seconds (the last partial window is dropped; a file shorter than 10 s is one looped
window), each window is scored, and the scores over time are drawn with the section's
threshold. matplotlib is imported only then (the `plot` extra), so a Pi that never plots does
not need it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import typer

from .audio import MIN_SECONDS, fit_length, load_clip, read_wav, resample
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


@dataclass(frozen=True)
class Series:
    """One file's windowed scores for the plot."""

    label: str
    section: str
    starts: list[float]  # window start, seconds into the file
    scores: list[float]
    threshold: float


def window_starts(n_samples: int, window: int, hop: int) -> list[int]:
    """Start samples of the full windows of a recording (one window when it is shorter)."""
    if hop <= 0:
        raise ScoreInputError(f"--hop: expected a positive number of seconds, got {hop}")
    if n_samples <= window:
        return [0]
    return list(range(0, n_samples - window + 1, hop))


def score_windows(
    scorer: Any, path: Path, section: str, hop_s: float, channel: int | None
) -> tuple[list[float], list[Any]]:
    """(start seconds, WindowScore) for every `--hop`-spaced 10 s window of one file."""
    spec = scorer.spec
    x, rate = read_wav(path, channel)
    x = resample(x, rate, spec.sample_rate)
    n = spec.clip_samples
    starts = window_starts(x.size, n, round(hop_s * spec.sample_rate))
    results = []
    for st in starts:
        w = fit_length(x[st:st + n], n, int(MIN_SECONDS * spec.sample_rate), path)
        results.append(scorer.score(w, section))
    return [st / spec.sample_rate for st in starts], results


def _pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend, or a one-line error naming the extra."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise EdgeAgentError(
            "--plot needs matplotlib: pip install 'listening-monitor[plot]' "
            "(or pip install matplotlib)"
        ) from None
    return plt


def plot_series(series: Sequence[Series], out: Path) -> None:
    """Score over time per file, its threshold dashed, windows above it marked."""
    plt = _pyplot()
    fig, axes = plt.subplots(len(series), 1, figsize=(10, 2.6 * len(series) + 0.6),
                             squeeze=False)
    for ax, s in zip(axes[:, 0], series, strict=True):
        t = np.asarray(s.starts) / 60.0
        y = np.asarray(s.scores)
        ax.plot(t, y, marker=".", lw=1, label="score (10 s window)")
        ax.axhline(s.threshold, color="tab:red", ls="--", lw=1,
                   label=f"threshold {s.threshold:.3f}")
        above = y > s.threshold
        if above.any():
            ax.plot(t[above], y[above], "o", color="tab:red", ms=4, label="above threshold")
        ax.set_title(f"{s.label}  ({s.section})", fontsize=9)
        ax.set_ylabel("anomaly score")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
    axes[-1, 0].set_xlabel("minutes into the recording (window start)")
    fig.tight_layout()
    try:
        fig.savefig(out, dpi=110)
    except OSError as exc:
        raise EdgeAgentError(f"{out}: cannot write the plot ({exc.strerror})") from None
    finally:
        plt.close(fig)


def score_cmd(
    paths: list[Path] = typer.Argument(..., help="WAV files or folders of WAV files."),
    bundle: Path = typer.Option(..., "--bundle", help="Bundle directory (model-build export)."),
    section: str | None = typer.Option(
        None, "--section", help="Section to score against (default: from DCASE file names)."
    ),
    json_out: bool = typer.Option(False, "--json", help="One JSON object per file."),
    threads: int = typer.Option(1, "--threads", min=1, help="TFLite interpreter threads."),
    channel: int | None = typer.Option(None, help="Channel of multi-channel files (default: mix)."),
    plot: Path | None = typer.Option(
        None, "--plot", help="Score every window of long files; write score-over-time PNG."
    ),
    hop: float = typer.Option(5.0, "--hop", help="--plot: seconds between window starts."),
) -> None:
    """Print each file's anomaly score, the section's threshold and the decision."""
    from .scorer import Scorer

    files = wav_files(paths)
    if plot is not None:
        _pyplot()  # fail before minutes of scoring, not after
        if hop <= 0:
            raise ScoreInputError(f"--hop: expected a positive number of seconds, got {hop}")
    scorer = Scorer.from_bundle(bundle, threads=threads)
    sections = scorer.bundle.sections
    if section is not None:
        scorer.bundle.backend(section)  # unknown section: one-line BundleError
    plan = [(f, section or infer_section(f, sections)) for f in files]
    if plot is not None:
        _score_and_plot(scorer, plan, plot, hop, channel, json_out)
        return
    if not json_out:
        print(f"{'score':>8} {'threshold':>9}  {'decision':<8}  {'section':<24} file")
    for f, sec in plan:
        r = scorer.score(load_clip(f, scorer.spec, channel), sec)
        if json_out:
            print(json.dumps({"file": str(f), **r.to_dict()}), flush=True)
        else:
            decision = "ANOMALY" if r.anomalous else "normal"
            print(f"{r.score:8.5f} {r.threshold:9.5f}  {decision:<8}  {sec:<24} {f}", flush=True)


def _score_and_plot(
    scorer: Any, plan: list[tuple[Path, str]], out: Path, hop: float, channel: int | None,
    json_out: bool,
) -> None:
    """`--plot`: one line per window (file@start), then the PNG."""
    if not json_out:
        print(f"{'score':>8} {'threshold':>9}  {'decision':<8}  {'section':<24} file@start")
    series = []
    for f, sec in plan:
        starts, results = score_windows(scorer, f, sec, hop, channel)
        for st, r in zip(starts, results, strict=True):
            if json_out:
                print(json.dumps({"file": str(f), "start_s": st, **r.to_dict()}), flush=True)
            else:
                decision = "ANOMALY" if r.anomalous else "normal"
                print(f"{r.score:8.5f} {r.threshold:9.5f}  {decision:<8}  {sec:<24} "
                      f"{f}@{st:g}s", flush=True)
        series.append(Series(f.name, sec, starts, [r.score for r in results],
                             results[0].threshold))
    plot_series(series, out)
    if not json_out:
        print(f"wrote {out}")
