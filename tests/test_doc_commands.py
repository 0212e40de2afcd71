"""Every command the documentation quotes still runs as quoted.

Commands are taken from README.md, BENCHMARKS.md and docs/*.md (docs/cli.md is generated from
the apps themselves and checked by test_readme.py): the lines of code blocks (continuation
lines joined: a trailing backslash, or a synopsis line that goes on with an indented `[`) and
inline code spans, whenever they start with `edge-agent`, `model-build` (any venv's `bin/`,
after `sudo`/`nice`) or a `benchmarks/*.py` script (with or without `python`). Synopsis
notation is read as a user would type it: brackets dropped, `a|b` -> `a`, `PATH...` -> `PATH`,
`--x/--y` -> both flags.

Each command is parsed in-process, the way it would be at the prompt, with `--help` added:
`edge-agent`/`model-build` by their click command's own option parser (an unknown or renamed
option or subcommand fails; `--help` itself is then run once per command, rendering it is the
slow part), a benchmark script by its own argparse parser (captured when its `main` builds it;
the quoted arguments must parse completely, then its help is formatted). An inline mention of
a program without arguments is a reference: the command or script must exist.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

REPO = Path(__file__).resolve().parents[1]
DOCS = [
    REPO / "README.md",
    REPO / "BENCHMARKS.md",
    *sorted(p for p in (REPO / "docs").glob("*.md") if p.name != "cli.md"),
]
_PROGRAM = re.compile(r"^(?:\S*bin/)?(edge-agent|model-build)$")
_SCRIPT = re.compile(r"^(?:\S*/)?(benchmarks/\w+\.py)$")
_PREFIXES = {"sudo", "nice", "time", "exec"}
HISTORICAL = "historical"
"""A code block fenced as ```historical holds commands of an OLDER commit, run in a checkout
of it (the block itself says which, e.g. `git worktree add ... 0ff9bcc`): a record of how a
kept figure was measured, not checked against today's options."""


@dataclass(frozen=True)
class Quoted:
    """One quoted command: where it is, how it reads, and its argv (program first)."""

    doc: str
    kind: str  # "block" | "inline"
    text: str
    argv: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.doc} ({self.kind}): {self.text}"


def _words(tokens: list[str]) -> list[str]:
    """Synopsis notation -> what a user types."""
    out: list[str] = []
    for raw in tokens:
        tok = raw.replace("[", "").replace("]", "")
        if not tok or tok == "|":
            continue
        if tok == "...":
            out.append("X")
            continue
        tok = tok.removesuffix("...")
        if tok.startswith("--") and "/--" in tok:
            out += tok.split("/")
            continue
        if not tok.startswith("-") and "|" in tok:
            tok = tok.split("|")[0]
        out.append(tok)
    return out


def _commands(tokens: list[str]) -> list[list[str]]:
    """Split a shell line at pipes and `&&`/`;` outside synopsis brackets."""
    parts: list[list[str]] = [[]]
    depth = 0
    for tok in tokens:
        if depth == 0 and tok in ("|", "&&", ";", "||"):
            parts.append([])
            continue
        depth += tok.count("[") - tok.count("]")
        parts[-1].append(tok)
    return [p for p in parts if p]


def _program_argv(tokens: list[str]) -> tuple[str, ...] | None:
    """(program, args...) when the tokens run one of ours, else None."""
    i = 0
    while i < len(tokens) and (tokens[i] in _PREFIXES or re.match(r"^\w+=", tokens[i])):
        i += 1
    if i < len(tokens) and re.match(r"^(?:\S*/)?python3?$", tokens[i]):
        i += 1
    if i >= len(tokens):
        return None
    m = _PROGRAM.match(tokens[i]) or _SCRIPT.match(tokens[i])
    if m is None:
        return None
    return (m.group(1), *_words(tokens[i + 1 :]))


def _block_lines(block: str) -> list[str]:
    lines: list[str] = []
    for raw in block.replace("\\\n", " ").splitlines():
        line = raw.split(" #")[0].rstrip()
        if lines and line[:1].isspace() and line.strip().startswith("["):
            lines[-1] += " " + line.strip()  # a synopsis going on
        elif line.strip() and not line.strip().startswith("#"):
            lines.append(line.strip())
    return lines


def _block_commands(name: str, text: str) -> list[Quoted]:
    found: list[Quoted] = []
    for info, block in re.findall(r"```([\w-]*)\n(.*?)```", text, re.S):
        if info == HISTORICAL:
            continue
        for line in _block_lines(block):
            try:
                tokens = shlex.split(line)
            except ValueError:
                continue
            for part in _commands(tokens):
                argv = _program_argv(part)
                if argv is not None:
                    found.append(Quoted(name, "block", line, argv))
    return found


def _inline_commands(name: str, text: str) -> list[Quoted]:
    found: list[Quoted] = []
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    for raw in re.findall(r"`([^`]+)`", prose):
        span = re.sub(r"\s+", " ", raw.strip())
        try:
            tokens = shlex.split(span)
        except ValueError:
            continue
        argv = _program_argv(_commands(tokens)[0]) if tokens else None
        if argv is not None:
            found.append(Quoted(name, "inline", span, argv))
    return found


def quoted_commands() -> list[Quoted]:
    found: list[Quoted] = []
    for doc in DOCS:
        text = doc.read_text()
        name = doc.relative_to(REPO).as_posix()
        found += _block_commands(name, text) + _inline_commands(name, text)
    return found


QUOTED = quoted_commands()


def _apps() -> dict[str, typer.Typer]:
    from edge_agent.cli import app as agent_app
    from model_build.cli import app as build_app

    return {"edge-agent": agent_app, "model-build": build_app}


class _Captured(Exception):
    """A control-flow signal (the parser a script built), not an error."""

    def __init__(self, parser: argparse.ArgumentParser) -> None:
        super().__init__("parser captured")
        self.parser = parser


_PARSERS: dict[str, argparse.ArgumentParser] = {}


def script_parser(script: str, monkeypatch: pytest.MonkeyPatch) -> argparse.ArgumentParser:
    """The argparse parser a benchmark script builds in `main`, taken at `parse_args` (so
    nothing of the script runs)."""
    if script in _PARSERS:
        return _PARSERS[script]
    path = REPO / script
    assert path.is_file(), f"{script}: no such script"
    monkeypatch.syspath_prepend(str(path.parent))
    spec = importlib.util.spec_from_file_location(f"_doc_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses look their module up
    spec.loader.exec_module(module)

    def capture(self: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> Any:
        raise _Captured(self)

    with monkeypatch.context() as m:
        m.setattr(argparse.ArgumentParser, "parse_args", capture)
        m.setattr(argparse.ArgumentParser, "parse_known_args", capture)
        m.setattr(sys, "argv", [str(path)])
        with pytest.raises(_Captured) as got:
            module.main()
    _PARSERS[script] = got.value.parser
    return got.value.parser


def check_click(q: Quoted) -> None:
    app = _apps()[q.argv[0]]
    cmd: Any = typer.main.get_command(app)
    path, rest = [q.argv[0]], list(q.argv[1:])
    while hasattr(cmd, "commands") and rest and not rest[0].startswith("-"):
        sub = cmd.commands.get(rest[0])
        assert sub is not None, f"{q}: {' '.join(path)} has no command {rest[0]!r}"
        cmd, path, rest = sub, [*path, rest[0]], rest[1:]
    if q.kind == "inline" and not rest:
        return  # a reference to the command: it exists
    parser = cmd.make_parser(cmd.context_class(cmd, info_name=path[-1]))
    try:
        parser.parse_args(args=[*rest, "--help"])  # the command's own option parser
    except Exception as exc:  # click's UsageError (typer vendors click): unknown option
        format_message = getattr(exc, "format_message", None)
        message = format_message() if callable(format_message) else str(exc)
        pytest.fail(f"{q}: {message}")
    _help(app, tuple(path))


_HELPED: set[tuple[str, ...]] = set()


def _help(app: typer.Typer, path: tuple[str, ...]) -> None:
    """`<command> --help` runs (once per command: rendering it is the slow part)."""
    if path in _HELPED:
        return
    result = CliRunner().invoke(app, [*path[1:], "--help"])
    assert result.exit_code == 0 and "Usage" in result.output, (path, result.output)
    _HELPED.add(path)


def check_script(q: Quoted, monkeypatch: pytest.MonkeyPatch) -> None:
    parser = script_parser(q.argv[0], monkeypatch)
    args = list(q.argv[1:])
    if q.kind == "inline" and not args:
        return  # a reference to the script: it exists
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            parser.parse_args(args)
    except SystemExit:
        pytest.fail(f"{q}: {err.getvalue().strip().splitlines()[-1]}")
    assert "usage" in parser.format_help()


def test_the_docs_quote_commands_of_every_kind() -> None:
    """The extraction itself works: the commands this test exists for are found."""
    texts = {q.text for q in QUOTED}
    assert len(QUOTED) > 80
    assert any(q.argv[:2] == ("model-build", "train") and q.doc == "README.md" for q in QUOTED)
    assert any(q.argv[0] == "benchmarks/ablations.py" and q.kind == "block" for q in QUOTED)
    assert any(q.argv[0] == "benchmarks/quality.py" for q in QUOTED)
    assert any(q.doc.startswith("docs/") and q.kind == "inline" for q in QUOTED)
    assert any(
        t.startswith("edge-agent calibrate --bundle B --section S") and "--files" in t
        for t in texts
    )  # a synopsis spanning lines, joined


@pytest.mark.parametrize("q", QUOTED, ids=lambda q: f"{q.doc}:{q.text[:60]}")
def test_quoted_command_parses_with_help(q: Quoted, monkeypatch: pytest.MonkeyPatch) -> None:
    if q.argv[0].startswith("benchmarks/"):
        check_script(q, monkeypatch)
    else:
        check_click(q)


def test_a_renamed_flag_would_fail() -> None:
    """The check is not vacuous: a wrong option and a wrong subcommand are caught."""
    with pytest.raises(pytest.fail.Exception, match="No such option: --epoch"):
        check_click(Quoted("x", "block", "", ("model-build", "train", "--epoch", "3")))
    with pytest.raises(AssertionError, match="has no command 'trian'"):
        check_click(Quoted("x", "block", "", ("model-build", "trian")))


def test_a_wrong_script_argument_would_fail(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(pytest.fail.Exception, match="unrecognized arguments: --runs 5"):
        check_script(
            Quoted("x", "block", "", ("benchmarks/quality.py", "--out", "o", "--runs", "5")),
            monkeypatch,
        )


def test_a_historical_block_names_the_commit_it_runs_at() -> None:
    """The one way out of the check: a block of an older commit must say which (a checkout
    of it), and that commit must exist in this repository's history."""
    import subprocess

    blocks = [
        (doc, b)
        for doc in DOCS
        for info, b in re.findall(r"```([\w-]*)\n(.*?)```", doc.read_text(), re.S)
        if info == HISTORICAL
    ]
    for doc, block in blocks:
        m = re.search(r"git worktree add \S+ ([0-9a-f]{7,40})\b", block)
        assert m, f"{doc.name}: a historical block without `git worktree add DIR COMMIT`"
        shown = subprocess.run(
            ["git", "-C", str(REPO), "cat-file", "-t", m.group(1)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert shown.stdout.strip() == "commit", f"{doc.name}: {m.group(1)} is not a commit"
