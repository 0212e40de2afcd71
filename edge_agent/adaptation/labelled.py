"""The plant's answered alarms as a DCASE data set (`edge-agent evidence export --dcase OUT`).

Why: every answer is a label a person gave to audio of this machine, in this plant, at the
moment the model was unsure: a confirmed fault is an anomalous clip no synthetic set has, a
"not a fault" is normal sound the model did not know. In the DCASE layout
(`edge_agent.audio.dcase`) `model-build evaluate` measures the next model on them and
`model-build train` / `export` learn from them, with no converter in between:

    OUT/<machine>/test/section_XX_target_test_anomaly_NNNN.wav    one per window of a confirmed
                                                                   fault
    OUT/<machine>/train/section_XX_target_train_normal_NNNN.wav   windows of "not a fault"
    OUT/<machine>/test/section_XX_target_test_normal_NNNN.wav     alarms, split between train
                                                                   and test (below)
    OUT/labels.json                                                where each file came from

One file per voting window (the model scores 10 s windows, a DCASE clip is one), 16-bit WAV at
the clip's rate. The domain is `target`: the plant's condition is what the model met after
training. DCASE training data are normal only, so confirmed faults all go to test; "not a
fault" alarms go, per section, alternately to train and test (`test_share` of them to test,
whole alarms: the overlapping windows of one alarm never sit on both sides), so the export alone
can be evaluated and trained on. `--data ORIG --data OUT` adds it to the original data set
(same machine and section names: one section).

An export folder is the export's own: OUT must be empty or hold an earlier export (its
`labels.json`), whose files are replaced; anything else there is refused. Each clip's sha256 is
checked (`evidence.voting_windows`); a clip that fails, or whose section is not a DCASE
section id, is left out and named.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_agent.adaptation.feedback import LABELS, labelled
from edge_agent.audio.dcase import Label, Split, clip_name, parse_section_id
from edge_agent.audio.files import write_wav
from edge_agent.errors import EdgeAgentError, FieldError
from edge_agent.runtime.evidence import ClipInfo, EvidenceError, list_clips, voting_windows

INDEX = "labels.json"
DOMAIN = "target"


@dataclass(frozen=True)
class LabelledSet:
    """What an export wrote: one row per file (labels.json), and the clips left out, why."""

    rows: list[dict[str, Any]]
    left_out: list[str]

    def counts(self) -> dict[str, int]:
        """Files per `<split>/<label>`."""
        out: dict[str, int] = {}
        for r in self.rows:
            key = f"{r['split']}/{r['label']}"
            out[key] = out.get(key, 0) + 1
        return out


def _prepare(out: Path) -> None:
    """OUT empty, or an earlier export whose files are removed now (see module docstring)."""
    out.mkdir(parents=True, exist_ok=True)
    index = out / INDEX
    if index.is_file():
        try:
            old = json.loads(index.read_text())
            files = [str(r["file"]) for r in old["files"]]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise EvidenceError(f"{index}: unreadable ({exc}); remove {out} by hand") from None
        for f in files:
            p = (out / f).resolve()
            if out.resolve() in p.parents:  # never outside OUT, whatever the index says
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
        index.unlink()
        return
    if any(p for p in out.rglob("*") if p.is_file()):
        raise EvidenceError(
            f"{out}: not empty and not an earlier labelled export (no {INDEX}); "
            "export into an empty folder"
        )


def _split(label: Label, normals_before: int, test_share: float) -> Split:
    """Confirmed faults: test. The k-th "not a fault" alarm of a section (k from 0): test when
    it raises the count of test alarms floor(share * (k + 1)) (share 0.5: train, test, ...)."""
    if label == "anomaly":
        return "test"
    k = normals_before
    return "test" if int(test_share * (k + 1)) > int(test_share * k) else "train"


def export_dcase(folder: str | Path, out: str | Path, test_share: float = 0.5) -> LabelledSet:
    """Write the answered clips of the evidence `folder` under `out` (module docstring)."""
    if not 0.0 <= test_share <= 1.0:
        raise FieldError("test_share", f"expected a number in [0, 1], got {test_share}")
    src, dest = Path(folder), Path(out)
    if not src.is_dir():
        raise EvidenceError(f"{src}: no such evidence folder (no alarm kept yet?)")
    if dest.resolve() == src.resolve() or src.resolve() in dest.resolve().parents:
        raise EvidenceError(f"{dest}: inside the evidence folder; export somewhere else")
    _prepare(dest)
    rows: list[dict[str, Any]] = []
    left_out: list[str] = []
    normals: dict[str, int] = {}  # section -> "not a fault" alarms placed so far
    index: dict[tuple[str, str, str, str], int] = {}
    for clip in labelled(list_clips(src)):
        try:
            rows += _export_clip(clip, dest, test_share, normals, index)
        except EdgeAgentError as exc:
            left_out.append(f"{clip.path.name}: {exc}")
        except OSError as exc:  # the export disk (full, read-only): what is whole is indexed
            _write_index(dest, src, test_share, rows)
            raise EvidenceError(
                f"{dest}: cannot write {clip.path.name}'s windows: "
                f"{exc.strerror or exc}; {len(rows)} file(s) before it were "
                f"written whole and are listed in {INDEX}"
            ) from None
    _write_index(dest, src, test_share, rows)
    return LabelledSet(rows, left_out)


def _write_index(dest: Path, src: Path, test_share: float, rows: list[dict[str, Any]]) -> None:
    text = json.dumps(
        {"source": str(src.resolve()), "domain": DOMAIN, "test_share": test_share, "files": rows},
        indent=1,
    )
    tmp = dest / f".{INDEX}.tmp"
    tmp.write_text(text + "\n")
    tmp.replace(dest / INDEX)


def _export_clip(
    clip: ClipInfo,
    dest: Path,
    test_share: float,
    normals: dict[str, int],
    index: dict[tuple[str, str, str, str], int],
) -> list[dict[str, Any]]:
    rec = clip.answer
    assert rec is not None
    section = str(clip.meta.get("section") or "")
    machine, sec = parse_section_id(section)
    label = LABELS[rec["answer"]]
    windows, rate = voting_windows(clip)
    split = _split(label, normals.get(section, 0), test_share)
    if label == "normal":
        normals[section] = normals.get(section, 0) + 1
    folder = dest / machine / split
    folder.mkdir(parents=True, exist_ok=True)
    parts = clip.meta.get("parts") or []
    rows = []
    for i, w in enumerate(windows):
        key = (machine, sec, split, label)
        n = index.get(key, 0)
        index[key] = n + 1
        final = folder / clip_name(sec, DOMAIN, split, label, n)
        tmp = final.with_name(f".{final.stem}.tmp.wav")  # a name `scan` ignores
        write_wav(tmp, w, rate)
        tmp.replace(final)
        part = parts[i] if i < len(parts) and isinstance(parts[i], dict) else {}
        rows.append(
            {
                "file": str(final.relative_to(dest)),
                "section": section,
                "split": split,
                "label": label,
                "alarm": clip.path.name,
                "window": part.get("window"),
                "score": part.get("score"),
                "threshold": part.get("threshold"),
                "answer": rec["answer"],
                "answered_ts": rec.get("ts"),
                "by": rec.get("by"),
                "alarm_ts": clip.meta.get("alarm_ts"),
                "device_id": clip.meta.get("device_id"),
                "model_version": clip.meta.get("model_version"),
            }
        )
    return rows
