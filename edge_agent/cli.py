"""`edge-agent`: the device-side command line. This file only registers the commands.

Each command lives in its own module under `edge_agent.commands` and imports what it needs
when it runs, so `edge-agent --help` (and a Pi running one command) never imports the others'
dependencies.
"""

from __future__ import annotations

import typer

from edge_agent.commands.calibrate import calibrate_cmd
from edge_agent.commands.check import check_cmd
from edge_agent.commands.config_check import config_app
from edge_agent.commands.demo import demo_cmd
from edge_agent.commands.devices import devices_cmd
from edge_agent.commands.enrol import enrol_cmd
from edge_agent.commands.evidence import evidence_app
from edge_agent.commands.feedback import feedback_cmd
from edge_agent.commands.fleet import fleet_app
from edge_agent.commands.record import record_cmd
from edge_agent.commands.run import run_cmd
from edge_agent.commands.runner import run_app
from edge_agent.commands.score import score_cmd
from edge_agent.commands.tune import tune_cmd

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Listen to a machine, score 10-second windows, publish alarms.",
)
app.command("devices")(devices_cmd)
app.command("demo")(demo_cmd)
app.command("check")(check_cmd)
app.command("score")(score_cmd)
app.command("run")(run_cmd)
app.add_typer(config_app, name="config")
app.command("calibrate")(calibrate_cmd)
app.command("tune")(tune_cmd)
app.command("enrol")(enrol_cmd)
app.command("record")(record_cmd)
app.add_typer(evidence_app, name="evidence")
app.command("feedback")(feedback_cmd)
app.add_typer(fleet_app, name="fleet")


def main(argv: list[str] | None = None) -> None:
    run_app(app, argv)


if __name__ == "__main__":
    main()
