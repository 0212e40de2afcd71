"""Errors users see: one line, naming the file or field and what was expected."""

from __future__ import annotations


class EdgeAgentError(Exception):
    """Base class for every error the CLIs turn into a one-line message (exit code 2)."""


class AudioFileError(EdgeAgentError):
    """An audio file cannot be used (unreadable, wrong format, too short...)."""

    def __init__(self, path: object, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class ConfigError(EdgeAgentError):
    """A configuration file or value is invalid."""


class BundleError(EdgeAgentError):
    """A model bundle is missing, corrupted, or does not match its manifest."""


class RuntimeUnavailableError(EdgeAgentError):
    """No TFLite runtime can create an interpreter on this machine."""


class DeviceError(EdgeAgentError):
    """An audio device cannot be found or opened."""
