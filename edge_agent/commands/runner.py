"""Running a command-line app: every error a user can fix is one line and exit code 2.

Library code raises errors that name fields (`FieldError("count", ...)`): it does not know
whether a flag, a config file or a Python caller set the value. A command says which flag
sets which field with `@fields_as_flags`; its field errors then read `--count: ...`.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import typer

from edge_agent.errors import EdgeAgentError, FieldError

P = ParamSpec("P")
R = TypeVar("R")


def run_app(app: typer.Typer, argv: list[str] | None = None) -> None:
    """Run a typer app; errors that users can fix print as `error: ...` instead of a traceback."""
    try:
        app(args=argv, standalone_mode=True)
    except EdgeAgentError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def flag_name(field: str) -> str:
    """The flag a field is set by when the command does not say otherwise: `skip_unreadable` ->
    `--skip-unreadable`."""
    return "--" + field.replace("_", "-")


def fields_as_flags(**renamed: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate a command: its FieldErrors name the flag instead of the field.

    `renamed` maps the fields whose flag is not simply `--<field>`, e.g.
    `@fields_as_flags(model_index="--model")`.
    """

    def decorate(command: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(command)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return command(*args, **kwargs)
            except FieldError as exc:
                name = renamed.get(exc.field, flag_name(exc.field))
                raise EdgeAgentError(exc.worded(name)) from None

        return wrapper

    return decorate
