"""Shared CLI plumbing: every known error becomes one line on stderr and exit code 2."""

from __future__ import annotations

import sys
from collections.abc import Callable

import typer

from .errors import EdgeAgentError


def run_app(app: typer.Typer, argv: list[str] | None = None) -> None:
    """Run a typer app; errors that users can fix print as `error: ...` instead of a traceback."""
    try:
        app(args=argv, standalone_mode=True)
    except EdgeAgentError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def fail(message: str) -> None:
    """Stop a command with a one-line error."""
    raise EdgeAgentError(message)


Command = Callable[..., None]
