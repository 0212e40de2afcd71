"""`edge-agent record`: normal clips from the device, filed in the DCASE layout for training.

Recordings made on site are the training data of the next model, so they are written where
`model-build train --data OUT` finds them and with the names `model_build.data.scan` parses:

    OUT/<machine>/train/section_XX_<domain>_train_normal_NNNN[_<attrs>].wav

16-bit PCM WAV, 16 kHz, exactly 160 000 samples (the clip the model sees). NNNN continues
after the highest index already there for that section and domain, so recording sessions
add to a folder instead of overwriting it. Each file is written under a temporary name and
renamed when complete: an interrupted recording leaves no truncated clip for training.
The level check of `edge_agent.clips` applies: silent, clipped or overflowing clips are
captured again, never filed as "normal". `--files` converts existing recordings (any rate,
first 10 s) into the layout the same way.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from numpy.typing import NDArray

from . import clip_options as opt
from .errors import ConfigError

DOMAINS = ("source", "target")
_ATTRS = re.compile(r"^[A-Za-z0-9.\-]+(?:_[A-Za-z0-9.\-]+)*$")


def check_attrs(attrs: str) -> str:
    """Attribute string of the file name: `k_v` pairs joined by '_' (DCASE), or empty."""
    if attrs and not _ATTRS.match(attrs):
        raise ConfigError(
            f"--attrs: expected key_value pairs joined by '_' (letters, digits, '.', '-'), "
            f"e.g. spd_1200_load_1; got {attrs!r}"
        )
    return attrs


def next_index(folder: Path, section: str, domain: str) -> int:
    """One past the highest NNNN of `section_XX_<domain>_train_normal_NNNN*.wav` in `folder`."""
    pat = re.compile(rf"^section_{section}_{domain}_train_normal_(\d+)(?:_.*)?\.wav$")
    found = [int(m[1]) for p in folder.glob("*.wav") if (m := pat.match(p.name))] \
        if folder.is_dir() else []
    return max(found) + 1 if found else 0


def clip_path(out: Path, machine: str, section: str, domain: str, index: int,
              attrs: str) -> Path:
    name = f"section_{section}_{domain}_train_normal_{index:04d}{'_' + attrs if attrs else ''}.wav"
    return out / machine / "train" / name


def write_clips(out: Path, section_id: str, domain: str, attrs: str,
                waves: Sequence[NDArray[np.float32]]) -> list[Path]:
    """File `waves` under `out` in the DCASE layout (see module docstring); returns the paths."""
    from .adapt import parse_section
    from .audio import write_wav

    machine, sec = parse_section(section_id)
    if domain not in DOMAINS:
        raise ConfigError(f"--domain: expected source or target, got {domain!r}")
    check_attrs(attrs)
    folder = out / machine / "train"
    folder.mkdir(parents=True, exist_ok=True)
    index = next_index(folder, sec, domain)
    paths = []
    for k, w in enumerate(waves):
        final = clip_path(out, machine, sec, domain, index + k, attrs)
        tmp = final.with_name(f".{final.stem}.tmp.wav")  # not matched by scan (leading dot)
        write_wav(tmp, np.asarray(w, dtype=np.float32), 16000)
        os.replace(tmp, final)
        paths.append(final)
    return paths


def record_cmd(
    out: Annotated[Path, typer.Argument(help="Data root (DCASE layout is written inside).")],
    section: Annotated[
        str | None, typer.Option(help="<machine>_section_<XX> (default: the config's).")
    ] = None,
    domain: Annotated[str, typer.Option(help="source | target.")] = "source",
    attrs: Annotated[str, typer.Option(help="Attribute string, e.g. spd_1200_load_1.")] = "",
    count: Annotated[int, typer.Option(min=1, help="Clips to capture from the device.")] = 10,
    config: opt.Config = None,
    device: opt.Device = None,
    files: opt.Files = None,
    from_files: opt.FromFiles = False,
    skip_refused: opt.SkipRefused = False,
    retries: opt.Retries = 3,
    quiet: opt.Quiet = False,
) -> None:
    """Record normal clips into OUT/<machine>/train/ with DCASE names (for model-build train)."""
    from .adapt import parse_section
    from .calibrate_cmd import Inputs, collect_clips

    inputs = Inputs(None, section, config, device, files, from_files, bundle_optional=True)
    sec = inputs.require_section()
    parse_section(sec)
    if domain not in DOMAINS:
        raise ConfigError(f"--domain: expected source or target, got {domain!r}")
    check_attrs(attrs)
    clips = collect_clips(inputs, count, skip_refused, retries, quiet)
    paths = write_clips(out, sec, domain, attrs, [c.samples for c in clips])
    print(f"recorded {len(paths)} clips: {paths[0]} .. {paths[-1].name}")
