"""Every command-line option, declared once: a flag means the same in every command.

A command declares a parameter with one of these `Annotated` types and gets the flag, its type
and its help text; defaults stay in the command's signature (they differ, e.g. `--count`).
Light on purpose (typer only): `edge-agent --help` must not import numpy.

Where a value can also come from the agent config (`--config`), the flag's default is None
and means "the config's value"; `edge_agent.commands.overrides` maps flags onto config keys.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

# --- the model and the section
Bundle = Annotated[
    Path | None,
    typer.Option(
        "--bundle",
        help="Model bundle folder (model-build export) (default: the config's `bundle`).",
        show_default=False,
    ),
]
BundleRequired = Annotated[
    Path, typer.Option("--bundle", help="Model bundle folder (model-build export).")
]
Section = Annotated[
    str | None,
    typer.Option(
        "--section",
        help="Bundle section, <machine>_section_<XX> (e.g. fan_section_00).",
        show_default=False,
    ),
]
MonitorName = Annotated[
    str | None,
    typer.Option(
        "--monitor",
        help="Monitor name, from the config's `monitors:` (default: the "
        "only one, or the section of a single-machine config).",
        show_default=False,
    ),
]
Threads = Annotated[
    int | None,
    typer.Option(
        "--threads",
        min=1,
        help="TFLite interpreter threads (default: the config's `threads`; 1 without a config).",
        show_default=False,
    ),
]
ThreadsNoConfig = Annotated[
    int,
    typer.Option(
        "--threads", min=1, help="TFLite interpreter threads (default: 1).", show_default=False
    ),
]

TfliteRuntime = Annotated[
    str | None,
    typer.Option(
        "--runtime",
        help="TFLite runtime: auto, ai_edge_litert, tflite_runtime or "
        "tensorflow (default: the config's `tflite.runtime`, auto).",
        show_default=False,
    ),
]
Xnnpack = Annotated[
    bool | None,
    typer.Option(
        "--xnnpack/--no-xnnpack",
        help="XNNPACK's kernels (twice as fast, ~16 MB more) or TFLite's own (default: the "
        "config's `tflite.xnnpack`, false).",
        show_default=False,
    ),
]

# --- where the audio comes from
Config = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="Agent YAML; flags override its values.", show_default=False
    ),
]
Device = Annotated[
    str | None,
    typer.Option("--device", help="Input device (name, substring, index).", show_default=False),
]
FromFiles = Annotated[
    bool,
    typer.Option(
        "--files",
        help="Read the PATHs (WAV files or folders) instead of a "
        "device; alone: the config's `source.files`.",
    ),
]
Paths = Annotated[
    list[Path] | None,
    typer.Argument(
        help="WAV files or folders (with --files).", show_default=False, metavar="PATH..."
    ),
]
Stdin = Annotated[bool, typer.Option("--stdin", help="Raw PCM on stdin.")]
Pace = Annotated[
    bool | None,
    typer.Option(
        "--realtime/--fast",
        help="Pace of a file replay: --realtime at the audio's "
        "own pace, --fast as fast as it scores, without pauses (default: the config's "
        "`source.realtime`; demo: --speed).",
        show_default=False,
    ),
]
SkipUnreadable = Annotated[
    bool,
    typer.Option(
        "--skip-unreadable",
        help="Leave out a WAV file that cannot be read or "
        "used (unreadable, or refused by the input checks), with one line naming "
        "it (default: stop with that error).",
    ),
]
Channel = Annotated[
    int | None,
    typer.Option(
        "--channel",
        min=0,
        help="0-based channel of multi-channel audio (default: the mean of all channels).",
        show_default=False,
    ),
]

# --- clips for calibrate, enrol and record
Count = Annotated[int, typer.Option("--count", min=1, help="Clips to capture from the device.")]
Retries = Annotated[
    int,
    typer.Option(
        "--retries", min=0, help="Device: captures again per refused clip before failing."
    ),
]
Percentile = Annotated[
    float,
    typer.Option(
        "--percentile", help="Threshold: this percentile of normal clips' held-out scores."
    ),
]

# --- output
Json = Annotated[
    bool, typer.Option("--json", help="Machine-readable JSON on stdout instead of text.")
]
Quiet = Annotated[
    bool,
    typer.Option(
        "--quiet",
        help="No progress and no per-item lines (windows, clips); results and errors still print.",
    ),
]
Verbose = Annotated[
    bool,
    typer.Option(
        "--verbose",
        help="Also show log lines and library output on stderr "
        "(default: only this program's lines).",
    ),
]

# --- the broker, for commands that talk to it directly
MqttHost = Annotated[
    str | None,
    typer.Option(
        "--mqtt-host",
        help="MQTT broker host (default: the config's `mqtt.host`; none: no MQTT).",
        show_default=False,
    ),
]
MqttPort = Annotated[
    int | None,
    typer.Option(
        "--mqtt-port",
        help="MQTT broker port (default: the config's `mqtt.port`, 1883).",
        show_default=False,
    ),
]
