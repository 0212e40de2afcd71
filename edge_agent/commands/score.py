"""`edge-agent score`: score WAV files offline through the device path (bundle + TFLite).

Every file is cut into windows of the bundle's clip length (10 s), one every `--hop` seconds
(`audio.file_windows`: streamed, so an hour-long recording needs no more memory than a clip;
the last partial window is dropped, a file shorter than a window is looped to one, as
`load_clip` does). A DCASE 10 s clip is therefore one window, exactly what `model-build
evaluate` embeds, so the two agree on the same bundle.

Each window first gets the agent's health check (`health.assess_window`): a window `run` would
call a sensor fault (silence, a stuck DC level, clipping, non-finite samples) is not scored
and prints SENSOR_FAULT with the reasons. The file's verdict is the MAXIMUM over its scored
windows: ANOMALY when any window scores above the section's threshold (one anomalous window
in an hour is worth a look; the agent's k-of-n alarm rule is about raising alarms on a live
stream, and `run` applies it). The section comes from `--section`, else from the file's DCASE
name (`edge_agent.audio.dcase`). `--plot OUT.png` also draws the scores over time
(`edge_agent.runtime.offline`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from edge_agent.commands import options as opt
from edge_agent.commands.runner import fields_as_flags

if TYPE_CHECKING:  # the scorer imports numpy and TFLite: only when the command runs
    from edge_agent.commands.plot import Series
    from edge_agent.runtime.offline import WindowResult
    from edge_agent.runtime.scorer import Scorer, WindowScore


@fields_as_flags()
def score_cmd(
    paths: Annotated[list[Path], typer.Argument(help="WAV files or folders of WAV files.")],
    bundle: opt.BundleRequired,
    section: opt.Section = None,
    json_out: opt.Json = False,
    threads: opt.ThreadsNoConfig = 1,
    channel: opt.Channel = None,
    hop: Annotated[
        float,
        typer.Option(
            "--hop", help="Seconds between window starts in files longer than one window."
        ),
    ] = 5.0,
    plot: Annotated[
        Path | None,
        typer.Option(
            "--plot",
            help="Also write a PNG of every file's window scores over time.",
            show_default=False,
        ),
    ] = None,
    skip_unreadable: opt.SkipUnreadable = False,
) -> None:
    """Score every 10 s window of each file; print window scores and file verdicts.

    Verdict: the file's highest window score vs the section's threshold
    (ANOMALY when any window is above it). Windows start every --hop s; a
    10 s clip is one window, a shorter file is looped to 10 s. A window the
    agent calls a sensor fault (silence, DC, clipping, NaN) is not scored:
    SENSOR_FAULT and the reason. --json: one object per file (its verdict,
    "windows", fault reasons).

    --section: default from DCASE file names (<machine>/<split>/section_XX_*.wav).
    """
    from edge_agent.audio.dcase import infer_section
    from edge_agent.audio.files import expand_files
    from edge_agent.commands.plot import plot_series, pyplot
    from edge_agent.errors import AudioFileError
    from edge_agent.runtime.scorer import Scorer
    from edge_agent.runtime.windows import check_hop

    files = expand_files(paths)
    check_hop(hop)  # finite, >= 0.1 s: before the model loads
    if plot is not None:
        pyplot()  # fail before minutes of scoring, not after
    scorer = Scorer.from_bundle(bundle, threads=threads or 1)
    if section is not None:
        scorer.bundle.backend(section)  # unknown section: one-line BundleError
    plan = [(f, section or infer_section(f, scorer.bundle.sections)) for f in files]
    if not json_out:
        print(_HEADER + "file")
    series = _score_all(scorer, plan, hop, channel, json_out, skip_unreadable)
    if not series:
        raise AudioFileError(", ".join(map(str, paths)), "no readable WAV file")
    if plot is not None:
        plot_series(series, plot)
        if not json_out:
            print(f"wrote {plot}")


def _score_all(
    scorer: Scorer,
    plan: list[tuple[Path, str]],
    hop: float,
    channel: int | None,
    json_out: bool,
    skip_unreadable: bool,
) -> list[Series]:
    """Every file in turn. A file that cannot be read or used stops the command with an error
    naming it, or with --skip-unreadable is named in one line on stderr and left out."""
    import sys

    from edge_agent.errors import AudioFileError

    series: list[Series] = []
    for f, sec in plan:
        try:
            series.append(_score_file(scorer, f, sec, hop, channel, json_out))
        except AudioFileError as exc:
            if not skip_unreadable:
                raise AudioFileError(
                    exc.path, exc.reason + " (remove the file or pass --skip-unreadable)"
                ) from None
            print(f"skipped {exc}", file=sys.stderr, flush=True)
    return series


_HEADER = f"{'score':>8} {'threshold':>9}  {'decision':<12}  {'section':<24} "


def _score_file(
    scorer: Scorer, f: Path, sec: str, hop: float, channel: int | None, json_out: bool
) -> Series:
    """Score one file's windows, printing them as they come (table: a row per window once
    there is more than one) and then the file's verdict; the windows for `--plot`."""
    from edge_agent.commands.plot import Series
    from edge_agent.runtime.offline import score_windows

    threshold = scorer.bundle.backend(sec).threshold
    results: list[WindowResult] = []
    for r in score_windows(scorer, f, sec, hop, channel):
        results.append(r)
        if not json_out and len(results) == 2:
            print(_row(f"{f}@{results[0].start_s:g}s", sec, threshold, results[0]), flush=True)
        if not json_out and len(results) >= 2:
            print(_row(f"{f}@{r.start_s:g}s", sec, threshold, r), flush=True)
    scored = [r.score for r in results if r.score is not None]
    top = max(scored, key=lambda w: w.score) if scored else None
    faults = sorted({fault for r in results for fault in r.health.faults})
    decision = _decision(top)
    if json_out:
        print(
            json.dumps(
                {
                    "file": str(f),
                    "score": top.score if top else None,
                    "threshold": threshold,
                    "anomalous": top.anomalous if top else None,
                    "section": sec,
                    "model_version": scorer.bundle.model_version,
                    "decision": decision,
                    "faults": faults,
                    "windows": [_window_dict(r) for r in results],
                }
            ),
            flush=True,
        )
    elif len(results) == 1:
        print(_row(str(f), sec, threshold, results[0]), flush=True)
    else:
        above = sum(w.anomalous for w in scored)
        note = f"max of {len(results)} windows, {above} above threshold"
        if len(scored) < len(results):
            note += f", {len(results) - len(scored)} with a sensor fault ({', '.join(faults)})"
        score = f"{top.score:8.5f}" if top else f"{'-':>8}"
        print(f"{score} {threshold:9.5f}  {decision:<12}  {sec:<24} {f}  ({note})", flush=True)
    return Series(
        f.name,
        sec,
        [r.start_s for r in results if r.score is not None],
        [w.score for w in scored],
        threshold,
        [r.start_s for r in results if r.score is None],
    )


def _decision(r: WindowScore | None) -> str:
    if r is None:
        return "SENSOR_FAULT"
    return "ANOMALY" if r.anomalous else "normal"


def _row(name: str, sec: str, threshold: float, r: WindowResult) -> str:
    """One window as a table row: its score and decision, or SENSOR_FAULT and the reasons."""
    from edge_agent.adaptation.clips import describe_faults
    from edge_agent.config.runtime import HealthSettings

    if r.score is None:
        why = describe_faults(r.health, HealthSettings())
        return f"{'-':>8} {threshold:9.5f}  {'SENSOR_FAULT':<12}  {sec:<24} {name}  {why}"
    return f"{r.score.score:8.5f} {threshold:9.5f}  {_decision(r.score):<12}  {sec:<24} {name}"


def _window_dict(r: WindowResult) -> dict[str, Any]:
    """One window for --json: start, score and decision, or null and the fault with levels."""
    if r.score is None:
        return {
            "start_s": r.start_s,
            "score": None,
            "anomalous": None,
            **{k: v for k, v in r.health.to_dict().items() if k != "ok"},
        }
    return {
        "start_s": r.start_s,
        "score": r.score.score,
        "anomalous": r.score.anomalous,
        "faults": [],
    }
