"""`edge-agent score`: score WAV files offline through the device path (bundle + TFLite).

Each file is one window: `load_clip` gives its first 10 s at the bundle's rate (looping shorter
clips), exactly what `model-build evaluate` embeds, so the two agree on the same bundle. The
section comes from `--section`, else from the file's DCASE name (`edge_agent.dcase`).
`--plot OUT.png` scores every `--hop`-spaced window of long recordings and draws the scores
over time (`edge_agent.score_plot`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ..errors import FieldError
from . import options as opt
from .runner import fields_as_flags

if TYPE_CHECKING:  # the scorer imports numpy and TFLite: only when the command runs
    from ..scorer import Scorer, WindowScore


@fields_as_flags()
def score_cmd(
    paths: Annotated[list[Path], typer.Argument(help="WAV files or folders of WAV files.")],
    bundle: opt.BundleRequired,
    section: opt.Section = None,
    json_out: opt.Json = False,
    threads: opt.Threads = None,
    channel: opt.Channel = None,
    plot: Annotated[
        Path | None,
        typer.Option("--plot", help="Score every window of long files; write a score-over-time "
                     "PNG.", show_default=False),
    ] = None,
    hop: Annotated[float, typer.Option("--hop", help="--plot: seconds between window starts.")
                   ] = 5.0,
) -> None:
    """Print each file's anomaly score, the section's threshold and the decision.

    --section: default from DCASE file names (<machine>/<split>/section_XX_*.wav).
    """
    from ..audio import expand_files, load_clip
    from ..dcase import infer_section
    from ..score_plot import pyplot
    from ..scorer import Scorer

    files = expand_files(paths)
    if plot is not None:
        pyplot()  # fail before minutes of scoring, not after
        if hop <= 0:
            raise FieldError("hop", f"expected a positive number of seconds, got {hop}")
    scorer = Scorer.from_bundle(bundle, threads=threads or 1)
    if section is not None:
        scorer.bundle.backend(section)  # unknown section: one-line BundleError
    plan = [(f, section or infer_section(f, scorer.bundle.sections)) for f in files]
    if plot is not None:
        _score_and_plot(scorer, plan, plot, hop, channel, json_out)
        return
    if not json_out:
        print(_HEADER + "file")
    for f, sec in plan:
        r = scorer.score(load_clip(f, scorer.spec, channel), sec)
        print(_line(f, r, json_out), flush=True)


_HEADER = f"{'score':>8} {'threshold':>9}  {'decision':<8}  {'section':<24} "


def _line(file: Path, r: WindowScore, json_out: bool, start: float | None = None) -> str:
    """One scored window: a JSON object, or a table row for people (`file` or `file@start`)."""
    if json_out:
        where = {"file": str(file)} if start is None else {"file": str(file), "start_s": start}
        return json.dumps({**where, **r.to_dict()})
    decision = "ANOMALY" if r.anomalous else "normal"
    name = f"{file}" if start is None else f"{file}@{start:g}s"
    return f"{r.score:8.5f} {r.threshold:9.5f}  {decision:<8}  {r.section:<24} {name}"


def _score_and_plot(
    scorer: Scorer, plan: list[tuple[Path, str]], out: Path, hop: float, channel: int | None,
    json_out: bool,
) -> None:
    """`--plot`: one line per window (file@start), then the PNG."""
    from ..score_plot import Series, plot_series, score_windows

    if not json_out:
        print(_HEADER + "file@start")
    series = []
    for f, sec in plan:
        starts, results = score_windows(scorer, f, sec, hop, channel)
        for st, r in zip(starts, results, strict=True):
            print(_line(f, r, json_out, st), flush=True)
        series.append(Series(f.name, sec, starts, [r.score for r in results],
                             results[0].threshold))
    plot_series(series, out)
    if not json_out:
        print(f"wrote {out}")
