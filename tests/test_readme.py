"""The README and the generated references tell the truth.

- every `edge-agent` / `model-build` command in the README's shell blocks names a real
  subcommand and only real options (checked against the typer apps, and `--help` runs);
- the cheap ones run for real (config check of the README's minimal config, score --plot, the
  demo); scripts it names exist; `pip install` extras exist in pyproject.toml;
- docs/config.md documents every AgentConfig key, docs/cli.md every command and option, and
  both are what docs/gen_reference.py generates now.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shlex
import subprocess
import sys
import typing
from pathlib import Path
from typing import Any

import pytest
import tomllib
import typer
import yaml

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
sys.path.insert(0, str(REPO / "docs"))


def shell_commands(text: str) -> list[str]:
    """Lines of ```bash blocks (continuations joined, comments dropped)."""
    out: list[str] = []
    for block in re.findall(r"```(?:bash|sh|console)\n(.*?)```", text, re.S):
        for raw in block.replace("\\\n", " ").splitlines():
            line = raw.split(" #")[0].strip()
            if line and not line.startswith("#"):
                out.append(line)
    return out


def yaml_blocks(text: str) -> list[str]:
    return re.findall(r"```yaml\n(.*?)```", text, re.S)


def _apps() -> dict[str, Any]:
    """The click commands behind both typer apps (typer bundles its own click)."""
    from edge_agent.cli import app as agent_app
    from model_build.cli import app as build_app

    return {
        "edge-agent": typer.main.get_command(agent_app),
        "model-build": typer.main.get_command(build_app),
    }


def resolve(argv: list[str]) -> tuple[Any, list[str], list[str]]:
    """(command, its path, the remaining args) for `edge-agent sub [sub] args...`."""
    cmd = _apps()[Path(argv[0]).name]
    path = [Path(argv[0]).name]
    rest = argv[1:]
    while hasattr(cmd, "commands") and rest and not rest[0].startswith("-"):
        sub = cmd.commands.get(rest[0])
        assert sub is not None, f"{' '.join(path)} has no command {rest[0]!r}"
        cmd, path, rest = sub, [*path, rest[0]], rest[1:]
    return cmd, path, rest


def option_names(cmd: Any) -> set[str]:
    names = {"--help"}
    for p in cmd.params:
        names.update(getattr(p, "opts", []))
        names.update(getattr(p, "secondary_opts", []))
    return names


def agent_commands() -> list[list[str]]:
    out = []
    for line in shell_commands(README.read_text()):
        argv = shlex.split(line)
        if argv and argv[0] == "sudo":
            argv = argv[1:]
        if argv and Path(argv[0]).name in ("edge-agent", "model-build"):
            out.append(argv)
    return out


def test_readme_opens_with_the_two_commands() -> None:
    cmds = shell_commands(README.read_text())
    assert cmds[:2] == ["bash deploy/demo.sh", "bash deploy/test.sh"]
    ci = (REPO / ".ci" / "run").read_text()
    assert "deploy/test.sh" in ci  # the second command is exactly what CI runs
    assert "## Detection quality" in README.read_text()


def test_readme_uses_only_existing_commands_and_options() -> None:
    cmds = agent_commands()
    used = {resolve(a)[1][1] for a in cmds}
    assert {"demo", "devices", "run", "config", "score", "train", "evaluate", "export"} <= used
    for argv in cmds:
        cmd, path, rest = resolve(argv)
        known = option_names(cmd)
        for tok in rest:
            if tok.startswith("--"):
                assert tok.split("=")[0] in known, f"{' '.join(path)}: unknown option {tok}"


def test_readme_commands_help_runs() -> None:
    seen: set[tuple[str, ...]] = set()
    for argv in agent_commands():
        _, path, _ = resolve(argv)
        if tuple(path) in seen:
            continue
        seen.add(tuple(path))
        mod = "edge_agent.cli" if path[0] == "edge-agent" else "model_build.cli"
        proc = subprocess.run(
            [sys.executable, "-m", mod, *path[1:], "--help"],
            capture_output=True,
            text=True,
            timeout=120,
            env=ENV,
        )
        assert proc.returncode == 0, (path, proc.stderr)
        assert "Usage" in proc.stdout


def test_readme_scripts_and_extras_exist() -> None:
    text = README.read_text()
    for line in shell_commands(text):
        for tok in shlex.split(line):
            if tok.endswith(".sh"):
                assert (REPO / tok).is_file(), tok
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    for extra in re.findall(r"listening-monitor\[(\w+)\]|'\.\[(\w+)\]'", text):
        name = extra[0] or extra[1]
        assert name in extras, name
    for link in re.findall(r"\]\(((?:docs|deploy|benchmarks)/[^)#]+|BENCHMARKS\.md)", text):
        assert (REPO / link).exists(), link


def test_readme_minimal_config_is_valid(tmp_path: Path) -> None:
    """The README's minimal YAML passes config check once the bundle path exists."""
    from edge_agent.commands.demo import load_demo

    demo = load_demo()
    blocks = [b for b in yaml_blocks(README.read_text()) if "bundle:" in b]
    assert blocks
    text = blocks[0].replace("/opt/edge-agent/bundle", str(demo.bundle))
    assert yaml.safe_load(text)["section"] == demo.section
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(text)
    proc = subprocess.run(
        [sys.executable, "-m", "edge_agent.cli", "config", "check", "--show", str(cfg)],
        capture_output=True,
        text=True,
        timeout=60,
        env=ENV,
    )
    assert proc.returncode == 0, proc.stderr
    eff = yaml.safe_load(proc.stdout)
    assert eff["source"]["device"] == "hw:1" and eff["mqtt"]["ha_discovery"] is True


def test_readme_score_plot_command_runs(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from edge_agent.commands.demo import load_demo

    demo = load_demo()
    argv = next(a for a in agent_commands() if resolve(a)[1][1] == "score")
    subs = {
        "recording.wav": str(demo.paths[-1]),
        "/opt/edge-agent/bundle": str(demo.bundle),
        "scores.png": str(tmp_path / "scores.png"),
    }
    argv = [subs.get(a, a) for a in argv[1:]]
    proc = subprocess.run(
        [sys.executable, "-m", "edge_agent.cli", *argv],
        capture_output=True,
        text=True,
        timeout=120,
        env=ENV,
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "scores.png").stat().st_size > 0
    assert "ANOMALY" in proc.stdout  # the last demo clip is from the faulty machine


def test_example_config_documents_only_real_keys() -> None:
    """deploy/agent.example.yaml loads (bundle path aside) and its keys are AgentConfig keys."""
    from edge_agent.commands.demo import load_demo
    from edge_agent.config.load import load_config

    raw = yaml.safe_load((REPO / "deploy" / "agent.example.yaml").read_text())
    raw["bundle"] = str(load_demo().bundle)
    cfg = load_config(None, _flatten(raw))
    assert cfg.decision.k == 3 and cfg.outbox.path.startswith("/var/lib/edge-agent")


def test_four_machine_example_checks_against_the_demo_bundle() -> None:
    """deploy/monitors.example.yaml (docs/monitors.md): four monitors on the four channels of
    one interface, valid against the shipped demo bundle's sections; one shared capture."""
    from edge_agent.bundle.load import load_bundle
    from edge_agent.commands.demo import load_demo
    from edge_agent.config.load import load_config
    from edge_agent.config.monitors import capture_groups
    from edge_agent.runtime.start import check_start

    bundle = str(load_demo().bundle)
    cfg = load_config(REPO / "deploy" / "monitors.example.yaml", {"bundle": bundle})
    check_start(cfg, load_bundle(bundle))
    names = [m.name for m in cfg.monitor_list()]
    assert names == ["fan_1", "fan_2", "gearbox_1", "gearbox_2"]
    (group,) = capture_groups(cfg.monitor_list())
    assert group.lanes == (0, 1, 2, 3) and group.source.device == "USB Audio"
    assert cfg.monitors[3].decision.k == 2 and cfg.monitors[3].decision.n == 5


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _all_keys(cls: type, prefix: str = "", top: frozenset[type] = frozenset()) -> list[str]:
    """Every YAML key; a list item's section that is also a top-level section
    (`monitors.source`) is one key: its keys are that section's, documented there."""
    keys = []
    hints = typing.get_type_hints(cls)
    sections = top or frozenset(
        h for h in hints.values() if isinstance(h, type) and dataclasses.is_dataclass(h)
    )
    for f in dataclasses.fields(cls):
        if not f.repr:
            continue
        h = hints[f.name]
        inner = [a for a in typing.get_args(h) if dataclasses.is_dataclass(a)]
        sub = h if dataclasses.is_dataclass(h) else (inner[0] if inner else None)
        if isinstance(sub, type) and sub not in top:
            keys += _all_keys(sub, f"{prefix}{f.name}.", sections)
            if typing.get_origin(h) is None:
                continue
        keys.append(f"{prefix}{f.name}")
    return keys


def test_config_reference_documents_every_key() -> None:
    from edge_agent.config.agent import AgentConfig

    doc = (REPO / "docs" / "config.md").read_text()
    rows = {
        m.group(1): m.group(2)
        for m in re.finditer(r"^\| `([\w.]+)` \|[^|]*\|[^|]*\| (.+) \|$", doc, re.M)
    }
    keys = _all_keys(AgentConfig)
    assert "mqtt.tls.ca_file" in keys and "decision.k" in keys
    for key in keys:
        assert key in rows, f"docs/config.md lacks {key}"
        assert len(rows[key].strip()) > 3, f"docs/config.md: {key} has no description"


def test_cli_reference_lists_every_command_and_option() -> None:
    doc = (REPO / "docs" / "cli.md").read_text()

    def walk(cmd: Any, path: list[str]) -> None:
        assert f"`{' '.join(path)}`" in doc, f"docs/cli.md lacks {' '.join(path)}"
        section = doc.split(f"`{' '.join(path)}`", 1)[1]
        for name in option_names(cmd) - {"--help"}:
            if name.startswith("--"):
                assert f"`{name}" in section or f" {name}" in section, (path, name)
        if hasattr(cmd, "commands"):
            for sub_name, sub in cmd.commands.items():
                walk(sub, [*path, sub_name])

    for name, cmd in _apps().items():
        walk(cmd, [name])


def test_generated_references_are_up_to_date() -> None:
    import gen_reference

    assert gen_reference.main(["--check"]) == 0, (
        "docs/cli.md or docs/config.md is stale: run .venv/bin/python docs/gen_reference.py"
    )


def test_architecture_doc_names_every_module() -> None:
    """docs/architecture.md is the map of the tree: a new module must get its line there."""
    doc = (REPO / "docs" / "architecture.md").read_text()
    for package in ("edge_agent", "model_build"):
        for path in sorted((REPO / package).rglob("*.py")):
            rel = path.relative_to(REPO / package).as_posix()
            if path.name != "__init__.py":
                assert f"`{rel}`" in doc, f"docs/architecture.md does not describe {package}/{rel}"
