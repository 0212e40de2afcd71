"""Generate docs/cli.md (from the typer apps) and docs/config.md (from the config dataclasses).

    .venv/bin/python docs/gen_reference.py            # rewrite both files
    .venv/bin/python docs/gen_reference.py --check    # exit 1 if either is out of date

Why generated: a hand-written reference drifts the day someone adds an option or a config
key. The CLI pages come from typer's own Markdown renderer; the config tables walk
`edge_agent.config.agent.AgentConfig` and its nested dataclasses, taking each field's type and
default from the dataclass and its meaning from the field's docstring (the string right under
the field, as wyoming-satellite writes its settings). A field without one fails the
generation, so every key is documented where it is declared.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import html
import inspect
import itertools
import sys
import textwrap
import types
import typing
from pathlib import Path
from typing import Any

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))

SECTIONS = {
    "": "Top level",
    "source": "`source:` where the audio comes from (`edge_agent.config.sources.SourceSettings`)",
    "windows": "`windows:` 10 s windows (`edge_agent.config.runtime.WindowSettings`)",
    "decision": "`decision:` alarm rule (`edge_agent.config.runtime.DecisionSettings`)",
    "health": "`health:` sensor checks (`edge_agent.config.runtime.HealthSettings`)",
    "mqtt": "`mqtt:` broker, topics, Home Assistant (`edge_agent.config.sinks.MqttSettings`)",
    "mqtt.tls": "`mqtt.tls:` (`edge_agent.config.sinks.TlsSettings`)",
    "outbox": "`outbox:` store-and-forward (`edge_agent.config.sinks.OutboxSettings`)",
    "log": "`log:` output (`edge_agent.config.agent.LogSettings`)",
    "evidence": "`evidence:` alarm audio kept on the device "
    "(`edge_agent.config.runtime.EvidenceSettings`)",
    "feedback": '`feedback:` the operator\'s answers to alarms, "not a fault" / "confirmed" '
    "(`edge_agent.config.runtime.FeedbackSettings`, docs/agent.md)",
    "fleet": "`fleet:` bundle releases over MQTT and remote commands "
    "(`edge_agent.config.fleet.FleetSettings`, docs/fleet.md)",
    "monitors": "`monitors:` several machines, one item each (`edge_agent.config.monitors."
    "MonitorSettings`; `device:` and `channel:` in an item are short for its `source.device` / "
    "`source.channel`)",
    "metrics": "`metrics:` Prometheus textfile for node-exporter "
    "(`edge_agent.config.sinks.MetricsSettings`)",
    "tflite": "`tflite:` the TFLite runtime and its kernels (`edge_agent.config.runtime."
    "TfliteSettings`; `edge-agent check` tries them)",
}


def field_docs(cls: type) -> dict[str, str]:
    """`name -> meaning` from each field's docstring (the string literal right under
    `name: type = default` in the dataclass body), its lines joined."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body if isinstance(tree.body[0], ast.ClassDef) else []
    out: dict[str, str] = {}
    for node, nxt in itertools.pairwise(body):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(nxt, ast.Expr)
            and isinstance(nxt.value, ast.Constant)
            and isinstance(nxt.value.value, str)
        ):
            out[node.target.id] = " ".join(nxt.value.value.split())
    return out


def _type_text(hint: Any) -> str:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Literal:
        return "one of " + ", ".join(map(str, args))
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        text = " or ".join(_type_text(a) for a in inner)
        return f"{text} or null" if type(None) in args else text
    if origin is tuple:
        return f"list of {_type_text(args[0])}"
    if dataclasses.is_dataclass(hint):
        return "mapping"
    return getattr(hint, "__name__", str(hint))


def _default_text(f: dataclasses.Field[Any]) -> str:  # noqa: PLR0911 -- one return per YAML form
    if f.default is not dataclasses.MISSING:
        v = f.default
    elif f.default_factory is not dataclasses.MISSING:
        v = f.default_factory()
        if dataclasses.is_dataclass(v):
            return "(section)"
    else:
        return "required"
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return f'"{v}"' if v else '""'
    if isinstance(v, tuple):
        return "[]" if not v else str(list(v))
    return repr(v)


def _bounds_text(f: dataclasses.Field[Any]) -> str:
    """` in [1, 65535]`, ` > 0`... from the field's `edge_agent.config.fields.bounded` metadata."""
    from edge_agent.config.fields import describe

    text = describe(f.metadata, integer=f.type in ("int", "int | None"))
    return f" {text}" if text else ""


