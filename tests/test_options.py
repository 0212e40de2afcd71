"""One meaning per flag: every command of both CLIs is listed, and a flag name that means two
things in two commands fails here (edge_agent.commands.options, model_build.commands.options
declare the shared ones once)."""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Any

import typer

# A flag whose meaning is "where this command writes its result": the result differs per
# command by nature (a run folder, a bundle, a metrics folder), the meaning does not.
PER_COMMAND = {"--out"}


def _commands() -> list[tuple[str, Any]]:
    from edge_agent.cli import app as agent_app
    from model_build.cli import app as build_app

    out: list[tuple[str, Any]] = []

    def walk(cmd: Any, path: list[str]) -> None:
        if hasattr(cmd, "commands"):
            for name, sub in cmd.commands.items():
                walk(sub, [*path, name])
        else:
            out.append((" ".join(path), cmd))

    walk(typer.main.get_command(agent_app), ["edge-agent"])
    walk(typer.main.get_command(build_app), ["model-build"])
    return out


def meaning(help_text: str) -> str:
    """A flag's help without its default clause: "(default: ...)" differs per command (the
    config's value, or none without a config); what the flag does must not."""
    text = re.sub(r"\s*\(default[^()]*(\([^()]*\)[^()]*)*\)", "", help_text)
    return " ".join(text.split())


def flag_meanings() -> dict[str, dict[str, list[str]]]:
    """flag -> its meaning -> the commands that give it that meaning."""
    seen: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for path, cmd in _commands():
        for p in cmd.params:
            for flag in [*getattr(p, "opts", []), *getattr(p, "secondary_opts", [])]:
                if flag.startswith("--"):
                    seen[flag][meaning(getattr(p, "help", None) or "")].append(path)
    return seen


def test_every_flag_has_one_meaning_across_both_clis() -> None:
    clashes = {
        flag: dict(m)
        for flag, m in flag_meanings().items()
        if len(m) > 1 and flag not in PER_COMMAND
    }
    assert not clashes, (
        "a flag with two meanings (declare it once in commands/options.py): "
        + "; ".join(
            f"{flag}: " + " | ".join(f"{' '.join(c)} -> {h!r}" for h, c in m.items())
            for flag, m in clashes.items()
        )
    )


def test_the_check_sees_every_command_and_catches_a_clash() -> None:
    names = {path for path, _ in _commands()}
    assert {
        "edge-agent run",
        "edge-agent fleet push",
        "model-build train",
        "model-build evaluate",
    } <= names
    seen = flag_meanings()
    assert len(seen["--quiet"]) == 1 and len(seen["--verbose"]) == 1
    assert len(next(iter(seen["--quiet"].values()))) >= 5  # shared by run, calibrate, train...
    # the normaliser keeps what differs in meaning and drops only the default clause
    assert meaning("Broker port (default: the config's `mqtt.port`, 1883).") == "Broker port."
    assert meaning("Backend: default (k-NN) or paper.") != meaning("Table 6: cosine | gmm.")


def test_no_flag_names_a_setting_its_command_does_not_take() -> None:
    """A help that says "the config's" belongs to a command that takes --config."""
    for path, cmd in _commands():
        flags = {f for p in cmd.params for f in getattr(p, "opts", [])}
        for p in cmd.params:
            if "the config's" in (getattr(p, "help", None) or ""):
                assert "--config" in flags, (path, p.opts)
