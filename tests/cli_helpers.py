"""Run the `edge-agent` CLI in the test process and capture what it prints."""

from __future__ import annotations

import pytest


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """`edge-agent ARGS` in this process: (exit code, stdout, stderr)."""
    from edge_agent.cli import main

    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err