def config_fields(
    cls: type, prefix: str = "", top: frozenset[type] = frozenset()
) -> list[tuple[str, str, str, str]]:
    """(key, type, default, meaning) for every YAML key under `cls`, nested sections too. A
    section of a list item (`monitors[].source`) whose class is a top-level section (`top`) is
    one row: its keys are that section's."""
    rows: list[tuple[str, str, str, str]] = []
    nested: list[tuple[str, type]] = []
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    for f in dataclasses.fields(cls):
        if not f.repr:  # e.g. mqtt.password: resolved at load, never a YAML key
            continue
        key = f"{prefix}{f.name}"
        hint = hints[f.name]
        meaning = docs.get(f.name, "")
        inner = [a for a in typing.get_args(hint) if dataclasses.is_dataclass(a)]
        sub = hint if dataclasses.is_dataclass(hint) else (inner[0] if inner else None)
        if isinstance(sub, type) and sub in top:
            rows.append(
                (
                    key,
                    "mapping",
                    "top level",
                    (f"{meaning} (the keys of `{f.name}:`, merged over the top-level ones)"),
                )
            )
            continue
        if isinstance(sub, type):
            nested.append((key, sub))
            if typing.get_origin(hint) is None:
                continue  # a plain section: its keys are listed in their own table
        if not meaning:
            raise SystemExit(
                f"error: config key {key}: its field has no docstring (a string "
                "right under the field in the dataclass says what it means)"
            )
        rows.append((key, _type_text(hint) + _bounds_text(f), _default_text(f), meaning))
    sections = top or frozenset(sub for _, sub in nested)
    for key, sub in nested:
        rows += config_fields(sub, key + ".", sections)
    return rows


def config_md() -> str:
    from edge_agent.config.agent import AgentConfig

    rows = config_fields(AgentConfig)
    out = [
        "# Agent configuration reference",
        "",
        (
            "<!-- generated by docs/gen_reference.py from edge_agent.config.agent.AgentConfig; "
            "do not edit by hand -->"
        ),
        "",
        (
            "One YAML file (`edge-agent run --config FILE`); check it with "
            "`edge-agent config check FILE`, which says OK in one line (with `--show`: the "
            "effective configuration, secrets masked). Unknown keys, repeated keys, wrong types, "
            "numbers that are not finite or "
            "outside the range in the type column are errors naming the key "
            "(`error: mqtt.tls.ca_file: file not found: ...`, exit 2); `config check` also checks "
            "the file against its bundle (section, window length, hop) exactly as `run` does at "
            "start. Relative paths are "
            "relative to the config file. CLI flags of `edge-agent run` override the file. "
            "`mqtt.password` is refused in the file: use `mqtt.password_env` or "
            "`mqtt.password_file`. A commented example: "
            "[deploy/agent.example.yaml](../deploy/agent.example.yaml)."
        ),
        "",
    ]
    groups: dict[str, list[tuple[str, str, str, str]]] = {}
    for r in rows:
        group = r[0].rsplit(".", 1)[0] if "." in r[0] else ""
        groups.setdefault(group, []).append(r)
    for group, items in groups.items():
        out += [
            f"## {SECTIONS.get(group, group)}",
            "",
            "| key | type | default | meaning |",
            "|---|---|---|---|",
        ]
        for key, typ, default, meaning in items:
            cell = meaning.replace("|", "\\|")  # a literal | inside a Markdown table cell
            out.append(f"| `{key}` | {typ} | `{default}` | {cell} |")
        out.append("")
    return "\n".join(out)


def cli_md() -> str:
    import typer
    from typer.cli import get_docs_for_click

    from edge_agent.cli import app as agent_app
    from model_build.cli import app as build_app

    parts = [
        "# Command-line reference",
        "",
        "<!-- generated by docs/gen_reference.py from the typer apps; do not edit by hand -->",
        "",
        (
            "Two programs: `edge-agent` (the device: no TensorFlow) and `model-build` (training "
            "machine). Every error a user can fix prints one line `error: ...` and exits 2."
        ),
        "",
    ]
    for app, name in ((agent_app, "edge-agent"), (build_app, "model-build")):
        click_obj = typer.main.get_command(app)
        ctx = typer.Context(click_obj, info_name=name)
        text = get_docs_for_click(obj=click_obj, ctx=ctx, name=name, indent=1)
        parts.append(html.unescape(text).strip())
        parts.append("")
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Generate docs/cli.md and docs/config.md.")
    ap.add_argument("--check", action="store_true", help="fail if a file is out of date")
    args = ap.parse_args(argv)
    stale = []
    for path, generated in ((DOCS / "cli.md", cli_md()), (DOCS / "config.md", config_md())):
        text = generated.rstrip() + "\n"
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(path.name)
        else:
            path.write_text(text)
            print(f"wrote {path}")
    if stale:
        print(f"out of date: {', '.join(stale)} (run .venv/bin/python docs/gen_reference.py)")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
