"""`edge-agent`: the device-side command line.

Commands live in the modules that do the work; this file only registers them, so each
command's imports stay lazy (a Pi never imports what a command it does not run needs).
"""

from __future__ import annotations

import typer

from .cli_support import run_app

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Listen to a machine, score 10-second windows, publish alarms.",
)

# --- commands (each registered from its own module) ---
from .devices_cmd import devices_cmd  # noqa: E402

app.command("devices")(devices_cmd)

from .demo_cmd import demo_cmd  # noqa: E402

app.command("demo")(demo_cmd)

from .score_cmd import score_cmd  # noqa: E402

app.command("score")(score_cmd)

from .agent_cmd import config_app, run_cmd  # noqa: E402

app.command("run")(run_cmd)
app.add_typer(config_app, name="config")

from .calibrate_cmd import calibrate_cmd  # noqa: E402

app.command("calibrate")(calibrate_cmd)

from .enrol_cmd import enrol_cmd  # noqa: E402

app.command("enrol")(enrol_cmd)

from .record_cmd import record_cmd  # noqa: E402

app.command("record")(record_cmd)


def main(argv: list[str] | None = None) -> None:
    run_app(app, argv)


if __name__ == "__main__":
    main()
