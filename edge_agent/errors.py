"""Errors users see: one line, naming the file or field and what was expected.

Library code names what it knows: a file, a config key, a parameter (`FieldError`). Only the
command layer knows which flag set a parameter, so `edge_agent.commands.runner` words field
errors as flags (`count: ...` becomes `--count: ...`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar


class EdgeAgentError(Exception):
    """Base class for every error the CLIs turn into a one-line message (exit code 2)."""


class AudioFileError(EdgeAgentError):
    """An audio file cannot be used (unreadable, wrong format, too short...)."""

    def __init__(self, path: object, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class FieldError(EdgeAgentError, ValueError):
    """A parameter's value is wrong or missing: `field` is the parameter's name, `reason` says
    what was expected. `worded(name)` is the message with another name for the field (a flag).
    A ValueError too, so callers that validate with `except ValueError` keep working."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(self.worded(field))

    def worded(self, name: str) -> str:
        return f"{name}: {self.reason}"


class ConfigError(EdgeAgentError):
    """A configuration file or value is invalid."""


class BundleError(EdgeAgentError):
    """A model bundle is missing, corrupted, or does not match its manifest."""


class RuntimeUnavailableError(EdgeAgentError):
    """No TFLite runtime can create an interpreter on this machine."""


class DeviceError(EdgeAgentError):
    """An audio device cannot be found or opened."""


Choice = TypeVar("Choice", bound=str)


def choice(field: str, value: str, choices: Sequence[Choice]) -> Choice:
    """`value` as one of `choices` (the members of a `Literal` type), or a FieldError naming
    them. The one check between a string from a user and an enumerated type."""
    for c in choices:
        if value == c:
            return c
    raise FieldError(field, f"expected one of {', '.join(choices)}, got {value!r}")
