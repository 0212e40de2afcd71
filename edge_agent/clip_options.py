"""The command-line options `calibrate`, `enrol` and `record` share, declared once.

All three capture clips the same way (`edge_agent.clips`): from a device named by `--device`
or an agent config, or from WAV files after `--files`. Declaring the options here keeps their
names, defaults and help identical across the commands (and light: typer only, no numpy).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

Config = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="Agent YAML (bundle, section, source device)."),
]
Device = Annotated[str | None, typer.Option(help="Input device (name, substring, index).")]
Files = Annotated[
    list[Path] | None,
    typer.Argument(help="With --files: WAV files/folders, one clip per file.",
                   show_default=False, metavar="PATH..."),
]
FromFiles = Annotated[
    bool, typer.Option("--files", help="Read the clips from the PATHs instead of a device.")
]
SkipRefused = Annotated[
    bool, typer.Option("--skip-refused", help="--files: skip refused files (default: error).")
]
Retries = Annotated[
    int, typer.Option(min=0, help="Device: captures again per refused clip before failing.")
]
Threads = Annotated[int, typer.Option(min=1, help="TFLite interpreter threads.")]
Quiet = Annotated[bool, typer.Option("--quiet", help="No per-clip progress.")]
