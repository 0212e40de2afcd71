"""`edge-agent evidence list|show|export`: the alarm clips the agent kept
(`edge_agent.runtime.evidence`).

`list` answers "what did it hear when it alarmed?" on the device: one line per clip (file,
alarm time, section, span, size, the operator's answer, sha256), or JSON. `export DEST` copies
the clips with their sidecars and an `index.json` to DEST (a USB stick, a folder to scp),
checking each clip's sha256 against the one the alarm payload carried; a clip that fails is
not copied and the command ends with an error naming it. `export --dcase DEST` writes the
answered clips as a DCASE data set instead (`edge_agent.adaptation.labelled`), for
`model-build evaluate` and `train`. `show CLIP` answers "why did it alarm?": the alarm, its
voting windows with their scores, and the explanation the alarm payload carried
(edge_agent.scoring.explain), sentence first, then its fields.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from edge_agent.commands import options as opt
from edge_agent.commands.runner import fields_as_flags

if TYPE_CHECKING:
    from edge_agent.runtime.evidence import ClipInfo

evidence_app = typer.Typer(no_args_is_help=True, help="Alarm audio kept on the device.")

Folder = Annotated[
    Path | None,
    typer.Option(
        "--folder",
        help="Evidence folder (default: the config's `evidence.folder`).",
        show_default=False,
    ),
]


def _folder(config: Path | None, folder: Path | None) -> Path:
    """The evidence folder from --folder, else from the config; one-line errors otherwise."""
    from edge_agent.config.load import read_config
    from edge_agent.runtime.evidence import EvidenceError

    if folder is None:
        cfg = read_config(config) if config is not None else None
        if cfg is None or not cfg.evidence.folder:
            raise EvidenceError(
                "evidence.folder: not set (give --config with an `evidence:` folder, or --folder)"
            )
        folder = Path(cfg.evidence.folder)
    if not folder.is_dir():
        raise EvidenceError(f"{folder}: no such evidence folder (no alarm kept yet?)")
    return folder


def _row(c: ClipInfo) -> dict[str, Any]:
    m = c.meta
    return {
        "file": c.path.name,
        "alarm_ts": m.get("alarm_ts"),
        "monitor": m.get("monitor") or m.get("section"),
        "section": m.get("section"),
        "t_start": m.get("t_start"),
        "t_end": m.get("t_end"),
        "bytes": c.path.stat().st_size,
        "sha256": m.get("sha256"),
        "windows": m.get("windows"),
        "answer": (c.answer or {}).get("answer"),
    }


@evidence_app.command("list")
def evidence_list_cmd(
    config: opt.Config = None,
    folder: Folder = None,
    json_out: opt.Json = False,
) -> None:
    """List the kept alarm clips, oldest first: file, alarm time, machine, span, size, sha256."""
    from edge_agent.runtime.evidence import list_clips

    rows = [_row(c) for c in list_clips(_folder(config, folder))]
    if json_out:
        typer.echo(json.dumps(rows, indent=1))
        return
    if not rows:
        typer.echo("no evidence clips")
        return
    typer.echo(
        f"{'file':<48} {'alarm':<24} {'monitor':<18} {'span':>7} {'size':>9}  "
        f"{'answer':<11}  sha256"
    )
    for r in rows:
        span = float(r["t_end"]) - float(r["t_start"])
        typer.echo(
            f"{r['file']:<48} {r['alarm_ts']!s:<24} {r['monitor']!s:<18} "
            f"{span:>6.1f}s {r['bytes']:>9}  {r['answer'] or '-':<11}  "
            f"{str(r['sha256'])[:16]}"
        )


@evidence_app.command("show")
def evidence_show_cmd(
    clip: Annotated[
        str,
        typer.Argument(
            help="The clip's file name (as `list` prints it), or 'last' for the newest."
        ),
    ],
    config: opt.Config = None,
    folder: Folder = None,
    json_out: opt.Json = False,
) -> None:
    """Why it alarmed: one kept clip's alarm, voting windows and explanation."""
    from edge_agent.runtime.evidence import EvidenceError, list_clips

    where = _folder(config, folder)
    clips = list_clips(where)
    if clip == "last" and clips:
        chosen = clips[-1]
    else:
        named = [c for c in clips if clip in (c.path.name, c.sidecar.name, c.path.stem)]
        if not named:
            raise EvidenceError(
                f"{where / clip}: no such evidence clip (`edge-agent evidence list` names them)"
            )
        chosen = named[0]
    m = chosen.meta
    if json_out:
        typer.echo(json.dumps(m, indent=1))
        return
    typer.echo(
        f"{chosen.path.name}: alarm of {m.get('monitor') or m.get('section')} "
        f"({m.get('section')}) at {m.get('alarm_ts')}, model {m.get('model_version')}"
    )
    for part in m.get("parts", []):
        typer.echo(
            f"  window {part.get('window')} at {part.get('offset_s')} s of the clip: "
            f"score {part.get('score')} (threshold {part.get('threshold')})"
        )
    ex = m.get("explanation")
    if not isinstance(ex, dict):
        typer.echo(
            "why: not explained (the bundle has no audio profile for this section, or "
            "the clip was kept by an agent from before explanations)"
        )
        return
    typer.echo(f"why: {ex.get('sentence')}")
    fields = {k: v for k, v in ex.items() if k not in ("sentence", "others")}
    typer.echo("  " + ", ".join(f"{k} {v}" for k, v in fields.items()))
    for other in ex.get("others", []):
        typer.echo(f"  also: {other}")


@evidence_app.command("export")
@fields_as_flags(test_share="--test-share")
def evidence_export_cmd(
    dest: Annotated[Path, typer.Argument(help="Folder to copy the clips and index.json to.")],
    config: opt.Config = None,
    folder: Folder = None,
    dcase: Annotated[
        bool,
        typer.Option(
            "--dcase",
            help="Write the answered clips as a DCASE data set "
            "(one WAV per window, labels from the answers) for model-build.",
        ),
    ] = False,
    test_share: Annotated[
        float,
        typer.Option(
            "--test-share",
            help='--dcase: the share of "not a fault" '
            "alarms (per section) written as test clips; the rest train.",
        ),
    ] = 0.5,
) -> None:
    """Copy the kept clips, their sidecars and an index.json to DEST, sha256 checked; with
    --dcase, the answered clips as a DCASE data set."""
    from edge_agent.runtime.evidence import EvidenceError, export

    if dcase:
        _export_dcase(_folder(config, folder), dest, test_share)
        return
    index, bad = export(_folder(config, folder), dest)
    typer.echo(f"exported {len(index)} clip(s) to {dest} (index: {dest / 'index.json'})")
    if bad:
        raise EvidenceError(f"{len(bad)} clip(s) not exported: {'; '.join(bad)}")


def _export_dcase(folder: Path, dest: Path, test_share: float) -> None:
    from edge_agent.adaptation.labelled import INDEX, export_dcase
    from edge_agent.runtime.evidence import EvidenceError

    out = export_dcase(folder, dest, test_share)
    counts = ", ".join(f"{n} {k}" for k, n in sorted(out.counts().items())) or "nothing"
    alarms = len({r["alarm"] for r in out.rows})
    typer.echo(
        f"exported {len(out.rows)} window(s) of {alarms} answered alarm(s) to {dest} "
        f"({counts}; index: {dest / INDEX})"
    )
    if out.left_out:
        raise EvidenceError(
            f"{len(out.left_out)} answered clip(s) not exported: {'; '.join(out.left_out)}"
        )
