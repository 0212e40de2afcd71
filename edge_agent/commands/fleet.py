"""`edge-agent fleet push|rollback|status|cmd`: the operator's commands (edge_agent.fleet.operator).

Run from the operator's machine with an agent-style config (`--config`) whose `mqtt:` section
is the operator's broker account (host, port, prefix, user, password, TLS): the same keys,
validated the same way, as a device's. `push` and `rollback` exit 1 when a device refused or
did not report in time (a canary: the rollout was aborted and the rest of the group left
untouched); `cmd` exits 1 when the reply is an error. A bad argument (a device, group or
release with `/ + #`, a command id the device would refuse) is a one-line error, exit 2, before
anything is sent.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from edge_agent.commands import options as opt
from edge_agent.commands.overrides import Flags, agent_config

fleet_app = typer.Typer(
    no_args_is_help=True,
    help="Roll out bundles to device groups over MQTT, roll back, remote commands.",
)

Group = Annotated[str, typer.Option("--group", help="Device group (the devices' `fleet.group`).")]
Wait = Annotated[
    float, typer.Option("--wait", min=0.1, help="Seconds to wait for the devices' reports.")
]


def _connection(config: Path | None, host: str | None, port: int | None) -> Any:
    from edge_agent.fleet.operator import Connection

    cfg = agent_config(config, Flags(mqtt_host=host, mqtt_port=port))
    return Connection(cfg.mqtt, timeout=cfg.mqtt.connect_timeout or 10.0)


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


@fleet_app.command("push")
def fleet_push_cmd(
    bundle: Annotated[
        Path,
        typer.Argument(
            help="Bundle folder (its current version) or a "
            "version folder; signed (model-build export "
            "--sign-key)."
        ),
    ],
    group: Group,
    canary: Annotated[
        list[str] | None,
        typer.Option(
            "--canary",
            help="A device to install first (repeat "
            "for more); the group follows once all report healthy.",
            show_default=False,
        ),
    ] = None,
    wait: Wait = 300.0,
    chunk_kb: Annotated[
        int, typer.Option("--chunk-kb", min=1, max=4096, help="Chunk size, KiB.")
    ] = 256,
    config: opt.Config = None,
    mqtt_host: opt.MqttHost = None,
    mqtt_port: opt.MqttPort = None,
) -> None:
    """Publish a bundle version to a group: canaries first, then every device."""
    from edge_agent.config.ids import check_device
    from edge_agent.fleet.messages import FleetError
    from edge_agent.fleet.operator import check_group, prepare, push

    check_group(group)
    for c in canary or []:
        check_device(c, "--canary")
    prepared = prepare(bundle, group, chunk_kb * 1024)
    with _connection(config, mqtt_host, mqtt_port) as conn:
        try:
            _, out = push(conn, prepared, list(canary or []), wait, typer.echo)
        except FleetError as exc:
            _fail(str(exc))
    for dev in out.pending:
        typer.echo(f"{dev}: no report within {wait:g} s")
    if out.failed:  # some run it, these do not: the operator must look (exit 1)
        _fail("; ".join(f"{d} refused it: {e}" for d, e in out.failed.items()))


@fleet_app.command("rollback")
def fleet_rollback_cmd(
    group: Group,
    release: Annotated[
        str | None,
        typer.Option(
            "--release",
            help="Release to undo (default: the group's current one).",
            show_default=False,
        ),
    ] = None,
    wait: Wait = 120.0,
    config: opt.Config = None,
    mqtt_host: opt.MqttHost = None,
    mqtt_port: opt.MqttPort = None,
) -> None:
    """Roll a group back from its release: devices running it return to their version before.

    One device: `edge-agent fleet cmd DEVICE rollback`."""
    from edge_agent.fleet.operator import check_group, check_release, rollback_group

    check_group(group)
    if release is not None:
        check_release(release)
    with _connection(config, mqtt_host, mqtt_port) as conn:
        rid, out = rollback_group(conn, group, release, wait)
    typer.echo(
        f"rollback of {rid} in group {group}: {len(out.ok)} rolled back"
        + (f" ({', '.join(out.ok)})" if out.ok else "")
    )
    for dev in out.pending:
        typer.echo(
            f"{dev}: no report within {wait:g} s (offline devices roll back when they connect)"
        )
    if out.failed:
        _fail("; ".join(f"{d}: {e}" for d, e in out.failed.items()))


@fleet_app.command("status")
def fleet_status_cmd(
    group: Group,
    wait: Wait = 2.0,
    json_out: opt.Json = False,
    config: opt.Config = None,
    mqtt_host: opt.MqttHost = None,
    mqtt_port: opt.MqttPort = None,
) -> None:
    """The group's release and each device's retained fleet state."""
    from edge_agent.fleet.messages import Release
    from edge_agent.fleet.operator import check_group, group_status

    check_group(group)
    with _connection(config, mqtt_host, mqtt_port) as conn:
        notice, states = group_status(conn, group, wait)
    if json_out:
        typer.echo(
            json.dumps(
                {
                    "group": group,
                    "notice": None if notice is None else json.loads(notice.to_json()),
                    "devices": states,
                },
                indent=1,
            )
        )
        return
    if notice is None:
        typer.echo(f"group {group}: no release published")
    elif isinstance(notice, Release):
        to = "all" if notice.targets is None else ", ".join(notice.targets)
        typer.echo(
            f"group {group}: release {notice.release} ({notice.model_version}), stage "
            f"{notice.stage}, targets {to}"
        )
    else:
        typer.echo(f"group {group}: release {notice.release} rolled back")
    if not states:
        typer.echo("no device has reported")
        return
    typer.echo(
        f"{'device':<20} {'release':<28} {'status':<16} {'ver':>4} {'running':<14} healthy  error"
    )
    for dev in sorted(states):
        s = states[dev]
        typer.echo(
            f"{dev:<20} {_cell(s.get('release')):<28} {_cell(s.get('status')):<16} "
            f"{_cell(s.get('installed_version')):>4} {_cell(s.get('model_version')):<14} "
            f"{'yes' if s.get('healthy') else 'NO':<8} {s.get('error') or ''}"
        )


def _cell(value: Any) -> str:
    """A status table cell: `-` for a value the device has not set (never `None`)."""
    return "-" if value is None or value == "" else str(value)


def parse_args(pairs: list[str]) -> dict[str, Any]:
    """`k=v` pairs -> args: v is read as JSON when it parses (numbers, true, lists), else
    taken as a string (`monitor=pump_1`)."""
    from edge_agent.errors import FieldError

    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise FieldError("arg", f"expected KEY=VALUE, got {pair!r}")
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


@fleet_app.command("cmd")
def fleet_cmd_cmd(
    device: Annotated[str, typer.Argument(help="Device id (its mqtt.device_id).")],
    name: Annotated[str, typer.Argument(help="status | rollback | record | tune | calibrate.")],
    arg: Annotated[
        list[str] | None,
        typer.Option(
            "--arg",
            help="Argument KEY=VALUE (repeat); VALUE is JSON when it parses, else a string.",
            show_default=False,
        ),
    ] = None,
    wait: Wait = 120.0,
    cid: Annotated[
        str | None,
        typer.Option(
            "--id",
            help="Command id (default: a new one; the same id again gets the stored reply).",
            show_default=False,
        ),
    ] = None,
    config: opt.Config = None,
    mqtt_host: opt.MqttHost = None,
    mqtt_port: opt.MqttPort = None,
) -> None:
    """Send a remote command to one device and print its reply (JSON)."""
    from edge_agent.config.ids import check_device
    from edge_agent.fleet.messages import FleetError
    from edge_agent.fleet.operator import check_command_id, send_command

    check_device(device, "DEVICE")
    if cid is not None:
        check_command_id(cid)
    args = parse_args(list(arg or []))
    with _connection(config, mqtt_host, mqtt_port) as conn:
        try:
            r = send_command(conn, device, name, args, wait, cid)
        except FleetError as exc:
            _fail(str(exc))
            return
    typer.echo(json.dumps(r, indent=1))
    if not r.get("ok"):
        raise typer.Exit(1)
