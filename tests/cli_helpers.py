"""Run the `edge-agent` CLI in the test process and capture what it prints."""

from __future__ import annotations

from collections.abc import Callable

import pytest


def _run(
    main: Callable[[list[str]], None], capsys: pytest.CaptureFixture[str], args: tuple[str, ...]
) -> tuple[int, str, str]:
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """`edge-agent ARGS` in this process: (exit code, stdout, stderr)."""
    from edge_agent.cli import main

    return _run(main, capsys, args)


def run_build(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """`model-build ARGS` in this process: (exit code, stdout, stderr)."""
    from model_build.cli import main

    return _run(main, capsys, args)
